//! `haplane lab chaos` on real labs (root; real etcd and the real haplane binary in network
//! namespaces): two fixed seeds against the fenced default lab find nothing, and the same
//! machinery on an unfenced lab with partitions only finds split brain, so the checker can fail.

mod common;

use std::process::Command;

use common::{Down, haplane_exe, one_lab_at_a_time};
use lab::chaos::schedule::{self, Action, Kind, Nodes};
use lab::chaos::{ChaosOptions, Invariant};
use lab::up;

fn lab(name: &str, fencing: &str) -> lab::LabState {
    up::up(&up::UpOptions {
        name: name.to_string(),
        masters: 3,
        workers: 1,
        lb_nodes: 0,
        apiserver: None,
        fencing: fencing.into(),
        preempt: false,
        etcd_election_timeout_ms: 1000,
        haplane: haplane_exe(),
    })
    .expect("lab up")
}

fn no_namespaces_left(name: &str) {
    let prefix = format!("hpl-lab-{name}-");
    let left: Vec<String> = netlab::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// The CI seeds: fixed, so a failure here is reproducible with
/// `haplane lab chaos --seed S --duration 40s`.
const SEEDS: [u64; 2] = [3, 7];
const DURATION_MS: u64 = 40_000;

#[test]
fn two_fixed_seeds_of_overlapping_faults_break_no_invariant_of_the_fenced_lab() {
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("c{}", std::process::id());
    let _down = Down(name.clone());
    let st = lab(&name, "quorum");
    let nodes = Nodes {
        masters: st.masters.iter().map(|n| n.name.clone()).collect(),
        workers: st.workers.iter().map(|n| n.name.clone()).collect(),
    };
    for seed in SEEDS {
        let sched = schedule::generate(seed, DURATION_MS, &Kind::ALL, &nodes);
        let r = lab::chaos::run::run(&st, &sched, &ChaosOptions::default()).expect("chaos run");
        let summary = lab::chaos::report::text(&r);
        assert!(r.passed(), "seed {seed}: {:#?}\n{summary}", r.violations);
        // It did break things: faults were injected, of several kinds, some at once.
        assert!(r.injected.len() >= 5, "seed {seed}: {summary}");
        assert!(r.gaps_by_kind.len() >= 3, "seed {seed}: {summary}");
        assert!(sched.max_overlap() >= 2, "seed {seed}");
        // Everything it checks was sampled.
        assert!(
            r.samples.arp > 1_000 && r.samples.addr > 1_000,
            "{:?}",
            r.samples
        );
        assert!(r.samples.proc_sweeps > 100 && r.samples.status_sweeps > 50);
        assert!(
            r.samples.acked.values().all(|n| *n > 100),
            "{:?}",
            r.samples
        );
        assert!(r.recovery_ms.is_some(), "seed {seed}: {summary}");
        assert!(
            r.growth
                .iter()
                .any(|g| g.daemon == lab::chaos::check::Daemon::Haplane),
            "growth is reported"
        );
        // The run follows the seed's schedule, and says how to reproduce it.
        assert_eq!(r.schedule, sched);
        assert!(summary.contains(&format!("seed {seed}")), "{summary}");
        let html = lab::chaos::report::html(&r);
        assert!(html.contains("<svg") && !html.contains("<script"));
        assert_eq!(
            html.matches("class=\"f\"").count(),
            r.injected.len(),
            "every injected fault is on the timeline"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["seed"], seed);
        assert!(json["violations"].as_array().unwrap().is_empty());
    }
    drop(_down);
    no_namespaces_left(&name);
}

/// The first seed whose partition-only schedule opens with a symmetric partition that has
/// masters on both sides for at least 3 s: unfenced VRRP then has a master on each side.
fn split_seed(nodes: &Nodes, duration: u64) -> (u64, schedule::Fault) {
    for seed in 1..1_000 {
        let s = schedule::generate(seed, duration, &[Kind::Partition], nodes);
        let Some(f) = s.faults.first() else { continue };
        if let Action::Partition {
            from,
            to,
            one_way: false,
        } = &f.action
        {
            let masters = |g: &[String]| g.iter().any(|n| nodes.masters.contains(n));
            if masters(from) && masters(to) && f.heal_ms - f.at_ms >= 3_000 {
                return (seed, f.clone());
            }
        }
    }
    panic!("no seed below 1000 opens with a splitting partition");
}

#[test]
fn without_fencing_a_partition_only_schedule_is_reported_as_split_brain_and_exits_1() {
    netlab::require_root!();
    let _serial = one_lab_at_a_time();
    let name = format!("u{}", std::process::id());
    let _down = Down(name.clone());
    let _st = lab(&name, "none");
    let duration = 20_000;
    let (seed, first) = split_seed(&Nodes::standard(3, 1), duration);
    let out = Command::new(haplane_exe())
        .args([
            "lab",
            "chaos",
            "--name",
            &name,
            "--faults",
            "partition",
            "--json",
        ])
        .args(["--seed", &seed.to_string(), "--duration", "20s"])
        .output()
        .expect("haplane lab chaos");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a violation exits 1: {stderr}");
    assert!(
        stderr.contains(&format!("seed {seed}")),
        "names the seed: {stderr}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    let split: Vec<&serde_json::Value> = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| {
            [Invariant::SplitBrain, Invariant::AddressOnTwo]
                .iter()
                .any(|i| v["invariant"] == i.name())
        })
        .collect();
    // Found during the splitting partition (with its detection time and the heal's tail).
    assert!(
        split.iter().any(|v| {
            let from = v["from_ms"].as_u64().unwrap();
            from >= first.at_ms && from <= first.heal_ms + 2_000
        }),
        "split brain during partition #{} ({}..{} ms): {:#}",
        first.id,
        first.at_ms,
        first.heal_ms,
        r["violations"]
    );
    drop(_down);
    no_namespaces_left(&name);
}
