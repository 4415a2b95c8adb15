//! The chaos schedule: a deterministic function of the seed, the duration, the fault kinds and
//! the lab's node names. No clock, no I/O: `--dry-run` prints exactly what a run with the same
//! seed injects, so a failing seed is a reproducible bug report.
//!
//! Faults start one after another (300 ms to 3 s apart, the first after a 2 s baseline) and
//! overlap: up to [`MAX_ACTIVE`] at a time, as long as two faults never hold the same
//! resource (a node's haplane, its etcd member, its link; faults on "the VIP holder" share
//! the virtual node `holder`, resolved when they start) and a resource rests
//! [`COOLDOWN_MS`] after its heal before the next fault may take it. Every fault heals by
//! the end of the duration (the final heal).

use serde::Serialize;

/// At most this many faults are active at once.
pub const MAX_ACTIVE: usize = 3;
/// At most this many partitions are active at once (each is its own nftables table).
pub const MAX_PARTITIONS: usize = 2;
/// A resource rests this long after its heal (a restarted daemon gets up, a member rejoins)
/// before another fault may take it.
pub const COOLDOWN_MS: u64 = 2_000;
/// The baseline before the first fault.
pub const FIRST_FAULT_MS: u64 = 2_000;
/// Pause between two fault starts: uniform in this range, ms.
pub const GAP_MS: (u64, u64) = (300, 3_000);

/// A small, fast, well-mixed PRNG (SplitMix64, Steele, Lea and Flood 2014): the same seed
/// gives the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; multiply-shift, bias below 2^-32 for the small `n` here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The fault catalogue (`--faults` takes these names, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// SIGKILL a node's haplane daemon; heal: start it again.
    KillHaplane,
    /// SIGSTOP a node's haplane daemon; heal: SIGCONT.
    StopHaplane,
    /// SIGKILL a master's etcd member; heal: start it again.
    KillEtcd,
    /// SIGSTOP a master's etcd member; heal: SIGCONT.
    StopEtcd,
    /// A master crashes: SIGKILL everything in its namespace, link down; heal: reboot (the
    /// VIP address removed, link up, daemons started).
    KillNode,
    /// A whole master freezes (SIGSTOP everything in its namespace); heal: SIGCONT.
    StopNode,
    /// A master's link goes down; heal: up.
    LinkDown,
    /// A master's link flaps (down, up, down, ...); heal: up.
    LinkFlap,
    /// A group of nodes is cut off from another group, both ways or one way.
    Partition,
    /// Random packet loss on a node's link, both directions (nftables `numgen random`).
    Loss,
    /// A haplane daemon restarts: SIGTERM, then started again shortly after.
    Restart,
    /// SIGTERM on the VIP holder's haplane (the priority-0 handover); heal: start it again.
    Handover,
}

impl Kind {
    /// The whole catalogue, in `--faults` order.
    pub const ALL: [Kind; 12] = [
        Kind::KillHaplane,
        Kind::StopHaplane,
        Kind::KillEtcd,
        Kind::StopEtcd,
        Kind::KillNode,
        Kind::StopNode,
        Kind::LinkDown,
        Kind::LinkFlap,
        Kind::Partition,
        Kind::Loss,
        Kind::Restart,
        Kind::Handover,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillHaplane => "kill-haplane",
            Kind::StopHaplane => "stop-haplane",
            Kind::KillEtcd => "kill-etcd",
            Kind::StopEtcd => "stop-etcd",
            Kind::KillNode => "kill-node",
            Kind::StopNode => "stop-node",
            Kind::LinkDown => "link-down",
            Kind::LinkFlap => "link-flap",
            Kind::Partition => "partition",
            Kind::Loss => "loss",
            Kind::Restart => "restart",
            Kind::Handover => "handover",
        }
    }

    /// How long the fault lasts (ms, inclusive range) before its heal.
    pub fn duration_ms(self) -> (u64, u64) {
        match self {
            Kind::KillHaplane => (1_000, 6_000),
            Kind::StopHaplane | Kind::StopEtcd | Kind::StopNode => (500, 6_000),
            Kind::KillEtcd | Kind::KillNode => (1_000, 8_000),
            Kind::LinkDown => (1_000, 6_000),
            Kind::LinkFlap => (3_000, 10_000),
            Kind::Partition => (1_000, 10_000),
            Kind::Loss => (2_000, 10_000),
            // The daemon's downtime between SIGTERM and the new start.
            Kind::Restart => (100, 1_000),
            Kind::Handover => (1_000, 5_000),
        }
    }

    /// Parses `all` or a comma-separated list of names.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        if s.trim() == "all" {
            return Ok(Kind::ALL.to_vec());
        }
        let mut out = Vec::new();
        for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let k = Kind::ALL
                .into_iter()
                .find(|k| k.name() == n)
                .ok_or_else(|| {
                    format!(
                        "unknown fault kind {n:?} in --faults; one of all, {}",
                        Kind::ALL.map(Kind::name).join(", ")
                    )
                })?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        if out.is_empty() {
            return Err("--faults names no fault kind".into());
        }
        Ok(out)
    }
}

