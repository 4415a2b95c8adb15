//! Property tests of the codec: the decoder never panics, and what we encode round-trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrrp::packet::{MULTICAST_V4, MULTICAST_V6, parse_ipv4};
use vrrp::{Advertisement, ChecksumMode, Version};

fn any_v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn any_v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
}

fn any_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any_v4(), any_v6()]
}

fn any_mode() -> impl Strategy<Value = ChecksumMode> {
    prop_oneof![
        Just(ChecksumMode::PseudoHeader),
        Just(ChecksumMode::MessageOnly)
    ]
}

/// A valid advertisement with its source address.
fn valid_advert() -> impl Strategy<Value = (Advertisement, IpAddr, IpAddr)> {
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        1u16..=255,
        prop::collection::vec(any_v4(), 0..20),
        prop::option::of(any::<[u8; 8]>()),
        any_v4(),
    )
        .prop_map(|(vrid, priority, interval, addresses, auth, src)| {
            let ad = Advertisement {
                version: Version::V2,
                vrid,
                priority,
                interval,
                addresses,
                auth,
            };
            (ad, src, IpAddr::V4(MULTICAST_V4))
        });
    let v3 = (
        any::<u8>(),
        any::<u8>(),
        1u16..=4095,
        any::<bool>(),
        prop::collection::vec(any::<[u8; 16]>(), 0..20),
        any::<[u8; 16]>(),
        any::<bool>(),
    )
        .prop_map(|(vrid, priority, interval, v6, raw, src, unicast)| {
            let (addresses, src, dst): (Vec<IpAddr>, IpAddr, IpAddr) = if v6 {
                let src = IpAddr::V6(Ipv6Addr::from(src));
                let dst = if unicast {
                    IpAddr::V6(Ipv6Addr::from([7; 16]))
                } else {
                    IpAddr::V6(MULTICAST_V6)
                };
                (
                    raw.into_iter().map(|o| IpAddr::V6(o.into())).collect(),
                    src,
                    dst,
                )
            } else {
                let four = |o: [u8; 16]| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]));
                let dst = if unicast {
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
                } else {
                    IpAddr::V4(MULTICAST_V4)
                };
                (raw.into_iter().map(four).collect(), four(src), dst)
            };
            let ad = Advertisement {
                version: Version::V3,
                vrid,
                priority,
                interval,
                addresses,
                auth: None,
            };
            (ad, src, dst)
        });
    prop_oneof![v2, v3]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The decoder is fed whatever arrives on a raw socket: it must never panic.
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        src in any_addr(),
        dst in any_addr(),
        mode in any_mode(),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = Advertisement::decode(src, dst, &bytes, mode);
    }

    /// Arbitrary bytes that look like the start of a VRRP header (version 2/3, type 1) get
    /// deeper into the decoder than fully random ones.
    #[test]
    fn decode_never_panics_on_plausible_headers(
        src in any_addr(),
        dst in any_addr(),
        mode in any_mode(),
        first in prop_oneof![Just(0x21u8), Just(0x31u8)],
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        let _ = Advertisement::decode(src, dst, &bytes, mode);
    }

    /// The raw IPv4 parser never panics either.
    #[test]
    fn parse_ipv4_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(d) = parse_ipv4(&bytes) {
            prop_assert!(d.payload.len() <= bytes.len());
        }
    }

    /// encode → decode gives back the advertisement, for v2 and v3, IPv4 and IPv6,
    /// multicast and unicast destinations, both checksum modes.
    #[test]
    fn encode_decode_round_trips((ad, src, dst) in valid_advert(), mode in any_mode()) {
        let bytes = ad.encode(src, dst, mode).unwrap();
        prop_assert_eq!(Advertisement::decode(src, dst, &bytes, mode).unwrap(), ad);
    }

    /// The 16-bit one's-complement checksum (RFC 1071) catches every single-bit error: no
    /// flipped bit yields a different advertisement that decodes.
    #[test]
    fn any_single_bit_flip_is_rejected(
        (ad, src, dst) in valid_advert(),
        mode in any_mode(),
        bit in any::<prop::sample::Index>(),
    ) {
        let mut bytes = ad.encode(src, dst, mode).unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let decoded = Advertisement::decode(src, dst, &bytes, mode);
        // A flip in the v3 reserved bits is covered by the checksum too.
        prop_assert!(decoded.is_err(), "bit {} accepted: {:?}", bit, decoded);
    }
}
