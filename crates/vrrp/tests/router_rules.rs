//! The router state machine driven directly, one rule per test (RFC 5798 §6, keepalived).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use vrrp::packet::{MULTICAST_V4, password_auth_data};
use vrrp::{
    Action, Advertisement, ChecksumMode, DiscardReason, Incoming, Router, RouterConfig, State,
    Version,
};

const GROUP: IpAddr = IpAddr::V4(MULTICAST_V4);

fn drain(r: &mut Router) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<Advertisement> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { dst, payload } => Some(
                Advertisement::decode(ip(1), *dst, payload, ChecksumMode::PseudoHeader)
                    .or_else(|_| {
                        // Unicast/any source: decode with the sender's real address below.
                        Advertisement::decode(ip(1), *dst, payload, ChecksumMode::MessageOnly)
                    })
                    .expect("router sends valid adverts"),
            ),
            _ => None,
        })
        .collect()
}

/// An advert from `from` as a peer router with `cfg`-like settings would send it.
fn advert(version: Version, priority: u8, interval: u16) -> Advertisement {
    Advertisement {
        version,
        vrid: 51,
        priority,
        interval,
        addresses: vec![vip()],
        auth: None,
    }
}

fn deliver(r: &mut Router, now: Instant, from: IpAddr, ad: &Advertisement) {
    let payload = ad.encode(from, GROUP, ChecksumMode::PseudoHeader).unwrap();
    r.handle_packet(
        now,
        Incoming {
            src: from,
            dst: GROUP,
            hop_limit: 255,
            payload: &payload,
        },
    );
}

/// A backup router (v3, priority 100, 1 s) started at t0, its start actions drained.
fn backup(cfg: RouterConfig) -> (Router, Instant) {
    let mut r = Router::new(cfg).unwrap();
    let t0 = Instant::now();
    r.start(t0);
    drain(&mut r);
    assert_eq!(r.state(), State::Backup);
    (r, t0)
}

/// A router driven to Master by its down timer, actions drained.
fn master(cfg: RouterConfig) -> (Router, Instant) {
    let (mut r, _t0) = backup(cfg);
    let t = r.poll_timeout().unwrap();
    r.handle_timeout(t);
    drain(&mut r);
    assert_eq!(r.state(), State::Master);
    (r, t)
}

/// RFC 5798 §6.1: Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256 and
/// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time (3.609 s at 100 / 1 s).
#[test]
fn master_down_interval_follows_rfc5798_formula() {
    let r = Router::new(v3(1, 100)).unwrap();
    assert_eq!(r.skew_time(), Duration::from_micros(609_375));
    assert_eq!(r.master_down_interval(), Duration::from_micros(3_609_375));
    let fast = Router::new(RouterConfig {
        advert_interval: Duration::from_millis(100),
        ..v3(1, 200)
    })
    .unwrap();
    // (56 × 100 ms) / 256 = 21.875 ms.
    assert_eq!(fast.skew_time(), Duration::from_micros(21_875));
    assert_eq!(fast.master_down_interval(), Duration::from_micros(321_875));
}

/// RFC 3768 §6.1: v2 Skew_Time = (256 − Priority)/256 s, whatever the advert interval.
#[test]
fn v2_skew_time_is_independent_of_interval() {
    let r = Router::new(RouterConfig {
        advert_interval: Duration::from_secs(3),
        ..v2(1, 128)
    })
    .unwrap();
    assert_eq!(r.skew_time(), Duration::from_millis(500));
    assert_eq!(r.master_down_interval(), Duration::from_millis(9_500));
}

/// RFC 5798 §6.4.1: the address owner (255) sends an advert, takes the addresses and
/// announces them at once.
#[test]
fn owner_becomes_master_at_start() {
    let mut r = Router::new(v3(1, 255)).unwrap();
    let t0 = Instant::now();
    r.start(t0);
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert!(matches!(actions[0], Action::Send { dst, .. } if dst == GROUP));
    assert_eq!(sends(&actions)[0].priority, 255);
    assert_eq!(actions[1], Action::AddVips(vec![vip()]));
    assert_eq!(actions[2], Action::Announce(vec![vip()]));
    assert_eq!(
        actions[3],
        Action::StateChanged {
            from: State::Initialize,
            to: State::Master,
            priority: 255
        }
    );
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(r.master_address(), Some(ip(1)));
}

