//! `haplane check`: validate a cluster file and print every problem with the path of its key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster file.
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config;
    let (cluster, mut warnings) = match config::Cluster::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Key files that cannot be used, secrets other users can read.
    let (errors, audit): (Vec<_>, Vec<_>) = config::audit_secret_files(&cluster, path)
        .into_iter()
        .partition(|f| f.severity == config::Severity::Error);
    warnings.extend(audit);
    for w in &warnings {
        println!("{w}");
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{}: {} error(s)", path.display(), errors.len());
        return Ok(ExitCode::from(1));
    }
    println!(
        "{}: ok ({} nodes, VIP {}, VRID {}, {} warning(s))",
        path.display(),
        cluster.nodes.len(),
        cluster.vip.address,
        cluster.vip.vrid,
        warnings.len()
    );
    Ok(ExitCode::SUCCESS)
}
