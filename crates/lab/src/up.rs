//! `lab up` and `lab down`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::LabError;
use crate::procs;
use crate::state::{LabState, NodeInfo, state_dir};
use crate::status::ClusterView;

/// The lab's VIP: outside netlab's host range (.11 upwards).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

/// The elections every lab runs: stand-ins for the controller-manager and the scheduler.
pub const ELECTIONS: [&str; 2] = ["controller-manager", "scheduler"];

/// Options of `lab up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab's name.
    pub name: String,
    /// Number of masters.
    pub masters: usize,
    /// Number of workers.
    pub workers: usize,
    /// Number of dedicated balancer nodes (0: the masters carry the VIP).
    pub lb_nodes: usize,
    /// A kube-apiserver binary to run on each master.
    pub apiserver: Option<std::path::PathBuf>,
    /// `quorum` or `none`.
    pub fencing: String,
    /// `vip.preempt`: whether a returning higher-priority node takes the VIP back.
    pub preempt: bool,
    /// etcd's `--election-timeout` in ms (etcd's default 1000); the heartbeat is a tenth of it.
    pub etcd_election_timeout_ms: u64,
    /// The haplane binary.
    pub haplane: std::path::PathBuf,
}

/// The cluster file for the lab.
pub fn cluster_file(st: &LabState) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by `haplane lab up`; the same file on every node."
    );
    let _ = writeln!(
        y,
        "cluster: lab-{}",
        st.name.to_lowercase().replace('_', "-")
    );
    let _ = writeln!(y, "nodes:");
    // The VIP's nodes get falling priorities; masters behind lb nodes run no VRRP, so theirs
    // stays the default (another would be a warning: it has no effect).
    for (i, n) in st.vip_nodes().iter().enumerate() {
        let _ = writeln!(
            y,
            "  - {{name: {}, address: {}, priority: {}, roles: [{}]}}",
            n.name,
            n.address,
            110 - 5 * i.min(20),
            st.role(&n.name)
        );
    }
    if !st.lbs.is_empty() {
        for m in &st.masters {
            let _ = writeln!(
                y,
                "  - {{name: {}, address: {}, roles: [master]}}",
                m.name, m.address
            );
        }
    }
    for w in &st.workers {
        let _ = writeln!(
            y,
            "  - {{name: {}, address: {}, roles: [worker]}}",
            w.name, w.address
        );
    }
    let p = st.port;
    // The drill's client gives up on a request after 200 ms. A frozen member's kernel still
    // completes the handshake, so only the check finds it: a 200 ms timeout marks it dead
    // within two checks (about 0.6 s, not 1.2 s with 500 ms). And a connect to a member that is
    // gone (no SYN-ACK) is abandoned after 100 ms and retried on the next backend, inside the
    // client's deadline; the lab's LAN answers in well under a millisecond.
    let check = if st.apiserver.is_some() {
        "{type: https, path: /readyz, insecureSkipVerify: true, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}"
    } else {
        // etcd's /health is 503 without a leader or quorum, so a minority member is skipped.
        "{type: http, path: /health, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}"
    };
    let _ = write!(
        y,
        r#"vip:
  address: {vip}/24
  interface: eth0
  vrid: 51
  version: 3
  advertInterval: 100ms
  # {preempt_why}
  preempt: {preempt}
  fencing: {fencing}
status: {{listen: "127.0.0.1:{status}"}}
loadBalancer:
  listen: ["vip:{p}"]
  nodeLocalListen: ["127.0.0.1:{p}"]
  backends: [{backends}]
  healthCheck: {check}
  connectTimeout: 100ms
  drainTimeout: 2s
etcd:
  leaseTtl: 2s
  dialTimeout: 1s
elections:
"#,
        vip = st.vip,
        fencing = st.fencing,
        preempt = st.preempt,
        preempt_why = if st.preempt {
            "Preemption (haplane's default): a returning higher-priority node takes the VIP back."
        } else {
            "No preemption: a healed node does not take the VIP back (one move per fault)."
        },
        status = st.status_port,
        // Explicit backends: without --apiserver the masters' etcd client port stands in for
        // the apiserver, and apiServer.port may not name etcd's port.
        backends = st
            .masters
            .iter()
            .map(|m| format!("{{address: \"{}:{p}\"}}", m.address))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for e in &st.elections {
        let _ = writeln!(
            y,
            // `exec -a`: the singleton's process names its election (lab chaos counts them).
            "  - {{name: {e}, exec: {{command: [bash, -c, 'exec -a haplane-singleton-{e} sleep infinity'], grace: 1s}}}}"
        );
    }
    y
}

