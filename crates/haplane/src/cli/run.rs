//! `haplane run`: the daemon for this node, until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cluster file (the same on every node).
    #[arg(long, short)]
    config: PathBuf,
    /// This node's name; by default the node whose address is on this host.
    #[arg(long)]
    node: Option<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(haplane::daemon::run(haplane::daemon::RunOptions {
        config: args.config,
        node: args.node,
    }))?;
    Ok(ExitCode::SUCCESS)
}
