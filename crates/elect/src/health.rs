//! Per-member health of the etcd endpoints, and the order in which a request tries them.
//!
//! Sans-IO, in the house style: the client reports every answer and every failure with
//! `handle_*(now, …)`, asks [`Health::order`] where to send the next request, and runs the
//! background probes that [`Health::poll_probe`] hands out by [`Health::poll_timeout`].
//!
//! The rules, and why:
//! - **Sticky preference.** Requests go to one preferred member while it answers, so a
//!   renewal and the read that confirms it meet the same member (see `Client::renew_confirmed`)
//!   and a node keeps using its closest member (the first to answer at connect).
//! - **One failure moves the preference.** A member that did not answer within the attempt
//!   bound, refused the connection, or has no raft leader is marked down at once and the next
//!   request starts elsewhere: a frozen, killed or cut-off member costs one attempt, not the
//!   HTTP/2 keepalive (issue 14, fix 3).
//! - **Down is not excluded.** Down members are still tried, after every member that is up,
//!   the one that failed longest ago first: when every member failed (an etcd raft election),
//!   the first to recover answers.
//! - **Probes bring members back.** A down member is probed with exponential backoff
//!   (`probe_min` doubling to `probe_max`); an answer marks it up again but does not take the
//!   preference back from a member that is working.

use std::time::{Duration, Instant};

/// How down members are probed.
#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    /// Delay before the first probe of a member that just failed.
    pub probe_min: Duration,
    /// Longest delay between probes of a member that keeps failing.
    pub probe_max: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe_min: Duration::from_millis(250),
            probe_max: Duration::from_secs(2),
        }
    }
}

/// What is known about one member.
#[derive(Debug, Clone, Default)]
struct Member {
    up: bool,
    /// Consecutive failures (0 while up).
    failures: u32,
    last_failure: Option<Instant>,
    /// When the next probe is due (down members only).
    next_probe: Option<Instant>,
    /// A probe was handed out and has not been answered yet.
    probing: bool,
    /// Smoothed round-trip time of answered requests.
    rtt: Option<Duration>,
    last_error: Option<String>,
}

/// One member as shown in `/status`: the status contract's type (crate status-api).
pub use status_api::EtcdMember as MemberHealth;

/// Health of every configured member (see the module docs for the rules).
#[derive(Debug, Clone)]
pub struct Health {
    members: Vec<Member>,
    preferred: usize,
    cfg: HealthConfig,
    /// Bumped whenever a member goes from up to down, so long-lived streams (watches) on it
    /// can move.
    down_events: u64,
}

impl Health {
    /// `n` members, all presumed up, the first preferred. `n` must be at least 1.
    pub fn new(n: usize, cfg: HealthConfig) -> Health {
        assert!(n > 0, "at least one etcd member");
        Health {
            members: vec![
                Member {
                    up: true,
                    ..Member::default()
                };
                n
            ],
            preferred: 0,
            cfg,
            down_events: 0,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a tracker has at least one member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The member requests go to first.
    pub fn preferred(&self) -> usize {
        self.preferred
    }

    /// Whether member `i` answered its last request.
    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].up
    }

    /// Counter of up → down transitions.
    pub fn down_events(&self) -> u64 {
        self.down_events
    }

    /// Makes `i` the preferred member (the client does this for the first member that
    /// answers at connect).
    pub fn prefer(&mut self, i: usize) {
        if self.members[i].up {
            self.preferred = i;
        }
    }

    /// The order in which to try the members for the next request: the preferred one if it
    /// is up, then the other members that are up (lowest round-trip time first, unknown
    /// last, ties in ring order after the preferred), then the down ones, the one that
    /// failed longest ago first.
    pub fn order(&self) -> Vec<usize> {
        let n = self.members.len();
        let ring = |i: usize| (i + n - self.preferred) % n;
        let mut up: Vec<usize> = (0..n).filter(|&i| self.members[i].up).collect();
        up.sort_by_key(|&i| {
            let m = &self.members[i];
            (i != self.preferred, m.rtt.is_none(), m.rtt, ring(i))
        });
        let mut down: Vec<usize> = (0..n).filter(|&i| !self.members[i].up).collect();
        down.sort_by_key(|&i| (self.members[i].last_failure, ring(i)));
        up.extend(down);
        up
    }

    /// Member `i` answered (a result or a definitive error such as "lease not found") after
    /// `rtt`.
    pub fn handle_answer(&mut self, _now: Instant, i: usize, rtt: Duration) {
        let m = &mut self.members[i];
        m.up = true;
        m.failures = 0;
        m.next_probe = None;
        m.probing = false;
        m.last_error = None;
        // EWMA with weight 1/4: steady, yet a member that got slow is noticed in a few requests.
        m.rtt = Some(match m.rtt {
            Some(old) => (old * 3 + rtt) / 4,
            None => rtt,
        });
        if !self.members[self.preferred].up {
            self.preferred = i;
        }
    }

    /// Member `i` failed: no answer within the attempt bound, a transport error, or it has no
    /// raft leader. It is marked down and a probe is scheduled.
    pub fn handle_failure(&mut self, now: Instant, i: usize, error: impl Into<String>) {
        let cfg = self.cfg;
        let m = &mut self.members[i];
        if m.up {
            self.down_events += 1;
        }
        m.up = false;
        m.failures = m.failures.saturating_add(1);
        m.last_failure = Some(now);
        m.probing = false;
        m.next_probe = Some(now + backoff(cfg, m.failures));
        m.last_error = Some(error.into());
        if i == self.preferred
            && let Some(&next) = self.order().first()
            && self.members[next].up
        {
            self.preferred = next;
        }
    }

