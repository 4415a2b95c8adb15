//! Turning the drill's samples into figures and timeline lanes: gaps between acknowledged
//! writes, intervals with nobody holding or answering for the VIP, run-length segments.
//! Pure functions of sample series (times in ms), so every figure has a unit test.

use serde::Serialize;

/// A stretch of time in one lane of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Segment {
    /// Start, ms since the scenario started.
    pub from: u64,
    /// End, ms since the scenario started.
    pub to: u64,
    /// What the lane showed: `ok`/`down` for clients, node names (or `none`) otherwise.
    pub value: String,
}

/// The longest time without an acknowledged write in a window of `dur` ms (the edges count:
/// a window with no ack at all is one gap of its whole length).
pub fn longest_gap(ack_times: &[u64], dur: u64) -> u64 {
    longest_gap_within(ack_times, 0, dur)
}

/// The longest time without an acknowledged write between `from` and `to` (ms; acks outside
/// are ignored, the edges count).
pub fn longest_gap_within(ack_times: &[u64], from: u64, to: u64) -> u64 {
    let mut prev = from;
    let mut longest = 0;
    for &t in ack_times.iter().filter(|t| **t >= from && **t <= to) {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest.max(to.saturating_sub(prev))
}

/// The longest interval in `[from, to]` during which the samples said `empty`: from the first
/// empty sample to the next non-empty one (or `to`). `samples` are `(t, empty)` in time order.
pub fn longest_empty(samples: &[(u64, bool)], from: u64, to: u64) -> u64 {
    let mut longest = 0;
    let mut run_start: Option<u64> = None;
    for &(t, empty) in samples.iter().filter(|s| s.0 >= from && s.0 <= to) {
        match (empty, run_start) {
            (true, None) => run_start = Some(t),
            (false, Some(s)) => {
                longest = longest.max(t - s);
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run_start {
        longest = longest.max(to.saturating_sub(s));
    }
    longest
}

/// Gaps longer than this between acks draw as `down` on the availability strip (writes are
/// paced every 20 ms, so anything past 200 ms is a real interruption, not jitter).
const DOWN_AFTER_MS: u64 = 200;

/// The availability strip: `ok` where acks keep coming, `down` over each longer gap.
pub fn availability(ack_times: &[u64], dur: u64) -> Vec<Segment> {
    let mut series = Vec::new();
    let mut prev = 0;
    for &t in ack_times.iter().chain(std::iter::once(&dur)) {
        if t.saturating_sub(prev) > DOWN_AFTER_MS {
            series.push((prev, "down".to_string()));
        }
        series.push((t, "ok".to_string()));
        prev = t;
    }
    segments(&series, dur)
}

/// Run-length encodes a sampled series: each sample holds until the next one.
pub fn segments(series: &[(u64, String)], dur: u64) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, (t, v)) in series.iter().enumerate() {
        let to = series.get(i + 1).map_or(dur, |n| n.0).max(*t);
        match out.last_mut() {
            Some(last) if &last.value == v => last.to = to,
            _ => out.push(Segment {
                from: *t,
                to,
                value: v.clone(),
            }),
        }
    }
    out
}

/// Changes of value, ignoring `none` in between (A, none, A is no change; A, none, B is one).
pub fn changes(series: &[(u64, String)]) -> u64 {
    let mut last: Option<&str> = None;
    let mut n = 0;
    for (_, v) in series {
        if v == "none" {
            continue;
        }
        if let Some(l) = last
            && l != v
        {
            n += 1;
        }
        last = Some(v);
    }
    n
}

/// Names for a set of masters (bit i = `names[i]`), `+`-joined, `none` when empty; `extra`
/// answers from unknown addresses are shown as `?`.
pub fn holder_names(names: &[String], set: u32, extra: u32) -> String {
    let mut v: Vec<&str> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1 << i) != 0)
        .map(|(_, n)| n.as_str())
        .collect();
    v.extend(std::iter::repeat_n("?", extra as usize));
    if v.is_empty() {
        "none".into()
    } else {
        v.join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_window_edges() {
        assert_eq!(longest_gap(&[], 1000), 1000);
        assert_eq!(longest_gap(&[100, 150, 900], 1000), 750);
        assert_eq!(longest_gap(&[100, 200], 1000), 800);
    }

    #[test]
    fn a_gap_within_a_window_ignores_acks_outside_it() {
        assert_eq!(longest_gap_within(&[100, 600, 650, 2000], 500, 1000), 350);
        assert_eq!(longest_gap_within(&[100, 2000], 500, 1000), 500);
    }

    #[test]
    fn an_empty_interval_runs_from_the_first_empty_sample_to_the_next_answer() {
        let s = [
            (0, false),
            (10, true),
            (20, true),
            (30, false),
            (40, true),
            (100, false),
        ];
        assert_eq!(longest_empty(&s, 0, 200), 60);
        // Still empty at the end of the window: counts up to the window's end.
        assert_eq!(longest_empty(&[(0, false), (50, true)], 0, 80), 30);
        assert_eq!(longest_empty(&[(0, false), (10, false)], 0, 80), 0);
        // Only samples inside the window count.
        assert_eq!(longest_empty(&s, 35, 200), 60);
        assert_eq!(longest_empty(&s, 0, 35), 20);
    }

    #[test]
    fn a_leader_that_comes_back_after_none_is_not_a_change() {
        let s = |v: &[&str]| {
            v.iter()
                .enumerate()
                .map(|(i, v)| (i as u64, v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(changes(&s(&["m1", "none", "m1"])), 0);
        assert_eq!(changes(&s(&["m1", "none", "m2", "m2", "m1"])), 2);
    }

    #[test]
    fn availability_marks_gaps_over_the_threshold_as_down() {
        let segs = availability(&[10, 30, 50, 700, 720], 800);
        let values: Vec<&str> = segs.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["ok", "down", "ok"]);
        assert_eq!((segs[1].from, segs[1].to), (50, 700));
    }

    #[test]
    fn holder_names_join_several_and_mark_strangers() {
        let names = vec!["m1".to_string(), "m2".to_string(), "m3".to_string()];
        assert_eq!(holder_names(&names, 0, 0), "none");
        assert_eq!(holder_names(&names, 0b101, 0), "m1+m3");
        assert_eq!(holder_names(&names, 0b010, 1), "m2+?");
    }
}
