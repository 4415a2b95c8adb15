//! `haplane lab up|drill|down` and `haplane status`: the whole HA topology on one machine
//! (a switch, masters with etcd + haplane, workers with a node-local balancer, all in network
//! namespaces), failures injected and measured as clients feel them.
// `unsafe` only in `sys` (a link-layer socket address for the ARP probe).
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub mod arp_probe;
pub mod chaos;
pub mod client;
pub mod drill;
pub mod http;
pub mod procs;
pub mod report;
pub mod state;
pub mod stats;
pub mod status;
pub mod streams;
pub mod summary;
#[allow(unsafe_code)]
mod sys;
pub mod timeline;
pub mod up;

pub use drill::{DrillResult, Scenario, ScenarioResult};
pub use state::LabState;
pub use status::ClusterView;

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
    /// The lab's state file cannot be read.
    #[error("{path}: bad lab state: {detail}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No lab of that name exists.
    #[error("no lab named {0:?}; start one with `haplane lab up --name {0}`")]
    NoLab(String),
    /// A lab of that name already exists.
    #[error("lab {0:?} already exists; remove it with `haplane lab down --name {0}`")]
    Exists(String),
    /// A program the lab needs is missing.
    #[error("missing: {0}")]
    Missing(String),
    /// The ARP probe cannot run.
    #[error(transparent)]
    Probe(#[from] arp_probe::ProbeError),
    /// Bad command-line arguments.
    #[error("{0}")]
    BadArgs(String),
    /// A program could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A program started but failed.
    #[error("{command} failed: {detail}")]
    StartFailed {
        /// The command line.
        command: String,
        /// What it said.
        detail: String,
    },
    /// The lab did not become healthy.
    #[error("the lab is not healthy: {detail} (logs in {})", logs.display())]
    NotHealthy {
        /// What is still wrong.
        detail: String,
        /// Where the daemons' logs are.
        logs: PathBuf,
    },
    /// The cluster file for `haplane status` is invalid.
    #[error("{0}")]
    Config(String),
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
    },
    /// Inject failures while clients write through the VIP and the node-local balancer.
    Drill {
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
    /// The cluster file; every node is queried at its address (set status.listen to a
    /// reachable address, or run this on the node for its own row).
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
    match args.command {
        LabCommand::Up {
            masters,
            workers,
            lb_nodes,
            name,
            apiserver,
            fencing,
            preempt,
        } => {
            let st = up::up(&up::UpOptions {
                name,
                masters,
                workers,
                lb_nodes,
                apiserver,
                fencing,
                preempt,
                haplane: haplane_exe.to_path_buf(),
            })?;
            let topo = netlab::Topology::open(&st.name)?;
            print!("{}", up::describe(&st, &up::lab_view(&st, &topo)));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Drill {
            name,
            scenario,
            etcd_leader,
            repeat,
            json,
            report,
            request_timeout,
            connect_retry,
        } => {
            let opts = drill::DrillOptions {
                steps: drill::matrix(
                    &Scenario::parse_list(&scenario)?,
                    &drill::Placement::parse_list(&etcd_leader)?,
                ),
                repeat,
                client: client::ClientOptions {
                    request_timeout: request_timeout.get(),
                    connect_retry: connect_retry.get(),
                },
            };
            opts.client.validate().map_err(LabError::BadArgs)?;
            let st = LabState::load(&name)?;
            let r = drill::run(&st, &opts)?;
            if let Some(path) = &report {
                write_report(path, &r)?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).unwrap_or_else(|e| e.to_string())
                );
            } else {
                print!("{}", summary::text(&r));
                if let Some(path) = &report {
                    println!("report: {}", path.display());
                }
            }
            Ok(if r.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        LabCommand::Down { name } => {
            println!("{}", up::down(&name)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_report(path: &Path, r: &DrillResult) -> Result<(), LabError> {
    std::fs::write(path, report::html(r)).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `haplane status`.
pub fn run_status(args: StatusArgs) -> Result<ExitCode, LabError> {
    let view = match (&args.config, &args.lab) {
        (Some(cfg), _) => status_from_config(cfg)?,
        (None, lab) => {
            let name = lab.clone().unwrap_or_else(|| "lab".to_string());
            let st = LabState::load(&name)?;
            let topo = netlab::Topology::open(&st.name)?;
            up::lab_view(&st, &topo)
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_else(|e| e.to_string())
        );
    } else {
        print!("{}", status::render_table(&view));
    }
    let healthy = view.vip_holders.len() == 1 && view.nodes.iter().all(|n| n.reachable);
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The cluster view from a cluster file: nodes queried at their addresses from here (the
/// local node's loopback status listener included).
pub fn status_from_config(path: &Path) -> Result<ClusterView, LabError> {
    let (cluster, _) = config::Cluster::load(path).map_err(|e| LabError::Config(e.to_string()))?;
    let listen = cluster.status.listen;
    let endpoints = if cluster.etcd.is_some() {
        cluster.etcd_endpoints()
    } else {
        Vec::new()
    };
    let targets: Vec<status::Target<'_>> = cluster
        .nodes
        .iter()
        .map(|n| {
            // A loopback status listener is reachable only on its own node.
            let status_addr = if listen.ip().is_loopback() && status::is_local(n.address) {
                listen
            } else {
                std::net::SocketAddr::new(n.address, listen.port())
            };
            let etcd_addr = endpoints
                .iter()
                .filter_map(|e| status::endpoint_addr(e))
                .find(|a| a.ip() == n.address);
            status::Target {
                name: n.name.clone(),
                address: n.address,
                role: n
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                status_addr,
                etcd_addr,
                vip_present: None,
                fetch: Box::new(status::direct),
            }
        })
        .collect();
    Ok(status::gather(
        &cluster.cluster,
        cluster.vip.address.addr,
        &targets,
    ))
}

/// Demo labs whose process is gone: `demo<pid>` in netlab's labs or the state root.
fn stale_demos() -> Vec<String> {
    let mut names = netlab::list_labs().unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(state::STATE_ROOT) {
        names.extend(
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            n.strip_prefix("demo")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

/// The README's first command: `lab up`, `lab drill --report`, the summary, `lab down`.
/// The report goes to `haplane-drill.html` in the current directory; the lab is named
/// `demo<pid>`.
pub fn demo(haplane_exe: &Path) -> Result<ExitCode, LabError> {
    // One lab per demo process, so two demos on one machine never meet; demos left behind by
    // killed runs (their pid is gone) are removed first.
    let name = &format!("demo{}", std::process::id());
    for old in stale_demos() {
        if let Ok(msg) = up::down(&old) {
            println!("{msg}");
        }
    }
    println!("haplane lab: 3 masters (etcd + haplane), 1 worker, in network namespaces");
    let st = up::up(&up::UpOptions {
        name: name.to_string(),
        masters: 3,
        workers: 1,
        lb_nodes: 0,
        apiserver: None,
        fencing: "quorum".to_string(),
        preempt: false,
        haplane: haplane_exe.to_path_buf(),
    })?;
    let result = (|| {
        let topo = netlab::Topology::open(&st.name)?;
        print!("{}", up::describe(&st, &up::lab_view(&st, &topo)));
        println!("\ndrill: eight failures, about 90 s ...");
        let r = drill::run(
            &st,
            &drill::DrillOptions::new(&Scenario::ALL, &[drill::Placement::AsFound]),
        )?;
        let path = PathBuf::from("haplane-drill.html");
        write_report(&path, &r)?;
        print!("\n{}", summary::text(&r));
        println!("report: {}", path.display());
        Ok::<_, LabError>(r.passed())
    })();
    if !matches!(result, Ok(true)) {
        // Keep the daemons' logs for the post-mortem: `lab down` deletes the state dir.
        let keep = PathBuf::from("haplane-drill-logs");
        if std::fs::create_dir_all(&keep).is_ok()
            && let Ok(rd) = std::fs::read_dir(st.dir.join("logs"))
        {
            for e in rd.flatten() {
                let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
            }
            println!("daemon logs kept in {}", keep.display());
        }
    }
    let down = up::down(name);
    match (&result, down) {
        (_, Ok(msg)) => println!("{msg}"),
        (_, Err(e)) => eprintln!("lab down: {e}"),
    }
    Ok(if result? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
