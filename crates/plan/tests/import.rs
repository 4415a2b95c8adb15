//! Import round trip: the seeds' keepalived.conf and haproxy.cfg become a cluster file, and
//! the plan made from it describes the same VIP, VRID, priorities, backends and checks.

use std::path::{Path, PathBuf};

use config::{CheckType, ListenAddr, VrrpVersion};
use plan::PlanOptions;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts() -> PlanOptions {
    PlanOptions {
        bootstrap_token: Some("abcdef.0123456789abcdef".into()),
        certificate_key: Some("0".repeat(64)),
        ..PlanOptions::default()
    }
}

/// The printed YAML loads back into the same cluster (nothing only lives in memory).
fn reparse(r: &plan::ImportResult) -> config::Cluster {
    let c = plan::parse(&r.cluster_yaml, Path::new("imported.yaml")).expect("imported YAML parses");
    assert_eq!(c, r.cluster);
    c
}

#[test]
fn seed_001_keepalived_imports_vip_vrid_priority_auth_and_track_script() {
    let r = plan::import(&fixture("seed001-keepalived.conf"), None).unwrap();
    let c = reparse(&r);
    assert_eq!(c.vip.address.to_string(), "10.10.102.21/24");
    assert_eq!(c.vip.vrid, 51);
    assert_eq!(c.vip.interface, "eth0");
    assert_eq!(
        c.vip.version,
        VrrpVersion::V2,
        "keepalived's default version is 2"
    );
    assert_eq!(c.vip.auth_pass.as_ref().map(|p| p.expose()), Some("1111"));
    assert_eq!(c.nodes[0].priority, 100);
    let t = &c.vip.track[0];
    assert_eq!(t.name, "check-k8s-master");
    assert_eq!(t.command, ["curl", "-k", "http://127.0.0.1:8080/healthz"]);
    assert_eq!(t.interval.to_string(), "2s");
    assert_eq!(t.weight, -20);
}

#[test]
fn seed_001_reports_what_it_cannot_map_by_line() {
    let r = plan::import(&fixture("seed001-keepalived.conf"), None).unwrap();
    let lines: Vec<(usize, &str)> = r
        .unmapped
        .iter()
        .map(|u| (u.line, u.reason.as_str()))
        .collect();
    // `state MASTER` (line 25) is not carried over: every haplane node starts as backup.
    assert!(
        lines
            .iter()
            .any(|(l, why)| *l == 25 && why.contains("starts every node as backup")),
        "{lines:#?}"
    );
    // No node address anywhere in the file: the placeholder is reported, never silent.
    assert!(
        r.unmapped.iter().any(|u| u.reason.contains("placeholder")),
        "{:#?}",
        r.unmapped
    );
    assert!(r.cluster_yaml.contains("# Not carried over:"));
    // Commented-out lines (`#mcast_src_ip`, `#vrrp_strict`) are comments, not findings.
    assert!(
        !r.unmapped
            .iter()
            .any(|u| u.text.contains("mcast_src_ip") || u.text.contains("vrrp_strict"))
    );
}

#[test]
fn seed_001_round_trip_plan_keeps_vip_vrid_priority_and_check() {
    let r = plan::import(&fixture("seed001-keepalived.conf"), None).unwrap();
    let c = reparse(&r);
    let p = plan::render(&c, &opts()).expect("imported cluster renders");
    let node = &c.nodes[0].name;
    let k = p.get(&format!("{node}/classic/keepalived.conf")).unwrap();
    for needle in [
        "virtual_router_id 51",
        "priority 100",
        "10.10.102.21/24 dev eth0",
        "version 2",
        "auth_pass 1111",
        "script \"curl -k http://127.0.0.1:8080/healthz\"",
        "interval 2",
        "weight -20",
    ] {
        assert!(k.contains(needle), "{needle:?} missing from\n{k}");
    }
}

