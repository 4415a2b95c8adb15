//! Rate-limited logging of discarded adverts (RFC 9568 §7.1: a receiver that discards an
//! advert SHOULD log the event, subject to rate limiting).
//!
//! Sans-IO: the caller asks [`LogLimiter::admit`] whether to log an event now, and gets the
//! number of events of the same kind that were held back since the last line. A flood of
//! forged adverts therefore costs one log line per kind and interval, while the counters
//! (which are not limited) keep the exact numbers.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_logged: Instant,
    held_back: u64,
}

/// At most one log line per key per interval.
#[derive(Debug, Clone)]
pub struct LogLimiter<K> {
    interval: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Copy> LogLimiter<K> {
    /// A limiter letting one line per key through every `interval`.
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            entries: HashMap::new(),
        }
    }

    /// An event of kind `key` happened at `now`. `Some(n)`: log it, mentioning the `n`
    /// events of this kind held back since the previous line. `None`: stay quiet.
    pub fn admit(&mut self, now: Instant, key: K) -> Option<u64> {
        match self.entries.get_mut(&key) {
            Some(e) if now.saturating_duration_since(e.last_logged) < self.interval => {
                e.held_back += 1;
                None
            }
            Some(e) => {
                let held = std::mem::take(&mut e.held_back);
                e.last_logged = now;
                Some(held)
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        last_logged: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// The earliest instant at which [`LogLimiter::poll_held_back`] has something to report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.held_back > 0)
            .map(|e| e.last_logged + self.interval)
            .min()
    }

    /// Keys whose interval has passed with events held back, and how many: for a summary
    /// line when the flood stopped before another event could carry the count.
    pub fn poll_held_back(&mut self, now: Instant) -> Vec<(K, u64)> {
        let interval = self.interval;
        self.entries
            .iter_mut()
            .filter(|(_, e)| e.held_back > 0 && now >= e.last_logged + interval)
            .map(|(k, e)| {
                e.last_logged = now;
                (*k, std::mem::take(&mut e.held_back))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_costs_one_line_per_kind_and_interval() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.admit(t0, "bad_mac"), Some(0));
        for i in 1..=9_999u64 {
            assert_eq!(
                l.admit(t0 + Duration::from_micros(100 * i), "bad_mac"),
                None
            );
        }
        // Another kind has its own budget.
        assert_eq!(l.admit(t0, "replay"), Some(0));
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            l.admit(t0 + Duration::from_secs(10), "bad_mac"),
            Some(9_999)
        );
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn held_back_events_are_reported_when_the_flood_stops() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        l.admit(t0, 1u8);
        l.admit(t0 + Duration::from_secs(1), 1u8);
        l.admit(t0 + Duration::from_secs(2), 1u8);
        assert!(l.poll_held_back(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            l.poll_held_back(t0 + Duration::from_secs(10)),
            vec![(1u8, 2)]
        );
        assert!(l.poll_held_back(t0 + Duration::from_secs(30)).is_empty());
    }
}
