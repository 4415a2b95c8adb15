//! The haplane cluster file.
//!
//! One YAML document describes the whole cluster and is the same on every node; a node finds
//! itself by its local addresses or by `--node`. The key names are a public contract: extend
//! them, never rename them. Every key has a default documented in `docs/config.md`, and the
//! defaults live here, next to the keys, so the two cannot drift apart.

#![forbid(unsafe_code)]

mod audit;
mod deploy;
mod duration;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use audit::{audit_secret_files, resolve_keys};
pub use deploy::{CONTROL_PLANE_PORTS, ETCD_CLIENT_PORT, ETCD_PEER_PORT, KUBELET_PORT};
pub use duration::{Dur, DurationError};
pub use secret::{KEY_LEN_MAX, KEY_LEN_MIN, KeyError, Secret, inline_key_bytes, key_bytes};
pub use validate::{Finding, Severity, parse_status_range};

/// Why a cluster file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The YAML does not parse or does not fit the schema; the message carries line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The document parsed but breaks one or more rules; every finding is listed.
    #[error("{path}: {} error(s):\n{}", .findings.iter().filter(|f| f.severity == Severity::Error).count(), render(.findings))]
    Invalid {
        path: PathBuf,
        findings: Vec<Finding>,
    },
}

/// A parse error with the line it points at and the two before it, each line that may hold a
/// secret (`authPass`, `authHmac` and everything nested under them) shown as `<redacted>`.
fn parse_message(e: &serde_saphyr::Error, text: &str) -> String {
    let mut message = e.to_string();
    let Some((at, col)) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .filter(|&(l, _)| l > 0)
    else {
        return message;
    };
    // `MESSAGE at line L, column C` → `line L column C: MESSAGE`, as with the parser's snippet.
    let suffix = format!(" at line {at}, column {col}");
    if let Some(m) = message.strip_suffix(&suffix) {
        message = format!("line {at} column {col}: {m}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let masked = secret_lines(&lines);
    for n in at.saturating_sub(2).max(1)..=at.min(lines.len()) {
        let line = if masked[n - 1] {
            redact(lines[n - 1])
        } else {
            lines[n - 1].to_string()
        };
        message.push_str(&format!("\n  {n:>4} | {line}"));
        if n == at && !masked[n - 1] && col > 0 {
            message.push_str(&format!("\n       | {}^", " ".repeat(col - 1)));
        }
    }
    message
}

/// Which lines may hold a secret: those naming `authPass` or `authHmac` (block or flow style),
/// and every line nested deeper than such a line.
fn secret_lines(lines: &[&str]) -> Vec<bool> {
    let mut out = Vec::with_capacity(lines.len());
    let mut block: Option<usize> = None;
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() {
            out.push(block.is_some());
            continue;
        }
        if block.is_some_and(|b| indent <= b) {
            block = None;
        }
        let names = line.contains("authPass") || line.contains("authHmac");
        if names && block.is_none() {
            block = Some(indent);
        }
        out.push(names || block.is_some());
    }
    out
}

/// `line` with everything after its key (or, without one, after its indentation) replaced.
fn redact(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let body = &line[indent..];
    let (dash, body) = match body.strip_prefix("- ") {
        Some(b) => ("- ", b),
        None => ("", body),
    };
    match body.split_once(':') {
        Some((_, value)) if value.trim().is_empty() => line.to_string(),
        Some((k, _))
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            format!("{}{dash}{k}: <redacted>", &line[..indent])
        }
        _ => format!("{}{dash}<redacted>", &line[..indent]),
    }
}

fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why this host could not pick its node entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindNodeError {
    /// `--node` names a node that is not in `nodes`.
    #[error("node {0:?} is not listed under nodes; known nodes: {1}")]
    UnknownName(String, String),
    /// No local address matches a node's address.
    #[error(
        "none of this host's addresses ({0}) is a node address in the cluster file; pass --node NAME"
    )]
    NoMatch(String),
    /// Several nodes match local addresses.
    #[error("this host has the addresses of several nodes ({0}); pass --node NAME")]
    Ambiguous(String),
}

