//! The balancer: listeners, the backend pool, reload and drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, DownPolicy, lock};
use crate::config::LbConfig;
use crate::health::Checker;
use crate::policy::Selector;
use crate::status::{Admin, BackendStatus, LbStatus};
use crate::{LbError, session};

/// How long [`Balancer::drain_listening`] keeps accepting at least: the new holder's
/// gratuitous ARP reaches clients within milliseconds; a SYN sent just before it is
/// retransmitted after 1 s.
const LISTEN_GRACE: Duration = Duration::from_secs(2);

/// Everything a new session needs, swapped whole on reload. Sessions keep the pool they
/// started with, so a reload never touches a tunnel in progress.
#[derive(Debug)]
pub(crate) struct Pool {
    pub backends: Vec<Arc<Backend>>,
    pub selector: Selector,
    pub connect_timeout: Duration,
    pub passive_fall: u32,
    pub connect_retries: u32,
    pub down_policy: DownPolicy,
    pub slow_start: Duration,
    pub idle_timeout: Option<Duration>,
    pub tcp_keepalive: Option<Duration>,
    pub max_per_backend: Option<usize>,
    pub splice: bool,
    pub checks_enabled: bool,
}

struct ListenerHandle {
    local: SocketAddr,
    stop: CancellationToken,
    sessions: Arc<ListenerSessions>,
    /// One socket per worker (SO_REUSEPORT group when there are several); a duplicate of each
    /// descriptor, kept to retune them on reload and dropped with the handle.
    sockets: Vec<Socket>,
}

/// The sessions accepted on one listener, so they can be reset together.
#[derive(Debug, Default)]
pub(crate) struct ListenerSessions {
    /// Fires (and is replaced) to reset every session of the listener.
    pub reset: Mutex<CancellationToken>,
    pub active: AtomicUsize,
}

pub(crate) struct Shared {
    pool: RwLock<Arc<Pool>>,
    listeners: Mutex<HashMap<SocketAddr, ListenerHandle>>,
    checks_stop: Mutex<CancellationToken>,
    limit: Arc<Semaphore>,
    max_connections: AtomicUsize,
    /// Stops every listener (drain, drop).
    accept_stop: CancellationToken,
    /// Closes every session (drain timeout, drop).
    pub hard_stop: CancellationToken,
    sessions: TaskTracker,
    /// The accept loops, so a drain returns only once no listener is left.
    accept_loops: TaskTracker,
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub failed: AtomicU64,
    draining: AtomicBool,
    /// Serialises reloads so two cannot interleave their listener changes.
    reload_lock: tokio::sync::Mutex<()>,
    workers: Workers,
    /// The internal listener of [`Balancer::probe_path`], with the check it sends.
    probe: Mutex<Option<Probe>>,
}

struct Probe {
    addr: SocketAddr,
    checker: Arc<Checker>,
    settings: crate::config::PathProbe,
    /// Keeps the listener's descriptor; its accept loop stops with the balancer.
    _socket: Socket,
}

/// Where the data path runs: the caller's runtime (`threads: 0`), or dedicated threads with a
/// current-thread runtime each, so no session ever moves between threads and the daemon's own
/// timers (VRRP adverts) never queue behind proxied traffic.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    /// Ends the dedicated threads.
    stop: CancellationToken,
}

impl Workers {
    fn start(threads: usize) -> Result<Workers, LbError> {
        let stop = CancellationToken::new();
        if threads == 0 {
            return Ok(Workers {
                handles: vec![tokio::runtime::Handle::current()],
                stop,
            });
        }
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LbError::Runtime)?;
            handles.push(rt.handle().clone());
            rt.spawn(timer_anchor());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("haplane-lb-{i}"))
                .spawn(move || rt.block_on(stop.cancelled()))
                .map_err(LbError::Runtime)?;
        }
        Ok(Workers { handles, stop })
    }

    fn len(&self) -> usize {
        self.handles.len()
    }
}

/// Keeps a timer pending on a worker at all times. tokio's time driver wakes its own thread
/// (an eventfd write, and an extra epoll_wait) whenever a timer is set that expires before
/// the driver's next planned wakeup, and with no timer pending that is every timer: so each
/// new session's connect timeout cost a syscall or two (0.67 writes per connection measured
/// with strace -c -f, `wrk -H 'Connection: close'`). With an earlier timer always pending, a
/// connect timeout (1 s by default) is later than the planned wakeup and is merely filed.
async fn timer_anchor() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

