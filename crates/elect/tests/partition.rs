//! Acceptance in network namespaces (netlab): three hosts, each running an etcd member and an
//! `elect_node` with an exec action. The leader's host is partitioned from the other two; it must
//! stop before another host starts, and exactly one holds after the heal.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn leader_partitioned_from_the_majority_stops_before_another_starts_and_one_holds_after_heal() {
    netlab::require_root!();
    let topo = netlab::Topology::builder()
        .hosts(["m1", "m2", "m3"])
        .build()
        .unwrap();
    let hosts: Vec<&netlab::Host> = topo.hosts().iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let cluster = netlab::EtcdCluster::new(
        format!("partition-{}", std::process::id()),
        hosts
            .iter()
            .map(|h| (h.name().to_string(), format!("http://{}:2380", h.address()))),
    );
    let mut etcds = Vec::new();
    for h in &hosts {
        let (a, n) = (h.address(), h.name());
        let mut c = h.command("etcd");
        c.args(
            cluster
                .member_args(n, &dir.path().join(n), &[format!("http://{a}:2379")])
                .expect("a member"),
        )
        .arg("--log-level=error")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join(format!("{n}.log"))).unwrap());
        etcds.push(h.spawn(c).unwrap());
    }
    let endpoints: Vec<String> = hosts
        .iter()
        .map(|h| format!("http://{}:2379", h.address()))
        .collect();
    let marker = format!("{}.{}", 800_000 + std::process::id() % 90_000, 7);
    // Wait for the cluster through one host.
    let ok = wait_until(Duration::from_secs(30), || {
        hosts[0]
            .run(&[
                "etcdctl",
                "--endpoints",
                &endpoints.join(","),
                "--command-timeout=1s",
                "endpoint",
                "health",
            ])
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    assert!(ok.is_some(), "etcd cluster healthy");
    let mut nodes = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut c = h.command(example("elect_node"));
        c.args(["--endpoints", &endpoints.join(",")])
            .args(["--name", "partition", "--identity", &format!("node{i}")])
            .args(["--exec", "sleep", &marker])
            .env("ETCDCTL_API", "3")
            .env("RUST_LOG", "warn");
        nodes.push(h.spawn(c).unwrap());
    }
    let pids: Vec<i32> = nodes.iter().map(|n| n.pid() as i32).collect();
    let holders = || -> Vec<usize> {
        running_with_argv(&["sleep", &marker])
            .iter()
            .filter_map(|p| pids.iter().position(|n| descends_from(p.pid, *n)))
            .collect()
    };
    let mut h = Vec::new();
    wait_until(Duration::from_secs(20), || {
        h = holders();
        h.len() == 1
    })
    .expect("one holder");
    let old = h[0];
    let others: Vec<&netlab::Host> = (0..3).filter(|i| *i != old).map(|i| hosts[i]).collect();
    let t0 = Instant::now();
    let cut = topo.partition(&[hosts[old]], &others).unwrap();
    let (mut released, mut acquired, mut max) = (None, None, 0);
    while t0.elapsed() < Duration::from_secs(10) && acquired.is_none() {
        let h = holders();
        max = max.max(h.len());
        if released.is_none() && !h.contains(&old) {
            released = Some(t0.elapsed());
        }
        if h.iter().any(|n| *n != old) {
            acquired = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("partition: old stopped at {released:?}, new started at {acquired:?}");
    let (released, acquired) = (
        released.expect("old stopped"),
        acquired.expect("new started"),
    );
    assert!(released < acquired, "the cut-off leader stopped first");
    assert_eq!(max, 1, "never two holders");
    cut.heal().unwrap();
    // The rejoining member may disrupt the raft term (etcd 3.4 has no pre-vote by default),
    // which can cost the current holder its session; sample until one holder is stable.
    let t1 = Instant::now();
    let mut stable_since: Option<Instant> = None;
    while t1.elapsed() < Duration::from_secs(15) {
        let h = holders();
        assert!(h.len() <= 1, "two holders after the heal: {h:?}");
        match (h.len(), stable_since) {
            (1, None) => stable_since = Some(Instant::now()),
            (1, Some(t)) if t.elapsed() > Duration::from_secs(2) => break,
            (1, Some(_)) => {}
            _ => stable_since = None,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("after heal: one stable holder after {:?}", t1.elapsed());
    assert!(
        stable_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)),
        "exactly one holder after the heal"
    );
}
