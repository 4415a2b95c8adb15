//! The VIP fenced by etcd quorum (issue 4): three masters, each with a real etcd member and
//! haplane. A holder cut off from the other masters (clients still reach everyone) never
//! shares the VIP, sampled every 10 ms; a crashed holder is replaced within
//! max(VRRP detection, lease TTL) + a little; a frozen holder loses the VIP by itself.

mod support;

use std::time::{Duration, Instant};

use support::{Cfg, Lab};

const MASTERS: [&str; 3] = ["m1", "m2", "m3"];

fn fenced_lab() -> Lab {
    let mut cfg = Cfg::new(&[
        ("m1", "192.0.2.11", 150),
        ("m2", "192.0.2.12", 120),
        ("m3", "192.0.2.13", 100),
    ]);
    cfg.extra_vip = "  fencing: quorum\n".into();
    let mut lab = Lab::new(&["m1", "m2", "m3", "c"]);
    lab.start_etcd(&MASTERS);
    let text = format!(
        "{}loadBalancer: {{enabled: false}}\netcd: {{endpoints: [{}], leaseTtl: 2s}}\nstateDir: {}\n",
        cfg.yaml(),
        lab.etcd_endpoints(&MASTERS)
            .split(',')
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", "),
        lab.dir.path().join("state").display()
    );
    let path = lab.write("cluster.yaml", &text);
    for m in MASTERS {
        lab.start_haplane(m, &path);
    }
    lab.wait_holders(&["m1"], Duration::from_secs(15));
    // Fencing is armed once each node has reached etcd.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !MASTERS
        .iter()
        .all(|m| lab.status(m)["fence"]["armed"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "fencing never armed\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.wait_holders(&["m1"], Duration::from_secs(10));
    lab
}

fn assert_never_two(samples: &[(Duration, Vec<String>)], lab: &Lab) {
    let split: Vec<_> = samples.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(
        split.is_empty(),
        "{} of {} samples had two VIP holders, first at {:?}: {:?}\n{}",
        split.len(),
        samples.len(),
        split[0].0,
        split[0].1,
        lab.logs()
    );
}

#[test]
fn a_holder_partitioned_from_the_other_masters_never_shares_the_vip() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab();
    assert_eq!(lab.status("m1")["fence"]["leader"], true, "{}", lab.logs());
    let ((), samples) = lab.sampling(|| {
        let m1 = lab.host("m1");
        let rest = [lab.host("m2"), lab.host("m3")];
        let partition = lab.topo.partition(&[m1], &rest).unwrap();
        // m2 (next priority) must end up holding it; m1 must have let go.
        lab.wait_holders(&["m2"], Duration::from_secs(15));
        lab.assert_holders_stay(&["m2"], Duration::from_secs(2));
        assert_eq!(
            lab.status("m1")["vrrp"][0]["state"],
            "FAULT",
            "m1 lost the etcd quorum"
        );
        partition.heal().unwrap();
        // After healing exactly one node holds it (m1 preempts back once it has quorum again).
        lab.wait_holders(&["m1"], Duration::from_secs(20));
        lab.assert_holders_stay(&["m1"], Duration::from_secs(1));
    });
    assert_never_two(&samples, &lab);
}

#[test]
fn a_crashed_holder_is_replaced_within_lease_ttl_plus_a_little_and_the_time_is_reported() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab();
    // Measure the fence, not an etcd raft election: when the crashed holder is also the etcd
    // leader, the new raft leader renews every lease to a full TTL on promotion, which adds a
    // raft election plus a TTL (docs/elections.md). Keep etcd's leader elsewhere.
    lab.move_etcd_leader_off("m1", &MASTERS);
    let (took, samples) = lab.sampling(|| {
        // The holder crashes: every process on it dies and its link goes down.
        let start = Instant::now();
        lab.host("m1").link_down().unwrap();
        for d in lab.daemons.iter().filter(|d| d.name.ends_with("on m1")) {
            let _ = d.handle.kill();
        }
        lab.wait_holders(&["m2"], Duration::from_secs(15));
        start.elapsed()
    });
    assert_never_two(&samples, &lab);
    // Goal (issue 4): max(VRRP detection = 3 × 100 ms + skew, lease TTL = 2 s) + 0.5 s.
    eprintln!(
        "fenced failover after a holder crash: {:.0} ms (goal 2500 ms)",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < Duration::from_millis(4000),
        "fenced failover took {took:?}\n{}",
        lab.logs()
    );
}

#[test]
fn a_frozen_holder_loses_the_vip_by_address_lifetime_before_another_node_takes_it() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab();
    let m1 = lab.haplane("m1");
    let ((), samples) = lab.sampling(|| {
        m1.handle.freeze().unwrap();
        lab.wait_holders(&["m2"], Duration::from_secs(15));
        m1.handle.thaw().unwrap();
        lab.wait_holders(&["m1"], Duration::from_secs(20));
    });
    assert_never_two(&samples, &lab);
}

#[test]
fn sigterm_resigns_so_the_next_master_holds_the_vip_without_waiting_for_the_lease() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab();
    let m1 = lab.haplane("m1");
    let (took, samples) = lab.sampling(|| {
        let start = Instant::now();
        m1.handle.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
        lab.wait_holders(&["m2"], Duration::from_secs(10));
        start.elapsed()
    });
    assert_never_two(&samples, &lab);
    eprintln!(
        "fenced graceful handover: {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < Duration::from_secs(2),
        "handover waited for the lease: {took:?}\n{}",
        lab.logs()
    );
}

#[test]
fn with_the_whole_etcd_cluster_unreachable_no_node_holds_the_vip_or_leads() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab();
    let etcds: Vec<&support::Daemon> = lab
        .daemons
        .iter()
        .filter(|d| d.name.starts_with("etcd on"))
        .collect();
    for e in &etcds {
        e.handle.freeze().unwrap();
    }
    // Safe state: the holder lets go at its lease deadline; every node goes to FAULT.
    lab.wait_holders(&[], Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !MASTERS
        .iter()
        .all(|m| lab.status(m)["vrrp"][0]["state"] == "FAULT")
    {
        assert!(
            Instant::now() < deadline,
            "not every node went to FAULT\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in MASTERS {
        let s = lab.status(m);
        assert_eq!(s["fence"]["leader"], false, "{m}: {s}");
        assert_eq!(s["fence"]["etcd_quorum"], false, "{m}: {s}");
    }
    lab.assert_holders_stay(&[], Duration::from_secs(1));
    // When etcd comes back, exactly one node holds the VIP again.
    for e in &etcds {
        e.handle.thaw().unwrap();
    }
    lab.wait_holders(&["m1"], Duration::from_secs(20));
}
