//! Stamps the git revision into `haplane --version`.
//!
//! Sources, in order: `HAPLANE_GIT_REVISION` (for packagers building from a tarball that knows
//! its commit), then `git rev-parse HEAD` in the source tree. Without either the version says
//! the revision is unknown rather than guessing. No "-dirty" marker: cargo reruns this script
//! only when HEAD moves, so a marker for uncommitted edits would go stale and lie.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=HAPLANE_GIT_REVISION");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let revision = match std::env::var("HAPLANE_GIT_REVISION") {
        Ok(r) if !r.trim().is_empty() => Some(r.trim().to_string()),
        _ => from_git(&manifest_dir),
    };
    let text = match revision {
        Some(r) => format!("git {r}"),
        None => "git revision unknown: built outside a git checkout".to_string(),
    };
    println!("cargo:rustc-env=HAPLANE_GIT_REVISION_TEXT={text}");
}

/// The short commit of HEAD, and rerun triggers for whatever moves it.
fn from_git(dir: &Path) -> Option<String> {
    // A tarball unpacked inside some other repository (a home directory under git) must not
    // report that repository's commit: this crate has to be tracked by it.
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    let git_dir = PathBuf::from(git(dir, &["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|d| {
            let p = PathBuf::from(d);
            if p.is_absolute() { p } else { dir.join(p) }
        })
        .unwrap_or_else(|| git_dir.clone());
    // HEAD (a checkout or a new commit on a detached HEAD), the branch it names (a commit),
    // and packed-refs (gc moves refs there).
    // A path that does not exist would rerun this script (and rebuild the binary) every time.
    let mut watch = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common_dir.join(branch));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(dir, &["rev-parse", "--short=12", "HEAD"])
}
