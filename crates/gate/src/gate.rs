//! The gate state machine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, GateConfig};

/// Identifies a request so its answer can be matched.
pub type RequestId = u64;

/// An etcd request. Every write is a transaction whose else branch reads the key, so a
/// refused compare still tells the gate who holds the key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read the key.
    Read,
    /// Put our identity if the key does not exist (create revision 0).
    Create,
    /// Put our identity if the key's mod revision is `expect` (a renewal, or a takeover).
    Swap {
        /// The mod revision the key must still have.
        expect: i64,
    },
    /// Delete the key if its mod revision is `expect` (a graceful release).
    Delete {
        /// The mod revision the key must still have.
        expect: i64,
    },
}

/// Who holds the key, at which mod revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The key's value: the holder's identity.
    pub holder: String,
    /// The key's mod revision.
    pub mod_revision: i64,
}

/// The key as etcd showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The store's revision when this was read (the response header's revision).
    pub revision: i64,
    /// The key, or None when it does not exist.
    pub value: Option<Held>,
}

/// A successful answer to an [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Create or Swap wrote the key (its new mod revision is `revision`), or a Delete
    /// removed it at `revision`.
    Done {
        /// The revision of the write (the response header's revision).
        revision: i64,
    },
    /// The compare failed; the key as the transaction's else branch read it.
    Refused(KeyState),
    /// The answer to a Read.
    Read(KeyState),
}

/// The request failed or timed out; it may still have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFailed;

/// Something the I/O side must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an etcd request.
    Send {
        /// Report the answer with this id.
        id: RequestId,
        /// What to do.
        op: Op,
    },
    /// Add the VIP, or keep it, and let the kernel fence pass its traffic until `until`
    /// (this node's monotonic clock). None: not fenced (fencing not armed yet).
    Hold {
        /// The hold deadline.
        until: Option<Instant>,
    },
    /// Stop answering for the VIP now (close the fence, remove the address). Done before
    /// any request that follows it is sent.
    Release,
    /// Whether, and how far, to lower the router's priority so that this node does not
    /// take VRRP mastership it cannot use ([`Defer`]).
    Defer(Defer),
    /// The etcd-quorum check's state changed.
    Quorum(bool),
    /// Fencing just armed (first contact with etcd): persist it.
    Arm,
}

/// How far VRRP must lower this node's priority ([`Action::Defer`]). Deferring nodes sit
/// below every holder's base priority; among them a node whose own key went unconfirmed
/// ranks above the nodes that defer to a holder, so a holder that stalled (frozen, starved
/// of CPU) past its hold but was not replaced stays master instead of yielding to a backup
/// that defers to it and handing it the VIP (chaos seed 3, issue 11: with preempt false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defer {
    /// Not deferring: this node may be master.
    No,
    /// Another node holds the key (or this node does not know the key yet) and this node
    /// cannot take it over gracefully yet.
    ToHolder,
    /// The key is (or was) this node's but gives it no hold: this node was not running for a
    /// while and etcd has not confirmed the key since, or its renewals lapsed. It may have
    /// been taken over, so stay below any holder, but above the nodes deferring to it.
    OwnKeyUnconfirmed,
}

/// Why this node does or does not hold the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Fencing is not armed yet: the VIP follows VRRP.
    Unfenced,
    /// VRRP does not make this node master.
    NotMaster,
    /// This node holds the key and the VIP.
    Holding,
    /// The key is free (or ours); a write is on its way.
    Acquiring,
    /// Another node holds the key; this node may take it over at `takeover_at`.
    WaitingForHolder,
    /// This node's hold lapsed and etcd has not confirmed a renewal since.
    NoRenewal,
    /// This node was not running for a while (frozen, stalled) and waits for etcd to tell
    /// it what happened meanwhile.
    Stalled,
    /// This node is handing the key back.
    Releasing,
}

impl Reason {
    /// A stable name for /status.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unfenced => "unfenced",
            Reason::NotMaster => "not_master",
            Reason::Holding => "holding",
            Reason::Acquiring => "acquiring",
            Reason::WaitingForHolder => "waiting_for_holder",
            Reason::NoRenewal => "no_renewal",
            Reason::Stalled => "stalled",
            Reason::Releasing => "releasing",
        }
    }
}

