//! Per-backend state shared by the selector, the sessions and the health checker.
//!
//! A backend is in one of three health states, and independently in one of two admin states:
//!
//! - **up**: takes new sessions;
//! - **draining**: it still accepts connections but fails its readiness check (a kube-apiserver
//!   that got SIGTERM fails `/readyz` at once and keeps serving for `--shutdown-delay-duration`,
//!   kubernetes PRs #88911, #74416): no new sessions, established ones run on until they end or
//!   `backend_drain_timeout`;
//! - **dead**: it refuses, resets or times out: its sessions are closed at once so clients
//!   reconnect (haproxy's `on-marked-down shutdown-sessions`).
//!
//! The admin state `drain` (set with `haplane lb drain`) takes no new sessions and leaves the
//! established ones alone; `ready` undoes it. A backend coming back to service (dead or draining
//! to up, drain to ready) ramps its share over `slow_start`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::burst::{self, CloseBurst};
use crate::passive::{self, ConnectFailure, Verdict};
use crate::status::{Admin, BackendStatus, Health};

/// What the last active check saw.
#[derive(Debug, Default)]
struct CheckState {
    ok_streak: u32,
    fail_streak: u32,
    /// Consecutive failures that did not get an answer (refused, reset, timed out).
    unreachable_streak: u32,
    last_latency: Option<Duration>,
    last_error: Option<String>,
    checks: u64,
}

/// How one check failed: the kind decides between draining and dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckFailure {
    /// The backend answered, but not with a ready status (HTTP 503 from /readyz).
    NotReady(String),
    /// No answer: refused, reset, TLS failure, no status line, or timed out.
    Unreachable(String),
}

impl CheckFailure {
    pub fn message(&self) -> &str {
        match self {
            CheckFailure::NotReady(m) | CheckFailure::Unreachable(m) => m,
        }
    }
}

/// The settings a state change needs (from the pool in force).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownPolicy {
    /// Close a dead backend's sessions at once.
    pub shutdown_sessions: bool,
    /// Close a draining backend's sessions after this long.
    pub drain_timeout: Duration,
}

/// The settings passive detection needs (from the pool in force).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassivePolicy {
    pub passive_fall: u32,
    pub connect_timeout: Duration,
    pub down: DownPolicy,
}

/// Why a session token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Dead = 1,
    DrainTimeout = 2,
}

/// One backend. Kept across reloads (matched by address) so counters and state survive.
#[derive(Debug)]
pub(crate) struct Backend {
    pub addr: SocketAddr,
    pub weight: AtomicU32,
    health: AtomicU8,
    admin: AtomicU8,
    /// Milliseconds since [`epoch`] when it came back to service; 0 when not ramping.
    returned_at_ms: AtomicU64,
    /// Bumped on every health change, so a drain timer knows it is stale.
    generation: AtomicU64,
    /// Sessions in progress, including connects in flight (least-connections counts them).
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub bytes_to_backend: AtomicU64,
    pub bytes_from_backend: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Of `connect_errors`, the resets and timeouts judged overloaded (not counted).
    connects_overloaded: AtomicU64,
    /// Microseconds since [`epoch`] (+1) of the latest successful connect; 0: none yet.
    last_success_us: AtomicU64,
    /// When an overloaded connect was last logged at info (milliseconds since [`epoch`]).
    overload_logged_ms: AtomicU64,
    passive_failures: AtomicU32,
    down_transitions: AtomicU64,
    drain_transitions: AtomicU64,
    pub sessions_closed_on_down: AtomicU64,
    pub sessions_closed_drain_timeout: AtomicU64,
    check: Mutex<CheckState>,
    /// Idle sessions it closed lately (see [`crate::burst`]).
    burst: Mutex<CloseBurst>,
    /// Microseconds since [`epoch`] (+1) of the close burst that made it suspect; 0: not.
    suspect_since_us: AtomicU64,
    close_bursts: AtomicU64,
    /// Wakes its checker for a check now (after a close burst).
    pub check_now: Notify,
    /// Cancelled (and replaced) when the sessions must close; `close_reason` says why.
    sessions: Mutex<CancellationToken>,
    close_reason: AtomicU8,
}

