//! `haplane preflight`: check this host before kubeadm init/join.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct PreflightArgs {
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
}

pub fn run(args: PreflightArgs) -> anyhow::Result<ExitCode> {
    let (cluster, _) = match config::Cluster::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let me = cluster
        .find_node(args.node.as_deref(), &local_addresses()?)?
        .clone();
    let options = plan::PreflightOptions {
        root: args.root,
        vrrp_listen: args.vrrp_listen.get(),
        ..plan::PreflightOptions::default()
    };
    let results = plan::preflight(&cluster, &me, &options);
    if args.json {
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

/// Every address on this host's interfaces: how a node finds itself in the cluster file.
fn local_addresses() -> anyhow::Result<Vec<IpAddr>> {
    Ok(nix::ifaddrs::getifaddrs()
        .context("cannot list this host's addresses")?
        .filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
}
