//! The chaos run's figures, pure functions of the history: client gaps per fault kind
//! (p50/p99/worst over the faults of that kind), the longest gaps with the faults active
//! when they began, and the timeline lanes of the report.

use std::collections::BTreeMap;

use serde::Serialize;

use super::check::{History, Injected, SetSample, SingletonSample};
use crate::stats::Spread;
use crate::timeline::{Segment, availability, holder_names, longest_gap_within, segments};

/// A fault's window for its gap: from its start until this long after its heal (a heal's
/// own disturbance, a rejoin or a return, belongs to the fault).
pub const AFTER_HEAL_MS: u64 = 2_000;

/// The gaps of one fault kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindGaps {
    /// The kind.
    pub kind: String,
    /// Faults of this kind injected.
    pub injected: usize,
    /// Per client path (`vip`, `node-local`): the longest gap between acknowledged writes in
    /// each fault's window, p50/p99/worst over the faults.
    pub gap_ms: BTreeMap<String, Spread>,
}

/// One long gap between acknowledged writes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Gap {
    /// The client path.
    pub path: String,
    /// The last acknowledged write before it (or the start), ms.
    pub from_ms: u64,
    /// The next acknowledged write (or the end), ms.
    pub to_ms: u64,
    /// The faults active when it began, or that began during it.
    pub faults: Vec<u32>,
}

fn acks(h: &History, path: usize) -> Vec<u64> {
    let mut v: Vec<u64> = h
        .attempts
        .iter()
        .filter(|a| a.path == path && a.ok)
        .map(|a| a.end_ms)
        .collect();
    v.sort_unstable();
    v
}

/// Per kind, in the order kinds first appear: the longest gap in each fault's window.
pub fn gaps_by_kind(h: &History) -> Vec<KindGaps> {
    let series: Vec<Vec<u64>> = (0..h.paths.len()).map(|p| acks(h, p)).collect();
    let mut kinds: Vec<String> = Vec::new();
    for f in &h.faults {
        let k = f.kind.name().to_string();
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let mine: Vec<&Injected> = h.faults.iter().filter(|f| f.kind.name() == kind).collect();
            let gap_ms = h
                .paths
                .iter()
                .enumerate()
                .filter_map(|(p, name)| {
                    let v: Vec<u64> = mine
                        .iter()
                        .map(|f| {
                            let to = (f.healed_ms + AFTER_HEAL_MS).min(h.end_ms.max(f.healed_ms));
                            longest_gap_within(&series[p], f.at_ms, to)
                        })
                        .collect();
                    Some((name.clone(), Spread::of(&v)?))
                })
                .collect();
            KindGaps {
                injected: mine.len(),
                kind,
                gap_ms,
            }
        })
        .collect()
}

/// The `n` longest gaps of each path over the whole run (edges included), longest first.
pub fn longest_gaps(h: &History, n: usize) -> Vec<Gap> {
    let mut out = Vec::new();
    for (p, name) in h.paths.iter().enumerate() {
        let a = acks(h, p);
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let mut prev = 0;
        for &t in a.iter().chain(std::iter::once(&h.end_ms)) {
            if t > prev {
                gaps.push((prev, t));
            }
            prev = t;
        }
        gaps.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
        for (from, to) in gaps.into_iter().take(n) {
            out.push(Gap {
                path: name.clone(),
                from_ms: from,
                to_ms: to,
                faults: h
                    .faults
                    .iter()
                    .filter(|f| f.at_ms < to && f.healed_ms > from)
                    .map(|f| f.id)
                    .collect(),
            });
        }
    }
    out
}

/// A fault on the report's timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FaultBar {
    /// The schedule's id.
    pub id: u32,
    /// Its kind.
    pub kind: String,
    /// What was done.
    pub what: String,
    /// Injected, ms.
    pub from: u64,
    /// Healed, ms.
    pub to: u64,
}

/// Everything the report draws.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ChaosTimeline {
    /// Length, ms.
    pub duration_ms: u64,
    /// The final heal, ms.
    pub final_heal_ms: u64,
    /// Client availability per path.
    pub clients: BTreeMap<String, Vec<Segment>>,
    /// Who answered ARP for the VIP.
    pub answers: Vec<Segment>,
    /// Who had the VIP on eth0 (link up).
    pub vip: Vec<Segment>,
    /// Per election, where its singleton process ran.
    pub singletons: BTreeMap<String, Vec<Segment>>,
    /// etcd's leader and each election's, as the daemons report them.
    pub leaders: BTreeMap<String, Vec<Segment>>,
    /// The faults.
    pub faults: Vec<FaultBar>,
}

