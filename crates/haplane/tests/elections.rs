//! Elections in the daemon (issue 4), with a real 3-member etcd cluster and haplane on each
//! master in network namespaces: an exec'd singleton runs on exactly one node; when its leader
//! is SIGKILLed, cut off by a link down, or frozen by SIGSTOP, another node runs it within
//! TTL + 1 s, and sampling every 10 ms never sees it on two nodes at once, even when the
//! whole node (haplane, etcd, the lease guard and the command) is frozen.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use support::{Cfg, Lab};

const MASTERS: [&str; 3] = ["m1", "m2", "m3"];
/// A command line no other test uses, so /proc tells us where the singleton runs.
const SINGLETON: &str = "86397";

fn lab() -> Lab {
    let mut cfg = Cfg::new(&[
        ("m1", "192.0.2.11", 150),
        ("m2", "192.0.2.12", 120),
        ("m3", "192.0.2.13", 100),
    ]);
    cfg.extra_vip = "  fencing: none\n".into();
    let mut lab = Lab::new(&MASTERS);
    lab.start_etcd(&MASTERS);
    let endpoints: Vec<String> = lab
        .etcd_endpoints(&MASTERS)
        .split(',')
        .map(|e| format!("\"{e}\""))
        .collect();
    let text = format!(
        "{}loadBalancer: {{enabled: false}}\netcd: {{endpoints: [{}], leaseTtl: 2s}}\nelections:\n  - {{name: singleton, exec: {{command: [sleep, \"{SINGLETON}\"], grace: 1s}}}}\nstateDir: {}\n",
        cfg.yaml(),
        endpoints.join(", "),
        lab.dir.path().join("state").display()
    );
    let path = lab.write("cluster.yaml", &text);
    for m in MASTERS {
        lab.start_haplane(m, &path);
    }
    lab
}

/// The hosts whose network namespace has a `sleep SINGLETON` process.
fn runners(lab: &Lab) -> Vec<String> {
    let inode_of = |ns: &str| {
        std::fs::metadata(format!("/run/netns/{ns}"))
            .map(|m| m.ino())
            .ok()
    };
    let hosts: Vec<(String, u64)> = MASTERS
        .iter()
        .filter_map(|h| inode_of(lab.host(h).ns_name()).map(|i| (h.to_string(), i)))
        .collect();
    let mut found = Vec::new();
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in proc.flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        if cmdline != format!("sleep\0{SINGLETON}\0").as_bytes() {
            continue;
        }
        let Ok(link) = std::fs::read_link(path.join("ns/net")) else {
            continue;
        };
        let link = link.to_string_lossy().to_string();
        for (host, ino) in &hosts {
            if link == format!("net:[{ino}]") && !found.contains(host) {
                found.push(host.clone());
            }
        }
    }
    found.sort();
    found
}