/// Writes the cluster file and has the lab's haplane binary check it. `stateDir` (the fence
/// marker's home, kept inside the lab so labs never share it) is left out for a binary that
/// predates the key.
fn write_cluster_file(st: &LabState) -> Result<(), LabError> {
    let full = cluster_file(st);
    let state_dir = format!("stateDir: {}\n", st.dir.join("haplane").display());
    let mut detail = String::new();
    for yaml in [format!("{full}{state_dir}"), full] {
        std::fs::write(&st.config, &yaml).map_err(|error| LabError::Io {
            path: st.config.clone(),
            error,
        })?;
        let out = std::process::Command::new(&st.haplane)
            .arg("check")
            .arg("--config")
            .arg(&st.config)
            .output()
            .map_err(|error| LabError::Spawn {
                command: format!("{} check", st.haplane.display()),
                error,
            })?;
        if out.status.success() {
            return Ok(());
        }
        detail = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !detail.contains("stateDir") {
            break;
        }
    }
    Err(LabError::StartFailed {
        command: "haplane check".into(),
        detail,
    })
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `lab up`: builds the topology, starts the daemons, waits until healthy, prints the map.
pub fn up(opts: &UpOptions) -> Result<LabState, LabError> {
    if opts.masters == 0 || opts.masters > 7 || opts.workers > 8 || opts.lb_nodes > 4 {
        return Err(LabError::BadArgs(
            "--masters must be 1..=7, --workers 0..=8 and --lb-nodes 0..=4".into(),
        ));
    }
    netlab::check_environment()?;
    if find_program("etcd").is_none() {
        return Err(LabError::Missing(
            "etcd (apt-get install etcd-server)".into(),
        ));
    }
    if !opts.haplane.is_file() {
        return Err(LabError::Missing(format!(
            "the haplane binary {}",
            opts.haplane.display()
        )));
    }
    let dir = state_dir(&opts.name);
    if netlab::list_labs()?.contains(&opts.name) || dir.join("state.json").exists() {
        return Err(LabError::Exists(opts.name.clone()));
    }
    let started = Instant::now();
    let masters: Vec<String> = (1..=opts.masters).map(|i| format!("m{i}")).collect();
    let lbs: Vec<String> = (1..=opts.lb_nodes).map(|i| format!("lb{i}")).collect();
    let workers: Vec<String> = (1..=opts.workers).map(|i| format!("w{i}")).collect();
    // Masters first, so they keep their addresses with or without lb nodes.
    let mut topo = netlab::Topology::builder()
        .lab_name(&opts.name)
        .hosts(masters.iter().chain(lbs.iter()).chain(workers.iter()))
        .build()?;
    // From here on a failure must not leave half a lab behind.
    let result = (|| {
        let info = |name: &String| -> Result<NodeInfo, LabError> {
            let h = topo.host(name)?;
            Ok(NodeInfo {
                name: name.clone(),
                address: h.address(),
                netns: h.ns_name().to_string(),
            })
        };
        let st = LabState {
            name: opts.name.clone(),
            dir: dir.clone(),
            config: dir.join("cluster.yaml"),
            haplane: std::fs::canonicalize(&opts.haplane).unwrap_or(opts.haplane.clone()),
            vip: VIP,
            port: if opts.apiserver.is_some() { 6443 } else { 2379 },
            etcd_port: 2379,
            status_port: 9470,
            fencing: opts.fencing.clone(),
            preempt: opts.preempt,
            etcd_election_timeout_ms: opts.etcd_election_timeout_ms,
            masters: masters.iter().map(info).collect::<Result<_, _>>()?,
            lbs: lbs.iter().map(info).collect::<Result<_, _>>()?,
            workers: workers.iter().map(info).collect::<Result<_, _>>()?,
            apiserver: opts.apiserver.clone(),
            elections: ELECTIONS.iter().map(|s| s.to_string()).collect(),
        };
        for d in [dir.join("logs"), dir.join("etcd")] {
            std::fs::create_dir_all(&d).map_err(|error| LabError::Io { path: d, error })?;
        }
        write_cluster_file(&st)?;
        st.save()?;
        if st.apiserver.is_some() {
            let key = dir.join("sa.key");
            let out = std::process::Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&key)
                .arg("2048")
                .output()
                .map_err(|error| LabError::Spawn {
                    command: "openssl genrsa".into(),
                    error,
                })?;
            if !out.status.success() {
                return Err(LabError::StartFailed {
                    command: "openssl genrsa".into(),
                    detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        for m in &st.masters {
            procs::start_etcd(&st, m)?;
        }
        for m in &st.masters {
            procs::start_apiserver(&st, m)?;
        }
        for n in st.nodes() {
            procs::start_haplane(&st, n)?;
        }
        crate::view::wait_healthy(&st, &topo, Duration::from_secs(60)).map_err(|p| {
            LabError::NotHealthy {
                detail: p,
                logs: dir.join("logs"),
            }
        })?;
        Ok(st)
    })();
    match result {
        Ok(st) => {
            topo.persist();
            tracing::info!(lab = %st.name, elapsed = ?started.elapsed(), "lab up");
            Ok(st)
        }
        Err(e) => {
            // Keep the logs for the post-mortem, remove everything else.
            let _ = topo.destroy();
            kill_strays(&dir);
            let _ = std::fs::remove_file(dir.join("state.json"));
            Err(e)
        }
    }
}

/// The map `lab up` prints.
pub fn describe(st: &LabState, v: &ClusterView) -> String {
    let mut s = String::new();
    let w1 = st.workers.first().map(|w| w.netns.clone());
    let lbs = if st.lbs.is_empty() {
        String::new()
    } else {
        format!("{} lb nodes, ", st.lbs.len())
    };
    let _ = writeln!(
        s,
        "lab {} is up: {} masters, {lbs}{} workers, switch {}",
        st.name,
        st.masters.len(),
        st.workers.len(),
        format_args!("hpl-lab-{}-sw", st.name)
    );
    let what = if st.apiserver.is_some() {
        format!("kube-apiserver on {}", st.port)
    } else {
        format!(
            "etcd's client API on {} (no kube-apiserver is packaged for this OS; pass --apiserver PATH)",
            st.port
        )
    };
    let _ = writeln!(
        s,
        "VIP {} held by {} (fencing {}, preempt {}); the balancers serve {what}",
        st.vip,
        v.vip_holders.join(","),
        st.fencing,
        st.preempt
    );
    let _ = writeln!(s);
    for m in &st.masters {
        if st.lbs.is_empty() {
            let _ = writeln!(
                s,
                "  {:<4} {:<13} etcd + haplane (VIP, balancer on {}:{}, elections)  netns {}",
                m.name, m.address, st.vip, st.port, m.netns
            );
        } else {
            let _ = writeln!(
                s,
                "  {:<4} {:<13} etcd + haplane (elections; no VRRP, no balancer)  netns {}",
                m.name, m.address, m.netns
            );
        }
    }
    for n in &st.lbs {
        let _ = writeln!(
            s,
            "  {:<4} {:<13} haplane (VIP, balancer on {}:{} to the masters; no etcd) netns {}",
            n.name, n.address, st.vip, st.port, n.netns
        );
    }
    for w in &st.workers {
        let _ = writeln!(
            s,
            "  {:<4} {:<13} haplane node-local balancer on 127.0.0.1:{}      netns {}",
            w.name, w.address, st.port, w.netns
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "state, cluster file, logs: {}", st.dir.display());
    if let Some(ns) = w1 {
        let _ = writeln!(
            s,
            "through the VIP:       ip netns exec {ns} etcdctl --endpoints http://{}:{} endpoint status",
            st.vip, st.port
        );
        let _ = writeln!(
            s,
            "through the node-local balancer: ip netns exec {ns} etcdctl --endpoints http://127.0.0.1:{} put k v",
            st.port
        );
    }
    let _ = writeln!(
        s,
        "a daemon's status:     ip netns exec {} curl -s 127.0.0.1:{}/status",
        st.vip_nodes()[0].netns,
        st.status_port
    );
    let _ = writeln!(s, "the cluster table:     haplane status --lab {}", st.name);
    let _ = writeln!(
        s,
        "the drill:             haplane lab drill --name {} --report drill.html",
        st.name
    );
    let _ = writeln!(
        s,
        "remove it:             haplane lab down --name {}",
        st.name
    );
    s
}

/// Kills processes outside any lab namespace that still run from this lab's state directory
/// (their namespace was deleted under them by a killed run).
pub fn kill_strays(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let me = std::process::id() as i32;
    let mut killed = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        // Our daemons name a file of the state dir (--config, --data-dir) on their command line.
        if cmd.contains(&format!("{needle}/")) && !procs::gone(pid) {
            procs::signal_all(&[pid], nix::sys::signal::Signal::SIGKILL);
            killed.push(pid);
        }
    }
    procs::wait_gone(&killed, Duration::from_secs(3));
    killed
}

/// `lab down`: idempotent; also cleans what a killed run left.
pub fn down(name: &str) -> Result<String, LabError> {
    let dir = state_dir(name);
    let mut removed = Vec::new();
    // Stop the daemons first so none is caught half-way by the namespace removal.
    if let Ok(st) = LabState::load(name) {
        for n in st.nodes() {
            let pids = procs::pids_in(&n.netns);
            procs::signal_all(&pids, nix::sys::signal::Signal::SIGKILL);
            procs::wait_gone(&pids, Duration::from_secs(3));
        }
    }
    match netlab::destroy_lab(name) {
        Ok(ns) => removed.extend(ns),
        Err(netlab::Error::NoSuchLab(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let strays = kill_strays(&dir);
    let stale = netlab::cleanup_stale().unwrap_or_default();
    let had_dir = dir.exists();
    if had_dir {
        std::fs::remove_dir_all(&dir).map_err(|error| LabError::Io {
            path: dir.clone(),
            error,
        })?;
    }
    Ok(
        if removed.is_empty() && strays.is_empty() && !had_dir && stale.is_empty() {
            format!("lab {name}: nothing to remove")
        } else {
            format!(
                "lab {name} removed: {} namespaces, {} stray processes, state dir {}{}",
                removed.len(),
                strays.len(),
                if had_dir { "deleted" } else { "absent" },
                if stale.is_empty() {
                    String::new()
                } else {
                    format!("; {} stale test namespaces", stale.len())
                }
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(masters: usize, workers: usize, apiserver: bool) -> LabState {
        state_with_lbs(masters, 0, workers, apiserver)
    }

    fn state_with_lbs(masters: usize, lbs: usize, workers: usize, apiserver: bool) -> LabState {
        let node = |name: String, i: u8| NodeInfo {
            name,
            address: Ipv4Addr::new(192, 0, 2, 10 + i),
            netns: String::new(),
        };
        LabState {
            name: "t".into(),
            dir: "/run/haplane-lab/t".into(),
            config: "/run/haplane-lab/t/cluster.yaml".into(),
            haplane: "/bin/haplane".into(),
            vip: VIP,
            port: if apiserver { 6443 } else { 2379 },
            etcd_port: 2379,
            status_port: 9470,
            fencing: "quorum".into(),
            preempt: false,
            etcd_election_timeout_ms: 1000,
            masters: (1..=masters)
                .map(|i| node(format!("m{i}"), i as u8))
                .collect(),
            lbs: (1..=lbs)
                .map(|i| node(format!("lb{i}"), 10 + i as u8))
                .collect(),
            workers: (1..=workers)
                .map(|i| node(format!("w{i}"), 20 + i as u8))
                .collect(),
            apiserver: apiserver.then(|| "/bin/kube-apiserver".into()),
            elections: ELECTIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_lab_cluster_file_passes_the_same_rules_as_check_and_plan() {
        for apiserver in [false, true] {
            let text = cluster_file(&state(3, 1, apiserver));
            let (c, warnings) = config::Cluster::from_yaml(&text, Path::new("lab.yaml"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(warnings.is_empty(), "{warnings:#?}\n{text}");
            assert_eq!(c.lb_backends().len(), 3);
        }
    }

    #[test]
    fn with_lb_nodes_only_they_run_vrrp_and_the_balancer_reaches_the_masters() {
        let text = cluster_file(&state_with_lbs(3, 2, 1, false));
        let (c, warnings) = config::Cluster::from_yaml(&text, Path::new("lab.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(warnings.is_empty(), "{warnings:#?}\n{text}");
        let vrrp: Vec<&str> = c.vrrp_nodes().map(|n| n.name.as_str()).collect();
        assert_eq!(vrrp, ["lb1", "lb2"], "{text}");
        let lb1 = c.node("lb1").unwrap();
        assert!(c.uses_etcd(lb1) && !c.runs_elections(lb1), "{text}");
        // The worker's node-local balancer and the lb nodes both point at the masters.
        let backends: Vec<String> = c
            .lb_backends()
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        assert_eq!(
            backends,
            ["192.0.2.11:2379", "192.0.2.12:2379", "192.0.2.13:2379"]
        );
        assert_eq!(c.etcd_members().len(), 3);
    }

    #[test]
    fn etcd_runs_the_chosen_election_timeout_with_a_tenth_of_it_as_heartbeat() {
        let mut st = state(3, 1, false);
        let argv = crate::procs::etcd_argv(&st, &st.masters[0]);
        assert!(
            argv.contains(&"--election-timeout=1000".to_string()),
            "{argv:?}"
        );
        assert!(
            argv.contains(&"--heartbeat-interval=100".to_string()),
            "{argv:?}"
        );
        st.etcd_election_timeout_ms = 500;
        let argv = crate::procs::etcd_argv(&st, &st.masters[0]);
        assert!(
            argv.contains(&"--election-timeout=500".to_string()),
            "{argv:?}"
        );
        assert!(
            argv.contains(&"--heartbeat-interval=50".to_string()),
            "{argv:?}"
        );
    }

    #[test]
    fn a_state_file_written_before_the_election_timeout_option_reads_as_etcds_default() {
        let mut v = serde_json::to_value(state(3, 1, false)).unwrap();
        v.as_object_mut()
            .unwrap()
            .remove("etcd_election_timeout_ms");
        let st: LabState = serde_json::from_value(v).unwrap();
        assert_eq!(st.etcd_election_timeout_ms, 1000);
    }
}
