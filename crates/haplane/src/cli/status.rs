//! `haplane status`: one table for the cluster (VRRP state, VIP, balancer backends,
//! elections, etcd health), from every node's /status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use lab::{LabState, status, view};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The cluster file; every node is queried at its address (set status.listen to a
    /// reachable address, or run this on the node for its own row).
    #[arg(long, short, conflicts_with = "lab")]
    config: Option<PathBuf>,
    /// A lab's name: each node is queried inside its namespace.
    #[arg(long)]
    lab: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when exactly one node holds the VIP and every node answered, else 1.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let view = match (&args.config, &args.lab) {
        (Some(cfg), _) => lab::status_from_config(cfg)?,
        (None, name) => {
            let st = LabState::load(name.as_deref().unwrap_or("lab"))?;
            let topo = netlab::Topology::open(&st.name)?;
            view::lab_view(&st, &topo)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", status::render_table(&view));
    }
    let healthy = view.vip_holders.len() == 1 && view.nodes.iter().all(|n| n.reachable);
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
