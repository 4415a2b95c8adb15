//! Errors returned by the balancer API.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while starting or reloading the balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The configuration is inconsistent; the message names the field.
    #[error("invalid load balancer config: {0}")]
    InvalidConfig(String),
    /// A listener could not be created or bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address that was requested.
        addr: SocketAddr,
        /// The socket error.
        error: std::io::Error,
    },
    /// A PEM file for the HTTPS check could not be read or parsed.
    #[error("cannot load {path}: {reason}")]
    Pem {
        /// The file that failed.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls rejected the TLS settings of the HTTPS check.
    #[error("tls settings rejected: {0}")]
    Tls(rustls::Error),
    /// A data-path thread or its runtime could not be created.
    #[error("cannot start a balancer thread")]
    Runtime(#[source] std::io::Error),
    /// The balancer is draining and no longer accepts reloads.
    #[error("balancer is draining")]
    Draining,
    /// An admin command named a backend that is not in the configuration.
    #[error("no backend {backend}; the backends are {}", fmt_addrs(.known))]
    UnknownBackend {
        /// The address asked for.
        backend: SocketAddr,
        /// The configured backends.
        known: Vec<SocketAddr>,
    },
}

// Shown in the message, so not a `source()` as well (one rule for errors: never both).
impl From<rustls::Error> for LbError {
    fn from(e: rustls::Error) -> LbError {
        LbError::Tls(e)
    }
}

fn fmt_addrs(a: &[SocketAddr]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
