//! etcd snapshots through the maintenance API, verified and written atomically, and a
//! scheduler that takes them only while it leads the `haplane-snapshots` election.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::Client;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::action::fsync_dir;
use crate::{ElectError, Election, ElectionConfig, ElectionStatus, Role, SnapshotSchedule};

/// bbolt's meta page magic, stored little-endian right after the 16-byte page header.
const BOLT_MAGIC: u32 = 0xED0C_DAED;
/// etcd appends the SHA-256 of the database to the snapshot stream.
const HASH_LEN: u64 = 32;
/// A stream that delivers nothing for this long is considered dead.
const STALL: Duration = Duration::from_secs(30);
/// Name of the snapshot election.
pub const SNAPSHOT_ELECTION: &str = "haplane-snapshots";
const PREFIX: &str = "etcd-snapshot-";
const SUFFIX: &str = ".db";

/// What a finished snapshot looks like.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Final path of the snapshot.
    pub path: PathBuf,
    /// Size in bytes, including the trailing hash.
    pub size: u64,
    /// Hex SHA-256 of the database (the hash etcd appended, verified by us).
    pub sha256: String,
    /// etcd revision reported when the snapshot started, if the server sent one.
    pub revision: Option<i64>,
}

/// Streams a snapshot to a temp file next to `out`, fsyncs it, verifies it (bolt magic and
/// etcd's appended SHA-256), then renames it to `out` and fsyncs the directory.
pub async fn snapshot(client: &Client, out: &Path) -> Result<SnapshotInfo, ElectError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| {
            ElectError::InvalidConfig(format!("snapshot path {} has no file name", out.display()))
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.part"));
    let res = stream_to(client, &tmp).await;
    let revision = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let t = tmp.clone();
    let verified = tokio::task::spawn_blocking(move || verify_snapshot(&t))
        .await
        .map_err(|e| ElectError::io("verify", &tmp, std::io::Error::other(e)))?;
    let (size, hash) = match verified {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&tmp, out)
        .await
        .map_err(|e| ElectError::io("rename", out, e))?;
    fsync_dir(&dir)?;
    let info = SnapshotInfo {
        path: out.to_path_buf(),
        size,
        sha256: hex(&hash),
        revision,
    };
    info!(path = %out.display(), size, sha256 = %info.sha256, "etcd snapshot written");
    Ok(info)
}

async fn stream_to(client: &Client, tmp: &Path) -> Result<Option<i64>, ElectError> {
    // A snapshot streams from one member: the preferred (healthy) one.
    let (_, member) = client.preferred_member();
    let mut mc = member.maintenance_client();
    let mut stream = match tokio::time::timeout(STALL, mc.snapshot()).await {
        Err(_) => {
            return Err(ElectError::Timeout {
                op: "snapshot",
                timeout: STALL,
            });
        }
        Ok(Err(e)) => return Err(ElectError::etcd("snapshot", e)),
        Ok(Ok(s)) => s,
    };
    let mut f = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| ElectError::io("create", tmp, e))?;
    let mut revision = None;
    loop {
        let msg = match tokio::time::timeout(STALL, stream.message()).await {
            Err(_) => {
                return Err(ElectError::Timeout {
                    op: "snapshot stream",
                    timeout: STALL,
                });
            }
            Ok(Err(e)) => return Err(ElectError::etcd("snapshot stream", e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(m))) => m,
        };
        if revision.is_none() {
            revision = msg.header().map(|h| h.revision()).filter(|r| *r > 0);
        }
        f.write_all(msg.blob())
            .await
            .map_err(|e| ElectError::io("write", tmp, e))?;
    }
    f.flush()
        .await
        .map_err(|e| ElectError::io("write", tmp, e))?;
    f.sync_all()
        .await
        .map_err(|e| ElectError::io("fsync", tmp, e))?;
    Ok(revision)
}

