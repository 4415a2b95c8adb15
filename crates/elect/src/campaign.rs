//! One candidate's campaign as a sans-IO state machine (the house style of `crates/vrrp`):
//! the driver in `election.rs` performs the etcd requests that [`Campaign::poll_request`]
//! asks for, feeds the answers back with [`Campaign::handle_reply`] and watch changes with
//! [`Campaign::handle_watch`], and sleeps until [`Campaign::poll_timeout`]. No clock, no
//! sockets, no tokio: every input carries `now`.
//!
//! The campaign:
//! 1. grants a lease and writes `PREFIX/<lease id>` = identity with it, put-if-absent;
//! 2. renews the lease every renewal period with a *confirmed* renewal (a keep-alive plus a
//!    linearizable read of the lowest key under the prefix, which an isolated raft leader
//!    cannot answer; see `Client::renew_confirmed`), so every renewal also re-reads who
//!    leads;
//! 3. leads while its key has the lowest create revision and `now < deadline`, where
//!    `deadline = sent + TTL − margin` for the last confirmed renewal (sent = when its
//!    keep-alive was sent).
//!
//! What this fixes (issue 14): a failed leader read is retried at once and every renewal reads
//! again, so a candidate never sticks at "leader unknown" (fix 1); the session outlives its
//! deadline — after a step-down the same lease and key are renewed again, and the candidate
//! leads again at its first confirmed renewal if its key still leads, instead of racing its
//! own abandoned key (fix 2); a lease or key that is really gone starts a fresh campaign; a
//! resignation revokes, and a revoke that cannot land is handed to a background revoker.

use std::time::{Duration, Instant};

use crate::Role;

/// Timing of a campaign (from `ElectionConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    /// Requested lease TTL, whole seconds.
    pub ttl_secs: i64,
    /// Subtracted from the TTL to get the hold time after a confirmed renewal.
    pub margin: Duration,
    /// Period between confirmed renewals.
    pub renew: Duration,
    /// First backoff after a failed grant or put; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest backoff between grant/put attempts.
    pub retry_max: Duration,
    /// Pause before repeating a failed renewal or read (the client already tried every
    /// member within the request's timeout).
    pub retry_renew: Duration,
}

/// The lowest key under the prefix: that candidate leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leader {
    /// Its full key.
    pub key: String,
    /// Its value: the candidate's identity.
    pub identity: String,
}

/// An etcd request the campaign wants performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Grant a lease with this TTL.
    Grant { ttl_secs: i64 },
    /// Write our key under the lease, put-if-absent.
    Put { lease: i64, key: String },
    /// A confirmed renewal of the lease, with a read of the lowest key under the prefix.
    Renew { lease: i64 },
    /// A read of the lowest key under the prefix (after a watch event).
    Read,
    /// Revoke the lease (resignation); answer with `Revoked` or `Failed`.
    Revoke { lease: i64 },
    /// Revoke the lease in the background; no answer expected.
    Abandon { lease: i64 },
}

impl Request {
    /// How long the driver lets the client keep trying this request.
    pub fn timeout(&self, t: &Timings, valid_for: Duration) -> Duration {
        match self {
            Request::Grant { .. } => Duration::from_secs(t.ttl_secs.max(1) as u64),
            // A put or a renewal is useful until the hold time is over.
            Request::Put { .. } | Request::Renew { .. } => valid_for,
            Request::Read => t.renew,
            // Resignation waits this long for the revoke, then hands it to the background.
            Request::Revoke { .. } => Duration::from_secs(t.ttl_secs.max(1) as u64) / 2,
            Request::Abandon { .. } => Duration::ZERO,
        }
    }
}