/// The whole cluster file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// A name for the cluster, used in logs, metrics and the lab.
    pub cluster: String,
    /// Every node: masters, dedicated balancers (`lb`), workers and external etcd members.
    pub nodes: Vec<Node>,
    /// The virtual IP held by the VRRP master.
    pub vip: Vip,
    /// Where each daemon serves /healthz, /status and /metrics.
    #[serde(default)]
    pub status: Status,
    /// The kube-apiserver on each master.
    #[serde(default)]
    pub api_server: ApiServer,
    /// The L4 balancer in front of the apiservers.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// The etcd cluster haplane elects through (and that kube-apiserver uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Etcd>,
    /// Singletons that run only on the elected node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elections: Vec<Election>,
    /// Scheduled etcd snapshots, taken by one elected node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Snapshots>,
    /// Inputs for `haplane plan` (kubeadm rendering).
    #[serde(default)]
    pub kubernetes: Kubernetes,
    /// Where the daemon keeps its small state (the VIP fencing marker). Default /var/lib/haplane.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/haplane")
}

impl Cluster {
    /// The admin socket of `node`: `status.adminSocket` with `{node}` replaced by the node's
    /// name, or `/run/haplane/<cluster>-<node>.sock` (named per cluster and node so the daemons
    /// of a lab, which share one filesystem, and of several labs never collide).
    pub fn admin_socket(&self, node: &str) -> PathBuf {
        match &self.status.admin_socket {
            Some(p) => PathBuf::from(p.to_string_lossy().replace("{node}", node)),
            None => PathBuf::from(format!("/run/haplane/{}-{node}.sock", self.cluster)),
        }
    }
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Runs an apiserver (and, stacked, an etcd member) and the elections; carries the VIP
    /// and its balancer unless the cluster has `lb` nodes.
    Master,
    /// A dedicated load-balancer node: VRRP for the VIP and the balancer in front of the
    /// masters, no apiserver, no etcd member, no elections (seed 004's lb-1 and lb-2).
    Lb,
    /// Runs the node-local balancer on 127.0.0.1.
    Worker,
    /// Runs an external etcd member (`etcd.topology: external`).
    Etcd,
}

impl Role {
    /// The name used in the cluster file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Lb => "lb",
            Role::Worker => "worker",
            Role::Etcd => "etcd",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_roles() -> Vec<Role> {
    vec![Role::Master]
}
fn default_priority() -> u8 {
    100
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    /// Unique node name (also its hostname in plans).
    pub name: String,
    /// The node's primary address on the VIP's segment.
    pub address: IpAddr,
    /// VRRP base priority, 1..=255 (255 means address owner). Default 100.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Roles of this node. Default `[master]`.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// Interface for the VIP on this node, when it differs from `vip.interface`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

impl Node {
    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// An address with a prefix length, such as `192.0.2.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Whether `other` lies in this network.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.addr, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("{s:?} is not an IP address with a prefix, like 192.0.2.100/24")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length outside 0..={max}"))?,
            None => {
                return Err(format!(
                    "{s:?} needs a prefix length so the VIP lands in the right subnet, like {addr}/{}",
                    if addr.is_ipv4() { 24 } else { 64 }
                ));
            }
        };
        Ok(IpNet { addr, prefix })
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// RFC 3768.
    V2,
    /// RFC 5798.
    V3,
}

impl Serialize for VrrpVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        })
    }
}

impl<'de> Deserialize<'de> for VrrpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            2 => Ok(VrrpVersion::V2),
            3 => Ok(VrrpVersion::V3),
            other => Err(serde::de::Error::custom(format!(
                "VRRP version {other} does not exist; use 2 (RFC 3768) or 3 (RFC 5798)"
            ))),
        }
    }
}

/// How the VIP is protected against split brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fencing {
    /// `quorum` when an `etcd` section exists, otherwise `none`.
    #[default]
    Auto,
    /// Hold the VIP only while also holding its election in etcd.
    Quorum,
    /// Plain VRRP, as keepalived does.
    None,
}

fn default_interface() -> String {
    "eth0".into()
}
fn default_version() -> VrrpVersion {
    VrrpVersion::V3
}
fn default_advert() -> Dur {
    Dur::from_secs(1)
}
fn yes() -> bool {
    true
}

