//! VRRP failover benchmark: the outage a client sees when the VIP moves, for haplane and
//! keepalived with the same VRRP settings, in the same run.
//!
//! Topology (netlab): a switch and three hosts, m1 (192.0.2.11, priority 150), m2
//! (192.0.2.12, priority 100) and c1 (192.0.2.13, the client). The VIP is 192.0.2.100/24,
//! VRID 51. Both masters run a TCP listener on 0.0.0.0:PORT that answers every accepted
//! connection with one byte naming the host. The client in c1 connects to VIP:PORT every
//! 10 ms with a 10 ms connect timeout and records every attempt.
//!
//! One trial, per implementation and mode:
//! 1. start the daemon on m1 and m2; wait until m1 alone holds the VIP and the client has
//!    succeeded for a whole second;
//! 2. **link down**: take m1's link down (the switch port), wait until the client is served
//!    by m2 again;
//! 3. bring the link back, wait until m1 has preempted and serves the client again;
//! 4. **SIGTERM**: send SIGTERM to m1's daemon, wait until m2 serves the client again.
//!
//! Faults are injected [`PHASE`] after an advertisement from m1, as seen by a raw socket in
//! c1: the backup then waits nearly a whole Master_Down_Interval, the worst case, and the
//! same phase for both implementations (a fault at a random phase would add up to one
//! advert interval of noise, 1 s in v2).
//!
//! The gap of a fault is the longest interval without a successful connect that ends after
//! the fault: from the last success before it to the first success after it (10 ms
//! resolution). The takeover time is from the fault to the first sample (every 10 ms) in
//! which m2 holds the VIP; `client lag` = gap end − takeover shows whether the client's ARP
//! cache delayed it (nothing is flushed: the new master's gratuitous ARP must do that).

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netlab::{Host, ProcessHandle, Signal, Topology};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VRID: u8 = 51;
const M1_PRIORITY: u8 = 150;
const M2_PRIORITY: u8 = 100;
/// The client's attempt period and connect timeout (issue 2: "connects every 10 ms").
const PERIOD: Duration = Duration::from_millis(10);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(10);
/// How long the client must have been served without a miss before a fault is injected.
const STEADY: Duration = Duration::from_secs(1);
/// A client gap this much longer than the takeover is reported as a distortion.
const LAG_WARN: Duration = Duration::from_millis(50);
/// Delay between an advertisement from the master and the injected fault.
const PHASE: Duration = Duration::from_millis(10);
/// IANA protocol number of VRRP (RFC 5798 §5.1.1.4) and its IPv4 group (§5.1.1.2).
const IPPROTO_VRRP: i32 = 112;
const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const M1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// How long to keep recording after recovery, so a second outage would be seen too.
const AFTERWARDS: Duration = Duration::from_millis(500);

/// Everything that can stop the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A namespace operation failed.
    #[error("netlab: {0}")]
    Netlab(#[from] netlab::Error),
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A wait exceeded its limit.
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout {
        /// What did not happen.
        what: String,
        /// The limit.
        limit: Duration,
    },
    /// A daemon exited on its own.
    #[error("{0} exited during the trial")]
    DaemonExited(String),
    /// SIGINT or SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
    /// Bad command line.
    #[error("usage: {0}")]
    Usage(String),
}

type Result<T> = std::result::Result<T, BenchError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// Locks a mutex even if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// VRRP version and advertisement interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// VRRPv2 (RFC 3768), 1 s adverts.
    V2,
    /// VRRPv3 (RFC 5798), 100 ms adverts.
    V3,
}

impl Mode {
    fn version(self) -> u8 {
        match self {
            Mode::V2 => 2,
            Mode::V3 => 3,
        }
    }

    fn advert(self) -> Duration {
        match self {
            Mode::V2 => Duration::from_secs(1),
            Mode::V3 => Duration::from_millis(100),
        }
    }

    /// Skew_Time of the backup: v2 (256 − Priority)/256 s (RFC 3768 §6.1), v3
    /// ((256 − Priority) × Master_Adver_Interval)/256 (RFC 5798 §6.1).
    fn skew(self) -> Duration {
        self.advert() * (256 - u32::from(M2_PRIORITY)) / 256
    }

    /// Master_Down_Interval of the backup = 3 × Master_Adver_Interval + Skew_Time.
    fn master_down(self) -> Duration {
        3 * self.advert() + self.skew()
    }

