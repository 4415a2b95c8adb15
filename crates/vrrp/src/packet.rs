//! VRRP advertisement codec: VRRPv2 (RFC 3768 §5.1) and VRRPv3 (RFC 5798 §5.1), IPv4 and IPv6.
//!
//! The codec works on the VRRP message only (the IP payload). The IP source and destination
//! are passed in because the VRRPv3 checksum covers a pseudo-header built from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.3, RFC 3768 §5.2.4).
pub const PROTOCOL: u8 = 112;
/// TTL / hop limit every advertisement is sent with and must arrive with (RFC 5798 §5.1.1.3).
pub const TTL: u8 = 255;
/// IPv4 multicast group (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Length of the fixed VRRP header (both versions).
pub const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 authentication data field (RFC 3768 §5.3.10).
pub const AUTH_LEN: usize = 8;
/// The only VRRP message type (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;

/// The multicast group for an address family (RFC 5798 §5.1.1.2, §5.1.2.2).
pub fn multicast_group(family_of: IpAddr) -> IpAddr {
    match family_of {
        IpAddr::V4(_) => IpAddr::V4(MULTICAST_V4),
        IpAddr::V6(_) => IpAddr::V6(MULTICAST_V6),
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2, RFC 3768: IPv4 only, whole-second intervals, optional simple password.
    V2,
    /// VRRPv3, RFC 5798: IPv4 and IPv6, centisecond intervals.
    V3,
}

impl Version {
    /// The value of the 4-bit version field.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// How a VRRPv3 advertisement over IPv4 is checksummed.
///
/// RFC 5798 §5.2.8 includes a pseudo-header; keepalived does so by default and its
/// `v3_checksum_as_v2` option covers the VRRP message only (for Cisco and RFC 9568 peers).
/// VRRPv2 always covers the message only (RFC 3768 §5.3.8); VRRPv3 over IPv6 always
/// includes the pseudo-header, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Include the IPv4 pseudo-header (keepalived default).
    #[default]
    PseudoHeader,
    /// Checksum the VRRP message only (keepalived `v3_checksum_as_v2`).
    MessageOnly,
}

/// One VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Protocol version of the message.
    pub version: Version,
    /// Virtual router identifier (RFC 5798 §5.2.3).
    pub vrid: u8,
    /// Sender priority; 0 means the master is stopping, 255 the address owner (§5.2.4).
    pub priority: u8,
    /// Advertisement interval. v3: Max Adver Int in centiseconds, 12 bits (§5.2.7).
    /// v2: Adver Int in whole seconds (RFC 3768 §5.3.7).
    pub interval: u16,
    /// The virtual addresses (all of one family).
    pub addresses: Vec<IpAddr>,
    /// v2 simple-password authentication data (auth type 1); `None` is auth type 0.
    /// Always `None` for v3, which has no authentication (RFC 5798 §9).
    pub auth: Option<[u8; AUTH_LEN]>,
}

impl Advertisement {
    /// The advertisement interval as a duration.
    pub fn interval_duration(&self) -> Duration {
        match self.version {
            Version::V2 => Duration::from_secs(u64::from(self.interval)),
            Version::V3 => Duration::from_millis(u64::from(self.interval) * 10),
        }
    }

