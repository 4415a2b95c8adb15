//! The daemon's `/status` document, as one set of types: the daemon serializes them and its
//! readers (`haplane status`, the lab's drill and chaos) deserialize them, so a renamed or
//! retyped field is a compile error on both sides, not a silently empty column.
//!
//! The document is a [`Header`] plus one key per part the node runs (absent when it does not
//! run it): `vrrp` ([`Router`]s), `roles`, `runs` ([`Runs`]), `etcd` ([`EtcdClient`]),
//! `elections` ([`Election`]s), `fence` ([`Fence`]), `load_balancer` ([`Balancer`]) and
//! `maintenance`. The balancer's section is written by crates/lb (its own types, camelCase);
//! [`Balancer`] is the part of it readers use, and crates/haplane's test
//! `status_contract.rs` parses a real daemon's answer with every section present.
//!
//! Readers are tolerant across versions: every struct takes defaults for what an answer
//! lacks (a node still on the previous release during a rolling upgrade is shown, not
//! dropped), and unknown keys are ignored.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A whole `/status` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Who answers.
    #[serde(flatten)]
    pub header: Header,
    /// The VRRP routers, in config order (empty on nodes that run none).
    pub vrrp: Vec<Router>,
    /// The node's roles as the cluster file gives them (`master`, `lb`, `worker`, `etcd`).
    pub roles: Vec<String>,
    /// The parts of the daemon this node runs.
    pub runs: Option<Runs>,
    /// The daemon's etcd client.
    pub etcd: Option<EtcdClient>,
    /// The configured elections.
    pub elections: Vec<Election>,
    /// The fenced VIP's gate.
    pub fence: Option<Fence>,
    /// The balancer.
    pub load_balancer: Option<Balancer>,
    /// Maintenance and graceful handover, as the daemon reports it.
    pub maintenance: Option<serde_json::Value>,
}

/// The identity of the answering daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// `cluster` of the cluster file.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// haplane's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Unix time the daemon started, in seconds.
    pub started: f64,
    /// Unix time of this answer, in seconds.
    pub now: f64,
}

/// One VRRP router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Router {
    /// The instance name.
    pub instance: String,
    /// The interface it runs on.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// INIT, BACKUP, MASTER or FAULT.
    pub state: String,
    /// Configured priority.
    pub base_priority: u8,
    /// Priority after tracked checks' weights.
    pub effective_priority: u8,
    /// The current master's primary address (ourselves when master).
    pub master: Option<IpAddr>,
    /// The virtual addresses, with prefix.
    pub vips: Vec<String>,
    /// Whether the VIP is on our interface right now (as far as the daemon put it there).
    pub holds_vip: bool,
    /// The interface's link state.
    pub link_up: bool,
    /// The master's advert interval as learned (RFC 5798 §6.1 Master_Adver_Interval).
    pub master_adver_interval_ms: u64,
    /// Unix time of the last state change, in seconds.
    pub last_transition: f64,
    /// `vip.fencing`: none or quorum.
    pub fencing: String,
    /// Tracked checks, built-in ones included.
    pub checks: Vec<Check>,
    /// auth_hmac, when configured; rejections are under `counters.discarded` (`hmac_*`).
    pub auth_hmac: Option<AuthHmac>,
    /// Counters since start.
    pub counters: RouterCounters,
}

/// Counters of one VRRP router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterCounters {
    /// Adverts accepted.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Priority-0 adverts accepted (a master handing over).
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// State changes.
    pub transitions: u64,
    /// Times it became master.
    pub became_master: u64,
    /// auth_hmac: adverts accepted with a verified trailer.
    pub hmac_verified: u64,
    /// auth_hmac: adverts accepted without a trailer (permissive or receive-only mode).
    pub hmac_unsigned_accepted: u64,
    /// Discarded packets by reason; every reason is present, zeros included.
    pub discarded: BTreeMap<String, u64>,
}

/// auth_hmac as configured: never the keys, only their ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthHmac {
    /// enforce, permissive or receive-only.
    pub mode: String,
    /// time or monotonic.
    pub anti_replay: String,
    /// The key adverts are signed with.
    pub active_key: u8,
    /// Every key id accepted.
    pub key_ids: Vec<u8>,
    /// The freshness window in seconds (time mode).
    pub time_window_s: u64,
}

/// A tracked check as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Check {
    /// Its name (built-in checks: etcd-quorum, gate-defer, gate-unconfirmed, maintenance,
    /// balancer).
    pub name: String,
    /// Its weight (0: FAULT while down).
    pub weight: i16,
    /// Passing now.
    pub up: bool,
}

/// The parts of the daemon a node runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runs {
    /// A VRRP router for the VIP.
    pub vrrp: bool,
    /// Where the balancer listens; None when it runs none.
    pub balancer: Option<BalancerPlace>,
    /// The configured elections and snapshots.
    pub elections: bool,
    /// An etcd client (for the elections, the fenced VIP or both).
    pub etcd_client: bool,
    /// The VIP fenced by etcd quorum.
    pub fence: bool,
}

