//! `haplane run`: one node's daemon. Starts the status server, the balancer, etcd and its
//! elections and the VRRP driver, and stops them in order on SIGTERM.
//!
//! Each behaviour lives in its own file under `daemon/`: the VRRP driver, tracked scripts,
//! the link watch, notify commands, the gratuitous ARP schedule, reload, and the router's
//! status.

mod admin_handler;
mod balancer_check;
mod debounce;
mod duties;
mod garp_schedule;
mod handover;
mod link_watch;
mod notify;
mod reload;
mod router_status;
mod track;
mod vrrp_auth;
mod vrrp_driver;

pub use duties::Duties;
pub use vrrp_driver::router_config;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use config::Cluster;
use tracing::{error, info, warn};

use crate::balance;
use crate::netlink::{Netlink, NetlinkError};
use crate::status::{self, Hub};
use crate::vrrp_io::VrrpIoError;
use reload::reload_loop;
use vrrp_driver::VrrpRunner;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The cluster file is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// This host could not be matched to a node.
    #[error("cannot tell which node this is: {0}")]
    FindNode(config::FindNodeError),
    /// Netlink failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The VRRP sockets failed.
    #[error(transparent)]
    VrrpIo(#[from] VrrpIoError),
    /// The VRRP settings were refused by the core.
    #[error("invalid VRRP settings for node {node}: {error}")]
    Router {
        node: String,
        error: vrrp::ConfigError,
    },
    /// An auth_hmac key could not be read or is unusable (the message names it, never its value).
    #[error("cannot load the auth_hmac keys of node {node}: {error}")]
    AuthHmacKey {
        node: String,
        error: config::KeyError,
    },
    /// The VIP gate's parameters (`vip.gate`) break the protocol's bounds.
    #[error("invalid vip.gate settings for node {node}: {error}")]
    Gate {
        node: String,
        error: gate::ConfigError,
    },
    /// The VIP's kernel fence (nftables) could not be installed: fencing fails closed.
    #[error(
        "cannot install the VIP's kernel fence on node {node} (fencing: quorum needs nf_tables with the arp/ip6 families; or set vip.fencing: none): {error}"
    )]
    KernelFence {
        node: String,
        error: crate::nft::NftError,
    },
    /// The status server could not start.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// IPv6 VRRP needs a link-local source address (RFC 5798 §5.1.2.1).
    #[error(
        "interface {0} has no IPv6 link-local address; IPv6 VRRP sends from it (RFC 5798 §5.1.2.1)"
    )]
    NoLinkLocal(String),
    /// The balancer could not start.
    #[error("cannot start the load balancer on node {node}: {error}")]
    Balancer { node: String, error: lb::LbError },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

// Shown in the message, so not a `source()` as well (one rule for errors: never both).
impl From<config::FindNodeError> for DaemonError {
    fn from(e: config::FindNodeError) -> DaemonError {
        DaemonError::FindNode(e)
    }
}

/// Options of `haplane run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    pub node: Option<String>,
}

/// Run until SIGTERM or SIGINT; on the way out hand the VIP over with a priority-0 advert.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let (cluster, warnings) = Cluster::load(&opts.config)?;
    for w in &warnings {
        warn!(config = %opts.config.display(), "{w}");
    }
    // Secrets that other users can read (key file errors fail below, when the keys load).
    for w in config::audit_secret_files(&cluster, &opts.config)
        .iter()
        .filter(|f| f.severity == config::Severity::Warning)
    {
        warn!(config = %opts.config.display(), "{w}");
    }
    let netlink = Netlink::open()?;
    let local = netlink.local_addresses().await?;
    let node = cluster.find_node(opts.node.as_deref(), &local)?.clone();
    // One span for everything this node's daemon logs, its tasks included (crate::spawn).
    let span = tracing::info_span!("node", node = %node.name);
    tracing::Instrument::instrument(run_node(opts, cluster, node, netlink), span).await
}

