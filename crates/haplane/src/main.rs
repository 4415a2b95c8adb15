//! The haplane command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    /// Validate the inventory and render kubeadm, etcd, haplane, keepalived and haproxy files
    /// plus a runbook for every node into a directory.
    Plan {
        /// The cluster file.
        #[arg(long, short)]
        config: PathBuf,
        /// Output directory (created; files are overwritten).
        #[arg(long, short)]
        out: PathBuf,
        /// kubeadm API version of the rendered configs.
        #[arg(long, value_enum, default_value = "v1beta4")]
        kubeadm_api: KubeadmApiArg,
    },
    /// Check this host before kubeadm init/join: ports, directories, swap, kernel settings,
    /// hostname, firewall, SELinux, time sync, runtime, VIP interface, VRID in use.
    Preflight {
        /// The cluster file.
        #[arg(long, short)]
        config: PathBuf,
        /// This node's name; by default the node whose address is on this host.
        #[arg(long)]
        node: Option<String>,
        /// Print JSON instead of PASS/WARN/FAIL lines.
        #[arg(long)]
        json: bool,
        /// Look for /etc/kubernetes and /var/lib/etcd under this directory.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// How long to listen for another VRRP router using our VRID (0s skips).
        #[arg(long, default_value = "3s")]
        vrrp_listen: config::Dur,
    },
    /// Write a haplane cluster file to stdout from an existing keepalived.conf (and haproxy.cfg).
    Import {
        /// keepalived.conf to read (includes are followed).
        #[arg(long)]
        keepalived: PathBuf,
        /// haproxy.cfg to read.
        #[arg(long)]
        haproxy: Option<PathBuf>,
    },
    /// etcd maintenance.
    Etcd {
        #[command(subcommand)]
        command: EtcdCommand,
    },
    /// A local HA control plane in network namespaces: masters with etcd and haplane, workers
    /// with the node-local balancer; break it and measure what clients feel (needs root).
    Lab(cli::chaos::LabArgs),
    /// One table for the cluster: VRRP state, VIP, balancer backends, elections, etcd health.
    Status(lab::StatusArgs),
    /// A backend's admin state on this node's balancer: drain (no new sessions, established
    /// ones continue), enable, or show them all (through the root-only admin socket).
    Lb(cli::lb::LbArgs),
    /// Take a master out of the VIP rotation without a failed request, and put it back.
    Maintenance(cli::maintenance::MaintenanceArgs),
    /// The README's first command: lab up, drill every scenario with an HTML report, print the
    /// summary, lab down (needs root). With --vrrp: a two-node VRRP failover demo only.
    Demo {
        /// Only the two-node VRRP demo (elect, fail over, preempt, hand over).
        #[arg(long)]
        vrrp: bool,
        /// VRRP advert interval for the --vrrp demo.
        #[arg(long, default_value = "100ms", requires = "vrrp")]
        advert: String,
    },
}

#[derive(Debug, Subcommand)]
enum EtcdCommand {
    /// Stream a snapshot through the maintenance API, verify its hash and write it atomically.
    Snapshot {
        /// The cluster file (its etcd section says how to connect).
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the snapshot.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KubeadmApiArg {
    V1beta4,
    V1beta3,
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
                eprintln!("haplane: {}", describe(&e));
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
            eprintln!("haplane: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text its parent already includes
/// (our error enums print their source inline).
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
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
            Ok((cluster, mut warnings)) => {
                // Key files that cannot be used, secrets other users can read.
                let (errors, audit): (Vec<_>, Vec<_>) =
                    config::audit_secret_files(&cluster, &config)
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
                    eprintln!("{}: {} error(s)", config.display(), errors.len());
                    return Ok(ExitCode::from(1));
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
        Command::Plan {
            config,
            out,
            kubeadm_api,
        } => {
            let cluster = match plan::parse(
                &std::fs::read_to_string(&config)
                    .with_context(|| format!("cannot read {}", config.display()))?,
                &config,
            ) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let findings = plan::validate(&cluster);
            for f in &findings {
                eprintln!("{f}");
            }
            if findings
                .iter()
                .any(|f| f.severity == config::Severity::Error)
            {
                eprintln!("{}: not rendered; fix the errors above", config.display());
                return Ok(ExitCode::from(1));
            }
            let options = plan::PlanOptions {
                kubeadm_api: match kubeadm_api {
                    KubeadmApiArg::V1beta4 => plan::KubeadmApi::V1beta4,
                    KubeadmApiArg::V1beta3 => plan::KubeadmApi::V1beta3,
                },
                ..plan::PlanOptions::default()
            };
            let rendered = plan::render(&cluster, &options)?;
            plan::write_plan(&rendered, &out)?;
            println!(
                "wrote {} files to {}; start with {}/README.md",
                rendered.files.len(),
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Preflight {
            config,
            node,
            json,
            root,
            vrrp_listen,
        } => {
            let (cluster, _) = match config::Cluster::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let local: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
                .context("cannot list this host's addresses")?
                .filter_map(|i| i.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| std::net::IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                })
                .collect();
            let me = cluster.find_node(node.as_deref(), &local)?.clone();
            let options = plan::PreflightOptions {
                root,
                vrrp_listen: vrrp_listen.get(),
                ..plan::PreflightOptions::default()
            };
            let results = plan::preflight(&cluster, &me, &options);
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    println!("{r}");
                }
            }
            let failed = results
                .iter()
                .filter(|r| r.status == plan::CheckStatus::Fail)
                .count();
            if failed > 0 {
                eprintln!("preflight: {failed} check(s) failed on node {}", me.name);
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            keepalived,
            haproxy,
        } => {
            let result = plan::import(&keepalived, haproxy.as_deref())?;
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
        Command::Etcd {
            command: EtcdCommand::Snapshot { config, out },
        } => {
            let (cluster, _) = config::Cluster::load(&config)?;
            let etcd = haplane::etcd::etcd_config(&cluster)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let info = rt.block_on(async {
                let client = elect::connect(&etcd).await?;
                elect::snapshot(&client, &out).await
            })?;
            println!(
                "snapshot {} ({} bytes, revision {}, sha256 {})",
                info.path.display(),
                info.size,
                info.revision
                    .map_or("unknown".to_string(), |r| r.to_string()),
                info.sha256
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab(args) => {
            let exe = std::env::current_exe().context("cannot find the haplane binary")?;
            cli::chaos::run(args, &exe)
        }
        Command::Status(args) => Ok(lab::run_status(args)?),
        Command::Lb(args) => cli::lb::run(args),
        Command::Maintenance(args) => cli::maintenance::run(args),
        Command::Demo { vrrp: false, .. } => {
            let exe = std::env::current_exe().context("cannot find the haplane binary")?;
            Ok(lab::demo(&exe)?)
        }
        Command::Demo { vrrp: true, advert } => {
            let exe = std::env::current_exe().context("cannot find the haplane binary")?;
            let logs = std::env::temp_dir().join(format!("haplane-demo-{}", std::process::id()));
            std::fs::create_dir_all(&logs)
                .with_context(|| format!("cannot create {}", logs.display()))?;
            haplane::demo::run(&exe, &advert, &logs)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
