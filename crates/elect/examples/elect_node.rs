//! One elector with an optional action, for process-level tests (SIGKILL, SIGSTOP).
//!
//! ```text
//! elect_node --endpoints URL[,URL..] --name NAME --identity ID [--ttl-ms N] [--margin-ms N]
//!            [--manifest SRC DST | --exec CMD ARGS..]
//! ```
//! Prints `leader <ms left>` / `follower <leader|->` on role changes; SIGTERM resigns.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use elect::{Election, ElectionAction, ElectionConfig, EtcdConfig, Role};

fn usage(msg: &str) -> ! {
    eprintln!("elect_node: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut endpoints = Vec::new();
    let mut cfg = ElectionConfig::new("demo", "node");
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--endpoints" => endpoints = val().split(',').map(String::from).collect(),
            "--name" => cfg.name = val(),
            "--identity" => cfg.identity = val(),
            "--ttl-ms" => {
                cfg.ttl =
                    Duration::from_millis(val().parse().unwrap_or_else(|_| usage("bad --ttl-ms")))
            }
            "--margin-ms" => {
                cfg.margin = Duration::from_millis(
                    val().parse().unwrap_or_else(|_| usage("bad --margin-ms")),
                )
            }
            "--manifest" => {
                let source = PathBuf::from(val());
                let target = PathBuf::from(val());
                cfg.action = Some(ElectionAction::Manifest { source, target });
            }
            "--exec" => {
                let command: Vec<String> = args.by_ref().collect();
                cfg.action = Some(ElectionAction::Exec {
                    command,
                    grace: Duration::from_secs(2),
                });
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let client = match elect::connect(&EtcdConfig::plain(endpoints)).await {
        Ok(c) => c,
        Err(e) => usage(&e.to_string()),
    };
    let election = match Election::spawn(client, cfg) {
        Ok(e) => e,
        Err(e) => usage(&e.to_string()),
    };
    let mut role = election.role();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .unwrap_or_else(|e| usage(&e.to_string()));
    let mut last = String::new();
    loop {
        let line = match &*role.borrow_and_update() {
            Role::Leader { .. } => "leader".to_string(),
            Role::Follower { leader } => format!("follower {}", leader.as_deref().unwrap_or("-")),
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::select! {
            r = role.changed() => if r.is_err() { break },
            _ = term.recv() => break,
        }
    }
    election.resign().await;
}