/// RFC 5798 §6.4.1: a non-owner becomes Backup with Master_Down_Timer set, and sends nothing.
#[test]
fn non_owner_starts_as_backup_with_down_timer() {
    let mut r = Router::new(v3(1, 100)).unwrap();
    let t0 = Instant::now();
    r.start(t0);
    let actions = drain(&mut r);
    assert_eq!(
        actions,
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            priority: 100
        }]
    );
    assert_eq!(r.poll_timeout(), Some(t0 + mdi_1s(100)));
}

/// RFC 5798 §6.4.2: Master_Down_Timer fires => send advert, add and announce the addresses,
/// become Master; then adverts every Advertisement_Interval.
#[test]
fn backup_becomes_master_when_down_timer_fires() {
    let (mut r, t0) = backup(v3(1, 100));
    let t = t0 + mdi_1s(100);
    r.handle_timeout(t - Duration::from_millis(1));
    assert_eq!(r.state(), State::Backup, "not before the deadline");
    r.handle_timeout(t);
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert!(matches!(actions[0], Action::Send { .. }));
    assert!(actions.contains(&Action::AddVips(vec![vip()])));
    assert!(actions.contains(&Action::Announce(vec![vip()])));
    assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(1)));
    r.handle_timeout(t + Duration::from_secs(1));
    let again = drain(&mut r);
    assert_eq!(sends(&again).len(), 1, "periodic advert");
    assert_eq!(r.counters().became_master, 1);
}

/// RFC 5798 §6.4.2: a priority-0 advert sets Master_Down_Timer to Skew_Time.
#[test]
fn backup_takes_over_after_skew_time_on_priority_zero() {
    let (mut r, t0) = backup(v3(1, 100));
    let t = t0 + Duration::from_millis(500);
    deliver(&mut r, t, ip(2), &advert(Version::V3, 0, 100));
    assert_eq!(r.poll_timeout(), Some(t + skew_1s(100)));
    assert_eq!(r.counters().priority_zero_received, 1);
}

/// RFC 5798 §6.4.2: an advert with priority ≥ ours resets Master_Down_Timer, and a v3 backup
/// learns Master_Adver_Interval from it.
#[test]
fn backup_accepts_higher_master_and_learns_its_interval() {
    let (mut r, t0) = backup(v3(1, 100));
    let t = t0 + Duration::from_secs(2);
    deliver(&mut r, t, ip(2), &advert(Version::V3, 150, 50));
    assert_eq!(r.master_adver_interval(), Duration::from_millis(500));
    // 3 × 0.5 s + (156 × 0.5 s)/256.
    let mdi = Duration::from_millis(1500) + Duration::from_millis(500) * 156 / 256;
    assert_eq!(r.poll_timeout(), Some(t + mdi));
    assert_eq!(r.master_address(), Some(ip(2)));
    // Equal priority is accepted too.
    deliver(
        &mut r,
        t + Duration::from_secs(1),
        ip(3),
        &advert(Version::V3, 100, 100),
    );
    assert_eq!(
        r.poll_timeout(),
        Some(t + Duration::from_secs(1) + mdi_1s(100))
    );
}

/// RFC 5798 §6.4.2: with Preempt_Mode, a lower-priority advert is ignored, so the down timer
/// fires and we preempt.
#[test]
fn preempting_backup_ignores_lower_priority_master() {
    let (mut r, t0) = backup(v3(1, 100));
    let deadline = r.poll_timeout();
    deliver(
        &mut r,
        t0 + Duration::from_secs(1),
        ip(2),
        &advert(Version::V3, 50, 100),
    );
    assert_eq!(r.poll_timeout(), deadline);
    assert_eq!(r.counters().adverts_received, 1);
    assert_eq!(r.counters().discarded_total(), 0);
}

/// RFC 5798 §6.4.2 Preempt_Mode false (keepalived nopreempt): a lower-priority master is
/// accepted and keeps the addresses.
#[test]
fn nopreempt_backup_accepts_lower_priority_master() {
    let (mut r, t0) = backup(RouterConfig {
        preempt: false,
        ..v3(1, 200)
    });
    let t = t0 + Duration::from_secs(1);
    deliver(&mut r, t, ip(2), &advert(Version::V3, 50, 100));
    assert_eq!(r.poll_timeout(), Some(t + mdi_1s(200)));
}

