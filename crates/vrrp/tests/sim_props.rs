//! Property tests on the simulated LAN: whatever happens, once the LAN is whole again the
//! routers converge on exactly one master, and (with preemption) it is the one with the
//! highest effective priority.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use vrrp::sim::Lan;
use vrrp::{RouterConfig, State, TrackedCheck, Version};

/// One thing that can happen to the LAN.
#[derive(Debug, Clone)]
enum Fault {
    Crash(usize),
    Restart(usize),
    Shutdown(usize),
    Start(usize),
    LinkDown(usize),
    LinkUp(usize),
    CheckFail(usize),
    CheckPass(usize),
    /// Hosts whose bit is set form one side.
    Partition(u8),
    Heal,
    Loss(u8),
}

fn fault(n: usize) -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0..n).prop_map(Fault::Crash),
        (0..n).prop_map(Fault::Restart),
        (0..n).prop_map(Fault::Shutdown),
        (0..n).prop_map(Fault::Start),
        (0..n).prop_map(Fault::LinkDown),
        (0..n).prop_map(Fault::LinkUp),
        (0..n).prop_map(Fault::CheckFail),
        (0..n).prop_map(Fault::CheckPass),
        any::<u8>().prop_map(Fault::Partition),
        Just(Fault::Heal),
        (0u8..40).prop_map(Fault::Loss),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    version: Version,
    interval_ms: u64,
    routers: Vec<(u8, i16, bool)>,
    seed: u64,
}

/// 2..=5 routers with random base priorities (ties allowed), a tracked check of weight
/// −60, 0 (fault) or +20, and a shared advert interval.
fn setup(preempt_any: bool) -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(Version::V2), Just(Version::V3)],
        prop_oneof![Just(100u64), Just(300), Just(1000)],
        prop::collection::vec(
            (
                1u8..=254,
                prop_oneof![Just(-60i16), Just(0), Just(20)],
                if preempt_any {
                    any::<bool>().boxed()
                } else {
                    Just(true).boxed()
                },
            ),
            2..=5,
        ),
        any::<u64>(),
    )
        .prop_map(|(version, interval_ms, routers, seed)| Setup {
            version,
            // v2 intervals are whole seconds.
            interval_ms: if version == Version::V2 {
                1000
            } else {
                interval_ms
            },
            routers,
            seed,
        })
}

fn build(s: &Setup) -> Lan {
    let mut lan = Lan::new(s.seed);
    lan.jitter = Duration::from_millis(3);
    for (i, &(priority, weight, preempt)) in s.routers.iter().enumerate() {
        let host = u8::try_from(i + 1).unwrap();
        let cfg = RouterConfig {
            version: s.version,
            priority,
            preempt,
            advert_interval: Duration::from_millis(s.interval_ms),
            tracked: vec![TrackedCheck {
                name: "check".into(),
                weight,
            }],
            ..v3(host, priority)
        };
        lan.add(cfg).unwrap();
    }
    lan
}

fn apply(lan: &mut Lan, f: &Fault) {
    let n = lan.len();
    match *f {
        Fault::Crash(i) => lan.crash(i),
        Fault::Restart(i) => lan.restart(i),
        Fault::Shutdown(i) => {
            if lan.node(i).alive {
                lan.shutdown(i)
            }
        }
        Fault::Start(i) => {
            if lan.node(i).alive {
                lan.start(i)
            }
        }
        Fault::LinkDown(i) => lan.set_link(i, false),
        Fault::LinkUp(i) => lan.set_link(i, true),
        Fault::CheckFail(i) => lan.set_check(i, 0, false),
        Fault::CheckPass(i) => lan.set_check(i, 0, true),
        Fault::Partition(mask) => {
            let a: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            let b: Vec<usize> = (0..n).filter(|i| mask & (1 << i) == 0).collect();
            lan.partition(&[&a, &b]);
        }
        Fault::Heal => lan.heal(),
        Fault::Loss(pct) => lan.set_loss_all(f64::from(pct) / 100.0),
    }
}

/// Undo every fault: links up, checks passing, whole and lossless, everyone running.
fn heal_all(lan: &mut Lan) {
    lan.heal();
    lan.set_loss_all(0.0);
    for i in 0..lan.len() {
        if !lan.node(i).alive {
            lan.restart(i);
        }
        lan.set_link(i, true);
        lan.set_check(i, 0, true);
        if lan.state(i) == State::Initialize {
            lan.start(i);
        }
    }
}