/// The virtual IP and its VRRP router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vip {
    /// The VIP with its prefix length, e.g. `192.0.2.100/24`.
    pub address: IpNet,
    /// Interface the VIP is added to. Default `eth0`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Virtual router id, 1..=255, unique on the segment.
    pub vrid: u8,
    /// VRRP version, 2 or 3. Default 3.
    #[serde(default = "default_version")]
    pub version: VrrpVersion,
    /// Advertisement interval. Default 1s. v2: whole seconds 1..255; v3: 10ms steps up to 40.95s.
    #[serde(default = "default_advert")]
    pub advert_interval: Dur,
    /// Send adverts to each other master instead of 224.0.0.18. Default false.
    #[serde(default)]
    pub unicast: bool,
    /// A higher-priority backup takes over from a live master. Default true.
    #[serde(default = "yes")]
    pub preempt: bool,
    /// Wait this long after start before preempting. Default 0s.
    #[serde(default)]
    pub preempt_delay: Dur,
    /// v2 simple password (keepalived `auth_type PASS`); only the first 8 bytes count. Default none.
    #[serde(default)]
    pub auth_pass: Option<Secret>,
    /// keepalived 2.4 `auth_hmac`: HMAC-SHA256 on every advert (v2 and v3). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_hmac: Option<AuthHmac>,
    /// v3: checksum without the IPv4 pseudo-header (keepalived `v3_checksum_as_v2`). Default false.
    #[serde(default)]
    pub v3_checksum_as_v2: bool,
    /// Split-brain protection: auto, quorum or none. Default auto.
    #[serde(default)]
    pub fencing: Fencing,
    /// Gratuitous ARP / unsolicited NA on becoming master.
    #[serde(default)]
    pub garp: Garp,
    /// Command run on each state change with keepalived's arguments. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// Checks that lower (or raise) this node's priority, like keepalived's vrrp_script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track: Vec<TrackScript>,
    /// The built-in `balancer` check: a readiness request through this node's own balancer;
    /// while it fails, `weight` applies. Default absent (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_balancer: Option<TrackBalancer>,
    /// After `haplane maintenance enter`, how long the node keeps serving the sessions it
    /// carried with the VIP parked on lo, while the new holder forwards their packets to it.
    /// Default 5m.
    #[serde(default = "default_maintenance_drain")]
    pub maintenance_drain_timeout: Dur,
    /// The VIP gate's timers (with `fencing: quorum`); docs/elections.md has the argument.
    #[serde(default, skip_serializing_if = "VipGate::is_default")]
    pub gate: VipGate,
}

/// `vip.gate`: the fenced VIP's lease, kept on each node's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VipGate {
    /// R: how often the holder renews its key (a compare-and-swap in etcd). Default 100ms.
    #[serde(default = "default_gate_renew")]
    pub renew_interval: Dur,
    /// H: how long after sending a renewal that succeeded the holder may answer for the
    /// VIP. Default 600ms.
    #[serde(default = "default_gate_hold")]
    pub hold: Dur,
    /// ρ: bound on how much faster one node's monotonic clock runs than another's (0.01 =
    /// 1 %). Default 0.01.
    #[serde(default = "default_gate_rate")]
    pub clock_rate_bound: f64,
    /// δ: bound on the time from the holder's deadline until its kernel stops answering
    /// for the VIP. Default 50ms.
    #[serde(default = "default_gate_stop")]
    pub stop_latency: Dur,
}

fn default_gate_renew() -> Dur {
    Dur::from_millis(100)
}
fn default_gate_hold() -> Dur {
    Dur::from_millis(600)
}
fn default_gate_rate() -> f64 {
    0.01
}
fn default_gate_stop() -> Dur {
    Dur::from_millis(50)
}

impl Default for VipGate {
    fn default() -> Self {
        VipGate {
            renew_interval: default_gate_renew(),
            hold: default_gate_hold(),
            clock_rate_bound: default_gate_rate(),
            stop_latency: default_gate_stop(),
        }
    }
}

impl VipGate {
    /// True when every key has its default (the cluster file need not spell it out).
    pub fn is_default(&self) -> bool {
        *self == VipGate::default()
    }

    /// The gate's parameters for `identity` (the node name). The request timeout is 200 ms
    /// or half the hold, whichever is shorter; the etcd-quorum check falls after 3 s or the
    /// hold, whichever is longer.
    pub fn gate_config(&self, identity: &str, preempt: bool) -> gate::GateConfig {
        let mut g = gate::GateConfig::new(identity);
        g.renew_interval = self.renew_interval.get();
        g.hold = self.hold.get();
        g.clock_rate_bound = self.clock_rate_bound;
        g.stop_latency = self.stop_latency.get();
        g.request_timeout = std::time::Duration::from_millis(200).min(g.hold / 2);
        g.quorum_fall = std::time::Duration::from_secs(3).max(g.hold);
        g.preempt = preempt;
        g
    }
}

fn minus_fifty() -> i16 {
    -50
}

