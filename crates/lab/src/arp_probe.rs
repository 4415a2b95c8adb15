//! Who answers ARP for an address, as a host on the LAN sees it.
//!
//! A node can hold the VIP on its interface without answering for it (a kernel fence drops its
//! ARP replies and packets), and a node can answer without a live process (SIGSTOP freezes the
//! daemon, not the kernel). Clients reach whoever *answers*, so the split-brain figure counts
//! answers: from the probing host, an ARP request for the address every few milliseconds, and
//! the set of MAC addresses that reply to each.
//!
//! The requests are ARP Probes (RFC 5227 §2.1.1: sender protocol address 0.0.0.0), which a
//! Linux holder answers with a reply to 0.0.0.0 without learning anything about the prober
//! (net/ipv4/arp.c, the `sip == 0` case). The probing host's own kernel would still learn from
//! those replies, which would refresh its neighbour entry for the VIP and hide a stale-ARP
//! blackhole from the clients running there; so [`ArpProbe::open`] installs an nftables `arp`
//! input rule in the probing namespace that drops ARP replies addressed to 0.0.0.0 before the
//! kernel's ARP code sees them. The packet socket still gets its copy (taps come before
//! netfilter), and nothing else is ever addressed to 0.0.0.0. The rule goes when the probe is
//! dropped.
//!
//! ```no_run
//! # fn demo(w1: &netlab::Host) -> Result<(), lab::arp_probe::ProbeError> {
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! let probe = lab::arp_probe::ArpProbe::open(w1, "192.0.2.100".parse().unwrap())?;
//! let stop = AtomicBool::new(false);
//! probe.run(Duration::from_millis(10), &stop, |round| {
//!     if round.answers.len() > 1 {
//!         println!("split brain at {:?}: {:?}", round.sent, round.answers);
//!     }
//! })?;
//! # Ok(()) }
//! ```

use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why the probe cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probing host's namespace cannot be entered.
    #[error("arp probe: {0}")]
    Netlab(netlab::Error),
    /// The interface is missing or has no Ethernet address.
    #[error("arp probe in {ns}: interface {interface}: {detail}")]
    Interface {
        /// The namespace.
        ns: String,
        /// The interface.
        interface: String,
        /// What is wrong.
        detail: String,
    },
    /// A socket operation failed (AF_PACKET needs CAP_NET_RAW).
    #[error("arp probe in {ns}: {what}")]
    Socket {
        /// The namespace.
        ns: String,
        /// The operation.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The nftables rule that keeps the probe's replies from the local kernel failed.
    #[error("arp probe in {ns}: cannot install the reply filter: {detail}")]
    Filter {
        /// The namespace.
        ns: String,
        /// What nft said.
        detail: String,
    },
}

// Shown in the message, so not a `source()` as well (one rule for errors: never both).
impl From<netlab::Error> for ProbeError {
    fn from(e: netlab::Error) -> ProbeError {
        ProbeError::Netlab(e)
    }
}

/// One probe: when it was sent and who answered before the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpRound {
    /// When the request left.
    pub sent: Instant,
    /// The distinct MAC addresses that answered for the target, in order of arrival.
    pub answers: Vec<Mac>,
    /// How long after `sent` each of `answers` arrived (same order): a request that straddles
    /// a handover is answered by the old holder first and by the new one later.
    pub arrived: Vec<Duration>,
}

/// An ARP prober for one IPv4 address, bound to one host's `eth0`.
#[derive(Debug)]
pub struct ArpProbe {
    socket: Socket,
    ns: String,
    ifindex: u32,
    mac: Mac,
    target: Ipv4Addr,
    request: Vec<u8>,
    filter_table: String,
}

impl ArpProbe {
    /// Opens a probe for `target` on `host`'s `eth0` (needs root: a packet socket, nft).
    pub fn open(host: &netlab::Host, target: Ipv4Addr) -> Result<ArpProbe, ProbeError> {
        let ns = host.ns_name().to_string();
        let ifname = host.ifname().to_string();
        let (socket, ifindex, mac) = host.enter(|| open_socket(&ns, &ifname))??;
        let filter_table = install_filter(host)?;
        Ok(ArpProbe {
            socket,
            ns,
            ifindex,
            mac,
            target,
            request: arp_probe_frame(mac, target),
            filter_table,
        })
    }

    /// The probing interface's own address (replies are sent to it).
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The address probed for.
    pub fn target(&self) -> Ipv4Addr {
        self.target
    }