/// keepalived preempt_delay: for preempt_delay after startup a lower-priority master is
/// accepted; after it, ignored, so we take over one Master_Down_Interval later.
#[test]
fn preempt_delay_holds_preemption_after_start() {
    let (mut r, t0) = backup(RouterConfig {
        preempt_delay: Duration::from_secs(10),
        ..v3(1, 200)
    });
    let mut t = t0;
    for _ in 0..9 {
        t += Duration::from_secs(1);
        deliver(&mut r, t, ip(2), &advert(Version::V3, 50, 100));
        assert_eq!(r.poll_timeout(), Some(t + mdi_1s(200)), "held at {t:?}");
    }
    t = t0 + Duration::from_secs(11);
    let before = r.poll_timeout();
    deliver(&mut r, t, ip(2), &advert(Version::V3, 50, 100));
    assert_eq!(r.poll_timeout(), before, "delay over: lower master ignored");
}

/// keepalived preempt_delay: the delay also restarts when a lower master is first seen after
/// a higher one (e.g. our priority recovered).
#[test]
fn preempt_delay_restarts_after_a_higher_master() {
    let (mut r, t0) = backup(RouterConfig {
        preempt_delay: Duration::from_secs(5),
        ..v3(1, 200)
    });
    let t = t0 + Duration::from_secs(20);
    deliver(&mut r, t, ip(2), &advert(Version::V3, 250, 100));
    let t = t + Duration::from_secs(1);
    deliver(&mut r, t, ip(3), &advert(Version::V3, 50, 100));
    assert_eq!(r.poll_timeout(), Some(t + mdi_1s(200)), "delay started");
    let t = t + Duration::from_secs(6);
    let before = r.poll_timeout();
    deliver(&mut r, t, ip(3), &advert(Version::V3, 50, 100));
    assert_eq!(r.poll_timeout(), before, "delay over");
}

/// RFC 5798 §6.4.3: a Master receiving priority 0 sends an advert at once and resets the
/// Adver_Timer.
#[test]
fn master_answers_priority_zero_with_an_advert() {
    let (mut r, t) = master(v3(1, 100));
    let t2 = t + Duration::from_millis(300);
    deliver(&mut r, t2, ip(2), &advert(Version::V3, 0, 100));
    let actions = drain(&mut r);
    assert_eq!(sends(&actions).len(), 1);
    assert_eq!(r.poll_timeout(), Some(t2 + Duration::from_secs(1)));
    assert_eq!(r.state(), State::Master);
}

/// RFC 5798 §6.4.3: a higher-priority advert sends the Master to Backup; it removes the
/// addresses and learns the new master's interval.
#[test]
fn master_yields_to_higher_priority() {
    let (mut r, t) = master(v3(1, 100));
    deliver(&mut r, t, ip(2), &advert(Version::V3, 101, 200));
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        actions,
        vec![
            Action::RemoveVips(vec![vip()]),
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                priority: 100
            }
        ]
    );
    assert_eq!(r.master_adver_interval(), Duration::from_secs(2));
    assert_eq!(
        r.poll_timeout(),
        Some(t + Duration::from_secs(6) + Duration::from_secs(2) * 156 / 256)
    );
    assert_eq!(r.master_address(), Some(ip(2)));
}

/// RFC 5798 §6.4.3: equal priority goes to the higher primary address.
#[test]
fn equal_priority_tie_goes_to_higher_address() {
    let (mut low, t) = master(v3(1, 100));
    deliver(&mut low, t, ip(2), &advert(Version::V3, 100, 100));
    assert_eq!(low.state(), State::Backup);

    let (mut high, t) = master(v3(3, 100));
    deliver(&mut high, t, ip(2), &advert(Version::V3, 100, 100));
    assert_eq!(high.state(), State::Master);
}

/// RFC 5798 §6.4.3 discards a lower-priority advert; keepalived also re-sends its own advert
/// at once ("forcing new election") without touching the Adver_Timer.
#[test]
fn master_reasserts_against_lower_priority() {
    let (mut r, t) = master(v3(1, 100));
    let timer = r.poll_timeout();
    deliver(
        &mut r,
        t + Duration::from_millis(10),
        ip(2),
        &advert(Version::V3, 99, 100),
    );
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(sends(&actions)[0].priority, 100);
    assert_eq!(r.poll_timeout(), timer);
}

