//! The rules about the cluster a file deploys (`deploy.rs`): etcd's quorum, priorities and
//! track weights, port clashes, what keepalived can express, and the node roles. One test per
//! rule, each asserting the key and the message. `haplane check`, `haplane plan` and the
//! daemon run exactly these (crates/plan/tests/import.rs and crates/haplane/tests/cli.rs pin
//! that they agree).

use std::path::Path;

use config::{Cluster, ConfigError, Finding, Role, Severity};

const GOOD: &str = r#"
cluster: demo
nodes:
  - {name: m1, address: 192.0.2.11, priority: 120}
  - {name: m2, address: 192.0.2.12, priority: 110}
  - {name: m3, address: 192.0.2.13, priority: 100}
vip:
  address: 192.0.2.100/24
  vrid: 51
"#;

/// Seed 004: two dedicated balancer nodes in front of three masters and two workers.
const SEED_004: &str = r#"
cluster: seed004
nodes:
  - {name: lb-1, address: 192.0.2.252, priority: 110, roles: [lb]}
  - {name: lb-2, address: 192.0.2.253, priority: 100, roles: [lb]}
  - {name: master-1, address: 192.0.2.11, roles: [master]}
  - {name: master-2, address: 192.0.2.12, roles: [master]}
  - {name: master-3, address: 192.0.2.13, roles: [master]}
  - {name: node-1, address: 192.0.2.21, roles: [worker]}
  - {name: node-2, address: 192.0.2.22, roles: [worker]}
vip:
  address: 192.0.2.254/24
  vrid: 51
"#;

fn all_findings(text: &str) -> Vec<Finding> {
    match Cluster::from_yaml(text, Path::new("cluster.yaml")) {
        Ok((_, warnings)) => warnings,
        Err(ConfigError::Invalid { findings, .. }) => findings,
        Err(e) => panic!("does not parse: {e}"),
    }
}

fn findings(text: &str) -> Vec<(Severity, String)> {
    all_findings(text)
        .into_iter()
        .map(|f| (f.severity, format!("{}: {}", f.path, f.message)))
        .collect()
}

fn errors(text: &str) -> Vec<String> {
    findings(text)
        .into_iter()
        .filter(|(s, _)| *s == Severity::Error)
        .map(|(_, m)| m)
        .collect()
}

fn assert_finding(text: &str, severity: Severity, path: &str, needle: &str) {
    let all = findings(text);
    assert!(
        all.iter().any(|(s, m)| *s == severity
            && m.starts_with(&format!("{path}: "))
            && m.contains(needle)),
        "expected a {severity:?} at {path} mentioning {needle:?}, got {all:#?}"
    );
}

#[test]
fn the_good_inventory_has_no_findings() {
    assert_eq!(findings(GOOD), vec![]);
}

#[test]
fn two_stacked_masters_that_haplane_elects_through_are_rejected() {
    // Seed 001's etcd had two members: no more fault tolerance than one, and no majority on a
    // split; with an etcd section haplane's elections and fenced VIP stop with either member.
    let text =
        GOOD.replace("  - {name: m3, address: 192.0.2.13, priority: 100}\n", "") + "etcd: {}\n";
    assert_finding(
        &text,
        Severity::Error,
        "nodes (masters, stacked etcd)",
        "etcd has 2 members (m1, m2)",
    );
    assert_finding(
        &text,
        Severity::Error,
        "nodes (masters, stacked etcd)",
        "use 1 or 3 members",
    );
}

#[test]
fn two_masters_without_an_etcd_section_warn_and_point_at_lb_nodes() {
    // kubeadm's own stacked etcd still has two members, but haplane does not depend on it: the
    // VRRP pair runs, and the warning names the topology most such pairs really are (seed 004).
    let text = GOOD.replace("  - {name: m3, address: 192.0.2.13, priority: 100}\n", "");
    assert_finding(
        &text,
        Severity::Warning,
        "nodes (masters, stacked etcd)",
        "roles: [lb]",
    );
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
}

#[test]
fn two_external_etcd_endpoints_as_in_seed_001_are_rejected() {
    let text = format!(
        "{GOOD}etcd:\n  topology: external\n  endpoints: [\"http://10.10.103.96:2379\", \"http://10.10.103.97:2379\"]\n"
    );
    assert_finding(
        &text,
        Severity::Error,
        "etcd.endpoints",
        "etcd has 2 members",
    );
}

