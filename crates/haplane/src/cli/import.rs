//! `haplane import`: a haplane cluster file on stdout from an existing keepalived.conf (and
//! haproxy.cfg); what could not be mapped goes to stderr with its file and line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// keepalived.conf to read (includes are followed).
    #[arg(long)]
    keepalived: PathBuf,
    /// haproxy.cfg to read.
    #[arg(long)]
    haproxy: Option<PathBuf>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let result = plan::import(&args.keepalived, args.haproxy.as_deref())?;
    print!("{}", result.cluster_yaml);
    for u in &result.unmapped {
        eprintln!(
            "not mapped: {}:{}: {} ({})",
            u.file.display(),
            u.line,
            u.text,
            u.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
