//! The text summary `lab drill` prints: one row per run, or with `--repeat` one row per
//! scenario and etcd-leader placement with p50/p99/worst.

use std::fmt::Write;

use crate::drill::{DrillResult, ScenarioResult};
use crate::stats::Spread;

/// Left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// `p50/p99/max ms`, or `-`.
pub fn spread(s: &Option<Spread>) -> String {
    s.map_or("-".into(), |s| format!("{}/{}/{} ms", s.p50, s.p99, s.max))
}

/// Where etcd's leader was: `m1 (target)`.
pub fn leader_cell(s: &ScenarioResult) -> String {
    format!(
        "{} ({})",
        s.etcd_leader_before.as_deref().unwrap_or("none"),
        s.etcd_leader
    )
}

/// `NOT RUN`, `NOT RECOVERED` or the recovery time.
pub fn recovery_cell(s: &ScenarioResult) -> String {
    match (s.completed, s.recovery_ms) {
        (false, _) => "NOT RUN".into(),
        (true, None) => "NOT RECOVERED".into(),
        (true, Some(ms)) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

fn runs_table(r: &DrillResult) -> String {
    let mut rows = vec![
        [
            "SCENARIO",
            "ETCD LEADER",
            "VIP GAP",
            "NO ANSWER",
            "NO HOLDER",
            "VIP FAIL",
            "LOCAL GAP",
            "SPLIT",
            "ADDR SPLIT",
            "RETURN: NO HOLDER",
            "RETURN: VIP GAP",
            "LOST",
            "RECOVERY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &r.scenarios {
        let gap = |i: usize| {
            s.paths
                .get(i)
                .map_or("-".into(), |p| format!("{} ms", p.longest_gap_ms))
        };
        let ret = |f: &dyn Fn(&crate::drill::AfterHeal) -> u64| {
            s.after_heal
                .as_ref()
                .map_or("-".into(), |a| format!("{} ms", f(a)))
        };
        rows.push(vec![
            s.name.clone(),
            leader_cell(s),
            gap(0),
            format!("{} ms", s.longest_no_answer_ms),
            format!("{} ms", s.longest_no_holder_ms),
            s.paths
                .first()
                .map_or("-".into(), |p| format!("{}/{}", p.failed, p.requests)),
            gap(1),
            s.split_brain_samples.to_string(),
            s.address_split_samples.to_string(),
            ret(&|a| a.longest_no_holder_ms),
            ret(&|a| a.vip_gap_ms),
            s.paths.iter().map(|p| p.lost).sum::<u64>().to_string(),
            recovery_cell(s),
        ]);
    }
    table(&rows)
}

fn stats_table(r: &DrillResult) -> String {
    let mut rows = vec![
        [
            "SCENARIO",
            "ETCD LEADER",
            "RUNS",
            "VIP GAP p50/p99/max",
            "NO ANSWER p50/p99/max",
            "LOCAL GAP p50/p99/max",
            "RETURN: NO HOLDER p50/p99/max",
            "SPLIT",
            "LOST",
            "FAILED RUNS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &r.stats {
        rows.push(vec![
            s.name.clone(),
            s.etcd_leader.clone(),
            s.runs.to_string(),
            spread(&s.vip_gap_ms),
            spread(&s.no_answer_ms),
            spread(&s.local_gap_ms),
            spread(&s.return_no_holder_ms),
            s.split_brain_samples.to_string(),
            s.lost.to_string(),
            s.failed_runs.to_string(),
        ]);
    }
    table(&rows)
}

/// The summary printed after a drill.
pub fn text(r: &DrillResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drill on lab {} (fencing {}, preempt {}, etcd election timeout {} ms, balancing {}; writes time out after {} ms, SYN every {} ms)",
        r.lab,
        r.fencing,
        r.preempt,
        r.etcd_election_timeout_ms,
        r.service,
        r.client.request_timeout.as_millis(),
        r.client.connect_retry.as_millis()
    );
    if r.repeat > 1 {
        let _ = writeln!(
            out,
            "{} rounds; per scenario and etcd-leader placement (p50/p99/max over the runs, nearest rank):",
            r.repeat
        );
        out.push_str(&stats_table(r));
    } else {
        out.push_str(&runs_table(r));
    }
    let _ = writeln!(
        out,
        "\nVIP GAP / LOCAL GAP: longest time between acknowledged writes through the VIP / the node-local balancer.\n\
         NO ANSWER: longest time no node answered ARP for the VIP (probed from the worker every 10 ms); NO HOLDER: no node had the address.\n\
         SPLIT: probes answered by two nodes; ADDR SPLIT: samples with the address on two nodes. RETURN: from the heal on."
    );
    let _ = writeln!(
        out,
        "\nlost acknowledged writes: {}; split-brain samples (two nodes answering, 10 ms): {}; address on two nodes: {}; all scenarios completed and recovered: {}",
        r.lost_writes, r.split_brain_samples, r.address_split_samples, r.all_completed
    );
    for s in &r.scenarios {
        if let Some(m) = &s.streams {
            let _ = writeln!(
                out,
                "{} (run {}): {} long-lived streams through the VIP, {} reset, {} still carrying data after the move; {} requests on new connections, {} failed",
                s.name,
                s.run,
                m.streams,
                m.streams_reset.len(),
                m.streams_alive_after_move,
                m.requests,
                m.requests_failed.len()
            );
            for why in m.streams_reset.iter().chain(&m.requests_failed).take(5) {
                let _ = writeln!(out, "  {why}");
            }
        }
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {}: {}", s.name, s.reason);
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for s in &r.scenarios {
        for n in &s.notes {
            let _ = writeln!(
                out,
                "note: {} ({}, run {}): {n}",
                s.name, s.etcd_leader, s.run
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_trailing_space_is_trimmed() {
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
    }

    #[test]
    fn a_spread_prints_all_three_figures() {
        assert_eq!(
            spread(&Some(Spread {
                p50: 1,
                p99: 2,
                max: 3
            })),
            "1/2/3 ms"
        );
        assert_eq!(spread(&None), "-");
    }
}