/// keepalived vrrp_garp_lower_prio_repeat: a master that hears a lower-priority master (a
/// split brain healing) re-announces the VIP, so hosts that learnt the other MAC are corrected;
/// at most once a second however many adverts arrive.
#[test]
fn master_reannounces_against_a_lower_priority_master_at_most_once_a_second() {
    let (mut r, t) = master(v3(1, 100));
    let announces = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Announce(v) if v == &vec![vip()]))
            .count()
    };
    let lower = advert(Version::V3, 99, 100);
    deliver(&mut r, t + Duration::from_millis(10), ip(2), &lower);
    assert_eq!(announces(&drain(&mut r)), 1);
    deliver(&mut r, t + Duration::from_millis(110), ip(2), &lower);
    assert_eq!(announces(&drain(&mut r)), 0, "rate-limited");
    deliver(&mut r, t + Duration::from_millis(1100), ip(2), &lower);
    assert_eq!(announces(&drain(&mut r)), 1);
    assert_eq!(r.state(), State::Master);
}

/// RFC 5798 §6.4.3 Shutdown: a Master sends priority 0, removes the addresses, goes to
/// Initialize; start() brings it back.
#[test]
fn shutdown_from_master_sends_priority_zero_and_removes_vips() {
    let (mut r, t) = master(v3(1, 100));
    r.shutdown(t);
    let actions = drain(&mut r);
    assert_eq!(sends(&actions)[0].priority, 0);
    assert_eq!(actions[1], Action::RemoveVips(vec![vip()]));
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.counters().priority_zero_sent, 1);
    r.start(t);
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn shutdown_from_backup_sends_nothing() {
    let (mut r, t) = backup(v3(1, 100));
    r.shutdown(t);
    let actions = drain(&mut r);
    assert!(sends(&actions).is_empty());
    assert_eq!(r.state(), State::Initialize);
}

/// keepalived: a failing weight-0 check puts the instance in FAULT; from Master it sends
/// priority 0 (VRRP_PRIO_STOP) and removes the addresses. Recovery goes to Backup.
#[test]
fn weight_zero_check_failure_faults_master() {
    let (mut r, t) = master(with_check(v3(1, 100), 0));
    assert!(r.set_check(t, 0, false));
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Fault);
    assert_eq!(sends(&actions)[0].priority, 0);
    assert!(actions.contains(&Action::RemoveVips(vec![vip()])));
    assert_eq!(r.poll_timeout(), None);
    assert!(r.set_check(t, 0, true));
    assert_eq!(r.state(), State::Backup);
    assert_eq!(r.poll_timeout(), Some(t + mdi_1s(100)));
}

/// keepalived: an interface going down means FAULT; a Backup has nothing to send.
#[test]
fn interface_down_faults_backup_and_up_restores_it() {
    let (mut r, t) = backup(v3(1, 100));
    r.set_interface_up(t, false);
    let actions = drain(&mut r);
    assert_eq!(r.state(), State::Fault);
    assert!(sends(&actions).is_empty());
    // Adverts are not processed while in Fault.
    deliver(&mut r, t, ip(2), &advert(Version::V3, 150, 100));
    assert_eq!(r.counters().discarded(DiscardReason::Inactive), 1);
    r.set_interface_up(t, true);
    assert_eq!(r.state(), State::Backup);
}

/// Leaving Fault: the address owner goes straight back to Master.
#[test]
fn owner_leaves_fault_as_master() {
    let mut r = Router::new(v3(1, 255)).unwrap();
    let t = Instant::now();
    r.set_interface_up(t, false);
    r.start(t);
    assert_eq!(r.state(), State::Fault, "starting with the link down");
    r.set_interface_up(t, true);
    assert_eq!(r.state(), State::Master);
}

/// keepalived weights: negative weights count while failing, positive while passing;
/// clamped to 1..=254; the owner is never adjusted.
#[test]
fn effective_priority_applies_weights_and_clamps() {
    let mut cfg = with_check(with_check(v3(1, 100), -30), 20);
    cfg.tracked[1].name = "bonus".into();
    let mut r = Router::new(cfg).unwrap();
    let t = Instant::now();
    assert_eq!(r.effective_priority(), 120, "bonus passing");
    r.set_check(t, 0, false);
    assert_eq!(r.effective_priority(), 90);
    r.set_check(t, 1, false);
    assert_eq!(r.effective_priority(), 70);
    assert!(!r.set_check(t, 7, false), "unknown index is refused");

    let mut low = Router::new(with_check(v3(1, 10), -253)).unwrap();
    low.set_check(t, 0, false);
    assert_eq!(low.effective_priority(), 1);
    let high = Router::new(with_check(v3(1, 200), 253)).unwrap();
    assert_eq!(high.effective_priority(), 254);
    let mut owner = Router::new(with_check(v3(1, 255), -50)).unwrap();
    owner.set_check(t, 0, false);
    assert_eq!(owner.effective_priority(), 255);
}