impl Runs {
    /// Whether it runs `part` (`vrrp`, `balancer`, `elections`, `etcd_client`, `fence`);
    /// None for a part this contract does not know.
    pub fn part(&self, part: &str) -> Option<bool> {
        Some(match part {
            "vrrp" => self.vrrp,
            "balancer" => self.balancer.is_some(),
            "elections" => self.elections,
            "etcd_client" => self.etcd_client,
            "fence" => self.fence,
            _ => return None,
        })
    }
}

/// Where a node's balancer listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerPlace {
    /// `loadBalancer.listen` (the VIP): the nodes that run VRRP for it.
    Vip,
    /// `loadBalancer.nodeLocalListen` (127.0.0.1): workers.
    NodeLocal,
}

impl BalancerPlace {
    /// The name in /status.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancerPlace::Vip => "vip",
            BalancerPlace::NodeLocal => "node-local",
        }
    }
}

/// The daemon's etcd client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdClient {
    /// It has reached etcd.
    pub connected: bool,
    /// Every configured member, in configured order.
    pub members: Vec<EtcdMember>,
}

/// One etcd member as the client sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdMember {
    /// Its client URL.
    pub endpoint: String,
    /// The endpoint's index in the configured list.
    pub index: usize,
    /// Whether its last request succeeded.
    pub up: bool,
    /// Whether requests go here first.
    pub preferred: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// Smoothed round-trip time in microseconds, once it answered.
    pub rtt_us: Option<u64>,
    /// Why it is down.
    pub last_error: Option<String>,
}

/// One configured election.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Election {
    /// Election name.
    pub name: String,
    /// Our identity.
    pub identity: String,
    /// "leader" or "follower".
    pub role: String,
    /// Identity of the current leader, if known.
    pub leader: Option<String>,
    /// Milliseconds until our lease deadline, when we lead.
    pub lease_deadline_ms: Option<u64>,
}

/// The fenced VIP's gate (docs/elections.md "The VIP gate").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fence {
    /// Always "quorum" (the `vip.fencing` mode).
    pub mode: String,
    /// Fencing is armed (this node has reached etcd).
    pub armed: bool,
    /// The etcd key the gate renews.
    pub key: String,
    /// VRRP makes this node master, so it wants the VIP.
    pub want: bool,
    /// This node holds the VIP under the gate now.
    pub leader: bool,
    /// The key's holder as this node last learned it (None: the key is absent).
    pub current_holder: Option<String>,
    /// The key's mod revision as last learned.
    pub key_mod_revision: Option<i64>,
    /// How long ago this node learned that `current_holder` holds the key.
    pub holder_since_ms_ago: Option<u64>,
    /// Time left until this node's hold deadline, while it holds.
    pub hold_remaining_ms: Option<u64>,
    /// Time left until this node may take the key from a silent holder.
    pub takeover_in_ms: Option<u64>,
    /// Why this node does or does not hold the VIP (crates/gate `Reason`).
    pub reason: String,
    /// The router's priority is lowered because another node holds the key.
    pub deferring: bool,
    /// The etcd-quorum check (a request answered within the last 3 s).
    pub etcd_quorum: bool,
    /// Renewals that succeeded.
    pub renewals: u64,
    /// Requests that failed or timed out.
    pub failures: u64,
    /// R: how often the holder renews, in milliseconds.
    pub renew_interval_ms: u64,
    /// H: how long a confirmed renewal lets the holder hold, in milliseconds.
    pub hold_ms: u64,
    /// The challenger's wait H·(1+ρ)+δ, in milliseconds.
    pub takeover_wait_ms: u64,
    /// How the kernel stops this node answering for the VIP at the deadline.
    pub kernel_stop: String,
}

/// The part of the balancer's section (written by crates/lb, camelCase) that readers use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[serde(rename_all = "camelCase")]
pub struct Balancer {
    /// Client connections being served now.
    pub active_connections: u64,
    /// Backends of the current configuration, in configured order.
    pub backends: Vec<Backend>,
}

impl Balancer {
    /// Backends that pass their health checks.
    pub fn backends_up(&self) -> usize {
        self.backends.iter().filter(|b| b.up).count()
    }
}

/// One balancer backend, as readers use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// `IP:PORT`.
    pub address: String,
    /// Passes its health checks.
    pub up: bool,
    /// `up`, `draining` or `dead`.
    pub state: String,
    /// Takes new sessions now.
    pub in_service: bool,
}

impl Status {
    /// The first VRRP router (the daemon runs one per VIP; one VIP per cluster file).
    pub fn router(&self) -> Option<&Router> {
        self.vrrp.first()
    }
}
