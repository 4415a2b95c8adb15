//! The lab's commands without the haplane binary around them (for developing the lab):
//! `HAPLANE_EXE=target/debug/haplane cargo run -p haplane-lab --example labctl -- lab up`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    /// The haplane binary the lab's nodes run.
    #[arg(long, env = "HAPLANE_EXE", default_value = "haplane")]
    haplane: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// haplane lab ...
    Lab(lab::LabArgs),
    /// haplane status ...
    Status(lab::StatusArgs),
    /// The README's first command.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Lab(a) => lab::run_lab(a, &cli.haplane),
        Command::Status(a) => lab::run_status(a),
        Command::Demo => lab::demo(&cli.haplane),
    };
    r.unwrap_or_else(|e| {
        eprintln!("haplane: {e}");
        ExitCode::FAILURE
    })
}