    /// Encode the message sent from `src` to `dst`, computing the checksum.
    pub fn encode(
        &self,
        src: IpAddr,
        dst: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(EncodeError::FamilyMismatch);
        }
        let count =
            u8::try_from(self.addresses.len()).map_err(|_| EncodeError::TooManyAddresses)?;
        if self.addresses.iter().any(|a| a.is_ipv4() != src.is_ipv4()) {
            return Err(EncodeError::FamilyMismatch);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.addresses.len() * 16 + AUTH_LEN);
        out.push((self.version.number() << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        match self.version {
            Version::V2 => {
                // RFC 3768 §5.1: VRRPv2 is defined for IPv4 only.
                if !src.is_ipv4() {
                    return Err(EncodeError::V2OverIpv6);
                }
                let interval = u8::try_from(self.interval)
                    .map_err(|_| EncodeError::IntervalOutOfRange(self.interval))?;
                out.push(if self.auth.is_some() { 1 } else { 0 });
                out.push(interval);
            }
            Version::V3 => {
                // RFC 5798 §5.2.7: 4 reserved bits, then a 12-bit interval.
                if self.interval > 0x0fff {
                    return Err(EncodeError::IntervalOutOfRange(self.interval));
                }
                out.extend_from_slice(&self.interval.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            // RFC 3768 §5.3.10: the auth data field is always present; zero for type 0.
            out.extend_from_slice(&self.auth.unwrap_or([0; AUTH_LEN]));
        }
        let sum = checksum(self.version, src, dst, mode, &out);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }

    /// Decode and verify a message received from `src` addressed to `dst`.
    ///
    /// Never panics. Extra bytes past the addresses (and v2 auth data) are tolerated but
    /// covered by the checksum, as the sender computed it over the whole IP payload; an
    /// `auth_hmac` trailer from keepalived 2.4 over IPv4 is outside it (see [`message_len`]).
    pub fn decode(
        src: IpAddr,
        dst: IpAddr,
        bytes: &[u8],
        mode: ChecksumMode,
    ) -> Result<Advertisement, DecodeError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(DecodeError::FamilyMismatch);
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                len: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let version = match bytes[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            other => return Err(DecodeError::BadVersion(other)),
        };
        let kind = bytes[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType(kind));
        }
        if version == Version::V2 && !src.is_ipv4() {
            return Err(DecodeError::V2OverIpv6);
        }
        let vrid = bytes[1];
        let priority = bytes[2];
        let count = usize::from(bytes[3]);
        let addr_len = if src.is_ipv4() { 4 } else { 16 };
        let trailer = if version == Version::V2 { AUTH_LEN } else { 0 };
        let need = HEADER_LEN + count * addr_len + trailer;
        if bytes.len() < need {
            return Err(DecodeError::Truncated {
                len: bytes.len(),
                need,
            });
        }
        let (interval, auth_type) = match version {
            Version::V2 => (u16::from(bytes[5]), Some(bytes[4])),
            // RFC 5798 §5.2.5: reserved bits are ignored on reception.
            Version::V3 => (u16::from_be_bytes([bytes[4], bytes[5]]) & 0x0fff, None),
        };
        let received = u16::from_be_bytes([bytes[6], bytes[7]]);
        // keepalived 2.4 checksums an IPv4 advert without its auth_hmac trailer (and an IPv6
        // one with it, as the kernel's IPV6_CHECKSUM covers the whole payload).
        let message_only_sum = bytes.len() == need + crate::auth::TRAILER_LEN
            && checksum(version, src, dst, mode, &bytes[..need]) == 0;
        if checksum(version, src, dst, mode, bytes) != 0 && !message_only_sum {
            // A correct message sums to zero with its checksum field in place (RFC 1071).
            let mut zeroed = bytes.to_vec();
            zeroed[6] = 0;
            zeroed[7] = 0;
            return Err(DecodeError::BadChecksum {
                received,
                computed: checksum(version, src, dst, mode, &zeroed),
            });
        }
        if interval == 0 {
            // A zero interval would make a backup's down timer collapse to Skew_Time.
            return Err(DecodeError::ZeroInterval);
        }
        let mut addresses = Vec::with_capacity(count);
        for chunk in bytes[HEADER_LEN..HEADER_LEN + count * addr_len].chunks_exact(addr_len) {
            addresses.push(match <[u8; 4]>::try_from(chunk) {
                Ok(a) => IpAddr::V4(Ipv4Addr::from(a)),
                Err(_) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(chunk);
                    IpAddr::V6(Ipv6Addr::from(a))
                }
            });
        }
        let auth = match auth_type {
            None | Some(0) => None,
            Some(1) => {
                let start = HEADER_LEN + count * addr_len;
                let mut a = [0u8; AUTH_LEN];
                a.copy_from_slice(&bytes[start..start + AUTH_LEN]);
                Some(a)
            }
            // Type 2 (IP AH) would not arrive as protocol 112; others are undefined.
            Some(other) => return Err(DecodeError::UnsupportedAuthType(other)),
        };
        Ok(Advertisement {
            version,
            vrid,
            priority,
            interval,
            addresses,
            auth,
        })
    }
}

