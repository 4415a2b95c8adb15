//! `lab drill`: break the lab in the ways clusters break while clients write through the VIP
//! and through the node-local balancer, and measure what they felt: gaps between acknowledged
//! writes, who holds the VIP's address, who *answers* ARP for it, and the leaders.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;

use crate::LabError;
use crate::arp_probe::{ArpProbe, Mac, interface_mac};
use crate::client::{self, Attempt, ClientOptions, Log};
use crate::procs::{self, Kind};
use crate::state::{LabState, NodeInfo};
use crate::stats::{self, ScenarioStats};
use crate::streams::{StreamProbe, StreamReport};
use crate::timeline::{
    Segment, availability, changes, holder_names, longest_empty, longest_gap, longest_gap_within,
    segments,
};
use crate::view;

/// The failures the drill injects, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The VIP holder crashes: SIGKILL all its processes and take its link down.
    HolderCrash,
    /// The service (etcd, or the kube-apiserver) dies on the VIP holder; the node lives.
    ServiceDies,
    /// Graceful shutdown of the holder: SIGTERM haplane (priority-0 handover), then the rest.
    GracefulShutdown,
    /// The holder is cut off from the other masters but still reaches the clients.
    HolderPartitioned,
    /// One etcd member other than the holder's is lost.
    EtcdMemberLost,
    /// The whole holder freezes (SIGSTOP), then resumes (SIGCONT).
    HolderFreeze,
    /// The holder is partitioned until another master serves the VIP; then the partition
    /// heals and the node returns (with `preempt: true` it takes the VIP back).
    PartitionHeal,
    /// The holder crashes; once another master serves the VIP it reboots and returns.
    CrashRestart,
    /// The holder is taken out for maintenance (`haplane maintenance enter`) while long-lived
    /// streams and a loop of new connections run through the VIP, then put back (`exit`).
    Maintenance,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 9] = [
        Scenario::HolderCrash,
        Scenario::ServiceDies,
        Scenario::GracefulShutdown,
        Scenario::HolderPartitioned,
        Scenario::EtcdMemberLost,
        Scenario::HolderFreeze,
        Scenario::PartitionHeal,
        Scenario::CrashRestart,
        Scenario::Maintenance,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HolderCrash => "holder-crash",
            Scenario::ServiceDies => "service-dies",
            Scenario::GracefulShutdown => "graceful-shutdown",
            Scenario::HolderPartitioned => "holder-partitioned",
            Scenario::EtcdMemberLost => "etcd-member-lost",
            Scenario::HolderFreeze => "holder-freeze",
            Scenario::PartitionHeal => "partition-heal",
            Scenario::CrashRestart => "crash-restart",
            Scenario::Maintenance => "maintenance",
        }
    }

    /// One line for humans.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::HolderCrash => "the VIP holder crashes: SIGKILL all its processes, link down",
            Scenario::ServiceDies => "the service dies on the VIP holder while the node lives",
            Scenario::GracefulShutdown => "graceful shutdown of the VIP holder",
            Scenario::HolderPartitioned => {
                "the holder is partitioned from the other masters, not from the clients"
            }
            Scenario::EtcdMemberLost => "one etcd member (not the holder's) is lost",
            Scenario::HolderFreeze => "the whole holder freezes (SIGSTOP) and then resumes",
            Scenario::PartitionHeal => {
                "the holder is partitioned until another master serves the VIP, then returns"
            }
            Scenario::Maintenance => {
                "the VIP holder enters maintenance under long-lived streams and new connections, then returns"
            }
            Scenario::CrashRestart => {
                "the holder crashes; once another master serves the VIP it reboots and returns"
            }
        }
    }

    /// How long the fault lasts before it is healed; None: until another master serves the
    /// VIP (the scenarios that measure a node's return).
    fn hold(self) -> Option<Duration> {
        match self {
            // Longer than the lease TTL plus detection, so fencing has to act.
            Scenario::HolderPartitioned | Scenario::HolderFreeze => Some(Duration::from_secs(6)),
            Scenario::PartitionHeal | Scenario::CrashRestart | Scenario::Maintenance => None,
            _ => Some(Duration::from_secs(4)),
        }
    }

    /// Whether the fault is a partition of the holder (healed by removing it).
    fn partitions(self) -> bool {
        matches!(self, Scenario::HolderPartitioned | Scenario::PartitionHeal)
    }

    /// Whether the fault is a crash of the holder (healed by a reboot).
    fn crashes(self) -> bool {
        matches!(self, Scenario::HolderCrash | Scenario::CrashRestart)
    }

    /// Parses `NAME`, a comma-separated list, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, LabError> {
        if s == "all" {
            return Ok(Scenario::ALL.to_vec());
        }
        s.split(',')
            .map(|n| {
                Scenario::ALL
                    .into_iter()
                    .find(|sc| sc.name() == n.trim())
                    .ok_or_else(|| {
                        LabError::BadArgs(format!(
                            "unknown scenario {n:?}; one of all, {}",
                            Scenario::ALL.map(|s| s.name()).join(", ")
                        ))
                    })
            })
            .collect()
    }
}

/// Where etcd's raft leader is put before the fault (`etcdctl move-leader`). The fault's
/// target is the VIP holder, or for `etcd-member-lost` the member that is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The raft leader is the node the fault hits (the worst case: an election on top).
    Target,
    /// The raft leader is another master.
    Elsewhere,
    /// Left wherever it is (`service-dies` still moves it off the holder, so that scenario
    /// measures the balancer rather than an etcd election).
    AsFound,
}

impl Placement {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Target => "target",
            Placement::Elsewhere => "elsewhere",
            Placement::AsFound => "as-found",
        }
    }

    /// Parses `target`, `elsewhere`, `as-found` or `both` (target, then elsewhere).
    pub fn parse_list(s: &str) -> Result<Vec<Placement>, LabError> {
        match s.trim() {
            "both" => Ok(vec![Placement::Target, Placement::Elsewhere]),
            "target" => Ok(vec![Placement::Target]),
            "elsewhere" => Ok(vec![Placement::Elsewhere]),
            "as-found" => Ok(vec![Placement::AsFound]),
            other => Err(LabError::BadArgs(format!(
                "unknown --etcd-leader {other:?}; one of both, target, elsewhere, as-found"
            ))),
        }
    }
}

/// One scenario under one leader placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The fault.
    pub scenario: Scenario,
    /// Where etcd's leader is before it.
    pub placement: Placement,
}

/// What to drill and how the clients behave.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The steps of one round, in order.
    pub steps: Vec<Step>,
    /// Rounds (`--repeat`): every step runs this many times, round by round, so slow drift
    /// of the machine spreads over all steps alike.
    pub repeat: usize,
    /// The writers' timeouts.
    pub client: ClientOptions,
}

impl DrillOptions {
    /// Every scenario under every placement (scenario-major), once, default client.
    pub fn new(scenarios: &[Scenario], placements: &[Placement]) -> DrillOptions {
        DrillOptions {
            steps: matrix(scenarios, placements),
            repeat: 1,
            client: ClientOptions::default(),
        }
    }
}

