//! A deterministic simulated LAN with virtual time, for tests (feature `sim`).
//!
//! Routers sit on one segment. Each directed link has a loss probability (drawn from a
//! seeded RNG); every delivery takes `delay` plus up to `jitter`. Partitions decide who
//! hears whom. Nodes can crash (vanish without a priority-0 advert), shut down gracefully,
//! lose their link, and have tracked checks flip. Virtual time only moves when the next
//! event (a packet arrival or a router deadline) is processed, so runs are exact and fast.
//! Each host has a virtual wall clock (for auth_hmac's time window) that can be skewed, and
//! every transmitted advert can be captured for replay attacks.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::AuthHmacConfig;
use crate::config::{ConfigError, RouterConfig};
use crate::router::{Action, Incoming, Router, State};

/// splitmix64: small, seedable, good enough for loss and jitter draws.
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
}

/// One simulated host running one VRRP instance.
#[derive(Debug)]
pub struct Node {
    /// The router; replaced on restart.
    pub router: Router,
    /// The configuration the router was built from.
    pub config: RouterConfig,
    /// False after a crash.
    pub alive: bool,
    /// The host's link state.
    pub link_up: bool,
    /// Virtual addresses currently on the host's interface.
    pub vips: BTreeSet<IpAddr>,
    /// Gratuitous ARP / NA bursts requested.
    pub announces: u64,
    /// How far this host's wall clock is ahead of the LAN's (negative: behind), in ms.
    pub clock_skew_ms: i64,
}

/// The virtual wall clock at the LAN's creation: 2027-01-15, seconds since the Unix epoch.
pub const SIM_EPOCH: Duration = Duration::from_secs(1_800_000_000);

/// An advert as it left a host, for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Virtual time since the LAN was created.
    pub at: Duration,
    /// Sending host.
    pub from: usize,
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// The VRRP message as sent.
    pub payload: Vec<u8>,
}

/// A state change observed on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Virtual time since the LAN was created.
    pub at: Duration,
    /// Node index.
    pub node: usize,
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Effective priority at the change.
    pub priority: u8,
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    // Reversed: BinaryHeap is a max-heap and we want the earliest arrival first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulated segment.
#[derive(Debug)]
pub struct Lan {
    base: Instant,
    now: Instant,
    nodes: Vec<Node>,
    rng: SimRng,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    reach: Vec<Vec<bool>>,
    loss: Vec<Vec<f64>>,
    /// Fixed one-way delay of every delivery.
    pub delay: Duration,
    /// Extra random delay, uniform in [0, jitter).
    pub jitter: Duration,
    events: Vec<Event>,
    steps: u64,
    capture: bool,
    captured: Vec<Captured>,
}

/// Safety net against a router that keeps asking to be woken at the same instant.
const MAX_STEPS_PER_RUN: u64 = 5_000_000;

impl Lan {
    /// An empty LAN: 1 ms delay, no jitter, no loss.
    pub fn new(seed: u64) -> Self {
        let base = Instant::now();
        Lan {
            base,
            now: base,
            nodes: Vec::new(),
            rng: SimRng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            reach: Vec::new(),
            loss: Vec::new(),
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            events: Vec::new(),
            steps: 0,
            capture: false,
            captured: Vec::new(),
        }
    }

    /// Add a host (not started). Returns its index.
    pub fn add(&mut self, config: RouterConfig) -> Result<usize, ConfigError> {
        let router = Router::new(config.clone())?;
        self.nodes.push(Node {
            router,
            config,
            alive: true,
            link_up: true,
            vips: BTreeSet::new(),
            announces: 0,
            clock_skew_ms: 0,
        });
        let n = self.nodes.len();
        for row in &mut self.reach {
            row.push(true);
        }
        self.reach.push(vec![true; n]);
        for row in &mut self.loss {
            row.push(0.0);
        }
        self.loss.push(vec![0.0; n]);
        Ok(n - 1)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without hosts.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since creation.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// A host.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// A host's router.
    pub fn router(&self, i: usize) -> &Router {
        &self.nodes[i].router
    }

    /// A host's router state (Initialize when crashed).
    pub fn state(&self, i: usize) -> State {
        if self.nodes[i].alive {
            self.nodes[i].router.state()
        } else {
            State::Initialize
        }
    }

    /// State changes so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Live hosts in Master.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.state(i) == State::Master)
            .collect()
    }