/// The built-in `balancer` tracked check (VIP health gated on the local balancer path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrackBalancer {
    /// -253..=253 like a tracked script: negative is subtracted while failing, 0 sends the
    /// router to FAULT while failing. Default -50.
    #[serde(default = "minus_fifty")]
    pub weight: i16,
    /// Time between probes. Default 1s (each waits up to loadBalancer.healthCheck.timeout).
    #[serde(default = "default_advert")]
    pub interval: Dur,
    /// Successes to count as up. Default 2.
    #[serde(default = "two")]
    pub rise: u32,
    /// Failures to count as down. Default 2.
    #[serde(default = "two")]
    pub fall: u32,
}

fn default_maintenance_drain() -> Dur {
    Dur::from_secs(300)
}

/// How `authHmac` refuses replayed adverts (keepalived `anti_replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AntiReplay {
    /// A freshness window (`timeWindow`) plus growing sequences; needs NTP on every node.
    #[default]
    Time,
    /// Growing sequences only; no clock agreement needed.
    Monotonic,
}

/// `authHmac` migration modes (keepalived `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HmacMode {
    /// Sign, and refuse unsigned adverts.
    #[default]
    Enforce,
    /// Sign, and accept unsigned adverts too.
    Permissive,
    /// Do not sign; accept unsigned adverts; verify signed ones.
    ReceiveOnly,
}

/// keepalived 2.4's `auth_hmac` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthHmac {
    /// Keys by id (1..=255): `hex:` and 64..=128 hex digits, `file:/absolute/path`, or a
    /// string of 32..=64 bytes.
    pub keys: BTreeMap<u8, Secret>,
    /// The key adverts are signed with. Default: the only key; required with several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<u8>,
    /// `time` or `monotonic`. Default time.
    #[serde(default)]
    pub anti_replay: AntiReplay,
    /// Freshness window, whole seconds 1s..=300s (time mode). Default max(3 × advertInterval, 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<Dur>,
    /// `enforce`, `permissive` or `receive-only`. Default enforce.
    #[serde(default)]
    pub mode: HmacMode,
}

impl AuthHmac {
    /// The signing key id: `activeKey`, or the only key.
    pub fn active(&self) -> Option<u8> {
        match (self.active_key, self.keys.len()) {
            (Some(id), _) => Some(id),
            (None, 1) => self.keys.keys().next().copied(),
            _ => None,
        }
    }

    /// The window in effect: `timeWindow`, or keepalived's max(3 × advert, 5 s) capped at
    /// 300 s, in whole seconds rounded up.
    pub fn window(&self, advert_interval: std::time::Duration) -> std::time::Duration {
        if let Some(w) = self.time_window {
            return w.get();
        }
        let three = advert_interval.saturating_mul(3);
        let secs = three.as_secs() + u64::from(three.subsec_nanos() > 0);
        std::time::Duration::from_secs(secs.clamp(5, 300))
    }
}

fn five() -> u32 {
    5
}
fn five_secs() -> Dur {
    Dur::from_secs(5)
}

/// Gratuitous ARP bursts (keepalived's vrrp_garp_* defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Garp {
    /// Packets per burst. Default 5.
    #[serde(default = "five")]
    pub repeat: u32,
    /// Delay before the second burst; 0s disables it. Default 5s.
    #[serde(default = "five_secs")]
    pub delay: Dur,
    /// Gap between packets in a burst. Default 0s.
    #[serde(default)]
    pub interval: Dur,
    /// Re-announce periodically while master; 0s disables. Default 0s.
    #[serde(default)]
    pub refresh: Dur,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            repeat: 5,
            delay: Dur::from_secs(5),
            interval: Dur::default(),
            refresh: Dur::default(),
        }
    }
}

fn one() -> u32 {
    1
}

/// A tracked script (keepalived's vrrp_script): a command whose exit status moves the priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrackScript {
    /// Name used in logs and status.
    pub name: String,
    /// Command and arguments; exit 0 means healthy. No shell is involved.
    pub command: Vec<String>,
    /// How often to run it. Default 1s.
    #[serde(default = "default_advert")]
    pub interval: Dur,
    /// Kill and count as failed after this long. Default: the interval.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Successes needed to count as up. Default 1.
    #[serde(default = "one")]
    pub rise: u32,
    /// Failures needed to count as down. Default 1.
    #[serde(default = "one")]
    pub fall: u32,
    /// -253..=253. Negative: subtracted while failing. Positive: added while passing. 0: FAULT while failing. Default 0.
    #[serde(default)]
    pub weight: i16,
}

fn default_status_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9470))
}

/// The local status endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Status {
    /// Address for /healthz, /status and /metrics. Default 127.0.0.1:9470.
    #[serde(default = "default_status_listen")]
    pub listen: SocketAddr,
    /// The root-only Unix socket for `haplane lb` and `haplane maintenance`; `{node}` in it is
    /// replaced by the node's name. Default `/run/haplane/<cluster>-<node>.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            listen: default_status_listen(),
            admin_socket: None,
        }
    }
}

