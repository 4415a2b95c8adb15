//! auth_hmac in network namespaces: a three-node key rotation and the three-sweep migration
//! from no auth, both live (the cluster file changes, SIGHUP, no restart) with no VIP gap;
//! a hostile peer on the segment (forged priority 255, a wrong key, replays of captured
//! adverts, a 10 000 packets/s flood) never moves the VIP; mixed clusters with Debian's
//! keepalived 2.2 (no auth_hmac) behave as the migration modes say; keys never show in
//! logs, /status or /metrics.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::{Cfg, Lab, keepalived_conf};
use vrrp::Version;
use vrrp::auth::{AuthHmacConfig, HmacAuth, HmacKey};
use vrrp::packet::{Advertisement, ChecksumMode, MULTICAST_V4, append_trailer};

const KEY1: &str = "rotation-test-key-one-0123456789abcdefgh";
const KEY2: &str = "rotation-test-key-two-0123456789abcdefgh";

fn nodes() -> Cfg {
    Cfg::new(&[
        ("m1", "192.0.2.11", 150),
        ("m2", "192.0.2.12", 120),
        ("m3", "192.0.2.13", 100),
    ])
}

/// `vip.authHmac` with `file:` keys (mode 600) for the given ids.
fn hmac(lab: &Lab, keys: &[u8], active: u8, mode: &str) -> String {
    let mut s = String::from("  authHmac:\n    keys:\n");
    for id in keys {
        s.push_str(&format!(
            "      {id}: file:{}\n",
            key_file(lab, *id).display()
        ));
    }
    s.push_str(&format!("    activeKey: {active}\n    mode: {mode}\n"));
    s
}

