//! Serializable status for /status; plain counters the daemon can export to Prometheus.

use std::net::SocketAddr;

use serde::Serialize;

use crate::config::Policy;

/// The balancer as a whole.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbStatus {
    /// Bound listener addresses (actual ports, also when port 0 was asked for).
    pub listening: Vec<SocketAddr>,
    /// Selection policy in force.
    pub policy: Policy,
    /// Client connections being served now.
    pub active_connections: u64,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Clients closed because no backend could be connected.
    pub failed_connections: u64,
    /// True once `drain` has started.
    pub draining: bool,
    /// Backends of the current configuration, in configured order.
    pub backends: Vec<BackendStatus>,
}

/// One backend. Counters are monotonic since the backend first appeared (kept across reloads).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// Backend address.
    pub address: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// Marked up (by checks, or optimistic before the first checks).
    pub up: bool,
    /// Sessions in progress, connects in flight included.
    pub active_connections: u64,
    /// Sessions established to it.
    pub total_connections: u64,
    /// Bytes client → backend.
    pub bytes_to_backend: u64,
    /// Bytes backend → client.
    pub bytes_from_backend: u64,
    /// Connects that were refused, failed or timed out.
    pub connect_errors: u64,
    /// Times it went from up to down.
    pub down_transitions: u64,
    /// Sessions closed because it was marked down.
    pub sessions_closed_on_down: u64,
    /// Active checks run.
    pub checks: u64,
    /// Latency of the last successful check.
    pub check_latency_seconds: Option<f64>,
    /// Error of the last check, None when it passed.
    pub last_check_error: Option<String>,
}
