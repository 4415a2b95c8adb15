//! Fuzz `haplane status`'s reader of other nodes' answers; the property is in `../check.rs`.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::status_answer(data));
