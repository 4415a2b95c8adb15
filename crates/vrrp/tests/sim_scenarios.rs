//! Deterministic scenarios on the simulated LAN (virtual time, seeded loss).
//!
//! Timing bounds below are exact virtual-time expectations with margins for the 1 ms
//! link delay; they are not wall-clock thresholds.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use vrrp::sim::Lan;
use vrrp::{RouterConfig, State, Version};

fn lan(configs: Vec<RouterConfig>) -> Lan {
    let mut lan = Lan::new(7);
    for c in configs {
        lan.add(c).unwrap();
    }
    lan
}

/// Run until exactly one master exists and holds the addresses alone; returns it.
fn settle(lan: &mut Lan) -> usize {
    let took = lan.run_until_cond(secs(30.0), |l| {
        l.masters().len() == 1 && l.vip_holders() == l.masters()
    });
    assert!(took.is_some(), "no single master: {:?}", lan.masters());
    lan.masters()[0]
}

/// When `node` became Master after `since` (virtual time since creation).
fn became_master_after(lan: &Lan, node: usize, since: Duration) -> Option<Duration> {
    lan.events()
        .iter()
        .find(|e| e.node == node && e.to == State::Master && e.at >= since)
        .map(|e| e.at - since)
}

/// RFC 5798 §6.4: started together, the highest priority ends up Master and alone holds
/// the virtual address; the others stay Backup.
#[test]
fn highest_priority_router_is_elected() {
    let mut lan = lan(vec![v3(1, 100), v3(2, 150), v3(3, 120)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 1);
    lan.run_for(secs(20.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.vip_holders(), vec![1]);
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.router(0).master_address(), Some(ip(2)));
}

/// RFC 5798 §6.4.3: equal priorities started together both time out at once; the tie goes
/// to the higher primary address.
#[test]
fn equal_priorities_elect_the_higher_address() {
    let mut lan = lan(vec![v3(1, 100), v3(9, 100), v3(5, 100)]);
    lan.start_all();
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.vip_holders(), vec![1]);
}

/// RFC 5798 §6.4.1: the owner (255) is Master immediately; the others never contend.
#[test]
fn owner_is_master_from_the_start() {
    let mut lan = lan(vec![v3(1, 255), v3(2, 254)]);
    lan.start_all();
    assert_eq!(lan.masters(), vec![0]);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.router(1).counters().became_master, 0);
}

