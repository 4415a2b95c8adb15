//! A deterministic simulation with virtual time, for tests (feature `sim`).
//!
//! N nodes run the real [`Gate`] against a linearizable key-value store (one register with
//! a revision counter) reached over links with random latency. Each node has its own
//! monotonic clock whose rate is fixed per node, so clocks drift apart; a kernel fence per
//! node lets the VIP answer only until the deadline the gate programmed, counted on that
//! node's clock, and it keeps counting while the node's process is frozen or dead. The
//! scenario decides which nodes VRRP makes master (any number at once: safety must not
//! depend on VRRP), crashes, restarts, freezes and thaws nodes, cuts them off from the
//! store, and takes the store down for raft elections (requests that arrive meanwhile are
//! either lost or applied when it comes back, as etcd does with proposals).
//!
//! After every event the simulation checks the property clients care about: at no instant
//! do two nodes answer for the VIP.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::{Action, Gate, GateConfig, Held, KeyState, Op, Outcome, RequestFailed, RequestId};

/// splitmix64, seedable.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi].
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(self.next_f64())
    }
}

/// How the simulated world behaves.
#[derive(Debug, Clone)]
pub struct World {
    /// One-way latency between a node and the store, uniform in this range.
    pub latency: (Duration, Duration),
    /// Each node's clock rate (local seconds per real second); missing entries are 1.0.
    pub clock_rates: Vec<f64>,
    /// Time from the gate asking for a fence deadline until the kernel applies it (the
    /// relative timeout starts counting then), uniform in [0, this].
    pub fence_latency: Duration,
    /// Probability that a request arriving while the store is down is applied when it comes
    /// back (otherwise it is lost).
    pub queued_while_down: f64,
}

impl Default for World {
    fn default() -> Self {
        World {
            latency: (Duration::from_micros(300), Duration::from_millis(3)),
            clock_rates: Vec::new(),
            fence_latency: Duration::from_millis(2),
            queued_while_down: 0.5,
        }
    }
}

/// Two nodes answered for the VIP at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time since the start.
    pub at: Duration,
    /// The nodes that answered.
    pub nodes: Vec<usize>,
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// The gate; None while crashed.
    pub gate: Option<Gate>,
    /// VRRP makes this node master.
    pub want: bool,
    /// The process is stopped (SIGSTOP): it handles nothing, its kernel still runs.
    pub frozen: bool,
    /// Cut off from the store (requests and answers lost).
    pub cut: bool,
    /// The VIP address is on the interface.
    pub vip: bool,
    /// The kernel fence lets the VIP answer until this real time (None: closed; u64::MAX:
    /// unfenced).
    pub fence_until: Option<u64>,
    /// Inputs that arrived while frozen.
    queued: VecDeque<Input>,
    /// Only the newest wake-up counts.
    wake_seq: u64,
    offset: u64,
    rate: f64,
    incarnation: u64,
    /// The node asked VRRP to defer.
    pub deferring: bool,
}

#[derive(Debug, Clone)]
enum Input {
    Response(RequestId, Result<Outcome, RequestFailed>),
}

#[derive(Debug)]
enum Event {
    /// A request reaches the store.
    Arrive {
        node: usize,
        incarnation: u64,
        id: RequestId,
        op: Op,
    },
    /// An answer reaches a node.
    Answer {
        node: usize,
        incarnation: u64,
        id: RequestId,
        result: Result<Outcome, RequestFailed>,
    },
    /// A node's gate asked to be woken.
    Wake { node: usize, seq: u64 },
    /// The store is back: apply what was queued.
    StoreUp,
}

struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulated cluster.
pub struct Sim {
    base: Instant,
    /// Real virtual time in nanoseconds since the start.
    now: u64,
    nodes: Vec<SimNode>,
    template: GateConfig,
    world: World,
    rng: SimRng,
    queue: BinaryHeap<Queued>,
    seq: u64,
    revision: i64,
    key: Option<Held>,
    down_until: Option<u64>,
    parked: Vec<(usize, u64, RequestId, Op)>,
    violations: Vec<Violation>,
    steps: u64,
    /// (real time, reachable holder) at each change.
    timeline: Vec<(u64, Option<usize>)>,
}

