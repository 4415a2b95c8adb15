//! The `decode` fuzz target's kept corpus (`fuzz/corpus/decode`, seeded with the adverts
//! captured from keepalived 2.4 and minimised by `scripts/fuzz cmin`) replayed on stable: no
//! input panics the decoders, every decoded advert re-encodes to itself, and no forged
//! auth_hmac trailer verifies (`fuzz/check.rs`).

use std::path::Path;

#[path = "../fuzz/check.rs"]
mod check;

#[test]
fn every_kept_input_decodes_or_is_refused_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    testkit::replay(&testkit::corpus(&dir, 5), check::decode);
}

#[test]
fn the_corpus_holds_adverts_that_decode() {
    // Garbage alone would never reach the re-encode or the trailer: the seeds are real
    // adverts (re-checksummed for the target's fixed addresses), of both families.
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let v4 = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
    );
    let v6 = (
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
    );
    let (mut ipv4, mut ipv6) = (0, 0);
    for e in std::fs::read_dir(&dir).unwrap() {
        let d = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&sel, msg)) = d.split_first() else {
            continue;
        };
        let ((src, dst), n) = if sel & 1 == 0 {
            (v4, &mut ipv4)
        } else {
            (v6, &mut ipv6)
        };
        if sel & 2 == 0
            && vrrp::Advertisement::decode(src, dst, msg, vrrp::ChecksumMode::PseudoHeader).is_ok()
        {
            *n += 1;
        }
    }
    assert!(
        ipv4 >= 1 && ipv6 >= 1,
        "{ipv4} IPv4 and {ipv6} IPv6 adverts decode"
    );
}