/// The gate as /status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStatus {
    /// Fencing armed.
    pub armed: bool,
    /// VRRP wants the VIP here.
    pub want: bool,
    /// This node holds the VIP now.
    pub holding: bool,
    /// This node's hold deadline, while it holds the key.
    pub hold_until: Option<Instant>,
    /// The key's holder as last learned (None: absent or never read).
    pub key_holder: Option<String>,
    /// The key's mod revision as last learned.
    pub key_mod_revision: Option<i64>,
    /// When this node learned that the current holder holds the key.
    pub holder_since: Option<Instant>,
    /// When this node may swap another holder's key if it stays silent.
    pub takeover_at: Option<Instant>,
    /// The etcd-quorum check.
    pub quorum: bool,
    /// VRRP priority lowered because another node holds the key.
    pub deferring: bool,
    /// Why the VIP is or is not here.
    pub reason: Reason,
    /// Renewals that succeeded.
    pub renewals: u64,
    /// Requests that failed or timed out.
    pub failures: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: RequestId,
    op: Op,
    sent: Instant,
}

#[derive(Debug, Clone)]
struct Known {
    value: Option<Held>,
    /// Store revision this knowledge is from; older answers are ignored.
    revision: i64,
    /// When this node first learned of the current mod revision (or absence): `w`.
    learned: Instant,
    /// When this node learned that the current holder holds it.
    holder_since: Instant,
}

/// Renewals answered after their timeout still count, if this recent.
const LATE_ANSWERS: usize = 8;

/// One node's gate.
#[derive(Debug)]
pub struct Gate {
    cfg: GateConfig,
    wait: Duration,
    armed: bool,
    want: bool,
    next_id: RequestId,
    outstanding: Option<Pending>,
    /// Timed-out writes whose late answer may still extend the hold.
    late: VecDeque<Pending>,
    known: Option<Known>,
    /// The mod revision of our own key, while the key is ours.
    mine: Option<i64>,
    /// Our hold deadline (t_sent + H of the last successful write).
    until: Option<Instant>,
    releasing: bool,
    release_tries: u32,
    /// Earliest time for the next read or renewal.
    next_poll: Instant,
    /// Earliest time for any request (after a failure).
    retry_at: Instant,
    /// Send time of the newest request that succeeded.
    last_ok_sent: Option<Instant>,
    /// Receive time of the newest successful answer.
    last_ok: Option<Instant>,
    /// Since when requests have been failing (None: the last one succeeded).
    quorum: bool,
    ok_streak: u32,
    started: Instant,
    /// Cleared when the gate was not run on time; set again by an answer to a request sent
    /// after that.
    confirmed: bool,
    stalled_at: Option<Instant>,
    /// What the I/O side was last told about the VIP: None off, Some(until) on.
    vip: Option<Option<Instant>>,
    defer: Defer,
    wake: Option<Instant>,
    actions: VecDeque<Action>,
    renewals: u64,
    failures: u64,
}

impl Gate {
    /// A gate that does not want the VIP yet. Starts reading the key at once.
    pub fn new(cfg: GateConfig, now: Instant) -> Result<Gate, ConfigError> {
        cfg.validate()?;
        let mut gate = Gate {
            wait: cfg.takeover_wait(),
            armed: cfg.armed,
            cfg,
            want: false,
            next_id: 1,
            outstanding: None,
            late: VecDeque::new(),
            known: None,
            mine: None,
            until: None,
            releasing: false,
            release_tries: 0,
            next_poll: now,
            retry_at: now,
            last_ok_sent: None,
            last_ok: None,
            quorum: true,
            ok_streak: 0,
            started: now,
            confirmed: false,
            stalled_at: None,
            vip: None,
            defer: Defer::No,
            wake: None,
            actions: VecDeque::new(),
            renewals: 0,
            failures: 0,
        };
        gate.step(now);
        Ok(gate)
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// VRRP master (true) or not (false, including shutdown).
    pub fn handle_want(&mut self, now: Instant, want: bool) {
        self.check_stall(now);
        if want != self.want {
            self.want = want;
            if want {
                self.releasing = false;
                // Learn the key's state now, not at the idle read schedule.
                self.next_poll = now;
            } else if self.mine.is_some() && self.armed {
                self.releasing = true;
                self.release_tries = 0;
            }
        }
        self.step(now);
    }

    /// The answer to request `id`. Unknown ids (answers after a restart of the gate) are
    /// ignored.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Outcome, RequestFailed>,
    ) {
        self.check_stall(now);
        let pending = if self.outstanding.is_some_and(|p| p.id == id) {
            self.outstanding.take()
        } else if let Some(i) = self.late.iter().position(|p| p.id == id) {
            self.late.remove(i)
        } else {
            None
        };
        let Some(p) = pending else {
            self.step(now);
            return;
        };
        match result {
            Err(RequestFailed) => self.failed(p),
            Ok(outcome) => {
                self.succeeded(now, p);
                match outcome {
                    Outcome::Read(state) | Outcome::Refused(state) => self.learn(now, state),
                    Outcome::Done { revision } => match p.op {
                        Op::Create | Op::Swap { .. } => {
                            self.learn(
                                now,
                                KeyState {
                                    revision,
                                    value: Some(Held {
                                        holder: self.cfg.identity.clone(),
                                        mod_revision: revision,
                                    }),
                                },
                            );
                            // The write committed after it was sent, so no challenger that
                            // saw an older revision can swap before `sent + H` has passed
                            // on our clock (docs/elections.md). Only the newest write counts.
                            if self.mine == Some(revision) {
                                let until = p.sent + self.cfg.hold;
                                self.until = Some(self.until.map_or(until, |u| u.max(until)));
                                self.renewals += 1;
                                // A take (create, or swap of another's key) that VRRP let go
                                // of while it was in flight: hand the key back at once, as a
                                // graceful holder does, instead of making the new master wait
                                // out the takeover wait on a key nobody renews.
                                if !self.want && self.armed && !self.releasing {
                                    self.releasing = true;
                                    self.release_tries = 0;
                                }
                            }
                        }
                        Op::Delete { .. } => {
                            self.learn(
                                now,
                                KeyState {
                                    revision,
                                    value: None,
                                },
                            );
                            self.releasing = false;
                        }
                        Op::Read => {}
                    },
                }
            }
        }
        self.step(now);
    }

