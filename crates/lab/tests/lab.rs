//! Acceptance tests of issue 6: `lab up`, `drill --json`, `status`, `down`, on real etcd and
//! the real haplane binary in network namespaces. They assert structure and zero lost writes,
//! not timings (except the bounds the issue itself gives, with margins).

mod common;

use std::net::IpAddr;

use common::{Down, haplane_exe, one_lab_at_a_time};
use lab::drill::{self, Placement, Scenario};
use lab::{LabState, up, view};

fn options(name: &str) -> up::UpOptions {
    fenced(name, "quorum")
}

fn fenced(name: &str, fencing: &str) -> up::UpOptions {
    up::UpOptions {
        name: name.to_string(),
        masters: 3,
        workers: 1,
        lb_nodes: 0,
        apiserver: None,
        fencing: fencing.into(),
        preempt: false,
        etcd_election_timeout_ms: 1000,
        haplane: haplane_exe(),
    }
}

/// Nothing of lab `name` is left: no namespace, no process running from its state dir, no dir.
fn assert_nothing_left(name: &str) {
    let prefix = format!("hpl-lab-{name}-");
    let left: Vec<String> = netlab::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let dir = lab::state::state_dir(name);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let needle = format!("{}/", dir.display());
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}

#[test]
fn lab_drill_loses_no_acknowledged_write_and_down_leaves_nothing() {
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("t{}", std::process::id());
    let _guard = Down(name.clone());
    let st = up::up(&options(&name)).expect("lab up");

    // Status agrees with reality: the holder it names is the namespace that has the VIP.
    let topo = netlab::Topology::open(&name).unwrap();
    let view = view::lab_view(&st, &topo);
    assert_eq!(view.vip_holders.len(), 1, "one holder: {view:?}");
    let vip = IpAddr::V4(st.vip);
    let really: Vec<&str> = st
        .masters
        .iter()
        .filter(|m| topo.host(&m.name).unwrap().has_address(vip).unwrap())
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        view.vip_holders, really,
        "status names the namespace with the VIP"
    );
    assert_eq!(view.nodes.len(), 4);
    assert!(view.etcd_leader.is_some(), "an etcd leader: {view:?}");
    let json = serde_json::to_value(&view).unwrap();
    assert!(json["nodes"][0]["etcd"]["healthy"].as_bool().unwrap());

    // `status --config` from the worker: etcd health of every member at its address, and the
    // worker's own daemon on its loopback listener.
    let w1 = topo.host("w1").unwrap();
    let from_w1 = w1
        .enter(|| lab::status_from_config(&st.config))
        .unwrap()
        .unwrap();
    let row = |n: &str| from_w1.nodes.iter().find(|r| r.name == n).unwrap().clone();
    assert!(row("w1").reachable, "w1's own daemon: {from_w1:?}");
    assert_eq!(row("w1").lb_up, Some(3));
    for m in ["m1", "m2", "m3"] {
        assert!(
            row(m).etcd.unwrap().healthy,
            "{m} etcd from w1: {from_w1:?}"
        );
    }
    assert_eq!(from_w1.etcd_leader, view.etcd_leader);

    // The drill: every scenario with etcd's leader away from the fault, then one crash with
    // the leader on the crashed holder (the two placements of issue 14), as JSON.
    let mut opts = drill::DrillOptions::new(&Scenario::ALL, &[Placement::Elsewhere]);
    opts.steps.push(drill::Step {
        scenario: Scenario::HolderCrash,
        placement: Placement::Target,
    });
    let r = drill::run(&LabState::load(&name).unwrap(), &opts).expect("drill");
    println!("{}", lab::summary::text(&r));
    let json = serde_json::to_value(&r).unwrap();
    let scenarios = json["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = Scenario::ALL.map(|s| s.name()).to_vec();
    want.push("holder-crash");
    assert_eq!(names, want);
    for s in &r.scenarios {
        assert!(
            s.completed && s.recovered,
            "{} completed and recovered: {:?}",
            s.name,
            s.notes
        );
        assert_eq!(s.paths.len(), 2);
        for p in &s.paths {
            assert!(
                p.verify_error.is_none(),
                "{}/{}: read-back {:?}",
                s.name,
                p.path,
                p.verify_error
            );
            assert!(
                p.acked > 0,
                "{}/{}: some writes acknowledged",
                s.name,
                p.path
            );
            assert_eq!(p.lost, 0, "{}/{}: acknowledged writes lost", s.name, p.path);
        }
        assert!(s.vip_samples > 100, "{}: sampled every 10 ms", s.name);
        assert!(s.arp_samples > 100, "{}: probed every 10 ms", s.name);
        assert!(
            s.timeline.answers.iter().any(|a| a.value != "none"),
            "{}: some node answered ARP for the VIP: {:?}",
            s.name,
            s.timeline.answers
        );
        assert!(!s.timeline.vip.is_empty() && s.timeline.markers.len() >= 2);
        assert!(s.after_heal.is_some(), "{}: the return is measured", s.name);
        // The placement took: the leader was where the step wanted it at the fault.
        let on_target = s.etcd_leader_before == s.target;
        match s.etcd_leader.as_str() {
            "elsewhere" => assert!(!on_target, "{}: leader elsewhere: {s:?}", s.name),
            "target" => assert!(on_target, "{}: leader on target: {s:?}", s.name),
            other => panic!("placement {other}"),
        }
    }
    assert_eq!(
        r.stats.len(),
        Scenario::ALL.len() + 1,
        "one row per scenario and placement"
    );
    assert_eq!(r.lost_writes, 0);
    // Issue 6 and 10: with the service dying on the holder, the balancer hides the dead
    // backend from new connections (a refused connect moves on to the next backend, so the
    // client never sees "refused") and the gap stays under 1 s. What can fail is what was in
    // flight while the process died: the request on the keep-alive session to it, and one
    // connection the kernel accepted into the dying process's backlog before its listener
    // closed (SIGKILL of a many-threaded etcd is not instantaneous). A write that only timed
    // out (200 ms) reached a live member that answered late: etcd's latency, not the balancer.
    let dies = &r.scenarios[1];
    let errors = &dies.paths[0].errors;
    let not_timeouts = dies.paths[0].failed - errors.get("timeout").copied().unwrap_or(0);
    assert!(
        not_timeouts <= 2 && !errors.contains_key("refused"),
        "service-dies via VIP: {:?}",
        dies.paths[0]
    );
    assert!(
        dies.paths[0].longest_gap_ms < 1000,
        "service-dies via VIP: {:?}",
        dies.paths[0]
    );
    // And those were in flight at the kill: each started before it or in the few hundred ms
    // the dying process takes to close its sockets, none later (by then a connect to it is
    // refused and the balancer moves on). Release build, 20 runs: at most one such failure
    // ('closed': the keep-alive session's request), the fault's gap 9-23 ms (docs/lab.md).
    let fault = dies.paths[0]
        .fault
        .as_ref()
        .expect("service-dies has a fault");
    for f in fault.failures.iter().filter(|f| f.error != "timeout") {
        assert!(
            f.start_ms < 500,
            "service-dies via VIP: a request that started {} ms after the kill failed ({}): {:?}",
            f.start_ms,
            f.error,
            dies.paths[0]
        );
    }
    // Fenced mode: the partitioned holder lets go before anyone else takes the VIP.
    let cut = &r.scenarios[3];
    assert_eq!(
        cut.split_brain_samples, 0,
        "fenced partition split brain: {:?}",
        cut.timeline.vip
    );

    // Issue 10: the maintenance scenario moves the VIP away from the holder and measures its
    // long-lived streams and new connections (the zero-failure behaviour itself is pinned by
    // crates/haplane/tests/maintenance.rs; here, that the drill measures it).
    let m = r
        .scenarios
        .iter()
        .find(|s| s.name == "maintenance")
        .unwrap();
    let streams = m.streams.as_ref().expect("maintenance has its streams");
    assert_eq!(streams.streams, lab::streams::STREAMS, "{streams:?}");
    assert!(streams.requests > 50, "{streams:?}");
    assert_ne!(m.holder_after, m.holder_before, "the VIP moved");

    // The report is one self-contained file with a timeline per scenario.
    let html = lab::report::html(&r);
    assert_eq!(html.matches("<svg").count(), Scenario::ALL.len() + 1);
    assert!(!html.contains("<script") && !html.contains("http-equiv"));

    // Down removes everything, and is idempotent.
    let msg = up::down(&name).unwrap();
    assert!(msg.contains("removed"), "{msg}");
    assert_nothing_left(&name);
    assert!(up::down(&name).unwrap().contains("nothing to remove"));
}

