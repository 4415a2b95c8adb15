//! The gate's rules, one input at a time (docs/elections.md, "The VIP gate").

use std::time::{Duration, Instant};

use gate::{
    Action, ConfigError, Defer, Gate, GateConfig, Held, KeyState, Op, Outcome, RequestFailed,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(g: &mut Gate) -> Vec<Action> {
    std::iter::from_fn(|| g.poll_action()).collect()
}

fn sent(actions: &[Action]) -> Option<(u64, Op)> {
    actions.iter().find_map(|a| match a {
        Action::Send { id, op } => Some((*id, *op)),
        _ => None,
    })
}

fn held_by(holder: &str, rev: i64) -> KeyState {
    KeyState {
        revision: rev,
        value: Some(Held {
            holder: holder.into(),
            mod_revision: rev,
        }),
    }
}

/// Node "a", preempt false, holding its key (revision 6) at `t0`, its actions drained.
fn holding_its_key_without_preempt() -> (Gate, Instant) {
    let t0 = Instant::now();
    let mut cfg = GateConfig::new("a");
    cfg.preempt = false;
    let mut g = Gate::new(cfg, t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(t0, id, Ok(Outcome::Read(held_by("a", 5))));
    g.handle_want(t0, true);
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(t0, id, Ok(Outcome::Done { revision: 6 }));
    drain(&mut g);
    (g, t0)
}

#[test]
fn a_challenger_swaps_only_after_hold_times_one_plus_rho_plus_delta_from_when_it_learned() {
    let t0 = Instant::now();
    let cfg = GateConfig::new("b");
    let wait = cfg.takeover_wait();
    assert_eq!(wait, ms(600).mul_f64(1.01) + ms(50));
    let mut g = Gate::new(cfg, t0).unwrap();
    let (id, op) = sent(&drain(&mut g)).unwrap();
    assert_eq!(op, Op::Read);
    g.handle_want(t0, true);
    // The answer arrives 5 ms later: w is the arrival, not the send.
    let w = t0 + ms(5);
    g.handle_response(w, id, Ok(Outcome::Read(held_by("a", 7))));
    let mut t = w;
    while t < w + wait + ms(50) {
        for a in drain(&mut g) {
            if let Action::Send { id, op } = a {
                if let Op::Swap { expect } = op {
                    assert_eq!(expect, 7);
                    assert!(t >= w + wait, "swapped {:?} after learning", t - w);
                    return;
                }
                // Reads keep showing the same revision: w stays the first sighting.
                g.handle_response(t, id, Ok(Outcome::Read(held_by("a", 7))));
            }
        }
        t = g.poll_timeout().unwrap().max(t + ms(1));
        g.handle_timeout(t);
    }
    panic!("no takeover");
}

#[test]
fn a_renewal_extends_the_hold_from_when_it_was_sent_not_when_it_was_answered() {
    let t0 = Instant::now();
    let mut g = Gate::new(GateConfig::new("a"), t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(
        t0 + ms(1),
        id,
        Ok(Outcome::Read(KeyState {
            revision: 3,
            value: None,
        })),
    );
    g.handle_want(t0 + ms(2), true);
    let (id, op) = sent(&drain(&mut g)).unwrap();
    assert_eq!(op, Op::Create);
    // A slow answer: 150 ms.
    g.handle_response(t0 + ms(152), id, Ok(Outcome::Done { revision: 4 }));
    let actions = drain(&mut g);
    assert!(
        actions.contains(&Action::Hold {
            until: Some(t0 + ms(2) + ms(600))
        }),
        "{actions:?}"
    );
}

#[test]
fn a_graceful_release_closes_the_fence_before_it_deletes_the_key() {
    let t0 = Instant::now();
    let mut g = Gate::new(GateConfig::new("a"), t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(t0, id, Ok(Outcome::Read(held_by("a", 9))));
    g.handle_want(t0, true);
    let (id, op) = sent(&drain(&mut g)).unwrap();
    assert_eq!(op, Op::Swap { expect: 9 }, "our own key: renewed at once");
    g.handle_response(t0 + ms(1), id, Ok(Outcome::Done { revision: 10 }));
    drain(&mut g);
    g.handle_want(t0 + ms(2), false);
    let actions = drain(&mut g);
    let release = actions.iter().position(|a| *a == Action::Release);
    let delete = actions.iter().position(|a| {
        matches!(
            a,
            Action::Send {
                op: Op::Delete { expect: 10 },
                ..
            }
        )
    });
    assert!(
        release.is_some() && delete.is_some() && release < delete,
        "{actions:?}"
    );
    assert!(!g.is_released());
}

#[test]
fn a_key_won_after_vrrp_let_go_is_deleted_at_once_not_left_for_the_takeover_wait() {
    // Seen in the drill's graceful-shutdown: both backups became VRRP master after the
    // priority-0 advert, the lower one created the key, then yielded to the higher one before
    // the answer came; holding a key it no longer wanted, it let the new master wait out the
    // whole takeover wait (690 ms without a holder) instead of deleting it.
    let t0 = Instant::now();
    let mut g = Gate::new(GateConfig::new("c"), t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(
        t0,
        id,
        Ok(Outcome::Read(KeyState {
            revision: 4,
            value: None,
        })),
    );
    g.handle_want(t0, true);
    let (id, op) = sent(&drain(&mut g)).unwrap();
    assert_eq!(op, Op::Create);
    g.handle_want(t0 + ms(2), false);
    drain(&mut g);
    g.handle_response(t0 + ms(3), id, Ok(Outcome::Done { revision: 5 }));
    let actions = drain(&mut g);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Send {
                op: Op::Delete { expect: 5 },
                ..
            }
        )),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Hold { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_holder_whose_renewals_fail_drops_the_vip_at_its_deadline_and_keeps_its_key() {
    let t0 = Instant::now();
    let mut g = Gate::new(GateConfig::new("a"), t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(
        t0,
        id,
        Ok(Outcome::Read(KeyState {
            revision: 1,
            value: None,
        })),
    );
    g.handle_want(t0, true);
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(t0, id, Ok(Outcome::Done { revision: 2 }));
    drain(&mut g);
    let mut t = t0;
    let mut released_at = None;
    while t < t0 + ms(1000) {
        t = g.poll_timeout().unwrap();
        g.handle_timeout(t);
        for a in drain(&mut g) {
            match a {
                Action::Send { id, .. } => g.handle_response(t, id, Err(RequestFailed)),
                Action::Release => released_at = Some(t),
                _ => {}
            }
        }
        if released_at.is_some() {
            break;
        }
    }
    assert_eq!(released_at, Some(t0 + ms(600)));
    assert_eq!(
        g.status(t).key_holder.as_deref(),
        Some("a"),
        "it keeps its key"
    );
}

#[test]
fn a_holder_whose_renewals_lapse_defers_above_the_nodes_deferring_to_it_and_below_any_holder() {
    // Lab drill partition-heal (preempt true): the cut-off holder kept its base priority, so
    // at the heal the live holder went backup under it (RFC 5798 §6.4.3) before it could hold
    // the VIP: 283-345 ms with nobody answering. Deferring at the rank of an unconfirmed own
    // key, it stays master through an etcd outage (the others defer to it, lower) but goes
    // backup under a live holder, and preempts only once etcd has told it who holds the key.
    let (mut g, t0) = holding_its_key_without_preempt();
    let mut t = t0;
    let mut deferred = None;
    while t < t0 + ms(1000) && deferred.is_none() {
        t = g.poll_timeout().unwrap();
        g.handle_timeout(t);
        for a in drain(&mut g) {
            match a {
                Action::Send { id, .. } => g.handle_response(t, id, Err(RequestFailed)),
                Action::Defer(d) => deferred = Some((t, d)),
                _ => {}
            }
        }
    }
    assert_eq!(
        deferred,
        Some((t0 + ms(600), Defer::OwnKeyUnconfirmed)),
        "at the deadline, with the release"
    );
    // The heal: the next renewal finds b holding the key.
    let mut answered = false;
    while !answered {
        t = g.poll_timeout().unwrap();
        g.handle_timeout(t);
        for a in drain(&mut g) {
            if let Action::Send { id, op } = a {
                assert_eq!(op, Op::Swap { expect: 6 });
                g.handle_response(t + ms(2), id, Ok(Outcome::Refused(held_by("b", 9))));
                answered = true;
            }
        }
    }
    let actions = drain(&mut g);
    assert!(
        actions.contains(&Action::Defer(Defer::ToHolder)),
        "without preempt it defers to b: {actions:?}"
    );
}

#[test]
fn a_thawed_holder_defers_until_etcd_answers_a_request_sent_after_the_thaw() {
    let (mut g, t0) = holding_its_key_without_preempt();
    // Frozen for 5 s: the first call after that is long past the requested wake-up.
    let thaw = t0 + Duration::from_secs(5);
    g.handle_timeout(thaw);
    let actions = drain(&mut g);
    assert!(actions.contains(&Action::Release), "{actions:?}");
    assert!(
        actions.contains(&Action::Defer(Defer::OwnKeyUnconfirmed)),
        "{actions:?}"
    );
    let (id, op) = sent(&actions).unwrap();
    assert_eq!(op, Op::Swap { expect: 6 });
    // etcd: another node took over meanwhile.
    g.handle_response(thaw + ms(2), id, Ok(Outcome::Refused(held_by("b", 9))));
    let actions = drain(&mut g);
    assert!(
        actions.contains(&Action::Defer(Defer::ToHolder)),
        "without preempt it defers to b, at the rank of any node deferring to a holder: {actions:?}"
    );
    assert_eq!(g.status(thaw).key_holder.as_deref(), Some("b"));
    assert!(g.status(thaw + ms(2)).deferring);
}

#[test]
fn a_holder_stalled_past_its_hold_but_not_replaced_outranks_the_nodes_deferring_to_it_and_holds_again()
 {
    // Chaos seed 3 (issue 11): a stalled holder that deferred at the rank of the nodes
    // deferring to it yielded VRRP mastership to one of them and handed it the VIP, with
    // preempt false. While its own key is unconfirmed it defers above them (still below
    // any holder), and the first renewal that succeeds ends the deferral.
    let (mut g, t0) = holding_its_key_without_preempt();
    // Starved for 1 s: past the hold (600 ms), short of anyone's takeover wait.
    let late = t0 + Duration::from_secs(1);
    g.handle_timeout(late);
    let actions = drain(&mut g);
    assert!(actions.contains(&Action::Release), "{actions:?}");
    assert!(
        actions.contains(&Action::Defer(Defer::OwnKeyUnconfirmed)),
        "{actions:?}"
    );
    let (id, op) = sent(&actions).unwrap();
    assert_eq!(op, Op::Swap { expect: 6 }, "it renews at once");
    g.handle_response(late + ms(3), id, Ok(Outcome::Done { revision: 7 }));
    let actions = drain(&mut g);
    assert!(
        actions.contains(&Action::Hold {
            until: Some(late + GateConfig::new("a").hold)
        }),
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Defer(Defer::No)), "{actions:?}");
    assert!(!g.status(late + ms(3)).deferring);
}

#[test]
fn parameters_that_break_the_protocol_are_refused_with_the_bound_they_break() {
    let mut c = GateConfig::new("a");
    c.hold = ms(150);
    assert!(matches!(c.validate(), Err(ConfigError::Hold { .. })));
    let mut c = GateConfig::new("a");
    c.request_timeout = ms(600);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::RequestTimeout { .. })
    ));
    let mut c = GateConfig::new("a");
    c.clock_rate_bound = -0.1;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "clockRateBound -0.1 must be between 0 and 1 (0.01 = 1 %)"
    );
    assert!(GateConfig::new("").validate().is_err());
}

#[test]
fn a_thawed_node_drops_its_quorum_check_once_and_raises_it_only_after_two_new_answers() {
    // docs/elections.md "Quorum": after max(3 s, H) without an answer the check falls, and
    // two answers in a row bring it back. The answers from before a freeze are not those two:
    // counting them, the check rose at the next call and fell at the one after (its last
    // answer still 5 s old), once per VRRP loop turn (lab drill holder-freeze, m2's log).
    let (mut g, t0) = holding_its_key_without_preempt();
    let thaw = t0 + Duration::from_secs(5);
    let quorum = |actions: &[Action]| -> Vec<bool> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Quorum(q) => Some(*q),
                _ => None,
            })
            .collect()
    };
    g.handle_timeout(thaw);
    let actions = drain(&mut g);
    assert_eq!(quorum(&actions), [false], "{actions:?}");
    let (id, _) = sent(&actions).unwrap();
    for i in 1..=5 {
        g.handle_timeout(thaw + ms(i));
        let actions = drain(&mut g);
        assert_eq!(
            quorum(&actions),
            [],
            "no answer since the thaw, so no change at call {i}: {actions:?}"
        );
    }
    g.handle_response(thaw + ms(6), id, Ok(Outcome::Done { revision: 7 }));
    let actions = drain(&mut g);
    assert_eq!(quorum(&actions), [], "one answer is not two: {actions:?}");
    g.handle_timeout(thaw + ms(110));
    let (id, _) = sent(&drain(&mut g)).expect("the next renewal");
    g.handle_response(thaw + ms(112), id, Ok(Outcome::Done { revision: 8 }));
    let actions = drain(&mut g);
    assert_eq!(quorum(&actions), [true], "{actions:?}");
}

