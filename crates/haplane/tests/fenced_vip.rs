//! The VIP fenced by the gate (issue 14; docs/elections.md "The fenced VIP"): three masters,
//! each with a real etcd member and haplane, and a client host `c` that probes who answers ARP
//! for the VIP every 10 ms. That is what clients reach, so "never two holders" is checked on
//! answers; a node can keep the address while its kernel fence drops its ARP.
//!
//! Covered: a holder cut off from the other masters never shares the VIP and, healed, preempts
//! back only once it can hold (preempt true); a crashed or frozen holder is replaced after the
//! takeover wait; a thawed old holder goes backup under the new one (preempt false); the
//! holder's own etcd member lost keeps the VIP where it is; SIGTERM hands over at once; with
//! all of etcd gone nobody answers.

mod support;

use std::time::{Duration, Instant};

use support::{Answers, Cfg, Lab, Sample, assert_never_two_answer, longest_silence, two_answering};

const MASTERS: [&str; 3] = ["m1", "m2", "m3"];

/// Samples from answer lists in order of arrival, 40 ms apart.
fn probes(rounds: &[&[&str]]) -> Vec<Sample> {
    let start = Instant::now();
    rounds
        .iter()
        .enumerate()
        .map(|(i, hosts)| {
            let mut answering: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            answering.sort();
            Sample {
                at: Duration::from_millis(40 * i as u64),
                when: start + Duration::from_millis(40 * i as u64),
                answering,
                arrival: hosts
                    .iter()
                    .enumerate()
                    .map(|(k, h)| (h.to_string(), Duration::from_millis(1 + 8 * k as u64)))
                    .collect(),
                addressed: Vec::new(),
            }
        })
        .collect()
}

// The sampler's own rule (last session's only red CI run: one probe answered by the old
// holder and, 7 ms into a clean handover, by the new one). A straddle has one exact shape;
// everything else with two answers is split brain.
#[test]
fn a_probe_straddling_a_handover_is_not_split_brain_but_two_answers_in_any_other_shape_are() {
    let straddle = probes(&[&["m2"], &["m2"], &["m2", "m1"], &["m1"], &["m1"]]);
    assert!(two_answering(&straddle).is_empty());
    // Two probes in a row with two answers: an overlap longer than a probe period.
    let overlap = probes(&[&["m2"], &["m2", "m1"], &["m1", "m2"], &["m1"]]);
    assert_eq!(two_answering(&overlap).len(), 2);
    // The new holder answered first: it was answering before the old one stopped.
    let reversed = probes(&[&["m2"], &["m1", "m2"], &["m1"]]);
    assert_eq!(two_answering(&reversed).len(), 1);
    // The old holder answers again afterwards: no handover happened.
    let back = probes(&[&["m2"], &["m2", "m1"], &["m2"]]);
    assert_eq!(two_answering(&back).len(), 1);
    // Three answer one request.
    let three = probes(&[&["m2"], &["m2", "m1", "m3"], &["m1"]]);
    assert_eq!(two_answering(&three).len(), 1);
    // At the edges there is no before or after to show a handover.
    let edge = probes(&[&["m2", "m1"], &["m1"]]);
    assert_eq!(two_answering(&edge).len(), 1);
}

fn fenced_lab(preempt: bool) -> Lab {
    let (lab, path) = fenced_lab_config(preempt, "");
    start_fenced(lab, &path, &MASTERS, preempt)
}

/// The lab with etcd running and the cluster file written (`extra_vip`: more `vip:` keys).
fn fenced_lab_config(preempt: bool, extra_vip: &str) -> (Lab, std::path::PathBuf) {
    let mut cfg = Cfg::new(&[
        ("m1", "192.0.2.11", 150),
        ("m2", "192.0.2.12", 120),
        ("m3", "192.0.2.13", 100),
    ]);
    cfg.preempt = preempt;
    cfg.extra_vip = format!("  fencing: quorum\n{extra_vip}");
    let mut lab = Lab::new(&["m1", "m2", "m3", "c"]);
    lab.start_etcd(&MASTERS);
    let text = format!(
        "{}loadBalancer: {{enabled: false}}\netcd: {{endpoints: [{}], leaseTtl: 2s}}\nstateDir: {}\n",
        cfg.yaml(),
        lab.etcd_endpoints(&MASTERS)
            .split(',')
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", "),
        lab.dir.path().join("state").display()
    );
    let path = lab.write("cluster.yaml", &text);
    (lab, path)
}