/// Seed 004's topology (issue 9): two lb nodes carry the VIP in front of the three masters,
/// which run etcd and the elections but no VRRP; the worker's node-local balancer still points
/// at the masters. The holder-crash drill hits the lb node holding the VIP; `service-dies` has
/// nothing to kill there and is skipped with its reason.
#[test]
fn with_two_lb_nodes_a_crashed_lb_holder_loses_no_write_and_down_leaves_nothing() {
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("b{}", std::process::id());
    let _guard = Down(name.clone());
    let st = up::up(&up::UpOptions {
        lb_nodes: 2,
        ..options(&name)
    })
    .expect("lab up --lb-nodes 2");
    assert_eq!(
        st.lbs.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["lb1", "lb2"]
    );

    let topo = netlab::Topology::open(&name).unwrap();
    let view = view::lab_view(&st, &topo);
    assert_eq!(view.nodes.len(), 6, "{view:?}");
    // preempt false: whichever lb node won first keeps the VIP.
    assert_eq!(view.vip_holders.len(), 1, "one holder: {view:?}");
    let holder = view.vip_holders[0].clone();
    assert!(
        holder.starts_with("lb"),
        "an lb node holds the VIP: {view:?}"
    );
    let other = if holder == "lb1" { "lb2" } else { "lb1" };
    for n in &view.nodes {
        match n.role.as_str() {
            "lb" => {
                assert!(n.etcd.is_none(), "{}: no etcd member: {n:?}", n.name);
                assert_eq!(n.lb_total, Some(3), "{}: balances to the masters", n.name);
                let c = n
                    .etcd_client
                    .as_ref()
                    .expect("an etcd client for the fence");
                assert!(c.connected, "{}: {n:?}", n.name);
            }
            "master" => {
                assert_eq!(n.runs("vrrp"), Some(false), "{}: {n:?}", n.name);
                assert_eq!(n.vip_present, Some(false), "{}: {n:?}", n.name);
                assert!(n.lb_total.is_none(), "{}: no VIP balancer: {n:?}", n.name);
                assert!(n.etcd.as_ref().is_some_and(|e| e.healthy), "{n:?}");
            }
            _ => assert_eq!(n.lb_total, Some(3), "the worker balances to the masters"),
        }
    }
    let table = lab::status::render_table(&view);
    assert!(
        table.lines().any(|l| l.starts_with("lb1 ")
            && l.contains(" lb ")
            && l.contains("client, ")
            && l.contains("/3 members up")),
        "{table}"
    );

    let opts = drill::DrillOptions::new(
        &[Scenario::HolderCrash, Scenario::ServiceDies],
        &[Placement::AsFound],
    );
    let r = drill::run(&LabState::load(&name).unwrap(), &opts).expect("drill");
    let text = lab::summary::text(&r);
    println!("{text}");
    assert_eq!(r.scenarios.len(), 1, "{text}");
    let crash = &r.scenarios[0];
    assert_eq!(crash.name, "holder-crash");
    assert_eq!(crash.target.as_deref(), Some(holder.as_str()), "{text}");
    // The VIP went to the other lb node and stayed off the crashed one (preempt false); no
    // master ever had it or answered for it.
    let lane = |segs: &[lab::timeline::Segment]| -> Vec<String> {
        segs.iter().map(|s| s.value.clone()).collect()
    };
    let vip_lane = lane(&crash.timeline.vip);
    let answers = lane(&crash.timeline.answers);
    for v in vip_lane.iter().chain(answers.iter()) {
        assert!(
            [holder.as_str(), other, "none"].contains(&v.as_str()),
            "{v} in the VIP lanes: {vip_lane:?} {answers:?}\n{text}"
        );
    }
    assert!(vip_lane.iter().any(|v| v == other), "{vip_lane:?}\n{text}");
    assert_ne!(
        vip_lane.last().map(String::as_str),
        Some(holder.as_str()),
        "{text}"
    );
    assert_ne!(
        crash.holder_after.as_deref(),
        Some(holder.as_str()),
        "{text}"
    );
    assert!(crash.completed && crash.recovered, "{text}");
    assert_eq!(r.split_brain_samples, 0, "{text}");
    assert_eq!(r.address_split_samples, 0, "{text}");
    assert_eq!(r.lost_writes, 0, "{text}");
    assert!(crash.paths.iter().all(|p| p.acked > 0), "{text}");
    assert!(r.passed(), "{text}");
    assert_eq!(r.skipped.len(), 1, "{text}");
    assert!(
        text.contains("skipped: service-dies: the VIP is held by an lb node"),
        "{text}"
    );

    drop(topo);
    println!("{}", up::down(&name).unwrap());
    assert_nothing_left(&name);
}

