//! The balancer inside the daemon: a client reaches real nginx backends through VIP:6443, a
//! killed backend is routed around and shown as down in /status, and SIGHUP reloads backends.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Cfg, Lab, get, start_nginx};

fn backend_up(lab: &Lab, host: &str, backend: &str) -> Option<bool> {
    let status = lab.status(host);
    status["load_balancer"]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == backend)
        .and_then(|b| b["up"].as_bool())
}

#[test]
fn clients_reach_backends_through_the_vip_and_a_killed_backend_is_routed_around() {
    if support::skip() {
        return;
    }
    let mut cfg = Cfg::new(&[("m1", "192.0.2.11", 150), ("m2", "192.0.2.12", 100)]);
    let lb = "apiServer: {port: 8080}\nloadBalancer:\n  healthCheck: {type: http, path: /, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}\n";
    cfg.extra_vip = String::new();
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let path = lab.write("cluster.yaml", &(cfg.yaml() + lb));
    let nginx_m1 = start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    lab.start_haplane("m1", &path);
    lab.start_haplane("m2", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(6));

    // Both backends answer, round-robin.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(body) = get(&lab, "c") {
            seen.insert(body);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["m1", "m2"],
        "{}",
        lab.logs()
    );

    lab.daemons[nginx_m1].handle.kill().unwrap();
    // kill() reaps nginx's master; its worker may accept for a few more milliseconds before it
    // dies too. "New" connections are the ones made once the backend really refuses.
    let refuses = Instant::now() + Duration::from_secs(5);
    while lab
        .host("c")
        .enter(|| TcpStream::connect("192.0.2.11:8080").is_ok())
        .unwrap()
    {
        assert!(
            Instant::now() < refuses,
            "nginx on m1 still accepts after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Instant::now();
    // No request fails: a refused connect is retried on the next backend at once.
    while killed.elapsed() < Duration::from_secs(2) {
        assert_eq!(get(&lab, "c").as_deref(), Ok("m2"), "{}", lab.logs());
    }
    assert_eq!(
        backend_up(&lab, "m1", "192.0.2.11:8080"),
        Some(false),
        "{}",
        lab.logs()
    );
    let metrics = lab.http_get("m1", "/metrics");
    assert!(
        metrics.contains("haplane_lb_backend_up{backend=\"192.0.2.11:8080\"} 0"),
        "{metrics}"
    );
}

#[test]
fn sighup_reloads_the_backends_from_the_cluster_file() {
    if support::skip() {
        return;
    }
    let cfg = Cfg::new(&[("m1", "192.0.2.11", 150)]);
    let lb = |backends: &str| {
        format!(
            "apiServer: {{port: 8080}}\nloadBalancer:\n  backends: [{backends}]\n  healthCheck: {{type: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 1}}\n"
        )
    };
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let path = lab.write(
        "cluster.yaml",
        &(cfg.yaml() + &lb("{address: \"192.0.2.11:8080\"}")),
    );
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    let m1 = lab.start_haplane("m1", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    for _ in 0..10 {
        assert_eq!(get(&lab, "c").as_deref(), Ok("m1"), "{}", lab.logs());
    }
    std::fs::write(
        &path,
        cfg.yaml() + &lb("{address: \"192.0.2.11:8080\"}, {address: \"192.0.2.12:8080\"}"),
    )
    .unwrap();
    lab.daemons[m1]
        .handle
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if get(&lab, "c").as_deref() == Ok("m2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m2 never served after reload\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The 2 s file watcher may have reloaded first; the SIGHUP reload is logged either way.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.daemons[m1]
        .log_text()
        .contains("load balancer reloaded after SIGHUP")
    {
        assert!(
            Instant::now() < deadline,
            "no SIGHUP reload logged\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The VIP and the balancer run before `kubeadm init` creates the cluster CA: HTTPS checks use
/// TCP connects until the CA file exists, then switch to HTTPS without a restart. Against a
/// plain-HTTP nginx the switch shows: the backend goes down with a TLS check error.
#[test]
fn https_checks_use_tcp_until_the_ca_file_appears_then_switch_to_https() {
    if support::skip() {
        return;
    }
    let cfg = Cfg::new(&[("m1", "192.0.2.11", 150)]);
    let mut lab = Lab::new(&["m1", "c"]);
    let ca = lab.dir.path().join("pki/ca.crt");
    let text = format!(
        "{}apiServer: {{port: 8080}}\nloadBalancer:\n  healthCheck: {{type: https, path: /, caFile: {}, interval: 200ms, timeout: 200ms, rise: 1, fall: 1}}\n",
        cfg.yaml(),
        ca.display()
    );
    let path = lab.write("cluster.yaml", &text);
    start_nginx(&mut lab, "m1");
    let m1 = lab.start_haplane("m1", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    assert!(
        lab.daemons[m1].log_text().contains("does not exist yet"),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        backend_up(&lab, "m1", "192.0.2.11:8080"),
        Some(true),
        "TCP checks pass"
    );
    assert_eq!(get(&lab, "c").as_deref(), Ok("m1"));

    std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=itest-ca",
        ])
        .arg("-keyout")
        .arg(lab.dir.path().join("pki/ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    while backend_up(&lab, "m1", "192.0.2.11:8080") != Some(false) {
        assert!(
            Instant::now() < deadline,
            "checks never switched to HTTPS\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lab.daemons[m1]
            .log_text()
            .contains("reloaded after the CA file appeared"),
        "{}",
        lab.logs()
    );
    let status = lab.status("m1");
    let error = status["load_balancer"]["backends"][0]["lastCheckError"].to_string();
    assert!(
        error != "null",
        "the HTTPS check names its failure: {status}"
    );
}

/// OCPBUGS-1257: gate the VIP on the local *balancer* path, not on the local apiserver. The
/// holder's own backend dying keeps the VIP where it is (its balancer serves through the other
/// one); the holder's balancer reaching no backend at all moves it.
#[test]
fn the_balancer_check_moves_the_vip_only_when_the_holders_balancer_reaches_no_backend() {
    if support::skip() {
        return;
    }
    let cfg = Cfg::new(&[("m1", "192.0.2.11", 150), ("m2", "192.0.2.12", 100)]);
    let extra = "apiServer: {port: 8080}\nloadBalancer:\n  healthCheck: {type: http, path: /, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}\n";
    let yaml = cfg.yaml().replace(
        "  preempt: true\n",
        "  preempt: true\n  trackBalancer: {weight: -60, interval: 200ms, rise: 2, fall: 2}\n",
    ) + extra;
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let path = lab.write("cluster.yaml", &yaml);
    let nginx_m1 = start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    lab.start_haplane("m1", &path);
    lab.start_haplane("m2", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    std::thread::sleep(Duration::from_millis(800));
    let check = |host: &str| {
        lab.status(host)["vrrp"][0]["checks"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["name"] == "balancer")
                    .map(|c| c["up"].clone())
            })
    };
    assert_eq!(
        check("m1"),
        Some(serde_json::Value::Bool(true)),
        "{}",
        lab.logs()
    );

    // A tracked script on the local apiserver would move the VIP now; the balancer path
    // still works through m2's backend, so the VIP stays.
    lab.daemons[nginx_m1].handle.kill().unwrap();
    lab.assert_holders_stay(&["m1"], Duration::from_secs(2));
    assert_eq!(check("m1"), Some(serde_json::Value::Bool(true)));
    assert_eq!(get(&lab, "c").as_deref(), Ok("m2"));

    // m1's balancer cut off from every backend (m2's too): its clients would fail, so the
    // VIP leaves it (150 - 60 < 100).
    lab.host("m1")
        .run(&[
            "sh",
            "-c",
            "printf 'table inet cut {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 8080 drop\n }\n}\n' | nft -f -",
        ])
        .unwrap();
    lab.wait_holders(&["m2"], Duration::from_secs(4));
    assert_eq!(check("m1"), Some(serde_json::Value::Bool(false)));
    assert_eq!(lab.status("m1")["vrrp"][0]["effective_priority"], 90);
    assert_eq!(get(&lab, "c").as_deref(), Ok("m2"));
}
