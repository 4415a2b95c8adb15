//! `lab drill --repeat N`: p50, p99 and worst of each figure per scenario and etcd-leader
//! placement, over the runs.

use serde::Serialize;

use crate::drill::ScenarioResult;

/// Nearest-rank percentile (the smallest value with at least `q` of the values at or below
/// it); None for no values. With 5 runs p50 is the 3rd smallest and p99 the largest.
pub fn percentile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// p50, p99 and worst of one figure, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// Median (nearest rank).
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// The worst run.
    pub max: u64,
}

impl Spread {
    /// The spread of `values`; None when there are none.
    pub fn of(values: &[u64]) -> Option<Spread> {
        Some(Spread {
            p50: percentile(values, 0.5)?,
            p99: percentile(values, 0.99)?,
            max: *values.iter().max()?,
        })
    }
}

/// One scenario under one placement, over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioStats {
    /// Scenario name.
    pub name: String,
    /// Where etcd's raft leader was put before the fault.
    pub etcd_leader: String,
    /// Runs aggregated.
    pub runs: usize,
    /// Runs that did not complete or recover (their figures are still included).
    pub failed_runs: usize,
    /// Longest gap between acknowledged writes through the VIP.
    pub vip_gap_ms: Option<Spread>,
    /// Longest gap through the node-local balancer.
    pub local_gap_ms: Option<Spread>,
    /// Longest interval with no node answering ARP for the VIP.
    pub no_answer_ms: Option<Spread>,
    /// Longest interval with the VIP on no node's interface.
    pub no_holder_ms: Option<Spread>,
    /// After the heal (the node's return): longest interval with no node holding the VIP.
    pub return_no_holder_ms: Option<Spread>,
    /// After the heal: longest interval with no node answering.
    pub return_no_answer_ms: Option<Spread>,
    /// After the heal: longest gap through the VIP.
    pub return_vip_gap_ms: Option<Spread>,
    /// Split-brain samples (two nodes answering) over all runs.
    pub split_brain_samples: u64,
    /// Samples with the address on two nodes, over all runs.
    pub address_split_samples: u64,
    /// Lost acknowledged writes over all runs.
    pub lost: u64,
}

/// Groups runs by (scenario, placement) in first-seen order and aggregates each group.
pub fn aggregate(runs: &[ScenarioResult]) -> Vec<ScenarioStats> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.name.clone(), r.etcd_leader.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(name, etcd_leader)| {
            let group: Vec<&ScenarioResult> = runs
                .iter()
                .filter(|r| r.name == name && r.etcd_leader == etcd_leader)
                .collect();
            let figure = |f: &dyn Fn(&ScenarioResult) -> Option<u64>| {
                Spread::of(&group.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            ScenarioStats {
                runs: group.len(),
                failed_runs: group
                    .iter()
                    .filter(|r| !(r.completed && r.recovered))
                    .count(),
                vip_gap_ms: figure(&|r| r.paths.first().map(|p| p.longest_gap_ms)),
                local_gap_ms: figure(&|r| r.paths.get(1).map(|p| p.longest_gap_ms)),
                no_answer_ms: figure(&|r| Some(r.longest_no_answer_ms)),
                no_holder_ms: figure(&|r| Some(r.longest_no_holder_ms)),
                return_no_holder_ms: figure(&|r| {
                    r.after_heal.as_ref().map(|a| a.longest_no_holder_ms)
                }),
                return_no_answer_ms: figure(&|r| {
                    r.after_heal.as_ref().map(|a| a.longest_no_answer_ms)
                }),
                return_vip_gap_ms: figure(&|r| r.after_heal.as_ref().map(|a| a.vip_gap_ms)),
                split_brain_samples: group.iter().map(|r| r.split_brain_samples).sum(),
                address_split_samples: group.iter().map(|r| r.address_split_samples).sum(),
                lost: group
                    .iter()
                    .flat_map(|r| r.paths.iter())
                    .map(|p| p.lost)
                    .sum(),
                name,
                etcd_leader,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_five_runs() {
        let v = [900, 100, 300, 500, 700];
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(900));
        assert_eq!(percentile(&v, 0.0), Some(100));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(
            Spread::of(&[3, 1, 2]),
            Some(Spread {
                p50: 2,
                p99: 3,
                max: 3
            })
        );
    }

    #[test]
    fn p99_of_many_runs_is_not_the_worst() {
        let v: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&v, 0.99), Some(198));
        assert_eq!(Spread::of(&v).unwrap().max, 200);
    }
}
