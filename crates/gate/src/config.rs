//! The gate's parameters and their validation.

use std::time::Duration;

/// Parameters of one node's gate. The defaults give sub-second fenced failover; see
/// docs/elections.md for what each bound must cover.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    /// This node's identity, written as the key's value (the node name: unique per cluster).
    pub identity: String,
    /// R: how often the holder renews, and how often other nodes read the key.
    pub renew_interval: Duration,
    /// H: how long after sending a renewal that succeeded the holder may hold the VIP, by
    /// its own clock.
    pub hold: Duration,
    /// ρ: bound on the rate ratio of any two nodes' monotonic clocks, minus one (0.01: over
    /// any interval no clock advances more than 1 % more than another).
    pub clock_rate_bound: f64,
    /// δ: bound on the time from the holder's deadline (by its clock) until its kernel
    /// stops answering for the VIP (fence programming latency, timer granularity).
    pub stop_latency: Duration,
    /// A request without an answer after this long counts as failed (the driver should give
    /// up on it then too and try the next etcd member).
    pub request_timeout: Duration,
    /// The etcd-quorum check falls after this long without any successful request.
    pub quorum_fall: Duration,
    /// VRRP preempt: a node that can hold the VIP need not defer to a live holder; the
    /// holder hands over gracefully when VRRP makes it backup.
    pub preempt: bool,
    /// Fencing is armed (this node reached etcd before). Until armed, the VIP follows VRRP.
    pub armed: bool,
}

impl GateConfig {
    /// The defaults for `identity`, armed.
    pub fn new(identity: impl Into<String>) -> GateConfig {
        GateConfig {
            identity: identity.into(),
            renew_interval: Duration::from_millis(100),
            hold: Duration::from_millis(600),
            clock_rate_bound: 0.01,
            stop_latency: Duration::from_millis(50),
            request_timeout: Duration::from_millis(200),
            quorum_fall: Duration::from_secs(3),
            preempt: true,
            armed: true,
        }
    }

    /// How long a challenger waits after learning of a mod revision before it may swap on
    /// it: `hold·(1+ρ) + δ`.
    pub fn takeover_wait(&self) -> Duration {
        self.hold.mul_f64(1.0 + self.clock_rate_bound) + self.stop_latency
    }

    /// Check the bounds the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity.is_empty() {
            return Err(ConfigError::Identity);
        }
        if self.renew_interval.is_zero() {
            return Err(ConfigError::RenewInterval);
        }
        if !(self.clock_rate_bound.is_finite() && (0.0..=1.0).contains(&self.clock_rate_bound)) {
            return Err(ConfigError::ClockRate(self.clock_rate_bound));
        }
        // A renewal must be able to fail once and be retried before the hold lapses.
        if self.hold < self.renew_interval * 2 {
            return Err(ConfigError::Hold {
                hold: self.hold,
                renew: self.renew_interval,
            });
        }
        if self.request_timeout.is_zero() || self.request_timeout >= self.hold {
            return Err(ConfigError::RequestTimeout {
                timeout: self.request_timeout,
                hold: self.hold,
            });
        }
        if self.quorum_fall < self.hold {
            return Err(ConfigError::QuorumFall {
                fall: self.quorum_fall,
                hold: self.hold,
            });
        }
        Ok(())
    }
}

/// A parameter outside the bounds the protocol needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The identity is empty.
    #[error("the gate needs a non-empty identity (the node name)")]
    Identity,
    /// The renewal interval is zero.
    #[error("renewInterval must be above zero")]
    RenewInterval,
    /// ρ is not a fraction in 0..=1.
    #[error("clockRateBound {0} must be between 0 and 1 (0.01 = 1 %)")]
    ClockRate(f64),
    /// The hold is too short to survive one failed renewal.
    #[error("hold {hold:?} must be at least twice renewInterval {renew:?}")]
    Hold {
        /// The hold time.
        hold: Duration,
        /// The renewal interval.
        renew: Duration,
    },
    /// The request timeout is zero or not shorter than the hold.
    #[error("requestTimeout {timeout:?} must be above zero and shorter than hold {hold:?}")]
    RequestTimeout {
        /// The request timeout.
        timeout: Duration,
        /// The hold time.
        hold: Duration,
    },
    /// The quorum check would fall before the hold could lapse.
    #[error("quorumFall {fall:?} must be at least hold {hold:?}")]
    QuorumFall {
        /// The quorum fall time.
        fall: Duration,
        /// The hold time.
        hold: Duration,
    },
}
