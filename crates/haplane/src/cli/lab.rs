//! `haplane lab ...`: the lab crate's subcommands plus `lab chaos` (seeded overlapping faults
//! and a checker, see docs/lab.md).

use anyhow::Context;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use lab::chaos::{self, Kind, Nodes};

/// `haplane lab ...`
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    #[command(flatten)]
    Lab(lab::LabCommand),
    /// Random overlapping faults from a seed (kills, freezes, link faults, partitions, loss,
    /// restarts, handovers) while clients write; then check that no acknowledged write was
    /// lost, no two nodes served the VIP or a singleton at once, and the lab recovered.
    Chaos(ChaosArgs),
}

#[derive(Debug, Args)]
struct ChaosArgs {
    /// The lab's name.
    #[arg(long, default_value = "lab")]
    name: String,
    /// The schedule's seed (printed at the start and on failure); by default one from the
    /// clock.
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults are injected; every fault is healed by then (the final heal).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    duration: config::Dur,
    /// The fault kinds to draw from: all, or a comma-separated list of kill-haplane,
    /// stop-haplane, kill-etcd, stop-etcd, kill-node, stop-node, link-down, link-flap,
    /// partition, loss, restart, handover.
    #[arg(long, default_value = "all", value_name = "KINDS")]
    faults: String,
    /// Print the schedule for the seed and duration and exit; needs no lab.
    #[arg(long)]
    dry_run: bool,
    /// Masters of the lab the dry run draws for.
    #[arg(long, default_value_t = 3, requires = "dry_run")]
    masters: usize,
    /// Workers of the lab the dry run draws for.
    #[arg(long, default_value_t = 1, requires = "dry_run")]
    workers: usize,
    /// Print JSON (the schedule with --dry-run, else the whole result).
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report: the summary and the timeline with the schedule.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Each client write fails when not acknowledged this long after it started.
    #[arg(long, default_value = "200ms", value_name = "DURATION")]
    request_timeout: config::Dur,
    /// While a client has no connection it sends a new SYN this often.
    #[arg(long, default_value = "50ms", value_name = "DURATION")]
    connect_retry: config::Dur,
}

/// Runs `haplane lab ...`; `exe` is the binary started on each node.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Lab(command) => {
            let exe = std::env::current_exe().context("cannot find the haplane binary")?;
            Ok(lab::run_lab(lab::LabArgs { command }, &exe)?)
        }
        LabCommand::Chaos(a) => chaos_command(a),
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        % 1_000_000_000
}

fn chaos_command(a: ChaosArgs) -> anyhow::Result<ExitCode> {
    let kinds = Kind::parse_list(&a.faults).map_err(anyhow::Error::msg)?;
    let duration_ms = a.duration.get().as_millis() as u64;
    if duration_ms < chaos::schedule::FIRST_FAULT_MS + 1_000 {
        anyhow::bail!(
            "--duration must be at least {} ms (the baseline before the first fault plus one second)",
            chaos::schedule::FIRST_FAULT_MS + 1_000
        );
    }
    let seed = a.seed.unwrap_or_else(clock_seed);
    if a.dry_run {
        if a.masters == 0 {
            anyhow::bail!("--masters must be at least 1");
        }
        let s = chaos::schedule::generate(
            seed,
            duration_ms,
            &kinds,
            &Nodes::standard(a.masters, a.workers),
        );
        if a.json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            print!("{}", chaos::schedule::text(&s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let st = lab::LabState::load(&a.name)?;
    let nodes = Nodes {
        masters: st.masters.iter().map(|n| n.name.clone()).collect(),
        workers: st.workers.iter().map(|n| n.name.clone()).collect(),
    };
    let schedule = chaos::schedule::generate(seed, duration_ms, &kinds, &nodes);
    let opts = chaos::ChaosOptions {
        client: lab::client::ClientOptions {
            request_timeout: a.request_timeout.get(),
            connect_retry: a.connect_retry.get(),
        },
    };
    // The seed first, so a run cut short still names it.
    eprintln!(
        "lab chaos: seed {seed}, {} faults over {:.1} s on lab {}",
        schedule.faults.len(),
        duration_ms as f64 / 1000.0,
        st.name
    );
    if !a.json {
        print!("{}", chaos::schedule::text(&schedule));
    }
    let r = chaos::run::run(&st, &schedule, &opts)?;
    if let Some(path) = &a.report {
        std::fs::write(path, chaos::report::html(&r))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("\n{}", chaos::report::text(&r));
        if let Some(path) = &a.report {
            println!("report: {}", path.display());
        }
    }
    if !r.passed() {
        let v = &r.violations[0];
        eprintln!(
            "lab chaos: seed {seed}: {} violation(s), the first {} at {:.2}..{:.2} s",
            r.violations.len(),
            v.invariant.name(),
            v.from_ms as f64 / 1000.0,
            v.to_ms as f64 / 1000.0
        );
    }
    Ok(if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
