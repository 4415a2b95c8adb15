//! The property the `http_answer` fuzz target checks, shared with `tests/fuzz_corpus.rs` (which
//! replays the kept corpus under `cargo test`): whatever a backend answers to the HTTP check,
//! the verdict is a status from a real RFC 9112 §4 status line or "no status line", never a
//! panic; and a real status line is read whatever reason phrase (any octet but CR and LF) and
//! whatever follows it.
//!
//! Input: two bytes pick the expected range's bounds (as `expectStatus` would), the rest is the
//! answer. The answer is judged as it is, and again behind a status line built from its own
//! first bytes.

use lb::{HttpAnswer, judge_http_answer};

/// The status an answer's first line carries if it is `HTTP/1.<digit> <3 digits>` followed by
/// SP, CR, LF or the end: the rule, written out independently of the parser.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < 12 || !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return None;
    }
    let digits = &line[9..12];
    if !line[7].is_ascii_digit() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if line.len() > 12 && line[12] != b' ' {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Panics when `data` breaks the property.
pub fn http_answer(data: &[u8]) {
    let [lo, hi, answer @ ..] = data else {
        return;
    };
    let lo = 100 + u16::from(*lo) * 2;
    let expect = lo..=lo.max(100 + u16::from(*hi) * 2);
    let verdict = judge_http_answer(answer, &expect);
    let want = match status_of(answer) {
        Some(code) if expect.contains(&code) => HttpAnswer::Ready(code),
        Some(code) => HttpAnswer::NotReady(code),
        None => HttpAnswer::NoStatusLine,
    };
    assert_eq!(
        verdict,
        want,
        "answer {:?}",
        String::from_utf8_lossy(answer)
    );

    // A status line built from the input: code from its first three bytes, the rest (CR and LF
    // removed) as the reason phrase, then the input again as headers and body.
    let code = 100
        + answer
            .iter()
            .take(3)
            .fold(0u16, |n, &b| (n * 7 + u16::from(b)) % 900);
    let mut line = format!("HTTP/1.1 {code} ").into_bytes();
    line.extend(answer.iter().filter(|&&b| b != b'\r' && b != b'\n'));
    line.extend_from_slice(b"\r\n");
    line.extend_from_slice(answer);
    let verdict = judge_http_answer(&line, &expect);
    let want = if expect.contains(&code) {
        HttpAnswer::Ready(code)
    } else {
        HttpAnswer::NotReady(code)
    };
    assert_eq!(verdict, want, "a real status line {code} misread");
}
