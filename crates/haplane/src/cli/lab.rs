//! `haplane lab up|drill|down|chaos`: the lab (docs/lab.md). The lab crate does the work
//! and returns values; this file parses the arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use lab::chaos::{self, Kind, Nodes};
use lab::{LabError, LabState, Scenario, client, drill, summary, up, view};

/// `haplane lab ...`
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the HA topology in network namespaces and leave it running (needs root).
    Up(UpArgs),
    /// Inject failures while clients write through the VIP and the node-local balancer.
    Drill(DrillArgs),
    /// Remove the lab: processes, namespaces, state. Idempotent.
    Down {
        /// The lab's name.
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Random overlapping faults from a seed (kills, freezes, link faults, partitions, loss,
    /// restarts, handovers) while clients write; then check that no acknowledged write was
    /// lost, no two nodes served the VIP or a singleton at once, and the lab recovered.
    Chaos(ChaosArgs),
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Number of masters (each runs an etcd member and haplane with the VIP).
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Number of workers (each runs haplane as a node-local balancer on 127.0.0.1).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Dedicated balancer nodes lb1.. (`roles: [lb]`, seed 004): they carry the VIP and
    /// balance to the masters, which then run no VRRP; they run no etcd member (0..=4).
    #[arg(long, default_value_t = 0, value_name = "N")]
    lb_nodes: usize,
    /// The lab's name (letters, digits, _; at most 24).
    #[arg(long, default_value = "lab")]
    name: String,
    /// A kube-apiserver binary to start on each master; the balancers then serve 6443.
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// VIP fencing: `quorum` (hold the VIP only with an etcd lease) or `none` (plain VRRP).
    #[arg(long, default_value = "quorum", value_parser = ["quorum", "none"])]
    fencing: String,
    /// `vip.preempt` in the lab's cluster file: `true` (haplane's default) lets a returning
    /// higher-priority node take the VIP back; the lab's default `false` keeps one move per
    /// fault.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    preempt: bool,
    /// etcd's `--election-timeout` on the masters, in ms (etcd's default 1000; the heartbeat
    /// is a tenth of it). A holder that is also etcd's raft leader cannot be replaced before
    /// the other members elect a new leader, so this bounds those failovers.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=50000))]
    etcd_election_timeout: u64,
}

#[derive(Debug, Args)]
struct DrillArgs {
    /// The lab's name.
    #[arg(long, default_value = "lab")]
    name: String,
    /// A scenario (holder-crash, service-dies, graceful-shutdown, holder-partitioned,
    /// etcd-member-lost, holder-freeze, partition-heal, crash-restart, maintenance), a
    /// comma-separated list, or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Where etcd's raft leader is before each fault (moved with `etcdctl move-leader`):
    /// `target` (the node the fault hits), `elsewhere`, `both` (each scenario twice, the
    /// two reported separately) or `as-found`.
    #[arg(long, default_value = "both", value_name = "WHERE")]
    etcd_leader: String,
    /// Run every scenario N times (round by round); the summary shows p50, p99 and the
    /// worst run per scenario.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report with a timeline per scenario.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Each client write fails when not acknowledged this long after it started (and its
    /// connection is dropped). Bounds how late the client notices an outage.
    #[arg(long, default_value = "200ms", value_name = "DURATION")]
    request_timeout: config::Dur,
    /// While a client has no connection it sends a new SYN this often (instead of the
    /// kernel's 1 s SYN back-off).
    #[arg(long, default_value = "50ms", value_name = "DURATION")]
    connect_retry: config::Dur,
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

/// Runs `haplane lab ...`; this binary is the one started on each node.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up(a) => up_command(a),
        LabCommand::Drill(a) => drill_command(a),
        LabCommand::Down { name } => {
            println!("{}", up::down(&name)?);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Chaos(a) => chaos_command(a),
    }
}

fn up_command(a: UpArgs) -> anyhow::Result<ExitCode> {
    let haplane = std::env::current_exe().context("cannot find the haplane binary")?;
    let st = up::up(&up::UpOptions {
        name: a.name,
        masters: a.masters,
        workers: a.workers,
        lb_nodes: a.lb_nodes,
        apiserver: a.apiserver,
        fencing: a.fencing,
        preempt: a.preempt,
        etcd_election_timeout_ms: a.etcd_election_timeout,
        haplane,
    })?;
    let topo = netlab::Topology::open(&st.name)?;
    print!("{}", up::describe(&st, &view::lab_view(&st, &topo)));
    Ok(ExitCode::SUCCESS)
}

fn drill_command(a: DrillArgs) -> anyhow::Result<ExitCode> {
    let opts = drill::DrillOptions {
        steps: drill::matrix(
            &Scenario::parse_list(&a.scenario)?,
            &drill::Placement::parse_list(&a.etcd_leader)?,
        ),
        repeat: a.repeat,
        client: client::ClientOptions {
            request_timeout: a.request_timeout.get(),
            connect_retry: a.connect_retry.get(),
        },
    };
    opts.client.validate().map_err(LabError::BadArgs)?;
    let st = LabState::load(&a.name)?;
    let r = drill::run(&st, &opts)?;
    if let Some(path) = &a.report {
        lab::write_report(path, &r)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", summary::text(&r));
        if let Some(path) = &a.report {
            println!("report: {}", path.display());
        }
    }
    Ok(if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