    /// A down member whose probe is due, if any; it is not handed out again until it is
    /// answered or failed.
    pub fn poll_probe(&mut self, now: Instant) -> Option<usize> {
        let i = (0..self.members.len()).find(|&i| {
            let m = &self.members[i];
            !m.up && !m.probing && m.next_probe.is_some_and(|t| t <= now)
        })?;
        self.members[i].probing = true;
        Some(i)
    }

    /// When the next probe is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter(|m| !m.up && !m.probing)
            .filter_map(|m| m.next_probe)
            .min()
    }

    /// Every member, for `/status`; `endpoints` names them (in configured order).
    pub fn members(&self, endpoints: &[String]) -> Vec<MemberHealth> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberHealth {
                endpoint: endpoints.get(i).cloned().unwrap_or_default(),
                index: i,
                up: m.up,
                preferred: i == self.preferred,
                failures: m.failures,
                rtt_us: m.rtt.map(|d| d.as_micros() as u64),
                last_error: m.last_error.clone(),
            })
            .collect()
    }
}

fn backoff(cfg: HealthConfig, failures: u32) -> Duration {
    crate::Backoff::nth(cfg.probe_min, cfg.probe_max, failures.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn health(n: usize) -> (Health, Instant) {
        (Health::new(n, HealthConfig::default()), Instant::now())
    }

    #[test]
    fn a_failed_preferred_member_is_tried_last_and_the_next_one_first() {
        let (mut h, t0) = health(3);
        assert_eq!(h.order(), vec![0, 1, 2]);
        h.handle_failure(t0, 0, "timed out");
        assert_eq!(h.preferred(), 1);
        assert_eq!(h.order(), vec![1, 2, 0]);
        assert!(!h.is_up(0));
    }

    #[test]
    fn an_answer_brings_a_member_back_without_taking_the_preference_from_a_working_one() {
        let (mut h, t0) = health(3);
        h.handle_failure(t0, 0, "refused");
        h.handle_answer(t0 + 10 * MS, 1, 2 * MS);
        h.handle_answer(t0 + 20 * MS, 0, MS);
        assert!(h.is_up(0));
        assert_eq!(h.preferred(), 1, "sticky while member 1 works");
        assert_eq!(h.order()[0], 1);
    }

    #[test]
    fn fallbacks_are_ordered_by_round_trip_time_then_ring_order() {
        let (mut h, t0) = health(4);
        h.handle_answer(t0, 3, 5 * MS);
        h.handle_answer(t0, 2, 20 * MS);
        assert_eq!(h.order(), vec![0, 3, 2, 1], "known rtt first, unknown last");
    }

    #[test]
    fn when_every_member_is_down_all_are_still_tried_the_oldest_failure_first() {
        let (mut h, t0) = health(3);
        h.handle_failure(t0 + 2 * MS, 2, "no leader");
        h.handle_failure(t0, 0, "no leader");
        h.handle_failure(t0 + MS, 1, "no leader");
        assert_eq!(h.order(), vec![0, 1, 2]);
        // The first to answer becomes preferred.
        h.handle_answer(t0 + 3 * MS, 1, MS);
        assert_eq!(h.preferred(), 1);
        assert_eq!(h.order(), vec![1, 0, 2]);
    }

    #[test]
    fn probes_back_off_exponentially_up_to_the_cap_and_are_not_handed_out_twice() {
        let (mut h, t0) = health(2);
        let cfg = HealthConfig::default();
        h.handle_failure(t0, 1, "timed out");
        assert_eq!(h.poll_timeout(), Some(t0 + cfg.probe_min));
        assert_eq!(h.poll_probe(t0), None, "not due yet");
        let due = t0 + cfg.probe_min;
        assert_eq!(h.poll_probe(due), Some(1));
        assert_eq!(h.poll_probe(due), None, "in flight");
        assert_eq!(h.poll_timeout(), None);
        h.handle_failure(due, 1, "timed out");
        assert_eq!(h.poll_timeout(), Some(due + cfg.probe_min * 2));
        let mut now = due;
        for _ in 0..20 {
            h.handle_failure(now, 1, "timed out");
            now += MS;
        }
        assert_eq!(h.poll_timeout(), Some(now - MS + cfg.probe_max));
        h.handle_answer(now, 1, MS);
        assert_eq!(h.poll_timeout(), None, "up members are not probed");
    }

    #[test]
    fn down_events_count_only_transitions_from_up() {
        let (mut h, t0) = health(2);
        h.handle_failure(t0, 1, "a");
        h.handle_failure(t0, 1, "b");
        assert_eq!(h.down_events(), 1);
        h.handle_answer(t0, 1, MS);
        h.handle_failure(t0, 1, "c");
        assert_eq!(h.down_events(), 2);
    }

    #[test]
    fn status_names_the_preferred_member_and_why_others_are_down() {
        let (mut h, t0) = health(2);
        h.handle_answer(t0, 0, Duration::from_micros(1500));
        h.handle_failure(t0, 1, "connection refused");
        let s = h.members(&[]);
        assert!(s[0].preferred && s[0].up);
        assert_eq!(s[0].rtt_us, Some(1500));
        assert_eq!(s[1].last_error.as_deref(), Some("connection refused"));
        assert_eq!(s[1].failures, 1);
    }
}
