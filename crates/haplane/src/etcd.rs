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
    cfg.attempt_timeout = etcd.attempt_timeout.get();
    Ok(cfg)
}

/// Connect in the background, retrying with backoff, and publish the client once etcd answers
/// a quorum read. etcd is reached directly, never through the apiserver (kube-vip#684), so
/// the VIP and the balancer can start before any apiserver exists.
pub fn spawn_connector(
    cfg: elect::EtcdConfig,
    node: String,
) -> tokio::sync::watch::Receiver<Option<elect::Client>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(250);
        let mut attempts = 0u32;
        loop {
            match elect::connect(&cfg).await {
                Ok(client) => {
                    tracing::info!(node = %node, endpoints = ?cfg.endpoints, "connected to etcd");
                    let _ = tx.send(Some(client));
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    if attempts == 1 || attempts % 20 == 0 {
                        tracing::warn!(node = %node, attempts, "etcd not reachable yet: {e}");
                    }
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    });
    rx
}
