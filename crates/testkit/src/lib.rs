//! Helpers the workspace's test suites share (issue 13: one set of test helpers instead of
//! a copy per crate). Polling helpers return how long the condition took, so a test can
//! print it; they never assert themselves.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the polling helpers look.
pub const POLL: Duration = Duration::from_millis(10);

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; another process
/// may take it before the caller binds, which on a test machine is rare enough).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `cond` every [`POLL`] until it holds (how long that took) or `limit` passes (None).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for async tests: sleeps on the tokio timer between looks.
pub async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The files of a kept fuzz corpus (`dir`, e.g. `fuzz/corpus/decode` under a crate), sorted;
/// panics naming the directory when it cannot be read or holds fewer than `at_least` files
/// (a nearly empty corpus would make its replay test pass for nothing).
pub fn corpus(dir: &Path, at_least: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= at_least,
        "the corpus {} is nearly empty: {} files, at least {at_least} expected",
        dir.display(),
        files.len()
    );
    files
}

/// Replays a fuzz target's property on every file of `files` on stable Rust; panics listing
/// every input that made `check` panic.
pub fn replay(files: &[PathBuf], check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "inputs that panic:\n{}",
        failed.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_says_how_long_or_gives_up_at_the_limit() {
        let mut n = 0;
        assert!(
            wait_until(Duration::from_secs(5), || {
                n += 1;
                n == 3
            })
            .is_some()
        );
        assert_eq!(n, 3);
        assert_eq!(wait_until(Duration::from_millis(30), || false), None);
        assert_ne!(free_port(), 0);
    }
}