/// Shorter than the connect timeouts in use (1 s by default); four wakeups a second cost nothing.
const TIMER_ANCHOR: Duration = Duration::from_millis(250);

impl Shared {
    pub fn pool(&self) -> Arc<Pool> {
        self.pool.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running load balancer. Dropping it stops listeners, checks and sessions at once;
/// call [`Balancer::drain`] for a graceful stop.
pub struct Balancer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("listening", &self.local_addrs())
            .finish()
    }
}

impl Balancer {
    /// Validates `config`, binds every listener and starts the health checks.
    /// Must be called within a tokio runtime.
    pub async fn start(config: LbConfig) -> Result<Balancer, LbError> {
        config.validate()?;
        let checker = Arc::new(Checker::new(&config.health_check, down_policy(&config))?);
        let pool = Arc::new(build_pool(&config, &[], checker.enabled()));
        let mut bound = Vec::new();
        for &addr in &config.listen {
            bound.push((addr, bind_group(addr, &config)?));
        }
        let workers = Workers::start(config.threads)?;
        let shared = Arc::new(Shared {
            pool: RwLock::new(pool.clone()),
            listeners: Mutex::new(HashMap::new()),
            checks_stop: Mutex::new(CancellationToken::new()),
            limit: Arc::new(Semaphore::new(config.max_connections)),
            max_connections: AtomicUsize::new(config.max_connections),
            accept_stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            sessions: TaskTracker::new(),
            accept_loops: TaskTracker::new(),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            workers,
            probe: Mutex::new(None),
        });
        for (addr, l) in bound {
            spawn_listener(&shared, addr, l);
        }
        if let Some(settings) = &config.path_probe {
            start_probe(&shared, &config, settings.clone(), checker.clone())?;
        }
        let stop = lock(&shared.checks_stop).clone();
        for b in &pool.backends {
            checker.spawn(b.clone(), stop.child_token());
        }
        tracing::info!(listen = ?config.listen, backends = pool.backends.len(), policy = ?config.policy,
            threads = config.threads, "load balancer started");
        Ok(Balancer { shared })
    }

    /// Applies a new configuration in place: backends (matched by address, keeping their
    /// state and counters), policy, checks, limits and listeners. Established sessions are
    /// left alone, including those to removed backends. On error nothing changes.
    pub async fn reload(&self, config: LbConfig) -> Result<(), LbError> {
        let _serial = self.shared.reload_lock.lock().await;
        if self.shared.draining.load(Relaxed) {
            return Err(LbError::Draining);
        }
        config.validate()?;
        let checker = Arc::new(Checker::new(&config.health_check, down_policy(&config))?);
        // Bind new listeners first: if one fails, the old configuration stays whole.
        let mut fresh = Vec::new();
        {
            let listeners = lock(&self.shared.listeners);
            for &addr in &config.listen {
                if !listeners.contains_key(&addr) && !fresh.iter().any(|(a, _)| *a == addr) {
                    fresh.push((addr, bind_group(addr, &config)?));
                }
            }
        }
        let old = self.shared.pool();
        let pool = Arc::new(build_pool(&config, &old.backends, checker.enabled()));
        *self.shared.pool.write().unwrap_or_else(|p| p.into_inner()) = pool.clone();

        // Restart checks with the new settings; backend state carries over.
        let stop = {
            let mut guard = lock(&self.shared.checks_stop);
            guard.cancel();
            *guard = CancellationToken::new();
            guard.clone()
        };
        for b in &pool.backends {
            checker.spawn(b.clone(), stop.child_token());
        }

        for (addr, l) in fresh {
            spawn_listener(&self.shared, addr, l);
        }
        if let Some(p) = lock(&self.shared.probe).as_mut() {
            // The probe listener stays; its request follows the new check settings.
            p.checker = checker.clone();
        }
        lock(&self.shared.listeners).retain(|addr, h| {
            let keep = config.listen.contains(addr);
            if keep {
                // Accepted sockets inherit these from the listener.
                for sock in &h.sockets {
                    session::tune(sock, config.tcp_keepalive);
                }
            } else {
                tracing::info!(listen = %addr, "listener removed by reload");
                h.stop.cancel();
            }
            keep
        });

        let new_max = config.max_connections;
        let old_max = self.shared.max_connections.swap(new_max, Relaxed);
        if new_max > old_max {
            self.shared.limit.add_permits(new_max - old_max);
        } else if new_max < old_max {
            let deficit = old_max - new_max;
            let forgotten = self.shared.limit.forget_permits(deficit);
            if forgotten < deficit {
                // Permits still held by sessions are retired as those sessions end.
                let limit = self.shared.limit.clone();
                let rest = (deficit - forgotten) as u32;
                tokio::spawn(async move {
                    if let Ok(p) = limit.acquire_many(rest).await {
                        p.forget();
                    }
                });
            }
        }
        tracing::info!(backends = pool.backends.len(), policy = ?config.policy, "load balancer reloaded");
        Ok(())
    }

