//! keepalived 2.4.3's `auth_hmac` adverts captured on the wire (tests/fixtures/keepalived-2.4-hmac,
//! see its README): haplane verifies every one at its capture time, rejects them tampered,
//! replayed, late or under the wrong key with the reason keepalived gives, and signs the same
//! adverts byte for byte.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pcap::{self, Packet};
use vrrp::auth::{AuthHmacConfig, HmacAuth, HmacKey, Trailer, clock_sequence};
use vrrp::packet::{Advertisement, ChecksumMode, append_trailer, message_len};
use vrrp::{Action, AntiReplay, DiscardReason, HmacMode, Incoming, Router, RouterConfig, Version};

const SIGNED: &[&str] = &[
    "v3-ipv4-mc-time",
    "v3-ipv4-unicast-monotonic",
    "v2-ipv4-mc-key64",
    "v3-ipv6-mc-time",
    "v3-ipv4-rotation-active1",
    "v3-ipv4-rotation-active2",
];

/// The parts of a fixture's keepalived.conf that matter here.
#[derive(Debug, Clone)]
struct Conf {
    version: Version,
    advert: Duration,
    unicast_src: Option<IpAddr>,
    peers: Vec<IpAddr>,
    vip: IpAddr,
    auth: Option<AuthHmacConfig>,
}

fn key_bytes(value: &str) -> Vec<u8> {
    match value.strip_prefix("hex:") {
        Some(hex) => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
        None => value.as_bytes().to_vec(),
    }
}

/// A line-by-line reading of the fixture configs (flat, one keyword per line).
fn parse_conf(text: &str) -> Conf {
    let mut version = Version::V3;
    let mut advert = Duration::from_secs(1);
    let (mut unicast_src, mut peers, mut vip) = (None, Vec::new(), None);
    let mut keys = Vec::new();
    let (mut active, mut anti_replay, mut window, mut mode) =
        (0u8, AntiReplay::Time, None, HmacMode::Enforce);
    let mut block = "";
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name, "{"] => block = name,
            ["}"] => block = "",
            ["vrrp_version", "2"] => version = Version::V2,
            ["advert_int", s] => advert = Duration::from_secs_f64(s.parse().unwrap()),
            ["unicast_src_ip", a] => unicast_src = Some(a.parse().unwrap()),
            ["key", id, value] => keys.push(HmacKey::new(id.parse().unwrap(), key_bytes(value))),
            ["active_key", id] => active = id.parse().unwrap(),
            ["anti_replay", "monotonic"] => anti_replay = AntiReplay::Monotonic,
            ["time_window", s] => window = Some(Duration::from_secs(s.parse().unwrap())),
            ["mode", "permissive"] => mode = HmacMode::Permissive,
            ["mode", "receive-only"] => mode = HmacMode::ReceiveOnly,
            [addr] if block == "unicast_peer" => peers.push(addr.parse().unwrap()),
            [net] if block == "virtual_ipaddress" => {
                vip = Some(net.split('/').next().unwrap().parse().unwrap())
            }
            _ => {}
        }
    }
    let vip: IpAddr = vip.expect("a VIP");
    if vip.is_ipv6() {
        version = Version::V3;
    }
    let auth = (!keys.is_empty()).then(|| AuthHmacConfig {
        anti_replay,
        mode,
        time_window: window.unwrap_or(AuthHmacConfig::default_time_window(advert)),
        ..AuthHmacConfig::new(keys, active, advert)
    });
    Conf {
        version,
        advert,
        unicast_src,
        peers,
        vip,
        auth,
    }
}

struct Fixture {
    name: &'static str,
    node1: Conf,
    node2: Conf,
    /// node1's adverts, in capture order.
    adverts: Vec<Packet>,
}

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived-2.4-hmac")
        .join(name)
}

fn fixture(name: &'static str) -> Fixture {
    let read = |f: &str| std::fs::read_to_string(dir(name).join(f)).unwrap();
    let node1 = parse_conf(&read("node1.conf"));
    let node2 = parse_conf(&read("node2.conf"));
    let packets = pcap::vrrp_packets(&std::fs::read(dir(name).join("adverts.pcap")).unwrap());
    // node1 is 192.0.2.11, or the IPv6 link-local that sends first.
    let first = packets[0].src;
    let adverts = packets.into_iter().filter(|p| p.src == first).collect();
    Fixture {
        name,
        node1,
        node2,
        adverts,
    }
}

