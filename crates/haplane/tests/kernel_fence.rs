//! The VIP's kernel stop (crates/haplane/src/nft.rs), in a network namespace: a node answers
//! ARP for the VIP only while the fence's set element lives, the element times out by itself
//! (the daemon need not run), and the table goes when it is removed. Watched from another
//! host on the LAN with ARP probes, as clients see it.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haplane::nft::KernelFence;
use lab::arp_probe::{ArpProbe, interface_mac};
use netlab::Topology;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const WINDOW: Duration = Duration::from_millis(200);

fn answered(probe: &ArpProbe) -> bool {
    // A lost probe or reply must not pass for a closed fence: answered by any of three.
    !probe.probe(WINDOW).unwrap().answers.is_empty()
}

fn silent(probe: &ArpProbe) -> bool {
    (0..3).all(|_| probe.probe(WINDOW).unwrap().answers.is_empty())
}

#[test]
fn the_vip_is_answered_only_while_the_fence_element_lives_and_the_element_expires_by_itself() {
    if support::skip() {
        return;
    }
    let topo = Topology::builder()
        .hosts(["h", "c"])
        .extra_address("h", "192.0.2.100/24")
        .build()
        .unwrap();
    let (h, c) = (topo.host("h").unwrap(), topo.host("c").unwrap());
    let probe = ArpProbe::open(c, VIP).unwrap();
    let mac = interface_mac(h, h.ifname()).unwrap();
    assert!(answered(&probe), "without a fence the holder answers");

    let mut fence = h
        .enter(|| KernelFence::install(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    assert!(silent(&probe), "a fresh fence is closed");

    // Open for a while: answered, and only by h.
    let opened = Instant::now();
    fence.open(Some(Duration::from_secs(2))).unwrap();
    let round = probe.probe(WINDOW).unwrap();
    assert_eq!(round.answers, vec![mac], "open: h answers");
    // Nobody refreshes it: the kernel closes it at the timeout on its own.
    std::thread::sleep(
        (opened + Duration::from_millis(2100)).saturating_duration_since(Instant::now()),
    );
    assert!(
        silent(&probe),
        "the element timed out: closed without any call"
    );

    // Open without a timeout (fencing not armed yet), then close at once.
    fence.open(None).unwrap();
    assert!(answered(&probe));
    fence.close().unwrap();
    assert!(silent(&probe), "closed");

    // A second install (a restarted daemon) replaces the table, closed.
    fence.open(None).unwrap();
    let mut again = h
        .enter(|| KernelFence::install(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    assert!(silent(&probe), "a restart starts closed");

    // Removing the table leaves the host as it was.
    again.remove().unwrap();
    assert!(answered(&probe), "no table, no fence");
    let tables = h.run(&["nft", "list", "tables"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains(haplane::nft::TABLE),
        "the table is gone: {}",
        String::from_utf8_lossy(&tables.stdout)
    );
}

#[test]
fn a_restarted_daemon_replaces_the_old_fence_in_one_transaction_so_it_is_never_open_between() {
    // Soak seed 30 (docs/lab.md "Chaos"): a daemon restarted after SIGKILL replaced its
    // predecessor's table by deleting it and creating a new one in two transactions. In
    // between there was no fence, the leftover VIP was still on eth0, and the node answered
    // ARP for it beside the real holder. Whatever the scheduler does between two syscalls,
    // no committed ruleset may lack the fence once there is one.
    if support::skip() {
        return;
    }
    let topo = Topology::builder()
        .hosts(["h", "c"])
        .extra_address("h", "192.0.2.100/24")
        .build()
        .unwrap();
    let (h, c) = (topo.host("h").unwrap(), topo.host("c").unwrap());
    let probe = ArpProbe::open(c, VIP).unwrap();
    let monitor = support::NftMonitor::start(h);
    let _old = h
        .enter(|| KernelFence::install(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    // The predecessor is killed (its table stays); the new daemon installs its own.
    let _new = h
        .enter(|| KernelFence::install(IpAddr::V4(VIP)))
        .unwrap()
        .unwrap();
    let generations = support::fence_generations(&monitor.finish(h), false);
    let first = generations
        .iter()
        .position(|e| *e)
        .expect("the first install committed the table");
    assert!(
        generations.len() > first + 1,
        "the second install committed nothing: {generations:?}"
    );
    assert!(
        generations[first..].iter().all(|e| *e),
        "a generation without the fence was committed during the reinstall: {generations:?}"
    );
    assert!(silent(&probe), "the reinstalled fence is closed");
}
