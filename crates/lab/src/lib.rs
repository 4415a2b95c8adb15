//! `haplane lab up|drill|down|chaos` and `haplane status` as a library: the whole HA topology
//! on one machine (a switch, masters with etcd + haplane, workers with a node-local balancer,
//! all in network namespaces), failures injected and measured as clients feel them. It
//! returns values and errors; the command line (crates/haplane/src/cli/) prints them.
// No `unsafe` here: the ARP probe's link-layer address comes from crate sockaddr-ll.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub mod arp_probe;
pub mod chaos;
pub mod client;
pub mod drill;
pub mod http;
pub mod procs;
pub mod report;
pub mod state;
pub mod stats;
pub mod status;
pub mod streams;
pub mod summary;
pub mod timeline;
pub mod up;
pub mod view;

pub use drill::{DrillResult, Scenario, ScenarioResult};
pub use state::LabState;
pub use status::ClusterView;

/// Errors of the lab and of `haplane status`.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A network-namespace operation failed.
    #[error("netlab: {0}")]
    Netlab(netlab::Error),
    /// Reading or writing a lab file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The lab's state file cannot be read.
    #[error("{path}: bad lab state: {detail}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No lab of that name exists.
    #[error("no lab named {0:?}; start one with `haplane lab up --name {0}`")]
    NoLab(String),
    /// A lab of that name already exists.
    #[error("lab {0:?} already exists; remove it with `haplane lab down --name {0}`")]
    Exists(String),
    /// A program the lab needs is missing.
    #[error("missing: {0}")]
    Missing(String),
    /// The ARP probe cannot run.
    #[error(transparent)]
    Probe(#[from] arp_probe::ProbeError),
    /// Bad command-line arguments.
    #[error("{0}")]
    BadArgs(String),
    /// A program could not be started.
    #[error("cannot run {command}: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A program started but failed.
    #[error("{command} failed: {detail}")]
    StartFailed {
        /// The command line.
        command: String,
        /// What it said.
        detail: String,
    },
    /// The lab did not become healthy.
    #[error("the lab is not healthy: {detail} (logs in {})", logs.display())]
    NotHealthy {
        /// What is still wrong.
        detail: String,
        /// Where the daemons' logs are.
        logs: PathBuf,
    },
    /// The cluster file for `haplane status` is invalid.
    #[error("{0}")]
    Config(config::ConfigError),
}

// Shown in the message, so not a `source()` as well (one rule for errors: never both).
impl From<netlab::Error> for LabError {
    fn from(e: netlab::Error) -> LabError {
        LabError::Netlab(e)
    }
}

/// Writes the drill's self-contained HTML report to `path`.
pub fn write_report(path: &Path, r: &DrillResult) -> Result<(), LabError> {
    std::fs::write(path, report::html(r)).map_err(|error| LabError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// The cluster view from a cluster file: nodes queried at their addresses from here (the
/// local node's loopback status listener included).
pub fn status_from_config(path: &Path) -> Result<ClusterView, LabError> {
    let (cluster, _) = config::Cluster::load(path).map_err(LabError::Config)?;
    let listen = cluster.status.listen;
    let endpoints = if cluster.etcd.is_some() {
        cluster.etcd_endpoints()
    } else {
        Vec::new()
    };
    let targets: Vec<status::Target<'_>> = cluster
        .nodes
        .iter()
        .map(|n| {
            // A loopback status listener is reachable only on its own node.
            let status_addr = if listen.ip().is_loopback() && status::is_local(n.address) {
                listen
            } else {
                std::net::SocketAddr::new(n.address, listen.port())
            };
            let etcd_addr = endpoints
                .iter()
                .filter_map(|e| status::endpoint_addr(e))
                .find(|a| a.ip() == n.address);
            status::Target {
                name: n.name.clone(),
                address: n.address,
                role: n
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                status_addr,
                etcd_addr,
                vip_present: None,
                fetch: Box::new(status::direct),
            }
        })
        .collect();
    Ok(status::gather(
        &cluster.cluster,
        cluster.vip.address.addr,
        &targets,
    ))
}

/// Demo labs whose process is gone: `demo<pid>` in netlab's labs or the state root.
pub fn stale_demos() -> Vec<String> {
    let mut names = netlab::list_labs().unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(state::STATE_ROOT) {
        names.extend(
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            n.strip_prefix("demo")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

/// Copies the daemons' logs of lab `st` into `keep` (for a post-mortem: `lab down` deletes
/// the state directory); how many files were copied.
pub fn keep_logs(st: &LabState, keep: &Path) -> Result<usize, LabError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LabError::Io { path, error }
    };
    std::fs::create_dir_all(keep).map_err(io(keep))?;
    let logs = st.dir.join("logs");
    let mut n = 0;
    for e in std::fs::read_dir(&logs).map_err(io(&logs))?.flatten() {
        std::fs::copy(e.path(), keep.join(e.file_name())).map_err(io(&e.path()))?;
        n += 1;
    }
    Ok(n)
}