fn primary(conf: &Conf, host: u8) -> IpAddr {
    conf.unicast_src.unwrap_or(if conf.vip.is_ipv6() {
        format!("fe80::{host}").parse().unwrap()
    } else {
        format!("192.0.2.{host}").parse().unwrap()
    })
}

fn router_config(conf: &Conf, host: u8, priority: u8) -> RouterConfig {
    RouterConfig {
        priority,
        advert_interval: conf.advert,
        unicast_peers: conf.peers.clone(),
        auth_hmac: conf.auth.clone(),
        ..RouterConfig::new(
            "VI_1",
            51,
            conf.version,
            primary(conf, host),
            vec![conf.vip],
        )
    }
}

/// node2 as a backup, fed `adverts` at their capture times (`delay` later).
fn receive(conf: &Conf, adverts: &[Packet], delay: Duration) -> Router {
    let mut r = Router::new(router_config(conf, 12, 100)).unwrap();
    let base = Instant::now();
    let t0 = adverts[0].at;
    r.set_wall_clock(base, t0 + delay);
    r.start(base);
    for p in adverts {
        let now = base + (p.at - t0);
        r.set_wall_clock(now, p.at + delay);
        r.handle_packet(now, incoming(p, &p.payload));
    }
    r
}

fn incoming<'a>(p: &Packet, payload: &'a [u8]) -> Incoming<'a> {
    Incoming {
        src: p.src,
        dst: p.dst,
        hop_limit: p.hop_limit,
        payload,
    }
}

fn trailer_of(p: &Packet) -> Trailer {
    let len = message_len(&p.payload, p.src.is_ipv6()).unwrap();
    Trailer::parse(&p.payload[len..]).expect("a 28-byte trailer")
}

/// A wall-clock time whose sequence is `seq` with the counter cleared.
fn time_of(seq: u64) -> Duration {
    let secs = seq >> 32;
    let subsec = (seq >> 16) & 0xffff;
    let nanos = (subsec * 1_000_000_000).div_ceil(1 << 16);
    let t = Duration::from_secs(secs) + Duration::from_nanos(nanos);
    assert_eq!(clock_sequence(t), seq & !0xffff);
    t
}

#[test]
fn every_captured_advert_verifies_at_its_capture_time() {
    for name in SIGNED.iter().chain(&["v3-ipv4-receive-only"]) {
        let f = fixture(name);
        let n = f.adverts.len() as u64;
        assert!(n >= 7, "{name}: {n} adverts");
        let r = receive(&f.node2, &f.adverts, Duration::ZERO);
        let c = r.counters();
        assert_eq!(
            c.discarded_total(),
            0,
            "{name}: {:?}",
            c.discards().filter(|d| d.1 > 0).collect::<Vec<_>>()
        );
        assert_eq!(c.adverts_received, n, "{name}");
        if *name == "v3-ipv4-receive-only" {
            assert_eq!(c.hmac_unsigned_accepted, n, "{name}");
        } else {
            assert_eq!(c.hmac_verified, n, "{name}");
        }
        assert_eq!(r.master_address(), Some(f.adverts[0].src), "{name}");
    }
}

/// Signing: the same key, key id, sequence and message give keepalived's trailer, and the
/// whole advert (checksum included) equals the captured one.
#[test]
fn haplane_signs_the_captured_adverts_byte_for_byte() {
    for name in SIGNED {
        let f = fixture(name);
        let cfg = f.node1.auth.clone().unwrap();
        for p in &f.adverts {
            let seq = trailer_of(p).sequence;
            let mut signer = HmacAuth::new(cfg.clone());
            let src = p.src;
            let ad = Advertisement::decode(src, p.dst, &p.payload, ChecksumMode::PseudoHeader)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut payload = ad.encode(src, p.dst, ChecksumMode::PseudoHeader).unwrap();
            let mut trailer = None;
            for _ in 0..=(seq & 0xffff) {
                trailer = signer.sign(time_of(seq), ad.version, 51, src, &payload);
            }
            append_trailer(
                &mut payload,
                &trailer.unwrap(),
                ad.version,
                src,
                p.dst,
                ChecksumMode::PseudoHeader,
            );
            assert_eq!(payload, p.payload, "{name}: advert at {:?}", p.at);
        }
    }
}