fn default_api_port() -> u16 {
    6443
}

/// The kube-apiserver on each master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServer {
    /// Port the apiservers listen on (on their node address). Default 6443.
    #[serde(default = "default_api_port")]
    pub port: u16,
}

impl Default for ApiServer {
    fn default() -> Self {
        ApiServer { port: 6443 }
    }
}

/// A listen address for the balancer: `vip:PORT` or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// The VIP at this port.
    Vip(u16),
    /// A fixed socket address.
    Socket(SocketAddr),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Vip(port) => write!(f, "vip:{port}"),
            ListenAddr::Socket(sa) => write!(f, "{sa}"),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(port) = s.strip_prefix("vip:") {
            return port
                .parse()
                .map(ListenAddr::Vip)
                .map_err(|_| format!("{s:?}: the port after vip: must be 1..=65535"));
        }
        s.parse().map(ListenAddr::Socket).map_err(|_| {
            format!("{s:?} is not a listen address; write vip:6443, 127.0.0.1:6443 or [::1]:6443")
        })
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Backend selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Weighted round-robin.
    #[default]
    RoundRobin,
    /// Fewest active connections (weighted).
    LeastConnections,
    /// Pick two at random, take the less loaded.
    RandomTwoChoices,
}

/// A balancer backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    /// Backend address and port.
    pub address: SocketAddr,
    /// Relative weight, 1..=256. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

/// Active health-check kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckType {
    /// TCP connect only.
    Tcp,
    /// Plain HTTP GET.
    Http,
    /// HTTPS GET (the apiserver's /readyz).
    #[default]
    Https,
}

fn default_check_path() -> String {
    "/readyz".into()
}
fn default_ca_file() -> Option<PathBuf> {
    Some(PathBuf::from("/etc/kubernetes/pki/ca.crt"))
}
fn two() -> u32 {
    2
}
fn default_expect() -> String {
    "200-299".into()
}

/// Active health checks of every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// tcp, http or https. Default https.
    #[serde(default, rename = "type")]
    pub kind: CheckType,
    /// HTTP path. Default /readyz (fails as soon as an apiserver starts shutting down).
    #[serde(default = "default_check_path")]
    pub path: String,
    /// Accepted status codes, `200-299` or a single code. Default 200-299.
    #[serde(default = "default_expect")]
    pub expect_status: String,
    /// Time between checks. Default 1s.
    #[serde(default = "default_advert")]
    pub interval: Dur,
    /// Time allowed per check. Default 1s.
    #[serde(default = "default_advert")]
    pub timeout: Dur,
    /// Consecutive successes to mark a backend up. Default 2.
    #[serde(default = "two")]
    pub rise: u32,
    /// Consecutive failures to mark a backend down. Default 2.
    #[serde(default = "two")]
    pub fall: u32,
    /// Skip TLS verification (explicit opt-in). Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// CA bundle for HTTPS checks. Default /etc/kubernetes/pki/ca.crt (kubeadm's cluster CA).
    #[serde(default = "default_ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for HTTPS checks. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client key for HTTPS checks. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckType::Https,
            path: default_check_path(),
            expect_status: default_expect(),
            interval: Dur::from_secs(1),
            timeout: Dur::from_secs(1),
            rise: 2,
            fall: 2,
            insecure_skip_verify: false,
            ca_file: default_ca_file(),
            cert_file: None,
            key_file: None,
        }
    }
}

fn default_lb_listen() -> Vec<ListenAddr> {
    vec![ListenAddr::Vip(6443)]
}
fn default_node_local_listen() -> Vec<ListenAddr> {
    vec![ListenAddr::Socket(SocketAddr::from(([127, 0, 0, 1], 6443)))]
}
fn three() -> u32 {
    3
}
fn default_max_conns() -> usize {
    100_000
}
fn default_drain() -> Dur {
    Dur::from_secs(30)
}
fn default_backend_drain() -> Dur {
    Dur::from_secs(180)
}
fn default_slow_start() -> Dur {
    Dur::from_secs(30)
}
fn default_keepalive() -> Option<Dur> {
    Some(Dur::from_secs(30))
}

