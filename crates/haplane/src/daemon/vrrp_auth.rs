//! The I/O side of auth_hmac: keys from the cluster file (inline or `file:`), the wall clock
//! the core signs and checks with, live reloads for key rotation and migration, and
//! rate-limited logging of discarded adverts (RFC 9568 §7.1). Nothing here logs a key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use config::Cluster;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use vrrp::log_limit::LogLimiter;
use vrrp::{AntiReplay, AuthHmacConfig, DiscardReason, HmacKey, HmacMode};

/// One log line per discard reason per this interval; the counters keep the exact numbers.
const DISCARD_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How often the cluster file and key files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The wall clock, since the Unix epoch (the clock keepalived signs with).
pub(super) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The core's auth_hmac settings from `vip.authHmac`, reading `file:` keys.
pub(super) fn auth_hmac_config(
    cluster: &Cluster,
) -> Result<Option<AuthHmacConfig>, config::KeyError> {
    let Some(h) = &cluster.vip.auth_hmac else {
        return Ok(None);
    };
    let keys = config::resolve_keys(&h.keys)?
        .into_iter()
        .map(|(id, bytes)| HmacKey::new(id, bytes))
        .collect();
    let advert = cluster.vip.advert_interval.get();
    Ok(Some(AuthHmacConfig {
        keys,
        // Validation made sure there is one (the only key, or activeKey).
        active_key: h.active().unwrap_or(0),
        anti_replay: match h.anti_replay {
            config::AntiReplay::Time => AntiReplay::Time,
            config::AntiReplay::Monotonic => AntiReplay::Monotonic,
        },
        time_window: h.window(advert),
        mode: match h.mode {
            config::HmacMode::Enforce => HmacMode::Enforce,
            config::HmacMode::Permissive => HmacMode::Permissive,
            config::HmacMode::ReceiveOnly => HmacMode::ReceiveOnly,
        },
    }))
}

/// A one-line description for logs: mode, key ids, active key. Never key bytes.
pub(super) fn describe(cfg: Option<&AuthHmacConfig>) -> String {
    match cfg {
        None => "off".into(),
        Some(c) => {
            let ids: Vec<String> = c.keys.iter().map(|k| k.id().to_string()).collect();
            format!(
                "mode {}, anti-replay {:?}, keys [{}], signing with key {}",
                c.mode.as_str(),
                c.anti_replay,
                ids.join(", "),
                c.active_key
            )
            .to_lowercase()
        }
    }
}

/// Discards worth a warning: someone may be attacking or misconfigured.
fn security_relevant(reason: DiscardReason) -> bool {
    reason.as_str().starts_with("hmac_")
        || matches!(
            reason,
            DiscardReason::AuthMismatch | DiscardReason::NotAPeer | DiscardReason::BadTtl
        )
}

/// Rate-limited discard logging for one router.
pub(super) struct DiscardLog {
    limiter: LogLimiter<DiscardReason>,
}

impl DiscardLog {
    pub(super) fn new() -> Self {
        DiscardLog {
            limiter: LogLimiter::new(DISCARD_LOG_INTERVAL),
        }
    }

    pub(super) fn record(&mut self, node: &str, now: Instant, reason: DiscardReason, src: IpAddr) {
        let Some(held) = self.limiter.admit(now, reason) else {
            return;
        };
        let relevant = security_relevant(reason);
        let reason = reason.as_str();
        if relevant {
            warn!(node, %src, reason, held_back = held,
                "discarded a VRRP advert (one line per reason every {DISCARD_LOG_INTERVAL:?}; counts in /metrics)");
        } else {
            debug!(node, %src, reason, held_back = held, "discarded a VRRP advert");
        }
    }

    /// Report the adverts held back once a flood is over.
    pub(super) fn flush(&mut self, node: &str, now: Instant) {
        if self.limiter.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        for (reason, held) in self.limiter.poll_held_back(now) {
            if security_relevant(reason) {
                warn!(
                    node,
                    reason = reason.as_str(),
                    held_back = held,
                    "more VRRP adverts were discarded since the last line"
                );
            } else {
                debug!(
                    node,
                    reason = reason.as_str(),
                    held_back = held,
                    "more VRRP adverts were discarded since the last line"
                );
            }
        }
    }
}

/// Modification times of the cluster file and its `file:` keys: a change to any of them
/// (a new key file, a rotated systemd credential) is a reason to reload.
fn fingerprint(path: &Path, key_files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    std::iter::once(path)
        .chain(key_files.iter().map(PathBuf::as_path))
        .map(modified)
        .collect()
}

fn key_files(cluster: &Cluster) -> Vec<PathBuf> {
    cluster
        .vip
        .auth_hmac
        .iter()
        .flat_map(|h| h.keys.values())
        .filter_map(|s| s.file().map(Path::to_path_buf))
        .collect()
}

/// Watch the cluster file (and SIGHUP) for auth_hmac changes and send the new settings, so
/// a key rotation or a migration step needs no restart and never moves the VIP. A file that
/// fails validation, or a key that cannot be read, is logged and the running keys stay.
pub(super) fn spawn_auth_watch<E: Send + 'static>(
    path: PathBuf,
    mut current: Option<AuthHmacConfig>,
    events: mpsc::Sender<E>,
    event: impl Fn(Option<AuthHmacConfig>) -> E + Send + 'static,
) {
    crate::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("no SIGHUP reload of auth_hmac: {e}");
                None
            }
        };
        let mut files = Cluster::load(&path)
            .map(|(c, _)| key_files(&c))
            .unwrap_or_default();
        let mut last = fingerprint(&path, &files);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            let reason = tokio::select! {
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
                _ = tick.tick() => {
                    let now = fingerprint(&path, &files);
                    if now == last { continue; }
                    last = now;
                    "the cluster file or a key file changed"
                }
            };
            let cluster = match Cluster::load(&path) {
                Ok((c, _)) => c,
                Err(e) => {
                    error!(
                        "auth_hmac reload after {reason} refused, keeping the running keys: {e}"
                    );
                    continue;
                }
            };
            files = key_files(&cluster);
            last = fingerprint(&path, &files);
            let next = match auth_hmac_config(&cluster) {
                Ok(c) => c,
                Err(e) => {
                    error!(
                        "auth_hmac reload after {reason} refused, keeping the running keys: {e}"
                    );
                    continue;
                }
            };
            if next == current {
                continue;
            }
            info!(
                "auth_hmac settings changed ({reason}): {}",
                describe(next.as_ref())
            );
            current = next.clone();
            if events.send(event(next)).await.is_err() {
                return;
            }
        }
    });
}