/// A Master's adverts carry its effective priority, so a failing check is visible at the
/// next advert.
#[test]
fn master_advertises_effective_priority() {
    let (mut r, t) = master(with_check(v3(1, 100), -30));
    r.set_check(t, 0, false);
    r.handle_timeout(r.poll_timeout().unwrap());
    let ads = sends(&drain(&mut r));
    assert_eq!(ads[0].priority, 70);
}

/// Unicast mode: one advert per peer, each checksummed with its own destination in the
/// pseudo-header; adverts from non-peers are discarded.
#[test]
fn unicast_sends_one_advert_per_peer_and_rejects_strangers() {
    let (mut r, t) = master(RouterConfig {
        unicast_peers: vec![ip(2), ip(3)],
        ..v3(1, 100)
    });
    r.handle_timeout(r.poll_timeout().unwrap());
    let actions = drain(&mut r);
    let dsts: Vec<IpAddr> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { dst, payload } => {
                Advertisement::decode(ip(1), *dst, payload, ChecksumMode::PseudoHeader)
                    .expect("checksum uses the peer as destination");
                Some(*dst)
            }
            _ => None,
        })
        .collect();
    assert_eq!(dsts, vec![ip(2), ip(3)]);
    let ad = advert(Version::V3, 200, 100);
    let payload = ad.encode(ip(9), ip(1), ChecksumMode::PseudoHeader).unwrap();
    r.handle_packet(
        t,
        Incoming {
            src: ip(9),
            dst: ip(1),
            hop_limit: 255,
            payload: &payload,
        },
    );
    assert_eq!(r.counters().discarded(DiscardReason::NotAPeer), 1);
    assert_eq!(r.state(), State::Master);
}

/// keepalived v3_checksum_as_v2: adverts go out and are verified without the pseudo-header.
#[test]
fn v3_checksum_as_v2_router_speaks_message_only_checksums() {
    let cfg = RouterConfig {
        v3_checksum_as_v2: true,
        ..v3(1, 255)
    };
    let mut r = Router::new(cfg).unwrap();
    let t = Instant::now();
    r.start(t);
    let actions = drain(&mut r);
    let Action::Send { dst, payload } = &actions[0] else {
        panic!("first action is the advert");
    };
    assert!(Advertisement::decode(ip(1), *dst, payload, ChecksumMode::MessageOnly).is_ok());
    assert!(Advertisement::decode(ip(1), *dst, payload, ChecksumMode::PseudoHeader).is_err());
    // And it rejects a pseudo-header advert as a bad checksum.
    deliver(&mut r, t, ip(2), &advert(Version::V3, 255, 100));
    assert_eq!(r.counters().discarded(DiscardReason::BadChecksum), 1);
}

