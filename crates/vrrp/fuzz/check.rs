//! The property the `decode` fuzz target checks, shared with `tests/fuzz_corpus.rs` (which
//! replays the kept corpus under `cargo test`): arbitrary bytes, under each address family
//! and checksum mode, never panic the decoders, and whatever decodes re-encodes to a message
//! that decodes equal. The auth_hmac trailer reader and verifier run on whatever follows the
//! message, and a forged trailer never verifies.
//!
//! Input: the first byte picks the family (bit 0: IPv6), the checksum mode (bit 1: message
//! only, the v3_checksum_as_v2 quirk) and the anti-replay mode (bit 2: monotonic); the rest is
//! the VRRP message (with any trailer), or a whole IPv4 packet for `parse_ipv4`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vrrp::auth::{AuthHmacConfig, HmacAuth, HmacKey};
use vrrp::packet::message_len;
use vrrp::{Advertisement, AntiReplay, ChecksumMode, Version, parse_ipv4};

/// Panics when `data` breaks the property.
pub fn decode(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (src, dst) = if selector & 1 == 0 {
        (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
        )
    };
    let mode = if selector & 2 == 0 {
        ChecksumMode::PseudoHeader
    } else {
        ChecksumMode::MessageOnly
    };
    if let Ok(ad) = Advertisement::decode(src, dst, bytes, mode) {
        let again = ad
            .encode(src, dst, mode)
            .expect("a decoded advert re-encodes");
        let back = Advertisement::decode(src, dst, &again, mode).expect("re-encoded decodes");
        assert_eq!(back, ad);
    }
    if let Some(len) = message_len(bytes, src.is_ipv6()) {
        let (message, rest) = bytes.split_at(len);
        let mut cfg =
            AuthHmacConfig::new(vec![HmacKey::new(1, [7u8; 32])], 1, Duration::from_secs(1));
        if selector & 4 != 0 {
            cfg.anti_replay = AntiReplay::Monotonic;
        }
        let mut auth = HmacAuth::new(cfg);
        let now = Duration::from_secs(1_800_000_000);
        let trailer = (!rest.is_empty()).then_some(rest);
        // A forged trailer must never verify.
        assert!(
            auth.verify(now, Version::V3, 51, src, message, trailer)
                .is_err()
        );
    }
    if let Ok(d) = parse_ipv4(bytes) {
        let _ = Advertisement::decode(IpAddr::V4(d.src), IpAddr::V4(d.dst), d.payload, mode);
    }
}
