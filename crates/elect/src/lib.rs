//! Leader election over etcd for haplane, the actions a leader takes (`manifest`, `exec`),
//! etcd snapshots, and the etcd client everything in haplane uses.
//!
//! A leader acts only until `deadline = (send time of the last confirmed renewal) + TTL −
//! margin`, by its own monotonic clock; the role and deadline are published on a
//! `tokio::sync::watch` channel. See docs/elections.md.
//!
//! [`Client`] talks to each etcd member over its own channel, tracks each member's health
//! ([`health`]) and moves a request to the next member when one does not answer within the
//! attempt timeout.
#![forbid(unsafe_code)]

pub mod action;
mod backoff;
mod campaign;
mod client;
mod config;
mod election;
mod error;
pub mod health;
pub mod snapshot;
mod watch;

pub use backoff::Backoff;
pub use client::{Answer, BACKGROUND_REVOKE_BOUND, Client, MemberStatus, Renewal, connect};
pub use config::{
    DEFAULT_ATTEMPT_TIMEOUT, ElectionAction, ElectionConfig, EtcdConfig, SnapshotSchedule,
};
pub use election::{Election, ElectionStatus, Role, key_prefix};
pub use error::ElectError;
pub use snapshot::{SnapshotInfo, SnapshotScheduler, snapshot, verify_snapshot};
pub use watch::{Watch, WatchBatch};

/// The etcd request and response types [`Client`] takes and returns (re-exported so callers
/// need not depend on etcd-client directly).
pub mod etcd {
    pub use etcd_client::{
        Compare, CompareOp, DeleteOptions, DeleteResponse, Event, EventType, GetOptions,
        GetResponse, KeyValue, PutOptions, PutResponse, ResponseHeader, SortOrder, SortTarget, Txn,
        TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
    };
}
