//! ICMP echo ("ping") over a raw socket, so tests need no `ping` binary.
//!
//! The socket is created inside the host's namespace by the caller; sending and receiving then
//! work from any thread. RFC 792 gives the echo message layout and checksum.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How often an echo request is repeated while waiting (covers the first request being queued
/// behind ARP, or a link coming up).
const RESEND: Duration = Duration::from_millis(200);

/// Opens a raw ICMPv4 socket in the current thread's network namespace.
pub(crate) fn open_socket() -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_broadcast(true)?;
    Ok(s)
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request (RFC 792: type 8, code 0) with identifier `id` and sequence `seq`.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![8, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"netlab-echo-probe");
    let c = checksum(&pkt);
    pkt[2..4].copy_from_slice(&c.to_be_bytes());
    pkt
}

/// If `buf` (an IPv4 packet as a raw socket delivers it) is an echo reply (type 0) with
/// identifier `id`, its source address.
fn parse_reply(buf: &[u8], id: u16) -> Option<Ipv4Addr> {
    let ihl = usize::from(buf.first()? & 0x0f) * 4;
    if ihl < 20 || buf.len() < ihl + 8 {
        return None;
    }
    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    let icmp = &buf[ihl..];
    (icmp[0] == 0 && icmp[1] == 0 && u16::from_be_bytes([icmp[4], icmp[5]]) == id).then_some(src)
}

/// A fresh echo identifier, distinct across concurrent probes in this process.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16) ^ NEXT.fetch_add(0x9e37, Ordering::Relaxed)
}

/// Sends echo requests to `dst` every [`RESEND`] for up to `window`, collecting the sources of
/// replies. With `stop_at_first`, returns as soon as `dst` itself answers (unicast ping);
/// otherwise waits the whole window (broadcast or multicast: several hosts answer).
pub(crate) fn echo(
    sock: &Socket,
    dst: Ipv4Addr,
    window: Duration,
    stop_at_first: bool,
) -> std::io::Result<BTreeSet<Ipv4Addr>> {
    let id = next_id();
    let to = SockAddr::from(SocketAddrV4::new(dst, 0));
    let start = Instant::now();
    let mut next_send = start;
    let mut seq: u16 = 0;
    let mut seen = BTreeSet::new();
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= start + window {
            return Ok(seen);
        }
        if now >= next_send {
            seq = seq.wrapping_add(1);
            // A send error (no route, link down) is the same as no answer.
            if let Err(e) = sock.send_to(&echo_request(id, seq), &to) {
                tracing::trace!(%dst, error = %e, "netlab: echo send failed");
            }
            next_send = now + RESEND;
        }
        let wait = (next_send.min(start + window))
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))?;
        match (&*sock).read(&mut buf) {
            Ok(n) => {
                if let Some(src) = parse_reply(&buf[..n], id) {
                    seen.insert(src);
                    if stop_at_first && src == dst {
                        return Ok(seen);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_request_verifies_to_zero() {
        // RFC 1071: summing a message including its checksum gives all ones (complement 0).
        let pkt = echo_request(0x1234, 7);
        assert_eq!(checksum(&pkt), 0);
        assert_eq!(pkt[0], 8, "echo request is type 8 (RFC 792)");
    }

    #[test]
    fn odd_length_checksum_pads_with_zero() {
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn reply_parser_checks_type_and_identifier() {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 12, 192, 0, 2, 11,
        ];
        let mut icmp = echo_request(99, 1);
        icmp[0] = 0;
        ip.extend_from_slice(&icmp);
        assert_eq!(parse_reply(&ip, 99), Some(Ipv4Addr::new(192, 0, 2, 12)));
        assert_eq!(parse_reply(&ip, 98), None, "another prober's reply");
        ip[20] = 8;
        assert_eq!(parse_reply(&ip, 99), None, "a request is not a reply");
        assert_eq!(parse_reply(&ip[..25], 99), None, "truncated");
        assert_eq!(parse_reply(&[], 99), None);
    }
}
