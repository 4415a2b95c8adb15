//! auth_hmac on the simulated LAN: forged, replayed and unsigned adverts never move the VIP;
//! a three-node key rotation and the three-sweep migration from no auth are hitless; the
//! wrong order of either splits the cluster (so the checks below can fail).
//!
//! "No VIP gap" is checked after every simulated event: exactly one host holds the VIP.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use vrrp::auth::{AuthHmacConfig, HmacAuth, HmacKey};
use vrrp::packet::{Advertisement, ChecksumMode, MULTICAST_V4, append_trailer};
use vrrp::sim::{Lan, SIM_EPOCH};
use vrrp::{AntiReplay, DiscardReason, HmacMode, Incoming, RouterConfig, Version};

const GROUP: IpAddr = IpAddr::V4(MULTICAST_V4);

fn key(id: u8) -> HmacKey {
    HmacKey::new(id, vec![id.wrapping_mul(37); 32 + usize::from(id)])
}

fn auth(keys: &[u8], active: u8, mode: HmacMode) -> AuthHmacConfig {
    AuthHmacConfig {
        mode,
        ..AuthHmacConfig::new(keys.iter().map(|&i| key(i)).collect(), active, secs(0.1))
    }
}

fn node(host: u8, priority: u8, a: Option<AuthHmacConfig>) -> RouterConfig {
    RouterConfig {
        advert_interval: secs(0.1),
        auth_hmac: a,
        ..v3(host, priority)
    }
}

fn three(a: Option<AuthHmacConfig>) -> Lan {
    let mut lan = Lan::new(11);
    for (host, prio) in [(1, 150), (2, 120), (3, 100)] {
        lan.add(node(host, prio, a.clone())).unwrap();
    }
    lan.start_all();
    let took = lan.run_until_cond(secs(5.0), |l| {
        l.masters().len() == 1 && l.vip_holders() == l.masters()
    });
    assert!(took.is_some(), "no single master");
    lan
}

/// Run `d` in 10 ms steps; after every step exactly `holder` holds the VIP. Returns the
/// first step at which that failed.
fn hold(lan: &mut Lan, d: Duration, holder: usize) -> Result<(), String> {
    let end = lan.elapsed() + d;
    while lan.elapsed() < end {
        lan.run_for(Duration::from_millis(10));
        if lan.vip_holders() != vec![holder] {
            return Err(format!(
                "at {:?}: VIP on {:?}, masters {:?}",
                lan.elapsed(),
                lan.vip_holders(),
                lan.masters()
            ));
        }
    }
    Ok(())
}

fn hmac_discards(lan: &Lan) -> Vec<(usize, DiscardReason, u64)> {
    (0..lan.len())
        .flat_map(|i| {
            lan.router(i)
                .counters()
                .discards()
                .filter(|(r, n)| *n > 0 && r.as_str().starts_with("hmac"))
                .map(move |(r, n)| (i, r, n))
        })
        .collect()
}

/// A forged advert from an attacker at 192.0.2.66, signed with `signer` (None: unsigned).
fn forged(lan: &Lan, priority: u8, signer: Option<&AuthHmacConfig>) -> Vec<u8> {
    let src = ip(66);
    let ad = Advertisement {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: 10,
        addresses: vec![vip()],
        auth: None,
    };
    let mut payload = ad.encode(src, GROUP, ChecksumMode::PseudoHeader).unwrap();
    if let Some(cfg) = signer {
        let wall = lan.wall_clock(0);
        let tr = HmacAuth::new(cfg.clone()).sign(wall, Version::V3, 51, src, &payload);
        append_trailer(
            &mut payload,
            &tr.unwrap(),
            Version::V3,
            src,
            GROUP,
            ChecksumMode::PseudoHeader,
        );
    }
    payload
}

fn inject_all(lan: &mut Lan, src: IpAddr, payload: &[u8]) {
    for to in 0..lan.len() {
        lan.inject(
            to,
            Incoming {
                src,
                dst: GROUP,
                hop_limit: 255,
                payload,
            },
        );
    }
}

/// Priority 255 from a stranger, unsigned or under a wrong key, with auth_hmac enforced:
/// every router discards it and the master keeps the VIP.
#[test]
fn forged_priority_255_never_moves_the_vip() {
    let a = auth(&[1], 1, HmacMode::Enforce);
    let mut lan = three(Some(a.clone()));
    assert_eq!(lan.masters(), vec![0]);
    let wrong = AuthHmacConfig {
        keys: vec![HmacKey::new(1, vec![0xee; 32])],
        ..a.clone()
    };
    for _ in 0..50 {
        let unsigned = forged(&lan, 255, None);
        inject_all(&mut lan, ip(66), &unsigned);
        let bad = forged(&lan, 255, Some(&wrong));
        inject_all(&mut lan, ip(66), &bad);
        hold(&mut lan, secs(0.1), 0).unwrap();
    }
    let d = hmac_discards(&lan);
    for i in 0..3 {
        assert!(d.contains(&(i, DiscardReason::HmacMissing, 50)), "{d:?}");
        assert!(d.contains(&(i, DiscardReason::HmacBadMac, 50)), "{d:?}");
    }
    // The control: without auth_hmac the same unsigned advert takes the VIP away.
    let mut open = three(None);
    let unsigned = forged(&open, 255, None);
    inject_all(&mut open, ip(66), &unsigned);
    open.run_for(Duration::from_millis(10));
    assert!(
        open.vip_holders().is_empty(),
        "the forged owner took the VIP from everyone"
    );
}

