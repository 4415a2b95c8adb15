//! Runtime configuration: plain Rust types, filled in by the daemon from its YAML.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::LbError;

/// Largest accepted backend weight; bounds the round-robin schedule to 256 slots per backend.
pub const MAX_WEIGHT: u32 = 256;

/// The whole balancer configuration. `LbConfig::default()` gives the documented defaults with
/// no listeners and no backends.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Addresses to accept clients on (VIP:6443 on masters, 127.0.0.1:6443 on workers).
    /// Bound with IP_FREEBIND, so a VIP this node does not hold yet is fine. Port 0 picks one.
    pub listen: Vec<SocketAddr>,
    /// The apiservers.
    pub backends: Vec<BackendConfig>,
    /// How a backend is picked for a new connection.
    pub policy: Policy,
    /// Active health checks.
    pub health_check: HealthCheckConfig,
    /// A connect slower than this counts as a failure and is retried on the next backend (1 s).
    pub connect_timeout: Duration,
    /// Consecutive failed connects that mark a backend down (3). A refused connect always
    /// counts; a reset or timed-out one only when no other connect to that backend succeeded
    /// from one `connect_timeout` before it started until it failed: otherwise the backend is
    /// overloaded (a full listen queue), not dead, and stays up.
    pub passive_fall: u32,
    /// When one round of connects found every backend failing but one of them only overloaded
    /// (its listen queue full while other connects get through), how many more rounds a
    /// client's session gets, after 10, 20, 40 ms... (3, as haproxy's `retries`; 0: none).
    pub connect_retries: u32,
    /// Close established sessions of a backend when it is marked dead (true), like haproxy's
    /// `on-marked-down shutdown-sessions`, so clients reconnect at once. A draining backend
    /// (answers, but not ready) keeps its sessions; see `backend_drain_timeout`.
    pub shutdown_sessions_on_down: bool,
    /// How long the established sessions of a draining backend may continue before they are
    /// closed (3 min: a kube-apiserver keeps serving for `--shutdown-delay-duration`, 70 s on
    /// OpenShift, then drains requests for up to 60 s, and closes its watches itself).
    pub backend_drain_timeout: Duration,
    /// A backend coming back to service (dead or draining to up, admin drain to ready) gets a
    /// share of new sessions that rises linearly from 0 to its full weight over this period
    /// (30 s; zero turns it off), like haproxy's `slowstart`. The balancer's start is not a
    /// return: backends start at full weight.
    pub slow_start: Duration,
    /// Close a tunnel idle for this long (None: never, the default, so watches and
    /// `kubectl logs -f` survive; kubeadm#2227).
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time on both sides (Some(30 s)); probes then every third of it, 3 times.
    pub tcp_keepalive: Option<Duration>,
    /// Maximum concurrent client connections; further clients wait in the kernel backlog (100 000).
    pub max_connections: usize,
    /// Maximum concurrent connections to one backend (None: unlimited). A backend at its limit
    /// is skipped; when every backend is at its limit the client is closed.
    pub max_connections_per_backend: Option<usize>,
    /// How long `drain` lets established tunnels run before closing them (30 s).
    pub drain_timeout: Duration,
    /// Use splice(2) for bulk transfers (true); small messages are always copied through one
    /// per-thread buffer, which is cheaper than four splice calls.
    pub splice: bool,
    /// listen(2) backlog (4096; the kernel caps it at net.core.somaxconn).
    pub backlog: u32,
    /// Data-path threads (0). 0 runs sessions on the runtime that called [`crate::Balancer::start`];
    /// N ≥ 1 starts N threads with a current-thread runtime each and one listening socket per
    /// thread (an SO_REUSEPORT group), like haproxy's `nbthread`. Fixed at start: a reload
    /// keeps the threads it has.
    pub threads: usize,
    /// An internal listener on 127.0.0.1 (port chosen by the kernel) for
    /// [`crate::Balancer::probe_path`]: a readiness request sent through the balancer itself,
    /// so a node can tell whether its balancer reaches a ready backend (None: no such listener).
    pub path_probe: Option<PathProbe>,
}

/// The settings of [`LbConfig::path_probe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathProbe {
    /// The TLS name the answering backend is verified against (the VIP, which the apiserver
    /// certificates carry); None: the health check's own name, else 127.0.0.1.
    pub server_name: Option<String>,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            listen: Vec::new(),
            backends: Vec::new(),
            policy: Policy::default(),
            health_check: HealthCheckConfig::default(),
            connect_timeout: Duration::from_secs(1),
            passive_fall: 3,
            connect_retries: 3,
            shutdown_sessions_on_down: true,
            backend_drain_timeout: Duration::from_secs(180),
            slow_start: Duration::from_secs(30),
            idle_timeout: None,
            tcp_keepalive: Some(Duration::from_secs(30)),
            max_connections: 100_000,
            max_connections_per_backend: None,
            drain_timeout: Duration::from_secs(30),
            splice: true,
            backlog: 4096,
            threads: 0,
            path_probe: None,
        }
    }
}