/// Every discard is counted by reason and changes neither state nor timers
/// (RFC 5798 §7.1, RFC 3768 §7.1).
#[test]
fn invalid_adverts_are_discarded_by_reason_without_effect() {
    let (mut r, t0) = backup(RouterConfig {
        version: Version::V2,
        auth_pass: Some("secret".into()),
        unicast_peers: vec![ip(2)],
        ..v3(1, 100)
    });
    let deadline = r.poll_timeout();
    let good = Advertisement {
        auth: Some(password_auth_data("secret")),
        ..advert(Version::V2, 200, 1)
    };
    let t = t0 + Duration::from_millis(10);
    let send = |r: &mut Router, src: IpAddr, ttl: u8, payload: &[u8]| {
        r.handle_packet(
            t,
            Incoming {
                src,
                dst: GROUP,
                hop_limit: ttl,
                payload,
            },
        )
    };
    let enc = |ad: &Advertisement| ad.encode(ip(2), GROUP, ChecksumMode::PseudoHeader).unwrap();
    let good_bytes = enc(&good);

    send(&mut r, ip(2), 254, &good_bytes);
    let mut corrupt = good_bytes.clone();
    corrupt[2] = 201;
    send(&mut r, ip(2), 255, &corrupt);
    send(&mut r, ip(2), 255, &good_bytes[..10]);
    send(
        &mut r,
        ip(2),
        255,
        &enc(&Advertisement {
            version: Version::V3,
            auth: None,
            ..good.clone()
        }),
    );
    let mut bad_type = good_bytes.clone();
    bad_type[0] = 0x22;
    bad_type[6] = 0;
    bad_type[7] = 0;
    // Recompute the checksum so the type is the only fault.
    let sum = !fold(&bad_type);
    bad_type[6..8].copy_from_slice(&sum.to_be_bytes());
    send(&mut r, ip(2), 255, &bad_type);
    send(
        &mut r,
        ip(2),
        255,
        &enc(&Advertisement {
            vrid: 52,
            ..good.clone()
        }),
    );
    send(
        &mut r,
        ip(2),
        255,
        &enc(&Advertisement {
            auth: Some(password_auth_data("wrong")),
            ..good.clone()
        }),
    );
    send(
        &mut r,
        ip(2),
        255,
        &enc(&Advertisement {
            auth: None,
            ..good.clone()
        }),
    );
    send(
        &mut r,
        ip(2),
        255,
        &enc(&Advertisement {
            interval: 2,
            ..good.clone()
        }),
    );
    send(&mut r, ip(1), 255, &good_bytes);
    send(&mut r, ip(3), 255, &good_bytes);
    r.handle_packet(
        t,
        Incoming {
            src: "fe80::2".parse().unwrap(),
            dst: "ff02::12".parse().unwrap(),
            hop_limit: 255,
            payload: &good_bytes,
        },
    );

    let c = r.counters();
    for (reason, n) in [
        (DiscardReason::BadTtl, 1),
        (DiscardReason::BadChecksum, 1),
        (DiscardReason::Truncated, 1),
        (DiscardReason::BadVersion, 1),
        (DiscardReason::BadType, 1),
        (DiscardReason::VridMismatch, 1),
        (DiscardReason::AuthMismatch, 2),
        (DiscardReason::IntervalMismatch, 1),
        (DiscardReason::OwnPacket, 1),
        (DiscardReason::NotAPeer, 1),
        (DiscardReason::AddressFamily, 1),
    ] {
        assert_eq!(c.discarded(reason), n, "{}", reason.as_str());
    }
    assert_eq!(c.adverts_received, 0);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(r.poll_timeout(), deadline);

    // The good one is accepted.
    send(&mut r, ip(2), 255, &good_bytes);
    assert_eq!(r.counters().adverts_received, 1);
    assert_eq!(r.poll_timeout(), Some(t + mdi_1s(100)));
}

/// RFC 5798 §6.4.2: v3 intervals are learned, never a reason to discard.
#[test]
fn v3_interval_difference_is_learned_not_discarded() {
    let (mut r, t0) = backup(v3(1, 100));
    deliver(&mut r, t0, ip(2), &advert(Version::V3, 200, 25));
    assert_eq!(r.counters().discarded(DiscardReason::IntervalMismatch), 0);
    assert_eq!(r.master_adver_interval(), Duration::from_millis(250));
}

fn fold(b: &[u8]) -> u16 {
    let mut acc: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Counters: adverts sent and transitions.
#[test]
fn counters_track_adverts_and_transitions() {
    let (mut r, t) = master(v3(1, 100));
    r.handle_timeout(t + Duration::from_secs(1));
    r.handle_timeout(t + Duration::from_secs(2));
    let c = r.counters();
    assert_eq!(c.adverts_sent, 3);
    assert_eq!(c.transitions, 2, "Initialize→Backup→Master");
    assert_eq!(c.became_master, 1);
}

/// Secrets stay secret: neither the v2 password nor auth_hmac keys appear in the `Debug`
/// output of a configuration or a router, which is what ends up in logs and panics.
#[test]
fn debug_output_never_shows_the_password_or_keys() {
    let v2 = RouterConfig {
        version: Version::V2,
        auth_pass: Some("s3cr3tpw".into()),
        ..v3(1, 100)
    };
    let keyed = RouterConfig {
        auth_hmac: Some(vrrp::AuthHmacConfig::new(
            vec![vrrp::HmacKey::new(
                1,
                b"an-ascii-key-of-forty-characters-123456".to_vec(),
            )],
            1,
            Duration::from_secs(1),
        )),
        ..v3(1, 100)
    };
    for cfg in [v2, keyed] {
        let router = Router::new(cfg.clone()).unwrap();
        for text in [format!("{cfg:?}"), format!("{router:?}")] {
            assert!(!text.contains("s3cr3tpw"), "{text}");
            assert!(!text.contains("an-ascii-key"), "{text}");
            // The password's bytes as a Debug array would look like this.
            assert!(!text.contains("115, 51, 99"), "{text}");
        }
    }
}