fn set_lane(h: &History, s: &[SetSample]) -> Vec<Segment> {
    let series: Vec<(u64, String)> = s
        .iter()
        .map(|x| (x.t, holder_names(&h.nodes, x.set, x.strangers)))
        .collect();
    segments(&series, h.end_ms)
}

/// The timeline lanes of the whole run; `leaders` are (t, lane → leader) samples.
pub fn timeline(h: &History, leaders: &[(u64, BTreeMap<String, String>)]) -> ChaosTimeline {
    let clients = h
        .paths
        .iter()
        .enumerate()
        .map(|(p, n)| (n.clone(), availability(&acks(h, p), h.end_ms)))
        .collect();
    let mut by_election: BTreeMap<String, Vec<&SingletonSample>> = BTreeMap::new();
    for s in &h.singletons {
        by_election.entry(s.election.clone()).or_default().push(s);
    }
    let singletons = by_election
        .into_iter()
        .map(|(e, v)| {
            let series: Vec<(u64, String)> = v
                .iter()
                .map(|s| (s.t, holder_names(&h.nodes, s.set, 0)))
                .collect();
            (e, segments(&series, h.end_ms))
        })
        .collect();
    let mut lanes: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (_, m) in leaders {
        for k in m.keys() {
            lanes.entry(k.clone()).or_default();
        }
    }
    for (t, m) in leaders {
        for (lane, series) in lanes.iter_mut() {
            series.push((*t, m.get(lane).cloned().unwrap_or_else(|| "none".into())));
        }
    }
    ChaosTimeline {
        duration_ms: h.end_ms,
        final_heal_ms: h.final_heal_ms,
        clients,
        answers: set_lane(h, &h.arp),
        vip: set_lane(h, &h.addr),
        singletons,
        leaders: lanes
            .into_iter()
            .map(|(k, v)| (k, segments(&v, h.end_ms)))
            .collect(),
        faults: h
            .faults
            .iter()
            .map(|f| FaultBar {
                id: f.id,
                kind: f.kind.name().to_string(),
                what: f.what.clone(),
                from: f.at_ms,
                to: f.healed_ms,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::schedule::Kind;
    use crate::client::Attempt;

    fn history() -> History {
        // Acks every 100 ms on both paths, except vip 5.0–7.0 s and node-local 20.0–20.5 s.
        let mut attempts = Vec::new();
        for t in (100..30_000).step_by(100) {
            for p in 0..2 {
                let hole =
                    (p == 0 && t > 5_000 && t < 7_000) || (p == 1 && t > 20_000 && t < 20_500);
                if !hole {
                    attempts.push(Attempt {
                        path: p,
                        seq: t,
                        start_ms: t - 5,
                        end_ms: t,
                        ok: true,
                        error: None,
                    });
                }
            }
        }
        let fault = |id, kind, at_ms, healed_ms| Injected {
            id,
            kind,
            what: String::new(),
            at_ms,
            healed_ms,
            touches: Vec::new(),
        };
        History {
            nodes: ["m1", "m2", "w1"].map(String::from).to_vec(),
            paths: vec!["vip".into(), "node-local".into()],
            final_heal_ms: 25_000,
            end_ms: 30_000,
            faults: vec![
                fault(1, Kind::KillNode, 4_500, 8_000),
                fault(2, Kind::KillNode, 12_000, 13_000),
                fault(3, Kind::Partition, 19_000, 21_000),
            ],
            attempts,
            ..History::default()
        }
    }

    #[test]
    fn each_kind_gets_the_spread_of_its_faults_longest_gaps() {
        let g = gaps_by_kind(&history());
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].kind.as_str(), g[0].injected), ("kill-node", 2));
        // Fault 1 saw the 2 s vip gap, fault 2 only the 100 ms pace.
        assert_eq!(
            g[0].gap_ms["vip"],
            Spread {
                p50: 100,
                p99: 2_000,
                max: 2_000
            }
        );
        assert_eq!(g[1].gap_ms["node-local"].max, 500);
    }

    #[test]
    fn the_longest_gaps_name_the_faults_active_during_them() {
        let g = longest_gaps(&history(), 1);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].path.as_str(), g[0].from_ms, g[0].to_ms),
            ("vip", 5_000, 7_000)
        );
        assert_eq!(g[0].faults, [1]);
        assert_eq!(
            (g[1].from_ms, g[1].to_ms, g[1].faults.clone()),
            (20_000, 20_500, vec![3])
        );
    }

    #[test]
    fn the_timeline_draws_every_fault_and_the_client_outages() {
        let t = timeline(&history(), &[]);
        assert_eq!(t.faults.len(), 3);
        let vip: Vec<&str> = t.clients["vip"].iter().map(|s| s.value.as_str()).collect();
        assert_eq!(vip, ["ok", "down", "ok"]);
    }
}