/// The node a fault hits (in JSON: the node's name, or `holder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Node(String),
    /// Whichever master holds the VIP when the fault starts (resolved by the injector, which
    /// skips the fault when that node is busy with another fault of the same resource).
    Holder,
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::Node(n) => s.serialize_str(n),
            Target::Holder => s.serialize_str("holder"),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Node(n) => f.write_str(n),
            Target::Holder => f.write_str("the VIP holder"),
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL haplane.
    KillHaplane {
        /// The node.
        node: Target,
    },
    /// SIGSTOP haplane.
    StopHaplane {
        /// The node.
        node: Target,
    },
    /// SIGKILL etcd.
    KillEtcd {
        /// The master.
        node: Target,
    },
    /// SIGSTOP etcd.
    StopEtcd {
        /// The master.
        node: Target,
    },
    /// Crash the master.
    KillNode {
        /// The master.
        node: Target,
    },
    /// Freeze the master.
    StopNode {
        /// The master.
        node: Target,
    },
    /// Link down.
    LinkDown {
        /// The master.
        node: String,
    },
    /// Link flapping: down for `down_ms`, up for `up_ms`, again, until the heal.
    LinkFlap {
        /// The master.
        node: String,
        /// Each down phase, ms.
        down_ms: u64,
        /// Each up phase, ms.
        up_ms: u64,
    },
    /// Frames from `from` to `to` are dropped; with `one_way: false` also from `to` to `from`.
    Partition {
        /// One side.
        from: Vec<String>,
        /// The other side.
        to: Vec<String>,
        /// Only `from` → `to` is cut.
        one_way: bool,
    },
    /// Drops `percent` % of the frames to and from a node.
    Loss {
        /// The node.
        node: String,
        /// Percent of frames dropped, each direction.
        percent: u8,
    },
    /// SIGTERM haplane, start it again at the heal.
    Restart {
        /// The node.
        node: Target,
    },
    /// SIGTERM the VIP holder's haplane, start it again at the heal.
    Handover,
}

