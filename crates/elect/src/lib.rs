//! Leader election over etcd for haplane, the actions a leader takes (`manifest`, `exec`)
//! and etcd snapshots.
//!
//! A leader acts only until `deadline = (send time of the last successful keep-alive) +
//! TTL − margin`, by its own monotonic clock; the role and deadline are published on a
//! `tokio::sync::watch` channel. See docs/elections.md.
#![forbid(unsafe_code)]

pub mod action;
mod client;
mod config;
mod election;
mod error;
pub mod health;
pub mod snapshot;

pub use client::connect;
pub use config::{ElectionAction, ElectionConfig, EtcdConfig, SnapshotSchedule};
pub use election::{Election, ElectionStatus, Role, key_prefix};
pub use error::ElectError;
pub use snapshot::{SnapshotInfo, SnapshotScheduler, snapshot, verify_snapshot};

/// Re-exported so callers need not depend on etcd-client directly.
pub use etcd_client::Client;
