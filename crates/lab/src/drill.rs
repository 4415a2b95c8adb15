//! `lab drill`: break the lab in the ways clusters break while clients write through the VIP
//! and through the node-local balancer, and measure what they felt.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;

use crate::LabError;
use crate::client::{self, Attempt, ClientOptions, Log};
use crate::procs::{self, Kind};
use crate::state::LabState;
use crate::up;

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
    /// One etcd member is lost (the etcd leader when it is not the holder).
    EtcdMemberLost,
    /// The whole holder freezes (SIGSTOP), then resumes (SIGCONT).
    HolderFreeze,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 6] = [
        Scenario::HolderCrash,
        Scenario::ServiceDies,
        Scenario::GracefulShutdown,
        Scenario::HolderPartitioned,
        Scenario::EtcdMemberLost,
        Scenario::HolderFreeze,
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
            Scenario::EtcdMemberLost => "one etcd member is lost",
            Scenario::HolderFreeze => "the whole holder freezes (SIGSTOP) and then resumes",
        }
    }

    /// How long the fault lasts before it is healed.
    fn hold(self) -> Duration {
        match self {
            // Longer than the lease TTL plus detection, so fencing has to act.
            Scenario::HolderPartitioned | Scenario::HolderFreeze => Duration::from_secs(6),
            _ => Duration::from_secs(4),
        }
    }

    /// Parses `NAME` or `all`.
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
    /// Failed attempts by reason (`timeout`, `transport`, `no leader`, ...).
    pub errors: BTreeMap<String, u64>,
}

/// A stretch of time in one lane of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Segment {
    /// Start, ms since the scenario started.
    pub from: u64,
    /// End, ms since the scenario started.
    pub to: u64,
    /// What the lane showed: `ok`/`down` for clients, node names (or `none`) otherwise.
    pub value: String,
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
    /// Who had the VIP on its interface.
    pub vip: Vec<Segment>,
    /// Leaders: `etcd` and each election.
    pub leaders: BTreeMap<String, Vec<Segment>>,
    /// Fault, heal and recovery.
    pub markers: Vec<Marker>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
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
    /// The VIP holder at the end.
    pub holder_after: Option<String>,
    /// From healing to healthy, ms.
    pub recovery_ms: Option<u64>,
    /// Per client path.
    pub paths: Vec<PathResult>,
    /// 10 ms samples of the VIP's location.
    pub vip_samples: u64,
    /// Samples with the VIP on more than one node.
    pub split_brain_samples: u64,
    /// Samples with the VIP on no node.
    pub no_holder_samples: u64,
    /// Samples with the VIP left on a node whose link is down (not reachable, not counted as
    /// a holder).
    pub stale_vip_samples: u64,
    /// Times the VIP moved.
    pub vip_moves: u64,
    /// Leader changes per lane (`etcd`, each election).
    pub leader_changes: BTreeMap<String, u64>,
    /// Anything noteworthy (a step that failed, a lab that did not recover).
    pub notes: Vec<String>,
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
    /// What the balancers serve.
    pub service: String,
    /// The writers' timeouts.
    pub client: ClientOptions,
    /// Scenarios, in the order run.
    pub scenarios: Vec<ScenarioResult>,
    /// Acknowledged writes lost over all scenarios (must be 0).
    pub lost_writes: u64,
    /// Split-brain samples over all scenarios.
    pub split_brain_samples: u64,
    /// Every scenario completed and recovered.
    pub all_completed: bool,
}

/// A 10 ms sample of the VIP.
#[derive(Debug, Clone, Copy)]
struct VipSample {
    t: u64,
    /// Masters (bit i = masters[i]) with the VIP on a working link.
    holders: u32,
    /// Masters with the VIP on an interface whose link is down (a crashed node's leftover:
    /// it answers nobody, so it is no split brain).
    stale: u32,
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
    /// Masters whose link the drill took down (bit i = masters[i]).
    isolated: std::sync::atomic::AtomicU32,
    vip: Mutex<Vec<VipSample>>,
    leaders: Mutex<Vec<LeaderSample>>,
    log: Log,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to drill and how the clients behave.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// The writers' timeouts.
    pub client: ClientOptions,
}

