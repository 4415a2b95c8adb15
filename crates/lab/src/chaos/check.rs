//! The chaos checker: a pure function of what was recorded (the client histories, the read-back
//! from every etcd member, the samplers' series, the faults as injected), so every invariant
//! has a unit test that feeds it a violation and sees it caught. It trusts nothing the daemons
//! say about themselves where the kernel or the clients can be asked instead: who *answers*
//! ARP for the VIP, who has the address, which singleton processes run, which pids live.
//!
//! Times are ms since the run's origin. Node sets are bitmasks over [`History::nodes`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::schedule::Kind;
use crate::client::Attempt;

/// After the final heal, within this long: the lab is healthy (every daemon answers, every
/// etcd member is healthy, every balancer sees all backends, exactly one VIP), both client
/// paths have written, and the VIP answers.
pub const RECOVERY_BOUND_MS: u64 = 30_000;
/// After the lab is healthy, a stretch longer than this with the VIP on no node or answered
/// by nobody is a relapse (the VIP moved once more) ...
pub const RELAPSE_MS: u64 = 200;
/// ... and the VIP has settled once the last relapse ended; it must settle within
/// [`RECOVERY_BOUND_MS`] of the final heal and stay settled for at least this long, to the
/// end of the recording.
pub const SETTLED_MS: u64 = 2_000;
/// A daemon a fault stopped, killed or restarted may be missing or replaced from the fault's
/// start until this long after its heal (the heal restarts it; etcd takes a while to rejoin).
pub const RESTART_GRACE_MS: u64 = 10_000;
/// A daemon process's growth is judged from its first sample this long after its start ...
pub const GROWTH_WARMUP_MS: u64 = 10_000;
/// ... for processes that lived at least this long ...
pub const GROWTH_MIN_LIFE_MS: u64 = 30_000;
/// ... and may grow by at most this much resident memory (KiB) ... (haplane only: etcd's
/// memory grows with the keys the clients write, so it is reported, not judged) ...
pub const RSS_GROWTH_BOUND_KB: u64 = 32 * 1024;
/// ... and this many open descriptors, from that sample to its last.
pub const FD_GROWTH_BOUND: u64 = 64;
/// /status is read node after node, so one sweep can straddle a clean hand-over; two nodes
/// claiming one election count only when this many sweeps in a row show it.
pub const CLAIM_SWEEPS: usize = 2;

/// A daemon the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Daemon {
    /// `haplane run`.
    Haplane,
    /// The etcd member.
    Etcd,
}

impl Daemon {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Haplane => "haplane",
            Daemon::Etcd => "etcd",
        }
    }
}

/// A fault as it was injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// The schedule's fault id.
    pub id: u32,
    /// Its kind.
    pub kind: Kind,
    /// What was done, with the holder resolved (`SIGKILL haplane on m2`).
    pub what: String,
    /// When it was injected.
    pub at_ms: u64,
    /// When it was healed.
    pub healed_ms: u64,
    /// The daemons the fault or its heal stops, kills or restarts.
    pub touches: Vec<(String, Daemon)>,
}

/// The acknowledged writes as one etcd member holds them.
#[derive(Debug, Clone)]
pub struct Readback {
    /// The member (master) read, with a serializable (local) read.
    pub member: String,
    /// Per client path (index as in [`History::paths`]), the sequence numbers it holds; or
    /// why it could not be read.
    pub result: Result<Vec<BTreeSet<u64>>, String>,
}

/// A sample of a set of nodes (bit i = `nodes[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSample {
    /// When.
    pub t: u64,
    /// The nodes.
    pub set: u32,
    /// Answers from MACs that are no node's (ARP only).
    pub strangers: u32,
}

impl SetSample {
    /// Nodes and strangers in the sample.
    pub fn count(&self) -> u32 {
        self.set.count_ones() + self.strangers
    }
}

/// Who runs (or claims) one election's singleton at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingletonSample {
    /// When.
    pub t: u64,
    /// The election.
    pub election: String,
    /// The nodes (bit i = `nodes[i]`).
    pub set: u32,
}

