//! The cluster file's rules, one test per rule: each bad file gets a message naming the key.

use std::path::Path;
use std::time::Duration;

use config::{Cluster, ConfigError, Fencing, ListenAddr, Severity};

const GOOD: &str = r#"
cluster: demo
nodes:
  - {name: m1, address: 192.0.2.11, priority: 110}
  - {name: m2, address: 192.0.2.12, priority: 100}
vip:
  address: 192.0.2.100/24
  interface: eth0
  vrid: 51
  version: 3
  advertInterval: 1s
  unicast: false
  preempt: true
  authPass: null
status: {listen: "127.0.0.1:9470"}
"#;

fn load(text: &str) -> Result<Cluster, ConfigError> {
    Cluster::from_yaml(text, Path::new("cluster.yaml")).map(|(c, _)| c)
}

/// Every error finding's "path: message" for a file that must be rejected.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Err(ConfigError::Invalid { findings, .. }) => findings
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect(),
        Err(other) => vec![other.to_string()],
        Ok(_) => panic!("the file was accepted:\n{text}"),
    }
}

fn assert_error(text: &str, path: &str, needle: &str) {
    let errors = errors(text);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "expected an error at {path} mentioning {needle:?}, got {errors:#?}"
    );
}

#[test]
fn the_contract_example_from_the_issue_loads_with_documented_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.vip.vrid, 51);
    assert_eq!(c.nodes[0].priority, 110);
    assert_eq!(c.status.listen.to_string(), "127.0.0.1:9470");
    assert_eq!(c.api_server.port, 6443);
    assert_eq!(c.load_balancer.listen, vec![ListenAddr::Vip(6443)]);
    assert_eq!(c.vip.garp.repeat, 5);
    assert_eq!(c.vip.garp.delay.to_string(), "5s");
    assert_eq!(c.fencing(), Fencing::None, "auto without etcd is none");
    let backends: Vec<String> = c
        .lb_backends()
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(backends, ["192.0.2.11:6443", "192.0.2.12:6443"]);
}

#[test]
fn rendering_and_reloading_gives_the_same_cluster() {
    let c = load(GOOD).unwrap();
    let again = load(&c.to_yaml()).unwrap();
    assert_eq!(c, again);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("  vrid: 51", "  vrid: 51\n  vridd: 3");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("unknown field `vridd`"), "{e}");
    assert!(e.contains("line 10"), "{e}");
}

