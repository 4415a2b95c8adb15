//! `haplane etcd ...`: etcd maintenance.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct EtcdArgs {
    #[command(subcommand)]
    command: EtcdCommand,
}

#[derive(Debug, Subcommand)]
enum EtcdCommand {
    /// Stream a snapshot through the maintenance API, verify its hash and write it atomically.
    Snapshot {
        /// The cluster file (its etcd section says how to connect).
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the snapshot.
        #[arg(long, short)]
        out: PathBuf,
    },
}

pub fn run(args: EtcdArgs) -> anyhow::Result<ExitCode> {
    let EtcdCommand::Snapshot { config, out } = args.command;
    let (cluster, _) = config::Cluster::load(&config)?;
    let etcd = haplane::etcd::etcd_config(&cluster)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let info = rt.block_on(async {
        let client = elect::connect(&etcd).await?;
        elect::snapshot(&client, &out).await
    })?;
    println!(
        "snapshot {} ({} bytes, revision {}, sha256 {})",
        info.path.display(),
        info.size,
        info.revision
            .map_or("unknown".to_string(), |r| r.to_string()),
        info.sha256
    );
    Ok(ExitCode::SUCCESS)
}
