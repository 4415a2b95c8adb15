//! Wire compatibility with the real keepalived (Debian 2.2): run it in a network namespace
//! we create, capture its adverts with tcpdump on the other end of a veth pair, and decode
//! them with our codec. Needs root, `ip`, `keepalived` and `tcpdump`; without them the
//! tests say so and return.
//!
//! Addresses are from 192.0.2.0/24 inside the namespace only; the namespace (and with it
//! the veth pair) and keepalived are removed when the test ends, on panic too.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vrrp::packet::{MULTICAST_V4, parse_ipv4};
use vrrp::{Advertisement, ChecksumMode, Version};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn prerequisites() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let ok = root && ["ip", "keepalived", "tcpdump"].iter().all(|t| have(t));
    if !ok {
        eprintln!("SKIP: needs root, ip, keepalived and tcpdump");
    }
    ok
}

/// Two namespaces joined by a veth pair: va (192.0.2.1) runs keepalived, vb (192.0.2.2,
/// in the peer namespace) captures. Two namespaces so unicast really crosses the wire.
struct Lab {
    ns: String,
    peer: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let ns = format!(
            "vrrpw-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            peer: format!("{ns}p"),
            ns,
            dir,
            children: Vec::new(),
        };
        lab.ip(&["netns", "add", &lab.ns]);
        lab.ip(&["netns", "add", &lab.peer]);
        let (a, b) = (lab.ns.as_str(), lab.peer.as_str());
        for (ns, cmd) in [
            (a, "link set lo up"),
            (b, "link set lo up"),
            (a, "link add va type veth peer name vb netns PEER"),
            (a, "addr add 192.0.2.1/24 dev va"),
            (b, "addr add 192.0.2.2/24 dev vb"),
            (a, "link set va up"),
            (b, "link set vb up"),
        ] {
            let mut args = vec!["-n", ns];
            args.extend(cmd.split(' ').map(|w| if w == "PEER" { b } else { w }));
            lab.ip(&args);
        }
        lab
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    }

    fn spawn(&mut self, args: &[&str]) {
        let ns = self.ns.clone();
        self.spawn_in(&ns, args);
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Start keepalived with `instance` (the body of a vrrp_instance on interface va).
    fn keepalived(&mut self, instance: &str) {
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id wiretest\n}}\nvrrp_instance VI_1 {{\n  interface va\n{instance}\n}}\n"
            ),
        )
        .unwrap();
        let pid = self.dir.join("k.pid");
        let vpid = self.dir.join("v.pid");
        let args = [
            "keepalived".to_string(),
            "--dont-fork".into(),
            "--vrrp".into(),
            "--log-console".into(),
            format!("--use-file={}", conf.display()),
            format!("--pid={}", pid.display()),
            format!("--vrrp_pid={}", vpid.display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(&args);
    }

    /// Capture `count` VRRP packets on vb into a pcap file, waiting at most `max`.
    fn capture(&mut self, count: usize, max: Duration) -> Vec<Vec<u8>> {
        let file = self.dir.join("cap.pcap");
        let mut tcpdump = Command::new("ip")
            .args([
                "netns", "exec", &self.peer, "tcpdump", "-i", "vb", "-U", "-n",
            ])
            .args(["-c", &count.to_string(), "-w"])
            .arg(&file)
            .arg("ip proto 112")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < max {
            if tcpdump.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = tcpdump.kill();
        let _ = tcpdump.wait();
        read_pcap_ipv4(&file)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ns, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The IPv4 datagrams of an Ethernet pcap file (classic format, either byte order).
fn read_pcap_ipv4(path: &Path) -> Vec<Vec<u8>> {
    let Ok(b) = std::fs::read(path) else {
        return Vec::new();
    };
    if b.len() < 24 {
        return Vec::new();
    }
    let le = b[0..4] == [0xd4, 0xc3, 0xb2, 0xa1] || b[0..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let u32_at = |o: usize| {
        let w = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let caplen = u32_at(off + 8) as usize;
        let start = off + 16;
        if start + caplen > b.len() {
            break;
        }
        let frame = &b[start..start + caplen];
        // Ethernet II, ethertype IPv4.
        if frame.len() > 14 && frame[12..14] == [0x08, 0x00] {
            out.push(frame[14..].to_vec());
        }
        off = start + caplen;
    }
    out
}

fn decode_all(frames: &[Vec<u8>], mode: ChecksumMode) -> Vec<(IpAddr, Advertisement)> {
    frames
        .iter()
        .map(|f| {
            let d = parse_ipv4(f).expect("keepalived sends well-formed IPv4");
            assert_eq!(d.ttl, 255, "RFC 5798 §5.1.1.3: TTL 255");
            let ad = Advertisement::decode(IpAddr::V4(d.src), IpAddr::V4(d.dst), d.payload, mode)
                .unwrap_or_else(|e| panic!("keepalived advert rejected: {e}"));
            (IpAddr::V4(d.dst), ad)
        })
        .collect()
}

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));

/// keepalived's default VRRPv3 over IPv4 checksum includes the pseudo-header; our
/// default decoder verifies it, and the message-only mode does not.
#[test]
fn keepalived_v3_adverts_decode_with_pseudo_header_checksum() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new();
    lab.keepalived(
        "  state MASTER\n  version 3\n  virtual_router_id 51\n  priority 150\n  advert_int 0.1\n  virtual_ipaddress {\n    192.0.2.100/24\n  }",
    );
    let frames = lab.capture(3, Duration::from_secs(15));
    assert!(frames.len() >= 3, "captured {} adverts", frames.len());
    for (dst, ad) in decode_all(&frames, ChecksumMode::PseudoHeader) {
        assert_eq!(dst, IpAddr::V4(MULTICAST_V4));
        assert_eq!(ad.version, Version::V3);
        assert_eq!(ad.vrid, 51);
        assert_eq!(ad.priority, 150);
        assert_eq!(ad.interval, 10, "0.1 s = 10 centiseconds");
        assert_eq!(ad.addresses, vec![VIP]);
    }
    let d = parse_ipv4(&frames[0]).unwrap();
    assert!(
        Advertisement::decode(
            IpAddr::V4(d.src),
            IpAddr::V4(d.dst),
            d.payload,
            ChecksumMode::MessageOnly
        )
        .is_err()
    );
}

// keepalived `v3_checksum_as_v2` only exists from 2.2.8 on; Debian 12 ships 2.2.7
// ("Unknown keyword"), so the message-only mode is pinned by unit tests instead.

/// keepalived VRRPv2 with `auth_type PASS`: auth type 1 with the first 8 characters of the
/// password, interval in seconds, checksum over the message.
#[test]
fn keepalived_v2_pass_auth_is_first_eight_chars() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new();
    lab.keepalived(
        "  state MASTER\n  version 2\n  virtual_router_id 53\n  priority 110\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass k8s-secret-long\n  }\n  virtual_ipaddress {\n    192.0.2.100/24\n  }",
    );
    let frames = lab.capture(2, Duration::from_secs(20));
    assert!(frames.len() >= 2, "captured {} adverts", frames.len());
    for (_, ad) in decode_all(&frames, ChecksumMode::PseudoHeader) {
        assert_eq!(ad.version, Version::V2);
        assert_eq!(ad.vrid, 53);
        assert_eq!(ad.interval, 1);
        assert_eq!(ad.auth, Some(*b"k8s-secr"));
    }
}

