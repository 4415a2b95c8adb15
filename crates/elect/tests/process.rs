//! Process-level acceptance on loopback: three `elect_node` processes, each running
//! `sleep MARKER` as its exec action, against a real 3-member etcd. A sampler scans /proc
//! every 10 ms; at most one runnable `sleep MARKER` may exist in every sample.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// TTL 2 s (etcd's minimum), margin 500 ms: the acceptance bound is TTL + 1 s.
const BOUND: Duration = Duration::from_secs(3);

/// (time, nodes whose command was runnable) per 10 ms sample.
type Samples = Arc<Mutex<Vec<(Instant, Vec<usize>)>>>;

struct Nodes {
    procs: Vec<Proc>,
    marker: String,
    samples: Samples,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Nodes {
    /// `endpoints[i]` are the etcd endpoints node i talks to.
    fn start(endpoints: Vec<Vec<String>>) -> Nodes {
        let name = unique("exec");
        // A unique sleep duration identifies this test's commands on a shared machine.
        let marker = format!(
            "{}.{}",
            900_000 + std::process::id() % 90_000,
            name.len() + endpoints.len() * 7 + (std::process::id() as usize % 1000)
        );
        let marker = format!("{marker}{}", name.rsplit('-').next().unwrap_or("0"));
        let procs: Vec<Proc> = endpoints
            .iter()
            .enumerate()
            .map(|(i, eps)| {
                let child = Command::new(example("elect_node"))
                    .args(["--endpoints", &eps.join(",")])
                    .args(["--name", &name, "--identity", &format!("node{i}")])
                    .args(["--ttl-ms", "2000", "--margin-ms", "500"])
                    .args(["--exec", "sleep", &marker])
                    .stdout(Stdio::null())
                    .env("RUST_LOG", "warn")
                    .spawn()
                    .expect("examples/elect_node is built by cargo test");
                Proc(child)
            })
            .collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let pids: Vec<i32> = procs.iter().map(|p| p.pid().as_raw()).collect();
        let sampler = {
            let (samples, stop, marker) = (samples.clone(), stop.clone(), marker.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let holders: Vec<usize> = running_with_argv(&["sleep", &marker])
                        .iter()
                        .map(|p| {
                            pids.iter()
                                .position(|n| descends_from(p.pid, *n))
                                .unwrap_or(usize::MAX)
                        })
                        .collect();
                    samples.lock().unwrap().push((Instant::now(), holders));
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Nodes {
            procs,
            marker,
            samples,
            stop,
            sampler: Some(sampler),
        }
    }

    fn holders_now(&self) -> Vec<usize> {
        self.samples
            .lock()
            .unwrap()
            .last()
            .map(|s| s.1.clone())
            .unwrap_or_default()
    }

    /// Waits for exactly one holder, other than `not`.
    fn wait_holder(&self, not: Option<usize>, timeout: Duration) -> Option<(usize, Duration)> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            let h = self.holders_now();
            // An orphan (usize::MAX: parent already dead) is not a node holding the lease.
            if h.len() == 1 && h[0] < self.procs.len() && Some(h[0]) != not {
                return Some((h[0], t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Stops sampling; returns the largest number of simultaneous holders and the samples.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            s.join().unwrap();
        }
        let s = self.samples.lock().unwrap();
        (s.iter().map(|x| x.1.len()).max().unwrap_or(0), s.len())
    }

    /// First sample time at which `node` no longer holds, after `after`.
    fn released_at(&self, node: usize, after: Instant) -> Option<Instant> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .find(|(t, h)| *t >= after && !h.contains(&node))
            .map(|(t, _)| *t)
    }

    fn acquired_at(&self, node: usize, after: Instant) -> Option<Instant> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .find(|(t, h)| *t >= after && h.contains(&node))
            .map(|(t, _)| *t)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(std::mem::take(&mut self.procs));
        // The guard and pdeathsig remove the commands; make sure nothing of ours is left.
        let _ = wait_until(Duration::from_secs(3), || {
            running_with_argv(&["sleep", &self.marker]).is_empty()
        });
    }
}

#[test]
fn exec_moves_within_ttl_plus_1s_when_the_leader_is_sigkilled_and_never_runs_twice() {
    let cluster = EtcdCluster::start(3);
    let nodes = Nodes::start(vec![cluster.endpoints(); 3]);
    let (old, _) = nodes
        .wait_holder(None, Duration::from_secs(15))
        .expect("a holder");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    nodes.procs[old].signal(Signal::SIGKILL);
    let (new, took) = nodes
        .wait_holder(Some(old), Duration::from_secs(10))
        .expect("failover");
    eprintln!("SIGKILL failover: node{old} -> node{new} in {took:?}");
    let released = nodes.released_at(old, t0).expect("old command gone");
    eprintln!(
        "old command gone {:?} after SIGKILL (pdeathsig)",
        released - t0
    );
    assert!(took <= BOUND, "failover took {took:?}");
    std::thread::sleep(Duration::from_millis(500));
    let (max, n) = nodes.finish();
    assert!(n > 100, "sampler ran ({n} samples)");
    assert_eq!(max, 1, "two commands ran at once");
}

#[test]
fn exec_moves_within_ttl_plus_1s_when_the_leader_is_sigstopped_and_never_runs_twice() {
    let cluster = EtcdCluster::start(3);
    let nodes = Nodes::start(vec![cluster.endpoints(); 3]);
    let (old, _) = nodes
        .wait_holder(None, Duration::from_secs(15))
        .expect("a holder");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    // Only the elector is frozen; its command keeps running until the lease guard kills it.
    nodes.procs[old].signal(Signal::SIGSTOP);
    let (new, took) = nodes
        .wait_holder(Some(old), Duration::from_secs(10))
        .expect("failover");
    let released = nodes.released_at(old, t0).expect("old command gone");
    let acquired = nodes.acquired_at(new, t0).expect("new command");
    eprintln!(
        "SIGSTOP failover: node{old} -> node{new} in {took:?}; old command stopped at {:?}, new started at {:?}",
        released - t0,
        acquired - t0
    );
    assert!(released <= acquired);
    assert!(took <= BOUND, "failover took {took:?}");
    nodes.procs[old].signal(Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        nodes.holders_now(),
        vec![new],
        "the thawed node does not take over"
    );
    let (max, _) = nodes.finish();
    assert_eq!(max, 1, "two commands ran at once");
}

#[test]
fn leader_cut_off_from_the_etcd_majority_stops_before_another_starts() {
    let cluster = EtcdCluster::start(3);
    // Node i talks only to etcd member i, so freezing member i cuts node i off.
    let eps: Vec<Vec<String>> = cluster.endpoints().into_iter().map(|e| vec![e]).collect();
    let nodes = Nodes::start(eps);
    let (old, _) = nodes
        .wait_holder(None, Duration::from_secs(15))
        .expect("a holder");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    cluster.members[old].stop();
    let (new, took) = nodes
        .wait_holder(Some(old), Duration::from_secs(15))
        .expect("failover");
    let released = nodes.released_at(old, t0).expect("old command gone");
    let acquired = nodes.acquired_at(new, t0).expect("new command");
    eprintln!(
        "cut-off failover: node{old} -> node{new} in {took:?}; old stopped at {:?}, new started at {:?}",
        released - t0,
        acquired - t0
    );
    assert!(released < acquired, "the cut-off leader stopped first");
    // If the frozen member was the raft leader, the majority first elects a new one (1-2 s
    // randomized election timeout) and the new raft leader renews every lease to its full
    // TTL on promotion, so the bound is election (2 s) + TTL (2 s) + expiry tick (0.5 s) + 1 s.
    assert!(
        took <= Duration::from_millis(5500 + 1500),
        "failover took {took:?}"
    );
    cluster.members[old].cont();
    std::thread::sleep(Duration::from_secs(1));
    let (max, _) = nodes.finish();
    assert_eq!(max, 1, "two commands ran at once");
}
