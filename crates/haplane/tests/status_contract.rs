//! Issue 13: the /status document is one typed contract (crate status-api) that the daemon
//! writes and `haplane status`, the drill and chaos read. A real daemon with every section
//! (VRRP, roles, runs, etcd client, fenced VIP, an election, the balancer) answers; its
//! answer parses into `status_api::Status`, and every field the contract has was really in
//! the answer (none filled in by a default because the daemon renamed or dropped it).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Cfg, Lab};

/// Every key of `typed` (the contract's view, serialized back) is present in `raw` (what the
/// daemon sent), recursively; `path` names where a key is missing.
fn all_present(typed: &Value, raw: &Value, path: &str) -> Result<(), String> {
    match (typed, raw) {
        (Value::Object(t), Value::Object(r)) => {
            for (k, tv) in t {
                let Some(rv) = r.get(k) else {
                    return Err(format!(
                        "{path}.{k} is in the contract but not in the answer"
                    ));
                };
                all_present(tv, rv, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(t), Value::Array(r)) => {
            if t.len() != r.len() {
                return Err(format!("{path}: {} items typed, {} sent", t.len(), r.len()));
            }
            for (i, (tv, rv)) in t.iter().zip(r).enumerate() {
                all_present(tv, rv, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[test]
fn a_daemons_real_status_parses_into_the_contract_with_every_field_present() {
    if support::skip() {
        return;
    }
    let mut cfg = Cfg::new(&[("m1", "192.0.2.11", 150)]);
    cfg.extra_vip = "  fencing: quorum\n".into();
    let mut lab = Lab::new(&["m1"]);
    lab.start_etcd(&["m1"]);
    let text = format!(
        "{}apiServer: {{port: 8080}}\nloadBalancer:\n  backends: [{{address: \"192.0.2.11:2380\"}}]\n  healthCheck: {{type: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 1}}\netcd: {{endpoints: [\"{}\"], leaseTtl: 2s}}\nelections:\n  - {{name: singleton, exec: {{command: [sleep, \"86391\"], grace: 1s}}}}\nstateDir: {}\n",
        cfg.yaml(),
        lab.etcd_endpoints(&["m1"]),
        lab.dir.path().join("state").display()
    );
    let path = lab.write("cluster.yaml", &text);
    lab.start_haplane("m1", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(15));

    // Wait until the election has a leader, so its optional fields are filled in too.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (raw, st) = loop {
        let body = lab.http_get("m1", "/status");
        let raw: Value = serde_json::from_str(&body).expect("/status is JSON");
        let st: status_api::Status = serde_json::from_value(raw.clone())
            .unwrap_or_else(|e| panic!("/status does not parse into the contract: {e}\n{body}"));
        if st.elections.iter().any(|e| e.leader.is_some())
            && st.fence.as_ref().is_some_and(|f| f.leader)
        {
            break (raw, st);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader yet:\n{body}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    assert_eq!(st.header.node, "m1");
    assert_eq!(st.router().map(|r| r.state.as_str()), Some("MASTER"));
    assert!(st.router().is_some_and(|r| r.holds_vip));
    assert_eq!(st.roles, ["master"]);
    let runs = st.runs.as_ref().expect("runs");
    assert!(runs.vrrp && runs.fence && runs.elections && runs.etcd_client);
    assert_eq!(runs.balancer, Some(status_api::BalancerPlace::Vip));
    assert!(
        st.etcd
            .as_ref()
            .is_some_and(|e| e.connected && e.members.len() == 1)
    );
    assert_eq!(st.elections.len(), 1);
    assert_eq!(
        st.fence
            .as_ref()
            .and_then(|f| f.current_holder.clone())
            .as_deref(),
        Some("m1")
    );
    let lb = st.load_balancer.as_ref().expect("load_balancer");
    assert_eq!(lb.backends.len(), 1);
    assert_eq!(lb.backends[0].address, "192.0.2.11:2380");

    let typed = serde_json::to_value(&st).unwrap();
    if let Err(e) = all_present(&typed, &raw, "") {
        panic!("{e}\nanswer: {raw:#}");
    }

    // Issue 13, logs an SRE can use: every line the daemon's own code and its balancer's
    // tasks (listeners, health checks) write is inside one span that names the node,
    // instead of a `node = …` field repeated on each line.
    let log = lab.haplane("m1").log_text();
    // (The cluster file's warnings come before the node is known.)
    let own: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("starting;"))
        .filter(|l| l.contains(" haplane::") || l.contains(" lb::"))
        .collect();
    assert!(own.len() >= 3, "the daemon logged: {log}");
    for line in own {
        assert!(
            line.contains("node{node=m1}"),
            "outside the node span: {line}"
        );
        assert!(
            !line.contains(" node=m1"),
            "node repeated as a field: {line}"
        );
    }
}