    /// Addresses actually bound (resolves port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = lock(&self.shared.listeners)
            .values()
            .map(|h| h.local)
            .collect();
        v.sort();
        v
    }

    /// Current state and counters, ready to serialize for /status or export as metrics.
    pub fn snapshot(&self) -> LbStatus {
        let pool = self.shared.pool();
        LbStatus {
            listening: self.local_addrs(),
            policy: pool.selector.policy,
            active_connections: self.shared.active.load(Relaxed) as u64,
            total_connections: self.shared.total.load(Relaxed),
            failed_connections: self.shared.failed.load(Relaxed),
            draining: self.shared.draining.load(Relaxed),
            backends: pool
                .backends
                .iter()
                .map(|b| b.status(pool.slow_start))
                .collect(),
        }
    }

    /// Sends one readiness request (the configured health check: HTTP(S) GET of its path, or a
    /// TCP connect) through this balancer's own accept, selection, connect and data path, on
    /// its internal loopback listener (see [`crate::LbConfig::path_probe`]). Ok with the
    /// latency when a ready backend answered through it. A TCP check only proves the listener
    /// accepts, so with one the answer is also "some backend is in service".
    pub async fn probe_path(&self) -> Result<Duration, String> {
        let (addr, checker, settings) = {
            let p = lock(&self.shared.probe);
            let Some(p) = p.as_ref() else {
                return Err("no path probe listener (LbConfig::path_probe is None)".to_string());
            };
            (p.addr, p.checker.clone(), p.settings.clone())
        };
        let started = std::time::Instant::now();
        let timeout = checker.cfg.timeout;
        let result = tokio::time::timeout(
            timeout,
            checker.probe_as(addr, settings.server_name.as_deref()),
        )
        .await;
        match result {
            Err(_) => Err(format!("no answer through the balancer within {timeout:?}")),
            Ok(Err(e)) => Err(format!("through the balancer: {}", e.message())),
            Ok(Ok(())) => {
                if matches!(
                    checker.cfg.kind,
                    crate::config::CheckKind::Tcp | crate::config::CheckKind::None
                ) && !self.shared.pool().backends.iter().any(|b| b.in_service())
                {
                    return Err("no backend in service".to_string());
                }
                Ok(started.elapsed())
            }
        }
    }

    /// Resets every client session accepted on a listener bound to `ip` (the VIP, when a
    /// parked VIP leaves this node and nothing would carry those sessions' packets any more).
    /// Returns how many there were.
    pub fn reset_sessions_to(&self, ip: std::net::IpAddr) -> usize {
        let listeners = lock(&self.shared.listeners);
        let mut n = 0;
        for h in listeners.values().filter(|h| h.local.ip() == ip) {
            n += h.sessions.active.load(Relaxed);
            std::mem::take(&mut *lock(&h.sessions.reset)).cancel();
        }
        n
    }

    /// Sets a backend's admin state (`haplane lb drain|enable`): `Drain` takes no new sessions
    /// and leaves established ones alone; `Ready` puts it back, ramping over the slow start.
    /// Kept across reloads, not across restarts.
    pub fn set_admin(&self, backend: SocketAddr, admin: Admin) -> Result<BackendStatus, LbError> {
        let pool = self.shared.pool();
        let b = pool
            .backends
            .iter()
            .find(|b| b.addr == backend)
            .ok_or_else(|| LbError::UnknownBackend {
                backend,
                known: pool.backends.iter().map(|b| b.addr).collect(),
            })?;
        b.set_admin(admin);
        Ok(b.status(pool.slow_start))
    }

    /// Graceful stop: stop accepting, let tunnels finish for up to `timeout`, then close the
    /// rest. Returns when every session has ended.
    pub async fn drain(self, timeout: Duration) {
        self.drain_shared(timeout).await;
    }

    /// [`Balancer::drain`] through a shared reference, for a balancer other parts of a program
    /// still hold (the daemon's admin socket, its status page).
    pub async fn drain_shared(&self, timeout: Duration) {
        self.drain_impl(timeout, false).await;
    }

    /// Like [`Balancer::drain_shared`], but the listeners keep accepting until the sessions
    /// are done or the timeout: for a node whose VIP is parked on lo while it stops, so a
    /// client whose ARP cache still points here (until the new holder's gratuitous ARP
    /// reaches it) is served instead of refused. New sessions join the drain.
    pub async fn drain_listening(&self, timeout: Duration) {
        self.drain_impl(timeout, true).await;
    }

    fn stop_listeners(&self) {
        self.shared.accept_stop.cancel();
        lock(&self.shared.listeners).clear();
        *lock(&self.shared.probe) = None;
        self.shared.accept_loops.close();
    }

    async fn drain_impl(&self, timeout: Duration, keep_listening: bool) {
        self.shared.draining.store(true, Relaxed);
        if !keep_listening {
            self.stop_listeners();
            self.shared.accept_loops.wait().await;
        }
        let active = self.shared.active.load(Relaxed);
        tracing::info!(active, ?timeout, keep_listening, "draining load balancer");
        self.shared.sessions.close();
        let started = tokio::time::Instant::now();
        let drained = tokio::time::timeout(timeout, self.shared.sessions.wait()).await;
        if keep_listening {
            // However soon the sessions end, listen a little longer for late clients.
            let grace = LISTEN_GRACE.min(timeout);
            tokio::time::sleep_until(started + grace).await;
            self.stop_listeners();
            self.shared.accept_loops.wait().await;
        }
        if drained.is_err() {
            let left = self.shared.active.load(Relaxed);
            tracing::warn!(left, "drain timeout reached, closing remaining sessions");
            self.shared.hard_stop.cancel();
            self.shared.sessions.wait().await;
        }
        lock(&self.shared.checks_stop).cancel();
        self.shared.workers.stop.cancel();
        tracing::info!("load balancer drained");
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.accept_stop.cancel();
        self.shared.hard_stop.cancel();
        lock(&self.shared.checks_stop).cancel();
        // The threads end; their runtimes drop whatever tasks are left.
        self.shared.workers.stop.cancel();
    }
}

