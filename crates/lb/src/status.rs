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
    /// `state == up` (kept for readers of the first format).
    pub up: bool,
    /// Health: `up`, `draining` (answers but not ready: no new sessions, established ones
    /// continue) or `dead` (refuses, resets or times out: sessions closed).
    pub state: Health,
    /// Admin state: `ready`, or `drain` (set with `haplane lb drain`).
    pub admin: Admin,
    /// Takes new sessions now: up, admin ready, weight above 0, not suspect.
    pub in_service: bool,
    /// It closed a burst of idle sessions at once (a killed process does) and no check has
    /// passed since: no new sessions while another backend is in service.
    pub suspect: bool,
    /// Times a burst of idle closes made it suspect.
    pub close_bursts: u64,
    /// While it ramps up after coming back (slow start): the share of its weight in force,
    /// 0..1. Absent when not ramping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start_ramp: Option<f64>,
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
    /// Of `connect_errors`, the resets and timeouts while other connects to it succeeded: an
    /// overloaded backend (a full listen queue), so not counted toward `passive_fall`.
    pub connects_overloaded: u64,
    /// Times it went from up to dead.
    pub down_transitions: u64,
    /// Times it went from up to draining.
    pub drain_transitions: u64,
    /// Sessions closed because it was marked dead.
    pub sessions_closed_on_down: u64,
    /// Sessions closed because it stayed draining longer than the backend drain timeout.
    pub sessions_closed_drain_timeout: u64,
    /// Active checks run.
    pub checks: u64,
    /// Latency of the last successful check.
    pub check_latency_seconds: Option<f64>,
    /// Error of the last check, None when it passed.
    pub last_check_error: Option<String>,
}

/// A backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passes its checks (or has not failed one yet): takes new sessions.
    Up = 0,
    /// Answers, but not ready: no new sessions; established ones continue.
    Draining = 1,
    /// Refuses, resets or times out: its sessions are closed.
    Dead = 2,
}

impl Health {
    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Up,
            1 => Health::Draining,
            _ => Health::Dead,
        }
    }

    /// The name in /status, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Draining => "draining",
            Health::Dead => "dead",
        }
    }

    /// Every state, for metrics that show one line per state.
    pub const ALL: [Health; 3] = [Health::Up, Health::Draining, Health::Dead];
}

/// A backend's admin state, set by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    /// Normal service.
    Ready = 0,
    /// No new sessions; established ones continue until they end.
    Drain = 1,
}

impl Admin {
    pub(crate) fn from_u8(v: u8) -> Admin {
        if v == 1 { Admin::Drain } else { Admin::Ready }
    }

    /// The name in /status, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Admin::Ready => "ready",
            Admin::Drain => "drain",
        }
    }
}