/// The daemon for `node`, inside its span.
async fn run_node(
    opts: RunOptions,
    cluster: Cluster,
    node: config::Node,
    netlink: Netlink,
) -> Result<(), DaemonError> {
    // Every part below starts or not by these, the rules check and plan apply too.
    let duties = Duties::of(&cluster, &node);
    info!(cluster = %cluster.cluster, address = %node.address,
        "starting; {}", duties.describe());

    let hub = Hub::new(&cluster.cluster, &node.name);
    hub.add_section(
        "roles",
        Arc::new(duties::RolesSection(duties.roles.clone())),
    );
    hub.add_section("runs", Arc::new(duties::RunsSection(duties.clone())));
    let status_addr = status::serve(cluster.status.listen, hub.clone()).await?;
    info!("status on http://{status_addr}/status");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Signals)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(DaemonError::Signals)?;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signals)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    crate::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
        let _ = stop_tx.send(true);
    });

    let balancer = match balance::lb_config(&cluster, &node) {
        Some(cfg) => {
            if let Some(ca) = balance::missing_ca(&cluster) {
                warn!(ca = %ca.display(),
                    "the CA for HTTPS health checks does not exist yet; checking backends with TCP connects until it appears");
            }
            let listen = cfg.listen.clone();
            let b = lb::Balancer::start(cfg)
                .await
                .map_err(|error| DaemonError::Balancer {
                    node: node.name.clone(),
                    error,
                })?;
            info!(?listen, "load balancer listening");
            let b = Arc::new(b);
            hub.add_section(
                "load_balancer",
                Arc::new(balance::BalancerSection(b.clone())),
            );
            Some(b)
        }
        None => None,
    };
    let reloader = balancer
        .clone()
        .map(|b| crate::spawn(reload_loop(opts.config.clone(), node.clone(), b, hup)));

    // Maintenance and graceful handover (the VIP's nodes), and the admin socket that drives them.
    let (maintenance, handover) = if duties.vrrp {
        let (m, handover) = handover::for_master(&cluster, &node, &netlink, balancer.clone()).await;
        hub.add_section(
            "maintenance",
            Arc::new(handover::MaintenanceSection(m.clone())),
        );
        (Some(m), Some(handover))
    } else {
        (None, None)
    };
    let handover_env = handover.as_ref().map(|h| h.env.clone());
    let admin_path = cluster.admin_socket(&node.name);
    let _admin = match crate::admin::AdminServer::serve(
        &admin_path,
        Arc::new(admin_handler::DaemonAdmin {
            node: node.name.clone(),
            balancer: balancer.clone(),
            maintenance,
        }),
    )
    .await
    {
        Ok(server) => Some(server),
        Err(e) => {
            error!(
                "{e}; `haplane lb` and `haplane maintenance` will not work on this node (status.adminSocket)"
            );
            None
        }
    };

    // etcd: elections and snapshots run on masters, the fenced VIP on the VIP's nodes (an lb
    // node is a client of the masters' etcd for it, with no member of its own).
    let etcd_client = match crate::etcd::etcd_config(&cluster) {
        Ok(cfg) if duties.etcd_client => Some(crate::etcd::spawn_connector(cfg)),
        _ => None,
    };
    if let Some(client) = &etcd_client {
        hub.add_section("etcd", Arc::new(crate::etcd::EtcdSection(client.clone())));
    }
    // The VIP gate (fencing: quorum): its parameters are checked here, so a bad
    // combination stops the daemon instead of running unfenced.
    let gate = match &etcd_client {
        Some(client) if duties.fence => {
            // The kernel stop: closed until the gate first holds; no fencing without it.
            let fence =
                crate::nft::KernelFence::install(cluster.vip.address.addr).map_err(|error| {
                    DaemonError::KernelFence {
                        node: node.name.clone(),
                        error,
                    }
                })?;
            let marker = cluster.state_dir.join(format!("fence-armed-{}", node.name));
            let gate = crate::fence::GateDriver::new(
                cluster
                    .vip
                    .gate
                    .gate_config(&node.name, cluster.vip.preempt),
                client.clone(),
                crate::fence::gate_key(cluster.vip.vrid),
                marker,
                "nftables",
            )
            .map_err(|error| DaemonError::Gate {
                node: node.name.clone(),
                error,
            })?;
            hub.add_section(
                "fence",
                Arc::new(crate::elections::FenceSection {
                    status: gate.status(),
                    standalone: !duties.elections,
                }),
            );
            Some((gate, fence))
        }
        _ => None,
    };
    let elections = etcd_client
        .as_ref()
        .filter(|_| duties.elections)
        .map(|client| {
            let e = crate::elections::Elections::spawn(
                &cluster,
                &node,
                client.clone(),
                gate.as_ref().map(|(g, _)| g.status()),
            );
            hub.add_section("elections", Arc::new(e.clone()));
            e
        });

    if duties.vrrp {
        let mut runner = VrrpRunner::new(&cluster, &node, netlink, hub.clone()).await?;
        runner.watch_auth_hmac(opts.config.clone());
        if let Some((g, fence)) = gate {
            runner.set_gate(g, fence);
        }
        if let Some(h) = handover {
            runner.set_handover(h);
        }
        if let (Some(settings), Some(b)) = (&cluster.vip.track_balancer, &balancer) {
            runner.set_balancer_check(b.clone(), settings.clone());
        }
        // The router's own span inside the node's: its lines and its tasks' (tracked scripts,
        // notify, GARP) say which instance.
        let span =
            tracing::info_span!("vrrp", instance = %runner.instance(), vrid = cluster.vip.vrid);
        tracing::Instrument::instrument(runner.run(stop_rx), span).await?;
    } else {
        info!("no VRRP router on this node ({})", duties.describe());
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|s| *s).await;
    }

    if let Some(e) = elections {
        info!("resigning elections");
        let _ = tokio::time::timeout(Duration::from_secs(10), e.resign()).await;
    }
    // The VIP has been handed over; now let established tunnels finish.
    if let Some(task) = reloader {
        task.abort();
        let _ = task.await;
    }
    if let Some(b) = balancer {
        hub.remove_section("load_balancer");
        let timeout = cluster.load_balancer.drain_timeout.get();
        info!("draining the load balancer (up to {timeout:?})");
        if handover_env.is_some() {
            // The VIP is parked on lo while we drain (docs/maintenance.md): keep serving.
            b.drain_listening(timeout).await;
        } else {
            b.drain_shared(timeout).await;
        }
    }
    // The balancer has drained: a VIP parked on lo for its sessions goes now.
    if let Some(env) = handover_env {
        env.clear().await;
    }
    info!("stopped");
    Ok(())
}