/// One daemon's process at one moment, from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSample {
    /// When.
    pub t: u64,
    /// The node.
    pub node: String,
    /// The daemon.
    pub daemon: Daemon,
    /// Its pid; None when no such process runs in the node's namespace.
    pub pid: Option<i32>,
    /// Resident memory, KiB.
    pub rss_kb: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Everything a chaos run recorded.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every node, the bit order of the sets.
    pub nodes: Vec<String>,
    /// The client paths (`vip`, `node-local`), the index of [`Attempt::path`].
    pub paths: Vec<String>,
    /// The final heal: every fault healed by then.
    pub final_heal_ms: u64,
    /// The end of the recording.
    pub end_ms: u64,
    /// The faults as injected.
    pub faults: Vec<Injected>,
    /// Every client write attempt.
    pub attempts: Vec<Attempt>,
    /// The read-back from every etcd member after the final heal.
    pub readback: Vec<Readback>,
    /// Who answered ARP for the VIP (the probe beside the clients, every 10 ms).
    pub arp: Vec<SetSample>,
    /// Who had the VIP on `eth0` with its link up (every 10 ms).
    pub addr: Vec<SetSample>,
    /// The VIP is quorum-fenced: haplane keeps a fenced VIP's address behind a kernel gate
    /// that stops its ARP (`haplane_gate`), so the address on two nodes is no violation by
    /// itself (the ARP answers decide); unfenced, the address is what answers.
    pub gated: bool,
    /// Which nodes ran each election's singleton process (not stopped), from /proc.
    pub singletons: Vec<SingletonSample>,
    /// Which nodes said they lead each election (/status sweeps).
    pub claims: Vec<SingletonSample>,
    /// The daemons' processes.
    pub procs: Vec<ProcSample>,
    /// When the lab was healthy after the final heal (None: not within the bound).
    pub healthy_at: Option<u64>,
    /// What was still wrong when it was not.
    pub unhealthy: Option<String>,
}

/// The invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// An acknowledged write is missing from an etcd member after the final heal.
    LostWrite,
    /// Two nodes answered ARP for the VIP at once.
    SplitBrain,
    /// The VIP was on two nodes (links up) at once.
    AddressOnTwo,
    /// Two nodes ran (or claimed) one election's singleton at once.
    DoubleSingleton,
    /// The lab did not recover within the bound after the final heal, or relapsed.
    NoRecovery,
    /// A daemon died, or was replaced, with no fault to explain it.
    DaemonDied,
    /// A daemon's memory or descriptors grew beyond the bound.
    Growth,
}

impl Invariant {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::LostWrite => "lost-write",
            Invariant::SplitBrain => "split-brain",
            Invariant::AddressOnTwo => "address-on-two",
            Invariant::DoubleSingleton => "double-singleton",
            Invariant::NoRecovery => "no-recovery",
            Invariant::DaemonDied => "daemon-died",
            Invariant::Growth => "growth",
        }
    }
}

/// One violation, with the interval it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// Start, ms.
    pub from_ms: u64,
    /// End, ms.
    pub to_ms: u64,
    /// What exactly.
    pub detail: String,
}

/// One daemon process's growth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Growth {
    /// The node.
    pub node: String,
    /// The daemon.
    pub daemon: Daemon,
    /// The process.
    pub pid: i32,
    /// Its first sample, ms.
    pub born_ms: u64,
    /// The first sample after the warm-up (the growth's base), ms.
    pub from_ms: u64,
    /// Last sample, ms.
    pub to_ms: u64,
    /// RSS at the first sample after the warm-up, KiB.
    pub rss_first_kb: u64,
    /// RSS at the last sample, KiB.
    pub rss_last_kb: u64,
    /// Highest RSS, KiB.
    pub rss_max_kb: u64,
    /// Descriptors at the first sample after the warm-up.
    pub fds_first: u64,
    /// Descriptors at the last sample.
    pub fds_last: u64,
    /// Most descriptors.
    pub fds_max: u64,
    /// Whether it is judged: a haplane process that lived long enough.
    pub judged: bool,
}

fn names(nodes: &[String], set: u32, strangers: u32) -> String {
    crate::timeline::holder_names(nodes, set, strangers)
}

