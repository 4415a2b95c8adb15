//! A backend that dies closes its idle sessions all at once.
//!
//! When an apiserver is killed (OOM, SIGKILL, a crash) its kernel sends a FIN on every
//! connection while it releases the process's sockets, and the listen socket can go last:
//! measured with 9 750 connections (crates/lb/README.md, "Explained"), the dying nginx's listener
//! completed handshakes for 0.5 s after its first FIN, and every new session sent there in that
//! time was reset when it went. Neither an active check (seconds) nor a refused connect (there
//! is none yet) sees the death in that window; the burst of closes does.
//!
//! The rule, pure and clocked by the caller: a session the backend closes first after at least
//! [`IDLE_BEFORE`] without a byte either way is an *idle close*; [`BURST_CLOSES`] idle closes
//! within [`BURST_WINDOW`] make the backend *suspect*. A suspect backend takes no new sessions
//! while another backend is in service, and a check is run at once; the first check that starts
//! after the burst and passes ends it. A live backend that closes many idle keep-alive
//! connections at once (its idle timeout, after they were all opened together) only loses new
//! sessions for one check's round trip.

use std::time::{Duration, Instant};

/// How long a session must have been silent for its close by the backend to count. An answer
/// followed by a close (HTTP/1.1 `Connection: close`) is not silent.
pub(crate) const IDLE_BEFORE: Duration = Duration::from_secs(1);

/// The window in which [`BURST_CLOSES`] idle closes make a burst.
pub(crate) const BURST_WINDOW: Duration = Duration::from_millis(100);

/// Idle closes within [`BURST_WINDOW`] that make a backend suspect.
pub(crate) const BURST_CLOSES: u32 = 16;

/// Counts one backend's idle closes over a sliding window of fixed start.
#[derive(Debug, Default)]
pub(crate) struct CloseBurst {
    window_start: Option<Instant>,
    closes: u32,
}

impl CloseBurst {
    /// The backend closed a session at `now` that had been silent for `silent`. Returns true
    /// when this close completes a burst (once per burst: the count starts again).
    pub fn handle_backend_close(&mut self, now: Instant, silent: Duration) -> bool {
        if silent < IDLE_BEFORE {
            return false;
        }
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < BURST_WINDOW => {
                self.closes += 1;
            }
            _ => {
                self.window_start = Some(now);
                self.closes = 1;
            }
        }
        if self.closes >= BURST_CLOSES {
            self.window_start = None;
            self.closes = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDLE: Duration = IDLE_BEFORE;

    #[test]
    fn a_killed_backend_closing_its_idle_sessions_at_once_is_suspect() {
        let mut b = CloseBurst::default();
        let t = Instant::now();
        let tripped: Vec<bool> = (0..BURST_CLOSES)
            .map(|i| b.handle_backend_close(t + Duration::from_millis(i as u64), IDLE))
            .collect();
        assert!(tripped[..BURST_CLOSES as usize - 1].iter().all(|x| !x));
        assert!(
            tripped[BURST_CLOSES as usize - 1],
            "the 16th idle close trips"
        );
    }

    #[test]
    fn closes_right_after_an_answer_never_count() {
        // wrk's new connection per request: nginx answers and closes, thousands a second.
        let mut b = CloseBurst::default();
        let t = Instant::now();
        for i in 0..10_000u64 {
            assert!(!b.handle_backend_close(t + Duration::from_micros(i), Duration::ZERO));
        }
    }

    #[test]
    fn idle_closes_spread_over_time_do_not_trip() {
        // Keep-alive timeouts of connections opened at different times.
        let mut b = CloseBurst::default();
        let t = Instant::now();
        for i in 0..1_000u64 {
            assert!(!b.handle_backend_close(t + Duration::from_millis(i * 10), IDLE));
        }
    }

    #[test]
    fn after_a_burst_the_count_starts_again() {
        let mut b = CloseBurst::default();
        let t = Instant::now();
        let trips = (0..BURST_CLOSES * 3)
            .filter(|_| b.handle_backend_close(t, IDLE))
            .count();
        assert_eq!(trips, 3);
    }

    proptest! {
        /// Fewer than BURST_CLOSES idle closes in any window never trip, whatever their times.
        #[test]
        fn a_burst_needs_sixteen_idle_closes_within_the_window(
            gaps in proptest::collection::vec(0u64..300, 1..200),
            silences in proptest::collection::vec(0u64..3_000, 200),
        ) {
            let mut b = CloseBurst::default();
            let t0 = Instant::now();
            let mut at = t0;
            let mut idle_times: Vec<Instant> = Vec::new();
            for (gap, silent) in gaps.iter().zip(&silences) {
                at += Duration::from_millis(*gap);
                let silent = Duration::from_millis(*silent);
                let tripped = b.handle_backend_close(at, silent);
                if silent >= IDLE_BEFORE {
                    idle_times.push(at);
                }
                if tripped {
                    let recent = idle_times
                        .iter()
                        .filter(|x| at.duration_since(**x) < BURST_WINDOW)
                        .count();
                    prop_assert!(recent >= BURST_CLOSES as usize, "tripped with {recent} recent idle closes");
                    idle_times.clear();
                }
            }
        }
    }
}
