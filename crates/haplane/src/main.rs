//! The haplane command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// haplane makes a Kubernetes control plane highly available: a VRRP virtual IP that
/// interoperates with keepalived, an apiserver balancer, and one config file for the cluster.
#[derive(Debug, Parser)]
#[command(name = "haplane", version, about, long_about = None)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. debug or haplane=debug.
    #[arg(long, global = true, env = "HAPLANE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon for this node until SIGTERM or SIGINT.
    Run {
        /// The cluster file (the same on every node).
        #[arg(long, short)]
        config: PathBuf,
        /// This node's name; by default the node whose address is on this host.
        #[arg(long)]
        node: Option<String>,
    },
    /// Validate a cluster file and print every problem with the path of its key.
    Check {
        /// The cluster file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Two VRRP nodes in network namespaces: elect, fail over, preempt, hand over (needs root).
    Demo {
        /// VRRP advert interval for the demo.
        #[arg(long, default_value = "100ms")]
        advert: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, node } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(haplane::daemon::run(haplane::daemon::RunOptions {
                config,
                node,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match config::Cluster::load(&config) {
            Ok((cluster, warnings)) => {
                for w in &warnings {
                    println!("{w}");
                }
                println!(
                    "{}: ok ({} nodes, VIP {}, VRID {}, {} warning(s))",
                    config.display(),
                    cluster.nodes.len(),
                    cluster.vip.address,
                    cluster.vip.vrid,
                    warnings.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Demo { advert } => {
            let exe = std::env::current_exe().context("cannot find the haplane binary")?;
            let logs = std::env::temp_dir().join(format!("haplane-demo-{}", std::process::id()));
            std::fs::create_dir_all(&logs)
                .with_context(|| format!("cannot create {}", logs.display()))?;
            haplane::demo::run(&exe, &advert, &logs)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