/// The answer to the request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The lease was granted; `sent` is when the grant was sent.
    Granted {
        sent: Instant,
        lease: i64,
        ttl_secs: i64,
    },
    /// Our key is in place (written now, or found written by an earlier attempt).
    Put { revision: i64 },
    /// A confirmed renewal; `sent` is when its keep-alive was sent.
    Renewed {
        sent: Instant,
        leader: Option<Leader>,
        revision: i64,
    },
    /// A leader read.
    Read {
        leader: Option<Leader>,
        revision: i64,
    },
    /// The server no longer knows our lease (expired or revoked).
    LeaseGone,
    /// The revoke landed (or the lease was already gone).
    Revoked,
    /// The request failed on every member within its timeout.
    Failed,
}

/// What the watch on the prefix saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchChange {
    /// Some other key changed: re-read who leads.
    Other,
    /// Our own key was deleted: find out whether our lease still exists.
    OwnKeyDeleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grant,
    Put,
    Renew,
    Read,
    Revoke,
}

#[derive(Debug, Clone)]
struct Held {
    id: i64,
    key: String,
    /// TTL − margin: how long a confirmed renewal lets us act.
    valid_for: Duration,
    /// Last moment at which we may act as leader.
    deadline: Instant,
    keyed: bool,
}

/// One campaign (see the module docs).
#[derive(Debug)]
pub(crate) struct Campaign {
    prefix: String,
    t: Timings,
    lease: Option<Held>,
    /// The leader as of the last read; `None` until a read succeeded.
    leader: Option<Leader>,
    /// Our key was the lowest at the last read.
    ours_lowest: bool,
    in_flight: Option<Kind>,
    /// Gate for the next grant/put/renew/read after a failure.
    not_before: Instant,
    renew_at: Instant,
    read_wanted: bool,
    failures: u32,
    resigning: bool,
    done: bool,
    abandon: Vec<i64>,
    /// Revision after our put, for the driver's watch; bumped on each new key.
    watch_from: Option<i64>,
}

impl Campaign {
    pub fn new(prefix: impl Into<String>, t: Timings, now: Instant) -> Campaign {
        Campaign {
            prefix: prefix.into(),
            t,
            lease: None,
            leader: None,
            ours_lowest: false,
            in_flight: None,
            not_before: now,
            renew_at: now,
            read_wanted: false,
            failures: 0,
            resigning: false,
            done: false,
            abandon: Vec::new(),
            watch_from: None,
        }
    }

    /// Our key, once we hold a lease.
    pub fn key(&self) -> Option<&str> {
        self.lease.as_ref().map(|h| h.key.as_str())
    }

    /// Our lease, if any.
    #[cfg(test)]
    pub fn lease(&self) -> Option<i64> {
        self.lease.as_ref().map(|h| h.id)
    }

    /// TTL − margin of the current lease (or of the requested TTL before the grant).
    pub fn valid_for(&self) -> Duration {
        self.lease.as_ref().map(|h| h.valid_for).unwrap_or_else(|| {
            Duration::from_secs(self.t.ttl_secs.max(1) as u64).saturating_sub(self.t.margin)
        })
    }

    /// The revision the driver's watch on the prefix should start at (changes with each
    /// new key).
    pub fn watch_from(&self) -> Option<i64> {
        self.watch_from
    }

    /// The resignation finished (revoked, or handed to the background revoker).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The role right now.
    pub fn role(&self, now: Instant) -> Role {
        match &self.lease {
            Some(h) if self.ours_lowest && !self.resigning => {
                if now < h.deadline {
                    Role::Leader {
                        deadline: h.deadline,
                    }
                } else {
                    // Our key still leads in etcd but we cannot prove our lease: nobody acts.
                    Role::Follower { leader: None }
                }
            }
            _ if self.resigning => Role::Follower { leader: None },
            _ => Role::Follower {
                leader: self.leader.as_ref().map(|l| l.identity.clone()),
            },
        }
    }