    /// Generous limit for one VRRP event (election, failover, preemption).
    fn limit(self) -> Duration {
        match self {
            Mode::V2 => Duration::from_secs(15),
            Mode::V3 => Duration::from_secs(8),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::V2 => f.write_str("v2 1s"),
            Mode::V3 => f.write_str("v3 100ms"),
        }
    }
}

/// The VRRP implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Haplane,
    Keepalived,
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Impl::Haplane => f.write_str("haplane"),
            Impl::Keepalived => f.write_str("keepalived"),
        }
    }
}

struct Args {
    runs: usize,
    modes: Vec<Mode>,
    impls: Vec<Impl>,
    haplane: PathBuf,
    port: u16,
    keep: bool,
}

const USAGE: &str = "vrrp-bench --haplane PATH [--runs N] [--modes v2,v3] \
[--impls haplane,keepalived] [--port PORT] [--keep-logs]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 3,
        modes: vec![Mode::V2, Mode::V3],
        impls: vec![Impl::Haplane, Impl::Keepalived],
        haplane: PathBuf::new(),
        port: 8080,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BenchError::Usage(format!("{name} needs a value; {USAGE}")))
        };
        match flag.as_str() {
            "--runs" => {
                let v = value("--runs")?;
                args.runs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| BenchError::Usage(format!("--runs {v}: not a count > 0")))?;
            }
            "--modes" => {
                args.modes = value("--modes")?
                    .split(',')
                    .map(|m| match m {
                        "v2" => Ok(Mode::V2),
                        "v3" => Ok(Mode::V3),
                        _ => Err(BenchError::Usage(format!("unknown mode {m:?} (v2, v3)"))),
                    })
                    .collect::<Result<_>>()?;
            }
            "--impls" => {
                args.impls = value("--impls")?
                    .split(',')
                    .map(|m| match m {
                        "haplane" => Ok(Impl::Haplane),
                        "keepalived" => Ok(Impl::Keepalived),
                        _ => Err(BenchError::Usage(format!(
                            "unknown implementation {m:?} (haplane, keepalived)"
                        ))),
                    })
                    .collect::<Result<_>>()?;
            }
            "--haplane" => args.haplane = PathBuf::from(value("--haplane")?),
            "--port" => {
                let v = value("--port")?;
                args.port = v
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| BenchError::Usage(format!("--port {v}: not a port")))?;
            }
            "--keep-logs" => args.keep = true,
            "-h" | "--help" => return Err(BenchError::Usage(USAGE.to_owned())),
            other => return Err(BenchError::Usage(format!("unknown flag {other}; {USAGE}"))),
        }
    }
    if args.impls.contains(&Impl::Haplane) && !args.haplane.is_file() {
        return Err(BenchError::Usage(format!(
            "--haplane {:?} is not a file; {USAGE}",
            args.haplane
        )));
    }
    Ok(args)
}

/// One connect attempt of the client.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// When it started, since the trial's epoch.
    at: Duration,
    /// Whether the connect succeeded.
    ok: bool,
    /// The host byte the server sent (b'1' for m1, b'2' for m2), 0 if none was read.
    by: u8,
}

/// The client's record, shared with the client thread.
type Record = Arc<Mutex<Vec<Attempt>>>;

/// Connects to `dst` every [`PERIOD`] until `stop`. Runs inside the client's namespace.
fn client_loop(dst: SocketAddr, stop: &AtomicBool, record: &Record, epoch: Instant) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let start = Instant::now();
        // Keep the 10 ms grid while on time; after a timed-out attempt, go again at once.
        next = (next + PERIOD).max(start);
        let (ok, by) = match TcpStream::connect_timeout(&dst, CONNECT_TIMEOUT) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
                let mut b = [0u8; 1];
                (
                    true,
                    if s.read(&mut b).ok() == Some(1) {
                        b[0]
                    } else {
                        0
                    },
                )
            }
            Err(_) => (false, 0),
        };
        lock(record).push(Attempt {
            at: start - epoch,
            ok,
            by,
        });
    }
}

/// One VRRP advertisement seen on the wire by the client host.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Duration,
    src: Ipv4Addr,
    priority: u8,
}