/// Why a backend changed state, for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cause {
    ActiveCheck,
    PassiveConnect,
}

/// A process-wide origin for the millisecond timestamps kept in atomics.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ms() -> u64 {
    // +1 so that 0 keeps meaning "not ramping" even in the first millisecond.
    epoch().elapsed().as_millis() as u64 + 1
}

/// `at` as microseconds since [`epoch`], +1 so that 0 can mean "never".
fn to_us(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64 + 1
}

fn from_us(us: u64) -> Option<Instant> {
    (us != 0).then(|| epoch() + Duration::from_micros(us - 1))
}

/// At most one info line per backend this often about overloaded connects (a storm makes
/// hundreds); each is at debug and all are counted.
const OVERLOAD_LOG_INTERVAL_MS: u64 = 10_000;

impl Backend {
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        // Fix the origin before any connect's instant is taken, so none lies before it.
        epoch();
        Backend {
            addr,
            weight: AtomicU32::new(weight),
            // Optimistic start, like haproxy: traffic flows at once and passive detection
            // retries a dead one; checks settle the state within fall intervals.
            health: AtomicU8::new(Health::Up as u8),
            admin: AtomicU8::new(Admin::Ready as u8),
            returned_at_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            bytes_to_backend: AtomicU64::new(0),
            bytes_from_backend: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            connects_overloaded: AtomicU64::new(0),
            last_success_us: AtomicU64::new(0),
            overload_logged_ms: AtomicU64::new(0),
            passive_failures: AtomicU32::new(0),
            down_transitions: AtomicU64::new(0),
            drain_transitions: AtomicU64::new(0),
            sessions_closed_on_down: AtomicU64::new(0),
            sessions_closed_drain_timeout: AtomicU64::new(0),
            check: Mutex::new(CheckState::default()),
            burst: Mutex::new(CloseBurst::default()),
            suspect_since_us: AtomicU64::new(0),
            close_bursts: AtomicU64::new(0),
            check_now: Notify::new(),
            sessions: Mutex::new(CancellationToken::new()),
            close_reason: AtomicU8::new(0),
        }
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Relaxed))
    }

    pub fn admin(&self) -> Admin {
        Admin::from_u8(self.admin.load(Relaxed))
    }

    pub fn is_up(&self) -> bool {
        self.health() == Health::Up
    }

    /// Takes new sessions: up, admin ready, weight above 0 and not suspect.
    pub fn in_service(&self) -> bool {
        self.is_up()
            && self.admin() == Admin::Ready
            && self.weight.load(Relaxed) > 0
            && !self.is_suspect()
    }

    /// It closed a burst of idle sessions and no check has passed since ([`crate::burst`]).
    pub fn is_suspect(&self) -> bool {
        self.suspect_since_us.load(Relaxed) != 0
    }

    /// It closed a session first, at `now`, after the session was silent for `silent`. A burst
    /// of those makes it suspect until a check that starts afterwards passes; one is run at
    /// once. Without active checks nothing could end it, so nothing starts it.
    pub fn closed_a_session(&self, now: Instant, silent: Duration, checks_enabled: bool) {
        if !checks_enabled || silent < burst::IDLE_BEFORE {
            return;
        }
        if !lock(&self.burst).handle_backend_close(now, silent) {
            return;
        }
        if self
            .suspect_since_us
            .compare_exchange(0, to_us(now), Relaxed, Relaxed)
            .is_ok()
        {
            let total = self.close_bursts.fetch_add(1, Relaxed) + 1;
            tracing::warn!(backend = %self.addr, active = self.active.load(Relaxed), close_bursts = total,
                "backend suspect: it closed {} idle sessions within {:?}; no new sessions until a check passes",
                burst::BURST_CLOSES, burst::BURST_WINDOW);
            self.check_now.notify_one();
        }
    }

    /// A check that started at `started` passed: a suspicion older than the check ends.
    pub fn check_passed(&self, started: Instant) {
        let since = self.suspect_since_us.load(Relaxed);
        if since != 0
            && to_us(started) > since
            && self
                .suspect_since_us
                .compare_exchange(since, 0, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::info!(backend = %self.addr, "backend no longer suspect: a check passed after its close burst");
        }
    }

    /// The share of its weight in force: ramps linearly from 0 to 1 over `slow_start` after the
    /// backend came back; 1 when it is not ramping.
    pub fn ramp(&self, slow_start: Duration) -> f64 {
        let since = self.returned_at_ms.load(Relaxed);
        if since == 0 || slow_start.is_zero() {
            return 1.0;
        }
        let elapsed = now_ms().saturating_sub(since) as f64 / 1000.0;
        let f = elapsed / slow_start.as_secs_f64();
        if f >= 1.0 {
            // Done: later picks skip the arithmetic.
            self.returned_at_ms.store(0, Relaxed);
            return 1.0;
        }
        f
    }

    /// Token a new session watches; it fires when the session must close.
    pub fn session_token(&self) -> CancellationToken {
        lock(&self.sessions).clone()
    }

    /// Why the session tokens last fired.
    pub fn close_reason(&self) -> CloseReason {
        match self.close_reason.load(Relaxed) {
            2 => CloseReason::DrainTimeout,
            _ => CloseReason::Dead,
        }
    }

    fn close_sessions(&self, reason: CloseReason) {
        self.close_reason.store(reason as u8, Relaxed);
        let old = std::mem::take(&mut *lock(&self.sessions));
        old.cancel();
    }

    /// Moves to `to`. Returns false when it was already there.
    fn set_health(
        self: &std::sync::Arc<Self>,
        to: Health,
        cause: Cause,
        reason: &str,
        policy: DownPolicy,
    ) -> bool {
        let from = Health::from_u8(self.health.swap(to as u8, Relaxed));
        if from == to {
            return false;
        }
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let active = self.active.load(Relaxed);
        match to {
            Health::Up => {
                self.passive_failures.store(0, Relaxed);
                self.returned_at_ms.store(now_ms(), Relaxed);
                tracing::info!(backend = %self.addr, ?cause, from = from.as_str(), "backend up");
            }
            Health::Draining => {
                lock(&self.check).ok_streak = 0;
                self.returned_at_ms.store(0, Relaxed);
                if from == Health::Up {
                    self.drain_transitions.fetch_add(1, Relaxed);
                }
                tracing::warn!(backend = %self.addr, ?cause, reason, active, timeout = ?policy.drain_timeout,
                    "backend draining: not ready but answering; no new sessions, established ones continue");
                self.arm_drain_timer(generation, policy.drain_timeout);
            }
            Health::Dead => {
                lock(&self.check).ok_streak = 0;
                self.returned_at_ms.store(0, Relaxed);
                if from == Health::Up {
                    self.down_transitions.fetch_add(1, Relaxed);
                }
                tracing::warn!(backend = %self.addr, ?cause, reason, active,
                    shutdown_sessions = policy.shutdown_sessions, "backend dead");
                if policy.shutdown_sessions {
                    self.close_sessions(CloseReason::Dead);
                }
            }
        }
        true
    }

    /// After `timeout` in draining (the same spell: no state change since), close what is left.
    fn arm_drain_timer(self: &std::sync::Arc<Self>, generation: u64, timeout: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = std::sync::Arc::downgrade(self);
        rt.spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(b) = me.upgrade() else { return };
            if b.generation.load(Relaxed) == generation && b.health() == Health::Draining {
                let left = b.active.load(Relaxed);
                tracing::warn!(backend = %b.addr, left, ?timeout, "backend drain timeout: closing its remaining sessions");
                b.close_sessions(CloseReason::DrainTimeout);
            }
        });
    }

    /// Sets the admin state. Returns the previous one.
    pub fn set_admin(&self, to: Admin) -> Admin {
        let from = Admin::from_u8(self.admin.swap(to as u8, Relaxed));
        if from != to {
            let active = self.active.load(Relaxed);
            match to {
                Admin::Drain => {
                    self.returned_at_ms.store(0, Relaxed);
                    tracing::info!(backend = %self.addr, active, "admin: drain (no new sessions; established ones continue)");
                }
                Admin::Ready => {
                    if self.is_up() {
                        self.returned_at_ms.store(now_ms(), Relaxed);
                    }
                    tracing::info!(backend = %self.addr, "admin: ready");
                }
            }
        }
        from
    }

    /// A connect that started at `started` failed. Unless [`passive::judge`] finds the backend
    /// overloaded (another connect got through meanwhile), it counts toward `passive_fall`,
    /// and `passive_fall` in a row make the backend dead.
    pub fn connect_failed(
        self: &std::sync::Arc<Self>,
        failure: ConnectFailure,
        started: Instant,
        pool: PassivePolicy,
        reason: &str,
    ) -> Verdict {
        self.connect_errors.fetch_add(1, Relaxed);
        let last_success = from_us(self.last_success_us.load(Relaxed));
        let verdict = passive::judge(failure, started, last_success, pool.connect_timeout);
        match verdict {
            Verdict::Overloaded => {
                let total = self.connects_overloaded.fetch_add(1, Relaxed) + 1;
                let now = now_ms();
                let logged = self.overload_logged_ms.load(Relaxed);
                if (logged == 0 || now >= logged + OVERLOAD_LOG_INTERVAL_MS)
                    && self
                        .overload_logged_ms
                        .compare_exchange(logged, now, Relaxed, Relaxed)
                        .is_ok()
                {
                    tracing::info!(backend = %self.addr, ?failure, reason, connects_overloaded = total,
                        "backend overloaded: connects fail while others succeed; it stays up (not counted toward passiveFall)");
                }
            }
            Verdict::Counts => {
                let n = self.passive_failures.fetch_add(1, Relaxed) + 1;
                if n >= pool.passive_fall {
                    self.set_health(Health::Dead, Cause::PassiveConnect, reason, pool.down);
                }
            }
        }
        verdict
    }

    /// A connect succeeded at `at`. Without active checks this is the only way back up.
    pub fn connect_succeeded(
        self: &std::sync::Arc<Self>,
        at: Instant,
        checks_enabled: bool,
        policy: DownPolicy,
    ) {
        // fetch_max: a connect that finished earlier on another thread must not move it back.
        self.last_success_us.fetch_max(to_us(at), Relaxed);
        if self.passive_failures.load(Relaxed) != 0 {
            self.passive_failures.store(0, Relaxed);
        }
        if !checks_enabled && !self.is_up() {
            self.set_health(Health::Up, Cause::PassiveConnect, "", policy);
        }
    }

    /// Feeds one active check result into the rise/fall state machine. After `fall` failures
    /// in a row the backend is dead when none of the last `fall` checks got an answer, and
    /// draining otherwise (it answers, but is not ready).
    pub fn record_check(
        self: &std::sync::Arc<Self>,
        result: Result<Duration, CheckFailure>,
        rise: u32,
        fall: u32,
        policy: DownPolicy,
    ) {
        let target = {
            let mut c = lock(&self.check);
            c.checks += 1;
            match result {
                Ok(latency) => {
                    c.last_latency = Some(latency);
                    c.last_error = None;
                    c.fail_streak = 0;
                    c.unreachable_streak = 0;
                    c.ok_streak = c.ok_streak.saturating_add(1);
                    (c.ok_streak >= rise).then_some((Health::Up, String::new()))
                }
                Err(e) => {
                    c.ok_streak = 0;
                    c.fail_streak = c.fail_streak.saturating_add(1);
                    c.unreachable_streak = match e {
                        CheckFailure::Unreachable(_) => c.unreachable_streak.saturating_add(1),
                        CheckFailure::NotReady(_) => 0,
                    };
                    c.last_error = Some(e.message().to_string());
                    if c.unreachable_streak >= fall {
                        Some((Health::Dead, e.message().to_string()))
                    } else if c.fail_streak >= fall {
                        Some((Health::Draining, e.message().to_string()))
                    } else {
                        None
                    }
                }
            }
        };
        if let Some((to, reason)) = target {
            self.set_health(to, Cause::ActiveCheck, &reason, policy);
        }
    }

    pub fn status(&self, slow_start: Duration) -> BackendStatus {
        let c = lock(&self.check);
        let health = self.health();
        let ramp = self.ramp(slow_start);
        BackendStatus {
            address: self.addr,
            weight: self.weight.load(Relaxed),
            up: health == Health::Up,
            state: health,
            admin: self.admin(),
            in_service: self.in_service(),
            suspect: self.is_suspect(),
            close_bursts: self.close_bursts.load(Relaxed),
            slow_start_ramp: (ramp < 1.0 && health == Health::Up).then_some(ramp),
            active_connections: self.active.load(Relaxed) as u64,
            total_connections: self.total.load(Relaxed),
            bytes_to_backend: self.bytes_to_backend.load(Relaxed),
            bytes_from_backend: self.bytes_from_backend.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            connects_overloaded: self.connects_overloaded.load(Relaxed),
            down_transitions: self.down_transitions.load(Relaxed),
            drain_transitions: self.drain_transitions.load(Relaxed),
            sessions_closed_on_down: self.sessions_closed_on_down.load(Relaxed),
            sessions_closed_drain_timeout: self.sessions_closed_drain_timeout.load(Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const POLICY: DownPolicy = DownPolicy {
        shutdown_sessions: true,
        drain_timeout: Duration::from_secs(60),
    };

    fn backend() -> Arc<Backend> {
        Arc::new(Backend::new("192.0.2.1:6443".parse().unwrap(), 1))
    }

    fn not_ready() -> Result<Duration, CheckFailure> {
        Err(CheckFailure::NotReady("status 503".into()))
    }

    fn refused() -> Result<Duration, CheckFailure> {
        Err(CheckFailure::Unreachable("connect: refused".into()))
    }

    #[test]
    fn not_ready_answers_make_a_backend_draining_and_keep_its_sessions() {
        // kubernetes PR #88911: /readyz fails at once on SIGTERM while the apiserver serves on.
        let b = backend();
        let token = b.session_token();
        b.record_check(not_ready(), 2, 2, POLICY);
        assert_eq!(b.health(), Health::Up, "one failure is below fall");
        b.record_check(not_ready(), 2, 2, POLICY);
        assert_eq!(b.health(), Health::Draining);
        assert!(!b.in_service());
        assert!(!token.is_cancelled(), "draining leaves sessions open");
    }

    #[test]
    fn unanswered_checks_make_a_backend_dead_and_close_its_sessions() {
        let b = backend();
        let token = b.session_token();
        b.record_check(refused(), 2, 2, POLICY);
        b.record_check(refused(), 2, 2, POLICY);
        assert_eq!(b.health(), Health::Dead);
        assert!(token.is_cancelled());
        assert_eq!(b.close_reason(), CloseReason::Dead);
    }

    #[test]
    fn a_draining_backend_that_stops_answering_becomes_dead() {
        let b = backend();
        let token = b.session_token();
        b.record_check(not_ready(), 2, 2, POLICY);
        b.record_check(not_ready(), 2, 2, POLICY);
        b.record_check(refused(), 2, 2, POLICY);
        assert_eq!(
            b.health(),
            Health::Draining,
            "one unanswered check is below fall"
        );
        b.record_check(refused(), 2, 2, POLICY);
        assert_eq!(b.health(), Health::Dead);
        assert!(token.is_cancelled());
    }

    #[test]
    fn mixed_failures_end_in_draining_when_the_last_one_answered() {
        let b = backend();
        b.record_check(refused(), 2, 2, POLICY);
        b.record_check(not_ready(), 2, 2, POLICY);
        assert_eq!(b.health(), Health::Draining);
    }

    const PASSIVE: PassivePolicy = PassivePolicy {
        passive_fall: 3,
        connect_timeout: Duration::from_secs(1),
        down: POLICY,
    };

    #[test]
    fn passive_connect_failures_make_a_backend_dead() {
        let b = backend();
        for _ in 0..3 {
            let v = b.connect_failed(ConnectFailure::Refused, Instant::now(), PASSIVE, "refused");
            assert_eq!(v, Verdict::Counts);
        }
        assert_eq!(b.health(), Health::Dead);
    }

    #[test]
    fn resets_while_other_connects_succeed_leave_a_backend_up_with_its_sessions() {
        let b = backend();
        let token = b.session_token();
        let t = Instant::now();
        b.connect_succeeded(t, true, POLICY);
        for _ in 0..10 {
            let v = b.connect_failed(ConnectFailure::Reset, t, PASSIVE, "reset");
            assert_eq!(v, Verdict::Overloaded);
            let v = b.connect_failed(ConnectFailure::TimedOut, t, PASSIVE, "timed out");
            assert_eq!(v, Verdict::Overloaded);
        }
        assert_eq!(b.health(), Health::Up);
        assert!(!token.is_cancelled());
        let s = b.status(Duration::ZERO);
        assert_eq!((s.connect_errors, s.connects_overloaded), (20, 20));
        assert_eq!(s.down_transitions, 0);
    }

    #[test]
    fn an_overloaded_connect_does_not_advance_the_failure_streak() {
        let b = backend();
        let t = Instant::now();
        let late = t + Duration::from_secs(5);
        // Two refusals, then overloaded resets: the streak stays at two...
        b.connect_failed(ConnectFailure::Refused, t, PASSIVE, "refused");
        b.connect_failed(ConnectFailure::Refused, t, PASSIVE, "refused");
        b.last_success_us.store(to_us(late), Relaxed);
        for _ in 0..5 {
            b.connect_failed(ConnectFailure::Reset, late, PASSIVE, "reset");
        }
        assert_eq!(b.health(), Health::Up);
        // ...so the next failure that counts is the third.
        b.connect_failed(ConnectFailure::Refused, late, PASSIVE, "refused");
        assert_eq!(b.health(), Health::Dead);
    }

    #[test]
    fn resets_long_after_the_last_success_make_a_backend_dead() {
        let b = backend();
        let t = Instant::now();
        b.connect_succeeded(t, true, POLICY);
        // Each attempt started more than connect_timeout after that success.
        let later = t + Duration::from_millis(1_001);
        for _ in 0..3 {
            let v = b.connect_failed(ConnectFailure::Reset, later, PASSIVE, "reset");
            assert_eq!(v, Verdict::Counts);
        }
        assert_eq!(b.health(), Health::Dead);
        assert_eq!(b.status(Duration::ZERO).connects_overloaded, 0);
    }

    #[test]
    fn an_older_success_does_not_replace_a_newer_one() {
        let b = backend();
        let t = Instant::now() + Duration::from_secs(1);
        b.connect_succeeded(t, true, POLICY);
        b.connect_succeeded(t - Duration::from_secs(1), true, POLICY);
        let got = from_us(b.last_success_us.load(Relaxed)).unwrap();
        assert!(
            t.saturating_duration_since(got) < Duration::from_micros(1),
            "{got:?} vs {t:?}"
        );
    }

    #[test]
    fn a_returning_backend_ramps_over_slow_start_and_a_fresh_one_does_not() {
        let b = backend();
        let slow = Duration::from_secs(30);
        assert_eq!(b.ramp(slow), 1.0, "the optimistic start is not a return");
        b.record_check(refused(), 1, 1, POLICY);
        b.record_check(Ok(Duration::ZERO), 1, 1, POLICY);
        assert!(b.is_up());
        let r = b.ramp(slow);
        assert!(r < 0.05, "just returned: {r}");
        assert_eq!(b.ramp(Duration::ZERO), 1.0, "slow start off");
    }

    #[test]
    fn admin_drain_takes_a_backend_out_of_service_without_closing_sessions() {
        let b = backend();
        let token = b.session_token();
        assert_eq!(b.set_admin(Admin::Drain), Admin::Ready);
        assert!(!b.in_service());
        assert!(b.is_up());
        assert!(!token.is_cancelled());
        b.set_admin(Admin::Ready);
        assert!(b.in_service());
        assert!(
            b.ramp(Duration::from_secs(30)) < 0.05,
            "enable ramps like a return"
        );
    }
}