/// Start haplane on `nodes` and wait until one holds the VIP and every one is armed.
fn start_fenced(mut lab: Lab, path: &std::path::Path, nodes: &[&str], preempt: bool) -> Lab {
    for m in nodes {
        lab.start_haplane(m, path);
    }
    // With preempt false whoever is master first keeps it; with preempt true it is m1.
    let first = one_holder(&lab, Duration::from_secs(15));
    // Fencing is armed once each node has reached etcd.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !nodes
        .iter()
        .all(|m| lab.status(m)["fence"]["armed"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "fencing never armed\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if preempt && nodes.contains(&"m1") {
        lab.wait_holders(&["m1"], Duration::from_secs(10));
    } else {
        lab.wait_holders(&[first.as_str()], Duration::from_secs(10));
    }
    lab
}

/// Wait until exactly one node has the VIP; its name.
fn one_holder(lab: &Lab, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let [one] = lab.holders().as_slice() {
            return one.clone();
        }
        assert!(
            start.elapsed() < limit,
            "no single VIP holder after {limit:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(lab: &Lab, m: &str) -> String {
    lab.status(m)["vrrp"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_holder_partitioned_from_the_other_masters_never_shares_the_vip_and_healed_preempts_back_only_once_it_can_hold()
 {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    assert_eq!(lab.status("m1")["fence"]["leader"], true, "{}", lab.logs());
    let (healed_at, samples) = answers.sampling(&lab, || {
        let m1 = lab.host("m1");
        let rest = [lab.host("m2"), lab.host("m3")];
        let partition = lab.topo.partition(&[m1], &rest).unwrap();
        // m2 (next priority) must end up answering; m1 must have let go.
        answers.wait(&lab, &["m2"], Duration::from_secs(15));
        let deadline = Instant::now() + Duration::from_secs(10);
        while state(&lab, "m1") != "FAULT" {
            assert!(
                Instant::now() < deadline,
                "m1 lost the etcd quorum but never went to FAULT\n{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let healed_at = Instant::now();
        partition.heal().unwrap();
        // m1 preempts back (preempt true) once it can hold: one graceful handover.
        answers.wait(&lab, &["m1"], Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
        healed_at
    });
    assert_never_two_answer(&samples, &lab);
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.when >= healed_at)
        .cloned()
        .collect();
    let (at, silence) = longest_silence(&after);
    eprintln!(
        "after the heal the VIP went unanswered for at most {:.0} ms (at {:?}; issue 14 target 150 ms)",
        silence.as_secs_f64() * 1e3,
        at
    );
    // Before the gate: 3.6-5.1 s without a holder after a heal. A graceful handover is one
    // delete plus one create; allow a loaded 2-core machine its scheduling.
    assert!(
        silence < Duration::from_millis(1000),
        "the returning node knocked the holder off before it could hold: {silence:?} unanswered\n{}",
        lab.logs()
    );
}

#[test]
fn a_crashed_holder_is_replaced_after_the_takeover_wait_and_the_time_is_reported() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    // Measure the gate, not an etcd raft election (docs/elections.md): keep etcd's leader
    // off the node that crashes.
    lab.move_etcd_leader_off("m1", &MASTERS);
    let (took, samples) = answers.sampling(&lab, || {
        // The holder crashes: every process on it dies and its link goes down.
        let start = Instant::now();
        lab.host("m1").link_down().unwrap();
        for d in lab.daemons.iter().filter(|d| d.name.ends_with("on m1")) {
            let _ = d.handle.kill();
        }
        answers.wait(&lab, &["m2"], Duration::from_secs(15));
        start.elapsed()
    });
    assert_never_two_answer(&samples, &lab);
    // The takeover wait is H·(1+ρ)+δ = 656 ms after m2 last saw the key change (up to R
    // before the crash); VRRP detection (3 × 100 ms + skew) runs meanwhile.
    eprintln!(
        "fenced failover after a holder crash: {:.0} ms (issue 14 target 1000 ms)",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < Duration::from_millis(2500),
        "fenced failover took {took:?}\n{}",
        lab.logs()
    );
}

#[test]
fn a_frozen_holder_stops_answering_by_its_kernel_fence_before_another_node_takes_over() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    let m1 = lab.haplane("m1");
    let ((), samples) = answers.sampling(&lab, || {
        // Its kernel still runs: only the fence's timeout can stop it answering.
        m1.handle.freeze().unwrap();
        answers.wait(&lab, &["m2"], Duration::from_secs(15));
        m1.handle.thaw().unwrap();
        // preempt true: back to m1 once it can hold again.
        answers.wait(&lab, &["m1"], Duration::from_secs(20));
    });
    assert_never_two_answer(&samples, &lab);
    let addressed_twice = samples.iter().filter(|s| s.addressed.len() > 1).count();
    eprintln!(
        "frozen holder: {addressed_twice} of {} samples had the address on two nodes, 0 answered twice",
        samples.len()
    );
}

#[test]
fn a_thawed_old_holder_goes_backup_under_the_new_one_instead_of_preempting() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(false);
    let answers = Answers::new(&lab, "c");
    let old = one_holder(&lab, Duration::from_secs(5));
    answers.wait(&lab, &[old.as_str()], Duration::from_secs(10));
    let frozen = lab.haplane(&old);
    let (new, samples) = answers.sampling(&lab, || {
        frozen.handle.freeze().unwrap();
        let start = Instant::now();
        let new = loop {
            match answers.now().as_slice() {
                [one] if *one != old => break one.clone(),
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "nobody took over from the frozen {old}\n{}",
                lab.logs()
            );
        };
        answers.wait(&lab, &[new.as_str()], Duration::from_secs(5));
        frozen.handle.thaw().unwrap();
        // The old holder thaws still VRRP master, maybe at a higher priority than the new
        // one; RFC 5798 §6.4.3 would have the new master yield to its next advert. The gate
        // defers first (priority 1..3, below any base priority), so it goes backup.
        let deadline = Instant::now() + Duration::from_secs(10);
        while state(&lab, &old) != "BACKUP" {
            assert!(
                Instant::now() < deadline,
                "the thawed {old} never went backup\n{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(3));
        new
    });
    assert_never_two_answer(&samples, &lab);
    // Knocked off would mean the old holder answering again, or a takeover's silence; one
    // lost probe reply (a 40 ms sample) is not that.
    let taken = samples
        .iter()
        .position(|s| s.answering == [new.clone()])
        .unwrap_or(0);
    let old_again: Vec<_> = samples[taken..]
        .iter()
        .filter(|s| s.answering.contains(&old))
        .map(|s| s.at)
        .collect();
    let (at, silence) = longest_silence(&samples[taken..]);
    assert!(
        old_again.is_empty() && silence < Duration::from_millis(250),
        "the new holder {new} was knocked off: {old} answered at {old_again:?}, nobody for {silence:?} at {at:?}\n{}",
        lab.logs()
    );
    assert_eq!(state(&lab, &new), "MASTER");
    let fence = &lab.status(&old)["fence"];
    assert_eq!(fence["current_holder"], new.as_str(), "{fence}");
    assert_eq!(fence["deferring"], true, "{fence}");
}

#[test]
fn losing_the_holders_own_etcd_member_keeps_the_vip_where_it_is() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    // The member on m1 stops answering (frozen: no refusal, only silence); its raft leader
    // is elsewhere so the majority keeps committing (a raft election is etcd's own outage).
    lab.move_etcd_leader_off("m1", &MASTERS);
    let etcd_m1 = lab
        .daemons
        .iter()
        .find(|d| d.name == "etcd on m1")
        .expect("etcd on m1");
    let ((), samples) = answers.sampling(&lab, || {
        etcd_m1.handle.freeze().unwrap();
        std::thread::sleep(Duration::from_secs(4));
        etcd_m1.handle.thaw().unwrap();
        std::thread::sleep(Duration::from_secs(1));
    });
    // Dropped would mean a silence of at least the time to re-acquire (or another node
    // answering); one lost probe reply (a 40 ms sample) is not that.
    let others: Vec<_> = samples
        .iter()
        .filter(|s| s.answering.iter().any(|h| h != "m1"))
        .collect();
    let (at, silence) = longest_silence(&samples);
    assert!(
        others.is_empty() && silence < Duration::from_millis(250),
        "the VIP moved or dropped: other answers {:?}, nobody for {silence:?} at {at:?}\n{}",
        others.first().map(|s| (s.at, &s.answering)),
        lab.logs()
    );
    assert_eq!(lab.status("m1")["fence"]["leader"], true);
}

#[test]
fn sigterm_releases_the_key_so_the_next_master_answers_without_waiting_out_the_hold() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    let m1 = lab.haplane("m1");
    let (took, samples) = answers.sampling(&lab, || {
        let start = Instant::now();
        m1.handle.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
        answers.wait(&lab, &["m2"], Duration::from_secs(10));
        start.elapsed()
    });
    assert_never_two_answer(&samples, &lab);
    eprintln!(
        "fenced graceful handover: {:.0} ms (issue 14 target 150 ms)",
        took.as_secs_f64() * 1e3
    );
    // The takeover wait would be 656 ms; a released key is taken at once.
    assert!(
        took < Duration::from_millis(600),
        "handover waited out the hold: {took:?}\n{}",
        lab.logs()
    );
}

#[test]
fn with_the_whole_etcd_cluster_unreachable_no_node_answers_for_the_vip_or_holds_the_key() {
    if support::skip() {
        return;
    }
    let lab = fenced_lab(true);
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m1"], Duration::from_secs(10));
    let etcds: Vec<&support::Daemon> = lab
        .daemons
        .iter()
        .filter(|d| d.name.starts_with("etcd on"))
        .collect();
    for e in &etcds {
        e.handle.freeze().unwrap();
    }
    // Safe state: the holder lets go at its deadline; every node goes to FAULT.
    answers.wait(&lab, &[], Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !MASTERS.iter().all(|m| state(&lab, m) == "FAULT") {
        assert!(
            Instant::now() < deadline,
            "not every node went to FAULT\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in MASTERS {
        let s = lab.status(m);
        assert_eq!(s["fence"]["leader"], false, "{m}: {s}");
        assert_eq!(s["fence"]["etcd_quorum"], false, "{m}: {s}");
    }
    let stay = Instant::now() + Duration::from_secs(1);
    while Instant::now() < stay {
        assert_eq!(answers.now(), Vec::<String>::new(), "{}", lab.logs());
    }
    // When etcd comes back, exactly one node answers again.
    for e in &etcds {
        e.handle.thaw().unwrap();
    }
    answers.wait(&lab, &["m1"], Duration::from_secs(20));
}

#[test]
fn a_holder_daemon_restarted_after_sigkill_never_answers_for_the_vip_it_left_on_its_interface() {
    // Soak seed 30 (docs/lab.md "Chaos"): haplane on the holder was SIGKILLed, another node
    // took over after the takeover wait, and the restarted daemon found its predecessor's VIP
    // still on eth0 (the address outlives the hold by its lifetime's backstop). It answered
    // ARP for it beside the new holder until it removed the address: while it replaced the
    // old kernel fence, no fence was in place. preempt false, so the restarted node must
    // never answer again. The probe (every few ms) sees a wide gap; a short one only the
    // kernel's record shows: from the kill on, every ruleset the node's kernel commits must
    // keep the fence.
    if support::skip() {
        return;
    }
    use lab::arp_probe::{ArpProbe, interface_mac};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut lab = fenced_lab(false);
    let old = one_holder(&lab, Duration::from_secs(5));
    let config = lab.dir.path().join("cluster.yaml");
    let probe = ArpProbe::open(lab.host("c"), support::VIP.parse().unwrap()).unwrap();
    let macs: Vec<_> = MASTERS
        .iter()
        .map(|m| {
            let h = lab.host(m);
            (interface_mac(h, h.ifname()).unwrap(), m.to_string())
        })
        .collect();
    let name_of = |mac: &lab::arp_probe::Mac| {
        macs.iter()
            .find(|(m, _)| m == mac)
            .map_or_else(|| format!("unknown {mac}"), |(_, n)| n.clone())
    };
    // Every probe's answerers, with the time it was sent.
    let rounds: Mutex<Vec<(Instant, Vec<String>)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let latest = || {
        rounds
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(3)
            .map(|(_, a)| a.clone())
            .collect::<Vec<_>>()
    };
    let (restarted_at, new) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            probe
                .run(Duration::from_millis(1), &stop, |round| {
                    let mut who: Vec<String> = round.answers.iter().map(name_of).collect();
                    who.sort();
                    rounds.lock().unwrap().push((round.sent, who));
                })
                .unwrap();
        });
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = StopOnDrop(&stop);
        let wait = |what: &str, limit: Duration, ok: &dyn Fn() -> bool, lab: &support::Lab| {
            let start = Instant::now();
            while !ok() {
                assert!(
                    start.elapsed() < limit,
                    "{what} not within {limit:?}\n{}",
                    lab.logs()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let only = |n: &str| latest().iter().all(|a| a == &[n.to_string()]) && latest().len() == 3;
        wait(
            "the holder answering",
            Duration::from_secs(10),
            &|| only(&old),
            &lab,
        );

        let monitor = support::NftMonitor::start(lab.host(&old));
        // SIGKILL haplane on the holder: its link and kernel stay up, and so does its VIP.
        lab.haplane(&old).handle.kill().unwrap();
        let new = {
            let start = Instant::now();
            loop {
                if let Some(n) = MASTERS.iter().find(|m| **m != old && only(m)) {
                    break n.to_string();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "nobody took over from the killed {old}\n{}",
                    lab.logs()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // The pitfall's precondition: the predecessor's VIP is still on the interface.
        assert!(
            lab.holders().contains(&old),
            "the killed {old}'s VIP was gone before the restart: the test shows nothing\n{}",
            lab.logs()
        );
        // Keep the killed daemon's log; the restarted one writes a fresh file.
        let killed = lab
            .daemons
            .iter_mut()
            .find(|d| d.name == format!("haplane on {old}"))
            .unwrap();
        let kept = killed.log.with_extension("killed.log");
        std::fs::rename(&killed.log, &kept).unwrap();
        killed.log = kept;
        killed.name = format!("killed haplane on {old}");
        let restarted_at = Instant::now();
        lab.start_haplane(&old, &config);
        // It removes the leftover address and goes backup under the new holder.
        wait(
            "the leftover VIP removed",
            Duration::from_secs(10),
            &|| lab.holders() == [new.clone()],
            &lab,
        );
        wait(
            "the restarted node deferring to the new holder",
            Duration::from_secs(10),
            &|| lab.status(&old)["fence"]["deferring"] == true && state(&lab, &old) == "BACKUP",
            &lab,
        );
        std::thread::sleep(Duration::from_secs(2));
        let generations = support::fence_generations(&monitor.finish(lab.host(&old)), true);
        assert!(
            generations.iter().all(|e| *e),
            "{old}'s kernel committed a ruleset without the VIP's fence while its leftover VIP was on eth0: {generations:?}\n{}",
            lab.logs()
        );
        drop(_guard);
        prober.join().unwrap();
        (restarted_at, new)
    });
    let rounds = rounds.into_inner().unwrap();
    let taken = rounds
        .iter()
        .position(|(_, a)| *a == [new.clone()])
        .expect("the new holder answered");
    let split: Vec<_> = rounds.iter().filter(|(_, a)| a.len() > 1).collect();
    let old_again: Vec<_> = rounds[taken..]
        .iter()
        .filter(|(_, a)| a.contains(&old))
        .map(|(t, _)| t.saturating_duration_since(restarted_at))
        .collect();
    eprintln!(
        "{} probes, {} after the restart",
        rounds.len(),
        rounds.iter().filter(|(t, _)| *t >= restarted_at).count()
    );
    assert!(
        split.is_empty() && old_again.is_empty(),
        "{} probes were answered by two nodes; the restarted {old} answered {} probes beside {new} (first {:?} after its restart)\n{}",
        split.len(),
        old_again.len(),
        old_again.first(),
        lab.logs()
    );
}

#[test]
fn a_holder_stalled_past_its_hold_but_not_replaced_stays_the_holder_with_preempt_false() {
    // Chaos seed 3 (issue 11, docs/lab.md): after the final heal the VIP moved from m2 to
    // m1 although the lab runs preempt false. The holder's daemon stalled (a loaded 2-core
    // machine) past its hold but not past the others' takeover wait: VRRP made the best
    // backup, m1, master at its deferring priority (3); the thawed m2 deferred too, as
    // every stalled gate does until etcd answers, at its own rank (2), so it went backup
    // under m1 and handed its key over. A holder whose key nobody took must stay master.
    // A long stopLatency stretches the takeover wait (H·(1+ρ)+δ = 3.66 s) so the stall
    // fits between the hold and the takeover on any machine.
    if support::skip() {
        return;
    }
    let (lab, path) = fenced_lab_config(false, "  gate: {stopLatency: 3s}\n");
    // m2 first, so the holder is not the highest priority; then m1 joins as its only
    // backup (haplane does not run on m3, so the backup that becomes master ranks above m2).
    let mut lab = start_fenced(lab, &path, &["m2"], false);
    lab.wait_holders(&["m2"], Duration::from_secs(10));
    lab.start_haplane("m1", &path);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(lab.status("m1")["fence"]["armed"] == true
        && lab.status("m1")["fence"]["current_holder"] == "m2"
        && state(&lab, "m1") == "BACKUP")
    {
        assert!(
            Instant::now() < deadline,
            "m1 never settled as a backup under m2\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answers = Answers::new(&lab, "c");
    answers.wait(&lab, &["m2"], Duration::from_secs(10));
    let m2 = lab.haplane("m2");
    let ((), samples) = answers.sampling(&lab, || {
        let frozen = Instant::now();
        m2.handle.freeze().unwrap();
        // m2's adverts stop: the best backup becomes master, deferring to m2's key.
        let deadline = Instant::now() + Duration::from_secs(3);
        while state(&lab, "m1") != "MASTER" {
            assert!(
                Instant::now() < deadline,
                "m1 never became VRRP master while m2 was frozen\n{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Past m2's hold (600 ms), well before anyone may take its key over.
        std::thread::sleep(
            (frozen + Duration::from_millis(1200)).saturating_duration_since(Instant::now()),
        );
        assert_eq!(
            lab.status("m1")["fence"]["current_holder"],
            "m2",
            "m1 took the key over during the stall: the test shows nothing\n{}",
            lab.logs()
        );
        m2.handle.thaw().unwrap();
        answers.wait(&lab, &["m2"], Duration::from_secs(5));
        std::thread::sleep(Duration::from_secs(3));
    });
    assert_never_two_answer(&samples, &lab);
    let others: Vec<_> = samples
        .iter()
        .filter(|s| s.answering.iter().any(|h| h != "m2"))
        .map(|s| (s.at, s.answering.clone()))
        .collect();
    assert!(
        others.is_empty() && lab.holders() == ["m2"] && state(&lab, "m2") == "MASTER",
        "the VIP moved away from the stalled holder m2 (preempt false): {:?}; holders now {:?}\n{}",
        others.first(),
        lab.holders(),
        lab.logs()
    );
}