/// Safety net against a gate that keeps asking to be woken at the same instant.
const MAX_STEPS: u64 = 2_000_000;

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl Sim {
    /// `n` nodes with gates built from `template` (identities `n0`, `n1`, ...).
    pub fn new(n: usize, template: GateConfig, world: World, seed: u64) -> Sim {
        let base = Instant::now();
        let mut rng = SimRng::new(seed);
        let nodes = (0..n)
            .map(|i| SimNode {
                gate: None,
                want: false,
                frozen: false,
                cut: false,
                vip: false,
                fence_until: None,
                queued: VecDeque::new(),
                wake_seq: 0,
                // Clocks start anywhere: only rates matter to the protocol.
                offset: rng.next_u64() % 1_000_000_000_000,
                rate: world.clock_rates.get(i).copied().unwrap_or(1.0),
                incarnation: 0,
                deferring: false,
            })
            .collect();
        let mut sim = Sim {
            base,
            now: 0,
            nodes,
            template,
            world,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            revision: 1,
            key: None,
            down_until: None,
            parked: Vec::new(),
            violations: Vec::new(),
            steps: 0,
            timeline: vec![(0, None)],
        };
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// A node.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every instant at which two nodes answered for the VIP.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The key in the store.
    pub fn key(&self) -> Option<&Held> {
        self.key.as_ref()
    }

    /// The node answering for the VIP now, if exactly one does.
    pub fn holder(&self) -> Option<usize> {
        let r = self.reachable();
        (r.len() == 1).then(|| r[0])
    }

    /// Nodes whose VIP clients could reach now.
    pub fn reachable(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.answers(i)).collect()
    }

    fn answers(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.vip && n.fence_until.is_some_and(|u| self.now < u)
    }

    /// (time, reachable holder) at each change of who answers for the VIP.
    pub fn timeline(&self) -> Vec<(Duration, Option<usize>)> {
        self.timeline
            .iter()
            .map(|(t, h)| (Duration::from_nanos(*t), *h))
            .collect()
    }

    /// The first time at or after `from` when `node` answers for the VIP alone.
    pub fn held_by_since(&self, node: usize, from: Duration) -> Option<Duration> {
        let from = ns(from);
        let mut last: Option<u64> = None;
        for (t, h) in &self.timeline {
            if *h == Some(node) {
                last.get_or_insert(*t);
            } else {
                last = None;
            }
        }
        last.map(|t| Duration::from_nanos(t.max(from)))
    }

    /// The longest interval without any node answering, within [from, now].
    pub fn longest_gap_since(&self, from: Duration) -> Duration {
        let from = ns(from);
        let mut longest = 0;
        let mut gap_start: Option<u64> = None;
        for (t, h) in &self.timeline {
            match (h, gap_start) {
                (None, None) => gap_start = Some((*t).max(from)),
                (Some(_), Some(s)) => {
                    if *t > from {
                        longest = longest.max(t.saturating_sub(s.max(from)));
                    }
                    gap_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = gap_start {
            longest = longest.max(self.now.saturating_sub(s.max(from)));
        }
        Duration::from_nanos(longest)
    }

    fn local(&self, i: usize, at: u64) -> Instant {
        let n = &self.nodes[i];
        self.base + Duration::from_nanos(n.offset + (at as f64 * n.rate) as u64)
    }

    /// The real time at which node `i`'s clock shows `t`.
    fn real_at(&self, i: usize, t: Instant) -> u64 {
        let n = &self.nodes[i];
        let local = t.saturating_duration_since(self.base).as_nanos() as u64;
        let real = (local.saturating_sub(n.offset) as f64 / n.rate).ceil() as u64;
        // Rounding may land a nanosecond early; the node must see `t` at that instant.
        if self.local(i, real) < t {
            real + 1
        } else {
            real
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            event,
        });
    }

    fn start(&mut self, i: usize) {
        let now = self.local(i, self.now);
        let mut cfg = self.template.clone();
        cfg.identity = format!("n{i}");
        let gate = Gate::new(cfg, now).expect("valid gate config");
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.gate = Some(gate);
        n.frozen = false;
        n.queued.clear();
        n.deferring = false;
        // The daemon removes a VIP left behind by an earlier run before anything else.
        n.vip = false;
        n.fence_until = None;
        let want = n.want;
        if want {
            self.with_gate(i, |g, now| g.handle_want(now, true));
        } else {
            self.drain(i);
        }
        self.observe();
    }

    fn with_gate(&mut self, i: usize, f: impl FnOnce(&mut Gate, Instant)) {
        let now = self.local(i, self.now);
        if let Some(g) = self.nodes[i].gate.as_mut() {
            f(g, now);
        }
        self.drain(i);
    }

    /// Carry out a node's actions and schedule its wake-up.
    fn drain(&mut self, i: usize) {
        let now_local = self.local(i, self.now);
        while let Some(action) = self.nodes[i].gate.as_mut().and_then(|g| g.poll_action()) {
            match action {
                Action::Send { id, op } => {
                    let lat = self.rng.between(self.world.latency.0, self.world.latency.1);
                    let incarnation = self.nodes[i].incarnation;
                    self.push(
                        self.now + ns(lat),
                        Event::Arrive {
                            node: i,
                            incarnation,
                            id,
                            op,
                        },
                    );
                }
                Action::Hold { until } => {
                    let apply = ns(self.rng.between(Duration::ZERO, self.world.fence_latency));
                    let n = &self.nodes[i];
                    let expiry = match until {
                        None => u64::MAX,
                        Some(u) => {
                            // The kernel counts the relative timeout on this node's clock,
                            // from when it applies it.
                            let left = u.saturating_duration_since(now_local);
                            self.now + apply + (ns(left) as f64 / n.rate) as u64
                        }
                    };
                    let n = &mut self.nodes[i];
                    n.vip = true;
                    n.fence_until = Some(match n.fence_until {
                        // Until the new timeout is applied, the old one stands.
                        Some(old) if old > self.now => old.max(expiry),
                        _ => expiry,
                    });
                }
                Action::Release => {
                    let n = &mut self.nodes[i];
                    n.vip = false;
                    n.fence_until = None;
                }
                Action::Defer(d) => self.nodes[i].deferring = d != crate::Defer::No,
                Action::Quorum(_) | Action::Arm => {}
            }
        }
        if let Some(wake) = self.nodes[i].gate.as_ref().and_then(|g| g.poll_timeout()) {
            let at = self.real_at(i, wake).max(self.now);
            self.nodes[i].wake_seq += 1;
            let seq = self.nodes[i].wake_seq;
            self.push(at, Event::Wake { node: i, seq });
        }
    }

    fn apply(&mut self, op: Op, identity: &str) -> Outcome {
        let state = |s: &Sim| KeyState {
            revision: s.revision,
            value: s.key.clone(),
        };
        match op {
            Op::Read => Outcome::Read(state(self)),
            Op::Create if self.key.is_none() => self.write(identity),
            Op::Swap { expect } if self.key.as_ref().is_some_and(|k| k.mod_revision == expect) => {
                self.write(identity)
            }
            Op::Delete { expect }
                if self.key.as_ref().is_some_and(|k| k.mod_revision == expect) =>
            {
                self.revision += 1;
                self.key = None;
                Outcome::Done {
                    revision: self.revision,
                }
            }
            _ => Outcome::Refused(state(self)),
        }
    }

    fn write(&mut self, identity: &str) -> Outcome {
        self.revision += 1;
        self.key = Some(Held {
            holder: identity.to_string(),
            mod_revision: self.revision,
        });
        Outcome::Done {
            revision: self.revision,
        }
    }

    fn answer(&mut self, node: usize, incarnation: u64, id: RequestId, op: Op) {
        let outcome = self.apply(op, &format!("n{node}"));
        let lat = self.rng.between(self.world.latency.0, self.world.latency.1);
        self.push(
            self.now + ns(lat),
            Event::Answer {
                node,
                incarnation,
                id,
                result: Ok(outcome),
            },
        );
    }

    fn deliver(&mut self, i: usize, input: Input) {
        if self.nodes[i].frozen {
            self.nodes[i].queued.push_back(input);
            return;
        }
        match input {
            Input::Response(id, result) => {
                self.with_gate(i, |g, now| g.handle_response(now, id, result))
            }
        }
    }

    fn process(&mut self, event: Event) {
        match event {
            Event::Arrive {
                node,
                incarnation,
                id,
                op,
            } => {
                if self.nodes[node].cut {
                    return;
                }
                if self.down_until.is_some() {
                    if self.rng.next_f64() < self.world.queued_while_down {
                        self.parked.push((node, incarnation, id, op));
                    }
                    return;
                }
                self.answer(node, incarnation, id, op);
            }
            Event::Answer {
                node,
                incarnation,
                id,
                result,
            } => {
                let n = &self.nodes[node];
                if n.cut || n.incarnation != incarnation || n.gate.is_none() {
                    return;
                }
                self.deliver(node, Input::Response(id, result));
            }
            Event::Wake { node, seq } => {
                let n = &self.nodes[node];
                if n.wake_seq != seq || n.frozen || n.gate.is_none() {
                    return;
                }
                self.with_gate(node, |g, now| g.handle_timeout(now));
            }
            Event::StoreUp => {
                if self.down_until.is_some_and(|u| u <= self.now) {
                    self.down_until = None;
                    let parked = std::mem::take(&mut self.parked);
                    for (node, incarnation, id, op) in parked {
                        if !self.nodes[node].cut {
                            self.answer(node, incarnation, id, op);
                        }
                    }
                }
            }
        }
    }

    /// Check the property and extend the timeline.
    fn observe(&mut self) {
        let r = self.reachable();
        if r.len() > 1 {
            self.violations.push(Violation {
                at: self.elapsed(),
                nodes: r.clone(),
            });
        }
        let holder = (r.len() == 1).then(|| r[0]);
        if self.timeline.last().map(|(_, h)| *h) != Some(holder) {
            self.timeline.push((self.now, holder));
        }
    }

    /// Run the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + ns(d);
        loop {
            // Fence expiries are instants too: observe them as they happen.
            let next_expiry = self
                .nodes
                .iter()
                .filter(|n| n.vip)
                .filter_map(|n| n.fence_until)
                .filter(|u| *u > self.now && *u != u64::MAX)
                .min();
            let next_event = self.queue.peek().map(|q| q.at);
            let next = match (next_event, next_expiry) {
                (Some(e), Some(x)) => e.min(x),
                (Some(e), None) => e,
                (None, Some(x)) => x,
                (None, None) => end + 1,
            };
            if next > end {
                self.now = end;
                self.observe();
                return;
            }
            self.now = next;
            self.steps += 1;
            assert!(
                self.steps < MAX_STEPS,
                "the simulation is not making progress at {:?}",
                self.elapsed()
            );
            if next_event == Some(next) {
                let q = self.queue.pop().expect("peeked");
                self.process(q.event);
            }
            self.observe();
        }
    }

    /// VRRP makes node `i` master (or not).
    pub fn set_want(&mut self, i: usize, want: bool) {
        self.nodes[i].want = want;
        if self.nodes[i].frozen {
            return;
        }
        self.with_gate(i, |g, now| g.handle_want(now, want));
        self.observe();
    }

    /// Kill node `i`'s process: its address and kernel fence stay behind.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].gate = None;
        self.nodes[i].frozen = false;
        self.nodes[i].queued.clear();
    }

    /// Start node `i` again (a fresh gate, armed).
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].gate.is_none() {
            self.start(i);
        }
    }

    /// SIGSTOP node `i`'s process.
    pub fn freeze(&mut self, i: usize) {
        if self.nodes[i].gate.is_some() {
            self.nodes[i].frozen = true;
        }
    }

    /// SIGCONT node `i`'s process: it handles what arrived meanwhile, then wakes.
    pub fn thaw(&mut self, i: usize) {
        if !self.nodes[i].frozen {
            return;
        }
        self.nodes[i].frozen = false;
        let want = self.nodes[i].want;
        let queued = std::mem::take(&mut self.nodes[i].queued);
        // First the overdue timer, as a thawed process would see it.
        self.with_gate(i, |g, now| g.handle_timeout(now));
        for input in queued {
            self.deliver(i, input);
        }
        self.with_gate(i, |g, now| g.handle_want(now, want));
        self.observe();
    }

    /// Cut node `i` off from the store (or heal it).
    pub fn cut(&mut self, i: usize, cut: bool) {
        self.nodes[i].cut = cut;
    }

    /// The store is unavailable for `d` (a raft election).
    pub fn store_down(&mut self, d: Duration) {
        let until = self.now + ns(d);
        self.down_until = Some(self.down_until.map_or(until, |u| u.max(until)));
        self.push(until, Event::StoreUp);
    }
}
