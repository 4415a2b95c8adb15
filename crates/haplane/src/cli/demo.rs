//! `haplane demo`: the README's first command (lab up, drill every scenario with an HTML
//! report, the summary, lab down), or with --vrrp a two-node VRRP failover demo only.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Only the two-node VRRP demo (elect, fail over, preempt, hand over).
    #[arg(long)]
    vrrp: bool,
    /// VRRP advert interval for the --vrrp demo.
    #[arg(long, default_value = "100ms", requires = "vrrp")]
    advert: String,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the haplane binary")?;
    if !args.vrrp {
        return Ok(lab::demo(&exe)?);
    }
    let logs = std::env::temp_dir().join(format!("haplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    haplane::demo::run(&exe, &args.advert, &logs)?;
    Ok(ExitCode::SUCCESS)
}
