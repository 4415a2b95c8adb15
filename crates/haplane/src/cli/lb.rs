//! `haplane lb drain|enable|status`: a backend's admin state on this node's balancer, through
//! the daemon's root-only admin socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use haplane::admin::{self, AdminState, Request};

/// Arguments of `haplane lb`.
#[derive(Debug, Args)]
pub struct LbArgs {
    #[command(subcommand)]
    command: LbCommand,
    /// The cluster file (names the admin socket and the backends).
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/haplane/cluster.yaml"
    )]
    config: PathBuf,
    /// The node whose daemon to ask; by default the node whose address is on this host.
    #[arg(long, global = true)]
    node: Option<String>,
    /// Print the daemon's JSON answer instead of a sentence.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum LbCommand {
    /// Take a backend out of service: no new sessions; established ones continue until they
    /// end (haproxy's `set server state drain`). Kept across reloads, not restarts.
    Drain {
        /// IP:PORT as configured, an IP if only one backend has it, or a node name.
        backend: String,
    },
    /// Put a drained backend back; its share ramps over loadBalancer.slowStart.
    Enable {
        /// IP:PORT as configured, an IP if only one backend has it, or a node name.
        backend: String,
    },
    /// Every backend's health, admin state and sessions.
    Status,
}

/// Runs `haplane lb`.
pub fn run(args: LbArgs) -> anyhow::Result<ExitCode> {
    let (cluster, _) = config::Cluster::load(&args.config)?;
    let target = admin::target(&cluster, args.node.as_deref())?;
    let request = match &args.command {
        LbCommand::Drain { backend } | LbCommand::Enable { backend } => Request::LbAdmin {
            backend: admin::resolve_backend(&cluster, backend)?,
            state: match args.command {
                LbCommand::Drain { .. } => AdminState::Drain,
                _ => AdminState::Ready,
            },
        },
        LbCommand::Status => Request::LbStatus,
    };
    let reply = admin::call(&target.socket, &request, Duration::from_secs(10))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    match args.command {
        LbCommand::Drain { .. } | LbCommand::Enable { .. } => println!(
            "node {}: backend {} admin {}, health {}, {} session(s) open{}",
            target.node,
            reply["address"].as_str().unwrap_or("?"),
            reply["admin"].as_str().unwrap_or("?"),
            reply["state"].as_str().unwrap_or("?"),
            reply["activeConnections"],
            match reply["admin"].as_str() {
                Some("drain") => "; no new sessions, established ones continue",
                _ => "",
            }
        ),
        LbCommand::Status => {
            println!(
                "{:<24} {:>8} {:>6} {:>8} {:>10} {:>8}",
                "backend", "state", "admin", "weight", "sessions", "ramp"
            );
            for b in reply["backends"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:>8} {:>6} {:>8} {:>10} {:>8}",
                    b["address"].as_str().unwrap_or("?"),
                    b["state"].as_str().unwrap_or("?"),
                    b["admin"].as_str().unwrap_or("?"),
                    b["weight"],
                    b["activeConnections"],
                    b["slowStartRamp"]
                        .as_f64()
                        .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0)),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
