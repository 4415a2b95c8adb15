//! The cluster file's `etcd` section, turned into the elect crate's connection settings, the
//! background connector, and the etcd members' health in /status and /metrics.

use config::Cluster;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::status::Section;

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
) -> tokio::sync::watch::Receiver<Option<elect::Client>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    crate::spawn(async move {
        let mut backoff = elect::Backoff::new(
            std::time::Duration::from_millis(250),
            std::time::Duration::from_secs(5),
        );
        let mut attempts = 0u32;
        loop {
            match elect::connect(&cfg).await {
                Ok(client) => {
                    tracing::info!(endpoints = ?cfg.endpoints, "connected to etcd");
                    let _ = tx.send(Some(client));
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    if attempts == 1 || attempts % 20 == 0 {
                        tracing::warn!(attempts, "etcd not reachable yet: {e}");
                    }
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    });
    rx
}

/// Waits until the connector has published its client (at once if it has); None when the
/// connector is gone (the daemon is stopping).
pub async fn connected(
    client: &mut tokio::sync::watch::Receiver<Option<elect::Client>>,
) -> Option<elect::Client> {
    client
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|c| c.clone())
}

/// The etcd client's view of each member for /status (`etcd.members`) and /metrics: whether it
/// answers, which one requests go to first, its round-trip time and why it is down.
pub struct EtcdSection(pub tokio::sync::watch::Receiver<Option<elect::Client>>);

impl Section for EtcdSection {
    fn json(&self) -> serde_json::Value {
        let client = self.0.borrow();
        let section = status_api::EtcdClient {
            connected: client.is_some(),
            members: client.as_ref().map(|c| c.members()).unwrap_or_default(),
        };
        serde_json::to_value(section).unwrap_or_default()
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let members = self
            .0
            .borrow()
            .as_ref()
            .map(|c| c.members())
            .unwrap_or_default();
        let mut gauge = |name: &str, help: &str, value: &dyn Fn(&elect::MemberStatus) -> f64| {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &members {
                ConstGauge::new(value(s))
                    .encode(m.encode_family(&[("endpoint", s.endpoint.as_str())])?)?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        gauge(
            "haplane_etcd_member_up",
            "1 while this etcd member answers requests (no timeout, refusal or missing raft leader).",
            &|s| f64::from(u8::from(s.up)),
        )?;
        gauge(
            "haplane_etcd_member_preferred",
            "1 for the etcd member requests go to first.",
            &|s| f64::from(u8::from(s.preferred)),
        )?;
        gauge(
            "haplane_etcd_member_rtt_seconds",
            "Smoothed round-trip time of this etcd member's answers.",
            &|s| s.rtt_us.map_or(0.0, |us| us as f64 / 1e6),
        )?;
        Ok(())
    }
}