/// Opens a raw socket for VRRP in the current namespace and joins the group on `local`'s
/// interface, so the client host sees every advertisement (the bridge floods multicast).
fn open_vrrp_socket(local: Ipv4Addr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))?;
    s.join_multicast_v4(&VRRP_GROUP, &local)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Records advertisements until `stop`.
fn sniff_loop(sock: socket2::Socket, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>, epoch: Instant) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = (&sock).read(&mut buf) else {
            continue;
        };
        let at = epoch.elapsed();
        // IPv4 header (IHL words), then VRRP: version/type, VRID, priority (RFC 5798 §5.1).
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if n < ihl + 4 || ihl < 20 {
            continue;
        }
        let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        lock(seen).push(Seen {
            at,
            src,
            priority: buf[ihl + 2],
        });
    }
}

/// Accepts on `listener` and answers each connection with `id`, until `stop`.
fn server_loop(listener: TcpListener, id: u8, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.write_all(&[id]);
            }
            // Non-blocking: poll so the thread notices `stop` (the kernel completes the
            // handshake on its own, so this adds nothing to the connect time measured).
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A scratch directory, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(keep: bool) -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("vrrp-bench.{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(io_err(format!("create {}", path.display())))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A daemon on one host and its log.
struct Daemon {
    name: String,
    handle: ProcessHandle,
    log: PathBuf,
}

impl Daemon {
    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn haplane_config(mode: Mode, state_dir: &Path) -> String {
    format!(
        "cluster: bench
nodes:
  - {{name: m1, address: 192.0.2.11, priority: {M1_PRIORITY}}}
  - {{name: m2, address: 192.0.2.12, priority: {M2_PRIORITY}}}
vip:
  address: {VIP}/24
  interface: eth0
  vrid: {VRID}
  version: {}
  advertInterval: {}ms
  unicast: false
  preempt: true
loadBalancer: {{enabled: false}}
stateDir: {}
",
        mode.version(),
        mode.advert().as_millis(),
        state_dir.display()
    )
}

/// keepalived.conf with the same VRRP settings as [`haplane_config`]; GARP settings are left
/// at keepalived's defaults, which are haplane's defaults too.
fn keepalived_config(mode: Mode, host: &str, priority: u8) -> String {
    format!(
        "global_defs {{
  router_id {host}
  vrrp_version {}
}}
vrrp_instance bench {{
  state BACKUP
  interface eth0
  virtual_router_id {VRID}
  priority {priority}
  advert_int {}
  virtual_ipaddress {{
    {VIP}/24 dev eth0
  }}
}}
",
        mode.version(),
        mode.advert().as_secs_f64()
    )
}

fn start_daemon(
    imp: Impl,
    mode: Mode,
    host: &Host,
    priority: u8,
    haplane: &Path,
    dir: &Path,
) -> Result<Daemon> {
    let name = host.name();
    let log = dir.join(format!("{name}-{imp}.log"));
    let file = std::fs::File::create(&log).map_err(io_err(format!("create {}", log.display())))?;
    let file2 = file
        .try_clone()
        .map_err(io_err(format!("dup {}", log.display())))?;
    let cmd = match imp {
        Impl::Haplane => {
            let cfg = dir.join(format!("{name}-haplane.yaml"));
            let state = dir.join("state");
            std::fs::create_dir_all(&state).map_err(io_err("create state dir"))?;
            std::fs::write(&cfg, haplane_config(mode, &state))
                .map_err(io_err(format!("write {}", cfg.display())))?;
            let mut c = host.command(haplane);
            c.args(["run", "--config"])
                .arg(&cfg)
                .args(["--node", name, "--log", "info"]);
            c
        }
        Impl::Keepalived => {
            let cfg = dir.join(format!("{name}-keepalived.conf"));
            std::fs::write(&cfg, keepalived_config(mode, name, priority))
                .map_err(io_err(format!("write {}", cfg.display())))?;
            let pid = |kind: &str| dir.join(format!("{name}-{kind}.pid"));
            // Distinct pid files: several keepalived run on this machine, one per namespace.
            let mut c = host.command("keepalived");
            c.args(["--vrrp", "--dont-fork", "--log-console", "-f"])
                .arg(&cfg)
                .arg(format!("--pid={}", pid("k").display()))
                .arg(format!("--vrrp_pid={}", pid("kv").display()))
                .arg(format!("--checkers_pid={}", pid("kc").display()));
            c
        }
    };
    let mut cmd = cmd;
    cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
    let handle = host.spawn(cmd)?;
    Ok(Daemon {
        name: format!("{imp} on {name}"),
        handle,
        log,
    })
}