/// The L4 balancer in front of the apiservers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Run the balancer. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Listen addresses on masters. Default `["vip:6443"]`.
    #[serde(default = "default_lb_listen")]
    pub listen: Vec<ListenAddr>,
    /// Listen addresses on workers (node-local balancing). Default `["127.0.0.1:6443"]`.
    #[serde(default = "default_node_local_listen")]
    pub node_local_listen: Vec<ListenAddr>,
    /// Backends. Default: every master's address at `apiServer.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
    /// round-robin, least-connections or random-two-choices. Default round-robin.
    #[serde(default)]
    pub policy: Policy,
    /// Active health checks.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Connect timeout to a backend before trying the next. Default 1s.
    #[serde(default = "default_advert")]
    pub connect_timeout: Dur,
    /// Consecutive failed connects that mark a backend down. Default 3. A refused connect
    /// always counts; a reset or timed-out one only when no other connect to that backend
    /// succeeded from one `connect_timeout` before it started until it failed (else the
    /// backend is overloaded, not dead).
    #[serde(default = "three")]
    pub passive_fall: u32,
    /// When every backend failed a client's connect but one was only overloaded (a full
    /// listen queue), how many more rounds it gets, 10, 20, 40 ms... apart. Default 3.
    #[serde(default = "three")]
    pub connect_retries: u32,
    /// Close a dead backend's sessions (refuses, resets or times out). Default true.
    #[serde(default = "yes")]
    pub shutdown_sessions_on_down: bool,
    /// How long a draining backend's sessions (it answers, but `/readyz` fails) may continue
    /// before they are closed. Default 3m.
    #[serde(default = "default_backend_drain")]
    pub backend_drain_timeout: Dur,
    /// A backend coming back to service ramps its share of new sessions over this period;
    /// 0s turns it off. Default 30s.
    #[serde(default = "default_slow_start")]
    pub slow_start: Dur,
    /// Idle timeout for established tunnels. Default none (watches and `logs -f` live forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Dur>,
    /// TCP keepalive idle time on both sides; null disables. Default 30s.
    #[serde(default = "default_keepalive")]
    pub tcp_keepalive: Option<Dur>,
    /// Maximum concurrent client connections. Default 100000.
    #[serde(default = "default_max_conns")]
    pub max_connections: usize,
    /// Maximum concurrent connections per backend. Default unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_backend: Option<usize>,
    /// On SIGTERM, how long established tunnels may finish. Default 30s.
    #[serde(default = "default_drain")]
    pub drain_timeout: Dur,
    /// Use splice(2) zero-copy. Default true.
    #[serde(default = "yes")]
    pub splice: bool,
    /// Data-path threads, each with its own listening socket (SO_REUSEPORT) and event loop,
    /// apart from the daemon's VRRP and elections. 1..=64. Default 1.
    #[serde(default = "one_thread")]
    pub threads: usize,
}

fn one_thread() -> usize {
    1
}

impl Default for LoadBalancer {
    fn default() -> Self {
        LoadBalancer {
            enabled: true,
            listen: default_lb_listen(),
            node_local_listen: default_node_local_listen(),
            backends: None,
            policy: Policy::default(),
            health_check: HealthCheck::default(),
            connect_timeout: Dur::from_secs(1),
            passive_fall: 3,
            connect_retries: 3,
            shutdown_sessions_on_down: true,
            backend_drain_timeout: default_backend_drain(),
            slow_start: default_slow_start(),
            idle_timeout: None,
            tcp_keepalive: default_keepalive(),
            max_connections: default_max_conns(),
            max_connections_per_backend: None,
            drain_timeout: default_drain(),
            splice: true,
            threads: 1,
        }
    }
}

/// Where etcd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EtcdTopology {
    /// One member on each master (kubeadm's default).
    #[default]
    Stacked,
    /// Members on the nodes with role `etcd`.
    External,
}

fn default_dial() -> Dur {
    Dur::from_secs(2)
}
fn default_attempt() -> Dur {
    Dur::from_millis(250)
}
fn default_ttl() -> Dur {
    Dur::from_secs(2)
}

/// The etcd cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Etcd {
    /// Client URLs. Default: every member's `http(s)://ADDRESS:2379`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// stacked or external. Default stacked.
    #[serde(default)]
    pub topology: EtcdTopology,
    /// CA bundle for TLS. Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate. Default none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key. Default none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Connect timeout. Default 2s.
    #[serde(default = "default_dial")]
    pub dial_timeout: Dur,
    /// How long one request waits for one member before the same request also goes to the
    /// next member. Default 250ms.
    #[serde(default = "default_attempt")]
    pub attempt_timeout: Dur,
    /// Lease TTL for elections and the fenced VIP (whole seconds, at least 2s). Default 2s.
    #[serde(default = "default_ttl")]
    pub lease_ttl: Dur,
    /// etcd's `--election-timeout` for the members `haplane plan` renders (kubeadm's
    /// `etcd.local.extraArgs`, or `etcd.env`). Default unset: etcd's own, 1000ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout: Option<Dur>,
    /// etcd's `--heartbeat-interval` for the members `haplane plan` renders. Default unset:
    /// etcd's own, 100ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<Dur>,
}

