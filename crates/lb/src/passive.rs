//! Passive detection's verdict on one failed connect: does it count toward `passive_fall`?
//!
//! A backend that nothing listens on refuses (ECONNREFUSED): that is death and always counts.
//! A reset or a timeout is ambiguous: a dead host times out, but so does a live apiserver whose
//! listen queue a reconnect storm overflowed (the kernel drops or resets the SYNs it has no room
//! for). The two differ in whether other connects to the backend get through meanwhile, so a
//! reset or timed-out connect counts only when no other connect to that backend succeeded from
//! one `connect_timeout` before the attempt started until it failed; otherwise the backend is
//! **overloaded**: the session tries the next backend, the backend stays up and its streak of
//! failures is left where it was. Marking it dead would reset every session it just took and
//! turn a burst into a second storm.
//!
//! Pure: the caller passes the instants; nothing here reads a clock or touches a socket.

use std::io;
use std::time::{Duration, Instant};

/// How a connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    /// ECONNREFUSED: nothing listens on the port.
    Refused,
    /// Reset, or any other error from the peer or the path (unreachable, ...).
    Reset,
    /// No answer within `connect_timeout`.
    TimedOut,
}

impl ConnectFailure {
    /// The kind of a connect's I/O error (a timeout is [`ConnectFailure::TimedOut`], decided
    /// by the caller's timer, not by an error).
    pub fn of(e: &io::Error) -> ConnectFailure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
            _ => ConnectFailure::Reset,
        }
    }
}

/// What a failed connect means for its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counts toward `passive_fall`.
    Counts,
    /// Another connect got through meanwhile: the backend is busy, not dead.
    Overloaded,
}

/// The verdict on a connect that started at `started` and failed with `failure`.
///
/// `last_success` is the latest successful connect to the same backend as known when the
/// connect failed (read then, so nothing after the failure is in it): it lies in the window
/// [`started` - `connect_timeout`, failure] exactly when some success does, so one timestamp
/// per backend is enough.
pub(crate) fn judge(
    failure: ConnectFailure,
    started: Instant,
    last_success: Option<Instant>,
    connect_timeout: Duration,
) -> Verdict {
    if failure == ConnectFailure::Refused {
        return Verdict::Counts;
    }
    let Some(success) = last_success else {
        return Verdict::Counts;
    };
    // A window reaching back before the clock's origin holds every success.
    let recent = match started.checked_sub(connect_timeout) {
        Some(from) => success >= from,
        None => true,
    };
    if recent {
        Verdict::Overloaded
    } else {
        Verdict::Counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use ConnectFailure::{Refused, Reset, TimedOut};

    const TIMEOUT: Duration = Duration::from_secs(1);

    /// `judge` with every instant given in milliseconds after one base instant.
    fn verdict(failure: ConnectFailure, started: u64, last_success: Option<u64>) -> Verdict {
        verdict_with(failure, started, last_success, TIMEOUT)
    }

    fn verdict_with(
        failure: ConnectFailure,
        started: u64,
        last_success: Option<u64>,
        timeout: Duration,
    ) -> Verdict {
        let base = Instant::now();
        let at = |ms| base + Duration::from_millis(ms);
        judge(failure, at(started), last_success.map(at), timeout)
    }

    #[test]
    fn a_refused_connect_always_counts() {
        assert_eq!(verdict(Refused, 10_000, Some(10_000)), Verdict::Counts);
        assert_eq!(verdict(Refused, 10_000, Some(9_999)), Verdict::Counts);
        assert_eq!(verdict(Refused, 10_000, None), Verdict::Counts);
    }

    #[test]
    fn a_reset_connect_with_a_recent_success_is_overloaded() {
        // Inside [started - timeout, failure]: its lower edge, before the start, during it.
        for s in [9_000, 9_500, 10_001] {
            assert_eq!(verdict(Reset, 10_000, Some(s)), Verdict::Overloaded, "{s}");
        }
    }

    #[test]
    fn a_reset_connect_whose_last_success_is_older_than_the_window_counts() {
        assert_eq!(verdict(Reset, 10_000, Some(8_999)), Verdict::Counts);
        assert_eq!(
            verdict(Reset, 10_000, None),
            Verdict::Counts,
            "never answered"
        );
    }

    #[test]
    fn a_timed_out_connect_is_judged_like_a_reset() {
        // It failed one connect_timeout after its start, at 11 000.
        assert_eq!(verdict(TimedOut, 10_000, Some(10_700)), Verdict::Overloaded);
        assert_eq!(verdict(TimedOut, 10_000, Some(9_000)), Verdict::Overloaded);
        assert_eq!(verdict(TimedOut, 10_000, Some(8_999)), Verdict::Counts);
        assert_eq!(verdict(TimedOut, 10_000, None), Verdict::Counts);
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        use io::ErrorKind::*;
        let of = |k| ConnectFailure::of(&io::Error::from(k));
        assert_eq!(of(ConnectionRefused), Refused);
        assert_eq!(of(ConnectionReset), Reset);
        assert_eq!(of(HostUnreachable), Reset);
        assert_eq!(of(TimedOut), ConnectFailure::TimedOut);
    }

    fn any_failure() -> impl Strategy<Value = ConnectFailure> {
        prop_oneof![Just(Refused), Just(Reset), Just(TimedOut)]
    }

    proptest! {
        /// Keeping only the latest success gives the verdict the whole history would:
        /// overloaded exactly when the connect was not refused and some success recorded by
        /// the time it failed lies at or after one timeout before its start.
        #[test]
        fn the_latest_success_decides_as_the_whole_history_would(
            failure in any_failure(),
            successes in proptest::collection::vec(0u64..20_000, 0..8),
            started in 0u64..15_000,
            took in 0u64..=3_000,
            timeout_ms in 1u64..=3_000,
        ) {
            let failed = started + took.min(timeout_ms);
            let known: Vec<u64> = successes.into_iter().filter(|&s| s <= failed).collect();
            let in_window = known.iter().any(|&s| s + timeout_ms >= started);
            let expect = if failure != Refused && in_window {
                Verdict::Overloaded
            } else {
                Verdict::Counts
            };
            let last = known.iter().max().copied();
            let timeout = Duration::from_millis(timeout_ms);
            prop_assert_eq!(verdict_with(failure, started, last, timeout), expect);
        }

        /// A later success never turns an overloaded verdict into a counted one: more evidence
        /// that the backend answers cannot make it look deader.
        #[test]
        fn a_later_success_never_makes_a_failure_count(
            failure in any_failure(),
            success in 0u64..20_000,
            later in 0u64..5_000,
            started in 0u64..20_000,
            timeout_ms in 1u64..=3_000,
        ) {
            let timeout = Duration::from_millis(timeout_ms);
            if verdict_with(failure, started, Some(success), timeout) == Verdict::Overloaded {
                prop_assert_eq!(
                    verdict_with(failure, started, Some(success + later), timeout),
                    Verdict::Overloaded
                );
            }
        }
    }
}
