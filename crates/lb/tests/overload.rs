//! A burst of connects that overflows a live backend's listen queue (what a reconnect storm
//! does to the surviving apiserver) makes it overloaded, not dead: it stays up and the sessions
//! it already serves are not reset.

mod common;

use std::time::Duration;

use common::*;
use lb::Balancer;

/// Sessions held through the balancer before the burst; each must still answer after it.
const HELD: usize = 20;
/// Concurrent client connects of the burst.
const BURST: usize = 3_000;
/// The default: this many failures in a row mark a backend dead unless they are judged overloaded.
const PASSIVE_FALL: u32 = 3;
/// How long one client of the burst may take.
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_connect_burst_that_overflows_a_backends_listen_queue_leaves_it_up_and_its_sessions_open() {
    in_netns(|| async {
        let n = Nginx::start_with_backlog(1).await;
        let mut cfg = lb_config(&[n.addr()]);
        cfg.passive_fall = PASSIVE_FALL;
        let b = Balancer::start(cfg).await.unwrap();
        let lb = b.local_addrs()[0];
        let mut held = Vec::new();
        for _ in 0..HELD {
            let mut c = Conn::open(lb).await.unwrap();
            assert_eq!(port_of(&c.request().await.unwrap()), n.port);
            held.push(c);
        }

        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                tokio::spawn(async move {
                    // Bounded, so a lost client fails the count instead of hanging the test.
                    tokio::time::timeout(LIMIT, async {
                        let mut c = Conn::open(lb).await?;
                        c.request().await?;
                        Ok::<_, std::io::Error>(c)
                    })
                    .await
                })
            })
            .collect();
        let mut answered = Vec::new();
        let (mut failed, mut stuck) = (0, 0);
        for t in burst {
            match t.await.unwrap() {
                Ok(Ok(c)) => answered.push(c),
                Ok(Err(_)) => failed += 1,
                Err(_) => stuck += 1,
            }
        }

        let mut held_lost = 0;
        for c in &mut held {
            match tokio::time::timeout(LIMIT, c.request()).await {
                Ok(Ok(body)) => assert_eq!(port_of(&body), n.port),
                _ => held_lost += 1,
            }
        }

        let s = status_of(&b, n.addr());
        eprintln!(
            "burst of {BURST}: {} answered, {failed} failed, {stuck} without an answer after {LIMIT:?}; backend: connect errors {}, \
             overloaded {}, dead transitions {}, sessions closed on down {}; \
             held sessions lost {held_lost} of {HELD}",
            answered.len(),
            s.connect_errors,
            s.connects_overloaded,
            s.down_transitions,
            s.sessions_closed_on_down
        );
        // Otherwise the test proves nothing: the queue must really have overflowed.
        assert!(
            s.connect_errors >= PASSIVE_FALL as u64,
            "fewer connects failed than passive_fall: the burst did not overflow enough to test"
        );
        assert_eq!(s.down_transitions, 0, "the live backend was marked dead");
        assert_eq!(s.sessions_closed_on_down, 0);
        assert_eq!(held_lost, 0, "sessions held through the burst were lost");
    });
}