    /// The next request to perform, if one is due. At most one (other than `Abandon`) is in
    /// flight; the driver must answer it before the next is handed out.
    pub fn poll_request(&mut self, now: Instant) -> Option<Request> {
        if let Some(lease) = self.abandon.pop() {
            return Some(Request::Abandon { lease });
        }
        if self.done || self.in_flight.is_some() {
            return None;
        }
        if self.resigning {
            return match &self.lease {
                Some(h) => {
                    self.in_flight = Some(Kind::Revoke);
                    Some(Request::Revoke { lease: h.id })
                }
                None => {
                    self.done = true;
                    None
                }
            };
        }
        if now < self.not_before {
            return None;
        }
        let (kind, req) = match &self.lease {
            None => (
                Kind::Grant,
                Request::Grant {
                    ttl_secs: self.t.ttl_secs,
                },
            ),
            Some(h) if !h.keyed => (
                Kind::Put,
                Request::Put {
                    lease: h.id,
                    key: h.key.clone(),
                },
            ),
            Some(h) if now >= self.renew_at => (Kind::Renew, Request::Renew { lease: h.id }),
            Some(_) if self.read_wanted => {
                self.read_wanted = false;
                (Kind::Read, Request::Read)
            }
            Some(_) => return None,
        };
        self.in_flight = Some(kind);
        Some(req)
    }

    /// The answer to the request in flight.
    pub fn handle_reply(&mut self, now: Instant, reply: Reply) {
        let Some(kind) = self.in_flight.take() else {
            return; // stale (e.g. dropped at resignation)
        };
        match (kind, reply) {
            (
                Kind::Grant,
                Reply::Granted {
                    sent,
                    lease,
                    ttl_secs,
                },
            ) => {
                // The server may raise the TTL to its minimum; a larger TTL only delays expiry.
                let valid_for =
                    Duration::from_secs(ttl_secs.max(0) as u64).saturating_sub(self.t.margin);
                self.lease = Some(Held {
                    id: lease,
                    key: format!("{}{lease:016x}", self.prefix),
                    valid_for,
                    deadline: sent + valid_for,
                    keyed: false,
                });
                self.failures = 0;
                self.not_before = now;
            }
            (Kind::Put, Reply::Put { revision }) => {
                if let Some(h) = &mut self.lease {
                    h.keyed = true;
                }
                self.watch_from = Some(revision + 1);
                self.failures = 0;
                self.renew_at = now;
                self.not_before = now;
            }
            (
                Kind::Renew,
                Reply::Renewed {
                    sent,
                    leader,
                    revision: _,
                },
            ) => {
                if let Some(h) = &mut self.lease {
                    h.deadline = h.deadline.max(sent + h.valid_for);
                }
                self.renew_at = sent + self.t.renew;
                self.not_before = now;
                self.evaluate(now, leader);
            }
            (
                Kind::Read,
                Reply::Read {
                    leader,
                    revision: _,
                },
            ) => {
                self.not_before = now;
                self.evaluate(now, leader);
            }
            (Kind::Put | Kind::Renew | Kind::Read, Reply::LeaseGone) => self.lease_gone(now),
            (Kind::Revoke, Reply::Revoked) => {
                self.lease = None;
                self.done = true;
            }
            (Kind::Revoke, _) => {
                if let Some(h) = self.lease.take() {
                    self.abandon.push(h.id);
                }
                self.done = true;
            }
            (Kind::Grant | Kind::Put, _) => {
                self.failures = self.failures.saturating_add(1);
                let doublings = (self.failures - 1).min(16);
                self.not_before =
                    now + (self.t.retry_min * (1u32 << doublings)).min(self.t.retry_max);
            }
            (Kind::Renew, _) => {
                self.not_before = now + self.t.retry_renew;
            }
            (Kind::Read, _) => {
                self.read_wanted = true;
                self.not_before = now + self.t.retry_renew;
            }
        }
    }

    /// The watch on the prefix saw a change.
    pub fn handle_watch(&mut self, now: Instant, change: WatchChange) {
        match change {
            WatchChange::Other => self.read_wanted = true,
            // A renewal tells both whether the lease lives and who leads.
            WatchChange::OwnKeyDeleted => self.renew_at = now,
        }
    }