/// The length of the VRRP message at the start of `bytes` (header, addresses and v2 auth
/// data), without validating it; whatever follows is a trailer such as `auth_hmac`'s. None
/// when `bytes` is shorter than that or not VRRP v2/v3.
pub fn message_len(bytes: &[u8], ipv6: bool) -> Option<usize> {
    let version = bytes.first()? >> 4;
    let count = usize::from(*bytes.get(3)?);
    let addr_len = if ipv6 { 16 } else { 4 };
    let len = match version {
        2 => HEADER_LEN + count * addr_len + AUTH_LEN,
        3 => HEADER_LEN + count * addr_len,
        _ => return None,
    };
    (bytes.len() >= len).then_some(len)
}

/// Append an `auth_hmac` trailer to an encoded message sent from `src` to `dst`. Over IPv4
/// the checksum stays over the message alone; over IPv6 it is recomputed over the whole
/// payload, as keepalived's kernel-computed IPV6_CHECKSUM is.
pub fn append_trailer(
    message: &mut Vec<u8>,
    trailer: &[u8],
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
) {
    message.extend_from_slice(trailer);
    if src.is_ipv6() && message.len() >= HEADER_LEN {
        message[6] = 0;
        message[7] = 0;
        let sum = checksum(version, src, dst, mode, message);
        message[6..8].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The VRID of a VRRP message without validating it, to dispatch to an instance.
pub fn peek_vrid(bytes: &[u8]) -> Option<u8> {
    bytes.get(1).copied()
}

/// Turn a configured password into v2 auth data: keepalived uses only the first 8 bytes,
/// zero-padded (keepalived vrrp_parser `auth_pass`).
pub fn password_auth_data(pass: &str) -> [u8; AUTH_LEN] {
    let mut a = [0u8; AUTH_LEN];
    let b = pass.as_bytes();
    let n = b.len().min(AUTH_LEN);
    a[..n].copy_from_slice(&b[..n]);
    a
}

/// Why an advertisement could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Source, destination and virtual addresses must all be of one family.
    #[error("source, destination and virtual addresses are not all of one address family")]
    FamilyMismatch,
    /// The count field is 8 bits.
    #[error("more than 255 virtual addresses")]
    TooManyAddresses,
    /// VRRPv2 is IPv4 only (RFC 3768).
    #[error("vrrp version 2 cannot be sent over ipv6")]
    V2OverIpv6,
    /// The interval does not fit its field (v2: 8 bits of seconds, v3: 12 bits of centiseconds).
    #[error("advertisement interval {0} does not fit the field")]
    IntervalOutOfRange(u16),
}

/// Why a received message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header, addresses and auth data say it must be.
    #[error("message truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the header calls for.
        need: usize,
    },
    /// The version field is neither 2 nor 3.
    #[error("unsupported vrrp version {0}")]
    BadVersion(u8),
    /// The type field is not 1 (advertisement).
    #[error("unknown vrrp message type {0}")]
    BadType(u8),
    /// The checksum does not verify.
    #[error("bad checksum {received:#06x}, expected {computed:#06x}")]
    BadChecksum {
        /// The checksum in the message.
        received: u16,
        /// The checksum we compute.
        computed: u16,
    },
    /// A VRRPv2 message arrived over IPv6.
    #[error("vrrp version 2 message over ipv6")]
    V2OverIpv6,
    /// The source and destination are of different families.
    #[error("source and destination are of different address families")]
    FamilyMismatch,
    /// The interval field is zero.
    #[error("advertisement interval is zero")]
    ZeroInterval,
    /// A v2 auth type other than 0 (none) or 1 (simple password).
    #[error("unsupported vrrp v2 auth type {0}")]
    UnsupportedAuthType(u8),
}

