//! `haplane maintenance enter|exit|status`: take a master out of the VIP rotation without a
//! failed request, and put it back (docs/maintenance.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use haplane::admin::{self, MaintenanceAction, Request};

/// Arguments of `haplane maintenance`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    command: MaintenanceCommand,
    /// The cluster file (names the admin socket).
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/haplane/cluster.yaml"
    )]
    config: PathBuf,
    /// The node to act on; by default the node whose address is on this host.
    #[arg(long, global = true)]
    node: Option<String>,
    /// Print the daemon's JSON answer instead of a sentence.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum MaintenanceCommand {
    /// Give the VIP away (priority 0) and stay out of VRRP; the sessions this node carries
    /// keep working after the VIP moved, for up to vip.maintenanceDrainTimeout. Waits until
    /// another router has taken the VIP.
    Enter,
    /// Take part in VRRP again (with preemption the VIP may come back).
    Exit,
    /// Where maintenance stands on the node.
    Status,
}

/// Runs `haplane maintenance`.
pub fn run(args: MaintenanceArgs) -> anyhow::Result<ExitCode> {
    let (cluster, _) = config::Cluster::load(&args.config)?;
    let target = admin::target(&cluster, args.node.as_deref())?;
    let action = match args.command {
        MaintenanceCommand::Enter => MaintenanceAction::Enter,
        MaintenanceCommand::Exit => MaintenanceAction::Exit,
        MaintenanceCommand::Status => MaintenanceAction::Status,
    };
    let reply = admin::call(
        &target.socket,
        &Request::Maintenance { action },
        Duration::from_secs(60),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    let message = reply["message"].as_str().unwrap_or("");
    if !message.is_empty() {
        println!("node {}: {message}", target.node);
    }
    println!(
        "node {}: maintenance {}, VIP {}, {} balancer session(s){}",
        target.node,
        if reply["active"] == true { "on" } else { "off" },
        match (reply["holdsVip"].as_bool(), reply["parked"].as_str()) {
            (Some(true), _) => "held here".to_string(),
            (_, Some(why)) => format!(
                "parked on lo ({why}, {:.0}s left)",
                reply["parkLeftSeconds"].as_f64().unwrap_or(0.0)
            ),
            _ => "not here".to_string(),
        },
        reply["balancerSessions"],
        match reply["forwardingTo"].as_str() {
            Some(to) => format!(", forwarding the old holder's sessions to {to}"),
            None => String::new(),
        }
    );
    let taken = reply["vipTakenOver"] == true;
    if matches!(action, MaintenanceAction::Enter) && !taken {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