#[test]
fn a_single_etcd_member_is_a_warning() {
    let text = GOOD
        .replace("  - {name: m2, address: 192.0.2.12, priority: 110}\n", "")
        .replace("  - {name: m3, address: 192.0.2.13, priority: 100}\n", "");
    assert_finding(
        &text,
        Severity::Warning,
        "nodes (masters, stacked etcd)",
        "use 3 or 5 members",
    );
}

#[test]
fn an_external_etcd_member_on_a_master_warns_about_kubeadms_dir_check() {
    let text = GOOD.replace(
        "{name: m1, address: 192.0.2.11, priority: 120}",
        "{name: m1, address: 192.0.2.11, priority: 120, roles: [master, etcd]}",
    ) + "  \n";
    let text = text.replace("  - {name: m2", "  - {name: e2, address: 192.0.2.22, roles: [etcd]}\n  - {name: e3, address: 192.0.2.23, roles: [etcd]}\n  - {name: m2")
        + "etcd:\n  topology: external\n  caFile: /ca.crt\n";
    assert_finding(
        &text,
        Severity::Warning,
        "nodes[0].roles",
        "kubeadm init refuses a non-empty /var/lib/etcd",
    );
}

#[test]
fn external_etcd_without_tls_settings_warns() {
    let text = GOOD.to_string()
        + "etcd:\n  topology: external\n  endpoints: [\"https://192.0.2.31:2379\", \"https://192.0.2.32:2379\", \"https://192.0.2.33:2379\"]\n";
    assert_finding(&text, Severity::Warning, "etcd.caFile", "require TLS");
}

#[test]
fn a_vip_outside_the_masters_subnet_is_rejected() {
    let text = GOOD.replace("192.0.2.100/24", "198.51.100.100/24");
    assert_finding(
        &text,
        Severity::Error,
        "vip.address",
        "is not in the subnet of master m1",
    );
}

#[test]
fn a_vip_equal_to_a_node_address_is_rejected() {
    let text = GOOD.replace("192.0.2.100/24", "192.0.2.12/24");
    assert_finding(
        &text,
        Severity::Error,
        "vip.address",
        "is nodes[1]'s own address",
    );
}

#[test]
fn duplicate_addresses_are_rejected() {
    let text = GOOD.replace("192.0.2.13,", "192.0.2.12,");
    assert_finding(
        &text,
        Severity::Error,
        "nodes[2].address",
        "already the address of nodes[1]",
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let text = GOOD.replace("name: m3", "name: m2");
    assert_finding(
        &text,
        Severity::Error,
        "nodes[2].name",
        "already the name of nodes[1]",
    );
}

#[test]
fn duplicate_priorities_warn_that_failover_order_is_accidental() {
    let text = GOOD.replace("priority: 100", "priority: 110");
    assert_finding(
        &text,
        Severity::Warning,
        "nodes[2].priority",
        "same priority 110 as m2",
    );
}

#[test]
fn priority_255_on_a_floating_vip_is_rejected_as_keepalived_would_misbehave() {
    let text = GOOD.replace("priority: 120", "priority: 255");
    assert_finding(
        &text,
        Severity::Error,
        "nodes[0].priority",
        "keepalived then ignores weighted track scripts",
    );
}

#[test]
fn an_apiserver_port_on_an_etcd_port_is_a_clash() {
    let text = GOOD.to_string() + "apiServer: {port: 2379}\n";
    assert_finding(
        &text,
        Severity::Error,
        "apiServer.port",
        "2379 is the etcd client port",
    );
}

#[test]
fn a_balancer_on_the_kubelet_port_is_a_clash() {
    let text = GOOD.to_string() + "loadBalancer: {listen: [\"vip:10250\"]}\n";
    assert_finding(
        &text,
        Severity::Error,
        "loadBalancer.listen[0]",
        "takes the kubelet port 10250",
    );
}

#[test]
fn the_status_listener_on_the_apiserver_port_is_a_clash() {
    let text = GOOD.to_string() + "status: {listen: \"127.0.0.1:6443\"}\n";
    assert_finding(
        &text,
        Severity::Error,
        "status.listen",
        "uses port 6443, which kube-apiserver needs",
    );
}

#[test]
fn a_balancer_on_the_apiservers_wildcard_port_is_a_clash() {
    // Seed 002's pitfall: haproxy on *:6443 next to an apiserver on *:6443.
    let text = GOOD.to_string() + "loadBalancer: {listen: [\"0.0.0.0:6443\"]}\n";
    assert_finding(
        &text,
        Severity::Error,
        "loadBalancer.listen[0]",
        "clashes with the apiserver",
    );
}

#[test]
fn a_duplicate_listen_address_is_rejected() {
    let text = GOOD.to_string() + "loadBalancer: {listen: [\"vip:6443\", \"vip:6443\"]}\n";
    assert_finding(
        &text,
        Severity::Error,
        "loadBalancer.listen[1]",
        "listed twice",
    );
}

#[test]
fn a_track_weight_too_small_to_move_the_vip_is_rejected() {
    // kubeadm's doc pattern with priorities 10 apart: weight -2 never crosses the backup.
    let text = GOOD.to_string() + "    \n";
    let text = text.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: apiserver, command: [/usr/bin/curl, -fsk, \"https://127.0.0.1:6443/readyz\"], weight: -2}\n",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.track[0].weight",
        "-2 cannot move the VIP: when \"apiserver\" fails on m1 its priority only drops to 118, not below m2's",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.track[0].weight",
        "at least 11 in magnitude",
    );
}

#[test]
fn a_weight_that_crosses_every_backup_is_accepted() {
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: apiserver, command: [/usr/bin/true], weight: -11}\n",
    );
    assert!(
        !findings(&text)
            .iter()
            .any(|(_, m)| m.starts_with("vip.track")),
        "{:#?}",
        findings(&text)
    );
}