/// What one trial measured.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// Longest client gap after m1's link went down.
    link_gap: Duration,
    /// From link down until m2 held the VIP.
    link_takeover: Duration,
    /// Longest client gap after m1 came back and preempted (not a goal; reported).
    preempt_gap: Duration,
    /// Longest client gap after SIGTERM to m1's daemon.
    term_gap: Duration,
    /// From SIGTERM until m2 held the VIP.
    term_takeover: Duration,
}

/// The longest interval without a success that ends after `from` (and starts before `to`):
/// last success before it to first success after it. `None` if the client has not been
/// served since `from`.
fn longest_gap(record: &[Attempt], from: Duration, to: Duration) -> Option<Duration> {
    let successes: Vec<Duration> = record.iter().filter(|a| a.ok).map(|a| a.at).collect();
    let best = successes
        .windows(2)
        .filter(|w| w[1] > from && w[0] < to)
        .map(|w| w[1] - w[0])
        .max()?;
    // A gap still open at the end of the record is unrecovered, and may be the longest.
    let last_ok = successes.last().copied().unwrap_or_default();
    match record.last() {
        Some(a) if !a.ok && a.at > last_ok && a.at - last_ok >= best => None,
        _ => Some(best),
    }
}

/// Sampling state shared by the waits of one trial.
struct Probe<'a> {
    m1: &'a Host,
    m2: &'a Host,
    record: &'a Record,
    seen: &'a Mutex<Vec<Seen>>,
    epoch: Instant,
    daemons: &'a [Daemon],
    interrupted: &'a AtomicBool,
}

impl Probe<'_> {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// (m1 holds the VIP, m2 holds the VIP).
    fn holders(&self) -> Result<(bool, bool)> {
        let vip = IpAddr::V4(VIP);
        Ok((self.m1.has_address(vip)?, self.m2.has_address(vip)?))
    }

    fn check_alive(&self, skip: Option<usize>) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        for (i, d) in self.daemons.iter().enumerate() {
            if Some(i) != skip && !d.handle.is_running() {
                return Err(BenchError::DaemonExited(d.name.clone()));
            }
        }
        Ok(())
    }

    /// Polls `cond` every 10 ms until it holds or `limit` passes.
    fn wait(
        &self,
        what: &str,
        limit: Duration,
        skip: Option<usize>,
        mut cond: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive(skip)?;
            if cond(self)? {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(BenchError::Timeout {
                    what: what.to_owned(),
                    limit,
                });
            }
            std::thread::sleep(PERIOD);
        }
    }

    /// Waits for the next advertisement from m1, then [`PHASE`] more.
    fn after_next_advert(&self, limit: Duration) -> Result<()> {
        let since = self.now();
        self.wait("an advertisement from m1", limit, None, |p| {
            Ok(lock(p.seen)
                .iter()
                .any(|s| s.at >= since && s.src == M1 && s.priority > 0))
        })?;
        let at = lock(self.seen)
            .iter()
            .find(|s| s.at >= since && s.src == M1 && s.priority > 0)
            .map(|s| s.at)
            .unwrap_or(since);
        let due = at + PHASE;
        let now = self.now();
        if due > now {
            std::thread::sleep(due - now);
        }
        Ok(())
    }

    /// The client has been served by `by` on every attempt of the last [`STEADY`].
    fn steady(&self, by: u8) -> bool {
        let rec = lock(self.record);
        let now = self.now();
        let Some(first) = rec.first() else {
            return false;
        };
        if now < first.at + STEADY {
            return false;
        }
        let recent: Vec<&Attempt> = rec.iter().filter(|a| a.at + STEADY >= now).collect();
        recent.len() >= 20 && recent.iter().all(|a| a.ok && a.by == by)
    }

    /// The client has been served by `by` at least once since `since`.
    fn served_since(&self, by: u8, since: Duration) -> bool {
        lock(self.record)
            .iter()
            .any(|a| a.at >= since && a.ok && a.by == by)
    }

    /// Waits until m2 holds the VIP; returns when it was first seen, since the epoch.
    fn wait_m2_holds(&self, limit: Duration, skip: Option<usize>) -> Result<Duration> {
        let mut seen = None;
        self.wait("m2 to hold the VIP", limit, skip, |p| {
            let (_, m2) = p.holders()?;
            if m2 {
                seen = Some(p.now());
            }
            Ok(m2)
        })?;
        Ok(seen.unwrap_or_else(|| self.now()))
    }
}

