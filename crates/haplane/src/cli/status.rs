//! `haplane status`: one table for the cluster (VRRP state, VIP, balancer backends,
//! elections, etcd health), from every node's /status.

use std::process::ExitCode;

pub use lab::StatusArgs;

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    Ok(lab::run_status(args)?)
}
