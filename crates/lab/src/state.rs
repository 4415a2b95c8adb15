//! The lab's state directory: the cluster file, the node list and the logs, so `drill`,
//! `status` and `down` (other processes) can find what `up` built.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LabError;

/// Where every lab keeps its state (tmpfs: etcd's fsyncs are cheap, and a reboot cleans up).
pub const STATE_ROOT: &str = "/run/haplane-lab";

/// One node of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node (and netlab host) name: m1.., lb1.., w1..
    pub name: String,
    /// Its address on the switch.
    pub address: Ipv4Addr,
    /// The netns it lives in.
    pub netns: String,
}

/// What `lab up` built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// The state directory.
    pub dir: PathBuf,
    /// The cluster file every node runs with.
    pub config: PathBuf,
    /// The haplane binary the nodes run.
    pub haplane: PathBuf,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The balanced port: etcd's 2379, or 6443 with `--apiserver`.
    pub port: u16,
    /// etcd's client port on every master.
    pub etcd_port: u16,
    /// Port of each daemon's /status (on 127.0.0.1 inside its namespace).
    pub status_port: u16,
    /// `quorum` or `none`.
    pub fencing: String,
    /// The cluster file's `vip.preempt` (labs made before the option had `false`).
    #[serde(default)]
    pub preempt: bool,
    /// etcd's `--election-timeout` in ms (`lab up --etcd-election-timeout`; labs made before
    /// the option ran etcd's default, 1000).
    #[serde(default = "default_election_timeout_ms")]
    pub etcd_election_timeout_ms: u64,
    /// The masters.
    pub masters: Vec<NodeInfo>,
    /// Dedicated balancer nodes (`lab up --lb-nodes N`): VRRP for the VIP and the balancer in
    /// front of the masters, no etcd member. Empty: the masters carry the VIP.
    #[serde(default)]
    pub lbs: Vec<NodeInfo>,
    /// The workers.
    pub workers: Vec<NodeInfo>,
    /// The kube-apiserver binary, when the lab runs one.
    pub apiserver: Option<PathBuf>,
    /// Names of the elections in the cluster file.
    pub elections: Vec<String>,
}

/// The state directory of lab `name`.
pub fn state_dir(name: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(name)
}

fn default_election_timeout_ms() -> u64 {
    1000
}

impl LabState {
    /// Reads the state of lab `name`.
    pub fn load(name: &str) -> Result<LabState, LabError> {
        let path = state_dir(name).join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::NoLab(name.to_string())
            } else {
                LabError::Io {
                    path: path.clone(),
                    error: e,
                }
            }
        })?;
        serde_json::from_str(&text).map_err(|e| LabError::BadState {
            path,
            detail: e.to_string(),
        })
    }

    /// Writes the state file.
    pub fn save(&self) -> Result<(), LabError> {
        let path = self.dir.join("state.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|error| LabError::Io { path, error })
    }

    /// Every node: masters, lb nodes, workers.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.masters
            .iter()
            .chain(self.lbs.iter())
            .chain(self.workers.iter())
    }

    /// The nodes that run VRRP for the VIP: the lb nodes when there are any, else the masters.
    pub fn vip_nodes(&self) -> &[NodeInfo] {
        if self.lbs.is_empty() {
            &self.masters
        } else {
            &self.lbs
        }
    }

    /// The nodes watched for the VIP (address and ARP answers): the VIP's nodes first, then,
    /// behind lb nodes, the masters too (one of them holding it would be a bug).
    pub fn vip_watch(&self) -> Vec<&NodeInfo> {
        let mut out: Vec<&NodeInfo> = self.vip_nodes().iter().collect();
        if !self.lbs.is_empty() {
            out.extend(self.masters.iter());
        }
        out
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes().find(|n| n.name == name)
    }

    /// Whether `name` is a master (runs etcd, the stand-in or real apiserver, the elections).
    pub fn is_master(&self, name: &str) -> bool {
        self.masters.iter().any(|m| m.name == name)
    }

    /// The role of node `name` in the cluster file: `master`, `lb` or `worker`.
    pub fn role(&self, name: &str) -> &'static str {
        if self.is_master(name) {
            "master"
        } else if self.lbs.iter().any(|n| n.name == name) {
            "lb"
        } else {
            "worker"
        }
    }

    /// The log file of `what` (etcd, haplane, apiserver) on `node`.
    pub fn log(&self, node: &str, what: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{node}-{what}.log"))
    }

    /// The etcd data directory of master `node`.
    pub fn etcd_data(&self, node: &str) -> PathBuf {
        self.dir.join("etcd").join(node)
    }

    /// The daemon's /status address inside each namespace.
    pub fn status_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.status_port))
    }

    /// etcd's client address on loopback inside a master's namespace.
    pub fn etcd_local(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.etcd_port))
    }

    /// etcd client URLs of all members (on the switch).
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.masters
            .iter()
            .map(|m| format!("http://{}:{}", m.address, self.etcd_port))
            .collect()
    }
}