/// The router itself, as node1 taking over, sends the first captured advert.
#[test]
fn a_router_taking_over_sends_the_captured_first_advert() {
    for name in SIGNED {
        let f = fixture(name);
        let first = &f.adverts[0];
        let mut cfg = router_config(&f.node1, 11, 150);
        cfg.primary_address = first.src;
        let mut r = Router::new(cfg).unwrap();
        let base = Instant::now();
        r.start(base);
        let takeover = r.poll_timeout().unwrap();
        r.set_wall_clock(takeover, time_of(trailer_of(first).sequence));
        r.handle_timeout(takeover);
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| r.poll_action())
            .filter_map(|a| match a {
                Action::Send { payload, .. } => Some(payload),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![first.payload.clone()], "{name}");
    }
}

/// Flipping any byte of a signed advert gets it discarded. At the auth layer every byte but
/// the checksum is covered by the HMAC (keepalived's mutation table).
#[test]
fn flipping_any_byte_is_rejected() {
    for name in [
        "v3-ipv4-mc-time",
        "v2-ipv4-mc-key64",
        "v3-ipv6-mc-time",
        "v3-ipv4-unicast-monotonic",
    ] {
        let f = fixture(name);
        let p = &f.adverts[0];
        let cfg = f.node2.auth.clone().unwrap();
        let len = message_len(&p.payload, p.src.is_ipv6()).unwrap();
        for i in 0..p.payload.len() {
            let mut bad = p.payload.clone();
            bad[i] ^= 0xff;
            let r = receive(
                &f.node2,
                &[Packet {
                    payload: bad.clone(),
                    ..p.clone()
                }],
                Duration::ZERO,
            );
            assert_eq!(r.counters().adverts_received, 0, "{name}: byte {i}");
            assert_eq!(r.counters().discarded_total(), 1, "{name}: byte {i}");
            if i == 6 || i == 7 || i < 4 {
                // The checksum is outside the HMAC; version, VRID and count fail earlier.
                continue;
            }
            let mut auth = HmacAuth::new(cfg.clone());
            let got = auth.verify(
                p.at,
                f.node2.version,
                51,
                p.src,
                &bad[..len],
                Some(&bad[len..]),
            );
            assert!(got.is_err(), "{name}: byte {i} passed the HMAC");
        }
    }
}

fn discards(r: &Router) -> Vec<(DiscardReason, u64)> {
    r.counters().discards().filter(|(_, n)| *n > 0).collect()
}

#[test]
fn an_unknown_key_id_is_rejected_as_such() {
    let f = fixture("v3-ipv4-mc-time");
    let mut p = f.adverts[0].clone();
    let len = message_len(&p.payload, false).unwrap();
    p.payload[len + 1] = 7;
    let r = receive(&f.node2, &[p], Duration::ZERO);
    assert_eq!(discards(&r), vec![(DiscardReason::HmacUnknownKey, 1)]);
}

/// The same advert twice, or an older one after a newer, is a replay, in both modes.
#[test]
fn replays_are_rejected() {
    for name in [
        "v3-ipv4-mc-time",
        "v3-ipv4-unicast-monotonic",
        "v2-ipv4-mc-key64",
        "v3-ipv6-mc-time",
    ] {
        let f = fixture(name);
        let a = &f.adverts;
        let mut late = a[0].clone();
        late.at = a[2].at;
        let mut again = a[1].clone();
        again.at = a[2].at;
        let r = receive(
            &f.node2,
            &[a[0].clone(), a[1].clone(), a[2].clone(), late, again],
            Duration::ZERO,
        );
        assert_eq!(r.counters().adverts_received, 3, "{name}");
        assert_eq!(discards(&r), vec![(DiscardReason::HmacReplay, 2)], "{name}");
    }
}