/// RFC 1071 one's-complement sum of `data`, folded, not yet inverted.
fn sum_words(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The checksum of `msg` as sent from `src` to `dst`. Over a message whose checksum field
/// is zero it gives the value to store; over a correct message it gives zero.
fn checksum(version: Version, src: IpAddr, dst: IpAddr, mode: ChecksumMode, msg: &[u8]) -> u16 {
    let mut acc = 0u32;
    match (version, src, dst) {
        // RFC 5798 §5.2.8 with the IPv6 pseudo-header of RFC 2460 §8.1: always.
        (Version::V3, IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum_words(acc, &s.octets());
            acc = sum_words(acc, &d.octets());
            let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
            acc = sum_words(acc, &len.to_be_bytes());
            acc = sum_words(acc, &[0, 0, 0, PROTOCOL]);
        }
        // keepalived default for v3 over IPv4: the IPv4 pseudo-header (src, dst, 0, proto, len).
        (Version::V3, IpAddr::V4(s), IpAddr::V4(d)) if mode == ChecksumMode::PseudoHeader => {
            acc = sum_words(acc, &s.octets());
            acc = sum_words(acc, &d.octets());
            let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
            acc = sum_words(acc, &[0, PROTOCOL]);
            acc = sum_words(acc, &len.to_be_bytes());
        }
        // RFC 3768 §5.3.8 (v2), and keepalived `v3_checksum_as_v2`: the message only.
        _ => {}
    }
    !(sum_words(acc, msg) as u16)
}

/// A raw IPv4 datagram as read from a raw socket (IP header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live as received.
    pub ttl: u8,
    /// IP protocol number.
    pub protocol: u8,
    /// The payload, bounded by the header's total length.
    pub payload: &'a [u8],
}

/// Why a raw IPv4 datagram could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// Fewer bytes than an IPv4 header or than its total length says.
    #[error("ipv4 datagram truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the header calls for.
        need: usize,
    },
    /// The version nibble is not 4.
    #[error("not an ipv4 datagram: version {0}")]
    NotIpv4(u8),
    /// Header length below 5 words.
    #[error("bad ipv4 header length {0} (in 32-bit words)")]
    BadIhl(u8),
    /// Total length smaller than the header.
    #[error("bad ipv4 total length {total} with a {header}-byte header")]
    BadTotalLength {
        /// The total length field.
        total: u16,
        /// The header length in bytes.
        header: usize,
    },
    /// A fragment: VRRP messages are never fragmented and we do not reassemble.
    #[error("ipv4 fragment")]
    Fragment,
    /// The protocol is not VRRP (112).
    #[error("ip protocol {0} is not vrrp (112)")]
    NotVrrp(u8),
}