    /// Sends one probe and collects the distinct MACs that answer within `window`.
    pub fn probe(&self, window: Duration) -> Result<ArpRound, ProbeError> {
        let sent = Instant::now();
        self.send()?;
        let (answers, arrived) = self.collect(sent, sent + window)?;
        Ok(ArpRound {
            sent,
            answers,
            arrived,
        })
    }

    /// Probes every `interval` until `stop` is set, handing each round to `sink`; an answer
    /// counts for the latest probe sent before it arrived. A late tick starts the next probe
    /// at once instead of bursting to catch up.
    pub fn run(
        &self,
        interval: Duration,
        stop: &AtomicBool,
        mut sink: impl FnMut(ArpRound),
    ) -> Result<(), ProbeError> {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            self.send()?;
            next = (next + interval).max(sent);
            let (answers, arrived) = self.collect(sent, next)?;
            sink(ArpRound {
                sent,
                answers,
                arrived,
            });
        }
        Ok(())
    }

    fn send(&self) -> Result<(), ProbeError> {
        let dst = sockaddr_ll::link_layer_addr(self.ifindex, ETH_P_ARP, BROADCAST);
        self.socket
            .send_to(&self.request, &dst)
            .map(|_| ())
            .map_err(|source| self.error("send", source))
    }

    /// Reads replies until `until`, then whatever is already queued: a prober woken late
    /// (descheduled past `until` on a busy machine) still credits the replies to this
    /// probe, not to the next one, which would leave this round falsely unanswered.
    fn collect(
        &self,
        sent: Instant,
        until: Instant,
    ) -> Result<(Vec<Mac>, Vec<Duration>), ProbeError> {
        let mut answers = Answers {
            sent,
            macs: Vec::new(),
            arrived: Vec::new(),
        };
        let mut buf = [0u8; 128];
        loop {
            let now = Instant::now();
            if now >= until {
                self.drain(&mut answers, &mut buf)?;
                return Ok((answers.macs, answers.arrived));
            }
            // A zero timeout would mean "block forever".
            let wait = (until - now).max(Duration::from_micros(100));
            self.socket
                .set_read_timeout(Some(wait))
                .map_err(|source| self.error("set timeout", source))?;
            match (&self.socket).read(&mut buf) {
                Ok(n) => answers.note(parse_reply(&buf[..n], self.target, self.mac)),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(self.error("receive", source)),
            }
        }
    }

    /// Reads the replies already queued, without waiting.
    fn drain(&self, answers: &mut Answers, buf: &mut [u8]) -> Result<(), ProbeError> {
        self.socket
            .set_nonblocking(true)
            .map_err(|source| self.error("set non-blocking", source))?;
        let result = loop {
            match (&self.socket).read(buf) {
                Ok(n) => answers.note(parse_reply(&buf[..n], self.target, self.mac)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                Err(source) => break Err(self.error("receive", source)),
            }
        };
        self.socket
            .set_nonblocking(false)
            .map_err(|source| self.error("set blocking", source))?;
        result
    }

    fn error(&self, what: &'static str, source: std::io::Error) -> ProbeError {
        ProbeError::Socket {
            ns: self.ns.clone(),
            what,
            source,
        }
    }
}

/// The distinct answers to one request, with when each first arrived.
struct Answers {
    sent: Instant,
    macs: Vec<Mac>,
    arrived: Vec<Duration>,
}

impl Answers {
    fn note(&mut self, reply: Option<Mac>) {
        if let Some(mac) = reply
            && !self.macs.contains(&mac)
        {
            self.macs.push(mac);
            self.arrived.push(self.sent.elapsed());
        }
    }
}

impl Drop for ArpProbe {
    fn drop(&mut self) {
        // The namespace may be gone already (lab down): then so is the table.
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "nft", "delete", "table", "arp"])
            .arg(&self.filter_table)
            .output();
    }
}

/// The Ethernet address of `host`'s interface `ifname` (to map answers to nodes).
pub fn interface_mac(host: &netlab::Host, ifname: &str) -> Result<Mac, ProbeError> {
    let ns = host.ns_name().to_string();
    host.enter(|| lookup_interface(&ns, ifname).map(|(_, mac)| mac))?
}

/// ifindex and MAC of `ifname` in the calling thread's namespace.
fn lookup_interface(ns: &str, ifname: &str) -> Result<(u32, Mac), ProbeError> {
    let bad = |detail: String| ProbeError::Interface {
        ns: ns.to_string(),
        interface: ifname.to_string(),
        detail,
    };
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|e| bad(e.to_string()))?;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| bad(e.to_string()))?;
    let mac = addrs
        .filter(|a| a.interface_name == ifname)
        .find_map(|a| a.address?.as_link_addr()?.addr())
        .ok_or_else(|| bad("no Ethernet address".into()))?;
    Ok((ifindex, Mac(mac)))
}