/// etcd's own `--election-timeout` and `--heartbeat-interval` defaults.
pub const ETCD_DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
pub const ETCD_DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

impl Etcd {
    /// The raft timers the rendered members run with: (election timeout, heartbeat interval),
    /// etcd's defaults where unset.
    pub fn raft_timers(&self) -> (Duration, Duration) {
        (
            self.election_timeout
                .map_or(ETCD_DEFAULT_ELECTION_TIMEOUT, |d| d.get()),
            self.heartbeat_interval
                .map_or(ETCD_DEFAULT_HEARTBEAT_INTERVAL, |d| d.get()),
        )
    }
}

/// What the leader of an election does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManifestAction {
    /// The manifest to publish while leader.
    pub source: PathBuf,
    /// Where the kubelet reads static pods (removed when not leader).
    pub target: PathBuf,
}

fn default_grace() -> Dur {
    Dur::from_secs(5)
}

/// A command run only while leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecAction {
    /// Command and arguments (no shell).
    pub command: Vec<String>,
    /// SIGTERM→SIGKILL grace on leadership loss. Default 5s.
    #[serde(default = "default_grace")]
    pub grace: Dur,
}

/// One election.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Election {
    /// Unique election name (its etcd key prefix).
    pub name: String,
    /// Keep a static-pod manifest in place while leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestAction>,
    /// Run a command while leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
}

fn default_snapshot_interval() -> Dur {
    Dur::from_secs(3600)
}
fn default_snapshot_dir() -> PathBuf {
    PathBuf::from("/var/lib/haplane/snapshots")
}
fn default_keep() -> usize {
    24
}

/// Scheduled etcd snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Snapshots {
    /// Time between snapshots. Default 1h.
    #[serde(default = "default_snapshot_interval")]
    pub interval: Dur,
    /// Directory for snapshot files. Default /var/lib/haplane/snapshots.
    #[serde(default = "default_snapshot_dir")]
    pub dir: PathBuf,
    /// Snapshots to keep. Default 24.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_k8s_version() -> String {
    "v1.31.0".into()
}
fn default_pod_subnet() -> String {
    "10.244.0.0/16".into()
}
fn default_service_subnet() -> String {
    "10.96.0.0/12".into()
}

/// Inputs for `haplane plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubernetes {
    /// Kubernetes version for kubeadm. Default v1.31.0.
    #[serde(default = "default_k8s_version")]
    pub version: String,
    /// Pod network CIDR. Default 10.244.0.0/16.
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: String,
    /// Service CIDR. Default 10.96.0.0/12.
    #[serde(default = "default_service_subnet")]
    pub service_subnet: String,
    /// Image of haplane's static pod. Default `localhost/haplane:VERSION`, the name the OCI
    /// archive from scripts/package carries (load it with `ctr -n k8s.io images import`).
    #[serde(default = "default_haplane_image")]
    pub haplane_image: String,
}

fn default_haplane_image() -> String {
    concat!("localhost/haplane:", env!("CARGO_PKG_VERSION")).into()
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            version: default_k8s_version(),
            pod_subnet: default_pod_subnet(),
            service_subnet: default_service_subnet(),
            haplane_image: default_haplane_image(),
        }
    }
}