/// Replays of the master's own adverts (captured on the segment), priority 0 included, are
/// refused: within the window by their sequence, later as stale.
#[test]
fn replayed_adverts_never_move_the_vip() {
    let a = auth(&[1], 1, HmacMode::Enforce);
    let mut lan = three(Some(a));
    lan.capture(true);
    lan.run_for(secs(1.0));
    // The master stops gracefully: its priority-0 advert hands over to node 1.
    lan.shutdown(0);
    lan.capture(false);
    lan.run_for(secs(1.0));
    assert_eq!(lan.vip_holders(), vec![1]);
    let captured: Vec<_> = lan
        .captured()
        .iter()
        .filter(|c| c.from == 0)
        .cloned()
        .collect();
    assert!(
        captured.iter().any(|c| c.payload[2] == 0),
        "a priority-0 advert was captured"
    );
    lan.start(0); // back as backup: node 0 has priority 150 and will preempt...
    lan.run_for(secs(1.0));
    let holder = lan.vip_holders()[0];
    for round in [Duration::ZERO, secs(6.0)] {
        lan.run_for(round);
        for c in &captured {
            inject_all(&mut lan, c.src, &c.payload);
            hold(&mut lan, Duration::from_millis(20), holder).unwrap();
        }
    }
    hold(&mut lan, secs(2.0), holder).unwrap();
    let d = hmac_discards(&lan);
    assert!(
        d.iter().any(|(_, r, _)| *r == DiscardReason::HmacReplay),
        "{d:?}"
    );
    assert!(
        d.iter().any(|(_, r, _)| *r == DiscardReason::HmacStale),
        "{d:?}"
    );
}

/// Rotation on three nodes, one node at a time: add key 2 everywhere, move activeKey to 2,
/// drop key 1. At every step every advert verifies and one node holds the VIP.
#[test]
fn three_node_key_rotation_is_hitless() {
    let mut lan = three(Some(auth(&[1], 1, HmacMode::Enforce)));
    let holder = lan.masters()[0];
    let steps = [
        auth(&[1, 2], 1, HmacMode::Enforce),
        auth(&[1, 2], 2, HmacMode::Enforce),
        auth(&[2], 2, HmacMode::Enforce),
    ];
    for step in steps {
        for i in [1, 2, 0] {
            lan.set_auth_hmac(i, Some(step.clone())).unwrap();
            hold(&mut lan, secs(1.0), holder).unwrap();
        }
    }
    assert_eq!(hmac_discards(&lan), vec![]);
    // Nine seconds of adverts every 100 ms, every one verified.
    assert!(lan.router(1).counters().hmac_verified >= 85);
}

/// The wrong order: the master signs with key 2 before the backups have it. They refuse its
/// adverts (unknown key) and take over: the VIP is held twice.
#[test]
fn rotation_out_of_order_splits_the_cluster() {
    let mut lan = three(Some(auth(&[1], 1, HmacMode::Enforce)));
    lan.set_auth_hmac(0, Some(auth(&[1, 2], 2, HmacMode::Enforce)))
        .unwrap();
    assert!(hold(&mut lan, secs(2.0), 0).is_err());
    assert!(
        hmac_discards(&lan)
            .iter()
            .any(|(_, r, _)| *r == DiscardReason::HmacUnknownKey)
    );
}

/// keepalived's migration from no auth in three sweeps (receive-only, permissive, enforce),
/// one node at a time in each: hitless, and at the end unsigned adverts are refused.
#[test]
fn three_sweep_migration_from_no_auth_is_hitless() {
    let mut lan = three(None);
    let holder = lan.masters()[0];
    for mode in [
        HmacMode::ReceiveOnly,
        HmacMode::Permissive,
        HmacMode::Enforce,
    ] {
        for i in [2, 1, 0] {
            lan.set_auth_hmac(i, Some(auth(&[1], 1, mode))).unwrap();
            hold(&mut lan, secs(1.0), holder).unwrap();
        }
    }
    assert_eq!(hmac_discards(&lan), vec![]);
    let c = lan.router(2).counters();
    assert!(c.hmac_unsigned_accepted > 0 && c.hmac_verified > 0, "{c:?}");
    let unsigned = forged(&lan, 255, None);
    inject_all(&mut lan, ip(66), &unsigned);
    hold(&mut lan, secs(1.0), holder).unwrap();
}

/// Skipping the sweeps: a backup switched straight to enforce refuses the master's unsigned
/// adverts and takes over.
#[test]
fn enforcing_before_everyone_signs_splits_the_cluster() {
    let mut lan = three(None);
    lan.set_auth_hmac(2, Some(auth(&[1], 1, HmacMode::Enforce)))
        .unwrap();
    assert!(hold(&mut lan, secs(2.0), 0).is_err());
    let d = hmac_discards(&lan);
    assert!(
        d.iter()
            .any(|&(i, r, n)| i == 2 && r == DiscardReason::HmacMissing && n > 0),
        "{d:?}"
    );
}

/// Time mode needs synchronised clocks: a backup 10 s off (beyond the 5 s window) refuses
/// the master's adverts as stale and takes over. Monotonic mode does not care.
#[test]
fn clock_skew_beyond_the_window_needs_monotonic_mode() {
    for (anti_replay, splits) in [(AntiReplay::Time, true), (AntiReplay::Monotonic, false)] {
        let a = AuthHmacConfig {
            anti_replay,
            ..auth(&[1], 1, HmacMode::Enforce)
        };
        let mut lan = three(Some(a));
        lan.set_clock_skew(2, -10_000);
        let r = hold(&mut lan, secs(2.0), 0);
        assert_eq!(r.is_err(), splits, "{anti_replay:?}: {r:?}");
    }
    assert!(SIM_EPOCH.as_secs() > 1_700_000_000);
}
