//! The lab's daemons. They must outlive `lab up`, and `drill` (another process) must be able to
//! kill, freeze and restart them, so they are started detached (`setsid -f`) with their output
//! in log files, and found again by namespace: the processes in a host's netns are that node's.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;
use crate::state::{LabState, NodeInfo};

/// What a process in a node's namespace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The etcd member.
    Etcd,
    /// `haplane run`.
    Haplane,
    /// A kube-apiserver.
    Apiserver,
    /// Anything else (an election's exec command, ...).
    Other,
}

/// The pids in namespace `ns` (`ip netns pids`), empty when the namespace is gone.
pub fn pids_in(ns: &str) -> Vec<i32> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Classifies pid by its command line; None when it exited meanwhile.
pub fn kind_of(pid: i32) -> Option<Kind> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let base = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())?;
    Some(if base == "etcd" {
        Kind::Etcd
    } else if base == "kube-apiserver" {
        Kind::Apiserver
    } else if argv.iter().any(|a| a == "run") && argv.iter().any(|a| a == "--node") {
        Kind::Haplane
    } else {
        Kind::Other
    })
}

/// The pids of `kind` on `node`.
pub fn find(node: &NodeInfo, kind: Kind) -> Vec<i32> {
    pids_in(&node.netns)
        .into_iter()
        .filter(|p| kind_of(*p) == Some(kind))
        .collect()
}

/// Sends `sig` to each pid (ignoring ones that already exited).
pub fn signal_all(pids: &[i32], sig: Signal) {
    for p in pids {
        if let Err(e) = kill(Pid::from_raw(*p), sig) {
            tracing::debug!(pid = p, signal = %sig, error = %e, "lab: signal not delivered");
        }
    }
}

/// Whether pid is gone (or a zombie, which no longer runs).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
            .unwrap_or(true),
    }
}

/// Waits until every pid is gone; true when they all went within `limit`.
pub fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pids.iter().all(|p| gone(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn stop(pids: &[i32], grace: Duration) {
    signal_all(pids, Signal::SIGTERM);
    if !wait_gone(pids, grace) {
        signal_all(pids, Signal::SIGKILL);
        wait_gone(pids, Duration::from_secs(2));
    }
}

/// Starts `argv` detached inside namespace `ns`, output appended to `log`.
pub fn start_detached(ns: &str, argv: &[String], log: &Path) -> Result<(), LabError> {
    let io = |error| LabError::Io {
        path: log.to_path_buf(),
        error,
    };
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    // `setsid -f` forks: the daemon gets its own session (a terminal's Ctrl-C does not reach
    // it) and is not our child, so it outlives this command.
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "setsid", "-f"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|error| LabError::Spawn {
            command: argv.join(" "),
            error,
        })?;
    if !status.success() {
        return Err(LabError::StartFailed {
            command: argv.join(" "),
            detail: format!("exit {status}"),
        });
    }
    tracing::debug!(ns, command = %argv.join(" "), "lab: started");
    Ok(())
}

/// The etcd member's command line on `node`.
pub fn etcd_argv(st: &LabState, node: &NodeInfo) -> Vec<String> {
    let cluster = netlab::EtcdCluster::new(
        format!("haplane-lab-{}", st.name),
        st.masters
            .iter()
            .map(|m| (m.name.clone(), format!("http://{}:2380", m.address))),
    );
    let (a, p) = (node.address, st.etcd_port);
    let clients = [format!("http://{a}:{p}"), format!("http://127.0.0.1:{p}")];
    let mut argv = vec!["etcd".to_string()];
    argv.extend(
        cluster
            .member_args(&node.name, &st.etcd_data(&node.name), &clients)
            .unwrap_or_default(),
    );
    // etcd's defaults (1000 and 100), said out loud, unless `lab up --etcd-election-timeout`
    // asked otherwise: a raft election bounds every failover that takes etcd's leader with it.
    // The heartbeat stays a tenth of the election timeout, as etcd's tuning guide advises.
    let election = st.etcd_election_timeout_ms;
    argv.extend([
        format!("--heartbeat-interval={}", (election / 10).max(10)),
        format!("--election-timeout={election}"),
        "--log-level=info".to_string(),
    ]);
    argv
}

/// The haplane daemon's command line on `node`.
pub fn haplane_argv(st: &LabState, node: &NodeInfo) -> Vec<String> {
    vec![
        st.haplane.display().to_string(),
        "run".to_string(),
        "--config".to_string(),
        st.config.display().to_string(),
        "--node".to_string(),
        node.name.clone(),
    ]
}

/// The kube-apiserver's command line on `node` (only with `--apiserver`).
pub fn apiserver_argv(st: &LabState, node: &NodeInfo, bin: &Path) -> Vec<String> {
    let key = st.dir.join("sa.key");
    let certs = st.dir.join("apiserver").join(&node.name);
    vec![
        bin.display().to_string(),
        format!("--etcd-servers=http://127.0.0.1:{}", st.etcd_port),
        format!("--bind-address={}", node.address),
        format!("--advertise-address={}", node.address),
        "--secure-port=6443".to_string(),
        format!("--cert-dir={}", certs.display()),
        "--service-cluster-ip-range=10.96.0.0/12".to_string(),
        "--service-account-issuer=https://kubernetes.default.svc".to_string(),
        format!("--service-account-key-file={}", key.display()),
        format!("--service-account-signing-key-file={}", key.display()),
        "--authorization-mode=AlwaysAllow".to_string(),
        format!("--etcd-prefix=/registry-{}", st.name),
    ]
}

/// Starts etcd on master `node`.
pub fn start_etcd(st: &LabState, node: &NodeInfo) -> Result<(), LabError> {
    start_detached(
        &node.netns,
        &etcd_argv(st, node),
        &st.log(&node.name, "etcd"),
    )
}

/// Starts haplane on `node`.
pub fn start_haplane(st: &LabState, node: &NodeInfo) -> Result<(), LabError> {
    start_detached(
        &node.netns,
        &haplane_argv(st, node),
        &st.log(&node.name, "haplane"),
    )
}

/// Starts the kube-apiserver on master `node`, when the lab has one.
pub fn start_apiserver(st: &LabState, node: &NodeInfo) -> Result<(), LabError> {
    match &st.apiserver {
        Some(bin) => start_detached(
            &node.netns,
            &apiserver_argv(st, node, bin),
            &st.log(&node.name, "apiserver"),
        ),
        None => Ok(()),
    }
}

/// Starts whatever of etcd, apiserver and haplane is not running on `node`.
pub fn ensure_running(st: &LabState, node: &NodeInfo) -> Result<(), LabError> {
    if st.is_master(&node.name) {
        if find(node, Kind::Etcd).is_empty() {
            start_etcd(st, node)?;
        }
        if st.apiserver.is_some() && find(node, Kind::Apiserver).is_empty() {
            start_apiserver(st, node)?;
        }
    }
    if find(node, Kind::Haplane).is_empty() {
        start_haplane(st, node)?;
    }
    Ok(())
}