/// keepalived unicast: the v3 pseudo-header carries the peer's address as destination.
#[test]
fn keepalived_v3_unicast_checksum_uses_peer_address() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new();
    lab.keepalived(
        "  state MASTER\n  version 3\n  virtual_router_id 54\n  priority 130\n  advert_int 0.1\n  unicast_src_ip 192.0.2.1\n  unicast_peer {\n    192.0.2.2\n  }\n  virtual_ipaddress {\n    192.0.2.100/24\n  }",
    );
    let frames = lab.capture(2, Duration::from_secs(15));
    assert!(frames.len() >= 2, "captured {} adverts", frames.len());
    for (dst, ad) in decode_all(&frames, ChecksumMode::PseudoHeader) {
        assert_eq!(dst, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(ad.vrid, 54);
    }
}

/// Send `payload` to the VRRP group from the peer namespace every 100 ms for `secs`, with
/// a TTL of 255 (python3's raw socket; the kernel builds the IP header from 192.0.2.2).
fn send_from_peer(lab: &mut Lab, payload: &[u8], secs: f64) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys,time\n\
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,112)\n\
s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,255)\n\
s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('192.0.2.2'))\n\
p=bytes.fromhex(sys.argv[1]);end=time.time()+float(sys.argv[2])\n\
while time.time()<end:\n s.sendto(p,('224.0.0.18',0));time.sleep(0.1)\n";
    let peer = lab.peer.clone();
    lab.spawn_in(&peer, &["python3", "-c", script, &hex, &secs.to_string()]);
}