impl DrillOptions {
    /// `scenarios` with the default client.
    pub fn new(scenarios: &[Scenario]) -> DrillOptions {
        DrillOptions {
            scenarios: scenarios.to_vec(),
            client: ClientOptions::default(),
        }
    }
}

/// Runs the drill on lab `st`.
pub fn run(st: &LabState, opts: &DrillOptions) -> Result<DrillResult, LabError> {
    opts.client.validate().map_err(LabError::BadArgs)?;
    let scenarios = &opts.scenarios;
    let topo = netlab::Topology::open(&st.name)?;
    let worker = st
        .workers
        .first()
        .ok_or_else(|| LabError::BadArgs("the drill needs a worker (lab up --workers 1)".into()))?;
    let whost = topo.host(&worker.name)?;
    up::wait_healthy(st, &topo, Duration::from_secs(45)).map_err(|p| LabError::NotHealthy {
        detail: p,
        logs: st.dir.join("logs"),
    })?;
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
        isolated: std::sync::atomic::AtomicU32::new(0),
        vip: Mutex::new(Vec::new()),
        leaders: Mutex::new(Vec::new()),
        log: Arc::new(Mutex::new(Vec::new())),
    });
    let targets = [
        std::net::SocketAddr::from((st.vip, st.port)),
        std::net::SocketAddr::from(([127, 0, 0, 1], st.port)),
    ];
    let mut results = Vec::new();
    std::thread::scope(|s| -> Result<(), LabError> {
        // The clients, inside the worker's namespace.
        let sh = shared.clone();
        let client_opts = opts.client;
        let run2 = run_id.clone();
        s.spawn(move || {
            let r = whost.enter(|| {
                let rt = match client::runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "lab: no runtime for the drill clients");
                        return;
                    }
                };
                let stop = Arc::new(AtomicBool::new(false));
                rt.block_on(async {
                    let mut tasks = Vec::new();
                    for (i, target) in targets.iter().enumerate() {
                        tasks.push(tokio::spawn(client::writer(
                            *target,
                            run2.clone(),
                            PATHS[i].to_string(),
                            i,
                            sh.origin,
                            client_opts,
                            stop.clone(),
                            sh.log.clone(),
                        )));
                    }
                    while !sh.stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    stop.store(true, Ordering::Relaxed);
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "lab: drill clients failed");
            }
        });
        // The VIP sampler: every 10 ms, which masters have the VIP on eth0.
        let sh = shared.clone();
        let topo_ref = &topo;
        s.spawn(move || {
            let vip = IpAddr::V4(st.vip);
            let hosts: Vec<_> = st
                .masters
                .iter()
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
                let v = up::lab_view_fast(st, topo_ref);
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
        for sc in scenarios {
            let r = run_scenario(st, &topo, *sc, &shared, &run_id);
            tracing::info!(scenario = sc.name(), "lab: scenario done");
            results.push(r);
        }
        shared.stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
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
    let split_brain_samples = results.iter().map(|r| r.split_brain_samples).sum();
    Ok(DrillResult {
        lab: st.name.clone(),
        fencing: st.fencing.clone(),
        service: if st.apiserver.is_some() {
            format!("kube-apiserver :{}", st.port)
        } else {
            format!("etcd client API :{}", st.port)
        },
        client: opts.client,
        all_completed: results.iter().all(|r| r.completed && r.recovered),
        lost_writes,
        split_brain_samples,
        scenarios: results,
    })
}

fn now_ms(sh: &Shared) -> u64 {
    sh.origin.elapsed().as_millis() as u64
}

/// The master holding the VIP right now (kernel view), when exactly one does.
fn current_holder(st: &LabState, topo: &netlab::Topology) -> Option<String> {
    let vip = IpAddr::V4(st.vip);
    let holders: Vec<&str> = st
        .masters
        .iter()
        .filter(|m| {
            topo.host(&m.name)
                .ok()
                .and_then(|h| h.has_address(vip).ok())
                .unwrap_or(false)
        })
        .map(|m| m.name.as_str())
        .collect();
    (holders.len() == 1).then(|| holders[0].to_string())
}

/// Waits until every client path had a write acknowledged within the last 300 ms.
fn wait_clients(sh: &Shared, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let now = now_ms(sh);
        let stale: Vec<&str> = PATHS
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                !lock(&sh.log)
                    .iter()
                    .rev()
                    .take(200)
                    .any(|a| a.path == *i && a.ok && a.end_ms + 300 >= now)
            })
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

/// Moves the etcd leadership from `node` to another master (`etcdctl move-leader`, sent to
/// the leader itself); returns a note when it did.
fn move_etcd_leader_off(
    st: &LabState,
    topo: &netlab::Topology,
    view: &crate::ClusterView,
    node: &str,
) -> Option<String> {
    if view.etcd_leader.as_deref() != Some(node) {
        return None;
    }
    let to = view.nodes.iter().find(|n| {
        n.role == "master" && n.name != node && n.etcd.as_ref().is_some_and(|e| e.healthy)
    })?;
    let id = to.etcd.as_ref()?.member_id.clone()?;
    let host = topo.host(node).ok()?;
    let ep = format!("http://127.0.0.1:{}", st.etcd_port);
    if let Err(e) = host.run(&[
        "etcdctl",
        "--endpoints",
        ep.as_str(),
        "move-leader",
        id.as_str(),
    ]) {
        return Some(format!(
            "could not move the etcd leadership off {node}: {e}"
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if up::lab_view_fast(st, topo).etcd_leader.as_deref() == Some(to.name.as_str()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(format!(
        "etcd leadership moved from {node} to {} before the fault",
        to.name
    ))
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

fn run_scenario(
    st: &LabState,
    topo: &netlab::Topology,
    sc: Scenario,
    sh: &Shared,
    run_id: &str,
) -> ScenarioResult {
    let mut notes = Vec::new();
    if let Err(p) = up::wait_healthy(st, topo, Duration::from_secs(30)) {
        notes.push(format!("not healthy before the fault ({p}); repaired"));
        notes.extend(repair(st, topo));
        if let Err(p) = up::wait_healthy(st, topo, Duration::from_secs(30)) {
            notes.push(format!("still not healthy: {p}"));
        }
    }
    if let Err(p) = wait_clients(sh, Duration::from_secs(10)) {
        notes.push(format!("before the fault: {p}"));
    }
    let start = now_ms(sh);
    std::thread::sleep(Duration::from_secs(1));
    let holder = current_holder(st, topo);
    let mut markers = Vec::new();
    let mut completed = false;
    let mut target = None;
    let mut recovery_ms = None;
    let mut recovered = false;
    if let Some(h) = holder.clone() {
        let node = st.masters.iter().find(|m| m.name == h).cloned();
        let host = topo.host(&h).ok();
        if let (Some(node), Some(host)) = (node, host) {
            // The etcd member to lose: the etcd leader unless it is the holder.
            let view = up::lab_view_fast(st, topo);
            let victim = match sc {
                Scenario::EtcdMemberLost => {
                    let other = st.masters.iter().find(|m| m.name != h);
                    let leader = view
                        .etcd_leader
                        .as_ref()
                        .and_then(|l| st.masters.iter().find(|m| &m.name == l && m.name != h));
                    leader.or(other).cloned()
                }
                _ => Some(node.clone()),
            };
            let Some(victim) = victim else {
                notes.push("no second master to act on".into());
                return finish(
                    st, topo, sc, sh, run_id, start, holder, None, false, false, None, markers,
                    notes,
                );
            };
            target = Some(victim.name.clone());
            if sc == Scenario::ServiceDies && st.apiserver.is_none() {
                // The stand-in service is also an etcd member: when it leads etcd, hand the
                // leadership over first, so the scenario measures the balancer and not an
                // etcd election (etcd-member-lost measures that).
                if let Some(n) = move_etcd_leader_off(st, topo, &view, &h) {
                    notes.push(n);
                }
            }
            let fault_at = now_ms(sh);
            let mut partition = None;
            let label = match sc {
                Scenario::HolderCrash => {
                    procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGKILL);
                    let bit = st.masters.iter().position(|m| m.name == h).unwrap_or(31);
                    sh.isolated.fetch_or(1 << bit, Ordering::Relaxed);
                    if let Err(e) = host.link_down() {
                        notes.push(format!("link down: {e}"));
                    }
                    format!("SIGKILL all on {h}, link down")
                }
                Scenario::ServiceDies => {
                    let kind = if st.apiserver.is_some() {
                        Kind::Apiserver
                    } else {
                        Kind::Etcd
                    };
                    procs::signal_all(&procs::find(&node, kind), Signal::SIGKILL);
                    format!(
                        "SIGKILL {} on {h}",
                        if st.apiserver.is_some() {
                            "kube-apiserver"
                        } else {
                            "etcd"
                        }
                    )
                }
                Scenario::GracefulShutdown => {
                    procs::stop(&procs::find(&node, Kind::Haplane), Duration::from_secs(10));
                    procs::stop(&procs::find(&node, Kind::Apiserver), Duration::from_secs(5));
                    procs::stop(&procs::find(&node, Kind::Etcd), Duration::from_secs(5));
                    procs::stop(&procs::pids_in(&node.netns), Duration::from_secs(2));
                    format!("SIGTERM haplane, then etcd, on {h}")
                }
                Scenario::HolderPartitioned => {
                    let others: Vec<&netlab::Host> = st
                        .masters
                        .iter()
                        .filter(|m| m.name != h)
                        .filter_map(|m| topo.host(&m.name).ok())
                        .collect();
                    match topo.partition(&[host], &others) {
                        Ok(g) => partition = Some(g),
                        Err(e) => notes.push(format!("partition: {e}")),
                    }
                    format!("{h} cut off from the other masters")
                }
                Scenario::EtcdMemberLost => {
                    procs::signal_all(&procs::find(&victim, Kind::Etcd), Signal::SIGKILL);
                    format!("SIGKILL etcd on {}", victim.name)
                }
                Scenario::HolderFreeze => {
                    procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGSTOP);
                    format!("SIGSTOP all on {h}")
                }
            };
            markers.push(Marker {
                at: fault_at - start,
                kind: "fault".into(),
                label,
            });
            std::thread::sleep(sc.hold());
            let heal_at = now_ms(sh);
            let label = match sc {
                Scenario::HolderPartitioned => {
                    if let Some(g) = partition.take()
                        && let Err(e) = g.heal()
                    {
                        notes.push(format!("heal: {e}"));
                    }
                    "partition healed".to_string()
                }
                Scenario::HolderFreeze => {
                    procs::signal_all(&procs::pids_in(&node.netns), Signal::SIGCONT);
                    "SIGCONT".to_string()
                }
                Scenario::HolderCrash => {
                    // A crashed machine comes back without the VIP (addresses do not survive
                    // a reboot); remove it before the link returns.
                    let vip = format!("{}/24", st.vip);
                    let _ = host.run(&["ip", "addr", "del", vip.as_str(), "dev", "eth0"]);
                    if let Err(e) = host.link_up() {
                        notes.push(format!("link up: {e}"));
                    }
                    sh.isolated.store(0, Ordering::Relaxed);
                    if let Err(e) = procs::ensure_running(st, &node) {
                        notes.push(format!("restart: {e}"));
                    }
                    "reboot: link up, daemons restarted".to_string()
                }
                _ => {
                    if let Err(e) = procs::ensure_running(st, &victim) {
                        notes.push(format!("restart: {e}"));
                    }
                    "restarted".to_string()
                }
            };
            markers.push(Marker {
                at: heal_at - start,
                kind: "heal".into(),
                label,
            });
            completed = true;
            let healthy = up::wait_healthy(st, topo, Duration::from_secs(45)).and_then(|_| {
                // The lab looking healthy is not enough: the clients must write again too (a
                // stale ARP entry can blackhole the VIP while every daemon looks fine).
                wait_clients(sh, Duration::from_secs(10))
            });
            match healthy {
                Ok(_) => {
                    let at = now_ms(sh);
                    recovery_ms = Some(at - heal_at);
                    recovered = true;
                    markers.push(Marker {
                        at: at - start,
                        kind: "recovered".into(),
                        label: "healthy".into(),
                    });
                }
                Err(p) => {
                    notes.push(format!("not recovered after healing: {p}"));
                    notes.extend(repair(st, topo));
                }
            }
        }
    } else {
        notes.push("no single VIP holder before the fault; scenario skipped".into());
    }
    // A little after recovery, so the timeline shows the steady state again.
    std::thread::sleep(Duration::from_secs(1));
    finish(
        st,
        topo,
        sc,
        sh,
        run_id,
        start,
        holder,
        target,
        completed,
        recovered,
        recovery_ms,
        markers,
        notes,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    st: &LabState,
    topo: &netlab::Topology,
    sc: Scenario,
    sh: &Shared,
    run_id: &str,
    start: u64,
    holder: Option<String>,
    target: Option<String>,
    completed: bool,
    recovered: bool,
    recovery_ms: Option<u64>,
    markers: Vec<Marker>,
    mut notes: Vec<String>,
) -> ScenarioResult {
    let end = now_ms(sh);
    let attempts: Vec<Attempt> = lock(&sh.log)
        .iter()
        .copied()
        .filter(|a| a.start_ms >= start && a.end_ms <= end)
        .collect();
    // Read back every write acknowledged in this scenario, from the worker, once healed.
    let eps = st.etcd_endpoints();
    let mut paths = Vec::new();
    let mut clients = BTreeMap::new();
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
            notes.push(format!("{name}: read-back failed"));
        }
        let dur = end - start;
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
        });
        clients.insert(name.to_string(), availability(&ack_times, dur));
    }
    let vip: Vec<VipSample> = lock(&sh.vip)
        .iter()
        .copied()
        .filter(|s| s.t >= start && s.t <= end)
        .collect();
    let names: Vec<String> = st.masters.iter().map(|m| m.name.clone()).collect();
    let holder_names = |h: u32| -> String {
        let v: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| h & (1 << i) != 0)
            .map(|(_, n)| n.as_str())
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join("+")
        }
    };
    let vip_series: Vec<(u64, String)> = vip
        .iter()
        .map(|s| (s.t - start, holder_names(s.holders)))
        .collect();
    let vip_segments = segments(&vip_series, end - start);
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
        .map(|(k, v)| (k.clone(), segments(v, end - start)))
        .collect();
    ScenarioResult {
        name: sc.name().into(),
        description: sc.description().into(),
        completed,
        recovered,
        holder_before: holder,
        target,
        holder_after: current_holder(st, topo),
        recovery_ms,
        paths,
        vip_samples: vip.len() as u64,
        split_brain_samples: vip.iter().filter(|s| s.holders.count_ones() > 1).count() as u64,
        no_holder_samples: vip.iter().filter(|s| s.holders == 0).count() as u64,
        stale_vip_samples: vip.iter().filter(|s| s.stale != 0).count() as u64,
        vip_moves: changes(&vip_series),
        leader_changes,
        notes,
        timeline: Timeline {
            duration_ms: end - start,
            clients,
            vip: vip_segments,
            leaders: leader_segments,
            markers,
        },
    }
}

