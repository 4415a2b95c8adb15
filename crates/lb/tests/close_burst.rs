//! Issue 10, "no new connection may reach the dead backend": a backend that closes its idle
//! sessions all at once is suspect until a check answers (src/burst.rs).
//!
//! The backend here is a small TCP server in the test, not nginx: what matters is a kernel
//! state nginx shows only by chance. A killed process's sockets are released one by one and its
//! listen socket can go last, so for a while every session is closed and the kernel still
//! completes handshakes that no process will accept (measured with a SIGKILLed nginx holding
//! 9 750 connections: 0.5 s; crates/lb/README.md, "Explained"). `Closer::close_all(false)` makes
//! that state at will: it closes every connection and stops accepting, the listener stays.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use lb::{Balancer, Health};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A backend that answers `GET` like the test nginx ("backend PORT") on keep-alive connections
/// and can close all of them at once.
struct Closer {
    addr: SocketAddr,
    /// Bumped to close every connection; the flag says whether accepting goes on.
    close: watch::Sender<(u64, bool)>,
}

impl Closer {
    async fn start() -> Closer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, rx) = watch::channel((0, true));
        tokio::spawn(accept_loop(listener, rx));
        Closer { addr, close }
    }

    /// Closes every connection; with `accepting` false nothing is accepted afterwards, but the
    /// listener stays open, so connects still succeed in the kernel: a dying process.
    fn close_all(&self, accepting: bool) {
        self.close.send_modify(|(n, a)| {
            *n += 1;
            *a = accepting;
        });
    }
}

async fn accept_loop(listener: TcpListener, mut rx: watch::Receiver<(u64, bool)>) {
    let port = listener.local_addr().unwrap().port();
    loop {
        if !rx.borrow().1 {
            // Stop accepting for good: connects pile up in the kernel's queue.
            std::future::pending::<()>().await;
        }
        tokio::select! {
            r = listener.accept() => {
                let Ok((s, _)) = r else { continue };
                let mut conn_rx = rx.clone();
                conn_rx.mark_unchanged();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve(s, port) => {}
                        _ = conn_rx.changed() => {} // dropped: FIN
                    }
                });
            }
            _ = rx.changed() => {}
        }
    }
}

/// Answers each request on `s` until the client closes it.
async fn serve(mut s: TcpStream, port: u16) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let close = String::from_utf8_lossy(&buf[..end])
                .to_ascii_lowercase()
                .contains("connection: close");
            buf.drain(..end + 4);
            let body = format!("backend {port}\n");
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if s.write_all(head.as_bytes()).await.is_err()
                || s.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
            if close {
                return;
            }
        }
    }
}

/// Checks every 60 s (the first at a random point of that): a regular one is unlikely to
/// decide anything during the test, only the one a close burst runs at once.
fn slow_checks(cfg: &mut lb::LbConfig) {
    cfg.health_check.interval = Duration::from_secs(60);
    cfg.health_check.timeout = Duration::from_millis(500);
    cfg.health_check.rise = 2;
    cfg.health_check.fall = 2;
    cfg.slow_start = Duration::ZERO;
}

/// A closer and an nginx behind a balancer with [`slow_checks`].
async fn closer_beside_nginx() -> (Closer, Nginx, Balancer, SocketAddr) {
    let closer = Closer::start().await;
    let other = Nginx::start().await;
    let mut cfg = lb_config(&[closer.addr, other.addr()]);
    slow_checks(&mut cfg);
    let b = Balancer::start(cfg).await.unwrap();
    let lb = b.local_addrs()[0];
    (closer, other, b, lb)
}

/// Opens 40 keep-alive sessions through the balancer (round-robin: 20 on each backend), lets
/// them idle past the 1 s that makes a close "idle", and returns the ones on `port`.
async fn idle_sessions_on(lb: SocketAddr, port: u16) -> Vec<Conn> {
    let mut on_port = Vec::new();
    for _ in 0..40 {
        let mut c = Conn::open(lb).await.unwrap();
        if port_of(&c.request().await.unwrap()) == port {
            on_port.push(c);
        }
    }
    assert!(
        on_port.len() >= 16,
        "only {} sessions on {port}",
        on_port.len()
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    on_port
}

/// Waits until every session has been closed by the balancer (it passes the backend's FIN on
/// only after it has judged the close).
async fn all_closed(sessions: Vec<Conn>) {
    for mut c in sessions {
        let mut byte = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), c.0.read(&mut byte)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "the session was not closed: {r:?}"
        );
    }
}

#[test]
fn a_backend_that_closed_its_idle_sessions_at_once_gets_no_new_session_while_it_does_not_answer() {
    in_netns(|| async {
        let (dying, other, b, lb) = closer_beside_nginx().await;
        let sessions = idle_sessions_on(lb, dying.addr.port()).await;
        dying.close_all(false);
        all_closed(sessions).await;

        let s = status_of(&b, dying.addr);
        assert!(s.suspect && !s.in_service, "{s:?}");
        assert_eq!(s.close_bursts, 1, "{s:?}");
        assert_eq!(s.state, Health::Up, "no check has decided yet: {s:?}");
        // The first regular check may have passed before the burst; later ones get no answer.
        let checks_before = s.checks;
        // Round-robin would send every other one to the dying backend, where it would hang.
        for i in 0..20 {
            let r = tokio::time::timeout(Duration::from_secs(1), get(lb, "/")).await;
            let body = r
                .unwrap_or_else(|_| panic!("request {i} hung: sent to the dying backend"))
                .unwrap();
            assert_eq!(port_of(&body), other.port, "request {i}");
        }
        // The check run at once gets no answer (it times out after 500 ms): still suspect.
        wait_for(Duration::from_secs(2), || {
            status_of(&b, dying.addr).checks > checks_before
        })
        .await
        .expect("a check ran");
        let s = status_of(&b, dying.addr);
        assert!(s.suspect && !s.in_service, "{s:?}");
        assert!(s.last_check_error.is_some(), "{s:?}");
    });
}

#[test]
fn a_backend_that_closed_its_idle_sessions_but_answers_is_back_after_one_check() {
    // The false alarm: a live backend's idle timeout closing connections that were all opened
    // together. The check run at once answers, long before a regular one (every 60 s).
    in_netns(|| async {
        let (closer, _other, b, lb) = closer_beside_nginx().await;
        let sessions = idle_sessions_on(lb, closer.addr.port()).await;
        closer.close_all(true);
        all_closed(sessions).await;
        assert_eq!(status_of(&b, closer.addr).close_bursts, 1);
        wait_for(Duration::from_secs(1), || {
            status_of(&b, closer.addr).in_service
        })
        .await
        .expect("back in service after the check run at once");
        let s = status_of(&b, closer.addr);
        assert!(
            !s.suspect && s.state == Health::Up && s.down_transitions == 0,
            "{s:?}"
        );
        let landed: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(port_of(&get(lb, "/").await.unwrap()));
            }
            v
        };
        assert!(landed.contains(&closer.addr.port()), "{landed:?}");
    });
}
