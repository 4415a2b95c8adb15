//! One client connection: pick a backend, connect with retries, then tunnel until both sides
//! are done, the backend is marked down, the idle timeout fires, or a drain closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{Backend, CloseReason, PassivePolicy, now_ms};
use crate::balancer::{ListenerSessions, Pool, Shared};
use crate::datapath::one_way;
use crate::passive::{ConnectFailure, Verdict};
use crate::policy::Tier;

/// Decrements a backend's active count however the session ends.
struct Active(Arc<Backend>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

pub(crate) async fn run(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    listener: Arc<ListenerSessions>,
) {
    shared.active.fetch_add(1, Relaxed);
    let _count = scopeguard(&shared);
    listener.active.fetch_add(1, Relaxed);
    let _on_listener = ListenerCount(&listener);
    let listener_reset = crate::backend::lock(&listener.reset).clone();
    let pool = shared.pool();
    // TCP_NODELAY and keepalive come from the listener: accepted sockets inherit them.
    let Some((server, active)) = connect(&pool, peer).await else {
        shared.failed.fetch_add(1, Relaxed);
        tracing::warn!(%peer, "no backend reachable, closing client");
        return;
    };
    let backend = active.0.clone();
    tune(&server, pool.tcp_keepalive);
    backend.total.fetch_add(1, Relaxed);
    let down = backend.session_token();
    let activity = AtomicU64::new(now_ms());
    let ended = AtomicBool::new(false);
    // The backend ending a silent session first may be its death (crate::burst).
    let backend_closed = |silent: Duration| {
        backend.closed_a_session(Instant::now(), silent, pool.checks_enabled);
    };
    let tunnel = async {
        tokio::try_join!(
            one_way(
                &client,
                &server,
                &backend.bytes_to_backend,
                &activity,
                pool.splice,
                &ended,
                &|_| {}
            ),
            one_way(
                &server,
                &client,
                &backend.bytes_from_backend,
                &activity,
                pool.splice,
                &ended,
                &backend_closed
            ),
        )
    };
    tokio::select! {
        r = tunnel => {
            if let Err(e) = r {
                tracing::debug!(%peer, backend = %backend.addr, error = %e, "tunnel ended with error");
                // Pass the abort on as a reset rather than a clean end of stream.
                reset(&client);
                reset(&server);
            }
        }
        _ = down.cancelled() => {
            let reason = backend.close_reason();
            match reason {
                CloseReason::Dead => backend.sessions_closed_on_down.fetch_add(1, Relaxed),
                CloseReason::DrainTimeout => backend.sessions_closed_drain_timeout.fetch_add(1, Relaxed),
            };
            tracing::debug!(%peer, backend = %backend.addr, ?reason, "closing session");
            // A reset makes the client give up this connection at once, even mid-request.
            reset(&client);
            reset(&server);
        }
        _ = listener_reset.cancelled() => {
            tracing::debug!(%peer, backend = %backend.addr, "resetting session: its listener's address left this node");
            reset(&client);
            reset(&server);
        }
        _ = shared.hard_stop.cancelled() => {
            tracing::debug!(%peer, backend = %backend.addr, "closing session: drain timeout");
        }
        _ = idle(&activity, pool.idle_timeout) => {
            tracing::debug!(%peer, backend = %backend.addr, "closing session: idle timeout");
        }
    }
    tracing::debug!(%peer, backend = %backend.addr, "session ended");
    drop(active);
}

struct ListenerCount<'a>(&'a ListenerSessions);

impl Drop for ListenerCount<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

fn scopeguard(shared: &Arc<Shared>) -> impl Drop + '_ {
    struct G<'a>(&'a Shared);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            self.0.active.fetch_sub(1, Relaxed);
        }
    }
    G(shared)
}