    /// Live hosts holding any virtual address.
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && !self.nodes[i].vips.is_empty())
            .collect()
    }

    /// Host `i`'s wall clock now, since the Unix epoch.
    pub fn wall_clock(&self, i: usize) -> Duration {
        let lan = SIM_EPOCH + (self.now - self.base);
        let skew = self.nodes[i].clock_skew_ms;
        let abs = Duration::from_millis(skew.unsigned_abs());
        if skew >= 0 {
            lan + abs
        } else {
            lan.saturating_sub(abs)
        }
    }

    /// Put host `i`'s wall clock `skew_ms` ahead of the LAN's (negative: behind).
    pub fn set_clock_skew(&mut self, i: usize, skew_ms: i64) {
        self.nodes[i].clock_skew_ms = skew_ms;
    }

    fn sync_clock(&mut self, i: usize) {
        let (now, wall) = (self.now, self.wall_clock(i));
        self.nodes[i].router.set_wall_clock(now, wall);
    }

    /// Change host `i`'s auth_hmac settings live (a key rotation or a migration step), and
    /// in its configuration so a restart keeps them.
    pub fn set_auth_hmac(
        &mut self,
        i: usize,
        auth: Option<AuthHmacConfig>,
    ) -> Result<(), ConfigError> {
        self.nodes[i].router.set_auth_hmac(auth.clone())?;
        self.nodes[i].config.auth_hmac = auth;
        Ok(())
    }

    /// Record every advert transmitted from now on (see [`Lan::captured`]).
    pub fn capture(&mut self, on: bool) {
        self.capture = on;
    }

    /// The adverts recorded while capturing.
    pub fn captured(&self) -> &[Captured] {
        &self.captured
    }

    /// Start one router (leave Initialize).
    pub fn start(&mut self, i: usize) {
        let now = self.now;
        self.sync_clock(i);
        self.nodes[i].router.start(now);
        self.drain(i);
    }

    /// Start every router, in index order, at the same instant.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// The host vanishes: no priority-0 advert, its addresses die with it.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].vips.clear();
    }

    /// Boot a crashed (or any) host afresh with its configuration, and start it.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        // The config was valid when added; Router::new cannot fail on it now.
        if let Ok(r) = Router::new(node.config.clone()) {
            node.router = r;
        }
        node.alive = true;
        node.vips.clear();
        let now = self.now;
        node.router.set_interface_up(now, node.link_up);
        self.start(i);
    }

    /// Graceful stop (RFC 5798 §6.4.3 Shutdown); restart with [`Lan::start`].
    pub fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.sync_clock(i);
        self.nodes[i].router.shutdown(now);
        self.drain(i);
    }

    /// Set a host's link state; the router sees it too. Nothing is sent or heard while down.
    pub fn set_link(&mut self, i: usize, up: bool) {
        let now = self.now;
        self.nodes[i].link_up = up;
        if self.nodes[i].alive {
            self.sync_clock(i);
            self.nodes[i].router.set_interface_up(now, up);
            self.drain(i);
        }
    }

    /// Report a tracked check result to a host's router.
    pub fn set_check(&mut self, i: usize, check: usize, up: bool) {
        let now = self.now;
        if self.nodes[i].alive {
            self.sync_clock(i);
            self.nodes[i].router.set_check(now, check, up);
            self.drain(i);
        }
    }

    /// Split the segment: hosts hear only hosts of their own group. Hosts in no group hear
    /// nobody.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let n = self.nodes.len();
        let mut group_of = vec![usize::MAX; n];
        for (g, members) in groups.iter().enumerate() {
            for &m in *members {
                group_of[m] = g;
            }
        }
        for a in 0..n {
            for b in 0..n {
                self.reach[a][b] = group_of[a] != usize::MAX && group_of[a] == group_of[b];
            }
        }
    }

    /// Whether `to` hears `from`.
    pub fn set_reach(&mut self, from: usize, to: usize, hears: bool) {
        self.reach[from][to] = hears;
    }

    /// Everyone hears everyone again.
    pub fn heal(&mut self) {
        for row in &mut self.reach {
            row.fill(true);
        }
    }

    /// Loss probability of the directed link `from` → `to`.
    pub fn set_loss(&mut self, from: usize, to: usize, p: f64) {
        self.loss[from][to] = p;
    }

    /// Same loss probability on every link.
    pub fn set_loss_all(&mut self, p: f64) {
        for row in &mut self.loss {
            row.fill(p);
        }
    }

    /// Deliver a crafted message to host `to` now, bypassing the wire.
    pub fn inject(&mut self, to: usize, pkt: Incoming<'_>) {
        let now = self.now;
        self.sync_clock(to);
        self.nodes[to].router.handle_packet(now, pkt);
        self.drain(to);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    /// Run until the virtual instant `deadline`.
    pub fn run_until(&mut self, deadline: Instant) {
        self.steps = 0;
        while let Some(t) = self.next_event().filter(|t| *t <= deadline) {
            self.step_at(t);
        }
        self.now = self.now.max(deadline);
    }

    /// Run until `cond` holds (checked after every event), at most `max`. Returns the
    /// virtual time it took, or None if it never held.
    pub fn run_until_cond(
        &mut self,
        max: Duration,
        mut cond: impl FnMut(&Lan) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let deadline = start + max;
        self.steps = 0;
        if cond(self) {
            return Some(Duration::ZERO);
        }
        while let Some(t) = self.next_event().filter(|t| *t <= deadline) {
            self.step_at(t);
            if cond(self) {
                return Some(self.now - start);
            }
        }
        self.now = self.now.max(deadline);
        None
    }

    fn next_event(&self) -> Option<Instant> {
        let packet = self.queue.peek().map(|p| p.at);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.router.poll_timeout())
            .min();
        match (packet, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn step_at(&mut self, t: Instant) {
        self.steps += 1;
        assert!(
            self.steps < MAX_STEPS_PER_RUN,
            "simulation makes no progress at {:?}",
            self.elapsed()
        );
        self.now = self.now.max(t);
        let now = self.now;
        while self.queue.peek().is_some_and(|p| p.at <= now) {
            let Some(p) = self.queue.pop() else { break };
            if self.nodes[p.to].alive && self.nodes[p.to].link_up {
                self.sync_clock(p.to);
                self.nodes[p.to].router.handle_packet(
                    now,
                    Incoming {
                        src: p.src,
                        dst: p.dst,
                        hop_limit: p.hop_limit,
                        payload: &p.payload,
                    },
                );
                self.drain(p.to);
            }
        }
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.alive && node.router.poll_timeout().is_some_and(|d| d <= now) {
                self.sync_clock(i);
                self.nodes[i].router.handle_timeout(now);
                self.drain(i);
            }
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].router.poll_action() {
            match action {
                Action::Send { dst, payload } => self.transmit(i, dst, payload),
                Action::AddVips(v) => self.nodes[i].vips.extend(v),
                Action::RemoveVips(v) => {
                    for a in v {
                        self.nodes[i].vips.remove(&a);
                    }
                }
                Action::Announce(_) => self.nodes[i].announces += 1,
                Action::StateChanged { from, to, priority } => self.events.push(Event {
                    at: self.now - self.base,
                    node: i,
                    from,
                    to,
                    priority,
                }),
            }
        }
    }

    fn transmit(&mut self, from: usize, dst: IpAddr, payload: Vec<u8>) {
        if !self.nodes[from].alive || !self.nodes[from].link_up {
            return;
        }
        let src = self.nodes[from].config.primary_address;
        if self.capture {
            self.captured.push(Captured {
                at: self.now - self.base,
                from,
                src,
                dst,
                payload: payload.clone(),
            });
        }
        for to in 0..self.nodes.len() {
            // Multicast reaches everyone else on the segment; unicast only its addressee.
            let addressed = if dst.is_multicast() {
                to != from
            } else {
                self.nodes[to].config.primary_address == dst
            };
            if !addressed || !self.reach[from][to] {
                continue;
            }
            if self.rng.next_f64() < self.loss[from][to] {
                continue;
            }
            let jitter = self.jitter.mul_f64(self.rng.next_f64());
            self.seq += 1;
            self.queue.push(InFlight {
                at: self.now + self.delay + jitter,
                seq: self.seq,
                to,
                src,
                dst,
                hop_limit: crate::packet::TTL,
                payload: payload.clone(),
            });
        }
    }
}