#[test]
fn a_duration_without_unit_is_rejected_with_a_suggestion() {
    let e = load(&GOOD.replace("advertInterval: 1s", "advertInterval: 1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("write 1s or 1ms"), "{e}");
}

#[test]
fn a_vip_without_prefix_is_rejected() {
    let e = load(&GOOD.replace("192.0.2.100/24", "192.0.2.100"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a prefix length"), "{e}");
}

#[test]
fn vrid_zero_is_invalid_rfc5798_5_2_3() {
    assert_error(&GOOD.replace("vrid: 51", "vrid: 0"), "vip.vrid", "1..=255");
}

#[test]
fn priority_zero_is_reserved_for_stopping_masters() {
    assert_error(
        &GOOD.replace("priority: 110", "priority: 0"),
        "nodes[0].priority",
        "reserved",
    );
}

#[test]
fn duplicate_names_and_addresses_are_errors() {
    let text = GOOD.replace(
        "{name: m2, address: 192.0.2.12",
        "{name: m1, address: 192.0.2.11",
    );
    assert_error(&text, "nodes[1].name", "already the name of nodes[0]");
    assert_error(&text, "nodes[1].address", "already the address of nodes[0]");
}

#[test]
fn a_vip_outside_the_masters_subnet_is_an_error_seed_001() {
    assert_error(
        &GOOD.replace("192.0.2.100/24", "198.51.100.100/24"),
        "vip.address",
        "not in the subnet of master m1",
    );
}

#[test]
fn a_vip_equal_to_a_node_address_is_an_error() {
    assert_error(
        &GOOD.replace("192.0.2.100/24", "192.0.2.12/24"),
        "vip.address",
        "nodes[1]'s own address",
    );
}

#[test]
fn v2_needs_whole_second_adverts_rfc3768_5_3_7() {
    let text = GOOD
        .replace("version: 3", "version: 2")
        .replace("advertInterval: 1s", "advertInterval: 100ms");
    assert_error(&text, "vip.advertInterval", "whole seconds");
}

#[test]
fn v3_adverts_come_in_centiseconds_rfc5798_5_2_7() {
    assert_error(
        &GOOD.replace("advertInterval: 1s", "advertInterval: 15ms"),
        "vip.advertInterval",
        "10ms steps",
    );
    assert_error(
        &GOOD.replace("advertInterval: 1s", "advertInterval: 41s"),
        "vip.advertInterval",
        "40.95s",
    );
    assert!(load(&GOOD.replace("advertInterval: 1s", "advertInterval: 100ms")).is_ok());
}

#[test]
fn version_4_is_rejected() {
    let e = load(&GOOD.replace("version: 3", "version: 4"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("use 2 (RFC 3768) or 3 (RFC 5798)"), "{e}");
}

#[test]
fn a_password_with_v3_is_an_error_rfc5798_9() {
    assert_error(
        &GOOD.replace("authPass: null", "authPass: secret"),
        "vip.authPass",
        "no authentication",
    );
}

#[test]
fn a_long_password_warns_that_keepalived_uses_eight_bytes() {
    let text = GOOD
        .replace("version: 3", "version: 2")
        .replace("authPass: null", "authPass: averylongpassword");
    let (_, findings) = Cluster::from_yaml(&text, Path::new("c.yaml")).unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.path == "vip.authPass" && f.severity == Severity::Warning)
    );
}

#[test]
fn quorum_fencing_needs_etcd() {
    assert_error(
        &GOOD.replace("  authPass: null", "  authPass: null\n  fencing: quorum"),
        "vip.fencing",
        "needs an etcd section",
    );
}

#[test]
fn auto_fencing_becomes_quorum_with_etcd() {
    // Three masters: haplane elects through their stacked etcd, which must have an odd size.
    let three = GOOD.replace(
        "  - {name: m2, address: 192.0.2.12, priority: 100}",
        "  - {name: m2, address: 192.0.2.12, priority: 100}\n  - {name: m3, address: 192.0.2.13, priority: 90}",
    );
    let text = format!("{three}etcd: {{endpoints: [\"http://192.0.2.11:2379\"]}}\n");
    assert_eq!(load(&text).unwrap().fencing(), Fencing::Quorum);
}

#[test]
fn a_track_weight_outside_keepalived_range_is_an_error() {
    let text = GOOD.replace(
        "  authPass: null",
        "  authPass: null\n  track:\n    - {name: api, command: [\"true\"], weight: -300}",
    );
    assert_error(&text, "vip.track[0].weight", "-253..=253");
}

#[test]
fn a_listener_on_the_apiserver_port_of_a_master_clashes_seed_002() {
    let text = format!("{GOOD}loadBalancer: {{listen: [\"0.0.0.0:6443\"]}}\n");
    assert_error(
        &text,
        "loadBalancer.listen[0]",
        "clashes with the apiserver",
    );
}

#[test]
fn a_sub_second_lease_ttl_is_rejected_because_etcd_uses_whole_seconds() {
    let text =
        format!("{GOOD}etcd: {{endpoints: [\"http://192.0.2.11:2379\"], leaseTtl: 500ms}}\n");
    assert_error(&text, "etcd.leaseTtl", "whole seconds");
}

#[test]
fn etcd_raft_timers_etcd_would_refuse_are_rejected_with_its_rule() {
    // etcd's embed.Config.Validate: election timeout at least 5 × heartbeat, at most 50 s.
    let etcd = |timers: &str| {
        format!("{GOOD}etcd: {{endpoints: [\"http://192.0.2.11:2379\"], {timers}}}\n")
    };
    assert_error(
        &etcd("electionTimeout: 400ms, heartbeatInterval: 100ms"),
        "etcd.electionTimeout",
        "at least 5 times the heartbeat",
    );
    // The heartbeat left at etcd's 100ms default counts too.
    assert_error(
        &etcd("electionTimeout: 300ms"),
        "etcd.electionTimeout",
        "at least 5 times",
    );
    assert_error(
        &etcd("electionTimeout: 60s, heartbeatInterval: 1s"),
        "etcd.electionTimeout",
        "at most 50s",
    );
    assert_error(
        &etcd("heartbeatInterval: 0s"),
        "etcd.heartbeatInterval",
        "whole milliseconds, above 0",
    );
}

#[test]
fn more_than_ten_connect_retries_are_rejected() {
    let text = format!("{GOOD}loadBalancer: {{connectRetries: 11}}\n");
    assert_error(&text, "loadBalancer.connectRetries", "at most 10");
}

#[test]
fn etcd_raft_timers_etcd_accepts_load() {
    let three = GOOD.replace(
        "  - {name: m2, address: 192.0.2.12, priority: 100}\n",
        "  - {name: m2, address: 192.0.2.12, priority: 100}\n  - {name: m3, address: 192.0.2.13, priority: 90}\n",
    );
    let text = format!("{three}etcd: {{electionTimeout: 500ms, heartbeatInterval: 50ms}}\n");
    let cluster = load(&text).expect("valid");
    let etcd = cluster.etcd.expect("etcd section");
    assert_eq!(
        etcd.raft_timers(),
        (Duration::from_millis(500), Duration::from_millis(50))
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = GOOD
        .replace("vrid: 51", "vrid: 0")
        .replace("priority: 110", "priority: 0");
    assert!(errors(&text).len() >= 2);
}

#[test]
fn a_node_finds_itself_by_local_address_or_name() {
    let c = load(GOOD).unwrap();
    let local = ["127.0.0.1".parse().unwrap(), "192.0.2.12".parse().unwrap()];
    assert_eq!(c.find_node(None, &local).unwrap().name, "m2");
    assert_eq!(c.find_node(Some("m1"), &[]).unwrap().name, "m1");
    assert!(c.find_node(Some("m9"), &[]).is_err());
    assert!(c.find_node(None, &["127.0.0.1".parse().unwrap()]).is_err());
}

#[test]
fn the_static_pods_image_defaults_to_the_archive_scripts_package_writes() {
    let c = load(GOOD).unwrap();
    assert_eq!(
        c.kubernetes.haplane_image,
        format!("localhost/haplane:{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_empty_or_spaced_image_is_named_by_its_key() {
    for image in ["\"\"", "\"haplane 0.1\""] {
        let text = format!("{GOOD}kubernetes: {{haplaneImage: {image}}}\n");
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("kubernetes.haplaneImage: ")),
            "{image}: {errs:?}"
        );
    }
}

#[test]
fn the_vip_gate_defaults_give_a_600ms_hold_renewed_every_100ms() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.vip.gate.renew_interval.to_string(), "100ms");
    assert_eq!(c.vip.gate.hold.to_string(), "600ms");
    assert_eq!(c.vip.gate.clock_rate_bound, 0.01);
    assert_eq!(c.vip.gate.stop_latency.to_string(), "50ms");
    let g = c.vip.gate.gate_config("m1", c.vip.preempt);
    assert_eq!(g.request_timeout, std::time::Duration::from_millis(200));
    assert!(g.validate().is_ok());
}

#[test]
fn a_vip_gate_hold_shorter_than_two_renewals_is_refused_naming_both() {
    let text = GOOD.replace(
        "  authPass: null\n",
        "  authPass: null\n  gate: {renewInterval: 200ms, hold: 300ms}\n",
    );
    assert_error(&text, "vip.gate", "at least twice renewInterval");
}

#[test]
fn a_vip_gate_clock_rate_bound_outside_zero_to_one_is_refused() {
    let text = GOOD.replace(
        "  authPass: null\n",
        "  authPass: null\n  gate: {clockRateBound: 1.5}\n",
    );
    assert_error(&text, "vip.gate", "clockRateBound 1.5");
}