fn key_file(lab: &Lab, id: u8) -> PathBuf {
    let path = lab.dir.path().join(format!("vrrp{id}.key"));
    if !path.exists() {
        std::fs::write(&path, if id == 1 { KEY1 } else { KEY2 }).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// Each node has its own copy of the cluster file, so a change can go one node at a time.
fn write_node_config(lab: &Lab, host: &str, auth: &str) -> PathBuf {
    let mut cfg = nodes();
    cfg.extra_vip = auth.to_string();
    lab.write(&format!("{host}.yaml"), &cfg.yaml())
}

fn start_three(lab: &mut Lab, auth: &str) {
    for h in ["m1", "m2", "m3"] {
        let path = write_node_config(lab, h, auth);
        lab.start_haplane(h, &path);
    }
    lab.wait_holders(&["m1"], Duration::from_secs(10));
}

/// Apply `auth` to each node in turn (write its file, SIGHUP), while sampling the holders.
fn roll(lab: &Lab, steps: &[String]) -> Vec<(Duration, Vec<String>)> {
    let ((), samples) = lab.sampling(|| {
        for auth in steps {
            for h in ["m3", "m2", "m1"] {
                write_node_config(lab, h, auth);
                lab.haplane(h).handle.signal(Signal::SIGHUP).unwrap();
                std::thread::sleep(Duration::from_millis(700));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    samples
}

fn assert_one_holder(lab: &Lab, samples: &[(Duration, Vec<String>)]) {
    let bad: Vec<_> = samples
        .iter()
        .filter(|(_, h)| h != &["m1"])
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "the VIP left m1 or was held twice: {bad:?} of {} samples\n{}",
        samples.len(),
        lab.logs()
    );
}

fn hmac_discards(lab: &Lab, host: &str) -> Vec<(String, u64)> {
    let status = lab.status(host);
    let d = status["vrrp"][0]["counters"]["discarded"]
        .as_object()
        .unwrap()
        .clone();
    d.into_iter()
        .filter(|(k, v)| k.starts_with("hmac") && v.as_u64() != Some(0))
        .map(|(k, v)| (k, v.as_u64().unwrap()))
        .collect()
}

fn counter(lab: &Lab, host: &str, name: &str) -> u64 {
    lab.status(host)["vrrp"][0]["counters"][name]
        .as_u64()
        .unwrap()
}

/// Rotation on three nodes, one node at a time, live: add key 2, move activeKey to 2, drop
/// key 1. The VIP stays on m1 at every 10 ms sample and no advert is refused.
#[test]
fn three_node_key_rotation_has_no_vip_gap() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "m3"]);
    let start = hmac(&lab, &[1], 1, "enforce");
    start_three(&mut lab, &start);
    let steps = [
        hmac(&lab, &[1, 2], 1, "enforce"),
        hmac(&lab, &[1, 2], 2, "enforce"),
        hmac(&lab, &[2], 2, "enforce"),
    ];
    let samples = roll(&lab, &steps);
    assert_one_holder(&lab, &samples);
    for h in ["m2", "m3"] {
        assert_eq!(hmac_discards(&lab, h), vec![], "{h}\n{}", lab.logs());
        let auth = &lab.status(h)["vrrp"][0]["auth_hmac"];
        assert_eq!(auth["active_key"], 2, "{h}: {auth}");
        assert_eq!(auth["key_ids"], serde_json::json!([2]), "{h}: {auth}");
        assert!(counter(&lab, h, "hmac_verified") > 50);
    }
}

/// keepalived's migration from no auth: receive-only, then permissive, then enforce, each
/// swept over the nodes one at a time, live. No VIP gap; at the end every advert is signed
/// and verified.
#[test]
fn three_sweep_migration_from_no_auth_has_no_vip_gap() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "m3"]);
    start_three(&mut lab, "");
    let steps = [
        hmac(&lab, &[1], 1, "receive-only"),
        hmac(&lab, &[1], 1, "permissive"),
        hmac(&lab, &[1], 1, "enforce"),
    ];
    let samples = roll(&lab, &steps);
    assert_one_holder(&lab, &samples);
    for h in ["m2", "m3"] {
        assert_eq!(hmac_discards(&lab, h), vec![], "{h}\n{}", lab.logs());
        assert!(counter(&lab, h, "hmac_unsigned_accepted") > 0, "{h}");
        assert!(counter(&lab, h, "hmac_verified") > 0, "{h}");
        assert_eq!(lab.status(h)["vrrp"][0]["auth_hmac"]["mode"], "enforce");
    }
    let metrics = lab.http_get("m2", "/metrics");
    assert!(
        metrics.contains("haplane_vrrp_auth_hmac_mode{instance=\"itest\",mode=\"enforce\"} 1"),
        "{metrics}"
    );
}

// ---- the hostile peer -------------------------------------------------------------------

const GROUP: Ipv4Addr = MULTICAST_V4;

fn wall() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Raw IPv4 sockets in the attacker's namespace: one that sends whole datagrams (any source
/// address), one that has joined 224.0.0.18 to capture adverts.
fn attacker_sockets(lab: &Lab, host: &str) -> (Socket, Socket) {
    let h = lab.host(host);
    let me = h.address();
    h.enter(|| {
        let proto = Protocol::from(112);
        let tx = Socket::new(Domain::IPV4, Type::RAW, Some(proto)).unwrap();
        tx.set_header_included_v4(true).unwrap();
        tx.bind_device(Some(b"eth0")).unwrap();
        tx.set_multicast_if_v4(&me).unwrap();
        let rx = Socket::new(Domain::IPV4, Type::RAW, Some(proto)).unwrap();
        rx.bind_device(Some(b"eth0")).unwrap();
        rx.join_multicast_v4(&GROUP, &me).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (tx, rx)
    })
    .unwrap()
}

/// An IPv4 datagram from `src` to the group carrying `payload`, TTL 255 (the kernel fills
/// in the header checksum).
fn datagram(src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&GROUP.octets());
    p.extend_from_slice(payload);
    p
}

fn send(tx: &Socket, dgram: &[u8]) {
    let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(GROUP, 0)));
    let _ = tx.send_to(dgram, &to);
}

