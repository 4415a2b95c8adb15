//! Fuzz the VRRP decoders and the auth_hmac trailer; the property is in `../check.rs`.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::decode(data));
