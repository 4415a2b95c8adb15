//! What the lab's root tests share: the haplane binary they start, one lab at a time, and a
//! guard that removes a lab even when an assertion fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use lab::up;

/// The haplane binary: $HAPLANE_EXE, else target/debug/haplane next to this test (a
/// workspace build puts it there).
pub fn haplane_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("HAPLANE_EXE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe path");
    let debug = exe.parent().and_then(|d| d.parent()).expect("target/debug");
    let bin = debug.join("haplane");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p haplane) or set HAPLANE_EXE",
        bin.display()
    );
    bin
}

/// One lab at a time: on 2 cores, two labs side by side would blur each other's numbers.
pub fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the lab even when an assertion fails.
pub struct Down(pub String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = up::down(&self.0);
    }
}