    /// Stop campaigning: the driver drops the request in flight, and the next request is the
    /// revoke.
    pub fn handle_resign(&mut self, _now: Instant) {
        self.resigning = true;
        self.in_flight = None;
        self.ours_lowest = false;
    }

    /// When the driver must call in again even if nothing happens: the next request, or our
    /// deadline (the role changes then).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(h) = &self.lease
            && self.ours_lowest
            && h.deadline > now
        {
            at(h.deadline);
        }
        if self.in_flight.is_none() && !self.done {
            match &self.lease {
                Some(h) if h.keyed && !self.resigning => {
                    let next = if self.read_wanted {
                        self.not_before
                    } else {
                        self.renew_at.max(self.not_before)
                    };
                    at(next);
                }
                _ => at(self.not_before),
            }
        }
        t
    }

    fn evaluate(&mut self, now: Instant, leader: Option<Leader>) {
        let Some(h) = &self.lease else { return };
        match leader {
            Some(l) if l.key == h.key => {
                self.ours_lowest = true;
                self.leader = Some(l);
            }
            Some(l) => {
                self.ours_lowest = false;
                self.leader = Some(l);
            }
            // No key at all, so not ours either, while our lease lives: someone deleted our
            // key. Revoke the lease in the background and campaign afresh.
            None => {
                let id = h.id;
                self.abandon.push(id);
                self.lease_gone(now);
            }
        }
    }

    fn lease_gone(&mut self, now: Instant) {
        self.lease = None;
        self.ours_lowest = false;
        self.leader = None;
        self.failures = 0;
        self.not_before = now;
        self.read_wanted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const PREFIX: &str = "/haplane/elections/t/";

    fn timings() -> Timings {
        Timings {
            ttl_secs: 2,
            margin: 500 * MS,
            renew: 250 * MS,
            retry_min: 100 * MS,
            retry_max: 2000 * MS,
            retry_renew: 50 * MS,
        }
    }

    fn key(lease: i64) -> String {
        format!("{PREFIX}{lease:016x}")
    }

    fn leader(lease: i64, who: &str) -> Option<Leader> {
        Some(Leader {
            key: key(lease),
            identity: who.into(),
        })
    }

    /// Runs grant and put for lease 7 at `t0`; returns the campaign with the first renewal due.
    fn keyed(t0: Instant) -> Campaign {
        let mut c = Campaign::new(PREFIX, timings(), t0);
        assert_eq!(c.poll_request(t0), Some(Request::Grant { ttl_secs: 2 }));
        c.handle_reply(
            t0 + MS,
            Reply::Granted {
                sent: t0,
                lease: 7,
                ttl_secs: 2,
            },
        );
        assert_eq!(
            c.poll_request(t0 + MS),
            Some(Request::Put {
                lease: 7,
                key: key(7),
            })
        );
        c.handle_reply(t0 + 2 * MS, Reply::Put { revision: 10 });
        assert_eq!(c.watch_from(), Some(11));
        c
    }

    #[test]
    fn a_candidate_whose_key_is_lowest_leads_until_renewal_send_time_plus_ttl_minus_margin() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        assert_eq!(
            c.role(t0),
            Role::Follower { leader: None },
            "not before a read"
        );
        let t = t0 + 2 * MS;
        assert_eq!(c.poll_request(t), Some(Request::Renew { lease: 7 }));
        c.handle_reply(
            t + 5 * MS,
            Reply::Renewed {
                sent: t,
                leader: leader(7, "me"),
                revision: 10,
            },
        );
        // Counted from the keep-alive's send time, never from its answer.
        assert_eq!(
            c.role(t + 5 * MS),
            Role::Leader {
                deadline: t + 1500 * MS
            }
        );
        assert_eq!(
            c.role(t + 1500 * MS),
            Role::Follower { leader: None },
            "not at the deadline itself"
        );
    }

    #[test]
    fn renewals_are_paced_by_send_time_and_each_one_moves_the_deadline() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let mut t = t0 + 2 * MS;
        for _ in 0..5 {
            assert_eq!(c.poll_request(t), Some(Request::Renew { lease: 7 }));
            assert_eq!(c.poll_request(t), None, "one request in flight");
            c.handle_reply(
                t + 3 * MS,
                Reply::Renewed {
                    sent: t,
                    leader: leader(7, "me"),
                    revision: 10,
                },
            );
            assert_eq!(c.poll_timeout(t + 3 * MS), Some(t + 250 * MS));
            assert_eq!(c.poll_request(t + 249 * MS), None);
            assert_eq!(
                c.role(t + 3 * MS),
                Role::Leader {
                    deadline: t + 1500 * MS
                }
            );
            t += 250 * MS;
        }
    }

    /// Issue 14 fix 1: the old campaign read the leader once after opening its watch and never
    /// again if that read failed, so it stayed "leader unknown" until a watch event.
    #[test]
    fn a_failed_leader_read_is_retried_promptly_and_the_candidate_then_leads() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        assert_eq!(c.poll_request(t), Some(Request::Renew { lease: 7 }));
        c.handle_reply(t + 600 * MS, Reply::Failed);
        assert_eq!(c.role(t + 600 * MS), Role::Follower { leader: None });
        let retry = t + 650 * MS;
        assert_eq!(c.poll_timeout(t + 600 * MS), Some(retry));
        assert_eq!(c.poll_request(t + 649 * MS), None);
        assert_eq!(c.poll_request(retry), Some(Request::Renew { lease: 7 }));
        c.handle_reply(
            retry + MS,
            Reply::Renewed {
                sent: retry,
                leader: leader(7, "me"),
                revision: 12,
            },
        );
        assert!(c.role(retry + MS).is_leader_at(retry + MS));

        // A read after a watch event that fails is retried too.
        c.handle_watch(retry + 2 * MS, WatchChange::Other);
        assert_eq!(c.poll_request(retry + 2 * MS), Some(Request::Read));
        c.handle_reply(retry + 3 * MS, Reply::Failed);
        assert_eq!(c.poll_request(retry + 53 * MS), Some(Request::Read));
    }

    #[test]
    fn a_follower_names_the_leader_and_takes_over_when_a_watch_event_shows_its_key_lowest() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(
            t + MS,
            Reply::Renewed {
                sent: t,
                leader: leader(3, "other"),
                revision: 10,
            },
        );
        assert_eq!(
            c.role(t + MS),
            Role::Follower {
                leader: Some("other".into())
            }
        );
        c.handle_watch(t + 10 * MS, WatchChange::Other);
        assert_eq!(c.poll_request(t + 10 * MS), Some(Request::Read));
        c.handle_reply(
            t + 11 * MS,
            Reply::Read {
                leader: leader(7, "me"),
                revision: 13,
            },
        );
        assert_eq!(
            c.role(t + 11 * MS),
            Role::Leader {
                deadline: t + 1500 * MS
            }
        );
    }

    /// Issue 14 fix 2: after a deadline step-down the old campaign abandoned its lease and
    /// campaigned with a new one, and its own old key (still alive on the server) blocked it.
    #[test]
    fn after_a_deadline_step_down_the_same_lease_is_renewed_and_leads_again_without_a_new_grant() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(
            t + MS,
            Reply::Renewed {
                sent: t,
                leader: leader(7, "me"),
                revision: 10,
            },
        );
        // etcd goes away: every renewal fails for 2 s.
        let mut now = t + 250 * MS;
        while now < t + 2000 * MS {
            if let Some(r) = c.poll_request(now) {
                assert_eq!(r, Request::Renew { lease: 7 }, "never a new grant");
                c.handle_reply(now, Reply::Failed);
            }
            now += 50 * MS;
        }
        assert_eq!(c.role(now), Role::Follower { leader: None });
        // etcd is back: the first confirmed renewal restores leadership with the old key.
        let r = c.poll_request(now).expect("renewal due");
        assert_eq!(r, Request::Renew { lease: 7 });
        c.handle_reply(
            now + MS,
            Reply::Renewed {
                sent: now,
                leader: leader(7, "me"),
                revision: 20,
            },
        );
        assert_eq!(
            c.role(now + MS),
            Role::Leader {
                deadline: now + 1500 * MS
            }
        );
    }

    #[test]
    fn a_lease_the_server_no_longer_knows_starts_a_fresh_campaign_at_once() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(t + MS, Reply::LeaseGone);
        assert_eq!(c.lease(), None);
        assert_eq!(c.poll_request(t + MS), Some(Request::Grant { ttl_secs: 2 }));
    }

    #[test]
    fn our_key_missing_while_the_lease_lives_abandons_the_lease_and_campaigns_afresh() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(
            t + MS,
            Reply::Renewed {
                sent: t,
                leader: None,
                revision: 10,
            },
        );
        assert_eq!(c.poll_request(t + MS), Some(Request::Abandon { lease: 7 }));
        assert_eq!(c.poll_request(t + MS), Some(Request::Grant { ttl_secs: 2 }));
    }

    #[test]
    fn failed_grants_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut c = Campaign::new(PREFIX, timings(), t0);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..7 {
            assert_eq!(c.poll_request(now), Some(Request::Grant { ttl_secs: 2 }));
            c.handle_reply(now, Reply::Failed);
            let next = c.poll_timeout(now).unwrap();
            gaps.push((next - now).as_millis());
            now = next;
        }
        assert_eq!(gaps, vec![100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn resigning_drops_the_request_in_flight_then_revokes_and_a_failed_revoke_goes_to_the_background()
     {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(
            t + MS,
            Reply::Renewed {
                sent: t,
                leader: leader(7, "me"),
                revision: 10,
            },
        );
        assert_eq!(
            c.poll_request(t + 250 * MS),
            Some(Request::Renew { lease: 7 })
        );
        c.handle_resign(t + 260 * MS);
        assert_eq!(c.role(t + 260 * MS), Role::Follower { leader: None });
        assert_eq!(
            c.poll_request(t + 260 * MS),
            Some(Request::Revoke { lease: 7 })
        );
        // etcd has no leader: the revoke fails within its timeout.
        c.handle_reply(t + 1261 * MS, Reply::Failed);
        assert!(c.is_done());
        assert_eq!(
            c.poll_request(t + 1261 * MS),
            Some(Request::Abandon { lease: 7 })
        );
        assert_eq!(c.poll_request(t + 1261 * MS), None);

        let mut c = keyed(t0);
        c.handle_resign(t);
        assert_eq!(c.poll_request(t), Some(Request::Revoke { lease: 7 }));
        c.handle_reply(t + MS, Reply::Revoked);
        assert!(c.is_done());
        assert_eq!(c.poll_request(t + MS), None);
    }

    #[test]
    fn own_key_deleted_by_the_watch_asks_for_a_renewal_now() {
        let t0 = Instant::now();
        let mut c = keyed(t0);
        let t = t0 + 2 * MS;
        c.poll_request(t);
        c.handle_reply(
            t + MS,
            Reply::Renewed {
                sent: t,
                leader: leader(7, "me"),
                revision: 10,
            },
        );
        c.handle_watch(t + 10 * MS, WatchChange::OwnKeyDeleted);
        assert_eq!(
            c.poll_request(t + 10 * MS),
            Some(Request::Renew { lease: 7 })
        );
    }

    impl Role {
        fn is_leader_at(&self, now: Instant) -> bool {
            matches!(self, Role::Leader { deadline } if now < *deadline)
        }
    }
}
