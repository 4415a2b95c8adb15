//! Errors of the elect crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to etcd, running actions or taking snapshots.
#[derive(Debug, thiserror::Error)]
pub enum ElectError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A TLS file (CA, certificate or key) could not be read.
    #[error("cannot read {what} {path}: {error}")]
    TlsFile {
        /// Which file: "ca file", "cert file" or "key file".
        what: &'static str,
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The etcd client could not be set up for these endpoints.
    #[error("cannot connect to etcd at {endpoints}: {detail}")]
    Connect {
        /// The endpoints, comma separated.
        endpoints: String,
        /// The full error chain, flattened.
        detail: String,
    },
    /// No etcd endpoint answered a quorum read in time.
    #[error("etcd at {endpoints} did not answer a quorum read within {timeout:?}")]
    Unreachable {
        /// The endpoints, comma separated.
        endpoints: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// An etcd request failed.
    #[error("etcd {op} failed: {detail}")]
    Etcd {
        /// The operation, e.g. "lease grant".
        op: &'static str,
        /// The full error chain, flattened.
        detail: String,
    },
    /// etcd answered that the lease does not exist (it expired or was revoked): typed, so
    /// campaigns branch on it instead of matching the message.
    #[error("etcd {op}: the lease is gone (expired or revoked)")]
    LeaseNotFound {
        /// The operation, e.g. "lease keep-alive".
        op: &'static str,
    },
    /// An etcd request did not finish in time.
    #[error("etcd {op} timed out after {timeout:?}")]
    Timeout {
        /// The operation, e.g. "lease grant".
        op: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// Every member failed a request (no answer within the attempt timeout, refused, no raft
    /// leader) until the call's timeout passed.
    #[error("etcd {op} failed on every member for {timeout:?} ({attempts} attempts): {detail}")]
    Unavailable {
        /// The operation, e.g. "lease grant".
        op: &'static str,
        /// The call's overall timeout.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last failure of each member that failed, e.g. `http://…:2379: no leader`.
        detail: String,
    },
    /// A watch's start revision was compacted: read the current state and watch again.
    #[error("etcd watch start revision was compacted (oldest revision kept is {revision})")]
    Compacted {
        /// The compaction revision reported by etcd.
        revision: i64,
    },
    /// Our lease is gone on the server (expired or revoked).
    #[error("lease {0:x} is gone on the server")]
    LeaseLost(i64),
    /// Our lease deadline passed without a successful renewal.
    #[error("lease deadline passed without a successful renewal")]
    DeadlinePassed,
    /// A file operation failed.
    #[error("{op} {path}: {error}")]
    Io {
        /// The operation, e.g. "write".
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A snapshot failed verification.
    #[error("snapshot {path} is invalid: {reason}")]
    InvalidSnapshot {
        /// The file checked.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
}

impl ElectError {
    pub(crate) fn etcd(op: &'static str, e: etcd_client::Error) -> Self {
        if crate::client::is_lease_not_found(&e) {
            return ElectError::LeaseNotFound { op };
        }
        ElectError::Etcd {
            op,
            detail: error_chain(&e),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ElectError::Io {
            op,
            path: path.into(),
            error: source,
        }
    }
}

/// Flattens an error and its sources into one line, so TLS and transport causes
/// (which etcd-client and tonic nest several levels deep) reach the operator.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Campaigns branch on a lost lease (the key is gone, campaign again) as a variant, not by
    /// matching the flattened message; every other etcd error stays `Etcd` with its text.
    #[test]
    fn a_lease_etcd_no_longer_knows_is_its_own_variant() {
        let gone = ElectError::etcd(
            "lease keep-alive",
            etcd_client::Error::LeaseKeepAliveError("lease not found".into()),
        );
        assert!(
            matches!(
                gone,
                ElectError::LeaseNotFound {
                    op: "lease keep-alive"
                }
            ),
            "{gone:?}"
        );
        let other = ElectError::etcd("put", etcd_client::Error::InvalidArgs("bad key".into()));
        assert!(
            matches!(&other, ElectError::Etcd { op: "put", detail } if detail.contains("bad key")),
            "{other:?}"
        );
    }
}