impl LbConfig {
    /// Checks the values that would make the balancer misbehave.
    pub fn validate(&self) -> Result<(), LbError> {
        let bad = |m: &str| Err(LbError::InvalidConfig(m.to_string()));
        if self.listen.is_empty() {
            return bad("listen: at least one address is needed");
        }
        if self.backends.is_empty() {
            return bad("backends: at least one backend is needed");
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.weight > MAX_WEIGHT {
                return bad(&format!(
                    "backends[{i}].weight: must be at most {MAX_WEIGHT}"
                ));
            }
            if b.addr.port() == 0 {
                return bad(&format!("backends[{i}].addr: port 0"));
            }
            if self.backends[..i].iter().any(|o| o.addr == b.addr) {
                return bad(&format!("backends[{i}].addr: duplicate {}", b.addr));
            }
        }
        if self.connect_timeout.is_zero() {
            return bad("connectTimeout: must be positive");
        }
        if self.passive_fall == 0 {
            return bad("passiveFall: must be at least 1");
        }
        if self.connect_retries > 10 {
            return bad("connectRetries: at most 10 (the pauses double from 10ms)");
        }
        if self.max_connections == 0 {
            return bad("maxConnections: must be at least 1");
        }
        if self.max_connections_per_backend == Some(0) {
            return bad("maxConnectionsPerBackend: must be at least 1");
        }
        if self
            .tcp_keepalive
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return bad("tcpKeepalive: must be at least 1s");
        }
        if self.threads > 64 {
            return bad("threads: at most 64");
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return bad("idleTimeout: must be positive (or unset for none)");
        }
        self.health_check.validate()
    }
}

/// One apiserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Address and port of the backend.
    pub addr: SocketAddr,
    /// Relative share of new connections, 0..=256 (1). Weight 0 takes no new connections unless
    /// every other backend is unusable.
    pub weight: u32,
}

impl BackendConfig {
    /// A backend with weight 1.
    pub fn new(addr: SocketAddr) -> Self {
        BackendConfig { addr, weight: 1 }
    }
}

/// Backend selection policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Smooth weighted round-robin (the default).
    #[default]
    RoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Two random backends, the less loaded one wins.
    RandomTwoChoices,
}

/// Active health checking of every backend.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// What a check does.
    pub kind: CheckKind,
    /// Time between the starts of two checks of one backend (1 s).
    pub interval: Duration,
    /// A check slower than this fails (1 s).
    pub timeout: Duration,
    /// Consecutive successes that mark a down backend up (2).
    pub rise: u32,
    /// Consecutive failures that mark an up backend down (2).
    pub fall: u32,
    /// Each interval is stretched or shrunk at random by up to this fraction (0.1), so the
    /// checks of many balancers do not hit an apiserver in lockstep.
    pub jitter: f64,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: CheckKind::Https(HttpCheck::default(), TlsCheck::default()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            jitter: 0.1,
        }
    }
}

impl HealthCheckConfig {
    fn validate(&self) -> Result<(), LbError> {
        let bad = |m: &str| Err(LbError::InvalidConfig(m.to_string()));
        if self.interval < Duration::from_millis(10) {
            return bad("healthCheck.interval: must be at least 10ms");
        }
        if self.timeout.is_zero() {
            return bad("healthCheck.timeout: must be positive");
        }
        if self.rise == 0 || self.fall == 0 {
            return bad("healthCheck.rise/fall: must be at least 1");
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return bad("healthCheck.jitter: must be within 0..=0.5");
        }
        match &self.kind {
            CheckKind::Http(h) | CheckKind::Https(h, _) => {
                if !h.path.starts_with('/') || h.path.contains(['\r', '\n', ' ']) {
                    return bad("healthCheck.path: must start with / and hold no spaces");
                }
                if h.host.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
                    return bad("healthCheck.host: must be one line");
                }
                if h.expect_status.is_empty() {
                    return bad("healthCheck.expectStatus: empty range");
                }
            }
            CheckKind::None | CheckKind::Tcp => {}
        }
        if let CheckKind::Https(_, t) = &self.kind {
            if t.client_cert.is_some() != t.client_key.is_some() {
                return bad("healthCheck: clientCert and clientKey go together");
            }
            if t.ca_file.is_none() && !t.insecure_skip_verify {
                return bad("healthCheck: https needs caFile or insecureSkipVerify: true");
            }
        }
        Ok(())
    }
}

/// What an active check does.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// No active checks: only passive detection marks backends down, and a successful connect
    /// marks them up again.
    None,
    /// A TCP connect.
    Tcp,
    /// HTTP/1.1 GET over plain TCP.
    Http(HttpCheck),
    /// HTTP/1.1 GET over TLS.
    Https(HttpCheck, TlsCheck),
}

/// The request and the answer an HTTP(S) check expects.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    /// Request path (/readyz: it fails as soon as an apiserver starts shutting down,
    /// kubernetes PR #88911).
    pub path: String,
    /// Host header (default: the backend address).
    pub host: Option<String>,
    /// Status codes that count as healthy (200..=299: /readyz answers 200 when ready; a redirect
    /// or an error page is not readiness).
    pub expect_status: RangeInclusive<u16>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            path: "/readyz".to_string(),
            host: None,
            expect_status: 200..=299,
        }
    }
}

/// TLS settings of the HTTPS check.
#[derive(Debug, Clone, Default)]
pub struct TlsCheck {
    /// PEM bundle of CAs trusted for the apiserver certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for apiservers that demand one.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate (signatures of the handshake are still checked).
    pub insecure_skip_verify: bool,
    /// Name to verify the certificate against (default: the backend IP address).
    pub server_name: Option<String>,
}
