//! The cluster file's `etcd` section, turned into the elect crate's connection settings.

use config::Cluster;

/// Why etcd cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdSetupError {
    /// The cluster file has no etcd section.
    #[error(
        "the cluster file has no etcd section; add etcd: {{endpoints: [\"http://ADDRESS:2379\"]}}"
    )]
    NotConfigured,
}

/// Connection settings for the cluster's etcd.
pub fn etcd_config(cluster: &Cluster) -> Result<elect::EtcdConfig, EtcdSetupError> {
    let etcd = cluster.etcd.as_ref().ok_or(EtcdSetupError::NotConfigured)?;
    let mut cfg = elect::EtcdConfig::plain(cluster.etcd_endpoints());
    cfg.ca_file = etcd.ca_file.clone();
    cfg.cert_file = etcd.cert_file.clone();
    cfg.key_file = etcd.key_file.clone();
    cfg.dial_timeout = etcd.dial_timeout.get();
    Ok(cfg)
}