fn build_pool(config: &LbConfig, previous: &[Arc<Backend>], checks_enabled: bool) -> Pool {
    let backends: Vec<Arc<Backend>> = config
        .backends
        .iter()
        .map(|bc| match previous.iter().find(|b| b.addr == bc.addr) {
            Some(b) => {
                b.weight.store(bc.weight, Relaxed);
                b.clone()
            }
            None => Arc::new(Backend::new(bc.addr, bc.weight)),
        })
        .collect();
    let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
    Pool {
        selector: Selector::new(config.policy, &weights, config.slow_start),
        backends,
        connect_timeout: config.connect_timeout,
        passive_fall: config.passive_fall,
        connect_retries: config.connect_retries,
        down_policy: down_policy(config),
        slow_start: config.slow_start,
        idle_timeout: config.idle_timeout,
        tcp_keepalive: config.tcp_keepalive,
        max_per_backend: config.max_connections_per_backend,
        splice: config.splice,
        checks_enabled,
    }
}

fn down_policy(config: &LbConfig) -> DownPolicy {
    DownPolicy {
        shutdown_sessions: config.shutdown_sessions_on_down,
        drain_timeout: config.backend_drain_timeout,
    }
}

/// Binds the internal probe listener on 127.0.0.1 and serves it on the first worker.
fn start_probe(
    shared: &Arc<Shared>,
    config: &LbConfig,
    settings: crate::config::PathProbe,
    checker: Arc<Checker>,
) -> Result<(), LbError> {
    let want: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sock = bind(want, config, false)?;
    let addr = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| LbError::Bind {
            addr: want,
            error: std::io::Error::other("no local address"),
        })?;
    let dup = sock
        .try_clone()
        .map_err(|error| LbError::Bind { addr, error })?;
    let worker = shared.workers.handles[0].clone();
    let stop = shared.accept_stop.child_token();
    let sessions = Arc::new(ListenerSessions::default());
    let shared2 = shared.clone();
    shared.accept_loops.spawn_on(
        tracing::Instrument::in_current_span(async move {
            match TcpListener::from_std(sock.into()) {
                Ok(l) => accept_loop(shared2, l, addr, stop, sessions).await,
                Err(e) => tracing::error!(listen = %addr, error = %e, "cannot register the probe listener"),
            }
        }),
        &worker,
    );
    *lock(&shared.probe) = Some(Probe {
        addr,
        checker,
        settings,
        _socket: dup,
    });
    Ok(())
}

