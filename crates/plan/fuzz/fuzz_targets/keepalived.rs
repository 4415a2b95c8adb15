//! Fuzz the keepalived importer from bytes; the property is in `../check.rs`.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::keepalived(data));