/// Each scenario under each placement, scenario-major.
pub fn matrix(scenarios: &[Scenario], placements: &[Placement]) -> Vec<Step> {
    scenarios
        .iter()
        .flat_map(|&scenario| {
            placements.iter().map(move |&placement| Step {
                scenario,
                placement,
            })
        })
        .collect()
}

/// The client paths.
pub const PATHS: [&str; 2] = ["vip", "node-local"];

/// What one client path felt during a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// `vip` or `node-local`.
    pub path: String,
    /// Write attempts.
    pub requests: u64,
    /// Attempts that failed or timed out.
    pub failed: u64,
    /// Longest time between two acknowledged writes, ms.
    pub longest_gap_ms: u64,
    /// Acknowledged writes.
    pub acked: u64,
    /// Acknowledged writes not readable after healing (must be 0).
    pub lost: u64,
    /// Why the read-back could not be done, if it could not.
    pub verify_error: Option<String>,
    /// Failed attempts by reason (`timeout`, `connect`, `refused`, `no leader`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The writes around the fault, to tell what it cost this path from the rest.
    pub fault: Option<FaultEffect>,
}

/// One path's writes around the fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEffect {
    /// From the last write acknowledged before the fault to the first acknowledged after it,
    /// or around the first write that failed after the fault (and before any heal) if that
    /// is longer, ms: the gap the fault caused (`longest_gap_ms` may lie elsewhere, in a stall
    /// of the machine or at the heal).
    pub gap_ms: u64,
    /// Start to end of the first write acknowledged after the fault, ms: a new connection
    /// (with the balancer's failover past a dead backend) and etcd's commit.
    pub first_ok_latency_ms: Option<u64>,
    /// The median start-to-end time of this path's writes acknowledged before the fault, ms.
    pub baseline_latency_ms: Option<u64>,
    /// Every failed attempt, its start and end in ms relative to the fault (negative: before).
    pub failures: Vec<Failure>,
}

/// A failed write attempt, timed relative to the fault.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Start, ms after the fault (negative: it was in flight when the fault came).
    pub start_ms: i64,
    /// End, ms after the fault.
    pub end_ms: i64,
    /// Why it failed.
    pub error: String,
}

/// The writes of one path (`mine`, times since the drill's origin) around a fault at
/// `fault`, healed at `heal` if the scenario heals (same clock).
fn fault_effect(mine: &[&Attempt], fault: u64, heal: Option<u64>) -> FaultEffect {
    let rel = |t: u64| t as i64 - fault as i64;
    let last_ack_by = |t: u64| {
        mine.iter()
            .filter(|a| a.ok && a.end_ms <= t)
            .map(|a| a.end_ms)
            .max()
    };
    let first_ack_after = |t: u64| {
        mine.iter()
            .filter(|a| a.ok && a.end_ms > t)
            .min_by_key(|a| a.end_ms)
    };
    let gap = |from: Option<u64>, to: Option<&&Attempt>| match (from, to) {
        (Some(b), Some(a)) => a.end_ms - b,
        _ => 0,
    };
    let last_before = last_ack_by(fault);
    let first_after = first_ack_after(fault);
    // A fault takes a moment to bite (a freeze stops one process after another, a partition's
    // rules load): writes acknowledged just after the marker would make the gap across it look
    // short. So the gap around the first write that failed after the fault, if that came
    // before the heal, counts too.
    let first_failure = mine
        .iter()
        .filter(|a| !a.ok && a.end_ms > fault && heal.is_none_or(|h| a.start_ms < h))
        .min_by_key(|a| a.end_ms);
    let failure_gap = first_failure.map_or(0, |f| {
        gap(last_ack_by(f.start_ms), first_ack_after(f.end_ms))
    });
    let mut before: Vec<u64> = mine
        .iter()
        .filter(|a| a.ok && a.end_ms <= fault)
        .map(|a| a.end_ms - a.start_ms)
        .collect();
    before.sort_unstable();
    FaultEffect {
        gap_ms: gap(last_before, first_after).max(failure_gap),
        first_ok_latency_ms: first_after.map(|a| a.end_ms - a.start_ms),
        baseline_latency_ms: before.get(before.len() / 2).copied(),
        failures: mine
            .iter()
            .filter(|a| !a.ok)
            .map(|a| Failure {
                start_ms: rel(a.start_ms),
                end_ms: rel(a.end_ms),
                error: a.error.unwrap_or("unknown").to_string(),
            })
            .collect(),
    }
}

/// A moment on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    /// ms since the scenario started.
    pub at: u64,
    /// `fault`, `heal` or `recovered`.
    pub kind: String,
    /// What happened.
    pub label: String,
}

/// Everything needed to draw a scenario.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timeline {
    /// Length, ms.
    pub duration_ms: u64,
    /// Client availability per path.
    pub clients: BTreeMap<String, Vec<Segment>>,
    /// Who answered ARP for the VIP (as the worker saw it).
    pub answers: Vec<Segment>,
    /// Who had the VIP on its interface.
    pub vip: Vec<Segment>,
    /// Leaders: `etcd` and each election.
    pub leaders: BTreeMap<String, Vec<Segment>>,
    /// Fault, heal and recovery.
    pub markers: Vec<Marker>,
}

/// The figures of the time after the heal: the faulted node's return.
#[derive(Debug, Clone, Serialize)]
pub struct AfterHeal {
    /// The heal, ms since the scenario started.
    pub from_ms: u64,
    /// Longest interval with the VIP on no node's interface.
    pub longest_no_holder_ms: u64,
    /// Longest interval with no node answering ARP for the VIP.
    pub longest_no_answer_ms: u64,
    /// Longest gap between acknowledged writes through the VIP.
    pub vip_gap_ms: u64,
    /// Longest gap through the node-local balancer.
    pub local_gap_ms: u64,
    /// Times the answering node changed.
    pub vip_moves: u64,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Where etcd's raft leader was to be before the fault (`target`, `elsewhere`,
    /// `as-found`).
    pub etcd_leader: String,
    /// Which round of `--repeat` (from 1).
    pub run: usize,
    /// What was done.
    pub description: String,
    /// Whether the fault was injected and healed.
    pub completed: bool,
    /// Whether the lab was healthy again after healing.
    pub recovered: bool,
    /// The VIP holder before the fault.
    pub holder_before: Option<String>,
    /// The node the fault hit.
    pub target: Option<String>,
    /// etcd's raft leader just before the fault.
    pub etcd_leader_before: Option<String>,
    /// The VIP holder at the end.
    pub holder_after: Option<String>,
    /// From healing to healthy, ms.
    pub recovery_ms: Option<u64>,
    /// Per client path.
    pub paths: Vec<PathResult>,
    /// ARP probes of the VIP from the worker (every 10 ms).
    pub arp_samples: u64,
    /// Probes answered by more than one node: **split brain** as clients can meet it.
    pub split_brain_samples: u64,
    /// Probes nobody answered.
    pub no_answer_samples: u64,
    /// Longest interval with no node answering for the VIP, ms.
    pub longest_no_answer_ms: u64,
    /// 10 ms samples of which nodes have the VIP on their interface.
    pub vip_samples: u64,
    /// Samples with the address on more than one node with a working link (a node can hold
    /// it without answering, behind a fence, so this is kept beside the ARP figure).
    pub address_split_samples: u64,
    /// Samples with the VIP on no node.
    pub no_holder_samples: u64,
    /// Longest interval with the VIP on no node's interface, ms.
    pub longest_no_holder_ms: u64,
    /// Samples with the VIP left on a node whose link is down (not reachable, not counted as
    /// a holder).
    pub stale_vip_samples: u64,
    /// Times the answering node changed.
    pub vip_moves: u64,
    /// The same figures from the heal on: the faulted node's return.
    pub after_heal: Option<AfterHeal>,
    /// Leader changes per lane (`etcd`, each election).
    pub leader_changes: BTreeMap<String, u64>,
    /// Anything noteworthy (a step that failed, a lab that did not recover).
    pub notes: Vec<String>,
    /// The `maintenance` scenario's long-lived streams and new-connection requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamReport>,
    /// The timeline.
    pub timeline: Timeline,
}

