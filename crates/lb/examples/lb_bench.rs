//! Runs the balancer from command-line arguments, for bench/lb/run.sh.
//!
//! lb_bench --listen 127.0.0.1:8000 --backend 127.0.0.1:8081 [--backend ...]
//!          [--threads 1] [--check http|tcp|none] [--path /readyz] [--no-splice]
//!          [--policy round-robin|least-connections|random-two-choices] [--until-signal] [--no-keepalive]
//! Runs until stdin closes (unless --until-signal) or SIGINT/SIGTERM, then drains.

use std::time::Duration;

use lb::{BackendConfig, Balancer, CheckKind, HttpCheck, LbConfig, Policy};

fn main() {
    let mut cfg = LbConfig {
        health_check: lb::HealthCheckConfig {
            kind: CheckKind::Http(HttpCheck::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut threads = 1usize;
    let mut watch_stdin = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--listen" => cfg
                .listen
                .push(val().parse().unwrap_or_else(|e| die(&format!("{e}")))),
            "--backend" => cfg.backends.push(BackendConfig::new(
                val().parse().unwrap_or_else(|e| die(&format!("{e}"))),
            )),
            "--threads" => threads = val().parse().unwrap_or_else(|e| die(&format!("{e}"))),
            "--path" => {
                if let CheckKind::Http(h) = &mut cfg.health_check.kind {
                    h.path = val();
                }
            }
            "--check" => {
                cfg.health_check.kind = match val().as_str() {
                    "http" => CheckKind::Http(HttpCheck::default()),
                    "tcp" => CheckKind::Tcp,
                    "none" => CheckKind::None,
                    other => die(&format!("unknown check {other}")),
                }
            }
            "--policy" => {
                cfg.policy = match val().as_str() {
                    "round-robin" => Policy::RoundRobin,
                    "least-connections" => Policy::LeastConnections,
                    "random-two-choices" => Policy::RandomTwoChoices,
                    other => die(&format!("unknown policy {other}")),
                }
            }
            "--no-splice" => cfg.splice = false,
            "--until-signal" => watch_stdin = false,
            "--no-keepalive" => cfg.tcp_keepalive = None,
            other => die(&format!("unknown argument {other}")),
        }
    }
    // One thread: a current-thread runtime, like haproxy's nbthread 1 event loop.
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| die(&format!("runtime: {e}")));
    rt.block_on(async move {
        let b = Balancer::start(cfg)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        println!("listening {:?}", b.local_addrs());
        let stdin_closed = async move {
            if !watch_stdin {
                return std::future::pending().await;
            }
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        };
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = stdin_closed => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!(
            "{}",
            serde_json::to_string(&b.snapshot()).unwrap_or_default()
        );
        b.drain(Duration::from_secs(1)).await;
    });
    // The stdin reader may still block; do not wait for it.
    rt.shutdown_background();
}

fn die(msg: &str) -> ! {
    eprintln!("lb_bench: {msg}");
    std::process::exit(2)
}