/// Parse a raw IPv4 datagram carrying VRRP. Never panics.
pub fn parse_ipv4(bytes: &[u8]) -> Result<Ipv4Datagram<'_>, Ipv4Error> {
    if bytes.len() < 20 {
        return Err(Ipv4Error::Truncated {
            len: bytes.len(),
            need: 20,
        });
    }
    let version = bytes[0] >> 4;
    if version != 4 {
        return Err(Ipv4Error::NotIpv4(version));
    }
    let ihl = bytes[0] & 0x0f;
    if ihl < 5 {
        return Err(Ipv4Error::BadIhl(ihl));
    }
    let header = usize::from(ihl) * 4;
    if bytes.len() < header {
        return Err(Ipv4Error::Truncated {
            len: bytes.len(),
            need: header,
        });
    }
    let total = u16::from_be_bytes([bytes[2], bytes[3]]);
    if usize::from(total) < header {
        return Err(Ipv4Error::BadTotalLength { total, header });
    }
    if bytes.len() < usize::from(total) {
        return Err(Ipv4Error::Truncated {
            len: bytes.len(),
            need: usize::from(total),
        });
    }
    let frag = u16::from_be_bytes([bytes[6], bytes[7]]);
    // More-fragments flag or a non-zero offset.
    if frag & 0x3fff != 0 {
        return Err(Ipv4Error::Fragment);
    }
    let protocol = bytes[9];
    if protocol != PROTOCOL {
        return Err(Ipv4Error::NotVrrp(protocol));
    }
    let src = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
    let dst = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
    Ok(Ipv4Datagram {
        src,
        dst,
        ttl: bytes[8],
        protocol,
        payload: &bytes[header..usize::from(total)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v3_ad() -> Advertisement {
        Advertisement {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: 100,
            addresses: vec![v4(192, 0, 2, 100)],
            auth: None,
        }
    }

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const GROUP: IpAddr = IpAddr::V4(MULTICAST_V4);

    /// A VRRPv2 advert built by hand following RFC 3768 §5.1, checksum computed by hand
    /// (one's complement of the 16-bit word sum), decodes to the expected fields.
    #[test]
    fn v2_decodes_hand_built_rfc3768_message() {
        // ver 2 type 1, vrid 1, prio 100, 1 addr, auth 1, int 1, csum, 192.0.2.100, "secret\0\0"
        let mut m = vec![0x21, 1, 100, 1, 1, 1, 0, 0, 192, 0, 2, 100];
        m.extend_from_slice(b"secret\0\0");
        let words: u32 = m
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let folded = (words & 0xffff) + (words >> 16);
        let cs = !((folded & 0xffff) + (folded >> 16)) as u16;
        m[6..8].copy_from_slice(&cs.to_be_bytes());
        let ad = Advertisement::decode(SRC, GROUP, &m, ChecksumMode::PseudoHeader).unwrap();
        assert_eq!(ad.version, Version::V2);
        assert_eq!(ad.vrid, 1);
        assert_eq!(ad.priority, 100);
        assert_eq!(ad.interval, 1);
        assert_eq!(ad.addresses, vec![v4(192, 0, 2, 100)]);
        assert_eq!(ad.auth, Some(*b"secret\0\0"));
    }

    /// RFC 5798 §5.2.8 / keepalived default: the v3 IPv4 checksum covers the pseudo-header,
    /// so the same bytes fail to verify with another destination (unicast peers differ).
    #[test]
    fn v3_ipv4_checksum_includes_pseudo_header() {
        let bytes = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        assert!(Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::PseudoHeader).is_ok());
        let other = v4(192, 0, 2, 2);
        assert!(matches!(
            Advertisement::decode(SRC, other, &bytes, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadChecksum { .. })
        ));
        // A message-only receiver (keepalived v3_checksum_as_v2, Cisco) rejects it too.
        assert!(matches!(
            Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::MessageOnly),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    /// keepalived `v3_checksum_as_v2`: the checksum covers the VRRP message only, so it
    /// verifies whatever the addresses.
    #[test]
    fn v3_checksum_as_v2_covers_message_only() {
        let bytes = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::MessageOnly)
            .unwrap();
        let other = v4(198, 51, 100, 9);
        assert!(Advertisement::decode(other, GROUP, &bytes, ChecksumMode::MessageOnly).is_ok());
        assert!(matches!(
            Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    /// A captured keepalived VRRPv3 advert (issue acassen/keepalived#1490: vrid 2, prio 150,
    /// interval 100 cs, 3 addresses, src 10.0.0.3, checksum 0x082d confirmed by the
    /// maintainer) verifies with the IPv4 pseudo-header.
    #[test]
    fn v3_matches_keepalived_checksum_from_the_wild() {
        let ad = Advertisement {
            version: Version::V3,
            vrid: 2,
            priority: 150,
            interval: 100,
            addresses: vec![v4(185, 203, 112, 1), v4(10, 0, 0, 1), v4(10, 0, 8, 1)],
            auth: None,
        };
        let bytes = ad
            .encode(v4(10, 0, 0, 3), GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), 0x082d);
    }

    /// RFC 5798 §5.2.8: over IPv6 the pseudo-header is always included, even when the
    /// router is configured with v3_checksum_as_v2 (which is about IPv4 only).
    #[test]
    fn v3_ipv6_always_uses_pseudo_header() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let ad = Advertisement {
            addresses: vec!["2001:db8::100".parse().unwrap()],
            ..v3_ad()
        };
        let a = ad.encode(src, dst, ChecksumMode::MessageOnly).unwrap();
        let b = ad.encode(src, dst, ChecksumMode::PseudoHeader).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), HEADER_LEN + 16);
        let other: IpAddr = "fe80::2".parse().unwrap();
        assert!(Advertisement::decode(other, dst, &a, ChecksumMode::MessageOnly).is_err());
        assert_eq!(
            Advertisement::decode(src, dst, &a, ChecksumMode::MessageOnly).unwrap(),
            ad
        );
    }

    /// keepalived 2.4 over IPv4 checksums the message without its 28-byte auth_hmac trailer;
    /// a trailer of any other length must be covered as before.
    #[test]
    fn an_auth_hmac_trailer_may_be_outside_the_ipv4_checksum() {
        let mut bytes = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        bytes.extend_from_slice(&[0x5a; crate::auth::TRAILER_LEN]);
        assert_eq!(
            Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::PseudoHeader).unwrap(),
            v3_ad()
        );
        bytes.push(0);
        assert!(matches!(
            Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadChecksum { .. })
        ));
        assert_eq!(message_len(&bytes, false), Some(12));
        assert_eq!(message_len(&bytes[..11], false), None);
    }

    /// Over IPv6 the trailer is inside the checksum (keepalived's kernel IPV6_CHECKSUM).
    #[test]
    fn an_ipv6_trailer_is_appended_inside_the_checksum() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let ad = Advertisement {
            addresses: vec!["2001:db8::100".parse().unwrap()],
            ..v3_ad()
        };
        let mut bytes = ad.encode(src, dst, ChecksumMode::PseudoHeader).unwrap();
        append_trailer(
            &mut bytes,
            &[7; 28],
            Version::V3,
            src,
            dst,
            ChecksumMode::PseudoHeader,
        );
        assert_eq!(
            checksum(Version::V3, src, dst, ChecksumMode::PseudoHeader, &bytes),
            0
        );
        let mut v4 = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        append_trailer(
            &mut v4,
            &[7; 28],
            Version::V3,
            SRC,
            GROUP,
            ChecksumMode::PseudoHeader,
        );
        assert_eq!(
            checksum(
                Version::V3,
                SRC,
                GROUP,
                ChecksumMode::PseudoHeader,
                &v4[..12]
            ),
            0
        );
    }

    /// RFC 3768: v2 is IPv4 only, both ways.
    #[test]
    fn v2_over_ipv6_is_rejected() {
        let ad = Advertisement {
            version: Version::V2,
            interval: 1,
            ..v3_ad()
        };
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        assert_eq!(
            ad.encode(src, dst, ChecksumMode::PseudoHeader),
            Err(EncodeError::FamilyMismatch)
        );
        let bytes = [0x21, 1, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Advertisement::decode(src, dst, &bytes, ChecksumMode::PseudoHeader),
            Err(DecodeError::V2OverIpv6)
        );
    }

    /// RFC 3768 §5.3.8: the v2 checksum is over the message only; keepalived PASS auth data
    /// is the first 8 characters of the password, zero padded.
    #[test]
    fn v2_round_trips_with_password_truncated_to_eight_chars() {
        let ad = Advertisement {
            version: Version::V2,
            vrid: 7,
            priority: 150,
            interval: 1,
            addresses: vec![v4(192, 0, 2, 100), v4(192, 0, 2, 101)],
            auth: Some(password_auth_data("averylongpassword")),
        };
        assert_eq!(ad.auth, Some(*b"averylon"));
        let bytes = ad.encode(SRC, GROUP, ChecksumMode::PseudoHeader).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 8 + AUTH_LEN);
        assert_eq!(bytes[4], 1, "auth type 1 = simple password");
        // Message-only: verifies from any source/destination.
        let back =
            Advertisement::decode(v4(203, 0, 113, 1), SRC, &bytes, ChecksumMode::PseudoHeader)
                .unwrap();
        assert_eq!(back, ad);
        assert_eq!(password_auth_data("ab"), *b"ab\0\0\0\0\0\0");
    }

    #[test]
    fn v2_without_auth_has_zero_auth_type_and_data() {
        let ad = Advertisement {
            version: Version::V2,
            interval: 3,
            ..v3_ad()
        };
        let bytes = ad.encode(SRC, GROUP, ChecksumMode::PseudoHeader).unwrap();
        assert_eq!(bytes[4], 0);
        assert_eq!(&bytes[bytes.len() - AUTH_LEN..], &[0; AUTH_LEN]);
        assert_eq!(
            Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::PseudoHeader)
                .unwrap()
                .auth,
            None
        );
    }

    #[test]
    fn decode_reports_truncation_bad_version_and_type() {
        let bytes = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    Advertisement::decode(SRC, GROUP, &bytes[..n], ChecksumMode::PseudoHeader),
                    Err(DecodeError::Truncated { .. })
                ),
                "prefix of {n} bytes"
            );
        }
        let mut b = bytes.clone();
        b[0] = 0x41;
        assert_eq!(
            Advertisement::decode(SRC, GROUP, &b, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadVersion(4))
        );
        let mut b = bytes.clone();
        b[0] = 0x32;
        assert_eq!(
            Advertisement::decode(SRC, GROUP, &b, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadType(2))
        );
        let mut b = bytes;
        b[2] ^= 1;
        assert!(matches!(
            Advertisement::decode(SRC, GROUP, &b, ChecksumMode::PseudoHeader),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    /// RFC 5798 §5.2.5: the 4 reserved bits before Max Adver Int are ignored on receipt.
    #[test]
    fn v3_reserved_bits_are_ignored() {
        let mut bytes = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::MessageOnly)
            .unwrap();
        bytes[4] |= 0xf0;
        bytes[6] = 0;
        bytes[7] = 0;
        let cs = checksum(Version::V3, SRC, GROUP, ChecksumMode::MessageOnly, &bytes);
        bytes[6..8].copy_from_slice(&cs.to_be_bytes());
        let ad = Advertisement::decode(SRC, GROUP, &bytes, ChecksumMode::MessageOnly).unwrap();
        assert_eq!(ad.interval, 100);
    }

    #[test]
    fn encode_rejects_out_of_range_intervals() {
        let ad = Advertisement {
            interval: 4096,
            ..v3_ad()
        };
        assert_eq!(
            ad.encode(SRC, GROUP, ChecksumMode::PseudoHeader),
            Err(EncodeError::IntervalOutOfRange(4096))
        );
        let ad = Advertisement {
            version: Version::V2,
            interval: 256,
            ..v3_ad()
        };
        assert_eq!(
            ad.encode(SRC, GROUP, ChecksumMode::PseudoHeader),
            Err(EncodeError::IntervalOutOfRange(256))
        );
    }

    fn ip_header(total: u16, proto: u8, ttl: u8) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[192, 0, 2, 1, 224, 0, 0, 18]);
        h
    }

    #[test]
    fn parse_ipv4_extracts_addresses_ttl_and_payload() {
        let payload = v3_ad()
            .encode(SRC, GROUP, ChecksumMode::PseudoHeader)
            .unwrap();
        let mut d = ip_header(20 + payload.len() as u16, PROTOCOL, 255);
        d.extend_from_slice(&payload);
        d.extend_from_slice(&[0xee; 4]); // link-layer padding beyond total length
        let p = parse_ipv4(&d).unwrap();
        assert_eq!(p.src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst, MULTICAST_V4);
        assert_eq!(p.ttl, 255);
        assert_eq!(p.payload, &payload[..]);
    }

    #[test]
    fn parse_ipv4_reports_each_malformation() {
        assert!(matches!(
            parse_ipv4(&[0x45; 10]),
            Err(Ipv4Error::Truncated { len: 10, need: 20 })
        ));
        let mut d = ip_header(40, PROTOCOL, 255);
        d[0] = 0x65;
        assert_eq!(parse_ipv4(&d), Err(Ipv4Error::NotIpv4(6)));
        d[0] = 0x44;
        assert_eq!(parse_ipv4(&d), Err(Ipv4Error::BadIhl(4)));
        d[0] = 0x46;
        assert!(matches!(
            parse_ipv4(&d),
            Err(Ipv4Error::Truncated { need: 24, .. })
        ));
        let d = ip_header(10, PROTOCOL, 255);
        assert!(matches!(
            parse_ipv4(&d),
            Err(Ipv4Error::BadTotalLength { total: 10, .. })
        ));
        let d = ip_header(40, PROTOCOL, 255);
        assert!(matches!(
            parse_ipv4(&d),
            Err(Ipv4Error::Truncated { need: 40, .. })
        ));
        let d = ip_header(20, 6, 255);
        assert_eq!(parse_ipv4(&d), Err(Ipv4Error::NotVrrp(6)));
        let mut d = ip_header(20, PROTOCOL, 255);
        d[6] = 0x20; // more fragments
        assert_eq!(parse_ipv4(&d), Err(Ipv4Error::Fragment));
    }
}