/// Checks a snapshot file: bolt meta magic at offset 16 and etcd's trailing SHA-256 over
/// everything before it. Returns the size and the hash.
pub fn verify_snapshot(path: &Path) -> Result<(u64, [u8; 32]), ElectError> {
    let invalid = |reason: String| ElectError::InvalidSnapshot {
        path: path.to_path_buf(),
        reason,
    };
    let io = |e| ElectError::io("read", path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if size < 20 + HASH_LEN {
        return Err(invalid(format!("only {size} bytes")));
    }
    let mut head = [0u8; 20];
    f.read_exact(&mut head).map_err(io)?;
    let magic = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
    if magic != BOLT_MAGIC {
        return Err(invalid(format!(
            "bolt magic {magic:#010x}, expected {BOLT_MAGIC:#010x}"
        )));
    }
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut h = Sha256::new();
    let mut body = (&mut f).take(size - HASH_LEN);
    std::io::copy(&mut body, &mut h).map_err(io)?;
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(io)?;
    let got: [u8; 32] = h.finalize().into();
    if got != trailer {
        return Err(invalid(format!(
            "sha256 mismatch: computed {}, trailer {}",
            hex(&got),
            hex(&trailer)
        )));
    }
    Ok((size, trailer))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `etcd-snapshot-YYYYMMDDTHHMMSSZ.db` for a UTC time; names sort by time.
pub fn snapshot_file_name(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{PREFIX}{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z{SUFFIX}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Snapshot files in `dir`, oldest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<PathBuf>, ElectError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ElectError::io("list", dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Deletes all but the newest `keep` snapshot files. Returns the deleted paths.
pub fn prune_snapshots(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, ElectError> {
    let all = list_snapshots(dir)?;
    let n = all.len().saturating_sub(keep.max(1));
    let mut gone = Vec::new();
    for p in all.into_iter().take(n) {
        std::fs::remove_file(&p).map_err(|e| ElectError::io("remove", &p, e))?;
        gone.push(p);
    }
    Ok(gone)
}

/// Takes scheduled snapshots while leading the `haplane-snapshots` election.
/// Dropping it stops the loop and abandons the election (its lease then expires).
pub struct SnapshotScheduler {
    election: Election,
    stop: oneshot::Sender<()>,
    task: TaskGuard,
}

struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SnapshotScheduler {
    /// Starts the snapshot election (`cfg.name` is replaced by `haplane-snapshots`, the action
    /// is ignored) and the scheduler loop.
    pub fn spawn(
        client: Client,
        schedule: SnapshotSchedule,
        mut cfg: ElectionConfig,
    ) -> Result<SnapshotScheduler, ElectError> {
        if schedule.interval.is_zero() || schedule.keep == 0 {
            return Err(ElectError::InvalidConfig(
                "snapshots: interval and keep must be positive".into(),
            ));
        }
        std::fs::create_dir_all(&schedule.dir)
            .map_err(|e| ElectError::io("create directory", &schedule.dir, e))?;
        cfg.name = SNAPSHOT_ELECTION.to_string();
        cfg.action = None;
        let election = Election::spawn(client.clone(), cfg)?;
        let (stop, rx) = oneshot::channel();
        let task = TaskGuard(tokio::spawn(schedule_loop(
            client,
            schedule,
            election.role(),
            rx,
        )));
        Ok(SnapshotScheduler {
            election,
            stop,
            task,
        })
    }

    /// Status of the snapshot election.
    pub fn status(&self) -> ElectionStatus {
        self.election.status()
    }

    /// Stops taking snapshots (an upload in progress finishes first) and resigns.
    pub async fn shutdown(self) {
        let SnapshotScheduler {
            election,
            stop,
            mut task,
        } = self;
        let _ = stop.send(());
        let _ = (&mut task.0).await;
        election.resign().await;
    }
}

async fn schedule_loop(
    client: Client,
    s: SnapshotSchedule,
    mut role: tokio::sync::watch::Receiver<Role>,
    mut stop: oneshot::Receiver<()>,
) {
    let retry = s.interval.min(Duration::from_secs(10));
    let mut last_failure: Option<Instant> = None;
    loop {
        let leading = role.borrow_and_update().is_leader();
        let newest = list_snapshots(&s.dir)
            .ok()
            .and_then(|v| v.last().cloned())
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        let due = newest.is_none_or(|t| t.elapsed().map(|e| e >= s.interval).unwrap_or(true));
        let backing_off = last_failure.is_some_and(|t| t.elapsed() < retry);
        if leading && due && !backing_off {
            let out = s.dir.join(snapshot_file_name(SystemTime::now()));
            match snapshot(&client, &out).await {
                Ok(_) => {
                    last_failure = None;
                    match prune_snapshots(&s.dir, s.keep) {
                        Ok(gone) if !gone.is_empty() => {
                            info!(removed = gone.len(), "old snapshots pruned")
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "pruning snapshots failed"),
                    }
                }
                Err(e) => {
                    warn!(error = %e, "scheduled snapshot failed");
                    last_failure = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut stop => return,
            r = role.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(s.interval.min(Duration::from_secs(1))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_utc_and_sort_by_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!(snapshot_file_name(t), "etcd-snapshot-20240229T123456Z.db");
        assert_eq!(
            snapshot_file_name(SystemTime::UNIX_EPOCH),
            "etcd-snapshot-19700101T000000Z.db"
        );
        let later = snapshot_file_name(t + Duration::from_secs(86_400 * 400));
        assert!(later > snapshot_file_name(t));
    }

    #[test]
    fn prune_keeps_the_newest_and_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i * 3600);
            std::fs::write(d.path().join(snapshot_file_name(t)), "x").unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), "keep me").unwrap();
        let gone = prune_snapshots(d.path(), 2).unwrap();
        assert_eq!(gone.len(), 3);
        let left = list_snapshots(d.path()).unwrap();
        assert_eq!(left.len(), 2);
        assert!(left[0].to_string_lossy().ends_with("20231114T232000Z.db") || left[0].exists());
        assert!(d.path().join("notes.txt").exists());
    }

    fn fake_snapshot(db: &[u8]) -> Vec<u8> {
        let mut v = db.to_vec();
        v.extend_from_slice(&Sha256::digest(db));
        v
    }

    fn fake_db() -> Vec<u8> {
        let mut db = vec![0u8; 4096];
        db[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
        db
    }

    #[test]
    fn verify_accepts_bolt_magic_and_matching_trailer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        std::fs::write(&p, fake_snapshot(&fake_db())).unwrap();
        let (size, _) = verify_snapshot(&p).unwrap();
        assert_eq!(size, 4096 + 32);
    }

    #[test]
    fn verify_rejects_a_flipped_byte() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let mut s = fake_snapshot(&fake_db());
        s[100] ^= 1;
        std::fs::write(&p, s).unwrap();
        let e = verify_snapshot(&p).unwrap_err().to_string();
        assert!(e.contains("sha256 mismatch"), "{e}");
    }

    #[test]
    fn verify_rejects_non_bolt_and_truncated_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        std::fs::write(&p, fake_snapshot(&[7u8; 4096])).unwrap();
        assert!(
            verify_snapshot(&p)
                .unwrap_err()
                .to_string()
                .contains("bolt magic")
        );
        std::fs::write(&p, b"short").unwrap();
        assert!(
            verify_snapshot(&p)
                .unwrap_err()
                .to_string()
                .contains("only 5 bytes")
        );
    }
}