#[test]
fn without_fencing_the_drill_reports_the_partition_as_split_brain() {
    // Issue 14: the drill must be able to tell split brain. Plain VRRP (`--fencing none`)
    // cut in two keeps a master on each side, both answering ARP for the VIP (keepalived
    // does the same: two holders in 62 % of samples, reference.md).
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("u{}", std::process::id());
    let _guard = Down(name.clone());
    let st = up::up(&fenced(&name, "none")).expect("lab up");
    let r = drill::run(
        &st,
        &drill::DrillOptions::new(&[Scenario::HolderPartitioned], &[Placement::AsFound]),
    )
    .expect("drill");
    println!("{}", lab::summary::text(&r));
    let cut = &r.scenarios[0];
    assert!(cut.completed, "{:?}", cut.notes);
    assert!(
        cut.split_brain_samples > 0,
        "two nodes answered for the VIP: {:?}",
        cut.timeline.answers
    );
    assert!(cut.address_split_samples > 0, "{:?}", cut.timeline.vip);
    assert!(!r.passed(), "a split brain fails the drill");
    assert_eq!(r.lost_writes, 0, "etcd itself loses nothing");
}

#[test]
fn down_cleans_a_lab_whose_state_was_lost_by_a_killed_run() {
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("k{}", std::process::id());
    let _guard = Down(name.clone());
    let st = up::up(&options(&name)).expect("lab up");
    // A killed run: the state file is gone, the namespaces and daemons are not.
    std::fs::remove_file(st.dir.join("state.json")).unwrap();
    assert!(netlab::list_labs().unwrap().contains(&name));
    up::down(&name).unwrap();
    assert_nothing_left(&name);
}

#[test]
fn drill_and_status_of_a_missing_lab_say_so() {
    let e = LabState::load("nosuchlab_42").unwrap_err();
    assert!(e.to_string().contains("no lab named"), "{e}");
    assert!(
        up::down("nosuchlab_42")
            .unwrap()
            .contains("nothing to remove")
    );
}
