//! VRRPv3 over IPv6 (RFC 5798 §5.1.2): adverts to ff02::12 from the link-local address with
//! hop limit 255, the VIP added without DAD and announced with unsolicited NAs; haplane alone
//! and next to keepalived.

mod support;

use std::time::Duration;

use support::Lab;

const VIP6: &str = "2001:db8::100";

fn cluster(prios: &[(&str, u8)]) -> String {
    let mut s = String::from("cluster: v6\nnodes:\n");
    for (i, (name, prio)) in prios.iter().enumerate() {
        s.push_str(&format!(
            "  - {{name: {name}, address: \"2001:db8::{}\", priority: {prio}}}\n",
            11 + i
        ));
    }
    s.push_str(&format!(
        "vip: {{address: \"{VIP6}/64\", interface: eth0, vrid: 61, version: 3, advertInterval: 100ms}}\nloadBalancer: {{enabled: false}}\n"
    ));
    s
}

fn lab(hosts: &[&str]) -> Lab {
    let mut lab = Lab::new_dual_stack(hosts);
    lab.vip = VIP6.parse().unwrap();
    lab
}

#[test]
fn two_haplane_nodes_elect_fail_over_and_preempt_over_ipv6() {
    if support::skip() {
        return;
    }
    let mut lab = lab(&["m1", "m2", "c"]);
    let path = lab.write("cluster.yaml", &cluster(&[("m1", 150), ("m2", 100)]));
    lab.start_haplane("m1", &path);
    lab.start_haplane("m2", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(15));
    lab.assert_holders_stay(&["m1"], Duration::from_secs(1));
    let status = lab.status("m2");
    let master = status["vrrp"][0]["master"].as_str().unwrap().to_string();
    assert!(
        master.starts_with("fe80::"),
        "adverts come from the link-local address: {master}"
    );
    assert!(
        status["vrrp"][0]["counters"]["adverts_received"]
            .as_u64()
            .unwrap()
            > 0
    );

    lab.host("m1").link_down().unwrap();
    lab.wait_holders(&["m2"], Duration::from_secs(6));
    lab.host("m1").link_up().unwrap();
    lab.wait_holders(&["m1"], Duration::from_secs(6));
}

#[test]
fn haplane_and_keepalived_share_an_ipv6_virtual_router_in_both_orders() {
    if support::skip() {
        return;
    }
    for haplane_is_master in [true, false] {
        let (hp, kp) = if haplane_is_master {
            (150, 100)
        } else {
            (100, 150)
        };
        let mut lab = lab(&["m1", "m2"]);
        let path = lab.write("cluster.yaml", &cluster(&[("m1", hp), ("m2", kp)]));
        lab.start_haplane("m1", &path);
        lab.start_keepalived(
            "m2",
            &format!(
                "global_defs {{\n  router_id m2\n  vrrp_version 3\n}}\nvrrp_instance v6 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 61\n  priority {kp}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP6}/64 dev eth0\n  }}\n}}\n"
            ),
        );
        let (master, backup) = if haplane_is_master {
            ("m1", "m2")
        } else {
            ("m2", "m1")
        };
        lab.wait_holders(&[master], Duration::from_secs(15));
        lab.assert_holders_stay(&[master], Duration::from_secs(1));
        lab.host(master).link_down().unwrap();
        lab.wait_holders(&[backup], Duration::from_secs(6));
        lab.host(master).link_up().unwrap();
        lab.wait_holders(&[master], Duration::from_secs(6));
        let discarded = &lab.status("m1")["vrrp"][0]["counters"]["discarded"];
        assert_eq!(discarded["bad_checksum"], 0, "{}", lab.logs());
        assert_eq!(discarded["bad_ttl"], 0, "{}", lab.logs());
    }
}
