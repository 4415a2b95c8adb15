//! Fuzz the HTTP check's answer reader; the property is in `../check.rs`.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::http_answer(data));