#[test]
fn a_renewal_seen_on_the_watch_starts_the_challengers_wait_when_it_arrives_and_older_news_is_ignored()
 {
    // Lab drill holder-crash with etcd's raft leader on the holder: the holder's last renewal
    // committed just before it died, the challenger first *read* it after etcd's election
    // and waited H(1+ρ)+δ from then. The watch delivers it at once, and that is still after
    // the commit, which is all the proof asks of w (docs/elections.md).
    let t0 = Instant::now();
    let cfg = GateConfig::new("b");
    let wait = cfg.takeover_wait();
    let mut g = Gate::new(cfg, t0).unwrap();
    let (id, _) = sent(&drain(&mut g)).unwrap();
    g.handle_response(t0, id, Ok(Outcome::Read(held_by("a", 7))));
    drain(&mut g);
    // a's renewal 8 commits; the watch shows it 20 ms later.
    let w = t0 + ms(20);
    g.handle_watch(w, held_by("a", 8));
    assert_eq!(g.status(w).key_mod_revision, Some(8));
    assert_eq!(g.status(w).takeover_at, Some(w + wait));
    // A late event for revision 7 changes nothing.
    g.handle_watch(w + ms(5), held_by("a", 7));
    assert_eq!(g.status(w + ms(5)).key_mod_revision, Some(8));
    assert_eq!(g.status(w + ms(5)).takeover_at, Some(w + wait));
    // etcd then elects a leader for a while: every request fails, and the VRRP master
    // (this node) swaps on 8 once etcd answers, at w + wait at the earliest.
    g.handle_want(w + ms(300), true);
    let mut t = w + ms(300);
    let etcd_back = w + ms(900);
    loop {
        for a in drain(&mut g) {
            if let Action::Send { id, op } = a {
                if t < etcd_back {
                    g.handle_response(t, id, Err(RequestFailed));
                } else if let Op::Swap { expect } = op {
                    assert_eq!(expect, 8);
                    assert!(t >= w + wait);
                    assert!(
                        t < etcd_back + ms(150),
                        "swapped {:?} after etcd was back",
                        t - etcd_back
                    );
                    return;
                } else {
                    // The read after the election shows 8, as the watch did: no new wait.
                    g.handle_response(t, id, Ok(Outcome::Read(held_by("a", 8))));
                }
            }
        }
        assert!(t < etcd_back + ms(1000), "no takeover");
        t = g.poll_timeout().unwrap().max(t + ms(1));
        g.handle_timeout(t);
    }
}