/// The listening sockets for `addr`: one, or one per worker thread in an SO_REUSEPORT group so
/// the kernel spreads new connections over the threads.
///
/// SO_REUSEPORT would let any other process of the same user join the group and silently take
/// a share of the clients (haproxy, which sets it by default, left running on 6443 during a
/// migration). So the address is first probed with a plain bind, which fails if anyone listens
/// there already.
fn bind_group(addr: SocketAddr, config: &LbConfig) -> Result<Vec<Socket>, LbError> {
    let n = config.threads.max(1);
    if n == 1 {
        return Ok(vec![bind(addr, config, false)?]);
    }
    if addr.port() != 0 {
        drop(bind(addr, config, false)?);
    }
    let first = bind(addr, config, true)?;
    // Port 0: the others join the port the first one got.
    let local = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let mut group = vec![first];
    for _ in 1..n {
        group.push(bind(local, config, true)?);
    }
    Ok(group)
}

/// A listening socket with IP_FREEBIND, so a VIP can be bound before this node holds it.
fn bind(addr: SocketAddr, config: &LbConfig, reuse_port: bool) -> Result<Socket, LbError> {
    let err = |error| LbError::Bind { addr, error };
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        sock.set_reuse_port(true).map_err(err)?;
    }
    if addr.is_ipv4() {
        sock.set_freebind_v4(true).map_err(err)?;
    } else {
        sock.set_freebind_v6(true).map_err(err)?;
        sock.set_only_v6(true).map_err(err)?;
    }
    sock.set_nonblocking(true).map_err(err)?;
    // Set once here, inherited by every accepted socket (Linux copies them on accept).
    session::tune(&sock, config.tcp_keepalive);
    sock.bind(&SockAddr::from(addr)).map_err(err)?;
    sock.listen(config.backlog.min(i32::MAX as u32) as i32)
        .map_err(err)?;
    Ok(sock)
}

fn spawn_listener(shared: &Arc<Shared>, addr: SocketAddr, group: Vec<Socket>) {
    let local = group
        .first()
        .and_then(|s| s.local_addr().ok())
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let stop = shared.accept_stop.child_token();
    let sessions = Arc::new(ListenerSessions::default());
    let mut kept = Vec::with_capacity(group.len());
    for (i, sock) in group.into_iter().enumerate() {
        if let Ok(dup) = sock.try_clone() {
            kept.push(dup);
        }
        let worker = shared.workers.handles[i % shared.workers.len()].clone();
        let shared = shared.clone();
        let stop = stop.clone();
        let sessions = sessions.clone();
        let accept_loops = shared.accept_loops.clone();
        accept_loops.spawn_on(
            tracing::Instrument::in_current_span(async move {
                // Registered with the reactor of the worker that runs this loop.
                let listener = match TcpListener::from_std(sock.into()) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(listen = %local, error = %e, "cannot register listener");
                        return;
                    }
                };
                accept_loop(shared, listener, local, stop, sessions).await;
            }),
            &worker,
        );
    }
    lock(&shared.listeners).insert(
        addr,
        ListenerHandle {
            local,
            stop,
            sessions,
            sockets: kept,
        },
    );
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: SocketAddr,
    stop: CancellationToken,
    sessions: Arc<ListenerSessions>,
) {
    tracing::info!(listen = %local, "listening");
    loop {
        // Take a connection slot before accepting: at the limit, clients wait in the kernel
        // backlog instead of being refused.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = shared.limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                shared.total.fetch_add(1, Relaxed);
                shared.sessions.spawn(session::run(
                    sock,
                    peer,
                    shared.clone(),
                    permit,
                    sessions.clone(),
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listen = %local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::info!(listen = %local, "listener stopped");
}