#[test]
fn seed_002_keepalived_and_haproxy_import_masters_backends_and_checks() {
    let r = plan::import(
        &fixture("seed002-keepalived.conf"),
        Some(&fixture("seed002-haproxy.cfg")),
    )
    .unwrap();
    let c = reparse(&r);
    assert_eq!(c.vip.vrid, 33);
    assert_eq!(c.vip.interface, "ens192");
    assert_eq!(c.vip.address.addr.to_string(), "172.29.1.200");
    let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["dev6", "dev7", "dev3"]);
    assert_eq!(c.nodes[0].priority, 120);
    assert_eq!(
        c.api_server.port, 9443,
        "the servers' common port becomes apiServer.port"
    );
    assert_eq!(c.load_balancer.listen, vec![ListenAddr::Vip(6443)]);
    assert_eq!(
        c.load_balancer.health_check.kind,
        CheckType::Tcp,
        "plain `check` is a TCP connect"
    );
    assert_eq!(
        c.load_balancer.health_check.fall, 3,
        "haproxy's default fall"
    );
    // The template variables and the ACLs are reported with their line numbers.
    let lines: Vec<(String, usize)> = r
        .unmapped
        .iter()
        .map(|u| {
            (
                u.file.file_name().unwrap().to_string_lossy().into_owned(),
                u.line,
            )
        })
        .collect();
    for want in [
        ("seed002-keepalived.conf", 3),
        ("seed002-keepalived.conf", 7),
        ("seed002-keepalived.conf", 10),
        ("seed002-haproxy.cfg", 6),
        ("seed002-haproxy.cfg", 7),
    ] {
        assert!(
            lines.contains(&(want.0.to_string(), want.1)),
            "{want:?} not reported in {:#?}",
            r.unmapped
        );
    }
    // The bare VIP and the invented priorities are stated assumptions.
    assert!(
        r.notes
            .iter()
            .any(|n| n.reason.contains("keepalived adds it as /32"))
    );
    assert!(r.notes.iter().any(|n| n.reason.contains("assumed")));
}

#[test]
fn seed_002_round_trip_plan_keeps_vip_vrid_priorities_backends_and_checks() {
    let r = plan::import(
        &fixture("seed002-keepalived.conf"),
        Some(&fixture("seed002-haproxy.cfg")),
    )
    .unwrap();
    let c = reparse(&r);
    let p = plan::render(&c, &opts()).expect("imported cluster renders");
    let k = p.get("dev6/classic/keepalived.conf").unwrap();
    for needle in [
        "virtual_router_id 33",
        "priority 120",
        "172.29.1.200/24 dev ens192",
        "auth_pass 1111",
        "interface ens192",
    ] {
        assert!(k.contains(needle), "{needle:?} missing from\n{k}");
    }
    let h = p.get("dev6/classic/haproxy.cfg").unwrap();
    for needle in [
        "bind 172.29.1.200:6443",
        "balance roundrobin",
        "server dev6 172.29.1.41:9443",
        "server dev7 172.29.1.42:9443",
        "server dev3 172.29.1.122:9443",
        "default-server check inter 2000ms fall 3 rise 2",
    ] {
        assert!(h.contains(needle), "{needle:?} missing from\n{h}");
    }
    assert!(
        !h.contains("httpchk"),
        "the seed checked with TCP connects only"
    );
    let init = p.get("dev6/kubeadm.yaml").unwrap();
    assert!(
        init.contains("bindPort: 9443")
            && init.contains("controlPlaneEndpoint: \"172.29.1.200:6443\"")
    );
}

#[test]
fn includes_nested_blocks_and_both_comment_styles_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("keepalived.conf"),
        "# main\nglobal_defs { router_id lab }\ninclude conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/vip.conf"),
        "vrrp_instance VI {\n  interface eth1 ! trailing comment\n  virtual_router_id 7\n  version 3\n  priority 90\n  advert_int 0.5\n  nopreempt\n  unicast_src_ip 192.0.2.1\n  unicast_peer {\n    192.0.2.2\n    192.0.2.3\n  }\n  virtual_ipaddress {\n    192.0.2.50/24 dev eth1\n    192.0.2.51/24\n  }\n  smtp_alert\n}\n",
    )
    .unwrap();
    let r = plan::import(&dir.path().join("keepalived.conf"), None).unwrap();
    let c = &r.cluster;
    assert_eq!(c.vip.vrid, 7);
    assert_eq!(c.vip.version, VrrpVersion::V3);
    assert_eq!(c.vip.advert_interval.to_string(), "500ms");
    assert!(!c.vip.preempt && c.vip.unicast);
    let addrs: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.address, n.priority))
        .collect();
    assert_eq!(addrs, ["192.0.2.1=90", "192.0.2.2=80", "192.0.2.3=70"]);
    let inc = dir.path().join("conf.d/vip.conf");
    assert!(
        r.unmapped
            .iter()
            .any(|u| u.file == inc && u.line == 15 && u.reason.contains("only the first address"))
    );
    assert!(
        r.unmapped
            .iter()
            .any(|u| u.file == inc && u.line == 17 && u.text == "smtp_alert")
    );
}