fn secs(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// Runs of consecutive samples for which `bad` holds, as (first, last) indices.
fn runs<T>(samples: &[T], bad: impl Fn(&T) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, s) in samples.iter().enumerate() {
        match (bad(s), start) {
            (true, None) => start = Some(i),
            (false, Some(b)) => {
                out.push((b, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(b) = start {
        out.push((b, samples.len() - 1));
    }
    out
}

/// Every acknowledged write must be on every member.
fn lost_writes(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for rb in &h.readback {
        let have = match &rb.result {
            Ok(h) => h,
            Err(e) => {
                out.push(Violation {
                    invariant: Invariant::LostWrite,
                    from_ms: h.final_heal_ms,
                    to_ms: h.end_ms,
                    detail: format!(
                        "cannot read the acknowledged writes back from {}: {e}",
                        rb.member
                    ),
                });
                continue;
            }
        };
        for (p, path) in h.paths.iter().enumerate() {
            let empty = BTreeSet::new();
            let held = have.get(p).unwrap_or(&empty);
            let missing: Vec<&Attempt> = h
                .attempts
                .iter()
                .filter(|a| a.path == p && a.ok && !held.contains(&a.seq))
                .collect();
            let (Some(first), Some(last)) = (missing.first(), missing.last()) else {
                continue;
            };
            let seqs: Vec<String> = missing.iter().take(5).map(|a| a.seq.to_string()).collect();
            out.push(Violation {
                invariant: Invariant::LostWrite,
                from_ms: first.end_ms,
                to_ms: last.end_ms,
                detail: format!(
                    "{} acknowledged {path} write(s) missing on {} (seq {}{}), first acknowledged at {}",
                    missing.len(),
                    rb.member,
                    seqs.join(", "),
                    if missing.len() > 5 { ", ..." } else { "" },
                    secs(first.end_ms)
                ),
            });
        }
    }
    out
}

/// The stretches with the VIP's address on two nodes (links up): a violation without the
/// kernel gate, a figure with it.
pub fn address_on_two(h: &History) -> Vec<Violation> {
    overlaps(h, &h.addr, Invariant::AddressOnTwo, "had the VIP on eth0")
}

/// Never two answers for the VIP in one probe; without the gate, never the address on two
/// nodes.
fn double_vip(h: &History) -> Vec<Violation> {
    let mut out = overlaps(h, &h.arp, Invariant::SplitBrain, "answered ARP for the VIP");
    if !h.gated {
        out.extend(address_on_two(h));
    }
    out
}

fn overlaps(h: &History, series: &[SetSample], invariant: Invariant, what: &str) -> Vec<Violation> {
    runs(series, |s| s.count() > 1)
        .into_iter()
        .map(|(a, b)| {
            let who: BTreeSet<String> = series[a..=b]
                .iter()
                .map(|s| names(&h.nodes, s.set, s.strangers))
                .collect();
            Violation {
                invariant,
                from_ms: series[a].t,
                to_ms: series[b].t,
                detail: format!(
                    "{} {what} at once ({} samples)",
                    who.into_iter().collect::<Vec<_>>().join(", then "),
                    b - a + 1
                ),
            }
        })
        .collect()
}

/// Never two nodes running one election's singleton (any sample), nor claiming it in
/// [`CLAIM_SWEEPS`] sweeps in a row.
fn double_singletons(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for (series, min_run, what) in [
        (&h.singletons, 1, "ran the singleton"),
        (&h.claims, CLAIM_SWEEPS, "said they lead"),
    ] {
        let mut by_election: BTreeMap<&str, Vec<&SingletonSample>> = BTreeMap::new();
        for s in series {
            by_election.entry(&s.election).or_default().push(s);
        }
        for (election, samples) in by_election {
            for (a, b) in runs(&samples, |s| s.set.count_ones() > 1) {
                if b - a + 1 < min_run {
                    continue;
                }
                out.push(Violation {
                    invariant: Invariant::DoubleSingleton,
                    from_ms: samples[a].t,
                    to_ms: samples[b].t,
                    detail: format!(
                        "{} {what} of {election} at once ({} samples)",
                        names(&h.nodes, samples[a].set, 0),
                        b - a + 1
                    ),
                });
            }
        }
    }
    out
}

/// After the final heal: healthy, both paths writing and the VIP answering within the
/// bound; then no relapse.
fn recovery(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let heal = h.final_heal_ms;
    let bound = heal + RECOVERY_BOUND_MS;
    let fail = |detail: String| Violation {
        invariant: Invariant::NoRecovery,
        from_ms: heal,
        to_ms: h.end_ms.max(heal),
        detail,
    };
    match h.healthy_at {
        Some(t) if t <= bound => {}
        Some(t) => out.push(fail(format!(
            "healthy only {} after the final heal (bound {})",
            secs(t - heal),
            secs(RECOVERY_BOUND_MS)
        ))),
        None => out.push(fail(format!(
            "not healthy within {} of the final heal: {}",
            secs(RECOVERY_BOUND_MS),
            h.unhealthy.as_deref().unwrap_or("unknown")
        ))),
    }
    for (p, path) in h.paths.iter().enumerate() {
        let first = h
            .attempts
            .iter()
            .filter(|a| a.path == p && a.ok && a.end_ms >= heal)
            .map(|a| a.end_ms)
            .min();
        match first {
            Some(t) if t <= bound => {}
            Some(t) => out.push(fail(format!(
                "{path}: the first acknowledged write came {} after the final heal",
                secs(t - heal)
            ))),
            None => out.push(fail(format!(
                "{path}: no acknowledged write after the final heal"
            ))),
        }
    }
    let answered = h.arp.iter().find(|s| s.t >= heal && s.count() == 1);
    if answered.is_none_or(|s| s.t > bound) {
        out.push(fail(format!(
            "nobody answered ARP for the VIP within {} of the final heal",
            secs(RECOVERY_BOUND_MS)
        )));
    }
    // Once healthy, the VIP may still move (a return, the gate's order) but must settle
    // within the bound and stay settled to the end of the recording.
    if let Some(ok) = h.healthy_at {
        let moves = relapses(h);
        let settled = moves.iter().map(|v| v.to_ms).max().unwrap_or(ok).max(ok);
        if settled > bound {
            out.push(Violation {
                invariant: Invariant::NoRecovery,
                from_ms: heal,
                to_ms: settled,
                detail: format!(
                    "the VIP did not settle within {} of the final heal ({} stretch(es) without it after the lab was healthy)",
                    secs(RECOVERY_BOUND_MS),
                    moves.len()
                ),
            });
        } else if h.end_ms.saturating_sub(settled) < SETTLED_MS {
            out.push(Violation {
                invariant: Invariant::NoRecovery,
                from_ms: settled,
                to_ms: h.end_ms,
                detail: format!(
                    "the VIP was lost again {} before the recording ended (settled for less than {})",
                    secs(h.end_ms.saturating_sub(settled)),
                    secs(SETTLED_MS)
                ),
            });
        }
    }
    out
}

/// After the lab was healthy: the stretches longer than [`RELAPSE_MS`] with the VIP on no
/// node or answered by nobody (the VIP moving once more). A figure; a violation only when
/// they go on past the bound or up to the end (see [`check`]).
pub fn relapses(h: &History) -> Vec<Violation> {
    let Some(ok) = h.healthy_at else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (series, what) in [(&h.addr, "on no node"), (&h.arp, "answered by nobody")] {
        let after: Vec<&SetSample> = series.iter().filter(|s| s.t >= ok).collect();
        for (a, b) in runs(&after, |s| s.count() == 0) {
            let to = after.get(b + 1).map_or(h.end_ms, |s| s.t);
            if to - after[a].t > RELAPSE_MS {
                out.push(Violation {
                    invariant: Invariant::NoRecovery,
                    from_ms: after[a].t,
                    to_ms: to,
                    detail: format!(
                        "after the lab was healthy the VIP was {what} for {} ms",
                        to - after[a].t
                    ),
                });
            }
        }
    }
    out.sort_by_key(|v| v.from_ms);
    out
}

/// Whether a fault explains `daemon` on `node` being gone or replaced at `t`.
fn explained(h: &History, node: &str, daemon: Daemon, t: u64) -> bool {
    h.faults.iter().any(|f| {
        f.at_ms <= t
            && t <= f.healed_ms + RESTART_GRACE_MS
            && f.touches.iter().any(|(n, d)| n == node && *d == daemon)
    })
}

/// The samples of each daemon, in time order.
fn by_daemon(h: &History) -> BTreeMap<(String, Daemon), Vec<&ProcSample>> {
    let mut m: BTreeMap<(String, Daemon), Vec<&ProcSample>> = BTreeMap::new();
    for s in &h.procs {
        m.entry((s.node.clone(), s.daemon)).or_default().push(s);
    }
    for v in m.values_mut() {
        v.sort_by_key(|s| s.t);
    }
    m
}

/// No daemon dies or is replaced unless a fault did it.
fn daemons(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for ((node, daemon), samples) in by_daemon(h) {
        let d = daemon.name();
        let mut reference: Option<i32> = None;
        let mut gone_since: Option<(u64, Option<i32>)> = None;
        let mut last_t = 0;
        for s in samples {
            last_t = s.t;
            if explained(h, &node, daemon, s.t) {
                reference = s.pid;
                if let Some((from, pid)) = gone_since.take() {
                    out.push(gone(&node, d, from, s.t, pid));
                }
                continue;
            }
            match (reference, s.pid) {
                (_, None) => {
                    if gone_since.is_none() {
                        gone_since = Some((s.t, reference));
                    }
                }
                (r, Some(p)) => {
                    if let Some((from, pid)) = gone_since.take() {
                        out.push(gone(&node, d, from, s.t, pid));
                    } else if let Some(r) = r
                        && r != p
                    {
                        out.push(Violation {
                            invariant: Invariant::DaemonDied,
                            from_ms: s.t,
                            to_ms: s.t,
                            detail: format!(
                                "{d} on {node} was replaced with no fault to explain it: pid {r} -> {p}"
                            ),
                        });
                    }
                    reference = Some(p);
                }
            }
        }
        if let Some((from, pid)) = gone_since {
            out.push(gone(&node, d, from, last_t, pid));
        }
    }
    out
}

fn gone(node: &str, d: &str, from: u64, to: u64, pid: Option<i32>) -> Violation {
    Violation {
        invariant: Invariant::DaemonDied,
        from_ms: from,
        to_ms: to,
        detail: format!(
            "{d} on {node} was not running{} with no fault to explain it",
            pid.map_or(String::new(), |p| format!(" (pid {p} gone)"))
        ),
    }
}

/// Each daemon process's memory and descriptors, first (after the warm-up), last, highest.
pub fn growth(h: &History) -> Vec<Growth> {
    let mut out = Vec::new();
    for ((node, daemon), samples) in by_daemon(h) {
        let mut pids: Vec<i32> = Vec::new();
        for s in &samples {
            if let Some(p) = s.pid
                && !pids.contains(&p)
            {
                pids.push(p);
            }
        }
        for pid in pids {
            let mine: Vec<&&ProcSample> = samples.iter().filter(|s| s.pid == Some(pid)).collect();
            let (Some(born), Some(last)) = (mine.first(), mine.last()) else {
                continue;
            };
            let first = mine
                .iter()
                .find(|s| s.t >= born.t + GROWTH_WARMUP_MS)
                .unwrap_or(born);
            out.push(Growth {
                node: node.clone(),
                daemon,
                pid,
                born_ms: born.t,
                from_ms: first.t,
                to_ms: last.t,
                rss_first_kb: first.rss_kb,
                rss_last_kb: last.rss_kb,
                rss_max_kb: mine.iter().map(|s| s.rss_kb).max().unwrap_or(0),
                fds_first: first.fds,
                fds_last: last.fds,
                fds_max: mine.iter().map(|s| s.fds).max().unwrap_or(0),
                judged: daemon == Daemon::Haplane && last.t - born.t >= GROWTH_MIN_LIFE_MS,
            });
        }
    }
    out
}

fn growth_violations(h: &History) -> Vec<Violation> {
    growth(h)
        .into_iter()
        .filter(|g| g.judged)
        .filter_map(|g| {
            let rss = g.rss_last_kb.saturating_sub(g.rss_first_kb);
            let fds = g.fds_last.saturating_sub(g.fds_first);
            (rss > RSS_GROWTH_BOUND_KB || fds > FD_GROWTH_BOUND).then(|| Violation {
                invariant: Invariant::Growth,
                from_ms: g.from_ms,
                to_ms: g.to_ms,
                detail: format!(
                    "{} on {} (pid {}) grew by {} KiB RSS ({} -> {}) and {} descriptors ({} -> {}); bound {} KiB, {}",
                    g.daemon.name(),
                    g.node,
                    g.pid,
                    rss,
                    g.rss_first_kb,
                    g.rss_last_kb,
                    fds,
                    g.fds_first,
                    g.fds_last,
                    RSS_GROWTH_BOUND_KB,
                    FD_GROWTH_BOUND
                ),
            })
        })
        .collect()
}

/// Every violation in the history, in time order.
pub fn check(h: &History) -> Vec<Violation> {
    let mut v = lost_writes(h);
    v.extend(double_vip(h));
    v.extend(double_singletons(h));
    v.extend(recovery(h));
    v.extend(daemons(h));
    v.extend(growth_violations(h));
    v.sort_by_key(|x| (x.from_ms, x.invariant));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: u32 = 1;
    const M2: u32 = 2;
    const M3: u32 = 4;

    fn ok(path: usize, seq: u64, at: u64) -> Attempt {
        Attempt {
            path,
            seq,
            start_ms: at.saturating_sub(5),
            end_ms: at,
            ok: true,
            error: None,
        }
    }

    fn every(from: u64, to: u64, step: u64, set: u32) -> Vec<SetSample> {
        (from..=to)
            .step_by(step as usize)
            .map(|t| SetSample {
                t,
                set,
                strangers: 0,
            })
            .collect()
    }

    fn procs(node: &str, daemon: Daemon, series: &[(u64, Option<i32>)]) -> Vec<ProcSample> {
        series
            .iter()
            .map(|&(t, pid)| ProcSample {
                t,
                node: node.into(),
                daemon,
                pid,
                rss_kb: 20_000,
                fds: 30,
            })
            .collect()
    }

    /// A clean 60 s run: writes on both paths every 100 ms, m1 holds and answers throughout,
    /// a fault on m2's etcd from 10 to 15 s that killed and restarted it, every member holds
    /// every write, healthy 1 s after the final heal at 50 s.
    fn clean() -> History {
        let mut attempts = Vec::new();
        let mut held = vec![BTreeSet::new(), BTreeSet::new()];
        for (i, t) in (100..60_000).step_by(100).enumerate() {
            for (p, held) in held.iter_mut().enumerate() {
                attempts.push(ok(p, i as u64 + 1, t));
                held.insert(i as u64 + 1);
            }
        }
        let mut procs_ = Vec::new();
        for n in ["m1", "m2", "m3"] {
            let pid = if n == "m2" { 200 } else { 100 };
            procs_.extend(procs(
                n,
                Daemon::Haplane,
                &(0..60).map(|s| (s * 1000, Some(pid))).collect::<Vec<_>>(),
            ));
        }
        // m2's etcd: killed at 10 s, restarted at 15 s with a new pid.
        procs_.extend(procs(
            "m2",
            Daemon::Etcd,
            &(0..60)
                .map(|s| {
                    let pid = match s {
                        0..10 => Some(300),
                        10..16 => None,
                        _ => Some(301),
                    };
                    (s * 1000, pid)
                })
                .collect::<Vec<_>>(),
        ));
        History {
            nodes: ["m1", "m2", "m3", "w1"].map(String::from).to_vec(),
            paths: vec!["vip".into(), "node-local".into()],
            final_heal_ms: 50_000,
            end_ms: 60_000,
            faults: vec![Injected {
                id: 1,
                kind: Kind::KillEtcd,
                what: "SIGKILL etcd on m2".into(),
                at_ms: 10_000,
                healed_ms: 15_000,
                touches: vec![("m2".into(), Daemon::Etcd)],
            }],
            attempts,
            readback: ["m1", "m2", "m3"]
                .iter()
                .map(|m| Readback {
                    member: m.to_string(),
                    result: Ok(held.clone()),
                })
                .collect(),
            arp: every(0, 60_000, 10, M1),
            addr: every(0, 60_000, 10, M1),
            gated: false,
            singletons: (0..600)
                .map(|i| SingletonSample {
                    t: i * 100,
                    election: "scheduler".into(),
                    set: M1,
                })
                .collect(),
            claims: (0..400)
                .map(|i| SingletonSample {
                    t: i * 150,
                    election: "scheduler".into(),
                    set: M1,
                })
                .collect(),
            procs: procs_,
            healthy_at: Some(51_000),
            unhealthy: None,
        }
    }

    fn only(h: &History, inv: Invariant) -> Vec<Violation> {
        let v = check(h);
        assert!(
            v.iter().all(|x| x.invariant == inv),
            "only {inv:?} expected: {v:#?}"
        );
        assert!(!v.is_empty(), "{inv:?} not caught");
        v
    }

    #[test]
    fn a_clean_history_with_an_explained_etcd_restart_passes() {
        assert_eq!(check(&clean()), vec![]);
    }

    #[test]
    fn an_acknowledged_write_missing_on_one_member_is_a_lost_write() {
        let mut h = clean();
        let Ok(held) = &mut h.readback[2].result else {
            unreachable!()
        };
        held[0].remove(&123);
        let v = only(&h, Invariant::LostWrite);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].detail.contains("m3") && v[0].detail.contains("123"),
            "{v:?}"
        );
        assert!(v[0].detail.contains("vip"), "{v:?}");
        // Acknowledged at 12.3 s: the interval names when.
        assert_eq!(v[0].from_ms, 12_300);
    }

    #[test]
    fn a_failed_write_that_is_missing_is_no_loss() {
        let mut h = clean();
        h.attempts.push(Attempt {
            path: 0,
            seq: 99_999,
            start_ms: 20_000,
            end_ms: 20_200,
            ok: false,
            error: Some("timeout"),
        });
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn a_member_that_cannot_be_read_back_is_not_trusted() {
        let mut h = clean();
        h.readback[1].result = Err("connection refused".into());
        let v = only(&h, Invariant::LostWrite);
        assert!(v[0].detail.contains("m2") && v[0].detail.contains("refused"));
    }

    #[test]
    fn two_nodes_answering_arp_at_once_is_split_brain_with_its_interval() {
        let mut h = clean();
        for s in h
            .arp
            .iter_mut()
            .filter(|s| (20_000..=20_300).contains(&s.t))
        {
            s.set = M1 | M2;
        }
        let v = only(&h, Invariant::SplitBrain);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].from_ms, v[0].to_ms), (20_000, 20_300));
        assert!(v[0].detail.contains("m1+m2"), "{v:?}");
    }

    #[test]
    fn an_answer_from_a_stranger_beside_the_holder_is_split_brain_too() {
        let mut h = clean();
        h.arp[500].strangers = 1;
        let v = only(&h, Invariant::SplitBrain);
        assert!(v[0].detail.contains("m1+?"), "{v:?}");
    }

    #[test]
    fn the_address_on_two_nodes_is_caught_even_when_only_one_answers() {
        let mut h = clean();
        h.addr[3000].set = M1 | M3;
        let v = only(&h, Invariant::AddressOnTwo);
        assert_eq!(v[0].from_ms, 30_000);
    }

    #[test]
    fn behind_the_kernel_gate_the_address_on_two_is_reported_and_the_answers_decide() {
        let mut h = clean();
        h.gated = true;
        h.addr[3000].set = M1 | M3;
        assert_eq!(check(&h), vec![]);
        assert_eq!(address_on_two(&h).len(), 1);
        h.arp[3000].set = M1 | M3;
        only(&h, Invariant::SplitBrain);
    }

    #[test]
    fn two_nodes_running_one_singleton_in_a_single_sample_is_a_violation() {
        let mut h = clean();
        h.singletons[250].set = M1 | M2;
        let v = only(&h, Invariant::DoubleSingleton);
        assert!(v[0].detail.contains("scheduler") && v[0].detail.contains("m1+m2"));
        // Two different elections on two nodes are fine.
        let mut h = clean();
        h.singletons.push(SingletonSample {
            t: 25_000,
            election: "controller-manager".into(),
            set: M2,
        });
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn claims_from_status_need_two_sweeps_in_a_row() {
        // One sweep read node after node can straddle a clean hand-over.
        let mut h = clean();
        h.claims[100].set = M1 | M2;
        assert_eq!(check(&h), vec![]);
        h.claims[101].set = M1 | M2;
        let v = only(&h, Invariant::DoubleSingleton);
        assert!(v[0].detail.contains("said they lead"), "{v:?}");
    }

    #[test]
    fn no_recovery_after_the_final_heal_is_caught() {
        let mut h = clean();
        h.healthy_at = None;
        h.unhealthy = Some("m2: etcd not healthy".into());
        let v = only(&h, Invariant::NoRecovery);
        assert!(v[0].detail.contains("m2: etcd not healthy"), "{v:?}");

        let mut h = clean();
        h.healthy_at = Some(50_000 + RECOVERY_BOUND_MS + 1);
        only(&h, Invariant::NoRecovery);
    }

    #[test]
    fn a_path_that_never_writes_again_after_the_heal_is_no_recovery() {
        let mut h = clean();
        h.attempts
            .retain(|a| !(a.path == 1 && a.end_ms >= h.final_heal_ms));
        let v = only(&h, Invariant::NoRecovery);
        assert!(v[0].detail.contains("node-local"), "{v:?}");
    }

    #[test]
    fn a_vip_that_moves_once_more_after_recovery_and_settles_is_reported_not_violated() {
        let mut h = clean();
        // 300 ms with nobody answering at 55 s, after the recovery at 51 s; settled 4.7 s.
        for s in h.arp.iter_mut().filter(|s| (55_000..55_300).contains(&s.t)) {
            s.set = 0;
        }
        assert_eq!(check(&h), vec![]);
        let r = relapses(&h);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].from_ms, r[0].to_ms), (55_000, 55_300));
        assert!(r[0].detail.contains("answered by nobody"), "{r:?}");
        // A single unanswered probe is no relapse at all.
        let mut h = clean();
        h.arp[5600].set = 0;
        assert!(relapses(&h).is_empty());
    }

    #[test]
    fn a_vip_lost_again_just_before_the_end_has_not_settled() {
        let mut h = clean();
        for s in h
            .addr
            .iter_mut()
            .filter(|s| (58_500..59_000).contains(&s.t))
        {
            s.set = 0;
        }
        let v = only(&h, Invariant::NoRecovery);
        assert_eq!(v[0].from_ms, 59_000);
        assert!(v[0].detail.contains("lost again"), "{v:?}");
    }

    #[test]
    fn a_vip_that_keeps_moving_past_the_bound_never_settled() {
        let mut h = clean();
        h.end_ms = 100_000;
        h.arp = every(0, 100_000, 10, M1);
        h.addr = every(0, 100_000, 10, M1);
        // Unanswered 300 ms of every 2 s from the recovery at 51 s to 90 s.
        for s in h
            .arp
            .iter_mut()
            .filter(|s| s.t >= 51_000 && s.t < 90_000 && s.t % 2_000 < 300)
        {
            s.set = 0;
        }
        let v = only(&h, Invariant::NoRecovery);
        assert!(v[0].detail.contains("did not settle"), "{v:?}");
    }

    #[test]
    fn a_daemon_that_dies_with_no_fault_to_explain_it_is_caught() {
        let mut h = clean();
        for s in h
            .procs
            .iter_mut()
            .filter(|s| s.node == "m3" && s.daemon == Daemon::Haplane && s.t >= 30_000)
        {
            s.pid = None;
        }
        let v = only(&h, Invariant::DaemonDied);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].from_ms, 30_000);
        assert!(v[0].detail.contains("haplane on m3") && v[0].detail.contains("100"));
    }

    #[test]
    fn a_daemon_restarted_by_itself_is_caught() {
        let mut h = clean();
        for s in h
            .procs
            .iter_mut()
            .filter(|s| s.node == "m1" && s.daemon == Daemon::Haplane && s.t >= 40_000)
        {
            s.pid = Some(777);
        }
        let v = only(&h, Invariant::DaemonDied);
        assert!(v[0].detail.contains("100 -> 777"), "{v:?}");
    }

    #[test]
    fn an_etcd_that_stays_down_past_the_grace_after_its_heal_is_caught() {
        let mut h = clean();
        // The heal at 15 s did not bring m2's etcd back: gone until 30 s.
        for s in h
            .procs
            .iter_mut()
            .filter(|s| s.node == "m2" && s.daemon == Daemon::Etcd && s.t < 30_000)
            .filter(|s| s.t >= 10_000)
        {
            s.pid = None;
        }
        let v = only(&h, Invariant::DaemonDied);
        assert_eq!(v[0].from_ms, 15_000 + RESTART_GRACE_MS + 1000);
    }

    #[test]
    fn a_daemon_that_grows_past_the_bound_is_caught_and_growth_is_reported() {
        let mut h = clean();
        for s in h
            .procs
            .iter_mut()
            .filter(|s| s.node == "m1" && s.daemon == Daemon::Haplane)
        {
            s.rss_kb = 20_000 + s.t; // 1 KiB per ms: 59 MiB over the run
            s.fds = 30 + s.t / 1000;
        }
        let v = only(&h, Invariant::Growth);
        assert!(v[0].detail.contains("m1"), "{v:?}");
        let g = growth(&h);
        let m1 = g
            .iter()
            .find(|g| g.node == "m1" && g.daemon == Daemon::Haplane)
            .unwrap();
        assert_eq!(m1.rss_first_kb, 20_000 + GROWTH_WARMUP_MS);
        assert_eq!(m1.rss_last_kb, 20_000 + 59_000);
        assert_eq!((m1.fds_first, m1.fds_last, m1.fds_max), (40, 89, 89));
        assert!(m1.judged);
        // The restarted etcd on m2 is reported per pid, and etcd is never judged.
        let etcd: Vec<&Growth> = g
            .iter()
            .filter(|g| g.node == "m2" && g.daemon == Daemon::Etcd)
            .collect();
        assert_eq!(etcd.len(), 2);
        assert!(etcd.iter().all(|g| !g.judged));
    }

    #[test]
    fn violations_come_in_time_order() {
        let mut h = clean();
        h.addr[4000].set = M1 | M2;
        h.arp[1000].set = M2 | M3;
        let v = check(&h);
        assert_eq!(
            v.iter().map(|x| x.invariant).collect::<Vec<_>>(),
            [Invariant::SplitBrain, Invariant::AddressOnTwo]
        );
    }
}