/// A packet socket for ARP bound to `ifname`, in the calling thread's namespace.
fn open_socket(ns: &str, ifname: &str) -> Result<(Socket, u32, Mac), ProbeError> {
    let (ifindex, mac) = lookup_interface(ns, ifname)?;
    let err = |what, source| ProbeError::Socket {
        ns: ns.to_string(),
        what,
        source,
    };
    let proto = Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto))
        .map_err(|e| err("open a packet socket (needs CAP_NET_RAW)", e))?;
    socket
        .bind(&sockaddr_ll::link_layer_addr(ifindex, ETH_P_ARP, [0; 6]))
        .map_err(|e| err("bind", e))?;
    Ok((socket, ifindex, mac))
}

/// Installs the nft rule that hides replies to 0.0.0.0 from the probing host's ARP code;
/// returns the table's name.
fn install_filter(host: &netlab::Host) -> Result<String, ProbeError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let table = format!(
        "hpl_arp_probe_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let script = format!(
        "table arp {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    arp operation reply arp daddr ip 0.0.0.0 drop\n  }}\n}}\n"
    );
    let fail = |detail: String| ProbeError::Filter {
        ns: host.ns_name().to_string(),
        detail,
    };
    let mut child = host
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(table)
}

/// An Ethernet frame with an ARP Probe for `target` (RFC 5227 §2.1.1): a broadcast request
/// with our hardware address, sender protocol address 0.0.0.0 and an empty target hardware
/// address.
pub fn arp_probe_frame(mac: Mac, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0; 4]); // sender protocol address 0.0.0.0: a probe
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The answering MAC when `frame` is an ARP reply from `target` addressed to `me` (to the
/// probe's 0.0.0.0, or to a request of the host itself: both say who answers).
pub fn parse_reply(frame: &[u8], target: Ipv4Addr, me: Mac) -> Option<Mac> {
    if frame.len() < 42 || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let arp = &frame[14..];
    let ethernet_ipv4 = arp[0..2] == [0, 1] && arp[2..4] == [8, 0] && arp[4] == 6 && arp[5] == 4;
    let reply = arp[6..8] == [0, 2];
    let from_target = arp[14..18] == target.octets();
    let to_me = arp[18..24] == me.0;
    if !(ethernet_ipv4 && reply && from_target && to_me) {
        return None;
    }
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&arp[8..14]);
    Some(Mac(sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Mac = Mac([2, 0, 0, 0, 0, 0x14]);
    const HOLDER: Mac = Mac([2, 0, 0, 0, 0, 0x11]);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

    /// A reply as Linux sends it to a probe: sender = the VIP and its MAC, target = the
    /// prober's MAC and 0.0.0.0.
    fn reply(sha: Mac, spa: Ipv4Addr, tha: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&tha.0);
        f.extend_from_slice(&sha.0);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
        f.extend_from_slice(&sha.0);
        f.extend_from_slice(&spa.octets());
        f.extend_from_slice(&tha.0);
        f.extend_from_slice(&[0; 4]);
        f
    }

    #[test]
    fn a_probe_says_nothing_about_the_prober_rfc5227_2_1_1() {
        let f = arp_probe_frame(ME, VIP);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &ME.0, "sender hardware address");
        assert_eq!(&f[28..32], &[0; 4], "sender protocol address 0.0.0.0");
        assert_eq!(&f[32..38], &[0; 6], "target hardware address unknown");
        assert_eq!(&f[38..42], &VIP.octets());
    }

    #[test]
    fn only_replies_from_the_target_to_us_are_answers() {
        assert_eq!(parse_reply(&reply(HOLDER, VIP, ME), VIP, ME), Some(HOLDER));
        let other_ip = Ipv4Addr::new(192, 0, 2, 11);
        assert_eq!(parse_reply(&reply(HOLDER, other_ip, ME), VIP, ME), None);
        let someone_else = Mac([2, 0, 0, 0, 0, 0x15]);
        assert_eq!(
            parse_reply(&reply(HOLDER, VIP, someone_else), VIP, ME),
            None
        );
        // Our own request (and every gratuitous ARP) is a request, not an answer.
        assert_eq!(parse_reply(&arp_probe_frame(ME, VIP), VIP, ME), None);
        assert_eq!(parse_reply(&reply(HOLDER, VIP, ME)[..41], VIP, ME), None);
    }

    #[test]
    fn macs_print_like_ip_link() {
        assert_eq!(HOLDER.to_string(), "02:00:00:00:00:11");
    }
}