#[test]
fn an_unbalanced_brace_is_a_syntax_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.conf");
    std::fs::write(&f, "vrrp_instance VI {\n  virtual_router_id 7\n").unwrap();
    let e = plan::import(&f, None).unwrap_err().to_string();
    assert!(e.contains("never closed"), "{e}");
}

#[test]
fn a_file_without_vrrp_instance_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.conf");
    std::fs::write(&f, "global_defs {\n router_id x\n}\n").unwrap();
    let e = plan::import(&f, None).unwrap_err().to_string();
    assert!(e.contains("no vrrp_instance"), "{e}");
}

/// A keepalived 2.4.3 config with auth_hmac (the captured fixtures' node2.conf): both keys
/// (hex and plain string), the active key and the mode come over; the file loads back.
#[test]
fn keepalived_2_4_auth_hmac_blocks_become_vip_auth_hmac() {
    let ka =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vrrp/tests/fixtures/keepalived-2.4-hmac");
    let r = plan::import(&ka.join("v3-ipv4-rotation-active1/node2.conf"), None).unwrap();
    let c = reparse(&r);
    let h = c.vip.auth_hmac.as_ref().expect("authHmac imported");
    assert_eq!(h.keys.len(), 2);
    assert_eq!(
        h.keys[&1].expose(),
        "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    );
    assert_eq!(
        h.keys[&2].expose(),
        "haplane-fixture-rotation-key-number-two"
    );
    assert_eq!(h.active(), Some(2));
    assert_eq!(h.mode, config::HmacMode::Enforce);
    assert!(
        r.unmapped
            .iter()
            .all(|u| !u.text.contains("auth_hmac") && !u.text.starts_with("key")),
        "{:?}",
        r.unmapped
    );
    // The report tells where the inline keys went, without showing them.
    let notes: Vec<String> = r
        .notes
        .iter()
        .map(|n| format!("{} {}", n.text, n.reason))
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("inline keys were copied")),
        "{notes:?}"
    );
    assert!(notes.iter().all(|n| !n.contains("0102030405")), "{notes:?}");

    let r = plan::import(&ka.join("v3-ipv4-unicast-monotonic/node2.conf"), None).unwrap();
    let h = reparse(&r).vip.auth_hmac.unwrap();
    assert_eq!(h.anti_replay, config::AntiReplay::Monotonic);
    assert_eq!(h.active(), Some(9));
    let r = plan::import(&ka.join("v3-ipv4-receive-only/node2.conf"), None).unwrap();
    assert_eq!(
        reparse(&r).vip.auth_hmac.unwrap().mode,
        config::HmacMode::ReceiveOnly
    );
}

/// A key from a systemd credential through `${_ENV ...}` cannot be resolved at import time:
/// it is reported by line, and without a usable key the block is not imported.
#[test]
fn an_auth_hmac_key_with_parameter_substitution_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  auth_hmac {\n    key 1 file:${_ENV CREDENTIALS_DIRECTORY}/vrrp\n    mode sideways\n  }\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n}\n",
    )
    .unwrap();
    let r = plan::import(&conf, None).unwrap();
    assert!(r.cluster.vip.auth_hmac.is_none());
    let lines: Vec<(usize, &str)> = r
        .unmapped
        .iter()
        .map(|u| (u.line, u.reason.as_str()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(l, why)| *l == 6 && why.contains("parameter substitution")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, why)| *l == 7 && why.contains("enforce, permissive or receive-only")),
        "{lines:?}"
    );
}