    /// The key as a watch on it showed it: a put's (holder, mod revision), or a delete
    /// (value None), with `revision` the event's mod revision. Learned like a read's answer
    /// (older news is ignored), but it confirms nothing about etcd's quorum: only answers to
    /// requests do that.
    ///
    /// A watch event is emitted after its write committed, so counting a challenger's wait
    /// from its arrival keeps `w` after the commit (docs/elections.md, the proof), and it
    /// arrives without waiting for the next read: after an etcd election that followed the
    /// holder's death, the holder's last renewal (committed just before it) was first *read*
    /// after the election, and the challenger waited H(1+ρ)+δ from then (lab drill
    /// holder-crash with the raft leader on the holder: 760 ms after etcd had a leader again).
    pub fn handle_watch(&mut self, now: Instant, state: KeyState) {
        self.check_stall(now);
        self.learn(now, state);
        self.step(now);
    }

    /// Wake-up at [`Gate::poll_timeout`] (or any time).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.check_stall(now);
        self.step(now);
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Gate::handle_timeout`] at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }

    /// True once nothing of ours is left in etcd to hand back (after `handle_want(false)`).
    pub fn is_released(&self) -> bool {
        !self.releasing && self.vip.is_none()
    }

    /// Fencing armed.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// The gate as /status shows it.
    pub fn status(&self, now: Instant) -> GateStatus {
        let other = self.other_holder();
        GateStatus {
            armed: self.armed,
            want: self.want,
            holding: self.vip.is_some(),
            hold_until: self.until.filter(|_| self.mine.is_some()),
            key_holder: self
                .known
                .as_ref()
                .and_then(|k| k.value.as_ref().map(|h| h.holder.clone())),
            key_mod_revision: self
                .known
                .as_ref()
                .and_then(|k| k.value.as_ref().map(|h| h.mod_revision)),
            holder_since: self
                .known
                .as_ref()
                .filter(|k| k.value.is_some())
                .map(|k| k.holder_since),
            takeover_at: other.map(|k| k.learned + self.wait),
            quorum: self.quorum,
            deferring: self.defer != Defer::No,
            reason: self.reason(now),
            renewals: self.renewals,
            failures: self.failures,
        }
    }

    fn reason(&self, now: Instant) -> Reason {
        if !self.armed {
            return if self.want {
                Reason::Unfenced
            } else {
                Reason::NotMaster
            };
        }
        if self.releasing {
            return Reason::Releasing;
        }
        if !self.want {
            return Reason::NotMaster;
        }
        if self.vip.is_some() {
            return Reason::Holding;
        }
        if !self.confirmed && self.stalled_at.is_some() {
            return Reason::Stalled;
        }
        if self.mine.is_some() {
            return if self.until.is_some_and(|u| now >= u) {
                Reason::NoRenewal
            } else {
                Reason::Acquiring
            };
        }
        match &self.known {
            Some(k) if k.value.is_some() => Reason::WaitingForHolder,
            Some(_) => Reason::Acquiring,
            None => Reason::NoRenewal,
        }
    }

    /// The key as last learned, when another node holds it.
    fn other_holder(&self) -> Option<&Known> {
        self.known.as_ref().filter(|k| {
            k.value
                .as_ref()
                .is_some_and(|h| h.holder != self.cfg.identity)
        })
    }

    /// A call long after the wake-up we asked for means this process did not run (frozen,
    /// stalled): whatever it believed may be stale, so it defers until etcd answers a
    /// request sent after now.
    fn check_stall(&mut self, now: Instant) {
        if let Some(wake) = self.wake
            && now > wake + self.cfg.renew_interval
        {
            self.confirmed = false;
            self.stalled_at = Some(now);
        }
    }

    fn failed(&mut self, p: Pending) {
        self.failures += 1;
        self.ok_streak = 0;
        // Do not hammer a failing etcd: the next request of any kind waits R.
        self.retry_at = self.retry_at.max(p.sent + self.cfg.renew_interval);
        if matches!(p.op, Op::Delete { .. }) {
            self.release_tries += 1;
        }
    }

    fn succeeded(&mut self, now: Instant, p: Pending) {
        self.last_ok = Some(now);
        self.last_ok_sent = Some(self.last_ok_sent.map_or(p.sent, |s| s.max(p.sent)));
        if self.stalled_at.is_none_or(|at| p.sent >= at) {
            self.confirmed = true;
            self.stalled_at = None;
        }
        self.ok_streak += 1;
        if !self.armed {
            self.armed = true;
            self.actions.push_back(Action::Arm);
        }
    }

    /// Take in what etcd showed about the key, unless we know something newer.
    fn learn(&mut self, now: Instant, state: KeyState) {
        if let Some(k) = &self.known
            && state.revision < k.revision
        {
            return;
        }
        let (learned, holder_since) = match &self.known {
            Some(k)
                if k.value.as_ref().map(|h| h.mod_revision)
                    == state.value.as_ref().map(|h| h.mod_revision) =>
            {
                (k.learned, k.holder_since)
            }
            Some(k)
                if k.value.as_ref().map(|h| &h.holder)
                    == state.value.as_ref().map(|h| &h.holder) =>
            {
                (now, k.holder_since)
            }
            _ => (now, now),
        };
        match &state.value {
            Some(h) if h.holder == self.cfg.identity => {
                // Our key (maybe written by a write whose answer we never saw, or by an
                // earlier run on this node): ours to renew, but it extends nothing.
                self.mine = Some(h.mod_revision);
            }
            _ => {
                self.mine = None;
                self.until = None;
                self.releasing = false;
            }
        }
        self.known = Some(Known {
            value: state.value,
            revision: state.revision,
            learned,
            holder_since,
        });
    }

    /// The request to send now, if any: a write as soon as it is useful, a read or a
    /// renewal on its schedule.
    fn next_op(&self, now: Instant) -> Option<Op> {
        if self.outstanding.is_some() || now < self.retry_at {
            return None;
        }
        let (op, scheduled) = self.wanted_op(now);
        (!scheduled || now >= self.next_poll).then_some(op)
    }

    /// The request this node wants to make, and whether it waits for `next_poll`.
    fn wanted_op(&self, now: Instant) -> (Op, bool) {
        if !self.armed {
            return (Op::Read, true);
        }
        if self.releasing
            && let Some(expect) = self.mine
        {
            return (Op::Delete { expect }, false);
        }
        if self.want {
            if let Some(expect) = self.mine {
                // A renewal while the VIP is on; at once when it lapsed.
                return (Op::Swap { expect }, self.vip.is_some());
            }
            match &self.known {
                Some(Known { value: None, .. }) => return (Op::Create, false),
                Some(Known {
                    value: Some(h),
                    learned,
                    ..
                }) if now >= *learned + self.wait => {
                    return (
                        Op::Swap {
                            expect: h.mod_revision,
                        },
                        false,
                    );
                }
                _ => {}
            }
        }
        (Op::Read, true)
    }

    /// When the read after this one is due.
    fn poll_interval(&self) -> Duration {
        if self.want && self.mine.is_none() {
            // Waiting for a holder to let go: notice its delete quickly.
            self.cfg.renew_interval / 4
        } else {
            self.cfg.renew_interval
        }
    }

    fn can_hold(&self, now: Instant) -> bool {
        self.confirmed
            && self
                .last_ok_sent
                .is_some_and(|s| now < s + self.cfg.renew_interval * 3)
    }

    fn defer(&self, now: Instant) -> Defer {
        if !self.armed || self.vip.is_some() {
            return Defer::No;
        }
        if !self.confirmed {
            return if self.mine.is_some() {
                Defer::OwnKeyUnconfirmed
            } else {
                Defer::ToHolder
            };
        }
        if self.mine.is_some() {
            // Our key, but no hold on it (renewals lapsed: cut off, etcd electing; or not
            // renewed yet since a restart). Stay above the nodes deferring to us, so an etcd
            // outage does not move the VRRP master, but below any holder: a node cut off by
            // a partition used to stay master at its base priority, and at the heal the live
            // holder yielded to it (RFC 5798 §6.4.3) before it could hold; the VIP was on
            // nobody for up to 350 ms (lab drill partition-heal, preempt true).
            return Defer::OwnKeyUnconfirmed;
        }
        match &self.known {
            None => Defer::ToHolder,
            Some(Known { value: None, .. }) => Defer::No,
            Some(k) => {
                let can_hold = self.can_hold(now);
                let ended = can_hold && now >= k.learned + self.wait;
                if ended || (self.cfg.preempt && can_hold) {
                    Defer::No
                } else {
                    Defer::ToHolder
                }
            }
        }
    }

    fn step(&mut self, now: Instant) {
        // Requests without an answer in time count as failed; a write's late answer still counts.
        if let Some(p) = self.outstanding
            && now >= p.sent + self.cfg.request_timeout
        {
            self.outstanding = None;
            self.failed(p);
            if !matches!(p.op, Op::Read) {
                self.late.push_back(p);
                if self.late.len() > LATE_ANSWERS {
                    self.late.pop_front();
                }
            }
        }
        self.late
            .retain(|p| now < p.sent + self.cfg.hold + self.cfg.request_timeout);
        if self.releasing && self.release_tries >= 5 {
            // Others will wait our hold out; stop bothering etcd.
            self.releasing = false;
        }

        // The quorum check: down after quorum_fall without a successful answer, up again
        // after two answers in a row.
        let since = self.last_ok.unwrap_or(self.started);
        if self.armed && self.quorum && now >= since + self.cfg.quorum_fall {
            self.quorum = false;
            // The streak that brings it back counts answers from now on. Kept, the streak
            // from before a freeze raised the check again at the next step, and the step
            // after that dropped it again (last_ok still old): a thawed node flapped
            // FAULT/BACKUP once per loop turn until an answer came (lab drill holder-freeze).
            self.ok_streak = 0;
            self.actions.push_back(Action::Quorum(false));
        } else if !self.quorum && self.ok_streak >= 2 {
            self.quorum = true;
            self.actions.push_back(Action::Quorum(true));
        }

        // The VIP: on while we hold, off otherwise (and at once when the deadline passes).
        let desired = if !self.armed {
            self.want.then_some(None)
        } else if self.want && !self.releasing && self.mine.is_some() {
            self.until.filter(|u| now < *u).map(Some)
        } else {
            None
        };
        if desired != self.vip {
            match desired {
                Some(until) => self.actions.push_back(Action::Hold { until }),
                None => self.actions.push_back(Action::Release),
            }
            self.vip = desired;
        }

        let defer = self.defer(now);
        if defer != self.defer {
            self.defer = defer;
            self.actions.push_back(Action::Defer(defer));
        }

        if let Some(op) = self.next_op(now) {
            let id = self.next_id;
            self.next_id += 1;
            self.outstanding = Some(Pending { id, op, sent: now });
            self.next_poll = now + self.poll_interval();
            self.actions.push_back(Action::Send { id, op });
        }

        // Wake for whichever comes first.
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        match self.outstanding {
            Some(p) => at(p.sent + self.cfg.request_timeout),
            None => {
                let (_, scheduled) = self.wanted_op(now);
                let t = if scheduled {
                    self.next_poll.max(self.retry_at)
                } else {
                    self.retry_at
                };
                // Nothing was sent, so `t` is in the future (or the gate is stuck: wake in R).
                at(if t > now {
                    t
                } else {
                    now + self.cfg.renew_interval
                });
            }
        }
        if let Some(Some(u)) = self.vip {
            at(u);
        }
        if self.armed && self.quorum {
            at(since + self.cfg.quorum_fall);
        }
        if let Some(k) = self.other_holder()
            && now < k.learned + self.wait
        {
            at(k.learned + self.wait);
        }
        if let Some(s) = self.last_ok_sent
            && now < s + self.cfg.renew_interval * 3
        {
            at(s + self.cfg.renew_interval * 3);
        }
        self.wake = wake;
    }
}
