//! Per-backend state shared by the selector, the sessions and the health checker.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::status::BackendStatus;

/// What the last active check saw.
#[derive(Debug, Default)]
struct CheckState {
    ok_streak: u32,
    fail_streak: u32,
    last_latency: Option<Duration>,
    last_error: Option<String>,
    checks: u64,
}

/// One backend. Kept across reloads (matched by address) so counters and state survive.
#[derive(Debug)]
pub(crate) struct Backend {
    pub addr: SocketAddr,
    pub weight: AtomicU32,
    up: AtomicBool,
    /// Sessions in progress, including connects in flight (least-connections counts them).
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub bytes_to_backend: AtomicU64,
    pub bytes_from_backend: AtomicU64,
    pub connect_errors: AtomicU64,
    passive_failures: AtomicU32,
    down_transitions: AtomicU64,
    pub sessions_closed_on_down: AtomicU64,
    check: Mutex<CheckState>,
    /// Cancelled (and replaced) when the backend is marked down with shutdown-sessions on.
    sessions: Mutex<CancellationToken>,
}

/// Why a backend changed state, for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cause {
    ActiveCheck,
    PassiveConnect,
}

impl Backend {
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Backend {
            addr,
            weight: AtomicU32::new(weight),
            // Optimistic start, like haproxy: traffic flows at once and passive detection
            // retries a dead one; checks settle the state within fall intervals.
            up: AtomicBool::new(true),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            bytes_to_backend: AtomicU64::new(0),
            bytes_from_backend: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            passive_failures: AtomicU32::new(0),
            down_transitions: AtomicU64::new(0),
            sessions_closed_on_down: AtomicU64::new(0),
            check: Mutex::new(CheckState::default()),
            sessions: Mutex::new(CancellationToken::new()),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Token a new session watches; it fires when this backend is marked down.
    pub fn session_token(&self) -> CancellationToken {
        lock(&self.sessions).clone()
    }

    pub fn mark_down(&self, cause: Cause, shutdown_sessions: bool, reason: &str) {
        if !self.up.swap(false, Relaxed) {
            return;
        }
        self.down_transitions.fetch_add(1, Relaxed);
        lock(&self.check).ok_streak = 0;
        let active = self.active.load(Relaxed);
        tracing::warn!(backend = %self.addr, ?cause, reason, active, shutdown_sessions, "backend marked down");
        if shutdown_sessions {
            let old = std::mem::take(&mut *lock(&self.sessions));
            old.cancel();
        }
    }

    pub fn mark_up(&self, cause: Cause) {
        if self.up.swap(true, Relaxed) {
            return;
        }
        self.passive_failures.store(0, Relaxed);
        tracing::info!(backend = %self.addr, ?cause, "backend marked up");
    }

    /// A connect failed (refused or timed out): counts toward `passive_fall`.
    pub fn connect_failed(&self, passive_fall: u32, shutdown_sessions: bool, reason: &str) {
        self.connect_errors.fetch_add(1, Relaxed);
        let n = self.passive_failures.fetch_add(1, Relaxed) + 1;
        if n >= passive_fall {
            self.mark_down(Cause::PassiveConnect, shutdown_sessions, reason);
        }
    }

    /// A connect succeeded. Without active checks this is the only way back up.
    pub fn connect_succeeded(&self, checks_enabled: bool) {
        if self.passive_failures.load(Relaxed) != 0 {
            self.passive_failures.store(0, Relaxed);
        }
        if !checks_enabled && !self.is_up() {
            self.mark_up(Cause::PassiveConnect);
        }
    }

    /// Feeds one active check result into the rise/fall state machine.
    pub fn record_check(
        &self,
        result: Result<Duration, String>,
        rise: u32,
        fall: u32,
        shutdown_sessions: bool,
    ) {
        let (go_up, go_down, reason) = {
            let mut c = lock(&self.check);
            c.checks += 1;
            match result {
                Ok(latency) => {
                    c.last_latency = Some(latency);
                    c.last_error = None;
                    c.fail_streak = 0;
                    c.ok_streak = c.ok_streak.saturating_add(1);
                    (c.ok_streak >= rise, false, String::new())
                }
                Err(e) => {
                    c.ok_streak = 0;
                    c.fail_streak = c.fail_streak.saturating_add(1);
                    let down = c.fail_streak >= fall;
                    c.last_error = Some(e.clone());
                    (false, down, e)
                }
            }
        };
        if go_up {
            self.mark_up(Cause::ActiveCheck);
        } else if go_down {
            self.mark_down(Cause::ActiveCheck, shutdown_sessions, &reason);
        }
    }

    pub fn status(&self) -> BackendStatus {
        let c = lock(&self.check);
        BackendStatus {
            address: self.addr,
            weight: self.weight.load(Relaxed),
            up: self.is_up(),
            active_connections: self.active.load(Relaxed) as u64,
            total_connections: self.total.load(Relaxed),
            bytes_to_backend: self.bytes_to_backend.load(Relaxed),
            bytes_from_backend: self.bytes_from_backend.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            down_transitions: self.down_transitions.load(Relaxed),
            sessions_closed_on_down: self.sessions_closed_on_down.load(Relaxed),
            checks: c.checks,
            check_latency_seconds: c.last_latency.map(|d| d.as_secs_f64()),
            last_check_error: c.last_error.clone(),
        }
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data is plain counters that stay consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