/// The single master after convergence, checked against the VIP holders.
fn sole_master(lan: &Lan) -> Result<usize, TestCaseError> {
    let masters = lan.masters();
    prop_assert_eq!(masters.len(), 1, "masters {:?}", masters);
    prop_assert_eq!(lan.vip_holders(), masters.clone(), "vip holders");
    for i in 0..lan.len() {
        prop_assert!(
            lan.state(i) == State::Master || lan.state(i) == State::Backup,
            "{} in {:?}",
            i,
            lan.state(i)
        );
    }
    Ok(masters[0])
}

fn best_priority(lan: &Lan) -> u8 {
    (0..lan.len())
        .map(|i| lan.router(i).effective_priority())
        .max()
        .unwrap_or(0)
}

/// Long enough for the slowest convergence: a preempting backup waits one
/// Master_Down_Interval (< 4 intervals), twice over, plus slack.
fn settle_time(s: &Setup) -> Duration {
    Duration::from_millis(s.interval_ms) * 12 + Duration::from_secs(2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// RFC 5798 §6: on a connected LAN (after a lossy spell) there is eventually exactly one
    /// master and it has the highest effective priority; it alone holds the VIP.
    #[test]
    fn connected_lan_elects_exactly_one_highest_priority_master(
        s in setup(false),
        loss_pct in 0u8..30,
    ) {
        let mut lan = build(&s);
        lan.set_loss_all(f64::from(loss_pct) / 100.0);
        lan.start_all();
        lan.run_for(Duration::from_millis(s.interval_ms) * 30);
        lan.set_loss_all(0.0);
        lan.run_for(settle_time(&s));
        let m = sole_master(&lan)?;
        prop_assert_eq!(lan.router(m).effective_priority(), best_priority(&lan));
        // And it stays that way.
        lan.run_for(settle_time(&s));
        prop_assert_eq!(lan.masters(), vec![m]);
    }

    /// After any sequence of crashes, restarts, shutdowns, link and check failures,
    /// partitions and loss, followed by healing, the routers converge on one master with
    /// the highest effective priority.
    #[test]
    fn routers_converge_after_faults_heal(
        s in setup(false),
        faults in prop::collection::vec((fault(5), 0u64..3000), 1..12),
    ) {
        let mut lan = build(&s);
        lan.start_all();
        lan.run_for(Duration::from_secs(5));
        let n = lan.len();
        for (f, gap_ms) in &faults {
            let f = match f.clone() {
                Fault::Crash(i) => Fault::Crash(i % n),
                Fault::Restart(i) => Fault::Restart(i % n),
                Fault::Shutdown(i) => Fault::Shutdown(i % n),
                Fault::Start(i) => Fault::Start(i % n),
                Fault::LinkDown(i) => Fault::LinkDown(i % n),
                Fault::LinkUp(i) => Fault::LinkUp(i % n),
                Fault::CheckFail(i) => Fault::CheckFail(i % n),
                Fault::CheckPass(i) => Fault::CheckPass(i % n),
                other => other,
            };
            apply(&mut lan, &f);
            lan.run_for(Duration::from_millis(*gap_ms));
        }
        heal_all(&mut lan);
        lan.run_for(settle_time(&s));
        let m = sole_master(&lan)?;
        prop_assert_eq!(lan.router(m).effective_priority(), best_priority(&lan));
    }

    /// With a mix of preempt and nopreempt routers the highest priority need not win, but
    /// there is still exactly one master and one VIP holder after healing.
    #[test]
    fn mixed_preemption_still_converges_to_one_master(
        s in setup(true),
        faults in prop::collection::vec((fault(5), 0u64..3000), 1..8),
    ) {
        let mut lan = build(&s);
        lan.start_all();
        let n = lan.len();
        for (f, gap_ms) in &faults {
            let f = match f.clone() {
                Fault::Crash(i) | Fault::LinkDown(i) => Fault::Crash(i % n),
                Fault::Partition(m) => Fault::Partition(m),
                _ => Fault::Heal,
            };
            apply(&mut lan, &f);
            lan.run_for(Duration::from_millis(*gap_ms));
        }
        heal_all(&mut lan);
        lan.run_for(settle_time(&s));
        let m = sole_master(&lan)?;
        let holders: BTreeSet<_> = lan.node(m).vips.iter().copied().collect();
        prop_assert_eq!(holders, BTreeSet::from([vip()]));
    }
}