/// The whole drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    /// Lab name.
    pub lab: String,
    /// `quorum` or `none`.
    pub fencing: String,
    /// The lab's `vip.preempt`.
    pub preempt: bool,
    /// etcd's `--election-timeout` on the lab's masters, in ms.
    pub etcd_election_timeout_ms: u64,
    /// What the balancers serve.
    pub service: String,
    /// The writers' timeouts.
    pub client: ClientOptions,
    /// Rounds run (`--repeat`).
    pub repeat: usize,
    /// Every scenario run, in the order run.
    pub scenarios: Vec<ScenarioResult>,
    /// Per scenario and placement over the runs: p50, p99, worst.
    pub stats: Vec<ScenarioStats>,
    /// Acknowledged writes lost over all scenarios (must be 0).
    pub lost_writes: u64,
    /// Split-brain samples (two nodes answering ARP) over all scenarios.
    pub split_brain_samples: u64,
    /// Samples with the address on two nodes, over all scenarios.
    pub address_split_samples: u64,
    /// Every scenario run completed and recovered.
    pub all_completed: bool,
    /// Scenarios not run on this lab, with the reason (`service-dies` behind lb nodes).
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Notes on the drill as a whole (etcd-leader placements that do not apply, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A scenario the lab's topology has nothing to apply to.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Scenario name.
    pub name: String,
    /// Why it was not run.
    pub reason: String,
}

/// Why `sc` cannot run on lab `st`, if it cannot.
pub fn skip_reason(st: &LabState, sc: Scenario) -> Option<String> {
    match sc {
        Scenario::ServiceDies if !st.lbs.is_empty() => Some(format!(
            "the VIP is held by an lb node, which runs no service to kill (etcd{} runs on the masters); etcd-member-lost kills a master's etcd instead",
            if st.apiserver.is_some() {
                " and the kube-apiserver"
            } else {
                ""
            }
        )),
        _ => None,
    }
}

/// The steps to run on `st`, the skipped scenarios and notes. Behind lb nodes the fault's
/// target (the VIP holder) has no etcd member, so etcd's leader cannot be put on or off it:
/// those scenarios run once, with the leader as found; `etcd-member-lost` targets a master
/// and keeps its placements.
pub fn plan_steps(st: &LabState, steps: &[Step]) -> (Vec<Step>, Vec<Skipped>, Vec<String>) {
    let mut out: Vec<Step> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut collapsed: Vec<&str> = Vec::new();
    for step in steps {
        if let Some(reason) = skip_reason(st, step.scenario) {
            if !skipped.iter().any(|s| s.name == step.scenario.name()) {
                skipped.push(Skipped {
                    name: step.scenario.name().into(),
                    reason,
                });
            }
            continue;
        }
        let mut step = *step;
        if !st.lbs.is_empty()
            && step.scenario != Scenario::EtcdMemberLost
            && step.placement != Placement::AsFound
        {
            if !collapsed.contains(&step.scenario.name()) {
                collapsed.push(step.scenario.name());
            }
            step.placement = Placement::AsFound;
        }
        if !out.contains(&step) {
            out.push(step);
        }
    }
    let notes = if collapsed.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "the VIP is on lb nodes, which run no etcd member: {} ran with etcd's leader as found (--etcd-leader applies to etcd-member-lost only)",
            collapsed.join(", ")
        )]
    };
    (out, skipped, notes)
}

impl DrillResult {
    /// No lost write, no split brain, every scenario completed and recovered.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0 && self.split_brain_samples == 0 && self.all_completed
    }
}

/// A 10 ms sample of the VIP's address.
#[derive(Debug, Clone, Copy)]
struct VipSample {
    t: u64,
    /// Watched nodes (bit i = `vip_watch()[i]`) with the VIP on a working link.
    holders: u32,
    /// Masters with the VIP on an interface whose link is down (a crashed node's leftover:
    /// it answers nobody, so it is no split brain).
    stale: u32,
}

/// One ARP probe round.
#[derive(Debug, Clone, Copy)]
struct ArpSample {
    t: u64,
    /// Watched nodes (bit i = `vip_watch()[i]`) that answered.
    answering: u32,
    /// Answers from addresses that are no master's.
    strangers: u32,
}

impl ArpSample {
    fn answers(&self) -> u32 {
        self.answering.count_ones() + self.strangers
    }
}

/// A leader sample (~every 150 ms).
#[derive(Debug, Clone)]
struct LeaderSample {
    t: u64,
    leaders: BTreeMap<String, String>,
}