/// The longest time without an acknowledged write in a window of `dur` ms (the edges count:
/// a window with no ack at all is one gap of its whole length).
pub fn longest_gap(ack_times: &[u64], dur: u64) -> u64 {
    let mut prev = 0;
    let mut longest = 0;
    for &t in ack_times {
        longest = longest.max(t.saturating_sub(prev));
        prev = t;
    }
    longest.max(dur.saturating_sub(prev))
}

/// Gaps longer than this between acks draw as `down` on the availability strip (writes are
/// paced every 20 ms, so anything past 200 ms is a real interruption, not jitter).
const DOWN_AFTER_MS: u64 = 200;

/// The availability strip: `ok` where acks keep coming, `down` over each longer gap.
pub fn availability(ack_times: &[u64], dur: u64) -> Vec<Segment> {
    let mut series = Vec::new();
    let mut prev = 0;
    for &t in ack_times.iter().chain(std::iter::once(&dur)) {
        if t.saturating_sub(prev) > DOWN_AFTER_MS {
            series.push((prev, "down".to_string()));
        }
        series.push((t, "ok".to_string()));
        prev = t;
    }
    segments(&series, dur)
}

/// Run-length encodes a sampled series: each sample holds until the next one.
pub fn segments(series: &[(u64, String)], dur: u64) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, (t, v)) in series.iter().enumerate() {
        let to = series.get(i + 1).map_or(dur, |n| n.0).max(*t);
        match out.last_mut() {
            Some(last) if &last.value == v => last.to = to,
            _ => out.push(Segment {
                from: *t,
                to,
                value: v.clone(),
            }),
        }
    }
    out
}

