//! Runtime configuration (plain Rust; the daemon maps its YAML onto these).

use std::path::PathBuf;
use std::time::Duration;

use crate::ElectError;

/// Default bound on one request to one etcd member. A healthy member answers a read in about
/// a millisecond and commits a write in a few (one fsync on the leader and a quorum); 250 ms
/// leaves room for a loaded machine while a frozen member costs a quarter second, not the
/// 1–1.5 s of an HTTP/2 keepalive.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);

/// How to reach etcd. etcd is always dialled directly, never through the apiserver,
/// so elections work before any apiserver exists (kube-vip#684).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://192.0.2.11:2379`; all `https://` when TLS is configured.
    pub endpoints: Vec<String>,
    /// PEM CA bundle used to verify the etcd servers.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM client key (needs `cert_file`).
    pub key_file: Option<PathBuf>,
    /// Bound on connecting and on the initial quorum read.
    pub dial_timeout: Duration,
    /// Bound on one request to one member before the same request goes to the next member
    /// (the fast switch away from a dead, frozen or cut-off member). Default 250 ms.
    pub attempt_timeout: Duration,
}

impl EtcdConfig {
    /// Plain-HTTP config for the given endpoints with a 2 s dial timeout and a 250 ms
    /// attempt timeout.
    pub fn plain(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            ca_file: None,
            cert_file: None,
            key_file: None,
            dial_timeout: Duration::from_secs(2),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

/// One election and what its leader does.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Election name; keys live under `/haplane/elections/<name>/`.
    pub name: String,
    /// Our identity as shown to other nodes (usually the node name).
    pub identity: String,
    /// Lease TTL. etcd grants whole seconds and raises it to its minimum (2 s by default).
    pub ttl: Duration,
    /// Safety margin subtracted from the lease deadline: covers clock-rate drift and
    /// the time to stop the action.
    pub margin: Duration,
    /// What the leader does; `None` for a pure election (e.g. a fenced VIP).
    pub action: Option<ElectionAction>,
}

impl ElectionConfig {
    /// An election with the documented defaults: TTL 2 s, margin 500 ms, no action.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        ElectionConfig {
            name: name.into(),
            identity: identity.into(),
            ttl: Duration::from_secs(2),
            margin: Duration::from_millis(500),
            action: None,
        }
    }

    /// The TTL requested from etcd, in whole seconds (rounded up).
    pub fn ttl_secs(&self) -> i64 {
        let ms = self.ttl.as_millis();
        ms.div_ceil(1000).max(1) as i64
    }

    /// Renewal period: a twentieth of the TTL (100 ms with the default 2 s). Each renewal is a
    /// keep-alive plus a linearizable read; renewing often lets a leader ride out an etcd
    /// outage (a raft election) shorter than `TTL − margin − renew period − 100 ms` (the
    /// longest pause between retry rounds) ≈ 1.3 s by default, without stepping down.
    pub fn renew_period(&self) -> Duration {
        self.ttl / 20
    }

    /// Checks the values that the safety argument depends on.
    pub fn validate(&self) -> Result<(), ElectError> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(ElectError::InvalidConfig(format!(
                "election name {:?} must be non-empty and contain no '/'",
                self.name
            )));
        }
        if self.identity.is_empty() {
            return Err(ElectError::InvalidConfig(format!(
                "election {}: identity must be non-empty",
                self.name
            )));
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(ElectError::InvalidConfig(format!(
                "election {}: ttl {:?} is below 1 s (etcd leases are whole seconds)",
                self.name, self.ttl
            )));
        }
        // At least one renewal period must remain between a renewal and the deadline,
        // otherwise a single slow round trip makes the leader step down.
        if self.margin + self.renew_period() >= self.ttl {
            return Err(ElectError::InvalidConfig(format!(
                "election {}: margin {:?} must be below ttl - ttl/20 = {:?}",
                self.name,
                self.margin,
                self.ttl - self.renew_period()
            )));
        }
        if matches!(&self.action, Some(ElectionAction::Exec { command, .. }) if command.is_empty())
        {
            return Err(ElectError::InvalidConfig(format!(
                "election {}: exec command is empty",
                self.name
            )));
        }
        Ok(())
    }
}

/// What the leader of an election does.
#[derive(Debug, Clone)]
pub enum ElectionAction {
    /// Keep `target` identical to `source` while leader; remove it otherwise (podmaster's job).
    Manifest {
        /// File to copy from.
        source: PathBuf,
        /// File to keep in place (e.g. in /etc/kubernetes/manifests).
        target: PathBuf,
    },
    /// Run `command` while leader; SIGTERM then SIGKILL after `grace` on loss; restart with backoff.
    Exec {
        /// argv; the first element is the program.
        command: Vec<String>,
        /// Time between SIGTERM and SIGKILL on a graceful resignation. On a lease loss
        /// it is capped at half the margin so the command is gone before the lease can expire.
        grace: Duration,
    },
}

/// Scheduled etcd snapshots, taken only by the leader of the `haplane-snapshots` election.
#[derive(Debug, Clone)]
pub struct SnapshotSchedule {
    /// Time between snapshots.
    pub interval: Duration,
    /// Directory for `etcd-snapshot-<UTC time>.db` files.
    pub dir: PathBuf,
    /// How many snapshot files to retain (at least 1).
    pub keep: usize,
}
