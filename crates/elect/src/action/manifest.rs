//! The `manifest` action (podmaster's job): keep target == source while leader.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::{ElectError, Role};

/// How often the leader re-checks the source for edits.
const RESYNC: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    election: String,
    source: PathBuf,
    target: PathBuf,
    mut role: watch::Receiver<Role>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut last_err: Option<String> = None;
    loop {
        let until = role.borrow_and_update().leading_until();
        let (s, t) = (source.clone(), target.clone());
        let res = match until {
            Some(d) => tokio::task::spawn_blocking(move || sync_file(&s, &t, Some(d))).await,
            None => tokio::task::spawn_blocking(move || remove_file_durably(&t)).await,
        };
        match res {
            Ok(Ok(true)) => {
                info!(%election, target = %target.display(), leader = until.is_some(), "manifest updated");
                last_err = None;
            }
            Ok(Ok(false)) => last_err = None,
            Ok(Err(e)) => {
                let m = e.to_string();
                if last_err.as_deref() != Some(&m) {
                    warn!(%election, error = %m, "manifest sync failed");
                }
                last_err = Some(m);
            }
            Err(e) => warn!(%election, error = %e, "manifest task failed"),
        }
        tokio::select! {
            biased;
            _ = &mut stop => break,
            r = role.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now).into()), if until.is_some() => {}
            _ = tokio::time::sleep(RESYNC), if until.is_some() => {}
        }
    }
    let t = target.clone();
    match tokio::task::spawn_blocking(move || remove_file_durably(&t)).await {
        Ok(Ok(true)) => info!(%election, target = %target.display(), "manifest removed"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => warn!(%election, error = %e, "manifest removal failed"),
        Err(e) => warn!(%election, error = %e, "manifest task failed"),
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Makes `target` identical to `source` (compared by SHA-256), writing a hidden temp file
/// in the target's directory, fsyncing it, renaming it over the target and fsyncing the
/// directory, so readers (kubelet) see the old or the new file, never a partial one.
/// Gives up without renaming if `until` has passed. Returns whether the target changed.
pub fn sync_file(source: &Path, target: &Path, until: Option<Instant>) -> Result<bool, ElectError> {
    let want = std::fs::read(source).map_err(|e| ElectError::io("read", source, e))?;
    match std::fs::read(target) {
        Ok(have) if digest(&have) == digest(&want) => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ElectError::io("read", target, e)),
    }
    let dir = parent_dir(target);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // kubelet ignores dot files in its manifest directory, so the temp file is never run.
    let tmp = dir.join(format!(".{name}.haplane-tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&want)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ElectError::io("write", &tmp, e));
    }
    if until.is_some_and(|d| Instant::now() >= d) {
        let _ = std::fs::remove_file(&tmp);
        return Ok(false);
    }
    std::fs::rename(&tmp, target).map_err(|e| ElectError::io("rename", target, e))?;
    fsync_dir(&dir)?;
    Ok(true)
}

/// Removes `target` if present and fsyncs its directory. Returns whether it existed.
pub fn remove_file_durably(target: &Path) -> Result<bool, ElectError> {
    match std::fs::remove_file(target) {
        Ok(()) => {
            fsync_dir(&parent_dir(target))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ElectError::io("remove", target, e)),
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), ElectError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ElectError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_copies_source_and_reports_no_change_when_identical() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src.yaml"), d.path().join("dst.yaml"));
        std::fs::write(&s, "a: 1\n").unwrap();
        assert!(sync_file(&s, &t, None).unwrap());
        assert_eq!(std::fs::read(&t).unwrap(), b"a: 1\n");
        assert!(!sync_file(&s, &t, None).unwrap());
        std::fs::write(&s, "a: 2\n").unwrap();
        assert!(sync_file(&s, &t, None).unwrap());
        assert_eq!(std::fs::read(&t).unwrap(), b"a: 2\n");
        // No temp file is left behind for kubelet to see.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn sync_does_not_install_after_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src.yaml"), d.path().join("dst.yaml"));
        std::fs::write(&s, "a: 1\n").unwrap();
        let past = Instant::now();
        assert!(!sync_file(&s, &t, Some(past)).unwrap());
        assert!(!t.exists());
    }

    #[test]
    fn sync_with_missing_source_is_an_error_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let err = sync_file(&d.path().join("nope"), &d.path().join("t"), None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn remove_reports_whether_the_file_existed() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        assert!(!remove_file_durably(&t).unwrap());
        std::fs::write(&t, "x").unwrap();
        assert!(remove_file_durably(&t).unwrap());
        assert!(!t.exists());
    }
}