fn run_trial(
    args: &Args,
    mode: Mode,
    imp: Impl,
    dir: &Path,
    interrupted: &AtomicBool,
) -> Result<Outcome> {
    let topo = Topology::builder().hosts(["m1", "m2", "c1"]).build()?;
    let (m1, m2, c1) = (topo.host("m1")?, topo.host("m2")?, topo.host("c1")?);
    let port = args.port;
    let stop = AtomicBool::new(false);
    let record: Record = Arc::new(Mutex::new(Vec::with_capacity(4096)));
    let seen = Mutex::new(Vec::with_capacity(1024));
    let c1_addr = c1.address();
    let sniffer = c1
        .enter(move || open_vrrp_socket(c1_addr))?
        .map_err(io_err("raw VRRP socket in c1"))?;
    let epoch = Instant::now();

    let mut listeners = Vec::new();
    for (host, id) in [(m1, b'1'), (m2, b'2')] {
        let l = host
            .enter(move || -> std::io::Result<TcpListener> {
                let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })?
            .map_err(io_err(format!("listen on {}:{port}", host.name())))?;
        listeners.push((l, id));
    }

    let daemons = vec![
        start_daemon(imp, mode, m1, M1_PRIORITY, &args.haplane, dir)?,
        start_daemon(imp, mode, m2, M2_PRIORITY, &args.haplane, dir)?,
    ];

    let result = std::thread::scope(|s| {
        for (l, id) in listeners.drain(..) {
            let stop = &stop;
            s.spawn(move || server_loop(l, id, stop));
        }
        {
            let (stop, seen) = (&stop, &seen);
            s.spawn(move || sniff_loop(sniffer, stop, seen, epoch));
        }
        {
            let (stop, record) = (&stop, &record);
            s.spawn(move || {
                let dst = SocketAddr::V4(SocketAddrV4::new(VIP, port));
                if let Err(e) = c1.enter(|| client_loop(dst, stop, record, epoch)) {
                    eprintln!("client: {e}");
                }
            });
        }
        let probe = Probe {
            m1,
            m2,
            record: &record,
            seen: &seen,
            epoch,
            daemons: &daemons,
            interrupted,
        };
        let r = measure(&probe, mode);
        stop.store(true, Ordering::Relaxed);
        r
    });
    if result.is_err() || args.keep {
        for d in &daemons {
            eprintln!("----- {} (last lines) -----\n{}", d.name, d.tail(30));
        }
    }
    for d in &daemons {
        let _ = d.handle.terminate(Duration::from_secs(5));
    }
    drop(topo);
    result
}

/// Steps 1-4 of a trial (see the crate doc).
fn measure(p: &Probe<'_>, mode: Mode) -> Result<Outcome> {
    let limit = mode.limit();
    // 1. Election: m1 alone holds the VIP and serves the client.
    p.wait("m1 alone to hold the VIP", 2 * limit, None, |p| {
        Ok(p.holders()? == (true, false))
    })?;
    p.wait("the client to be served by m1", limit, None, |p| {
        Ok(p.steady(b'1'))
    })?;

    // 2. Link down on the master, just after one of its adverts.
    p.after_next_advert(limit)?;
    let t_down = p.now();
    p.m1.link_down()?;
    let takeover = p.wait_m2_holds(limit, None)?;
    p.wait("the client to be served by m2", limit, None, |p| {
        Ok(p.served_since(b'2', t_down))
    })?;
    std::thread::sleep(AFTERWARDS);
    let t_up = p.now();
    let link_gap = longest_gap(&lock(p.record), t_down, t_up).ok_or(BenchError::Timeout {
        what: "the client to recover after link down".to_owned(),
        limit,
    })?;

    // 3. Link back: m1 preempts (preempt is on in both).
    p.m1.link_up()?;
    p.wait("m1 to preempt", 2 * limit, None, |p| {
        Ok(p.holders()? == (true, false))
    })?;
    p.wait("the client to be served by m1 again", limit, None, |p| {
        Ok(p.steady(b'1'))
    })?;
    let preempt_gap = longest_gap(&lock(p.record), t_up, p.now()).unwrap_or_default();

    // 4. Graceful stop of the master's daemon.
    p.after_next_advert(limit)?;
    let t_term = p.now();
    p.daemons[0].handle.signal(Signal::SIGTERM)?;
    let term_seen = p.wait_m2_holds(limit, Some(0))?;
    p.wait(
        "the client to be served by m2 after SIGTERM",
        limit,
        Some(0),
        |p| Ok(p.served_since(b'2', t_term)),
    )?;
    std::thread::sleep(AFTERWARDS);
    let term_gap = longest_gap(&lock(p.record), t_term, p.now()).ok_or(BenchError::Timeout {
        what: "the client to recover after SIGTERM".to_owned(),
        limit,
    })?;
    Ok(Outcome {
        link_gap,
        link_takeover: takeover.saturating_sub(t_down),
        preempt_gap,
        term_gap,
        term_takeover: term_seen.saturating_sub(t_term),
    })
}

