//! A reader for classic pcap files (the tcpdump format: a 24-byte file header, then a 16-byte
//! header per record), Ethernet link type only: just what the captured fixtures need.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// One captured VRRP advert.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Capture time since the Unix epoch.
    pub at: Duration,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub hop_limit: u8,
    /// The IP payload: the VRRP message and whatever follows it.
    pub payload: Vec<u8>,
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Every IPv4/IPv6 packet of protocol 112 in a pcap file, in capture order.
pub fn vrrp_packets(bytes: &[u8]) -> Vec<Packet> {
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    // 0xa1b2c3d4: microsecond timestamps, 0xa1b23c4d: nanoseconds (both little-endian here).
    let nanos_per_tick = match magic {
        0xa1b2_c3d4 => 1_000,
        0xa1b2_3c4d => 1,
        other => panic!("not a little-endian pcap file (magic {other:#x})"),
    };
    let link = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(link, 1, "only Ethernet captures are supported");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let word = |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().unwrap());
        let (secs, frac, caplen) = (word(0), word(4), word(8) as usize);
        let frame = &bytes[at + 16..at + 16 + caplen];
        at += 16 + caplen;
        let when = Duration::from_secs(u64::from(secs))
            + Duration::from_nanos(u64::from(frac) * nanos_per_tick);
        let ip = &frame[14..];
        match u16_be(frame, 12) {
            0x0800 => {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let total = usize::from(u16_be(ip, 2));
                if ip[9] != 112 {
                    continue;
                }
                out.push(Packet {
                    at: when,
                    src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                    dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                    hop_limit: ip[8],
                    payload: ip[ihl..total].to_vec(),
                });
            }
            0x86dd => {
                let len = usize::from(u16_be(ip, 4));
                if ip[6] != 112 {
                    continue;
                }
                let addr = |o: usize| {
                    IpAddr::V6(Ipv6Addr::from(
                        <[u8; 16]>::try_from(&ip[o..o + 16]).unwrap(),
                    ))
                };
                out.push(Packet {
                    at: when,
                    src: addr(8),
                    dst: addr(24),
                    hop_limit: ip[7],
                    payload: ip[40..40 + len].to_vec(),
                });
            }
            _ => {}
        }
    }
    out
}