/// A priority-`priority` advert for VRID 51 from `src`, signed with `key` (None: unsigned).
fn forged(src: Ipv4Addr, priority: u8, key: Option<&[u8]>) -> Vec<u8> {
    let ad = Advertisement {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: 10,
        addresses: vec![support::vip()],
        auth: None,
    };
    let (s, g) = (IpAddr::V4(src), IpAddr::V4(GROUP));
    let mut payload = ad.encode(s, g, ChecksumMode::PseudoHeader).unwrap();
    if let Some(key) = key {
        let cfg = AuthHmacConfig::new(
            vec![HmacKey::new(1, key.to_vec())],
            1,
            Duration::from_millis(100),
        );
        let tr = HmacAuth::new(cfg)
            .sign(wall(), Version::V3, 51, s, &payload)
            .unwrap();
        append_trailer(
            &mut payload,
            &tr,
            Version::V3,
            s,
            g,
            ChecksumMode::PseudoHeader,
        );
    }
    datagram(src, &payload)
}

/// Capture `n` of `from`'s adverts (whole datagrams) on the attacker's receive socket.
fn capture(rx: &Socket, from: Ipv4Addr, n: usize) -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    let mut rx = rx;
    while out.len() < n && Instant::now() < deadline {
        if let Ok(len) = rx.read(&mut buf)
            && len > 20
            && buf[12..16] == from.octets()
        {
            out.push(buf[..len].to_vec());
        }
    }
    assert_eq!(out.len(), n, "captured too few adverts from {from}");
    out
}

