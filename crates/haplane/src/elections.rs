//! The configured elections (manifest and exec actions) and scheduled snapshots, started
//! once etcd is reachable, shown in /status and /metrics, and resigned on shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Cluster, Node};
use elect::{
    Client, Election, ElectionAction, ElectionConfig, ElectionStatus, SnapshotSchedule,
    SnapshotScheduler,
};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fence::FenceStatus;
use crate::status::Section;

/// Election settings shared by every election of this node.
pub fn election_config(cluster: &Cluster, node: &Node, name: &str) -> ElectionConfig {
    let mut cfg = ElectionConfig::new(name, node.name.clone());
    if let Some(etcd) = &cluster.etcd {
        cfg.ttl = etcd.lease_ttl.get();
    }
    cfg
}

#[derive(Default)]
struct Running {
    elections: Vec<Election>,
    snapshots: Option<SnapshotScheduler>,
}

/// The running elections of this node.
#[derive(Clone)]
pub struct Elections {
    running: Arc<tokio::sync::Mutex<Running>>,
    statuses: Arc<Mutex<Vec<ElectionStatus>>>,
    fence: Option<Arc<Mutex<FenceStatus>>>,
}

impl Elections {
    /// Start every configured election once `client` is available.
    pub fn spawn(
        cluster: &Cluster,
        node: &Node,
        mut client: watch::Receiver<Option<Client>>,
        fence: Option<Arc<Mutex<FenceStatus>>>,
    ) -> Elections {
        let me = Elections {
            running: Arc::new(tokio::sync::Mutex::new(Running::default())),
            statuses: Arc::new(Mutex::new(Vec::new())),
            fence,
        };
        let configs: Vec<ElectionConfig> = cluster
            .elections
            .iter()
            .map(|e| {
                let mut cfg = election_config(cluster, node, &e.name);
                cfg.action = if let Some(m) = &e.manifest {
                    Some(ElectionAction::Manifest {
                        source: m.source.clone(),
                        target: m.target.clone(),
                    })
                } else {
                    e.exec.as_ref().map(|x| ElectionAction::Exec {
                        command: x.command.clone(),
                        grace: x.grace.get(),
                    })
                };
                cfg
            })
            .collect();
        let snapshots = cluster.snapshots.as_ref().map(|s| {
            (
                SnapshotSchedule {
                    interval: s.interval.get(),
                    dir: s.dir.clone(),
                    keep: s.keep,
                },
                election_config(cluster, node, "haplane-snapshots"),
            )
        });
        if configs.is_empty() && snapshots.is_none() {
            return me;
        }
        let running = me.running.clone();
        crate::spawn(async move {
            let Some(client) = crate::etcd::connected(&mut client).await else {
                return;
            };
            let mut r = running.lock().await;
            for cfg in configs {
                let name = cfg.name.clone();
                match Election::spawn(client.clone(), cfg) {
                    Ok(e) => {
                        info!(election = %name, "campaigning");
                        r.elections.push(e);
                    }
                    Err(e) => warn!(election = %name, "cannot campaign: {e}"),
                }
            }
            if let Some((schedule, cfg)) = snapshots {
                let dir = schedule.dir.display().to_string();
                match SnapshotScheduler::spawn(client.clone(), schedule, cfg) {
                    Ok(s) => {
                        info!(dir = %dir, "scheduled snapshots enabled");
                        r.snapshots = Some(s);
                    }
                    Err(e) => {
                        warn!(dir = %dir, "cannot schedule snapshots: {e}")
                    }
                }
            }
        });
        let (running, statuses) = (me.running.clone(), me.statuses.clone());
        crate::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let r = running.lock().await;
                let mut list: Vec<ElectionStatus> =
                    r.elections.iter().map(|e| e.status()).collect();
                if let Some(s) = &r.snapshots {
                    list.push(s.status());
                }
                drop(r);
                *statuses.lock().unwrap_or_else(|e| e.into_inner()) = list;
            }
        });
        me
    }

    /// Resign everything so the next leaders start at once.
    pub async fn resign(&self) {
        let mut r = self.running.lock().await;
        let elections = std::mem::take(&mut r.elections);
        let snapshots = r.snapshots.take();
        drop(r);
        let resigns = elections.into_iter().map(|e| e.resign());
        futures_util::future::join_all(resigns).await;
        if let Some(s) = snapshots {
            s.shutdown().await;
        }
    }

    fn list(&self) -> Vec<ElectionStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Section for Elections {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.list()).unwrap_or_default()
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let list = self.list();
        {
            let mut m =
                encoder.encode_descriptor(LEADER_METRIC, LEADER_HELP, None, MetricType::Gauge)?;
            for e in &list {
                ConstGauge::new(i64::from(e.role == "leader"))
                    .encode(m.encode_family(&[("election", e.name.as_str())])?)?;
            }
            if let Some(f) = &self.fence {
                encode_fence_leader(&mut m, f)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_election_lease_remaining_seconds",
                "Time until this node's lease deadline, while it leads.",
                None,
                MetricType::Gauge,
            )?;
            for e in &list {
                let secs = e.lease_deadline_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
                ConstGauge::new(secs).encode(m.encode_family(&[("election", e.name.as_str())])?)?;
            }
        }
        if let Some(f) = &self.fence {
            encode_fence_armed(encoder, f)?;
        }
        Ok(())
    }
}

const LEADER_METRIC: &str = "haplane_election_leader";
const LEADER_HELP: &str = "1 while this node leads the election (within its lease deadline).";

/// The VIP election's row of `haplane_election_leader`.
fn encode_fence_leader(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    fence: &Mutex<FenceStatus>,
) -> Result<(), std::fmt::Error> {
    let leader = fence.lock().unwrap_or_else(|e| e.into_inner()).leader;
    ConstGauge::new(i64::from(leader)).encode(m.encode_family(&[("election", "vip")])?)
}

/// `haplane_vip_fence_armed`.
fn encode_fence_armed(
    encoder: &mut DescriptorEncoder,
    fence: &Mutex<FenceStatus>,
) -> Result<(), std::fmt::Error> {
    let f = fence.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut m = encoder.encode_descriptor(
        "haplane_vip_fence_armed",
        "1 once this node has reached etcd and the VIP is fenced by quorum.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(f.armed)).encode(m.encode_family(&[("mode", f.mode)])?)
}

/// The fenced VIP's part of /status. Its metrics go out with the elections section, next to
/// the other elections, on nodes that run elections; an `lb` node runs none, so there this
/// section exports them (`standalone`).
pub struct FenceSection {
    pub status: Arc<Mutex<FenceStatus>>,
    pub standalone: bool,
}

impl Section for FenceSection {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.status.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default()
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.standalone {
            return Ok(());
        }
        {
            let mut m =
                encoder.encode_descriptor(LEADER_METRIC, LEADER_HELP, None, MetricType::Gauge)?;
            encode_fence_leader(&mut m, &self.status)?;
        }
        encode_fence_armed(encoder, &self.status)
    }
}
