//! One chaos run on a lab: the drill's clients on the worker, the samplers (ARP answers every
//! 10 ms, the VIP's address every 10 ms, /proc every 100 ms, each daemon's /status every
//! ~200 ms), the schedule injected, the final heal, the health check, the read-back from every
//! etcd member; then the checker and the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use serde::Serialize;

use super::check::{
    self, Daemon, Growth, History, Injected, Invariant, ProcSample, Readback, SetSample,
    SingletonSample, Violation,
};
use super::figures::{self, ChaosTimeline, Gap, KindGaps};
use super::inject::{self, Ctx, Skipped};
use super::observe::Observer;
use super::schedule::Schedule;
use crate::LabError;
use crate::arp_probe::{ArpProbe, Mac, interface_mac};
use crate::client::{self, Attempt, ClientOptions, Log};
use crate::state::LabState;
use crate::view;

/// After recovery the samplers keep watching until the VIP has been answered (and held) this
/// long without a break (within the recovery deadline).
pub const WATCH_AFTER_RECOVERY_MS: u64 = 3_000;
/// The client paths.
pub const PATHS: [&str; 2] = ["vip", "node-local"];

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the threads share.
pub(super) struct Shared {
    pub origin: Instant,
    pub stop: AtomicBool,
    /// Nodes whose link a fault took down (bit = node index): their address is not counted.
    pub links_down: AtomicU32,
    pub arp: Mutex<Vec<SetSample>>,
    pub arp_error: Mutex<Option<String>>,
    pub addr: Mutex<Vec<SetSample>>,
    pub singletons: Mutex<Vec<SingletonSample>>,
    pub claims: Mutex<Vec<SingletonSample>>,
    pub procs: Mutex<Vec<ProcSample>>,
    pub leaders: Mutex<Vec<(u64, BTreeMap<String, String>)>>,
    pub log: Log,
    /// Resource → busy until (ms), for faults on the VIP holder resolved at their start.
    pub busy: Mutex<BTreeMap<String, u64>>,
    pub injected: Mutex<Vec<Injected>>,
    pub skipped: Mutex<Vec<Skipped>>,
    pub notes: Mutex<Vec<String>>,
}

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChaosOptions {
    /// The writers' timeouts.
    pub client: ClientOptions,
}

/// The samples behind the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    /// ARP probes.
    pub arp: usize,
    /// Address samples.
    pub addr: usize,
    /// /proc sweeps.
    pub proc_sweeps: usize,
    /// /status sweeps.
    pub status_sweeps: usize,
    /// Client write attempts per path.
    pub attempts: BTreeMap<String, usize>,
    /// Acknowledged writes per path.
    pub acked: BTreeMap<String, usize>,
}

/// A whole chaos run.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosResult {
    /// The lab.
    pub lab: String,
    /// `quorum` or `none`.
    pub fencing: String,
    /// The seed (the schedule follows from it).
    pub seed: u64,
    /// The schedule.
    pub schedule: Schedule,
    /// The faults as injected.
    pub injected: Vec<Injected>,
    /// Faults not injected, and why.
    pub skipped: Vec<Skipped>,
    /// The final heal, ms.
    pub final_heal_ms: u64,
    /// From the final heal to healthy, ms (None: not within the bound).
    pub recovery_ms: Option<u64>,
    /// Every violation, in time order.
    pub violations: Vec<Violation>,
    /// After the lab was healthy: stretches over 200 ms with the VIP on no node or answered
    /// by nobody before it settled (a figure; see `check::relapses`).
    pub relapses: Vec<Violation>,
    /// With the kernel gate (fenced): the stretches with the VIP's address on two nodes, a
    /// figure beside the ARP answers (without the gate they are `address-on-two` violations).
    pub address_on_two: Vec<Violation>,
    /// Violations per invariant.
    pub violation_counts: BTreeMap<String, usize>,
    /// Per fault kind: injected, and the longest client gap per fault (p50/p99/worst).
    pub gaps_by_kind: Vec<KindGaps>,
    /// The longest gaps of each path.
    pub longest_gaps: Vec<Gap>,
    /// Memory and descriptors of every daemon process.
    pub growth: Vec<Growth>,
    /// How much was sampled.
    pub samples: Samples,
    /// Injector notes (a command that failed).
    pub notes: Vec<String>,
    /// The report's lanes.
    pub timeline: ChaosTimeline,
}