#[test]
fn an_equal_priority_after_failure_does_not_count_as_moving_the_vip() {
    // RFC 5798 §6.4.3: on equal priority the higher address wins, so m1 may keep the VIP.
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: apiserver, command: [/usr/bin/true], weight: -10}\n",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.track[0].weight",
        "-10 cannot move the VIP",
    );
}

#[test]
fn commands_and_names_keepalived_cannot_write_inline_are_accepted() {
    // `sh -c "..."` with quotes is common; haplane runs it without a shell, and the plan's
    // classic keepalived.conf runs it through a wrapper script (tests/render.rs).
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: \"api server\", command: [/bin/sh, -c, \"test \\\"$x\\\" = y\"]}\n  notify: [sh, -c, \"echo \\\"$*\\\" >> /tmp/n\"]\n",
    );
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
}

#[test]
fn a_sub_second_track_interval_warns_that_keepalived_rounds_it() {
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: api, command: [/usr/bin/true], interval: 500ms}\n",
    );
    assert_finding(
        &text,
        Severity::Warning,
        "vip.track[0].interval",
        "rounds 500ms up to 1s",
    );
}

#[test]
fn an_auth_pass_with_a_space_is_rejected() {
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  version: 2\n  authPass: \"a b\"\n",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.authPass",
        "one word of printable ASCII",
    );
}

#[test]
fn vrrp_settings_keepalived_rejects_are_reported_by_the_file_format() {
    // VRID 0 and a sub-second v2 advert: keepalived refuses both (checked with keepalived -t).
    assert_finding(
        &GOOD.replace("vrid: 51", "vrid: 0"),
        Severity::Error,
        "vip.vrid",
        "VRID 0 is not valid",
    );
    let text = GOOD.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  version: 2\n  advertInterval: 500ms\n",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.advertInterval",
        "not valid for VRRPv2",
    );
}

#[test]
fn seed_004_two_lb_nodes_in_front_of_three_masters_has_no_findings() {
    assert_eq!(findings(SEED_004), vec![]);
    let (c, _) = Cluster::from_yaml(SEED_004, Path::new("c.yaml")).unwrap();
    let vrrp: Vec<&str> = c.vrrp_nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(
        vrrp,
        ["lb-1", "lb-2"],
        "the lb nodes carry the VIP, not the masters"
    );
    let backends: Vec<String> = c
        .lb_backends()
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(
        backends,
        ["192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"],
        "the balancer's backends are the masters"
    );
    let members: Vec<&str> = c.etcd_members().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        members,
        ["master-1", "master-2", "master-3"],
        "lb nodes run no etcd"
    );
    assert!(!c.runs_vrrp(c.node("master-1").unwrap()));
    assert!(c.node("lb-1").unwrap().is(Role::Lb));
}

#[test]
fn a_single_lb_node_warns_that_it_is_a_single_point_of_failure() {
    let text = SEED_004.replace(
        "  - {name: lb-2, address: 192.0.2.253, priority: 100, roles: [lb]}\n",
        "",
    );
    assert_finding(
        &text,
        Severity::Warning,
        "nodes",
        "lb-1 is the only lb node",
    );
}

#[test]
fn lb_nodes_without_a_balancer_warn_that_nothing_forwards_the_vip() {
    let text = SEED_004.to_string() + "loadBalancer: {enabled: false}\n";
    assert_finding(
        &text,
        Severity::Warning,
        "loadBalancer.enabled",
        "only carry the VIP",
    );
}