/// CPU seconds (user + system) used so far by `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// A namespace on the segment sends priority 255 unsigned and under a wrong key, replays
/// m1's captured adverts (spoofing m1's address) within the window and after it, then floods
/// 10 000 forged adverts per second (each costs the receivers an HMAC: the timestamp is
/// fresh). With auth_hmac enforced the VIP never leaves m1, every forgery is counted by
/// reason, the log stays at a few lines, and the daemons' CPU is printed
/// (`bench/vrrp/flood.sh` runs this on a release build with a 30 s flood under the
/// measurement lock; docs/vrrp.md has the figures).
#[test]
fn a_hostile_peer_never_moves_the_vip() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "m3", "x"]);
    let inline = format!("  authHmac:\n    keys:\n      1: {KEY1}\n");
    start_three(&mut lab, &inline);
    let (tx, rx) = attacker_sockets(&lab, "x");
    let m1: Ipv4Addr = "192.0.2.11".parse().unwrap();
    let x = lab.host("x").address();
    let captured = capture(&rx, m1, 20);
    let flood_secs: u64 = std::env::var("HAPLANE_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let pids: Vec<(&str, u32)> = ["m1", "m2"]
        .iter()
        .map(|h| (*h, lab.haplane(h).handle.pid()))
        .collect();
    let mut cpu = Vec::new();
    let ((), samples) = lab.sampling(|| {
        for _ in 0..50 {
            send(&tx, &forged(x, 255, None));
            send(&tx, &forged(x, 255, Some(&[0xee; 32])));
            // The attacker spoofs m1 too, with priority 0 (would hand the VIP over at once).
            send(&tx, &forged(m1, 0, Some(&[0xee; 32])));
            std::thread::sleep(Duration::from_millis(10));
        }
        for d in &captured {
            send(&tx, d);
        }
        let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
        let start = Instant::now();
        let mut sent = 0u64;
        let wrong = [0x5a; 32];
        // 100 forgeries from 50 spoofed sources, re-signed every second so their timestamps
        // stay fresh: each one costs the receivers a full HMAC.
        let pool = || -> Vec<Vec<u8>> {
            (0..100u8)
                .map(|i| forged(Ipv4Addr::new(192, 0, 2, 150 + (i % 50)), 255, Some(&wrong)))
                .collect()
        };
        let mut forgeries = pool();
        let mut signed_at = Instant::now();
        while start.elapsed() < Duration::from_secs(flood_secs) {
            if signed_at.elapsed() >= Duration::from_secs(1) {
                forgeries = pool();
                signed_at = Instant::now();
            }
            // 100 packets per 10 ms tick: 10 000 packets/s.
            for d in &forgeries {
                send(&tx, d);
                sent += 1;
            }
            let next = start + Duration::from_millis(10) * (sent / 100) as u32;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        for ((host, pid), b) in pids.iter().zip(before) {
            cpu.push((
                *host,
                (cpu_seconds(*pid) - b) / secs * 100.0,
                sent as f64 / secs,
            ));
        }
        // Past the 5 s window the same captures are stale.
        std::thread::sleep(Duration::from_secs(6));
        for d in &captured {
            send(&tx, d);
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    for (host, percent, rate) in &cpu {
        eprintln!("flood: {rate:.0} packets/s, haplane on {host} used {percent:.1}% of one core");
    }
    assert_one_holder(&lab, &samples);
    let d: std::collections::BTreeMap<String, u64> =
        hmac_discards(&lab, "m2").into_iter().collect();
    assert!(d.get("hmac_missing").copied().unwrap_or(0) >= 50, "{d:?}");
    assert!(d.get("hmac_bad_mac").copied().unwrap_or(0) >= 100, "{d:?}");
    assert!(d.get("hmac_replay").copied().unwrap_or(0) > 0, "{d:?}");
    assert!(d.get("hmac_stale").copied().unwrap_or(0) > 0, "{d:?}");
    // RFC 9568 §7.1 rate limiting: tens of thousands of discards, a handful of lines.
    let log = lab.haplane("m2").log_text();
    let lines = log.matches("discarded a VRRP advert").count()
        + log.matches("more VRRP adverts were discarded").count();
    assert!(lines <= 20, "{lines} discard lines in m2's log");
    assert!(lines >= 3, "the discards were logged: {lines}");
    // Secrets stay secret: the key appears nowhere the daemons write or serve.
    for h in ["m1", "m2", "m3"] {
        let surfaces = [
            lab.haplane(h).log_text(),
            lab.http_get(h, "/status"),
            lab.http_get(h, "/metrics"),
        ];
        for text in surfaces {
            assert!(
                !text.contains(KEY1) && !text.contains("rotation-test-key"),
                "{h} shows the key"
            );
        }
    }
}

// ---- mixed clusters with keepalived 2.2 --------------------------------------------------

/// haplane on m1 with `mode`, Debian's keepalived 2.2 (no auth_hmac) on m2; who holds the
/// VIP once settled, with haplane at `haplane_prio` and keepalived at the other priority.
fn mixed(mode: &str, haplane_master: bool) -> (Vec<String>, Lab) {
    let (hp, kp) = if haplane_master {
        (150, 100)
    } else {
        (100, 150)
    };
    let mut cfg = Cfg::new(&[("m1", "192.0.2.11", hp), ("m2", "192.0.2.12", kp)]);
    let mut lab = Lab::new(&["m1", "m2"]);
    let conf = keepalived_conf(&cfg, "m2");
    cfg.extra_vip = format!("  authHmac:\n    keys:\n      1: {KEY1}\n    mode: {mode}\n");
    let path = lab.write("cluster.yaml", &cfg.yaml());
    lab.start_keepalived("m2", &conf);
    lab.start_haplane("m1", &path);
    std::thread::sleep(Duration::from_secs(4));
    (lab.holders(), lab)
}

/// receive-only is the mode for clusters that still run keepalived 2.2: haplane sends plain
/// adverts that 2.2 understands and accepts 2.2's unsigned ones, in both priority orders.
#[test]
fn receive_only_interoperates_with_keepalived_2_2_both_ways() {
    if support::skip() {
        return;
    }
    for (haplane_master, want) in [(true, "m1"), (false, "m2")] {
        let (holders, lab) = mixed("receive-only", haplane_master);
        assert_eq!(
            holders,
            [want],
            "haplane master: {haplane_master}\n{}",
            lab.logs()
        );
        lab.assert_holders_stay(&[want], Duration::from_secs(1));
        if !haplane_master {
            assert!(counter(&lab, "m1", "hmac_unsigned_accepted") > 10);
        }
    }
}

/// permissive still accepts 2.2's unsigned adverts (keepalived master), but its own signed
/// adverts carry a trailer that keepalived 2.2 does not expect; enforce refuses 2.2's
/// adverts outright (hmac_missing) and both nodes hold the VIP. So: every keepalived must be
/// 2.4 (or replaced by haplane) before the permissive sweep.
#[test]
fn permissive_and_enforce_need_every_peer_to_speak_auth_hmac() {
    if support::skip() {
        return;
    }
    let (holders, lab) = mixed("permissive", false);
    assert_eq!(
        holders,
        ["m2"],
        "permissive haplane follows keepalived\n{}",
        lab.logs()
    );
    drop(lab);
    let (holders, lab) = mixed("enforce", false);
    assert_eq!(
        holders,
        ["m1", "m2"],
        "enforce refuses 2.2's adverts\n{}",
        lab.logs()
    );
    let refused = || {
        hmac_discards(&lab, "m1")
            .iter()
            .any(|(k, n)| k == "hmac_missing" && *n > 10)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused(), "{:?}\n{}", hmac_discards(&lab, "m1"), lab.logs());
    drop(lab);
    // keepalived 2.2 refuses a signed advert by its length ("vrrp packet too long, length
    // 60 and expect 32") and takes the VIP too.
    let (holders, lab) = mixed("permissive", true);
    let log = std::fs::read_to_string(lab.dir.path().join("m2-keepalived.log")).unwrap_or_default();
    assert_eq!(holders, ["m1", "m2"], "{}", lab.logs());
    assert!(log.contains("vrrp packet too long"), "{log}");
}

/// VRRPv3 over IPv6 with auth_hmac between two haplane nodes: adverts from the link-local
/// address, trailer inside the checksum; every one verifies and one node holds the VIP.
#[test]
fn ipv6_adverts_are_signed_and_verified() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new_dual_stack(&["m1", "m2"]);
    lab.vip = "2001:db8::100".parse().unwrap();
    let text = format!(
        "cluster: v6\nnodes:\n  - {{name: m1, address: \"2001:db8::11\", priority: 150}}\n  - {{name: m2, address: \"2001:db8::12\"}}\nvip:\n  address: \"2001:db8::100/64\"\n  vrid: 61\n  advertInterval: 100ms\n  authHmac:\n    keys:\n      1: {KEY1}\nloadBalancer: {{enabled: false}}\n"
    );
    let path = lab.write("cluster.yaml", &text);
    lab.start_haplane("m1", &path);
    lab.start_haplane("m2", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(15));
    lab.assert_holders_stay(&["m1"], Duration::from_secs(1));
    assert!(counter(&lab, "m2", "hmac_verified") > 5, "{}", lab.logs());
    assert_eq!(hmac_discards(&lab, "m2"), vec![]);
}

/// VRRPv2 (1 s adverts) carries the trailer after its 8 bytes of auth data.
#[test]
fn v2_adverts_are_signed_and_verified() {
    if support::skip() {
        return;
    }
    let mut cfg = Cfg::new(&[("m1", "192.0.2.11", 150), ("m2", "192.0.2.12", 100)]);
    cfg.version = 2;
    cfg.advert = "1s";
    cfg.extra_vip = format!("  authHmac:\n    keys:\n      1: {KEY1}\n");
    let mut lab = Lab::new(&["m1", "m2"]);
    let path = lab.write("cluster.yaml", &cfg.yaml());
    lab.start_haplane("m1", &path);
    lab.start_haplane("m2", &path);
    lab.wait_holders(&["m1"], Duration::from_secs(12));
    std::thread::sleep(Duration::from_secs(2));
    assert!(counter(&lab, "m2", "hmac_verified") >= 2, "{}", lab.logs());
    assert_eq!(hmac_discards(&lab, "m2"), vec![]);
}