/// Time mode: an advert replayed later than the window is stale (before any HMAC is
/// computed); monotonic mode has no window, so only the sequence refuses it.
#[test]
fn an_advert_outside_the_time_window_is_stale() {
    for name in ["v3-ipv4-mc-time", "v2-ipv4-mc-key64", "v3-ipv6-mc-time"] {
        let f = fixture(name);
        let window = f.node2.auth.as_ref().unwrap().time_window;
        assert_eq!(
            window,
            Duration::from_secs(5),
            "keepalived's default for {name}"
        );
        let p = &f.adverts[0];
        let just = receive(&f.node2, std::slice::from_ref(p), window);
        assert_eq!(
            just.counters().adverts_received,
            1,
            "{name}: at the window's edge"
        );
        let r = receive(
            &f.node2,
            std::slice::from_ref(p),
            window + Duration::from_secs(1),
        );
        assert_eq!(discards(&r), vec![(DiscardReason::HmacStale, 1)], "{name}");
        let early = receive(&f.node2, std::slice::from_ref(p), Duration::ZERO);
        assert_eq!(early.counters().adverts_received, 1);
    }
    let f = fixture("v3-ipv4-unicast-monotonic");
    let r = receive(&f.node2, &f.adverts[..1], Duration::from_secs(3600));
    assert_eq!(r.counters().adverts_received, 1, "monotonic: no window");
}

/// The control capture: node2's key 1 differs, it logged "invalid authentication HMAC" for
/// every advert and became master too. haplane with node2's config refuses them all alike.
#[test]
fn the_wrong_key_control_is_rejected_as_keepalived_rejected_it() {
    let f = fixture("v3-ipv4-wrong-key-control");
    let log = std::fs::read_to_string(dir(f.name).join("node2.log")).unwrap();
    assert!(log.contains("invalid authentication HMAC from 192.0.2.11"));
    let n = f.adverts.len() as u64;
    let r = receive(&f.node2, &f.adverts, Duration::ZERO);
    assert_eq!(discards(&r), vec![(DiscardReason::HmacBadMac, n)]);
    // With node1's own key they are fine.
    let ok = receive(&f.node1, &f.adverts, Duration::ZERO);
    assert_eq!(ok.counters().adverts_received, n);
}

/// receive-only sends no trailer (VRRP length 12): a receiver in receive-only or permissive
/// mode takes it, one in enforce mode counts it as missing.
#[test]
fn receive_only_adverts_are_unsigned_and_only_migration_modes_take_them() {
    let f = fixture("v3-ipv4-receive-only");
    assert!(f.adverts.iter().all(|p| p.payload.len() == 12));
    let n = f.adverts.len() as u64;
    for (mode, received) in [
        (HmacMode::ReceiveOnly, n),
        (HmacMode::Permissive, n),
        (HmacMode::Enforce, 0),
    ] {
        let mut conf = f.node2.clone();
        conf.auth.as_mut().unwrap().mode = mode;
        let r = receive(&conf, &f.adverts, Duration::ZERO);
        assert_eq!(r.counters().adverts_received, received, "{mode:?}");
        if mode == HmacMode::Enforce {
            assert_eq!(discards(&r), vec![(DiscardReason::HmacMissing, n)]);
        }
    }
}

/// Rotation captures: node2 (active key 2) accepts node1's adverts signed with key 1 and
/// with key 2, since a receiver verifies with any configured key; a node that only has the
/// other key refuses them.
#[test]
fn rotation_captures_verify_with_any_configured_key() {
    for (name, signer) in [
        ("v3-ipv4-rotation-active1", 1),
        ("v3-ipv4-rotation-active2", 2),
    ] {
        let f = fixture(name);
        assert!(
            f.adverts.iter().all(|p| trailer_of(p).key_id == signer),
            "{name}"
        );
        let mut only_other = f.node2.clone();
        let auth = only_other.auth.as_mut().unwrap();
        auth.keys.retain(|k| k.id() != signer);
        auth.active_key = auth.keys[0].id();
        let r = receive(&only_other, &f.adverts, Duration::ZERO);
        assert_eq!(
            discards(&r),
            vec![(DiscardReason::HmacUnknownKey, f.adverts.len() as u64)],
            "{name}"
        );
    }
}
