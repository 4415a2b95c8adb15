//! The maintenance handover's nftables tables (crates/haplane/src/nft/handover.rs), programmed
//! over netlink in a network namespace: they are the rules `nft` makes of the text the daemon
//! used to pipe into `nft -f -` (read back with `nft -j`, compared with the same text loaded
//! by nft on another host), they are replaced and removed whole, and the park table does what
//! it is for: the node stops answering ARP for the VIP.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use haplane::nft::handover::{forward, park_arp, stop_forwarding, unpark_arp};
use lab::arp_probe::ArpProbe;
use netlab::{Host, Topology};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const OLD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

/// `nft -j list table FAMILY NAME`: its chains and rules without handles; None without it.
fn table(host: &Host, family: &str, name: &str) -> Option<serde_json::Value> {
    let out = host
        .run(&["nft", "-j", "list", "table", family, name])
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items: Vec<serde_json::Value> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("metainfo").is_none())
        .map(|i| {
            let mut i = i.clone();
            for inner in i.as_object_mut().unwrap().values_mut() {
                inner.as_object_mut().unwrap().remove("handle");
            }
            i
        })
        .collect();
    Some(items.into())
}

/// Loads `text` with nft on `host` and reads table `family` `name` back.
fn nft_makes(host: &Host, text: &str, family: &str, name: &str) -> serde_json::Value {
    let path = std::env::temp_dir().join(format!(
        "haplane-handover-rules-{}-{family}.nft",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let loaded = host.run(&["nft", "-f", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    loaded.unwrap();
    let t = table(host, family, name).unwrap();
    host.run(&["nft", "delete", "table", family, name]).unwrap();
    t
}

fn ifindex(host: &Host, name: &str) -> u32 {
    let out = host
        .run(&["cat", &format!("/sys/class/net/{name}/ifindex")])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn the_forwarding_rules_are_the_ones_nft_makes_of_the_old_text_for_several_ports_and_ipv6() {
    if support::skip() {
        return;
    }
    let topo = Topology::builder().hosts(["h", "x"]).build().unwrap();
    let (h, x) = (topo.host("h").unwrap(), topo.host("x").unwrap());
    let eth0 = ifindex(h, "eth0");
    let v6: IpAddr = "2001:db8::100".parse().unwrap();
    let v6_old: IpAddr = "2001:db8::12".parse().unwrap();
    h.enter(|| forward(IpAddr::V4(VIP), &[6443, 8443], IpAddr::V4(OLD), eth0))
        .unwrap()
        .unwrap();
    h.enter(|| forward(v6, &[6443], v6_old, eth0))
        .unwrap()
        .unwrap();

    let v4_text = format!(
        "table ip haplane_handover {{\n  chain prerouting {{\n    type filter hook prerouting priority -150;\n\
         \x20   ip daddr {VIP} tcp dport {{ 6443, 8443 }} tcp flags & (syn | ack) != syn ct state new counter dup to {OLD} device \"eth0\" drop\n\
         \x20   ip daddr {VIP} tcp dport {{ 6443, 8443 }} tcp flags & (fin | rst) != 0 ct state invalid counter dup to {OLD} device \"eth0\" drop\n  }}\n}}\n"
    );
    let v6_text = format!(
        "table ip6 haplane_handover {{\n  chain prerouting {{\n    type filter hook prerouting priority -150;\n\
         \x20   ip6 daddr {v6} tcp dport {{ 6443 }} tcp flags & (syn | ack) != syn ct state new counter dup to {v6_old} device \"eth0\" drop\n\
         \x20   ip6 daddr {v6} tcp dport {{ 6443 }} tcp flags & (fin | rst) != 0 ct state invalid counter dup to {v6_old} device \"eth0\" drop\n  }}\n}}\n"
    );
    let want_v4 = nft_makes(x, &v4_text, "ip", "haplane_handover");
    let want_v6 = nft_makes(x, &v6_text, "ip6", "haplane_handover");
    assert_eq!(want_v4.as_array().map(Vec::len), Some(4), "{want_v4}");
    assert_eq!(table(h, "ip", "haplane_handover"), Some(want_v4.clone()));
    assert_eq!(table(h, "ip6", "haplane_handover"), Some(want_v6));

    // Programming it again replaces the table whole (no doubled rules).
    h.enter(|| forward(IpAddr::V4(VIP), &[6443, 8443], IpAddr::V4(OLD), eth0))
        .unwrap()
        .unwrap();
    assert_eq!(table(h, "ip", "haplane_handover"), Some(want_v4));

    // Removal takes only the family asked for, and is fine when nothing is there.
    h.enter(|| stop_forwarding(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    assert_eq!(table(h, "ip", "haplane_handover"), None);
    assert!(table(h, "ip6", "haplane_handover").is_some());
    h.enter(|| stop_forwarding(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    h.enter(|| stop_forwarding(v6)).unwrap().unwrap();
    assert_eq!(table(h, "ip6", "haplane_handover"), None);

    // An old holder of the other family is refused before anything is sent.
    let mixed = h
        .enter(|| forward(IpAddr::V4(VIP), &[6443], v6_old, eth0))
        .unwrap();
    assert!(mixed.is_err());
    assert_eq!(table(h, "ip", "haplane_handover"), None);
}

#[test]
fn a_parked_vip_is_not_answered_by_arp_and_the_park_rules_are_the_ones_nft_makes() {
    if support::skip() {
        return;
    }
    let topo = Topology::builder()
        .hosts(["h", "c", "x"])
        .extra_address("h", "192.0.2.100/24")
        .build()
        .unwrap();
    let (h, c, x) = (
        topo.host("h").unwrap(),
        topo.host("c").unwrap(),
        topo.host("x").unwrap(),
    );
    let probe = ArpProbe::open(c, VIP).unwrap();
    let window = Duration::from_millis(200);
    let answered = || !probe.probe(window).unwrap().answers.is_empty();
    // A lost probe or reply must not pass for silence: none of three answered.
    let silent = || (0..3).all(|_| probe.probe(window).unwrap().answers.is_empty());
    assert!(answered(), "before the park h answers for the VIP");

    h.enter(|| park_arp(VIP, NODE)).unwrap().unwrap();
    let text = format!(
        "table arp haplane_park {{\n  chain input {{\n    type filter hook input priority 0;\n    arp operation request arp daddr ip {VIP} drop\n  }}\n  chain output {{\n    type filter hook output priority 0;\n    arp saddr ip {VIP} arp saddr ip set {NODE}\n  }}\n}}\n"
    );
    let want = nft_makes(x, &text, "arp", "haplane_park");
    assert_eq!(want.as_array().map(Vec::len), Some(5), "{want}");
    assert_eq!(table(h, "arp", "haplane_park"), Some(want.clone()));
    assert!(silent(), "parked: h does not answer ARP for the VIP");

    // Parking again replaces the table whole.
    h.enter(|| park_arp(VIP, NODE)).unwrap().unwrap();
    assert_eq!(table(h, "arp", "haplane_park"), Some(want));

    h.enter(unpark_arp).unwrap().unwrap();
    assert_eq!(table(h, "arp", "haplane_park"), None);
    assert!(answered(), "unparked: h answers again");
    h.enter(unpark_arp).unwrap().unwrap();
}