struct Shared {
    origin: Instant,
    stop: AtomicBool,
    /// Watched nodes whose link the drill took down (bit i = `vip_watch()[i]`).
    isolated: AtomicU32,
    vip: Mutex<Vec<VipSample>>,
    arp: Mutex<Vec<ArpSample>>,
    /// Why the ARP probe stopped, if it did.
    arp_error: Mutex<Option<String>>,
    leaders: Mutex<Vec<LeaderSample>>,
    log: Log,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the drill on lab `st`.
pub fn run(st: &LabState, opts: &DrillOptions) -> Result<DrillResult, LabError> {
    opts.client.validate().map_err(LabError::BadArgs)?;
    if opts.repeat == 0 || opts.steps.is_empty() {
        return Err(LabError::BadArgs(
            "--repeat must be at least 1 and at least one scenario must be given".into(),
        ));
    }
    let (steps, skipped, drill_notes) = plan_steps(st, &opts.steps);
    let topo = netlab::Topology::open(&st.name)?;
    let worker = st
        .workers
        .first()
        .ok_or_else(|| LabError::BadArgs("the drill needs a worker (lab up --workers 1)".into()))?;
    let whost = topo.host(&worker.name)?;
    view::wait_healthy(st, &topo, Duration::from_secs(45)).map_err(|p| LabError::NotHealthy {
        detail: p,
        logs: st.dir.join("logs"),
    })?;
    // Who answers for the VIP: the MACs of the nodes watched for it, and a probe on the
    // worker beside the clients (its nft rule keeps the probe from refreshing the clients'
    // ARP entry).
    let macs: Vec<Mac> = st
        .vip_watch()
        .iter()
        .map(|m| interface_mac(topo.host(&m.name)?, "eth0"))
        .collect::<Result<_, _>>()?;
    let probe = ArpProbe::open(whost, st.vip)?;
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        stop: AtomicBool::new(false),
        isolated: AtomicU32::new(0),
        vip: Mutex::new(Vec::new()),
        arp: Mutex::new(Vec::new()),
        arp_error: Mutex::new(None),
        leaders: Mutex::new(Vec::new()),
        log: Arc::new(Mutex::new(Vec::new())),
    });
    let targets = [
        std::net::SocketAddr::from((st.vip, st.port)),
        std::net::SocketAddr::from(([127, 0, 0, 1], st.port)),
    ];
    let mut results = Vec::new();
    std::thread::scope(|s| {
        // The clients, inside the worker's namespace.
        let sh = shared.clone();
        let (run2, client_opts) = (run_id.clone(), opts.client);
        s.spawn(move || {
            let r = client::run_writers(
                whost,
                &targets,
                &PATHS,
                &run2,
                sh.origin,
                client_opts,
                &sh.stop,
                &sh.log,
            );
            if let Err(e) = r {
                tracing::error!(error = %e, "lab: drill clients failed");
            }
        });
        // The ARP probe: every 10 ms, who answers for the VIP.
        let sh = shared.clone();
        let probe = &probe;
        let macs = &macs;
        s.spawn(move || {
            let r = probe.run(Duration::from_millis(10), &sh.stop, |round| {
                let mut sample = ArpSample {
                    t: round.sent.saturating_duration_since(sh.origin).as_millis() as u64,
                    answering: 0,
                    strangers: 0,
                };
                for m in &round.answers {
                    match macs.iter().position(|x| x == m) {
                        Some(i) => sample.answering |= 1 << i,
                        None => sample.strangers += 1,
                    }
                }
                lock(&sh.arp).push(sample);
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "lab: the ARP probe stopped");
                *lock(&sh.arp_error) = Some(e.to_string());
            }
        });
        // The address sampler: every 10 ms, which watched nodes have the VIP on eth0.
        let sh = shared.clone();
        let topo_ref = &topo;
        s.spawn(move || {
            let vip = IpAddr::V4(st.vip);
            let hosts: Vec<_> = st
                .vip_watch()
                .into_iter()
                .filter_map(|m| topo_ref.host(&m.name).ok())
                .collect();
            let mut next = Instant::now();
            while !sh.stop.load(Ordering::Relaxed) {
                let mut holders = 0u32;
                for (i, h) in hosts.iter().enumerate() {
                    if h.has_address(vip).unwrap_or(false) {
                        holders |= 1 << i;
                    }
                }
                let t = sh.origin.elapsed().as_millis() as u64;
                let isolated = sh.isolated.load(Ordering::Relaxed);
                lock(&sh.vip).push(VipSample {
                    t,
                    holders: holders & !isolated,
                    stale: holders & isolated,
                });
                next += Duration::from_millis(10);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        // The leader sampler: etcd's leader and each election's, as the nodes report them.
        let sh = shared.clone();
        s.spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                let v = view::lab_view_fast(st, topo_ref);
                let mut leaders = v.election_leaders.clone();
                leaders.insert(
                    "etcd".to_string(),
                    v.etcd_leader.clone().unwrap_or_else(|| "none".into()),
                );
                let t = sh.origin.elapsed().as_millis() as u64;
                lock(&sh.leaders).push(LeaderSample { t, leaders });
                std::thread::sleep(Duration::from_millis(150));
            }
        });

        // Let the clients get going before the first baseline.
        std::thread::sleep(Duration::from_millis(1500));
        for round in 1..=opts.repeat {
            for step in &steps {
                let r = run_scenario(st, &topo, *step, round, &shared, &run_id);
                tracing::info!(
                    scenario = step.scenario.name(),
                    etcd_leader = step.placement.name(),
                    round,
                    "lab: scenario done"
                );
                results.push(r);
            }
        }
        shared.stop.store(true, Ordering::Relaxed);
    });
    // Remove the drill's keys; the lab stays usable for more drills.
    let eps = st.etcd_endpoints();
    let _ = whost.enter(|| {
        client::runtime()
            .ok()
            .map(|rt| rt.block_on(client::cleanup(&eps, &run_id)))
    });
    let lost_writes = results
        .iter()
        .flat_map(|r| r.paths.iter())
        .map(|p| p.lost)
        .sum();
    Ok(DrillResult {
        lab: st.name.clone(),
        fencing: st.fencing.clone(),
        preempt: st.preempt,
        etcd_election_timeout_ms: st.etcd_election_timeout_ms,
        service: if st.apiserver.is_some() {
            format!("kube-apiserver :{}", st.port)
        } else {
            format!("etcd client API :{}", st.port)
        },
        client: opts.client,
        repeat: opts.repeat,
        all_completed: results.iter().all(|r| r.completed && r.recovered),
        skipped,
        notes: drill_notes,
        lost_writes,
        split_brain_samples: results.iter().map(|r| r.split_brain_samples).sum(),
        address_split_samples: results.iter().map(|r| r.address_split_samples).sum(),
        stats: stats::aggregate(&results),
        scenarios: results,
    })
}

fn now_ms(sh: &Shared) -> u64 {
    sh.origin.elapsed().as_millis() as u64
}

/// The watched nodes holding the VIP right now (kernel view).
fn holders_now(st: &LabState, topo: &netlab::Topology) -> Vec<String> {
    let vip = IpAddr::V4(st.vip);
    st.vip_watch()
        .into_iter()
        .filter(|m| {
            topo.host(&m.name)
                .ok()
                .and_then(|h| h.has_address(vip).ok())
                .unwrap_or(false)
        })
        .map(|m| m.name.clone())
        .collect()
}

/// The node holding the VIP right now (kernel view), when exactly one does.
fn current_holder(st: &LabState, topo: &netlab::Topology) -> Option<String> {
    let holders = holders_now(st, topo);
    (holders.len() == 1).then(|| holders[0].clone())
}

/// Whether path `path` had a write acknowledged within the last `ms` ms.
fn path_writes(sh: &Shared, path: usize, ms: u64) -> bool {
    let now = now_ms(sh);
    lock(&sh.log)
        .iter()
        .rev()
        .take(400)
        .any(|a| a.path == path && a.ok && a.end_ms + ms >= now)
}

