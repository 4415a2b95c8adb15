//! `haplane lab up|drill|down` and `haplane status`: the whole HA topology on one machine
//! (a switch, masters with etcd + haplane, workers with a node-local balancer, all in network
//! namespaces), failures injected and measured as clients feel them.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Errors of the lab and of `haplane status`.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A network-namespace operation failed.
    #[error("netlab: {0}")]
    Netlab(#[from] netlab::Error),
    /// Reading or writing a lab file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The requested thing is not implemented yet.
    #[error("not implemented yet: {0}")]
    Unimplemented(&'static str),
}

/// `haplane lab ...`
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// What to do with the lab.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build the HA topology in network namespaces and leave it running (needs root).
    Up {
        /// Number of masters (each runs an etcd member and haplane with the VIP).
        #[arg(long, default_value_t = 3)]
        masters: usize,
        /// Number of workers (each runs haplane as a node-local balancer on 127.0.0.1).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The lab's name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// A kube-apiserver binary to start on each master; the balancers then serve 6443.
        #[arg(long)]
        apiserver: Option<PathBuf>,
    },
    /// Inject failures while clients write through the VIP and the node-local balancer.
    Drill {
        /// The lab's name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// One scenario, or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Write a self-contained HTML report with a timeline per scenario.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Remove the lab: processes, namespaces, state. Idempotent.
    Down {
        /// The lab's name.
        #[arg(long, default_value = "lab")]
        name: String,
    },
}

/// `haplane status`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The cluster file; the node addresses are queried from this machine.
    #[arg(long, short, conflicts_with = "lab")]
    pub config: Option<PathBuf>,
    /// A lab's name: each node is queried inside its namespace.
    #[arg(long)]
    pub lab: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `haplane lab ...`; `haplane_exe` is the binary started on each node.
pub fn run_lab(args: LabArgs, haplane_exe: &Path) -> Result<ExitCode, LabError> {
    let _ = (args, haplane_exe);
    Err(LabError::Unimplemented("lab"))
}

/// Runs `haplane status`.
pub fn run_status(args: StatusArgs) -> Result<ExitCode, LabError> {
    let _ = args;
    Err(LabError::Unimplemented("status"))
}

/// The README's first command: `lab up`, `lab drill --report`, the summary, `lab down`.
pub fn demo(haplane_exe: &Path) -> Result<ExitCode, LabError> {
    let _ = haplane_exe;
    Err(LabError::Unimplemented("demo"))
}
