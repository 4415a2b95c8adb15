//! Exponential backoff: the one used for retries across haplane (restarting an election's
//! command, reconnecting to etcd, probing a member that failed).

use std::time::Duration;

/// Delays that double from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    cur: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`; never above `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { cur: min, min, max }
    }

    /// The next delay to wait (then the one after is twice as long, up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    /// Back to `min` (after a success).
    pub fn reset(&mut self) {
        self.cur = self.min;
    }

    /// The delay after `n` earlier ones (n = 0: `min`), without the state.
    pub fn nth(min: Duration, max: Duration, n: u32) -> Duration {
        min.saturating_mul(1u32 << n.min(16)).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset_to_the_start() {
        let mut b = Backoff::new(250 * MS, 1000 * MS);
        let got: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(got, [250 * MS, 500 * MS, 1000 * MS, 1000 * MS]);
        b.reset();
        assert_eq!(b.next_delay(), 250 * MS);
        assert_eq!(Backoff::nth(250 * MS, 1000 * MS, 0), 250 * MS);
        assert_eq!(Backoff::nth(250 * MS, 1000 * MS, 1), 500 * MS);
        assert_eq!(Backoff::nth(250 * MS, 1000 * MS, 40), 1000 * MS);
    }
}