/// Connects the client's session to a backend: rounds of [`connect_round`], and when a round
/// found every backend refusing, resetting or timing out while one of them was merely
/// overloaded (a full listen queue: other connects to it got through), up to
/// `connect_retries` more after 10, 20, 40 ms... so a reconnect storm's queue can drain
/// instead of the client being closed (haproxy's `retries`). A round where nothing was
/// overloaded ends it at once: refusals everywhere mean nothing listens, and a client that
/// is closed reconnects by itself.
async fn connect(pool: &Pool, peer: SocketAddr) -> Option<(TcpStream, Active)> {
    let mut backoff = CONNECT_RETRY_BACKOFF;
    let mut retries = 0;
    loop {
        match connect_round(pool, peer).await {
            Round::Connected(s, a) => return Some((s, a)),
            Round::Overloaded if retries < pool.connect_retries => {
                retries += 1;
                tracing::debug!(%peer, retries, ?backoff, "every backend failed, one of them overloaded: retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Round::Overloaded | Round::Failed => return None,
        }
    }
}

/// The first pause between two connect rounds; it doubles each time.
const CONNECT_RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// How one round of connects ended.
enum Round {
    Connected(TcpStream, Active),
    /// Every backend failed, and at least one failure was judged overloaded.
    Overloaded,
    /// Every backend failed (or this host is short of sockets).
    Failed,
}

/// Tries healthy backends in policy order, then — only when none is left — the ones that still
/// answer their checks, then the dead ones.
/// A refused, reset or timed-out connect moves on at once, so the client never sees it.
async fn connect_round(pool: &Pool, peer: SocketAddr) -> Round {
    let mut overloaded = false;
    let passive = PassivePolicy {
        passive_fall: pool.passive_fall,
        connect_timeout: pool.connect_timeout,
        down: pool.down_policy,
    };
    let mut tried: Vec<usize> = Vec::new();
    for tier in [
        Tier::Healthy,
        Tier::HealthyUnramped,
        Tier::LastResort,
        Tier::LastResortDead,
    ] {
        loop {
            let usable = |i: usize| {
                !tried.contains(&i)
                    && pool
                        .max_per_backend
                        .is_none_or(|m| pool.backends[i].active.load(Relaxed) < m)
            };
            let Some(i) = pool.selector.pick(&pool.backends, tier, usable) else {
                break;
            };
            tried.push(i);
            let b = pool.backends[i].clone();
            let before = b.active.fetch_add(1, Relaxed);
            let active = Active(b.clone());
            if pool.max_per_backend.is_some_and(|m| before >= m) {
                continue; // lost a race for the last slot
            }
            let started = Instant::now();
            let (failure, err) = match tokio::time::timeout(
                pool.connect_timeout,
                TcpStream::connect(b.addr),
            )
            .await
            {
                Ok(Ok(s)) => {
                    b.connect_succeeded(Instant::now(), pool.checks_enabled, pool.down_policy);
                    return Round::Connected(s, active);
                }
                Ok(Err(e)) if local_shortage(&e) => {
                    // Our own fd or port exhaustion says nothing about the backend.
                    tracing::warn!(%peer, backend = %b.addr, error = %e, "cannot open backend socket");
                    return Round::Failed;
                }
                Ok(Err(e)) => (ConnectFailure::of(&e), e.to_string()),
                Err(_) => (
                    ConnectFailure::TimedOut,
                    format!("connect timed out after {:?}", pool.connect_timeout),
                ),
            };
            // An overloaded backend says so itself (rate-limited); only real failures here.
            if b.connect_failed(failure, started, passive, &err) == Verdict::Counts {
                tracing::info!(%peer, backend = %b.addr, ?tier, error = %err, "connect failed, trying next backend");
            } else {
                overloaded = true;
                tracing::debug!(%peer, backend = %b.addr, ?tier, error = %err, "connect failed (overloaded), trying next backend");
            }
        }
    }
    if overloaded {
        Round::Overloaded
    } else {
        Round::Failed
    }
}

fn local_shortage(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM | Errno::EADDRNOTAVAIL)
    )
}

/// TCP_NODELAY (requests and answers are small and latency-bound) and keepalive, so a peer
/// that vanished without a FIN is noticed even on a tunnel with no idle timeout.
pub(crate) fn tune(s: impl std::os::fd::AsFd, keepalive: Option<Duration>) {
    let s = SockRef::from(&s);
    let _ = s.set_tcp_nodelay(true);
    match keepalive {
        None => {
            let _ = s.set_keepalive(false);
        }
        Some(idle) => {
            let interval = (idle / 3).max(Duration::from_secs(1));
            let ka = TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval)
                .with_retries(3);
            if let Err(e) = s.set_tcp_keepalive(&ka) {
                tracing::debug!(error = %e, "cannot set tcp keepalive");
            }
        }
    }
}

fn reset(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// Resolves once no byte moved in either direction for `timeout`; never without a timeout.
async fn idle(activity: &AtomicU64, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    let mut seen = activity.load(Relaxed);
    loop {
        tokio::time::sleep(timeout).await;
        let now = activity.load(Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}
