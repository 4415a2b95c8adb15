//! Backend selection: weighted round-robin, least-connections, random-two-choices, with slow
//! start for backends coming back to service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::backend::Backend;
use crate::config::Policy;
use crate::status::Health;

/// Which backends a pick may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Backends in service (up, admin ready, weight > 0); one that ramps after coming back is
    /// admitted with the probability of its ramp, so its share rises over the slow start.
    Healthy,
    /// The same backends, without the slow-start admission: used when the ramp turned every
    /// healthy candidate away (the only healthy backend still ramps).
    HealthyUnramped,
    /// When no healthy backend is left, try the others anyway rather than refuse (the lesson
    /// of k3s PR #10241); first those that still answer their checks (draining, drained by the
    /// admin, weight 0)...
    LastResort,
    /// ...and only then the dead ones, which did not answer at all. A frozen host's kernel
    /// still completes the handshake, so a connect to it "succeeds" and the client hangs: while
    /// the answering backends only fail readiness (every etcd member's /health is 503 during
    /// the raft election that follows its leader's freeze), a new session must not land there.
    LastResortDead,
}

#[derive(Debug)]
pub(crate) struct Selector {
    pub policy: Policy,
    /// Smooth weighted round-robin order (nginx's algorithm), one slot per unit of weight.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    /// The last-resort tiers' own rotation: one connect asks every tier before them, and with
    /// a shared cursor each connect would advance it by as many steps, so with as many
    /// backends as tiers every last-resort pick landed on the same backend.
    last_resort_cursor: AtomicUsize,
    slow_start: Duration,
}

impl Selector {
    pub fn new(policy: Policy, weights: &[u32], slow_start: Duration) -> Self {
        Selector {
            policy,
            schedule: smooth_wrr(weights),
            cursor: AtomicUsize::new(fastrand::usize(..1024)),
            last_resort_cursor: AtomicUsize::new(fastrand::usize(..1024)),
            slow_start,
        }
    }

    /// Picks a backend index. `usable` tells whether a backend is allowed (not tried yet, not at
    /// its connection limit).
    pub fn pick(
        &self,
        backends: &[Arc<Backend>],
        tier: Tier,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        let eligible = |i: usize| {
            let b = &backends[i];
            if !usable(i) {
                return false;
            }
            match tier {
                Tier::LastResort => !b.in_service() && b.health() != Health::Dead,
                Tier::LastResortDead => !b.in_service() && b.health() == Health::Dead,
                Tier::HealthyUnramped => b.in_service(),
                Tier::Healthy => b.in_service() && admitted(b.ramp(self.slow_start)),
            }
        };
        if matches!(tier, Tier::LastResort | Tier::LastResortDead) {
            // Order matters little here; rotate so concurrent clients spread out.
            let start = self.last_resort_cursor.fetch_add(1, Relaxed);
            return (0..n).map(|k| (start + k) % n).find(|&i| eligible(i));
        }
        match self.policy {
            Policy::RoundRobin => {
                let len = self.schedule.len();
                if len == 0 {
                    return None;
                }
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..len)
                    .map(|k| self.schedule[(start + k) % len])
                    .find(|&i| eligible(i))
            }
            Policy::LeastConnections => {
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| eligible(i))
                    .reduce(|a, b| {
                        if lighter(&backends[b], &backends[a]) {
                            b
                        } else {
                            a
                        }
                    })
            }
            Policy::RandomTwoChoices => {
                let idx: Vec<usize> = (0..n).filter(|&i| eligible(i)).collect();
                match idx.len() {
                    0 => None,
                    1 => Some(idx[0]),
                    m => {
                        let a = fastrand::usize(..m);
                        let b = (a + 1 + fastrand::usize(..m - 1)) % m;
                        let (a, b) = (idx[a], idx[b]);
                        Some(if lighter(&backends[b], &backends[a]) {
                            b
                        } else {
                            a
                        })
                    }
                }
            }
        }
    }
}

/// Slow-start admission: a ramping backend (share `ramp` < 1) is taken with that probability.
fn admitted(ramp: f64) -> bool {
    ramp >= 1.0 || fastrand::f64() < ramp
}