impl ChaosResult {
    /// No violation.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

fn now_ms(sh: &Shared) -> u64 {
    sh.origin.elapsed().as_millis() as u64
}

/// Whether every path had a write acknowledged within the last `ms`.
fn paths_write(sh: &Shared, ms: u64) -> bool {
    let now = now_ms(sh);
    let log = lock(&sh.log);
    (0..PATHS.len()).all(|p| {
        log.iter()
            .rev()
            .take(400)
            .any(|a| a.path == p && a.ok && a.end_ms + ms >= now)
    })
}

/// Reads the keys of `prefix` from one member (serializable: its own copy), in pages.
async fn member_keys(endpoint: &str, prefix: &str) -> Result<BTreeSet<u64>, String> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let mut c = Client::connect([endpoint], Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut start = prefix.as_bytes().to_vec();
    let mut out = BTreeSet::new();
    loop {
        let resp = c
            .get(
                start.clone(),
                Some(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(5_000)
                        .with_keys_only()
                        .with_serializable(),
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        let kvs = resp.kvs();
        for kv in kvs {
            if let Some(seq) = kv
                .key_str()
                .ok()
                .and_then(|k| k.rsplit('/').next())
                .and_then(|s| s.parse().ok())
            {
                out.insert(seq);
            }
        }
        match kvs.last() {
            Some(kv) if resp.more() => {
                start = kv.key().to_vec();
                start.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// Every member's copy of the acknowledged writes; a member that lags is read again (up to
/// 10 s) until it holds them all.
fn read_back(st: &LabState, whost: &netlab::Host, run_id: &str, log: &[Attempt]) -> Vec<Readback> {
    let acked: Vec<BTreeSet<u64>> = (0..PATHS.len())
        .map(|p| {
            log.iter()
                .filter(|a| a.path == p && a.ok)
                .map(|a| a.seq)
                .collect()
        })
        .collect();
    st.masters
        .iter()
        .map(|m| {
            let ep = format!("http://{}:{}", m.address, st.etcd_port);
            let result = whost
                .enter(|| {
                    let rt = client::runtime().map_err(|e| e.to_string())?;
                    rt.block_on(async {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        loop {
                            let mut have = Vec::new();
                            let mut err = None;
                            for p in PATHS {
                                match member_keys(&ep, &format!("/haplane-drill/{run_id}/{p}/"))
                                    .await
                                {
                                    Ok(s) => have.push(s),
                                    Err(e) => {
                                        err = Some(e);
                                        break;
                                    }
                                }
                            }
                            let complete = err.is_none()
                                && have.iter().zip(&acked).all(|(h, a)| a.is_subset(h));
                            if complete || Instant::now() >= deadline {
                                return match err {
                                    Some(e) => Err(e),
                                    None => Ok(have),
                                };
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    })
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            Readback {
                member: m.name.clone(),
                result,
            }
        })
        .collect()
}

/// Runs `schedule` on lab `st` and checks the result.
pub fn run(
    st: &LabState,
    schedule: &Schedule,
    opts: &ChaosOptions,
) -> Result<ChaosResult, LabError> {
    opts.client.validate().map_err(LabError::BadArgs)?;
    if !st.lbs.is_empty() {
        // The schedule (schedule::Nodes) draws over masters and workers only: the lb nodes,
        // which hold the VIP in such a lab, would never be faulted, and a fault on "the VIP
        // holder" would hit an lb node with faults that need an etcd member (it has none).
        return Err(LabError::BadArgs(format!(
            "lab chaos cannot run on lab {:?}: it was built with --lb-nodes, and chaos draws its \
             faults over masters and workers only, so it would never fault the lb nodes that \
             hold the VIP, and its faults on the VIP holder (etcd kills and freezes among them) \
             would land on an lb node, which has no etcd member; use a lab built without \
             --lb-nodes (lab drill covers lb nodes: --scenario holder-crash)",
            st.name
        )));
    }
    let worker = st
        .workers
        .first()
        .ok_or_else(|| LabError::BadArgs("lab chaos needs a worker (lab up --workers 1)".into()))?;
    let topo = netlab::Topology::open(&st.name)?;
    let whost = topo.host(&worker.name)?;
    view::wait_healthy(st, &topo, Duration::from_secs(45)).map_err(|p| LabError::NotHealthy {
        detail: p,
        logs: st.dir.join("logs"),
    })?;
    let nodes: Vec<&crate::state::NodeInfo> = st.nodes().collect();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let macs: Vec<Mac> = nodes
        .iter()
        .map(|n| interface_mac(topo.host(&n.name)?, "eth0"))
        .collect::<Result<_, _>>()?;
    let observer = Observer::new(nodes.iter().map(|n| (n.name.as_str(), n.netns.as_str())))
        .map_err(|error| LabError::Io {
            path: "/run/netns".into(),
            error,
        })?;
    let probe = ArpProbe::open(whost, st.vip)?;
    let run_id = format!(
        "chaos-{}-{}",
        schedule.seed,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let sh = Arc::new(Shared {
        origin: Instant::now(),
        stop: AtomicBool::new(false),
        links_down: AtomicU32::new(0),
        arp: Mutex::default(),
        arp_error: Mutex::default(),
        addr: Mutex::default(),
        singletons: Mutex::default(),
        claims: Mutex::default(),
        procs: Mutex::default(),
        leaders: Mutex::default(),
        log: Arc::default(),
        busy: Mutex::default(),
        injected: Mutex::default(),
        skipped: Mutex::default(),
        notes: Mutex::default(),
    });
    let targets = [
        SocketAddr::from((st.vip, st.port)),
        SocketAddr::from(([127, 0, 0, 1], st.port)),
    ];
    let vip_bits: Vec<usize> = st
        .vip_watch()
        .iter()
        .filter_map(|w| names.iter().position(|n| *n == w.name))
        .collect();
    let mut final_heal_ms = 0;
    let mut healthy_at = None;
    let mut unhealthy = None;
    std::thread::scope(|s| {
        // The clients, inside the worker's namespace.
        let (shc, run2, copts) = (sh.clone(), run_id.clone(), opts.client);
        s.spawn(move || {
            let r = client::run_writers(
                whost, &targets, &PATHS, &run2, shc.origin, copts, &shc.stop, &shc.log,
            );
            if let Err(e) = r {
                tracing::error!(error = %e, "lab chaos: clients failed");
            }
        });
        // Who answers ARP for the VIP, every 10 ms.
        let (sha, probe, macs) = (sh.clone(), &probe, &macs);
        s.spawn(move || {
            let r = probe.run(Duration::from_millis(10), &sha.stop, |round| {
                let mut sample = SetSample {
                    t: round.sent.saturating_duration_since(sha.origin).as_millis() as u64,
                    set: 0,
                    strangers: 0,
                };
                for m in &round.answers {
                    match macs.iter().position(|x| x == m) {
                        Some(i) => sample.set |= 1 << i,
                        None => sample.strangers += 1,
                    }
                }
                lock(&sha.arp).push(sample);
            });
            if let Err(e) = r {
                *lock(&sha.arp_error) = Some(e.to_string());
            }
        });
        // Who has the VIP on eth0 with its link up, every 10 ms.
        let (shv, topo_ref, vip_bits) = (sh.clone(), &topo, &vip_bits);
        let names_ref = &names;
        s.spawn(move || {
            let vip = IpAddr::V4(st.vip);
            let hosts: Vec<(usize, &netlab::Host)> = vip_bits
                .iter()
                .filter_map(|&i| Some((i, topo_ref.host(&names_ref[i]).ok()?)))
                .collect();
            let mut next = Instant::now();
            while !shv.stop.load(Ordering::Relaxed) {
                let mut set = 0u32;
                for (i, h) in &hosts {
                    if h.has_address(vip).unwrap_or(false) {
                        set |= 1 << i;
                    }
                }
                let down = shv.links_down.load(Ordering::SeqCst);
                let t = now_ms(&shv);
                lock(&shv.addr).push(SetSample {
                    t,
                    set: set & !down,
                    strangers: 0,
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
        // /proc every 100 ms: daemons, memory, descriptors, singletons.
        let (shp, obs) = (sh.clone(), &observer);
        s.spawn(move || {
            while !shp.stop.load(Ordering::Relaxed) {
                let t = now_ms(&shp);
                let sweep = obs.sweep();
                let mut ps = Vec::new();
                for n in st.nodes() {
                    let mut daemons = vec![Daemon::Haplane];
                    if st.is_master(&n.name) {
                        daemons.push(Daemon::Etcd);
                    }
                    for d in daemons {
                        let seen = sweep.daemons.get(&(n.name.clone(), d));
                        ps.push(ProcSample {
                            t,
                            node: n.name.clone(),
                            daemon: d,
                            pid: seen.map(|s| s.pid),
                            rss_kb: seen.map_or(0, |s| s.rss_kb),
                            fds: seen.map_or(0, |s| s.fds),
                        });
                    }
                }
                lock(&shp.procs).extend(ps);
                let mut singles = Vec::new();
                for e in &st.elections {
                    let set = sweep.singletons.get(e).map_or(0, |ns| {
                        ns.iter()
                            .filter_map(|n| names_ref.iter().position(|x| x == n))
                            .fold(0, |acc, i| acc | (1 << i))
                    });
                    singles.push(SingletonSample {
                        t,
                        election: e.clone(),
                        set,
                    });
                }
                lock(&shp.singletons).extend(singles);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Each daemon's /status: who says it leads which election; the leaders.
        let shs = sh.clone();
        s.spawn(move || {
            while !shs.stop.load(Ordering::Relaxed) {
                let v = view::lab_view_fast(st, topo_ref);
                let t = now_ms(&shs);
                let mut claims = Vec::new();
                for e in &st.elections {
                    let set = v
                        .nodes
                        .iter()
                        .filter(|n| n.leads.contains(e))
                        .filter_map(|n| names_ref.iter().position(|x| *x == n.name))
                        .fold(0, |acc, i| acc | (1 << i));
                    claims.push(SingletonSample {
                        t,
                        election: e.clone(),
                        set,
                    });
                }
                lock(&shs.claims).extend(claims);
                let mut leaders = v.election_leaders.clone();
                leaders.insert(
                    "etcd".to_string(),
                    v.etcd_leader.clone().unwrap_or_else(|| "none".into()),
                );
                lock(&shs.leaders).push((t, leaders));
                std::thread::sleep(Duration::from_millis(150));
            }
        });

        // The faults, each on its own thread, started just before its time.
        let ctx = Ctx {
            st,
            topo: &topo,
            names: names.clone(),
            sh: &sh,
        };
        std::thread::scope(|fs| {
            for f in &schedule.faults {
                let lead = f.at_ms.saturating_sub(200);
                let now = now_ms(&sh);
                if lead > now {
                    std::thread::sleep(Duration::from_millis(lead - now));
                }
                let ctx = &ctx;
                fs.spawn(move || inject::run_fault(ctx, f));
            }
        });
        let end = schedule.duration_ms;
        let now = now_ms(&sh);
        if end > now {
            std::thread::sleep(Duration::from_millis(end - now));
        }
        let notes = inject::final_heal(&ctx);
        lock(&sh.notes).extend(notes);
        final_heal_ms = now_ms(&sh);

        // Healthy again: the lab's health, both paths writing, one node answering.
        let deadline = Instant::now() + Duration::from_millis(check::RECOVERY_BOUND_MS + 5_000);
        loop {
            let v = view::lab_view(st, &topo);
            let problem = view::unhealthy(st, &v)
                .or_else(|| (!paths_write(&sh, 300)).then(|| "a client path does not write".into()))
                .or_else(|| {
                    let one = lock(&sh.arp).last().is_some_and(|a| a.count() == 1);
                    (!one).then(|| "the VIP is not answered by exactly one node".into())
                });
            match problem {
                None => {
                    healthy_at = Some(now_ms(&sh));
                    break;
                }
                Some(p) if Instant::now() >= deadline => {
                    unhealthy = Some(p);
                    break;
                }
                Some(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        // Then until the VIP has been answered without a gap for a while (it may move once
        // more after the heal), within the same deadline.
        if let Some(ok) = healthy_at {
            loop {
                let now = now_ms(&sh);
                let last_gap = {
                    let arp = lock(&sh.arp);
                    let addr = lock(&sh.addr);
                    arp.iter()
                        .rev()
                        .chain(addr.iter().rev())
                        .filter(|s| s.count() == 0)
                        .map(|s| s.t)
                        .max()
                        .unwrap_or(0)
                        .max(ok)
                };
                if now.saturating_sub(last_gap) >= WATCH_AFTER_RECOVERY_MS
                    || Instant::now() >= deadline
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        sh.stop.store(true, Ordering::Relaxed);
    });
    let end_ms = now_ms(&sh);

    let attempts: Vec<Attempt> = lock(&sh.log).clone();
    let readback = read_back(st, whost, &run_id, &attempts);
    let eps = st.etcd_endpoints();
    let _ = whost.enter(|| {
        client::runtime()
            .ok()
            .map(|rt| rt.block_on(client::cleanup(&eps, &run_id)))
    });

    let mut injected = lock(&sh.injected).clone();
    injected.sort_by_key(|i| i.id);
    let mut skipped = lock(&sh.skipped).clone();
    skipped.sort_by_key(|s| s.id);
    let h = History {
        nodes: names.clone(),
        paths: PATHS.iter().map(|p| p.to_string()).collect(),
        final_heal_ms,
        end_ms,
        faults: injected.clone(),
        attempts,
        readback,
        arp: lock(&sh.arp).clone(),
        addr: lock(&sh.addr).clone(),
        gated: st.fencing == "quorum",
        singletons: lock(&sh.singletons).clone(),
        claims: lock(&sh.claims).clone(),
        procs: lock(&sh.procs).clone(),
        healthy_at,
        unhealthy,
    };
    let mut violations = check::check(&h);
    if let Some(e) = lock(&sh.arp_error).as_ref() {
        violations.push(Violation {
            invariant: Invariant::SplitBrain,
            from_ms: 0,
            to_ms: end_ms,
            detail: format!("the ARP probe stopped ({e}): who answered is not known"),
        });
    }
    let mut violation_counts = BTreeMap::new();
    for v in &violations {
        *violation_counts
            .entry(v.invariant.name().to_string())
            .or_default() += 1;
    }
    let leaders = lock(&sh.leaders).clone();
    let count = |p: usize, ok: bool| {
        h.attempts
            .iter()
            .filter(|a| a.path == p && (a.ok || !ok))
            .count()
    };
    Ok(ChaosResult {
        lab: st.name.clone(),
        fencing: st.fencing.clone(),
        seed: schedule.seed,
        schedule: schedule.clone(),
        skipped,
        final_heal_ms,
        recovery_ms: healthy_at.map(|t| t.saturating_sub(final_heal_ms)),
        violation_counts,
        violations,
        relapses: check::relapses(&h),
        address_on_two: if h.gated {
            check::address_on_two(&h)
        } else {
            Vec::new()
        },
        gaps_by_kind: figures::gaps_by_kind(&h),
        longest_gaps: figures::longest_gaps(&h, 3),
        growth: check::growth(&h),
        samples: Samples {
            arp: h.arp.len(),
            addr: h.addr.len(),
            proc_sweeps: h.singletons.len() / st.elections.len().max(1),
            status_sweeps: leaders.len(),
            attempts: PATHS
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), count(i, false)))
                .collect(),
            acked: PATHS
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), count(i, true)))
                .collect(),
        },
        notes: lock(&sh.notes).clone(),
        timeline: figures::timeline(&h, &leaders),
        injected,
    })
}