/// RFC 5798 §6.4.2: a master that vanishes without priority 0 is replaced after
/// Master_Down_Interval (3 × 1 s + skew ≈ 3.61 s at priority 100).
#[test]
fn crashed_master_is_replaced_after_master_down_interval() {
    let mut lan = lan(vec![v3(1, 200), v3(2, 100)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.run_for(secs(5.0));
    lan.crash(0);
    let at = lan.elapsed();
    assert_eq!(settle(&mut lan), 1);
    let took = became_master_after(&lan, 1, at).unwrap();
    // The last advert arrived up to 1 s before the crash, or one link delay after it.
    assert!(took <= mdi_1s(100) + lan.delay, "{took:?}");
    assert!(took + secs(1.0) >= mdi_1s(100), "{took:?}");
}

/// RFC 5798 §6.4.3 / §6.4.2: after a graceful shutdown (priority 0) the backup takes over
/// after Skew_Time (≈ 0.61 s at priority 100), not Master_Down_Interval (≈ 3.61 s).
#[test]
fn graceful_shutdown_hands_over_after_skew_time() {
    let mut lan = lan(vec![v3(1, 200), v3(2, 100)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.run_for(secs(2.5));
    lan.shutdown(0);
    assert!(lan.node(0).vips.is_empty(), "addresses removed at once");
    let at = lan.elapsed();
    assert_eq!(settle(&mut lan), 1);
    let took = became_master_after(&lan, 1, at).unwrap();
    let skew = skew_1s(100);
    assert!(took >= skew && took <= skew + secs(0.01), "{took:?}");
    // Restarting the higher-priority router preempts back (preempt is on by default).
    lan.start(0);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0]);
}

/// The same with the 100 ms v3 interval measured against keepalived here (≈ 70 ms).
#[test]
fn fast_v3_shutdown_hands_over_within_one_interval() {
    let fast = |host, prio| RouterConfig {
        advert_interval: Duration::from_millis(100),
        ..v3(host, prio)
    };
    let mut lan = lan(vec![fast(1, 200), fast(2, 100)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.run_for(secs(1.0));
    lan.shutdown(0);
    let at = lan.elapsed();
    settle(&mut lan);
    let took = became_master_after(&lan, 1, at).unwrap();
    assert!(took <= Duration::from_millis(100), "{took:?}");
}

/// keepalived: the master's link goes down => FAULT; its priority-0 advert cannot leave, so
/// the backup waits Master_Down_Interval. When the link returns, it preempts back.
#[test]
fn master_link_down_fails_over_and_link_up_preempts_back() {
    let mut lan = lan(vec![v3(1, 200), v3(2, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.run_for(secs(3.0));
    lan.set_link(0, false);
    assert_eq!(lan.state(0), State::Fault);
    assert!(lan.node(0).vips.is_empty());
    let at = lan.elapsed();
    assert_eq!(settle(&mut lan), 1);
    let took = became_master_after(&lan, 1, at).unwrap();
    assert!(
        took > skew_1s(100) + secs(1.0),
        "no priority 0 got out: {took:?}"
    );
    lan.set_link(0, true);
    assert_eq!(lan.state(0), State::Backup);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.vip_holders(), vec![0]);
}

/// keepalived: a weight-0 check failing on the master => FAULT with a priority-0 advert, so
/// the backup takes over after Skew_Time.
#[test]
fn failing_weight_zero_check_hands_over_after_skew_time() {
    let mut lan = lan(vec![with_check(v3(1, 200), 0), v3(2, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.run_for(secs(2.2));
    lan.set_check(0, 0, false);
    assert_eq!(lan.state(0), State::Fault);
    let at = lan.elapsed();
    assert_eq!(settle(&mut lan), 1);
    let took = became_master_after(&lan, 1, at).unwrap();
    assert!(took <= skew_1s(100) + secs(0.01), "{took:?}");
}

/// keepalived weights: a failing check with weight −60 drops 150 to 90 < 100, so the backup
/// preempts; when it passes again the original master preempts back.
#[test]
fn negative_weight_large_enough_moves_the_vip() {
    let mut lan = lan(vec![with_check(v3(1, 150), -60), v3(2, 100)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.set_check(0, 0, false);
    assert_eq!(lan.router(0).effective_priority(), 90);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    lan.set_check(0, 0, true);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0]);
}

/// The common keepalived pitfall: a weight too small to cross the backup's priority
/// (150 − 20 = 130 > 100) never moves the VIP.
#[test]
fn negative_weight_too_small_never_moves_the_vip() {
    let mut lan = lan(vec![with_check(v3(1, 150), -20), v3(2, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.set_check(0, 0, false);
    lan.run_for(secs(30.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.router(1).counters().became_master, 0);
}

/// keepalived positive weight: a passing check adds its weight (100 + 60 beats 150); when it
/// fails the bonus goes and the other router preempts.
#[test]
fn positive_weight_counts_while_passing() {
    let mut lan = lan(vec![with_check(v3(1, 100), 60), v3(2, 150)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.set_check(0, 0, false);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
}

/// Split brain and healing: each side of a partition elects its own master; on healing the
/// lower-priority master yields (RFC 5798 §6.4.3) and one VIP holder remains.
#[test]
fn partition_heals_to_a_single_master() {
    let mut lan = lan(vec![v3(1, 200), v3(2, 150), v3(3, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.partition(&[&[0], &[1, 2]]);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0, 1], "one master per side");
    lan.heal();
    let took = lan
        .run_until_cond(secs(10.0), |l| l.masters() == vec![0])
        .unwrap();
    // keepalived-style re-assertion: the lower master yields on the first advert it hears.
    assert!(took <= secs(1.01), "{took:?}");
    assert_eq!(lan.vip_holders(), vec![0]);
}

/// keepalived nopreempt: a higher-priority router returning after a crash stays Backup under
/// the live lower-priority master.
#[test]
fn nopreempt_router_does_not_take_over_a_live_master() {
    let np = |host, prio| RouterConfig {
        preempt: false,
        ..v3(host, prio)
    };
    let mut lan = lan(vec![np(1, 200), np(2, 100)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 0);
    lan.crash(0);
    assert_eq!(settle(&mut lan), 1);
    lan.restart(0);
    lan.run_for(secs(30.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.state(0), State::Backup);
}

/// keepalived preempt_delay: the returning higher-priority router waits preempt_delay (20 s)
/// before preempting, then takes over within one Master_Down_Interval.
#[test]
fn preempt_delay_postpones_takeover_by_the_returning_router() {
    let pd = RouterConfig {
        preempt_delay: Duration::from_secs(20),
        ..v3(1, 200)
    };
    let mut lan = lan(vec![pd, v3(2, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.crash(0);
    assert_eq!(settle(&mut lan), 1);
    lan.restart(0);
    let at = lan.elapsed();
    lan.run_for(secs(19.0));
    assert_eq!(lan.masters(), vec![1], "held during the delay");
    settle_on(&mut lan, 0);
    let took = became_master_after(&lan, 0, at).unwrap();
    assert!(
        took >= secs(20.0) && took <= secs(20.0) + mdi_1s(200) + secs(0.01),
        "{took:?}"
    );
}

fn settle_on(lan: &mut Lan, node: usize) {
    let ok = lan.run_until_cond(secs(60.0), |l| {
        l.masters() == vec![node] && l.vip_holders() == vec![node]
    });
    assert!(
        ok.is_some(),
        "{node} never sole master: {:?}",
        lan.masters()
    );
}

/// Unicast peers (keepalived unicast_peer): election works over unicast; a router that is
/// nobody's peer is not heard.
#[test]
fn unicast_peers_elect_and_ignore_strangers() {
    let uc = |host: u8, prio, peers: &[u8]| RouterConfig {
        unicast_peers: peers.iter().map(|p| ip(*p)).collect(),
        ..v3(host, prio)
    };
    // Router 3 claims 1 and 2 as peers but they do not list it.
    let mut lan = lan(vec![
        uc(1, 100, &[2]),
        uc(2, 150, &[1]),
        uc(3, 250, &[1, 2]),
    ]);
    lan.start_all();
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![1, 2], "3 talks alone; 1 and 2 elect 2");
    assert!(
        lan.router(0)
            .counters()
            .discarded(vrrp::DiscardReason::NotAPeer)
            > 0
    );
}

/// VRRPv2 with PASS auth: routers with the same password elect one master; a router with
/// another password is not heard (each side sees the other's adverts as auth mismatches).
#[test]
fn v2_password_mismatch_isolates_routers() {
    let pass = |host, prio, pw: &str| RouterConfig {
        auth_pass: Some(pw.into()),
        ..v2(host, prio)
    };
    let mut lan = lan(vec![
        pass(1, 100, "k8s-secret-1"),
        pass(2, 150, "k8s-secretX"),
        pass(3, 120, "other"),
    ]);
    lan.start_all();
    lan.run_for(secs(10.0));
    // "k8s-secret-1" and "k8s-secretX" share their first 8 bytes, as keepalived compares.
    assert_eq!(lan.masters(), vec![1, 2]);
    assert!(
        lan.router(2)
            .counters()
            .discarded(vrrp::DiscardReason::AuthMismatch)
            > 0
    );
}

/// RFC 3768 §7.1: v2 routers with different advert intervals discard each other's adverts.
#[test]
fn v2_interval_mismatch_is_discarded() {
    let slow = RouterConfig {
        advert_interval: Duration::from_secs(2),
        ..v2(2, 150)
    };
    let mut lan = lan(vec![v2(1, 100), slow]);
    lan.start_all();
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![0, 1]);
    assert!(
        lan.router(0)
            .counters()
            .discarded(vrrp::DiscardReason::IntervalMismatch)
            > 0
    );
}

/// RFC 5798 §6.4.2: a v3 backup configured with 1 s learns the master's 200 ms interval and
/// so detects its crash after 3 × 0.2 s + skew, not 3.6 s.
#[test]
fn v3_backup_uses_the_masters_interval_for_failure_detection() {
    let fast_master = RouterConfig {
        advert_interval: Duration::from_millis(200),
        ..v3(1, 200)
    };
    let mut lan = lan(vec![fast_master, v3(2, 100)]);
    lan.start_all();
    settle(&mut lan);
    lan.run_for(secs(3.0));
    assert_eq!(
        lan.router(1).master_adver_interval(),
        Duration::from_millis(200)
    );
    lan.crash(0);
    let at = lan.elapsed();
    settle(&mut lan);
    let took = became_master_after(&lan, 1, at).unwrap();
    let mdi = Duration::from_millis(600) + Duration::from_millis(200) * 156 / 256;
    assert!(took <= mdi + lan.delay, "{took:?}");
    assert!(took + Duration::from_millis(200) >= mdi, "{took:?}");
}

/// VRRPv3 over IPv6 (ff02::12, pseudo-header checksum always).
#[test]
fn ipv6_v3_elects_and_fails_over() {
    let v6 = |host: u16, prio| RouterConfig {
        priority: prio,
        ..RouterConfig::new(
            format!("v6-{host}"),
            51,
            Version::V3,
            IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, host)),
            vec!["2001:db8::100".parse().unwrap()],
        )
    };
    let mut lan = lan(vec![v6(1, 100), v6(2, 200)]);
    lan.start_all();
    assert_eq!(settle(&mut lan), 1);
    lan.crash(1);
    assert_eq!(settle(&mut lan), 0);
}

/// Seeded 20% loss on every link: the master stays put (a backup needs three adverts in a
/// row lost to time out), and any blip resolves back to the highest priority.
#[test]
fn lossy_lan_keeps_the_highest_priority_master() {
    let mut lan = lan(vec![v3(1, 100), v3(2, 200), v3(3, 150)]);
    lan.jitter = Duration::from_millis(5);
    lan.set_loss_all(0.2);
    lan.start_all();
    lan.run_for(secs(120.0));
    lan.set_loss_all(0.0);
    lan.run_for(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.vip_holders(), vec![1]);
}

/// A router hearing itself (multicast loop) counts its own packets and is not confused.
#[test]
fn own_adverts_are_discarded() {
    let mut lan = lan(vec![v3(1, 200)]);
    lan.start_all();
    lan.run_for(secs(5.0));
    let payload = {
        let mut r = vrrp::Router::new(v3(1, 255)).unwrap();
        r.start(lan.now());
        match r.poll_action() {
            Some(vrrp::Action::Send { payload, .. }) => payload,
            other => panic!("expected an advert, got {other:?}"),
        }
    };
    lan.inject(
        0,
        vrrp::Incoming {
            src: ip(1),
            dst: "224.0.0.18".parse().unwrap(),
            hop_limit: 255,
            payload: &payload,
        },
    );
    assert_eq!(
        lan.router(0)
            .counters()
            .discarded(vrrp::DiscardReason::OwnPacket),
        1
    );
    assert_eq!(lan.masters(), vec![0]);
}