/// Changes of value, ignoring `none` in between (A, none, A is no change; A, none, B is one).
pub fn changes(series: &[(u64, String)]) -> u64 {
    let mut last: Option<&str> = None;
    let mut n = 0;
    for (_, v) in series {
        if v == "none" {
            continue;
        }
        if let Some(l) = last
            && l != v
        {
            n += 1;
        }
        last = Some(v);
    }
    n
}

/// The summary table printed after a drill.
pub fn summary(r: &DrillResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drill on lab {} (fencing {}, balancing {}; writes time out after {} ms, SYN every {} ms)",
        r.lab,
        r.fencing,
        r.service,
        r.client.request_timeout.as_millis(),
        r.client.connect_retry.as_millis()
    );
    let header = [
        "SCENARIO",
        "VIP GAP",
        "VIP FAIL",
        "LOCAL GAP",
        "LOCAL FAIL",
        "SPLIT",
        "VIP MOVES",
        "LEADER CHG",
        "LOST",
        "RECOVERY",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for s in &r.scenarios {
        let p = |i: usize| s.paths.get(i);
        let gap = |i| {
            p(i).map_or("-".into(), |p: &PathResult| {
                format!("{} ms", p.longest_gap_ms)
            })
        };
        let fail = |i| {
            p(i).map_or("-".into(), |p: &PathResult| {
                format!("{}/{}", p.failed, p.requests)
            })
        };
        rows.push(vec![
            s.name.clone(),
            gap(0),
            fail(0),
            gap(1),
            fail(1),
            s.split_brain_samples.to_string(),
            s.vip_moves.to_string(),
            s.leader_changes
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" "),
            s.paths.iter().map(|p| p.lost).sum::<u64>().to_string(),
            match (s.completed, s.recovery_ms) {
                (false, _) => "NOT RUN".into(),
                (true, None) => "NOT RECOVERED".into(),
                (true, Some(ms)) => format!("{:.1} s", ms as f64 / 1000.0),
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(
        out,
        "\nlost acknowledged writes: {}; split-brain samples (10 ms): {}; all scenarios completed and recovered: {}",
        r.lost_writes, r.split_brain_samples, r.all_completed
    );
    for s in &r.scenarios {
        for n in &s.notes {
            let _ = writeln!(out, "note: {}: {n}", s.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_window_edges() {
        assert_eq!(longest_gap(&[], 1000), 1000);
        assert_eq!(longest_gap(&[100, 150, 900], 1000), 750);
        assert_eq!(longest_gap(&[100, 200], 1000), 800);
    }

    #[test]
    fn a_leader_that_comes_back_after_none_is_not_a_change() {
        let s = |v: &[&str]| {
            v.iter()
                .enumerate()
                .map(|(i, v)| (i as u64, v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(changes(&s(&["m1", "none", "m1"])), 0);
        assert_eq!(changes(&s(&["m1", "none", "m2", "m2", "m1"])), 2);
    }

    #[test]
    fn availability_marks_gaps_over_the_threshold_as_down() {
        let segs = availability(&[10, 30, 50, 700, 720], 800);
        let values: Vec<&str> = segs.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["ok", "down", "ok"]);
        assert_eq!((segs[1].from, segs[1].to), (50, 700));
    }

    #[test]
    fn scenario_names_parse_and_unknown_ones_are_rejected() {
        assert_eq!(Scenario::parse_list("all").unwrap().len(), 6);
        assert_eq!(
            Scenario::parse_list("holder-freeze").unwrap(),
            vec![Scenario::HolderFreeze]
        );
        assert!(Scenario::parse_list("meteor").is_err());
    }
}
