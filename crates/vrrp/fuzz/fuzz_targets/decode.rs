//! Fuzz the VRRP decoders: arbitrary bytes, under each address family and checksum mode,
//! must never panic, and whatever decodes must re-encode to a message that decodes equal.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use vrrp::{Advertisement, ChecksumMode, parse_ipv4};

fuzz_target!(|data: &[u8]| {
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
        let again = ad.encode(src, dst, mode).expect("a decoded advert re-encodes");
        let back = Advertisement::decode(src, dst, &again, mode).expect("re-encoded decodes");
        assert_eq!(back, ad);
    }
    if let Ok(d) = parse_ipv4(bytes) {
        let _ = Advertisement::decode(IpAddr::V4(d.src), IpAddr::V4(d.dst), d.payload, mode);
    }
});
