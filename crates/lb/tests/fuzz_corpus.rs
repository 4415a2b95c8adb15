//! The `http_answer` fuzz target's kept corpus (`fuzz/corpus/http_answer`, minimised by
//! `scripts/fuzz cmin`) replayed on stable: whatever a backend answers to the HTTP check, the
//! verdict is the status of a real RFC 9112 §4 status line or "no status line", never a panic
//! (`fuzz/check.rs`).

use std::path::{Path, PathBuf};

use lb::{HttpAnswer, judge_http_answer};

#[path = "../fuzz/check.rs"]
mod check;

/// Every file of `fuzz/<kind>/http_answer`, sorted (none when the directory does not exist).
fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join("http_answer");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_kept_answer_gets_a_verdict_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = testkit::corpus(&fuzz.join("corpus/http_answer"), 20);
    files.extend(inputs("regressions"));
    testkit::replay(&files, check::http_answer);
}

#[test]
fn a_reason_phrase_in_latin_1_is_still_a_status_line() {
    // RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ). The reader took the line
    // as UTF-8 and called a backend answering `200 Grüß Gott` in ISO-8859-1 dead.
    assert_eq!(
        judge_http_answer(b"HTTP/1.1 200 Gr\xfc\xdf Gott\r\n\r\n", &(200..=299)),
        HttpAnswer::Ready(200)
    );
}

#[test]
fn a_signed_or_short_status_code_is_no_status_line() {
    // status-code = 3DIGIT: `+20` parsed as 20 before.
    for answer in [
        &b"HTTP/1.1 +20 OK\r\n"[..],
        b"HTTP/1.1 20 OK\r\n",
        b"HTTP/1.x 200 OK\r\n",
    ] {
        assert_eq!(
            judge_http_answer(answer, &(0..=999)),
            HttpAnswer::NoStatusLine,
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    assert_eq!(
        judge_http_answer(b"HTTP/1.0 503 Service Unavailable\r\n", &(200..=299)),
        HttpAnswer::NotReady(503)
    );
}