/// Wait until exactly one node runs the singleton; its name.
fn wait_single(lab: &Lab, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let now = runners(lab);
        if now.len() == 1 {
            return now[0].clone();
        }
        assert!(
            start.elapsed() < limit,
            "singleton runs on {now:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Inject `fault` on the leader; returns how long until another node ran it, and asserts that
/// no 10 ms sample saw two runners.
fn failover(lab: &Lab, fault: impl FnOnce(&str)) -> Duration {
    let leader = wait_single(lab, Duration::from_secs(20));
    // The TTL + 1 s bound is about the lease, not etcd's own raft election: if the fault also
    // took etcd's raft leader, a new raft leader renews every lease to a full TTL on promotion
    // (docs/elections.md). Keep etcd's leader on another node.
    lab.move_etcd_leader_off(&leader, &MASTERS);
    let start = Instant::now();
    fault(&leader);
    let mut took = None;
    while start.elapsed() < Duration::from_secs(10) {
        let now = runners(lab);
        assert!(
            now.len() <= 1,
            "two nodes ran the singleton at once: {now:?}\n{}",
            lab.logs()
        );
        if took.is_none() && now.len() == 1 && now[0] != leader {
            took = Some(start.elapsed());
            // Keep sampling for a while: the old leader must not come back while partitioned.
            if start.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    took.unwrap_or_else(|| panic!("no other node took over from {leader}\n{}", lab.logs()))
}

/// Issue 4's bound is TTL + 1 s = 3 s. The tests allow 0.5 s more for scheduling on a loaded
/// 2-core CI machine, and a link down another second: a peer's watch or keep-alive stream may
/// sit on the cut-off etcd member until its HTTP/2 ping (1 s, timeout 0.5 s) gives up. The
/// measured times are printed; docs/elections.md has the spread.
const BOUND: Duration = Duration::from_millis(3500);
const BOUND_LINK_DOWN: Duration = Duration::from_millis(4500);

#[test]
fn sigkill_of_the_leader_moves_the_singleton_within_ttl_plus_1s() {
    if support::skip() {
        return;
    }
    let lab = lab();
    let took = failover(&lab, |leader| {
        lab.haplane(leader).handle.kill().unwrap();
    });
    eprintln!("exec singleton after SIGKILL of its leader: moved in {took:?}");
    assert!(took <= BOUND, "{took:?}\n{}", lab.logs());
}

#[test]
fn a_leader_whose_link_goes_down_stops_and_another_starts_within_ttl_plus_1s() {
    if support::skip() {
        return;
    }
    let lab = lab();
    let took = failover(&lab, |leader| lab.host(leader).link_down().unwrap());
    eprintln!("exec singleton after its leader's link went down: moved in {took:?}");
    assert!(took <= BOUND_LINK_DOWN, "{took:?}\n{}", lab.logs());
}

#[test]
fn a_frozen_leader_loses_the_singleton_and_another_starts_within_ttl_plus_1s() {
    if support::skip() {
        return;
    }
    let lab = lab();
    let took = failover(&lab, |leader| lab.haplane(leader).handle.freeze().unwrap());
    eprintln!("exec singleton after SIGSTOP of its leader: moved in {took:?}");
    assert!(took <= BOUND, "{took:?}\n{}", lab.logs());
}

#[test]
fn status_shows_each_election_with_its_leader_and_lease_deadline() {
    if support::skip() {
        return;
    }
    let lab = lab();
    let leader = wait_single(&lab, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = lab.status(&leader);
        let e = &status["elections"][0];
        if e["role"] == "leader" {
            assert_eq!(e["name"], "singleton");
            assert_eq!(e["leader"], leader.as_str());
            assert!(
                e["lease_deadline_ms"].as_u64().is_some_and(|ms| ms <= 2000),
                "{e}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = lab.http_get(&leader, "/metrics");
    assert!(
        metrics.contains("haplane_election_leader{election=\"singleton\"} 1"),
        "{metrics}"
    );
    // The etcd client's view of every member: all up, exactly one preferred.
    let status = lab.status(&leader);
    let members = status["etcd"]["members"].as_array().expect("etcd.members");
    assert_eq!(members.len(), 3, "{status}");
    assert!(members.iter().all(|m| m["up"] == true), "{status}");
    assert_eq!(members.iter().filter(|m| m["preferred"] == true).count(), 1);
    assert!(
        metrics.contains("haplane_etcd_member_up{endpoint=\"http://192.0.2.11:2379\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("haplane_etcd_member_preferred{"),
        "{metrics}"
    );
}

/// Every process in `host`'s namespace, stopped until dropped (also on panic).
struct FrozenNode(Vec<nix::unistd::Pid>);

impl FrozenNode {
    /// SIGSTOP everything on the node, as `haplane lab chaos` `stop-node` does: haplane, its
    /// etcd member, the lease guard and the command.
    fn freeze(lab: &Lab, host: &str) -> FrozenNode {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", lab.host(host).ns_name()])
            .output()
            .expect("ip netns pids");
        let pids: Vec<_> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(nix::unistd::Pid::from_raw)
            .collect();
        assert!(pids.len() >= 4, "haplane, etcd, guard, command: {pids:?}");
        for p in &pids {
            let _ = nix::sys::signal::kill(*p, nix::sys::signal::Signal::SIGSTOP);
        }
        FrozenNode(pids)
    }
}

impl Drop for FrozenNode {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = nix::sys::signal::kill(*p, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// A whole frozen node can run nothing to fence its singleton, yet the singleton must not
/// outlive the lease (docs/lab.md, chaos seed 4: on thaw it ran again beside the new
/// leader's). The lease guard's kernel timer SIGKILLs the guard at the deadline plus the
/// fence grace and the command dies with it (parent-death signal), both while stopped: at no
/// 10 ms sample does the singleton exist on two nodes, not even as a stopped process, and
/// after the thaw it runs only on the new leader.
#[test]
fn a_wholly_frozen_leaders_singleton_is_gone_before_another_node_starts_it() {
    if support::skip() {
        return;
    }
    let lab = lab();
    let leader = wait_single(&lab, Duration::from_secs(20));
    lab.move_etcd_leader_off(&leader, &MASTERS);
    let frozen = FrozenNode::freeze(&lab, &leader);
    let start = Instant::now();
    let mut gone_at = None;
    let new = loop {
        let now = runners(&lab);
        assert!(
            now.len() <= 1,
            "the frozen {leader}'s singleton was still there when another node started it: {now:?} at {:?}\n{}",
            start.elapsed(),
            lab.logs()
        );
        if gone_at.is_none() && now.is_empty() {
            gone_at = Some(start.elapsed());
        }
        if now.len() == 1 && now[0] != leader {
            break now[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no other node took over from the frozen {leader}: {now:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    eprintln!(
        "whole-node freeze: the frozen singleton was gone at {gone_at:?}, {new} ran it at {took:?}"
    );
    drop(frozen);
    let thawed = Instant::now();
    while thawed.elapsed() < Duration::from_secs(2) {
        let now = runners(&lab);
        assert_eq!(
            now,
            std::slice::from_ref(&new),
            "after the thaw\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