impl Action {
    /// The fault's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Action::KillHaplane { .. } => Kind::KillHaplane,
            Action::StopHaplane { .. } => Kind::StopHaplane,
            Action::KillEtcd { .. } => Kind::KillEtcd,
            Action::StopEtcd { .. } => Kind::StopEtcd,
            Action::KillNode { .. } => Kind::KillNode,
            Action::StopNode { .. } => Kind::StopNode,
            Action::LinkDown { .. } => Kind::LinkDown,
            Action::LinkFlap { .. } => Kind::LinkFlap,
            Action::Partition { .. } => Kind::Partition,
            Action::Loss { .. } => Kind::Loss,
            Action::Restart { .. } => Kind::Restart,
            Action::Handover => Kind::Handover,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Action::KillHaplane { node } => format!("SIGKILL haplane on {node}"),
            Action::StopHaplane { node } => format!("SIGSTOP haplane on {node}"),
            Action::KillEtcd { node } => format!("SIGKILL etcd on {node}"),
            Action::StopEtcd { node } => format!("SIGSTOP etcd on {node}"),
            Action::KillNode { node } => format!("crash {node}: SIGKILL all, link down"),
            Action::StopNode { node } => format!("freeze {node}: SIGSTOP all"),
            Action::LinkDown { node } => format!("link down on {node}"),
            Action::LinkFlap {
                node,
                down_ms,
                up_ms,
            } => format!("link of {node} flaps: {down_ms} ms down, {up_ms} ms up"),
            Action::Partition { from, to, one_way } => format!(
                "partition {} {} {}",
                from.join(","),
                if *one_way { "->" } else { "<->" },
                to.join(",")
            ),
            Action::Loss { node, percent } => format!("{percent}% loss on {node}'s link"),
            Action::Restart { node } => format!("restart haplane on {node}"),
            Action::Handover => "SIGTERM haplane on the VIP holder".to_string(),
        }
    }

    /// The resources the fault holds: `haplane:N`, `etcd:N`, `link:N`. A fault on the VIP
    /// holder holds `haplane:holder` (...) in the schedule, so two such faults never meet; the
    /// injector resolves the holder and skips the fault when that node's resource is busy
    /// ([`Action::resources_on`]).
    pub fn resources(&self) -> Vec<String> {
        self.resources_on(None)
    }

    /// The resources with the VIP holder resolved to `holder` (None: kept as `holder`).
    pub fn resources_on(&self, holder: Option<&str>) -> Vec<String> {
        let on = |t: &Target, what: &[&str]| -> Vec<String> {
            let n = match t {
                Target::Node(n) => n.as_str(),
                Target::Holder => holder.unwrap_or("holder"),
            };
            what.iter().map(|w| format!("{w}:{n}")).collect()
        };
        match self {
            Action::KillHaplane { node }
            | Action::StopHaplane { node }
            | Action::Restart { node } => on(node, &["haplane"]),
            Action::Handover => on(&Target::Holder, &["haplane"]),
            Action::KillEtcd { node } | Action::StopEtcd { node } => on(node, &["etcd"]),
            Action::KillNode { node } => on(node, &["haplane", "etcd", "link"]),
            Action::StopNode { node } => on(node, &["haplane", "etcd"]),
            Action::LinkDown { node }
            | Action::LinkFlap { node, .. }
            | Action::Loss { node, .. } => {
                vec![format!("link:{node}")]
            }
            Action::Partition { .. } => Vec::new(),
        }
    }

    /// The node the fault hits, when it hits one.
    pub fn target(&self) -> Option<Target> {
        match self {
            Action::KillHaplane { node }
            | Action::StopHaplane { node }
            | Action::KillEtcd { node }
            | Action::StopEtcd { node }
            | Action::KillNode { node }
            | Action::StopNode { node }
            | Action::Restart { node } => Some(node.clone()),
            Action::Handover => Some(Target::Holder),
            Action::LinkDown { node }
            | Action::LinkFlap { node, .. }
            | Action::Loss { node, .. } => Some(Target::Node(node.clone())),
            Action::Partition { .. } => None,
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// 1, 2, ... in start order.
    pub id: u32,
    /// Start, ms after the run's start.
    pub at_ms: u64,
    /// Heal, ms after the run's start.
    pub heal_ms: u64,
    /// What it does.
    pub action: Action,
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> Kind {
        self.action.kind()
    }
}

/// The lab's nodes as the schedule sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nodes {
    /// Masters (etcd + haplane with the VIP).
    pub masters: Vec<String>,
    /// Workers (haplane as the node-local balancer; the clients and the ARP probe run on the
    /// first).
    pub workers: Vec<String>,
}

impl Nodes {
    /// `m1..mM`, `w1..wW`, as `lab up` names them.
    pub fn standard(masters: usize, workers: usize) -> Nodes {
        Nodes {
            masters: (1..=masters).map(|i| format!("m{i}")).collect(),
            workers: (1..=workers).map(|i| format!("w{i}")).collect(),
        }
    }

