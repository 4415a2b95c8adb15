//! The haplane command line.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cli;

/// `haplane --version`: the crate version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HAPLANE_GIT_REVISION_TEXT"),
    ")"
);

/// haplane makes a Kubernetes control plane highly available: a VRRP virtual IP that
/// interoperates with keepalived, an apiserver balancer, and one config file for the cluster.
#[derive(Debug, Parser)]
#[command(name = "haplane", version = VERSION, about, long_about = None)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. debug or haplane=debug.
    #[arg(long, global = true, env = "HAPLANE_LOG", default_value = "info")]
    log: String,
    /// Log lines as text (colour only on a terminal) or as JSON objects (journald, shippers).
    #[arg(
        long,
        global = true,
        env = "HAPLANE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: cli::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon for this node until SIGTERM or SIGINT.
    Run(cli::run::RunArgs),
    /// Validate a cluster file and print every problem with the path of its key.
    Check(cli::check::CheckArgs),
    /// Validate the inventory and render kubeadm, etcd, haplane, keepalived and haproxy files
    /// plus a runbook for every node into a directory.
    Plan(cli::plan::PlanArgs),
    /// Check this host before kubeadm init/join: ports, directories, swap, kernel settings,
    /// hostname, firewall, SELinux, time sync, runtime, VIP interface, VRID in use.
    Preflight(cli::preflight::PreflightArgs),
    /// Write a haplane cluster file to stdout from an existing keepalived.conf (and haproxy.cfg).
    Import(cli::import::ImportArgs),
    /// etcd maintenance.
    Etcd(cli::etcd::EtcdArgs),
    /// A local HA control plane in network namespaces: masters with etcd and haplane, workers
    /// with the node-local balancer; break it and measure what clients feel (needs root).
    Lab(cli::lab::LabArgs),
    /// One table for the cluster: VRRP state, VIP, balancer backends, elections, etcd health.
    Status(cli::status::StatusArgs),
    /// A backend's admin state on this node's balancer: drain (no new sessions, established
    /// ones continue), enable, or show them all (through the root-only admin socket).
    Lb(cli::lb::LbArgs),
    /// Take a master out of the VIP rotation without a failed request, and put it back.
    Maintenance(cli::maintenance::MaintenanceArgs),
    /// The README's first command: lab up, drill every scenario with an HTML report, print the
    /// summary, lab down (needs root). With --vrrp: a two-node VRRP failover demo only.
    Demo(cli::demo::DemoArgs),
}

fn main() -> ExitCode {
    // `exec` elections run their commands under this same binary as the lease guard
    // (elect::action::guard): handled before clap, it is no subcommand anyone types.
    if let Some(code) = elect::action::guard::run_if_asked(&std::env::args_os().collect::<Vec<_>>())
    {
        return code;
    }
    // /proc/self/exe in the child is this binary, even after an upgrade replaced the file.
    elect::action::guard::install(vec![
        "/proc/self/exe".into(),
        elect::action::guard::SUBCOMMAND.into(),
    ]);
    // The hidden `generate` subcommand is added here, not in `Command`, so the man pages and
    // completions it writes from `Cli::command()` do not offer it.
    let matches = Cli::command()
        .subcommand(cli::generate::command())
        .get_matches();
    if let Some((cli::generate::NAME, m)) = matches.subcommand() {
        return match cli::generate::run(m, Cli::command()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("haplane: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli::logging::init(&cli.log, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Check(_)
            | Command::Plan(_)
            | Command::Preflight(_)
            | Command::Import(_)
            | Command::Status(_)
    ) {
        haplane::sys::end_quietly_when_stdout_closes();
    }
    match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Preflight(args) => cli::preflight::run(args),
        Command::Import(args) => cli::import::run(args),
        Command::Etcd(args) => cli::etcd::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Lb(args) => cli::lb::run(args),
        Command::Maintenance(args) => cli::maintenance::run(args),
        Command::Demo(args) => cli::demo::run(args),
    }
}
