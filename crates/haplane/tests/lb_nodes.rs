//! Dedicated balancer nodes (seed 004, issue 9): two `lb` nodes run VRRP for the VIP and the
//! balancer in front of three masters; the masters run etcd (real members), the elections and
//! nginx standing in for their apiservers, and no VRRP and no VIP balancer. With quorum
//! fencing the lb nodes are clients of the masters' etcd for the VIP's election; they have no
//! member of their own.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{Lab, get, start_nginx};

const MASTERS: [&str; 3] = ["m1", "m2", "m3"];
const LBS: [&str; 2] = ["lb1", "lb2"];

/// lb1 (priority 150) and lb2 (120) in front of m1..m3; c is a client on the same switch.
fn lb_lab() -> Lab {
    let mut lab = Lab::new(&["lb1", "lb2", "m1", "m2", "m3", "c"]);
    lab.start_etcd(&MASTERS);
    for m in MASTERS {
        start_nginx(&mut lab, m);
    }
    let addr = |h: &str| lab.host(h).address();
    let text = format!(
        r#"cluster: itest
nodes:
  - {{name: lb1, address: {lb1}, priority: 150, roles: [lb]}}
  - {{name: lb2, address: {lb2}, priority: 120, roles: [lb]}}
  - {{name: m1, address: {m1}}}
  - {{name: m2, address: {m2}}}
  - {{name: m3, address: {m3}}}
vip:
  address: {vip}/24
  interface: eth0
  vrid: 51
  advertInterval: 100ms
  fencing: quorum
apiServer: {{port: 8080}}
loadBalancer:
  healthCheck: {{type: http, path: /, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}}
etcd: {{leaseTtl: 2s}}
elections:
  - {{name: scheduler, exec: {{command: [sleep, infinity], grace: 1s}}}}
stateDir: {state}
"#,
        lb1 = addr("lb1"),
        lb2 = addr("lb2"),
        m1 = addr("m1"),
        m2 = addr("m2"),
        m3 = addr("m3"),
        vip = support::VIP,
        state = lab.dir.path().join("state").display(),
    );
    let path = lab.write("cluster.yaml", &text);
    for n in LBS.iter().chain(MASTERS.iter()) {
        lab.start_haplane(n, &path);
    }
    lab.wait_holders(&["lb1"], Duration::from_secs(15));
    // The fence is armed once each lb node has reached the masters' etcd.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !LBS.iter().all(|n| lab.status(n)["fence"]["armed"] == true) {
        assert!(
            Instant::now() < deadline,
            "the lb nodes never armed the fence\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.wait_holders(&["lb1"], Duration::from_secs(10));
    lab
}

/// Requests from `c` through the VIP until every master has answered (or `limit` passes).
fn masters_reached(lab: &Lab, limit: Duration) -> BTreeSet<String> {
    let deadline = Instant::now() + limit;
    let mut seen = BTreeSet::new();
    while seen.len() < MASTERS.len() && Instant::now() < deadline {
        match get(lab, "c") {
            Ok(body) => {
                seen.insert(body);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    seen
}

fn all_masters() -> BTreeSet<String> {
    MASTERS.iter().map(|m| m.to_string()).collect()
}

#[test]
fn the_vip_is_on_one_lb_node_and_its_balancer_reaches_every_master_which_runs_no_vrrp() {
    if support::skip() {
        return;
    }
    let lab = lb_lab();
    lab.assert_holders_stay(&["lb1"], Duration::from_secs(1));
    assert_eq!(
        masters_reached(&lab, Duration::from_secs(10)),
        all_masters(),
        "{}",
        lab.logs()
    );

    // /status says what each node is and runs (the same rules as check and plan).
    let lb1 = lab.status("lb1");
    assert_eq!(lb1["roles"], serde_json::json!(["lb"]), "{lb1}");
    assert_eq!(lb1["runs"]["vrrp"], true, "{lb1}");
    assert_eq!(lb1["runs"]["balancer"], "vip", "{lb1}");
    assert_eq!(lb1["runs"]["elections"], false, "{lb1}");
    assert_eq!(lb1["runs"]["etcd_client"], true, "{lb1}");
    assert_eq!(lb1["runs"]["fence"], true, "{lb1}");
    assert_eq!(lb1["vrrp"][0]["state"], "MASTER", "{lb1}");
    assert_eq!(lb1["fence"]["leader"], true, "{lb1}");
    assert!(
        lb1.get("elections").is_none(),
        "an lb node runs no elections: {lb1}"
    );
    assert_eq!(
        lb1["etcd"]["connected"], true,
        "a client of the masters' etcd: {lb1}"
    );
    let lb2 = lab.status("lb2");
    assert_eq!(lb2["vrrp"][0]["state"], "BACKUP", "{lb2}");

    for m in MASTERS {
        let s = lab.status(m);
        assert_eq!(s["roles"], serde_json::json!(["master"]), "{m}: {s}");
        assert_eq!(s["runs"]["vrrp"], false, "{m}: {s}");
        assert_eq!(s["runs"]["balancer"], serde_json::Value::Null, "{m}: {s}");
        assert_eq!(s["runs"]["elections"], true, "{m}: {s}");
        assert_eq!(s["vrrp"], serde_json::json!([]), "{m}: no VRRP router: {s}");
        assert!(
            s.get("load_balancer").is_none(),
            "{m}: no VIP balancer: {s}"
        );
        assert!(s.get("fence").is_none(), "{m}: no VIP, no fence: {s}");
    }
    // The masters campaign for the elections; one of them leads.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leaders: Vec<&str> = MASTERS
            .iter()
            .copied()
            .filter(|m| lab.status(m)["elections"][0]["role"] == "leader")
            .collect();
        if leaders.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "election leaders {leaders:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = lab.http_get("lb1", "/metrics");
    for line in [
        "haplane_node_role{role=\"lb\"} 1",
        "haplane_node_runs{part=\"elections\"} 0",
        "haplane_election_leader{election=\"vip\"} 1",
        "haplane_vip_fence_armed{mode=\"quorum\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
}

#[test]
fn a_crashed_lb_holder_is_replaced_by_the_other_lb_node_never_by_a_master() {
    if support::skip() {
        return;
    }
    let lab = lb_lab();
    // Who answers ARP for the VIP, as clients see it: the crashed lb1 keeps the address
    // (behind its closed kernel fence) until its lifetime runs out.
    let answers = support::Answers::new(&lab, "c");
    let (took, samples) = answers.sampling(&lab, || {
        // lb1 crashes: its daemon dies and its link goes down.
        let start = Instant::now();
        lab.host("lb1").link_down().unwrap();
        lab.haplane("lb1").handle.kill().unwrap();
        answers.wait(&lab, &["lb2"], Duration::from_secs(15));
        start.elapsed()
    });
    let bad: Vec<_> = samples
        .iter()
        .filter(|s| s.answering.len() > 1 || s.answering.iter().any(|n| n.starts_with('m')))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} samples had two nodes or a master answering for the VIP, first {:?}\n{}",
        bad.len(),
        samples.len(),
        bad.first(),
        lab.logs()
    );
    eprintln!(
        "lb holder crash: lb2 holds the VIP after {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(lab.status("lb2")["fence"]["leader"], true, "{}", lab.logs());
    // Clients through the VIP reach every master again, now through lb2.
    assert_eq!(
        masters_reached(&lab, Duration::from_secs(10)),
        all_masters(),
        "{}",
        lab.logs()
    );
}