    fn all(&self) -> Vec<String> {
        self.masters.iter().chain(&self.workers).cloned().collect()
    }
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The seed.
    pub seed: u64,
    /// Length of the fault phase, ms; every fault heals by then (the final heal).
    pub duration_ms: u64,
    /// The nodes faults were drawn over.
    pub nodes: Nodes,
    /// The kinds faults were drawn from.
    pub kinds: Vec<Kind>,
    /// The faults, in start order.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Faults per kind, in catalogue order (kinds with none left out).
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        Kind::ALL
            .into_iter()
            .map(|k| (k, self.faults.iter().filter(|f| f.kind() == k).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The most faults active at one moment.
    pub fn max_overlap(&self) -> usize {
        self.faults
            .iter()
            .map(|f| {
                self.faults
                    .iter()
                    .filter(|g| g.at_ms <= f.at_ms && f.at_ms < g.heal_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

/// A target for a process fault on a master: the VIP holder about half the time (the faults
/// that matter most), else a random master.
fn master_target(rng: &mut Rng, nodes: &Nodes) -> Target {
    if rng.chance(50) {
        Target::Holder
    } else {
        Target::Node(rng.pick(&nodes.masters).clone())
    }
}

/// A random non-empty subset of `pool` (each member with probability 1/2, redrawn if empty).
fn subset(rng: &mut Rng, pool: &[String]) -> Vec<String> {
    loop {
        let s: Vec<String> = pool.iter().filter(|_| rng.chance(50)).cloned().collect();
        if !s.is_empty() {
            return s;
        }
    }
}

/// Draws one fault of `kind`; None when the lab has nothing it could hit.
fn draw(rng: &mut Rng, kind: Kind, nodes: &Nodes) -> Option<Action> {
    if nodes.masters.is_empty() {
        return None;
    }
    let all = nodes.all();
    Some(match kind {
        Kind::KillHaplane | Kind::StopHaplane | Kind::Restart => {
            // Any node's daemon: a worker's is its node-local balancer.
            let node = if rng.chance(25) && !nodes.workers.is_empty() {
                Target::Node(rng.pick(&nodes.workers).clone())
            } else {
                master_target(rng, nodes)
            };
            match kind {
                Kind::KillHaplane => Action::KillHaplane { node },
                Kind::StopHaplane => Action::StopHaplane { node },
                _ => Action::Restart { node },
            }
        }
        Kind::KillEtcd => Action::KillEtcd {
            node: master_target(rng, nodes),
        },
        Kind::StopEtcd => Action::StopEtcd {
            node: master_target(rng, nodes),
        },
        Kind::KillNode => Action::KillNode {
            node: master_target(rng, nodes),
        },
        Kind::StopNode => Action::StopNode {
            node: master_target(rng, nodes),
        },
        // The worker's link carries the clients and the probe: taking it down measures the
        // clients' own blackout, not haplane, so link faults hit masters only.
        Kind::LinkDown => Action::LinkDown {
            node: rng.pick(&nodes.masters).clone(),
        },
        Kind::LinkFlap => Action::LinkFlap {
            node: rng.pick(&nodes.masters).clone(),
            down_ms: rng.range(100, 1_500),
            up_ms: rng.range(100, 1_500),
        },
        Kind::Partition => {
            if all.len() < 2 {
                return None;
            }
            // Any subset from any other: `from` is a proper subset, `to` a subset of the rest.
            let from = loop {
                let s = subset(rng, &all);
                if s.len() < all.len() {
                    break s;
                }
            };
            let rest: Vec<String> = all.iter().filter(|n| !from.contains(n)).cloned().collect();
            let to = subset(rng, &rest);
            Action::Partition {
                from,
                to,
                one_way: rng.chance(50),
            }
        }
        Kind::Loss => Action::Loss {
            node: rng.pick(&all).clone(),
            percent: rng.range(5, 60) as u8,
        },
        Kind::Handover => Action::Handover,
    })
}

/// The schedule for `seed` over `duration_ms` with the given kinds and nodes.
pub fn generate(seed: u64, duration_ms: u64, kinds: &[Kind], nodes: &Nodes) -> Schedule {
    let mut rng = Rng::new(seed);
    let mut faults: Vec<Fault> = Vec::new();
    // (resource, busy until) of faults placed so far.
    let mut busy: Vec<(String, u64)> = Vec::new();
    let mut t = FIRST_FAULT_MS;
    while !kinds.is_empty() && t < duration_ms {
        let active: Vec<&Fault> = faults.iter().filter(|f| f.heal_ms > t).collect();
        if active.len() < MAX_ACTIVE {
            // A few tries to find a fault that fits beside the active ones.
            for _ in 0..8 {
                let kind = *rng.pick(kinds);
                let (lo, hi) = kind.duration_ms();
                let dur = rng.range(lo, hi);
                let Some(action) = draw(&mut rng, kind, nodes) else {
                    continue;
                };
                if t + lo > duration_ms {
                    continue;
                }
                let heal = (t + dur).min(duration_ms);
                let res = action.resources();
                let clash = res
                    .iter()
                    .any(|r| busy.iter().any(|(b, until)| b == r && *until > t));
                let partitions = active
                    .iter()
                    .filter(|f| f.kind() == Kind::Partition)
                    .count();
                if clash || (kind == Kind::Partition && partitions >= MAX_PARTITIONS) {
                    continue;
                }
                busy.extend(res.into_iter().map(|r| (r, heal + COOLDOWN_MS)));
                faults.push(Fault {
                    id: faults.len() as u32 + 1,
                    at_ms: t,
                    heal_ms: heal,
                    action,
                });
                break;
            }
        }
        t += rng.range(GAP_MS.0, GAP_MS.1);
    }
    Schedule {
        seed,
        duration_ms,
        nodes: nodes.clone(),
        kinds: kinds.to_vec(),
        faults,
    }
}

/// The schedule as a table (what `--dry-run` prints, and the run prints at its start).
pub fn text(s: &Schedule) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos schedule: seed {}, {:.1} s, {} master(s) + {} worker(s), {} faults (at most {} at once)",
        s.seed,
        s.duration_ms as f64 / 1000.0,
        s.nodes.masters.len(),
        s.nodes.workers.len(),
        s.faults.len(),
        s.max_overlap()
    );
    let mut rows = vec![
        ["#", "AT", "HEAL", "KIND", "WHAT"]
            .map(String::from)
            .to_vec(),
    ];
    for f in &s.faults {
        rows.push(vec![
            f.id.to_string(),
            format!("{:.1}s", f.at_ms as f64 / 1000.0),
            format!("{:.1}s", f.heal_ms as f64 / 1000.0),
            f.kind().name().to_string(),
            f.action.describe(),
        ]);
    }
    out.push_str(&crate::summary::table(&rows));
    let counts: Vec<String> = s
        .counts()
        .iter()
        .map(|(k, n)| format!("{} {n}", k.name()))
        .collect();
    let _ = writeln!(out, "by kind: {}", counts.join(", "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Nodes {
        Nodes::standard(3, 1)
    }

    #[test]
    fn the_seed_alone_reproduces_the_schedule() {
        let a = generate(42, 120_000, &Kind::ALL, &lab());
        let b = generate(42, 120_000, &Kind::ALL, &lab());
        assert_eq!(a, b);
        let c = generate(43, 120_000, &Kind::ALL, &lab());
        assert_ne!(a.faults, c.faults, "another seed, another schedule");
    }

    #[test]
    fn splitmix64_matches_its_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (reference implementation, Vigna).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn every_fault_heals_by_the_final_heal_and_none_starts_before_the_baseline() {
        for seed in 0..50 {
            let s = generate(seed, 60_000, &Kind::ALL, &lab());
            assert!(!s.faults.is_empty(), "seed {seed}");
            for f in &s.faults {
                assert!(f.at_ms >= FIRST_FAULT_MS, "{f:?}");
                assert!(f.at_ms < f.heal_ms && f.heal_ms <= 60_000, "{f:?}");
            }
        }
    }

    #[test]
    fn faults_overlap_but_never_share_a_resource_or_exceed_the_limits() {
        let nodes = lab();
        let mut overlapped = 0;
        for seed in 0..100 {
            let s = generate(seed, 120_000, &Kind::ALL, &nodes);
            for f in &s.faults {
                let active: Vec<&Fault> = s
                    .faults
                    .iter()
                    .filter(|g| g.at_ms <= f.at_ms && f.at_ms < g.heal_ms)
                    .collect();
                assert!(active.len() <= MAX_ACTIVE, "seed {seed}: {active:?}");
                let parts = active
                    .iter()
                    .filter(|g| g.kind() == Kind::Partition)
                    .count();
                assert!(parts <= MAX_PARTITIONS, "seed {seed}");
                if active.len() > 1 {
                    overlapped += 1;
                }
                // No earlier fault holds (or rests on) a resource this one takes.
                for g in s.faults.iter().filter(|g| g.id < f.id) {
                    if g.heal_ms + COOLDOWN_MS <= f.at_ms {
                        continue;
                    }
                    let mine = f.action.resources();
                    let theirs = g.action.resources();
                    assert!(
                        !mine.iter().any(|r| theirs.contains(r)),
                        "seed {seed}: #{} and #{} share a resource",
                        g.id,
                        f.id
                    );
                }
            }
        }
        assert!(overlapped > 100, "faults do overlap: {overlapped}");
    }

    #[test]
    fn over_many_seeds_the_whole_catalogue_is_drawn_with_all_its_variants() {
        let mut kinds = std::collections::BTreeSet::new();
        let (mut one_way, mut both_ways, mut holder, mut worker) = (0, 0, 0, 0);
        for seed in 0..40 {
            for f in generate(seed, 120_000, &Kind::ALL, &lab()).faults {
                kinds.insert(f.kind());
                match &f.action {
                    Action::Partition { one_way: true, .. } => one_way += 1,
                    Action::Partition { .. } => both_ways += 1,
                    Action::KillNode {
                        node: Target::Holder,
                    } => holder += 1,
                    Action::KillHaplane {
                        node: Target::Node(n),
                    } if n.starts_with('w') => worker += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(kinds.len(), Kind::ALL.len(), "{kinds:?}");
        assert!(one_way > 0 && both_ways > 0 && holder > 0 && worker > 0);
    }

    #[test]
    fn faults_on_the_vip_holder_are_common_and_resolve_to_the_holders_resources() {
        let (mut holder, mut all) = (0, 0);
        for seed in 0..50 {
            for f in generate(seed, 120_000, &Kind::ALL, &lab()).faults {
                if let Some(t) = f.action.target().filter(|_| f.kind() != Kind::Handover) {
                    all += 1;
                    holder += usize::from(t == Target::Holder);
                }
            }
        }
        assert!(holder * 5 > all, "{holder} of {all} on the holder");
        let a = Action::KillNode {
            node: Target::Holder,
        };
        assert_eq!(
            a.resources(),
            ["haplane:holder", "etcd:holder", "link:holder"]
        );
        assert_eq!(
            a.resources_on(Some("m2")),
            ["haplane:m2", "etcd:m2", "link:m2"]
        );
        assert_eq!(Action::Handover.resources_on(Some("m1")), ["haplane:m1"]);
    }

    #[test]
    fn partitions_cut_two_disjoint_non_empty_groups() {
        for seed in 0..200 {
            for f in generate(seed, 60_000, &[Kind::Partition], &lab()).faults {
                let Action::Partition { from, to, .. } = &f.action else {
                    panic!("only partitions were asked for: {f:?}");
                };
                assert!(!from.is_empty() && !to.is_empty(), "{f:?}");
                assert!(!from.iter().any(|n| to.contains(n)), "{f:?}");
            }
        }
    }

    #[test]
    fn faults_narrows_the_catalogue_and_unknown_names_are_an_error() {
        assert_eq!(Kind::parse_list("all").unwrap().len(), Kind::ALL.len());
        let only = Kind::parse_list("partition, loss").unwrap();
        assert_eq!(only, [Kind::Partition, Kind::Loss]);
        let s = generate(7, 60_000, &only, &lab());
        assert!(
            s.faults
                .iter()
                .all(|f| matches!(f.kind(), Kind::Partition | Kind::Loss))
        );
        let e = Kind::parse_list("partition,meteor").unwrap_err();
        assert!(e.contains("meteor") && e.contains("kill-node"), "{e}");
        assert!(Kind::parse_list(",").is_err());
    }

    #[test]
    fn link_faults_spare_the_worker_that_carries_the_clients() {
        for seed in 0..100 {
            let s = generate(seed, 60_000, &[Kind::LinkDown, Kind::LinkFlap], &lab());
            for f in s.faults {
                match f.action {
                    Action::LinkDown { node } | Action::LinkFlap { node, .. } => {
                        assert!(node.starts_with('m'), "{node}")
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_schedule_serialises_with_the_kind_as_a_tag() {
        let s = generate(1, 30_000, &[Kind::Handover, Kind::Loss], &lab());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["seed"], 1);
        let kinds: Vec<&str> = v["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["action"]["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.iter().all(|k| *k == "handover" || *k == "loss"));
        assert!(text(&s).contains("seed 1"));
    }
}