fn ms(d: Duration) -> String {
    format!("{}", d.as_millis())
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "-".to_owned()
    } else {
        format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
    }
}

/// A flag set when SIGINT or SIGTERM arrives, so an interrupted run still drops its
/// topology (daemons, namespaces). A handler, not a blocked mask: children would inherit
/// the mask and ignore the SIGTERM the benchmark sends them.
fn watch_signals() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(io_err("install signal handler"))?;
    }
    Ok(flag)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vrrp-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    if let Some(reason) = netlab::skip_reason() {
        return Err(BenchError::Usage(format!(
            "cannot build namespaces: {reason}"
        )));
    }
    let interrupted = watch_signals()?;
    let dir = WorkDir::new(args.keep)?;
    let mut results: Vec<(Mode, Impl, usize, Outcome)> = Vec::new();

    println!(
        "# raw: run mode impl link_gap_ms link_takeover_ms preempt_gap_ms term_gap_ms term_takeover_ms"
    );
    for run in 0..args.runs {
        for &mode in &args.modes {
            // Alternate who goes first, so a drift in machine load does not favour one.
            let mut order = args.impls.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            for imp in order {
                let trial_dir = dir.path.join(format!("{run}-{}-{imp}", mode.version()));
                std::fs::create_dir_all(&trial_dir).map_err(io_err("create trial dir"))?;
                eprintln!("run {}/{}: {mode} {imp}", run + 1, args.runs);
                let o = run_trial(&args, mode, imp, &trial_dir, &interrupted)?;
                println!(
                    "raw {} {} {imp} {} {} {} {} {}",
                    run + 1,
                    mode.version(),
                    ms(o.link_gap),
                    ms(o.link_takeover),
                    ms(o.preempt_gap),
                    ms(o.term_gap),
                    ms(o.term_takeover)
                );
                // Gap far beyond takeover: something other than VRRP (a stale ARP entry,
                // the listener) held the client back; say so rather than hide it in the table.
                for (what, gap, takeover) in [
                    ("link down", o.link_gap, o.link_takeover),
                    ("SIGTERM", o.term_gap, o.term_takeover),
                ] {
                    if gap > takeover + LAG_WARN {
                        eprintln!(
                            "note: {mode} {imp} {what}: client served {} ms after m2 held the VIP (ARP?)",
                            ms(gap - takeover)
                        );
                    }
                }
                results.push((mode, imp, run, o));
            }
        }
    }
    print_table(&args, &results);
    Ok(())
}