#[test]
fn a_masters_priority_has_no_effect_when_lb_nodes_carry_the_vip() {
    let text = SEED_004.replace(
        "{name: master-2, address: 192.0.2.12, roles: [master]}",
        "{name: master-2, address: 192.0.2.12, priority: 150, roles: [master]}",
    );
    assert_finding(
        &text,
        Severity::Warning,
        "nodes[3].priority",
        "does not run VRRP, so its priority has no effect",
    );
}

#[test]
fn masters_may_sit_outside_the_vips_subnet_when_lb_nodes_carry_it() {
    // The lb nodes share the VIP's segment; the masters are only their backends.
    let text = SEED_004
        .replace("192.0.2.11,", "198.51.100.11,")
        .replace("192.0.2.12,", "198.51.100.12,")
        .replace("192.0.2.13,", "198.51.100.13,");
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
    let text = SEED_004.replace("192.0.2.253,", "198.51.100.253,");
    assert_finding(
        &text,
        Severity::Error,
        "vip.address",
        "not in the subnet of lb node lb-2",
    );
}

#[test]
fn duplicate_lb_priorities_warn_like_duplicate_master_priorities() {
    let text = SEED_004.replace("priority: 100, roles: [lb]", "priority: 110, roles: [lb]");
    assert_finding(
        &text,
        Severity::Warning,
        "nodes[1].priority",
        "same priority 110 as lb-1",
    );
}

#[test]
fn track_weights_are_checked_against_the_lb_nodes() {
    let text = SEED_004.replace(
        "  vrid: 51\n",
        "  vrid: 51\n  track:\n    - {name: haproxy, command: [/usr/bin/true], weight: -5}\n",
    );
    assert_finding(
        &text,
        Severity::Error,
        "vip.track[0].weight",
        "when \"haproxy\" fails on lb-1 its priority only drops to 105, not below lb-2's",
    );
}

#[test]
fn a_wildcard_listener_on_the_apiserver_port_is_fine_on_lb_only_nodes() {
    // No apiserver runs on an lb node, so haproxy's usual `bind *:6443` is safe there.
    let text = SEED_004.to_string() + "loadBalancer: {listen: [\"0.0.0.0:6443\"]}\n";
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
}

#[test]
fn a_vip_listener_on_the_etcd_client_port_does_not_clash_with_kubeadms_etcd() {
    // kubeadm's etcd binds 127.0.0.1 and the node address, never the VIP; the kubelet binds
    // every address, so the VIP at 10250 does clash (a_balancer_on_the_kubelet_port_is_a_clash).
    let text = GOOD.to_string() + "loadBalancer: {listen: [\"vip:2379\"]}\n";
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
    let text = GOOD.to_string() + "loadBalancer: {listen: [\"127.0.0.1:2379\"]}\n";
    assert_finding(
        &text,
        Severity::Error,
        "loadBalancer.listen[0]",
        "takes the etcd client port 2379 on m1",
    );
}

#[test]
fn a_node_local_listener_on_the_kubelet_port_is_a_clash() {
    let text = format!(
        "{}  - {{name: w1, address: 192.0.2.21, roles: [worker]}}\nvip:\n  address: 192.0.2.100/24\n  vrid: 51\nloadBalancer: {{nodeLocalListen: [\"127.0.0.1:10250\"]}}\n",
        GOOD.split("vip:").next().unwrap()
    );
    assert_finding(
        &text,
        Severity::Error,
        "loadBalancer.nodeLocalListen[0]",
        "takes the kubelet port 10250 on w1",
    );
}

#[test]
fn lb_nodes_fencing_by_quorum_cannot_use_a_loopback_etcd_endpoint() {
    // An lb node runs no etcd member: 127.0.0.1:2379 there is nobody, so it could never lead
    // the VIP's election; it must reach the masters' members over the network.
    let text = SEED_004.to_string() + "etcd: {endpoints: [\"https://127.0.0.1:2379\"]}\n";
    assert_finding(
        &text,
        Severity::Error,
        "etcd.endpoints[0]",
        "the lb nodes run no etcd member",
    );
    let text = SEED_004.to_string()
        + "etcd: {endpoints: [\"https://192.0.2.11:2379\", \"https://192.0.2.12:2379\", \"https://192.0.2.13:2379\"]}\n";
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
    // Without quorum fencing an lb node never talks to etcd, and the masters may use loopback.
    let text = SEED_004.replace("  vrid: 51\n", "  vrid: 51\n  fencing: none\n")
        + "etcd: {endpoints: [\"https://127.0.0.1:2379\"]}\n";
    assert!(errors(&text).is_empty(), "{:#?}", errors(&text));
}