impl Cluster {
    /// Parse a cluster file and apply every rule; warnings are returned, errors fail.
    pub fn from_yaml(text: &str, path: &Path) -> Result<(Cluster, Vec<Finding>), ConfigError> {
        // The parser's own snippet quotes the lines around an error, secrets included: render
        // a snippet here instead, with the secret lines redacted.
        let options = serde_saphyr::options! { with_snippet: false };
        let cluster: Cluster =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: parse_message(&e, text),
            })?;
        let findings = cluster.validate();
        if findings.iter().any(|f| f.severity == Severity::Error) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                findings,
            });
        }
        Ok((cluster, findings))
    }

    /// Parse a cluster file from its bytes and apply every rule (what [`Cluster::load`] does
    /// after reading). Bytes that are not UTF-8 are a parse error naming the offset.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Cluster, Vec<Finding>), ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        })?;
        Cluster::from_yaml(text, path)
    }

    /// Read, parse and validate a cluster file.
    pub fn load(path: &Path) -> Result<(Cluster, Vec<Finding>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Cluster::from_bytes(&bytes, path)
    }

    /// Every rule of the file format; see [`validate`].
    pub fn validate(&self) -> Vec<Finding> {
        validate::cluster(self)
    }

    /// Render back to YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes that run an apiserver.
    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.is(Role::Master))
    }

    /// Whether the VIP is carried by dedicated `lb` nodes instead of the masters.
    pub fn has_lb_nodes(&self) -> bool {
        self.nodes.iter().any(|n| n.is(Role::Lb))
    }

    /// The nodes that run VRRP for the VIP and the balancer behind it: the `lb` nodes when
    /// there are any, otherwise the masters.
    pub fn vrrp_nodes(&self) -> impl Iterator<Item = &Node> {
        let role = if self.has_lb_nodes() {
            Role::Lb
        } else {
            Role::Master
        };
        self.nodes.iter().filter(move |n| n.is(role))
    }

    /// Whether `node` runs VRRP for the VIP (and the balancer on `loadBalancer.listen`).
    pub fn runs_vrrp(&self, node: &Node) -> bool {
        if self.has_lb_nodes() {
            node.is(Role::Lb)
        } else {
            node.is(Role::Master)
        }
    }

    /// Whether `node` joins the etcd-backed elections and snapshots: masters only (an `lb`
    /// node has no control-plane singletons to run).
    pub fn runs_elections(&self, node: &Node) -> bool {
        self.etcd.is_some() && node.is(Role::Master)
    }

    /// Whether `node` talks to etcd at all: for the elections, or for the fenced VIP.
    pub fn uses_etcd(&self, node: &Node) -> bool {
        self.runs_elections(node) || (self.fencing() == Fencing::Quorum && self.runs_vrrp(node))
    }

    /// Pick this host's node: by name, or by the one node whose address is local.
    pub fn find_node(
        &self,
        name: Option<&str>,
        local_addresses: &[IpAddr],
    ) -> Result<&Node, FindNodeError> {
        if let Some(name) = name {
            return self.node(name).ok_or_else(|| {
                FindNodeError::UnknownName(
                    name.to_string(),
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            });
        }
        let matches: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| local_addresses.contains(&n.address))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(FindNodeError::NoMatch(
                local_addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            many => Err(FindNodeError::Ambiguous(
                many.iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// The interface carrying the VIP on `node`.
    pub fn vip_interface<'a>(&'a self, node: &'a Node) -> &'a str {
        node.interface.as_deref().unwrap_or(&self.vip.interface)
    }

    /// Effective fencing mode after resolving `auto`.
    pub fn fencing(&self) -> Fencing {
        match self.vip.fencing {
            Fencing::Auto if self.etcd.is_some() => Fencing::Quorum,
            Fencing::Auto => Fencing::None,
            other => other,
        }
    }

    /// Balancer backends: the explicit list, or every master at the apiserver port.
    pub fn lb_backends(&self) -> Vec<Backend> {
        match &self.load_balancer.backends {
            Some(list) => list.clone(),
            None => self
                .masters()
                .map(|n| Backend {
                    address: SocketAddr::new(n.address, self.api_server.port),
                    weight: 1,
                })
                .collect(),
        }
    }

    /// Resolve a listen address against the VIP.
    pub fn resolve_listen(&self, listen: ListenAddr) -> SocketAddr {
        match listen {
            ListenAddr::Vip(port) => SocketAddr::new(self.vip.address.addr, port),
            ListenAddr::Socket(sa) => sa,
        }
    }

    /// The etcd members: masters when stacked, `etcd` nodes when external.
    pub fn etcd_members(&self) -> Vec<&Node> {
        let topology = self.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
        let role = match topology {
            EtcdTopology::Stacked => Role::Master,
            EtcdTopology::External => Role::Etcd,
        };
        self.nodes.iter().filter(|n| n.is(role)).collect()
    }

    /// etcd client endpoints: explicit, or derived from the members.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        let Some(etcd) = &self.etcd else {
            return Vec::new();
        };
        if !etcd.endpoints.is_empty() {
            return etcd.endpoints.clone();
        }
        let scheme = if etcd.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        self.etcd_members()
            .iter()
            .map(|n| match n.address {
                IpAddr::V4(a) => format!("{scheme}://{a}:2379"),
                IpAddr::V6(a) => format!("{scheme}://[{a}]:2379"),
            })
            .collect()
    }
}