/// True when `a` carries strictly less load per unit of weight than `b`.
fn lighter(a: &Backend, b: &Backend) -> bool {
    let (wa, wb) = (
        a.weight.load(Relaxed) as u128,
        b.weight.load(Relaxed) as u128,
    );
    let (ca, cb) = (
        a.active.load(Relaxed) as u128,
        b.active.load(Relaxed) as u128,
    );
    // ca/wa < cb/wb without division.
    ca * wb < cb * wa
}

/// Smooth weighted round-robin: spreads each backend's slots evenly instead of in runs.
fn smooth_wrr(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr: SocketAddr = format!("192.0.2.{}:6443", i + 1).parse().unwrap();
                Arc::new(Backend::new(addr, w))
            })
            .collect()
    }

    fn mark_dead(b: &Arc<Backend>) {
        let policy = crate::backend::PassivePolicy {
            passive_fall: 1,
            connect_timeout: Duration::from_secs(1),
            down: crate::backend::DownPolicy {
                shutdown_sessions: false,
                drain_timeout: Duration::from_secs(1),
            },
        };
        let refused = crate::passive::ConnectFailure::Refused;
        b.connect_failed(refused, std::time::Instant::now(), policy, "test");
    }

    #[test]
    fn weighted_round_robin_gives_each_backend_its_weight_share() {
        let b = backends(&[3, 1, 0]);
        let s = Selector::new(Policy::RoundRobin, &[3, 1, 0], Duration::ZERO);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[s.pick(&b, Tier::Healthy, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100, 0]);
    }

    #[test]
    fn smooth_round_robin_interleaves_instead_of_running_in_blocks() {
        assert_eq!(smooth_wrr(&[2, 1]), vec![0, 1, 0]);
        assert_eq!(smooth_wrr(&[1, 1, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn down_backends_are_skipped_while_a_healthy_one_exists() {
        let b = backends(&[1, 1]);
        mark_dead(&b[0]);
        let s = Selector::new(Policy::RoundRobin, &[1, 1], Duration::ZERO);
        for _ in 0..10 {
            assert_eq!(s.pick(&b, Tier::Healthy, |_| true), Some(1));
        }
    }

    #[test]
    fn last_resort_tier_offers_down_backends_when_all_are_down() {
        // k3s PR #10241: when every backend is down, try them all rather than refuse.
        let b = backends(&[1, 1]);
        for x in &b {
            mark_dead(x);
        }
        let s = Selector::new(Policy::LeastConnections, &[1, 1], Duration::ZERO);
        assert_eq!(s.pick(&b, Tier::Healthy, |_| true), None);
        assert_eq!(s.pick(&b, Tier::LastResort, |_| true), None, "none answers");
        let first = s.pick(&b, Tier::LastResortDead, |_| true).unwrap();
        let second = s.pick(&b, Tier::LastResortDead, |i| i != first).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            s.pick(&b, Tier::LastResortDead, |i| i != first && i != second),
            None
        );
    }

    #[test]
    fn last_resort_offers_backends_that_answer_their_checks_before_dead_ones() {
        // Seen in the lab's holder-freeze with etcd's leader on the frozen node: during the
        // raft election every live member answers 503 (draining), the frozen one answers
        // nothing (dead) but its kernel still accepts connects, so a session sent there hangs.
        let b = backends(&[1, 1, 1]);
        let policy = crate::backend::DownPolicy {
            shutdown_sessions: true,
            drain_timeout: Duration::from_secs(60),
        };
        mark_dead(&b[0]);
        let not_ready = || Err(crate::backend::CheckFailure::NotReady("status 503".into()));
        b[1].record_check(not_ready(), 1, 1, policy);
        b[2].record_check(not_ready(), 1, 1, policy);
        let s = Selector::new(Policy::RoundRobin, &[1, 1, 1], Duration::ZERO);
        let mut landed = [0; 3];
        for _ in 0..30 {
            // As the session's connect asks: the healthy tiers first, which find nothing.
            assert_eq!(s.pick(&b, Tier::Healthy, |_| true), None);
            assert_eq!(s.pick(&b, Tier::HealthyUnramped, |_| true), None);
            landed[s.pick(&b, Tier::LastResort, |_| true).unwrap()] += 1;
        }
        assert_eq!(landed[0], 0, "a draining backend comes before the dead one");
        assert!(landed[1] >= 5 && landed[2] >= 5, "both share: {landed:?}");
        assert_eq!(s.pick(&b, Tier::LastResort, |i| i == 0), None);
        assert_eq!(s.pick(&b, Tier::LastResortDead, |_| true), Some(0));
        assert_eq!(s.pick(&b, Tier::LastResortDead, |i| i != 0), None);
    }

    #[test]
    fn least_connections_prefers_the_backend_with_fewer_sessions_per_weight() {
        let b = backends(&[1, 2]);
        b[0].active.store(2, Relaxed);
        b[1].active.store(3, Relaxed); // 1.5 per weight unit < 2
        let s = Selector::new(Policy::LeastConnections, &[1, 2], Duration::ZERO);
        assert_eq!(s.pick(&b, Tier::Healthy, |_| true), Some(1));
        b[1].active.store(5, Relaxed);
        assert_eq!(s.pick(&b, Tier::Healthy, |_| true), Some(0));
    }

    #[test]
    fn random_two_choices_never_picks_the_loaded_one_of_two() {
        let b = backends(&[1, 1]);
        b[0].active.store(10, Relaxed);
        let s = Selector::new(Policy::RandomTwoChoices, &[1, 1], Duration::ZERO);
        for _ in 0..50 {
            assert_eq!(s.pick(&b, Tier::Healthy, |_| true), Some(1));
        }
    }

    #[test]
    fn admin_drained_and_draining_backends_take_no_new_sessions_while_another_serves() {
        let b = backends(&[1, 1, 1]);
        b[0].set_admin(crate::status::Admin::Drain);
        let policy = crate::backend::DownPolicy {
            shutdown_sessions: true,
            drain_timeout: Duration::from_secs(60),
        };
        let not_ready = || Err(crate::backend::CheckFailure::NotReady("status 503".into()));
        b[1].record_check(not_ready(), 1, 1, policy);
        let s = Selector::new(Policy::RoundRobin, &[1, 1, 1], Duration::ZERO);
        for _ in 0..20 {
            assert_eq!(s.pick(&b, Tier::Healthy, |_| true), Some(2));
        }
        // Both are still offered as a last resort (k3s PR #10241).
        let lr = s.pick(&b, Tier::LastResort, |_| true).unwrap();
        assert!(lr == 0 || lr == 1);
    }

    #[test]
    fn a_returning_backend_starts_with_a_small_share_that_grows() {
        let b = backends(&[1, 1]);
        let policy = crate::backend::DownPolicy {
            shutdown_sessions: true,
            drain_timeout: Duration::from_secs(60),
        };
        mark_dead(&b[0]);
        b[0].record_check(Ok(Duration::ZERO), 1, 1, policy);
        let s = Selector::new(Policy::RoundRobin, &[1, 1], Duration::from_secs(3600));
        let mut to_returning = 0;
        for _ in 0..1000 {
            if s.pick(&b, Tier::Healthy, |_| true) == Some(0) {
                to_returning += 1;
            }
        }
        assert!(
            to_returning < 20,
            "{to_returning} of 1000 just after its return"
        );
        // When the ramping backend is the only healthy one, it still serves.
        mark_dead(&b[1]);
        assert_eq!(s.pick(&b, Tier::HealthyUnramped, |_| true), Some(0));
    }

    #[test]
    fn unusable_backends_are_not_picked() {
        let b = backends(&[1, 1, 1]);
        let s = Selector::new(Policy::RoundRobin, &[1, 1, 1], Duration::ZERO);
        for _ in 0..10 {
            assert_eq!(s.pick(&b, Tier::Healthy, |i| i == 2), Some(2));
        }
    }
}