/// Waits until every client path had a write acknowledged within the last 300 ms.
fn wait_clients(sh: &Shared, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let stale: Vec<&str> = PATHS
            .iter()
            .enumerate()
            .filter(|(i, _)| !path_writes(sh, *i, 300))
            .map(|(_, p)| *p)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the lab looks healthy but writes via {} still fail",
                stale.join(" and ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a node other than `old` holds the VIP and writes through it succeed, then a
/// little longer so the new holder is settled; false when that did not happen in time.
fn wait_taken_over(st: &LabState, topo: &netlab::Topology, sh: &Shared, old: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let others = holders_now(st, topo).iter().any(|h| h != old);
        if others && path_writes(sh, 0, 300) {
            std::thread::sleep(Duration::from_secs(2));
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// After recovery: with `preempt: true`, waits for the highest-priority VIP node (the first)
/// to take the VIP back; then until the holder has not changed for 2 s. So a move after the
/// return falls inside the scenario's window.
fn settle(st: &LabState, topo: &netlab::Topology) -> Option<String> {
    let mut note = None;
    if st.preempt
        && let Some(first) = st.vip_nodes().first()
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        while current_holder(st, topo).as_deref() != Some(first.name.as_str()) {
            if Instant::now() >= deadline {
                note = Some(format!(
                    "preempt: {} (the highest priority) did not take the VIP back within 20 s",
                    first.name
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = holders_now(st, topo);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = holders_now(st, topo);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    note
}

/// Moves etcd's raft leadership from `from` to `to` (`etcdctl move-leader`, sent to the
/// leader itself) and waits until the members agree.
fn move_etcd_leader(
    st: &LabState,
    topo: &netlab::Topology,
    view: &crate::ClusterView,
    from: &str,
    to: &str,
) -> Result<String, String> {
    let id = view
        .nodes
        .iter()
        .find(|n| n.name == to)
        .and_then(|n| n.etcd.as_ref()?.member_id.clone())
        .ok_or_else(|| format!("no etcd member id for {to}"))?;
    let host = topo.host(from).map_err(|e| e.to_string())?;
    let ep = format!("http://127.0.0.1:{}", st.etcd_port);
    host.run(&[
        "etcdctl",
        "--endpoints",
        ep.as_str(),
        "move-leader",
        id.as_str(),
    ])
    .map_err(|e| format!("could not move the etcd leadership from {from} to {to}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if view::lab_view_fast(st, topo).etcd_leader.as_deref() == Some(to) {
            return Ok(format!("etcd leadership moved from {from} to {to}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "etcd leadership sent from {from} to {to}, but {to} did not lead within 3 s"
    ))
}

/// Puts etcd's raft leader where `placement` wants it relative to `target`; returns a note
/// when something was moved or could not be. A loaded etcd sometimes ignores a
/// `move-leader` (the transfer times out inside raft), so it is tried up to three times.
fn place_etcd_leader(
    st: &LabState,
    topo: &netlab::Topology,
    placement: Placement,
    target: &str,
) -> Option<String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match place_etcd_leader_once(st, topo, placement, target) {
            Ok(note) => return note,
            Err(note) if tries == 3 => return Some(note),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// One try of [`place_etcd_leader`]: `Ok(None)` when the leader is already in place,
/// `Ok(Some(note))` when it was moved, `Err(note)` when it could not be.
fn place_etcd_leader_once(
    st: &LabState,
    topo: &netlab::Topology,
    placement: Placement,
    target: &str,
) -> Result<Option<String>, String> {
    let view = view::lab_view(st, topo);
    let Some(leader) = view.etcd_leader.clone() else {
        return Err("no etcd leader to place".into());
    };
    let to = match placement {
        Placement::AsFound => return Ok(None),
        Placement::Target if leader == target => return Ok(None),
        Placement::Target => target.to_string(),
        Placement::Elsewhere if leader != target => return Ok(None),
        Placement::Elsewhere => {
            let other = view.nodes.iter().find(|n| {
                n.has_role("master")
                    && n.name != target
                    && n.etcd.as_ref().is_some_and(|e| e.healthy)
            });
            match other {
                Some(n) => n.name.clone(),
                None => return Err(format!("no healthy etcd member but {target} to lead")),
            }
        }
    };
    move_etcd_leader(st, topo, &view, &leader, &to).map(Some)
}

/// The etcd member `etcd-member-lost` kills: with a placement, the first master that does
/// not hold the VIP (the leader is then moved onto it or off it); as found, the etcd leader
/// unless it is the holder.
fn member_victim(
    st: &LabState,
    view: &crate::ClusterView,
    holder: &str,
    placement: Placement,
) -> Option<NodeInfo> {
    let other = st.masters.iter().find(|m| m.name != holder);
    if placement != Placement::AsFound {
        return other.cloned();
    }
    let leader = view
        .etcd_leader
        .as_ref()
        .and_then(|l| st.masters.iter().find(|m| &m.name == l && m.name != holder));
    leader.or(other).cloned()
}

/// Puts everything back: links up, partitions healed, frozen processes thawed, daemons running.
fn repair(st: &LabState, topo: &netlab::Topology) -> Vec<String> {
    let mut notes = Vec::new();
    if let Err(e) = topo.heal_all() {
        notes.push(format!("heal partitions: {e}"));
    }
    for n in st.nodes() {
        if let Ok(h) = topo.host(&n.name)
            && let Err(e) = h.link_up()
        {
            notes.push(format!("{}: link up: {e}", n.name));
        }
        procs::signal_all(&procs::pids_in(&n.netns), Signal::SIGCONT);
        if let Err(e) = procs::ensure_running(st, n) {
            notes.push(format!("{}: restart: {e}", n.name));
        }
    }
    notes
}

/// The record of one scenario while it runs.
struct Run {
    step: Step,
    round: usize,
    start: u64,
    holder: Option<String>,
    target: Option<String>,
    etcd_leader_before: Option<String>,
    completed: bool,
    recovered: bool,
    recovery_ms: Option<u64>,
    markers: Vec<Marker>,
    notes: Vec<String>,
    streams: Option<StreamReport>,
}

fn run_scenario(
    st: &LabState,
    topo: &netlab::Topology,
    step: Step,
    round: usize,
    sh: &Shared,
    run_id: &str,
) -> ScenarioResult {
    let sc = step.scenario;
    let mut notes = Vec::new();
    if let Err(p) = view::wait_healthy(st, topo, Duration::from_secs(30)) {
        notes.push(format!("not healthy before the fault ({p}); repaired"));
        notes.extend(repair(st, topo));
        if let Err(p) = view::wait_healthy(st, topo, Duration::from_secs(30)) {
            notes.push(format!("still not healthy: {p}"));
        }
    }
    let pick = |st: &LabState, topo: &netlab::Topology| {
        let holder = current_holder(st, topo);
        let view = view::lab_view_fast(st, topo);
        let victim = holder.as_ref().and_then(|h| match sc {
            Scenario::EtcdMemberLost => member_victim(st, &view, h, step.placement),
            _ => st.node(h).cloned(),
        });
        (holder, victim)
    };
    let (mut holder, mut victim) = pick(st, topo);
    // etcd's leader where the step wants it, before the window opens (a leader move is a
    // short etcd election of its own). An lb node has no member to put it on or off.
    if let Some(v) = victim.as_ref().filter(|v| st.is_master(&v.name)) {
        let placement = match (step.placement, sc) {
            (Placement::AsFound, Scenario::ServiceDies) if st.apiserver.is_none() => {
                // The stand-in service is also an etcd member: hand the leadership over, so
                // the scenario measures the balancer and not an etcd election.
                Placement::Elsewhere
            }
            (p, _) => p,
        };
        if let Some(n) = place_etcd_leader(st, topo, placement, &v.name) {
            notes.push(n);
        }
        let _ = view::wait_healthy(st, topo, Duration::from_secs(10));
        // A leader move is an etcd election, which the VIP's gate may ride out on another
        // node: fault whoever holds the VIP once it stays put (the note below says when the
        // placement no longer holds), instead of skipping the scenario.
        if let Some(n) = settle(st, topo) {
            notes.push(n);
        }
        (holder, victim) = pick(st, topo);
    }
    if let Err(p) = wait_clients(sh, Duration::from_secs(10)) {
        notes.push(format!("before the fault: {p}"));
    }
    let start = now_ms(sh);
    std::thread::sleep(Duration::from_secs(1));
    let mut run = Run {
        step,
        round,
        start,
        holder: holder.clone(),
        target: victim.as_ref().map(|v| v.name.clone()),
        etcd_leader_before: None,
        completed: false,
        recovered: false,
        recovery_ms: None,
        markers: Vec::new(),
        notes,
        streams: None,
    };
    let (Some(h), Some(victim)) = (holder, victim) else {
        run.notes.push(
            "no single VIP holder (or no second node for it) before the fault; skipped".into(),
        );
        return finish(st, topo, sh, run_id, run);
    };
    if current_holder(st, topo).as_deref() != Some(h.as_str()) {
        run.notes.push(format!(
            "the VIP left {h} before the fault; scenario skipped"
        ));
        return finish(st, topo, sh, run_id, run);
    }
    let (Some(node), Ok(host)) = (st.node(&h).cloned(), topo.host(&h)) else {
        return finish(st, topo, sh, run_id, run);
    };
    run.etcd_leader_before = view::lab_view_fast(st, topo).etcd_leader;
    let wanted = match step.placement {
        Placement::Target => Some(run.etcd_leader_before.as_deref() == Some(victim.name.as_str())),
        Placement::Elsewhere => {
            Some(run.etcd_leader_before.as_deref() != Some(victim.name.as_str()))
        }
        Placement::AsFound => None,
    };
    if wanted == Some(false) {
        run.notes.push(format!(
            "etcd leader at the fault: {} (wanted {})",
            run.etcd_leader_before.as_deref().unwrap_or("none"),
            step.placement.name()
        ));
    }

    // The maintenance scenario's streams open before the fault and stay open across it.
    let probe = (sc == Scenario::Maintenance).then(|| {
        StreamProbe::start(
            &st.workers[0].netns,
            std::net::SocketAddr::from((st.vip, st.port)),
            &client::prefix(run_id),
            sh.origin,
        )
    });
    let fault_at = now_ms(sh);
    let mut partition = None;
    let label = if sc == Scenario::Maintenance {
        match maintenance(st, &h, "enter") {
            Ok(()) => format!("haplane maintenance enter --node {h}"),
            Err(e) => {
                run.notes.push(format!("maintenance enter: {e}"));
                format!("haplane maintenance enter --node {h} failed")
            }
        }
    } else if sc.crashes() {
        procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGKILL);
        let bit = st
            .vip_watch()
            .iter()
            .position(|m| m.name == h)
            .unwrap_or(31);
        sh.isolated.fetch_or(1 << bit, Ordering::Relaxed);
        if let Err(e) = host.link_down() {
            run.notes.push(format!("link down: {e}"));
        }
        format!("SIGKILL all on {h}, link down")
    } else if sc.partitions() {
        // Cut off from the masters and the other lb nodes; the workers (the clients) still
        // reach it.
        let others: Vec<&netlab::Host> = st
            .masters
            .iter()
            .chain(st.lbs.iter())
            .filter(|m| m.name != h)
            .filter_map(|m| topo.host(&m.name).ok())
            .collect();
        match topo.partition(&[host], &others) {
            Ok(g) => partition = Some(g),
            Err(e) => run.notes.push(format!("partition: {e}")),
        }
        if st.lbs.is_empty() {
            format!("{h} cut off from the other masters")
        } else {
            format!("{h} cut off from the masters and the other lb nodes")
        }
    } else {
        match sc {
            Scenario::ServiceDies => {
                let (kind, what) = if st.apiserver.is_some() {
                    (Kind::Apiserver, "kube-apiserver")
                } else {
                    (Kind::Etcd, "etcd")
                };
                procs::signal_all(&procs::find(&node, kind), Signal::SIGKILL);
                format!("SIGKILL {what} on {h}")
            }
            Scenario::GracefulShutdown => {
                procs::stop(&procs::find(&node, Kind::Haplane), Duration::from_secs(10));
                procs::stop(&procs::find(&node, Kind::Apiserver), Duration::from_secs(5));
                procs::stop(&procs::find(&node, Kind::Etcd), Duration::from_secs(5));
                procs::stop(&procs::pids_in(&node.netns), Duration::from_secs(2));
                format!("SIGTERM haplane, then etcd, on {h}")
            }
            Scenario::EtcdMemberLost => {
                procs::signal_all(&procs::find(&victim, Kind::Etcd), Signal::SIGKILL);
                format!("SIGKILL etcd on {}", victim.name)
            }
            _ => {
                procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGSTOP);
                format!("SIGSTOP all on {h}")
            }
        }
    };
    run.markers.push(Marker {
        at: fault_at - start,
        kind: "fault".into(),
        label,
    });
    match sc.hold() {
        Some(d) => std::thread::sleep(d),
        None => {
            if !wait_taken_over(st, topo, sh, &h) {
                run.notes
                    .push("no other node served the VIP within 20 s of the fault".into());
            }
        }
    }
    // When the VIP had moved (wait_taken_over waits 2 s past it): the streams must carry data
    // after this, through the new holder's forwarding to the parked old one.
    let moved_at = Instant::now();
    if sc == Scenario::Maintenance {
        std::thread::sleep(Duration::from_secs(2));
    }

    let heal_at = now_ms(sh);
    let label = if sc.partitions() {
        if let Some(g) = partition.take()
            && let Err(e) = g.heal()
        {
            run.notes.push(format!("heal: {e}"));
        }
        "partition healed".to_string()
    } else if sc.crashes() {
        // A crashed machine comes back without the VIP (addresses do not survive a reboot);
        // remove it before the link returns.
        let vip = format!("{}/24", st.vip);
        let _ = host.run(&["ip", "addr", "del", vip.as_str(), "dev", "eth0"]);
        if let Err(e) = host.link_up() {
            run.notes.push(format!("link up: {e}"));
        }
        sh.isolated.store(0, Ordering::Relaxed);
        if let Err(e) = procs::ensure_running(st, &node) {
            run.notes.push(format!("restart: {e}"));
        }
        "reboot: link up, daemons restarted".to_string()
    } else if sc == Scenario::HolderFreeze {
        procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGCONT);
        "SIGCONT".to_string()
    } else if sc == Scenario::Maintenance {
        if let Err(e) = maintenance(st, &h, "exit") {
            run.notes.push(format!("maintenance exit: {e}"));
        }
        format!("haplane maintenance exit --node {h}")
    } else {
        if let Err(e) = procs::ensure_running(st, &victim) {
            run.notes.push(format!("restart: {e}"));
        }
        "restarted".to_string()
    };
    run.markers.push(Marker {
        at: heal_at - start,
        kind: "heal".into(),
        label,
    });
    run.completed = true;
    let healthy = view::wait_healthy(st, topo, Duration::from_secs(45)).and_then(|_| {
        // The lab looking healthy is not enough: the clients must write again too (a stale
        // ARP entry can blackhole the VIP while every daemon looks fine).
        wait_clients(sh, Duration::from_secs(10))
    });
    match healthy {
        Ok(_) => {
            let at = now_ms(sh);
            run.recovery_ms = Some(at - heal_at);
            run.recovered = true;
            run.markers.push(Marker {
                at: at - start,
                kind: "recovered".into(),
                label: "healthy".into(),
            });
            // Keep watching until the VIP stays put, so a preemption after the return is in
            // the window.
            if let Some(n) = settle(st, topo) {
                run.notes.push(n);
            }
        }
        Err(p) => {
            run.notes.push(format!("not recovered after healing: {p}"));
            run.notes.extend(repair(st, topo));
        }
    }
    // A little after recovery, so the timeline shows the steady state again.
    std::thread::sleep(Duration::from_millis(500));
    if let Some(p) = probe {
        let r = p.finish(Some(moved_at));
        if !r.clean() {
            run.notes.push(format!(
                "maintenance: {} of {} streams reset, {} alive after the move, {} of {} requests failed",
                r.streams_reset.len(),
                r.streams,
                r.streams_alive_after_move,
                r.requests_failed.len(),
                r.requests
            ));
        }
        run.streams = Some(r);
    }
    finish(st, topo, sh, run_id, run)
}

/// `haplane maintenance enter|exit --node NODE` with the lab's cluster file, through the
/// node's admin socket; `enter` returns once another router holds the VIP.
fn maintenance(st: &LabState, node: &str, verb: &str) -> Result<(), String> {
    let out = std::process::Command::new(&st.haplane)
        .args(["maintenance", verb, "--node", node, "--config"])
        .arg(&st.config)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", st.haplane.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn finish(
    st: &LabState,
    topo: &netlab::Topology,
    sh: &Shared,
    run_id: &str,
    mut run: Run,
) -> ScenarioResult {
    let start = run.start;
    let end = now_ms(sh);
    let dur = end - start;
    if let Some(e) = lock(&sh.arp_error).as_ref() {
        run.notes.push(format!(
            "the ARP probe stopped ({e}); answers are incomplete"
        ));
    }
    let attempts: Vec<Attempt> = lock(&sh.log)
        .iter()
        .copied()
        .filter(|a| a.start_ms >= start && a.end_ms <= end)
        .collect();
    let heal = run.markers.iter().find(|m| m.kind == "heal").map(|m| m.at);
    let fault = run.markers.iter().find(|m| m.kind == "fault").map(|m| m.at);
    // Read back every write acknowledged in this scenario, from the worker, once healed.
    let eps = st.etcd_endpoints();
    let mut paths = Vec::new();
    let mut clients = BTreeMap::new();
    let mut ack_series = Vec::new();
    for (i, name) in PATHS.iter().enumerate() {
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.path == i).collect();
        let acked: Vec<u64> = mine.iter().filter(|a| a.ok).map(|a| a.seq).collect();
        let ack_times: Vec<u64> = mine
            .iter()
            .filter(|a| a.ok)
            .map(|a| a.end_ms - start)
            .collect();
        let check = topo.host(&st.workers[0].name).ok().and_then(|w| {
            w.enter(|| {
                client::runtime()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| rt.block_on(client::missing(&eps, run_id, name, &acked)))
            })
            .ok()
        });
        let (lost, verify_error) = match check {
            Some(Ok(m)) => (m.len() as u64, None),
            Some(Err(e)) => (0, Some(e)),
            None => (0, Some("cannot enter the worker's namespace".into())),
        };
        if verify_error.is_some() {
            run.notes.push(format!("{name}: read-back failed"));
        }
        paths.push(PathResult {
            path: name.to_string(),
            requests: mine.len() as u64,
            failed: mine.iter().filter(|a| !a.ok).count() as u64,
            longest_gap_ms: longest_gap(&ack_times, dur),
            acked: acked.len() as u64,
            lost,
            verify_error,
            errors: mine
                .iter()
                .filter_map(|a| a.error)
                .fold(BTreeMap::new(), |mut m, e| {
                    *m.entry(e.to_string()).or_default() += 1;
                    m
                }),
            fault: fault.map(|f| fault_effect(&mine, start + f, heal.map(|h| start + h))),
        });
        clients.insert(name.to_string(), availability(&ack_times, dur));
        ack_series.push(ack_times);
    }
    let names: Vec<String> = st.vip_watch().iter().map(|m| m.name.clone()).collect();

    let vip: Vec<VipSample> = lock(&sh.vip)
        .iter()
        .copied()
        .filter(|s| s.t >= start && s.t <= end)
        .collect();
    let vip_series: Vec<(u64, String)> = vip
        .iter()
        .map(|s| (s.t - start, holder_names(&names, s.holders, 0)))
        .collect();
    let no_holder: Vec<(u64, bool)> = vip.iter().map(|s| (s.t - start, s.holders == 0)).collect();

    let arp: Vec<ArpSample> = lock(&sh.arp)
        .iter()
        .copied()
        .filter(|s| s.t >= start && s.t <= end)
        .collect();
    let answer_series: Vec<(u64, String)> = arp
        .iter()
        .map(|s| (s.t - start, holder_names(&names, s.answering, s.strangers)))
        .collect();
    let no_answer: Vec<(u64, bool)> = arp
        .iter()
        .map(|s| (s.t - start, s.answers() == 0))
        .collect();

    let after_heal = heal.map(|h| AfterHeal {
        from_ms: h,
        longest_no_holder_ms: longest_empty(&no_holder, h, dur),
        longest_no_answer_ms: longest_empty(&no_answer, h, dur),
        vip_gap_ms: longest_gap_within(&ack_series[0], h, dur),
        local_gap_ms: longest_gap_within(&ack_series[1], h, dur),
        vip_moves: changes(
            &answer_series
                .iter()
                .filter(|(t, _)| *t >= h)
                .cloned()
                .collect::<Vec<_>>(),
        ),
    });

    let leaders: Vec<LeaderSample> = lock(&sh.leaders)
        .iter()
        .filter(|s| s.t >= start && s.t <= end)
        .cloned()
        .collect();
    let mut lanes: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    lanes.entry("etcd".into()).or_default();
    for e in &st.elections {
        lanes.entry(e.clone()).or_default();
    }
    // Elections the daemons report beyond the configured ones (the fenced VIP's, ...).
    for s in &leaders {
        for k in s.leaders.keys() {
            lanes.entry(k.clone()).or_default();
        }
    }
    for s in &leaders {
        for (lane, series) in lanes.iter_mut() {
            let v = s
                .leaders
                .get(lane)
                .cloned()
                .unwrap_or_else(|| "none".into());
            series.push((s.t - start, v));
        }
    }
    let leader_changes = lanes.iter().map(|(k, v)| (k.clone(), changes(v))).collect();
    let leader_segments = lanes
        .iter()
        .map(|(k, v)| (k.clone(), segments(v, dur)))
        .collect();
    let sc = run.step.scenario;
    ScenarioResult {
        name: sc.name().into(),
        etcd_leader: run.step.placement.name().into(),
        run: run.round,
        description: sc.description().into(),
        completed: run.completed,
        recovered: run.recovered,
        holder_before: run.holder,
        target: run.target,
        etcd_leader_before: run.etcd_leader_before,
        holder_after: current_holder(st, topo),
        recovery_ms: run.recovery_ms,
        paths,
        arp_samples: arp.len() as u64,
        split_brain_samples: arp.iter().filter(|s| s.answers() > 1).count() as u64,
        no_answer_samples: arp.iter().filter(|s| s.answers() == 0).count() as u64,
        longest_no_answer_ms: longest_empty(&no_answer, 0, dur),
        vip_samples: vip.len() as u64,
        address_split_samples: vip.iter().filter(|s| s.holders.count_ones() > 1).count() as u64,
        no_holder_samples: vip.iter().filter(|s| s.holders == 0).count() as u64,
        longest_no_holder_ms: longest_empty(&no_holder, 0, dur),
        stale_vip_samples: vip.iter().filter(|s| s.stale != 0).count() as u64,
        vip_moves: changes(&answer_series),
        after_heal,
        leader_changes,
        notes: run.notes,
        streams: run.streams,
        timeline: Timeline {
            duration_ms: dur,
            clients,
            answers: segments(&answer_series, dur),
            vip: segments(&vip_series, dur),
            leaders: leader_segments,
            markers: run.markers,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_gap_spans_the_fault_and_failures_are_timed_from_it() {
        let a = |seq, start_ms, end_ms, error: Option<&'static str>| Attempt {
            path: 0,
            seq,
            start_ms,
            end_ms,
            ok: error.is_none(),
            error,
        };
        // Fault at 1000: the write in flight fails, the next one fails over and is slow, a
        // stall long after is longer than the fault's gap but is not it.
        let log = [
            a(1, 960, 970, None),
            a(2, 980, 990, None),
            a(3, 995, 1004, Some("closed")),
            a(4, 1004, 1030, None),
            a(5, 1040, 1050, None),
            a(6, 1060, 1300, None),
        ];
        let mine: Vec<&Attempt> = log.iter().collect();
        let f = fault_effect(&mine, 1000, None);
        assert_eq!(f.gap_ms, 40, "990 to 1030");
        assert_eq!(f.first_ok_latency_ms, Some(26));
        assert_eq!(f.baseline_latency_ms, Some(10));
        assert_eq!(f.failures.len(), 1);
        assert_eq!((f.failures[0].start_ms, f.failures[0].end_ms), (-5, 4));
        assert_eq!(f.failures[0].error, "closed");
    }

    #[test]
    fn the_fault_gap_is_the_outage_even_when_writes_still_succeed_just_after_the_marker() {
        let a = |seq, start_ms, end_ms, ok| Attempt {
            path: 0,
            seq,
            start_ms,
            end_ms,
            ok,
            error: (!ok).then_some("timeout"),
        };
        // Marker at 1011; the freeze bites at about 1030; writes time out until 2663. Measured
        // from the marker this was a 20 ms gap (holder-freeze, 2026-12-04), the client felt 1632.
        let mut log = vec![a(1, 990, 991, true), a(2, 1029, 1031, true)];
        let mut t = 1031;
        for seq in 3..11 {
            log.push(a(seq, t, t + 200, false));
            t += 200;
        }
        log.push(a(11, 2661, 2663, true));
        let mine: Vec<&Attempt> = log.iter().collect();
        assert_eq!(fault_effect(&mine, 1011, None).gap_ms, 1632);
        // A failure after the heal is the heal's, not the fault's.
        assert_eq!(fault_effect(&mine, 1011, Some(1020)).gap_ms, 40);
    }

    #[test]
    fn scenario_names_parse_and_unknown_ones_are_rejected() {
        assert_eq!(Scenario::parse_list("all").unwrap().len(), 9);
        assert_eq!(
            Scenario::parse_list("holder-freeze,crash-restart").unwrap(),
            vec![Scenario::HolderFreeze, Scenario::CrashRestart]
        );
        assert!(Scenario::parse_list("meteor").is_err());
    }

    #[test]
    fn both_placements_run_each_scenario_with_the_leader_on_the_target_first() {
        let p = Placement::parse_list("both").unwrap();
        let steps = matrix(&[Scenario::HolderCrash, Scenario::HolderFreeze], &p);
        let got: Vec<(&str, &str)> = steps
            .iter()
            .map(|s| (s.scenario.name(), s.placement.name()))
            .collect();
        assert_eq!(
            got,
            [
                ("holder-crash", "target"),
                ("holder-crash", "elsewhere"),
                ("holder-freeze", "target"),
                ("holder-freeze", "elsewhere"),
            ]
        );
        assert!(Placement::parse_list("moon").is_err());
    }

    fn lab(lbs: usize) -> LabState {
        let node = |name: String, i: u8| NodeInfo {
            name,
            address: std::net::Ipv4Addr::new(192, 0, 2, i),
            netns: String::new(),
        };
        LabState {
            name: "t".into(),
            dir: "/run/haplane-lab/t".into(),
            config: "/run/haplane-lab/t/cluster.yaml".into(),
            haplane: "/bin/haplane".into(),
            vip: crate::up::VIP,
            port: 2379,
            etcd_port: 2379,
            status_port: 9470,
            fencing: "quorum".into(),
            preempt: false,
            etcd_election_timeout_ms: 1000,
            masters: (1..=3).map(|i| node(format!("m{i}"), 10 + i)).collect(),
            lbs: (1..=lbs as u8)
                .map(|i| node(format!("lb{i}"), 20 + i))
                .collect(),
            workers: vec![node("w1".into(), 31)],
            apiserver: None,
            elections: Vec::new(),
        }
    }

    #[test]
    fn behind_lb_nodes_service_dies_is_skipped_with_its_reason_and_holder_faults_run_once() {
        let steps = matrix(&Scenario::ALL, &Placement::parse_list("both").unwrap());
        let (run, skipped, notes) = plan_steps(&lab(2), &steps);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].name, "service-dies");
        assert!(skipped[0].reason.contains("runs no service"), "{skipped:?}");
        let got: Vec<(&str, &str)> = run
            .iter()
            .map(|s| (s.scenario.name(), s.placement.name()))
            .collect();
        // etcd-member-lost kills a master's member: its placements still apply.
        assert_eq!(
            got,
            [
                ("holder-crash", "as-found"),
                ("graceful-shutdown", "as-found"),
                ("holder-partitioned", "as-found"),
                ("etcd-member-lost", "target"),
                ("etcd-member-lost", "elsewhere"),
                ("holder-freeze", "as-found"),
                ("partition-heal", "as-found"),
                ("crash-restart", "as-found"),
                ("maintenance", "as-found"),
            ]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        // Without lb nodes nothing changes.
        let (run, skipped, notes) = plan_steps(&lab(0), &steps);
        assert_eq!(run, steps);
        assert!(skipped.is_empty() && notes.is_empty());
    }

    #[test]
    fn behind_lb_nodes_the_vip_is_watched_on_the_lb_nodes_first_and_on_the_masters_too() {
        let st = lab(2);
        let names: Vec<&str> = st.vip_watch().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["lb1", "lb2", "m1", "m2", "m3"]);
        assert_eq!(st.role("lb1"), "lb");
        let plain = lab(0);
        let names: Vec<&str> = plain.vip_watch().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["m1", "m2", "m3"]);
    }

    #[test]
    fn the_returning_scenarios_wait_for_a_takeover_instead_of_a_fixed_hold() {
        assert_eq!(Scenario::PartitionHeal.hold(), None);
        assert_eq!(Scenario::CrashRestart.hold(), None);
        assert!(Scenario::HolderPartitioned.hold().is_some());
        assert!(Scenario::PartitionHeal.partitions() && Scenario::CrashRestart.crashes());
    }
}
