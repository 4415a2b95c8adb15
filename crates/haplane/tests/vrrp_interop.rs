//! Interop with Debian's keepalived 2.2 in one virtual router, in both priority orders:
//! v2 multicast with PASS authentication (1 s adverts), v3 multicast (100 ms), v3 unicast (100 ms).
//! For each: the lower-priority side stays backup and does not hold the VIP; when the master's
//! link goes down the other side takes over; when it comes back, it preempts.

mod support;

use std::time::Duration;

use support::{Cfg, Lab, keepalived_conf};

#[derive(Clone, Copy)]
enum Mode {
    V2Multicast,
    V3Multicast,
    V3Unicast,
}

fn cfg(mode: Mode, haplane_prio: u8, keepalived_prio: u8) -> Cfg {
    let mut cfg = Cfg::new(&[
        ("m1", "192.0.2.11", haplane_prio),
        ("m2", "192.0.2.12", keepalived_prio),
    ]);
    match mode {
        Mode::V2Multicast => {
            cfg.version = 2;
            cfg.advert = "1s";
            cfg.auth = Some("s3cret");
        }
        Mode::V3Multicast => {}
        Mode::V3Unicast => cfg.unicast = true,
    }
    cfg
}

/// haplane runs on m1, keepalived on m2.
fn interop(mode: Mode, haplane_is_master: bool) {
    if support::skip() {
        return;
    }
    let (hp, kp) = if haplane_is_master {
        (150, 100)
    } else {
        (100, 150)
    };
    let cfg = cfg(mode, hp, kp);
    let detect = match mode {
        Mode::V2Multicast => Duration::from_secs(12),
        _ => Duration::from_secs(6),
    };
    let mut lab = Lab::new(&["m1", "m2"]);
    let path = lab.write("cluster.yaml", &cfg.yaml());
    lab.start_haplane("m1", &path);
    lab.start_keepalived("m2", &keepalived_conf(&cfg, "m2"));
    let (master, backup) = if haplane_is_master {
        ("m1", "m2")
    } else {
        ("m2", "m1")
    };

    lab.wait_holders(&[master], detect * 2);
    // The lower-priority side stays backup and does not hold the VIP.
    lab.assert_holders_stay(&[master], detect / 2);

    lab.host(master).link_down().unwrap();
    lab.wait_holders(&[backup], detect);

    lab.host(master).link_up().unwrap();
    lab.wait_holders(&[master], detect);
    lab.assert_holders_stay(&[master], Duration::from_secs(1));

    let status = lab.status("m1");
    let state = status["vrrp"][0]["state"].as_str().unwrap().to_string();
    let expected = if haplane_is_master {
        "MASTER"
    } else {
        "BACKUP"
    };
    assert_eq!(state, expected, "haplane's /status agrees\n{}", lab.logs());
    let received = status["vrrp"][0]["counters"]["adverts_received"]
        .as_u64()
        .unwrap();
    assert!(
        received > 0,
        "haplane heard keepalived's adverts\n{}",
        lab.logs()
    );
    let discarded = &status["vrrp"][0]["counters"]["discarded"];
    for reason in [
        "bad_checksum",
        "auth_mismatch",
        "interval_mismatch",
        "bad_ttl",
    ] {
        assert_eq!(
            discarded[reason].as_u64(),
            Some(0),
            "keepalived's packets are never discarded as {reason}\n{}",
            lab.logs()
        );
    }
}

#[test]
fn v2_multicast_with_pass_auth_haplane_master_keepalived_backup() {
    interop(Mode::V2Multicast, true);
}

#[test]
fn v2_multicast_with_pass_auth_keepalived_master_haplane_backup() {
    interop(Mode::V2Multicast, false);
}

#[test]
fn v3_multicast_100ms_haplane_master_keepalived_backup() {
    interop(Mode::V3Multicast, true);
}

#[test]
fn v3_multicast_100ms_keepalived_master_haplane_backup() {
    interop(Mode::V3Multicast, false);
}

#[test]
fn v3_unicast_100ms_haplane_master_keepalived_backup() {
    interop(Mode::V3Unicast, true);
}

#[test]
fn v3_unicast_100ms_keepalived_master_haplane_backup() {
    interop(Mode::V3Unicast, false);
}