fn print_table(args: &Args, results: &[(Mode, Impl, usize, Outcome)]) {
    let pick = |mode: Mode, imp: Impl, f: fn(&Outcome) -> Duration| -> Vec<Duration> {
        results
            .iter()
            .filter(|(m, i, _, _)| *m == mode && *i == imp)
            .map(|(_, _, _, o)| f(o))
            .collect()
    };
    let max = |v: &[Duration]| v.iter().copied().max().unwrap_or_default();
    println!();
    println!(
        "{} runs per row; client connects every {} ms (connect timeout {} ms); times in ms, median / max",
        args.runs,
        PERIOD.as_millis(),
        CONNECT_TIMEOUT.as_millis()
    );
    println!(
        "{:<9} {:<11} {:>13} {:>13} {:>13} {:>13} {:>13}",
        "mode", "impl", "link-down gap", "takeover", "SIGTERM gap", "takeover", "preempt gap"
    );
    for &mode in &args.modes {
        for &imp in &args.impls {
            let cell = |f: fn(&Outcome) -> Duration| {
                let v = pick(mode, imp, f);
                format!("{} / {}", ms(median(&v)), ms(max(&v)))
            };
            println!(
                "{:<9} {:<11} {:>13} {:>13} {:>13} {:>13} {:>13}",
                mode.to_string(),
                imp.to_string(),
                cell(|o| o.link_gap),
                cell(|o| o.link_takeover),
                cell(|o| o.term_gap),
                cell(|o| o.term_takeover),
                cell(|o| o.preempt_gap),
            );
        }
        if args.impls.len() == 2 {
            let r = |f: fn(&Outcome) -> Duration| {
                let (h, k) = (
                    pick(mode, Impl::Haplane, f),
                    pick(mode, Impl::Keepalived, f),
                );
                format!(
                    "{} / {}",
                    ratio(median(&h), median(&k)),
                    ratio(max(&h), max(&k))
                )
            };
            println!(
                "{:<9} {:<11} {:>13} {:>13} {:>13} {:>13} {:>13}",
                mode.to_string(),
                "ratio h/k",
                r(|o| o.link_gap),
                r(|o| o.link_takeover),
                r(|o| o.term_gap),
                r(|o| o.term_takeover),
                r(|o| o.preempt_gap),
            );
        }
        println!(
            "{:<9} {:<11} {:>13} {:>13} {:>13}",
            mode.to_string(),
            "RFC bound",
            "",
            format!("MDI {}", ms(mode.master_down())),
            format!("skew {}", ms(mode.skew())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pattern: &str) -> Vec<Attempt> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| Attempt {
                at: Duration::from_millis(10 * i as u64),
                ok: c == '+',
                by: 0,
            })
            .collect()
    }

    #[test]
    fn the_gap_runs_from_the_last_success_before_to_the_first_success_after() {
        // Successes at 0, 10; failures 20..=50; success at 60.
        let r = rec("++----+++");
        assert_eq!(
            longest_gap(&r, Duration::from_millis(15), Duration::from_secs(1)),
            Some(Duration::from_millis(50))
        );
    }

    #[test]
    fn the_longest_of_several_gaps_after_the_fault_is_reported() {
        let r = rec("+-+---+--+");
        assert_eq!(
            longest_gap(&r, Duration::ZERO, Duration::from_secs(1)),
            Some(Duration::from_millis(40))
        );
    }

    #[test]
    fn gaps_that_ended_before_the_fault_are_ignored() {
        let r = rec("+-----++--+");
        assert_eq!(
            longest_gap(&r, Duration::from_millis(65), Duration::from_secs(1)),
            Some(Duration::from_millis(30))
        );
    }

    #[test]
    fn no_success_after_the_fault_is_no_recovery() {
        let r = rec("+++----");
        assert_eq!(
            longest_gap(&r, Duration::from_millis(25), Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_gap_still_open_and_longer_than_the_others_is_no_recovery() {
        let r = rec("+-+-----");
        assert_eq!(
            longest_gap(&r, Duration::ZERO, Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn skew_and_master_down_follow_rfc5798_6_1_for_the_backup() {
        // Priority 100: (256 - 100) / 256 = 0.609375 of the interval.
        assert_eq!(Mode::V2.skew(), Duration::from_micros(609_375));
        assert_eq!(Mode::V2.master_down(), Duration::from_micros(3_609_375));
        assert_eq!(
            Mode::V3.skew(),
            Duration::from_micros(60_937) + Duration::from_nanos(500)
        );
    }

    #[test]
    fn both_configs_carry_the_same_vrrp_settings() {
        let dir = Path::new("/tmp/x");
        let h = haplane_config(Mode::V3, dir);
        let k = keepalived_config(Mode::V3, "m2", M2_PRIORITY);
        assert!(h.contains("version: 3") && k.contains("vrrp_version 3"));
        assert!(h.contains("advertInterval: 100ms") && k.contains("advert_int 0.1"));
        assert!(h.contains("vrid: 51") && k.contains("virtual_router_id 51"));
        assert!(h.contains("enabled: false"));
        let k2 = keepalived_config(Mode::V2, "m1", M1_PRIORITY);
        assert!(k2.contains("advert_int 1\n") && k2.contains("priority 150"));
    }
}