fn vip_on_va(lab: &Lab) -> bool {
    let out = Command::new("ip")
        .args(["-n", &lab.ns, "-4", "addr", "show", "dev", "va"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("192.0.2.100")
}

/// The other direction: keepalived (backup, priority 100, 0.1 s) accepts our VRRPv3
/// adverts (priority 200, pseudo-header checksum) and stays backup while they flow; when
/// they stop it takes over, which shows it was listening all along.
#[test]
fn keepalived_accepts_our_v3_adverts() {
    if !prerequisites() || !have("python3") {
        return;
    }
    let mut lab = Lab::new();
    lab.keepalived(
        "  state BACKUP\n  version 3\n  virtual_router_id 55\n  priority 100\n  advert_int 0.1\n  virtual_ipaddress {\n    192.0.2.100/24\n  }",
    );
    let ad = Advertisement {
        version: Version::V3,
        vrid: 55,
        priority: 200,
        interval: 10,
        addresses: vec![VIP],
        auth: None,
    };
    let src: IpAddr = "192.0.2.2".parse().unwrap();
    let payload = ad
        .encode(src, IpAddr::V4(MULTICAST_V4), ChecksumMode::PseudoHeader)
        .unwrap();
    send_from_peer(&mut lab, &payload, 3.0);
    // keepalived would be master after ~0.4 s (plus its startup) without our adverts.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!vip_on_va(&lab), "keepalived took over despite our adverts");
    let start = Instant::now();
    while !vip_on_va(&lab) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        vip_on_va(&lab),
        "keepalived never took over after our adverts stopped"
    );
}

/// keepalived VRRPv2 with PASS auth accepts our v2 adverts with the matching password.
#[test]
fn keepalived_accepts_our_v2_pass_adverts() {
    if !prerequisites() || !have("python3") {
        return;
    }
    let mut lab = Lab::new();
    lab.keepalived(
        "  state BACKUP\n  version 2\n  virtual_router_id 56\n  priority 100\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass k8s-secret\n  }\n  virtual_ipaddress {\n    192.0.2.100/24\n  }",
    );
    let ad = Advertisement {
        version: Version::V2,
        vrid: 56,
        priority: 200,
        interval: 1,
        addresses: vec![VIP],
        auth: Some(vrrp::packet::password_auth_data("k8s-secret")),
    };
    let src: IpAddr = "192.0.2.2".parse().unwrap();
    let payload = ad
        .encode(src, IpAddr::V4(MULTICAST_V4), ChecksumMode::PseudoHeader)
        .unwrap();
    send_from_peer(&mut lab, &payload, 6.0);
    // Without our adverts keepalived v2 takes over after 3 × 1 s + skew ≈ 3.6 s.
    std::thread::sleep(Duration::from_millis(5500));
    assert!(!vip_on_va(&lab), "keepalived took over despite our adverts");
    let start = Instant::now();
    while !vip_on_va(&lab) && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        vip_on_va(&lab),
        "keepalived never took over after our adverts stopped"
    );
}
