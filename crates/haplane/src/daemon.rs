//! `haplane run`: one node's daemon. Wires the sans-IO VRRP router to sockets, netlink,
//! gratuitous ARP, tracked scripts, notify commands and the status server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{Cluster, Node, Role, TrackScript, VrrpVersion};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use vrrp::{Action, DiscardReason, Incoming, Router, RouterConfig, State, TrackedCheck, Version};

use crate::balance;
use crate::garp::Announcer;
use crate::netlink::{Netlink, NetlinkError};
use crate::status::{self, CheckStatus, Hub, RouterCounters, RouterStatus};
use crate::vrrp_io::{VrrpIoError, VrrpSocket};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The cluster file is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// This host could not be matched to a node.
    #[error("cannot tell which node this is: {0}")]
    FindNode(#[from] config::FindNodeError),
    /// Netlink failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The VRRP sockets failed.
    #[error(transparent)]
    VrrpIo(#[from] VrrpIoError),
    /// The VRRP settings were refused by the core.
    #[error("invalid VRRP settings for node {node}: {source}")]
    Router {
        node: String,
        source: vrrp::ConfigError,
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
    #[error("cannot start the load balancer on node {node}: {source}")]
    Balancer { node: String, source: lb::LbError },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
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
    let netlink = Netlink::open()?;
    let local = netlink.local_addresses().await?;
    let node = cluster.find_node(opts.node.as_deref(), &local)?.clone();
    info!(cluster = %cluster.cluster, node = %node.name, address = %node.address, "starting");

    let hub = Hub::new(&cluster.cluster, &node.name);
    let status_addr = status::serve(cluster.status.listen, hub.clone()).await?;
    info!(node = %node.name, "status on http://{status_addr}/status");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Signals)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(DaemonError::Signals)?;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signals)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
        let _ = stop_tx.send(true);
    });

    let balancer = match balance::lb_config(&cluster, &node) {
        Some(cfg) => {
            if let Some(ca) = balance::missing_ca(&cluster) {
                warn!(node = %node.name, ca = %ca.display(),
                    "the CA for HTTPS health checks does not exist yet; checking backends with TCP connects until it appears");
            }
            let listen = cfg.listen.clone();
            let b = lb::Balancer::start(cfg)
                .await
                .map_err(|source| DaemonError::Balancer {
                    node: node.name.clone(),
                    source,
                })?;
            info!(node = %node.name, ?listen, "load balancer listening");
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
        .map(|b| tokio::spawn(reload_loop(opts.config.clone(), node.clone(), b, hup)));

    // etcd: elections, the fenced VIP and snapshots run on masters.
    let etcd_client = match (&cluster.etcd, node.is(Role::Master)) {
        (Some(_), true) => Some(crate::etcd::spawn_connector(
            crate::etcd::etcd_config(&cluster).expect("etcd section present"),
            node.name.clone(),
        )),
        _ => None,
    };
    let fence = match (&etcd_client, cluster.fencing()) {
        (Some(client), config::Fencing::Quorum) => {
            let election = crate::elections::election_config(
                &cluster,
                &node,
                &format!("haplane-vip-{}", cluster.vip.vrid),
            );
            let marker = cluster.state_dir.join(format!("fence-armed-{}", node.name));
            let fence = crate::fence::Fence::spawn(client.clone(), election, marker);
            hub.add_section(
                "fence",
                Arc::new(crate::elections::FenceSection(fence.status.clone())),
            );
            Some(fence)
        }
        _ => None,
    };
    let elections = etcd_client.as_ref().map(|client| {
        let e = crate::elections::Elections::spawn(
            &cluster,
            &node,
            client.clone(),
            fence.as_ref().map(|f| f.status.clone()),
        );
        hub.add_section("elections", Arc::new(e.clone()));
        e
    });

    if node.is(Role::Master) {
        let mut runner = VrrpRunner::new(&cluster, &node, netlink, hub.clone()).await?;
        if let (Some(f), Some(client)) = (fence, &etcd_client) {
            runner.set_fence(f, client.clone());
        }
        runner.run(stop_rx).await?;
    } else {
        info!(node = %node.name, "not a master: no VRRP router on this node");
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|s| *s).await;
    }

    if let Some(e) = elections {
        info!(node = %node.name, "resigning elections");
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
        match Arc::try_unwrap(b) {
            Ok(b) => {
                info!(node = %node.name, "draining the load balancer (up to {timeout:?})");
                b.drain(timeout).await;
            }
            Err(_) => warn!(node = %node.name, "load balancer still referenced; not draining"),
        }
    }
    info!(node = %node.name, "stopped");
    Ok(())
}

/// The VRRP router settings for `node`, from the cluster file.
pub fn router_config(cluster: &Cluster, node: &Node) -> RouterConfig {
    let vip = &cluster.vip;
    let mut rc = RouterConfig::new(
        cluster.cluster.clone(),
        vip.vrid,
        match vip.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        },
        node.address,
        vec![vip.address.addr],
    );
    rc.priority = node.priority;
    rc.advert_interval = vip.advert_interval.get();
    rc.preempt = vip.preempt;
    rc.preempt_delay = vip.preempt_delay.get();
    rc.auth_pass = vip.auth_pass.clone();
    rc.v3_checksum_as_v2 = vip.v3_checksum_as_v2;
    if vip.unicast {
        rc.unicast_peers = cluster
            .masters()
            .filter(|n| n.name != node.name)
            .map(|n| n.address)
            .collect();
    }
    rc.tracked = vip
        .track
        .iter()
        .map(|t| TrackedCheck {
            name: t.name.clone(),
            weight: t.weight,
        })
        .collect();
    rc
}

/// The interface's IPv6 link-local address, waiting up to 10 s for one to appear.
async fn link_local(
    netlink: &Netlink,
    index: u32,
    interface: &str,
) -> Result<std::net::Ipv6Addr, DaemonError> {
    for _ in 0..50 {
        let found = netlink
            .addresses_on(index)
            .await?
            .into_iter()
            .find_map(|(a, _)| match a {
                IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            });
        if let Some(v6) = found {
            return Ok(v6);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(DaemonError::NoLinkLocal(interface.to_string()))
}

enum Event {
    Check { index: usize, up: bool },
    Link(bool),
}

struct VrrpRunner {
    node: String,
    node_address: IpAddr,
    interface: String,
    ifindex: u32,
    prefix: u8,
    router: Router,
    socket: VrrpSocket,
    netlink: Netlink,
    announcer: Option<Arc<Announcer>>,
    garp: config::Garp,
    notify: Option<Vec<String>>,
    hub: Arc<Hub>,
    fencing: String,
    track: Vec<TrackScript>,
    checks_up: Vec<bool>,
    holds_vip: bool,
    link_up: bool,
    last_transition: f64,
    ip_errors: u64,
    announce_task: Option<JoinHandle<()>>,
    notify_tasks: Vec<JoinHandle<()>>,
    /// VRRP says we are master and want the VIP.
    want_vip: bool,
    /// The VIP election's answer when fencing; None means plain VRRP.
    fence: Option<crate::fence::Fence>,
    grant: crate::fence::Grant,
    quorum_check: Option<(usize, watch::Receiver<Option<elect::Client>>)>,
    /// The lease deadline the VIP's lifetime was last refreshed for.
    refreshed_for: Option<Instant>,
}

impl VrrpRunner {
    async fn new(
        cluster: &Cluster,
        node: &Node,
        netlink: Netlink,
        hub: Arc<Hub>,
    ) -> Result<Self, DaemonError> {
        let interface = cluster.vip_interface(node).to_string();
        let link = netlink.link(&interface).await?;
        let vip = cluster.vip.address;
        let mut rc = router_config(cluster, node);
        if vip.addr.is_ipv6() && !cluster.vip.unicast {
            // RFC 5798 §5.1.2.1: IPv6 adverts come from the interface's link-local address.
            rc.primary_address = IpAddr::V6(link_local(&netlink, link.index, &interface).await?);
        }
        let primary = rc.primary_address;
        let router = Router::new(rc).map_err(|source| DaemonError::Router {
            node: node.name.clone(),
            source,
        })?;
        // A crashed run may have left the VIP behind; we are not master yet, so it must go,
        // or two nodes would answer for it (seed pitfall: two holders after a reboot).
        let present = netlink.addresses_on(link.index).await?;
        if present.iter().any(|(a, _)| *a == vip.addr) {
            warn!(node = %node.name, interface = %interface, vip = %vip,
                "removing a VIP left on the interface by an earlier run");
            netlink
                .remove_address(link.index, vip.addr, vip.prefix)
                .await?;
        }
        // A fresh IPv6 address is tentative for about a second (DAD): retry the bind a while.
        let mut tries = 0;
        let socket = loop {
            match VrrpSocket::open(&interface, link.index, primary, !cluster.vip.unicast) {
                Ok(s) => break s,
                Err(e) if primary.is_ipv6() && tries < 50 => {
                    tries += 1;
                    debug!(node = %node.name, "VRRP socket not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let announcer = match Announcer::open(&interface, link.index, link.mac) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                warn!(node = %node.name, "gratuitous ARP disabled: {e}");
                None
            }
        };
        Ok(VrrpRunner {
            node: node.name.clone(),
            node_address: node.address,
            interface,
            ifindex: link.index,
            prefix: vip.prefix,
            router,
            socket,
            netlink,
            announcer,
            garp: cluster.vip.garp.clone(),
            notify: cluster.vip.notify.clone(),
            hub,
            fencing: format!("{:?}", cluster.fencing()).to_lowercase(),
            track: cluster.vip.track.clone(),
            checks_up: vec![true; cluster.vip.track.len()],
            holds_vip: false,
            link_up: link.up,
            last_transition: status::unix_now(),
            ip_errors: 0,
            announce_task: None,
            notify_tasks: Vec::new(),
            want_vip: false,
            fence: None,
            grant: crate::fence::Grant::Unfenced,
            quorum_check: None,
            refreshed_for: None,
        })
    }

    /// Fence the VIP by etcd quorum: add the `etcd-quorum` check (weight 0: FAULT while the
    /// quorum is out of reach) and hold the VIP only while the VIP election grants it.
    fn set_fence(
        &mut self,
        fence: crate::fence::Fence,
        client: watch::Receiver<Option<elect::Client>>,
    ) {
        let mut rc = self.router.config().clone();
        rc.tracked.push(TrackedCheck {
            name: "etcd-quorum".into(),
            weight: 0,
        });
        match Router::new(rc) {
            Ok(router) => self.router = router,
            Err(e) => {
                error!(node = %self.node, "cannot add the etcd-quorum check, VIP not fenced: {e}");
                return;
            }
        }
        self.quorum_check = Some((self.router.config().tracked.len() - 1, client));
        self.checks_up.push(true);
        self.grant = *fence.grant.borrow();
        self.fence = Some(fence);
    }

    /// Make the interface agree with "VRRP master, and the fence (if any) allows it".
    ///
    /// While fenced, the VIP carries a 1 s valid lifetime refreshed at every lease renewal
    /// (every TTL/3): if this process freezes or dies, the kernel drops the VIP within about
    /// 1.25 s of the last renewal, before the deadline (TTL − margin) and well before the
    /// server can expire the lease (TTL) and let another node add it.
    async fn sync_vip(&mut self) {
        let now = Instant::now();
        let allowed = self.fence.is_none() || self.grant.allows(now);
        let desired = self.want_vip && allowed;
        let vips = self.router.config().virtual_addresses.clone();
        let (lifetime, renewed) = match self.grant {
            crate::fence::Grant::Until(d) if self.fence.is_some() => {
                (Some(1), self.refreshed_for != Some(d))
            }
            _ => (None, false),
        };
        if desired && (!self.holds_vip || renewed) {
            if let crate::fence::Grant::Until(d) = self.grant {
                self.refreshed_for = Some(d);
            }
            let refresh = self.holds_vip;
            for addr in &vips {
                let result = match lifetime {
                    Some(secs) => {
                        self.netlink
                            .add_address_for(self.ifindex, *addr, self.prefix, secs)
                            .await
                    }
                    None => {
                        self.netlink
                            .add_address(self.ifindex, *addr, self.prefix)
                            .await
                    }
                };
                match result {
                    Ok(()) if refresh => {}
                    Ok(()) => {
                        info!(node = %self.node, vip = %addr, interface = %self.interface, fence = ?self.grant, "VIP added")
                    }
                    Err(e) => error!(node = %self.node, vip = %addr, "{e}"),
                }
            }
            if !refresh {
                self.holds_vip = true;
                self.announce(vips);
            }
        } else if !desired && self.holds_vip {
            if let Some(task) = self.announce_task.take() {
                task.abort();
            }
            for addr in &vips {
                match self
                    .netlink
                    .remove_address(self.ifindex, *addr, self.prefix)
                    .await
                {
                    Ok(()) => {
                        info!(node = %self.node, vip = %addr, want = self.want_vip, fence = ?self.grant, "VIP removed")
                    }
                    Err(e) => error!(node = %self.node, vip = %addr, "{e}"),
                }
            }
            self.holds_vip = false;
        }
    }

    async fn run(
        mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        let (events_tx, mut events) = mpsc::channel(64);
        spawn_link_watch(
            self.netlink.clone(),
            self.interface.clone(),
            self.link_up,
            events_tx.clone(),
        );
        for (index, script) in self.track.iter().enumerate() {
            spawn_track_script(
                index,
                script.clone(),
                self.node.clone(),
                self.node_address,
                events_tx.clone(),
            );
        }
        if let (Some((index, client)), Some(fence)) = (self.quorum_check.clone(), &self.fence) {
            crate::fence::spawn_quorum_probe(
                client,
                fence.status.clone(),
                events_tx.clone(),
                move |up| Event::Check { index, up },
            );
        }
        let mut grant_rx = self.fence.as_ref().map(|f| f.grant.clone());
        let now = Instant::now();
        if !self.link_up {
            self.router.set_interface_up(now, false);
        }
        self.router.start(now);
        self.apply_actions().await;
        loop {
            self.publish();
            let deadline = self.router.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            // While we hold a fenced VIP, its lease deadline is a timer of its own.
            let fence_deadline = match (self.holds_vip, self.grant) {
                (true, crate::fence::Grant::Until(d)) => Some(d),
                _ => None,
            };
            let fence_expiry = async {
                match fence_deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let grant_changed = async {
                match grant_rx.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        *rx.borrow_and_update()
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                grant = grant_changed => self.grant = grant,
                _ = fence_expiry => warn!(node = %self.node, "VIP lease deadline passed without renewal; dropping the VIP"),
                packet = self.socket.recv() => {
                    match packet {
                        Ok(d) => self.on_datagram(&d),
                        Err(e) => {
                            error!(node = %self.node, interface = %self.interface, "{e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                _ = sleep => self.router.handle_timeout(Instant::now()),
                Some(event) = events.recv() => self.on_event(event),
                _ = stop.wait_for(|s| *s) => break,
            }
            self.apply_actions().await;
            self.sync_vip().await;
        }
        // RFC 5798 §6.4.3 Shutdown: a master sends priority 0 so a backup takes over after
        // Skew_Time instead of Master_Down_Interval, and the VIP leaves with us.
        self.router.shutdown(Instant::now());
        self.apply_actions().await;
        self.want_vip = false;
        self.sync_vip().await;
        if let Some(fence) = self.fence.take() {
            // Resign the VIP election so the next master need not wait for the lease to expire.
            fence.stop(Duration::from_secs(5)).await;
        }
        if self.holds_vip {
            let vip = self.router.config().virtual_addresses.clone();
            for addr in vip {
                let _ = self
                    .netlink
                    .remove_address(self.ifindex, addr, self.prefix)
                    .await;
            }
            self.holds_vip = false;
        }
        self.publish();
        // The STOP notification must not be lost to our exit: wait for it, within reason.
        let pending = std::mem::take(&mut self.notify_tasks);
        let wait_all = futures_util::future::join_all(pending);
        if tokio::time::timeout(Duration::from_secs(5), wait_all)
            .await
            .is_err()
        {
            warn!(node = %self.node, "notify commands still running after 5s; not waiting longer");
        }
        Ok(())
    }

    fn on_datagram(&mut self, datagram: &crate::vrrp_io::Datagram) {
        let bytes = match datagram {
            crate::vrrp_io::Datagram::V4(bytes) => bytes,
            crate::vrrp_io::Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload,
            } => {
                let pkt = Incoming {
                    src: IpAddr::V6(*src),
                    dst: IpAddr::V6(*dst),
                    hop_limit: *hop_limit,
                    payload,
                };
                self.router.handle_packet(Instant::now(), pkt);
                return;
            }
        };
        match vrrp::parse_ipv4(bytes) {
            Ok(ip) => {
                let pkt = Incoming {
                    src: IpAddr::V4(ip.src),
                    dst: IpAddr::V4(ip.dst),
                    hop_limit: ip.ttl,
                    payload: ip.payload,
                };
                self.router.handle_packet(Instant::now(), pkt);
            }
            Err(e) => {
                self.ip_errors += 1;
                debug!(node = %self.node, "discarding a datagram with a bad IPv4 header: {e}");
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Check { index, up } => {
                if let Some(slot) = self.checks_up.get_mut(index) {
                    *slot = up;
                }
                let name = self
                    .track
                    .get(index)
                    .map(|t| t.name.as_str())
                    .unwrap_or("?");
                info!(node = %self.node, check = name, up, "tracked script changed");
                self.router.set_check(now, index, up);
            }
            Event::Link(up) => {
                info!(node = %self.node, interface = %self.interface, up, "link state changed");
                self.link_up = up;
                self.router.set_interface_up(now, up);
            }
        }
    }

    async fn apply_actions(&mut self) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Send { dst, payload } => {
                    if let Err(e) = self.socket.send(dst, &payload).await {
                        // A down link refuses sends; the router learns of it via the link watch.
                        debug!(node = %self.node, "{e}");
                    }
                }
                Action::AddVips(_) => {
                    self.want_vip = true;
                    if let Some(f) = &self.fence {
                        let _ = f.want.send(true);
                    }
                    self.sync_vip().await;
                }
                Action::RemoveVips(_) => {
                    self.want_vip = false;
                    if let Some(f) = &self.fence {
                        let _ = f.want.send(false);
                    }
                    self.sync_vip().await;
                }
                // The burst goes out when the VIP is actually added (sync_vip), which with
                // fencing may be later than the VRRP transition.
                Action::Announce(addrs) => {
                    if self.holds_vip {
                        self.announce(addrs);
                    }
                }
                Action::StateChanged { from, to, priority } => {
                    info!(node = %self.node, instance = %self.router.config().name,
                        %from, %to, priority, "VRRP state changed");
                    self.last_transition = status::unix_now();
                    self.notify(to, priority);
                }
            }
        }
    }

    /// keepalived's schedule: a burst of `repeat` now, another after `delay`, then every
    /// `refresh` if set.
    fn announce(&mut self, addrs: Vec<IpAddr>) {
        let Some(announcer) = self.announcer.clone() else {
            return;
        };
        if let Some(task) = self.announce_task.take() {
            task.abort();
        }
        let garp = self.garp.clone();
        let node = self.node.clone();
        self.announce_task = Some(tokio::spawn(async move {
            let burst = |announcer: &Announcer| {
                for _ in 0..garp.repeat {
                    if let Err(e) = announcer.announce(&addrs) {
                        warn!(node = %node, "{e}");
                        return;
                    }
                    if !garp.interval.get().is_zero() {
                        std::thread::sleep(garp.interval.get().min(Duration::from_millis(100)));
                    }
                }
            };
            burst(&announcer);
            if !garp.delay.get().is_zero() {
                tokio::time::sleep(garp.delay.get()).await;
                burst(&announcer);
            }
            if !garp.refresh.get().is_zero() {
                loop {
                    tokio::time::sleep(garp.refresh.get()).await;
                    burst(&announcer);
                }
            }
        }));
    }

    /// keepalived's notify arguments: `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`.
    fn notify(&mut self, to: State, priority: u8) {
        self.notify_tasks.retain(|t| !t.is_finished());
        let Some(cmd) = &self.notify else { return };
        let state = match to {
            State::Initialize => "STOP",
            other => other.as_str(),
        };
        let mut command = tokio::process::Command::new(&cmd[0]);
        command
            .args(&cmd[1..])
            .arg("INSTANCE")
            .arg(&self.router.config().name)
            .arg(state)
            .arg(priority.to_string())
            .env("HAPLANE_NODE", &self.node)
            .env("HAPLANE_NODE_ADDRESS", self.node_address.to_string())
            .kill_on_drop(false);
        match command.spawn() {
            Ok(mut child) => {
                let node = self.node.clone();
                self.notify_tasks.push(tokio::spawn(async move {
                    match child.wait().await {
                        Ok(s) if !s.success() => {
                            warn!(node = %node, "notify command exited with {s}")
                        }
                        Err(e) => warn!(node = %node, "notify command: {e}"),
                        _ => {}
                    }
                }));
            }
            Err(e) => warn!(node = %self.node, command = %cmd[0], "cannot run notify command: {e}"),
        }
    }

    fn publish(&self) {
        let r = &self.router;
        let c = r.counters();
        let mut discarded: std::collections::BTreeMap<&'static str, u64> = DiscardReason::ALL
            .iter()
            .map(|reason| (reason.as_str(), c.discarded(*reason)))
            .collect();
        discarded.insert("bad_ip_header", self.ip_errors);
        let cfg = r.config();
        self.hub.set_router(
            0,
            RouterStatus {
                instance: cfg.name.clone(),
                interface: self.interface.clone(),
                vrid: cfg.vrid,
                version: cfg.version.number(),
                state: r.state().as_str().to_string(),
                base_priority: cfg.priority,
                effective_priority: r.effective_priority(),
                master: r.master_address(),
                vips: cfg
                    .virtual_addresses
                    .iter()
                    .map(|a| format!("{a}/{}", self.prefix))
                    .collect(),
                holds_vip: self.holds_vip,
                link_up: self.link_up,
                master_adver_interval_ms: r.master_adver_interval().as_millis() as u64,
                last_transition: self.last_transition,
                fencing: self.fencing.clone(),
                checks: cfg
                    .tracked
                    .iter()
                    .zip(&self.checks_up)
                    .map(|(t, up)| CheckStatus {
                        name: t.name.clone(),
                        weight: t.weight,
                        up: *up,
                    })
                    .collect(),
                counters: RouterCounters {
                    adverts_received: c.adverts_received,
                    adverts_sent: c.adverts_sent,
                    priority_zero_received: c.priority_zero_received,
                    priority_zero_sent: c.priority_zero_sent,
                    transitions: c.transitions,
                    became_master: c.became_master,
                    discarded,
                },
            },
        );
    }
}

/// Poll the link every 100 ms: cheap, and it cannot miss a flap the way a lost netlink
/// notification could.
fn spawn_link_watch(
    netlink: Netlink,
    interface: String,
    mut last: bool,
    events: mpsc::Sender<Event>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let up = match netlink.link(&interface).await {
                Ok(link) => link.up,
                Err(_) => false,
            };
            if up != last {
                last = up;
                if events.send(Event::Link(up)).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Run a tracked script every `interval`; report a change after `rise` successes or `fall`
/// failures in a row (keepalived's vrrp_script semantics).
/// The script sees `HAPLANE_NODE` and `HAPLANE_NODE_ADDRESS`, so one command in the shared
/// cluster file can check this node's own service.
fn spawn_track_script(
    index: usize,
    script: TrackScript,
    node: String,
    node_address: IpAddr,
    events: mpsc::Sender<Event>,
) {
    tokio::spawn(async move {
        let timeout = script.timeout.unwrap_or(script.interval).get();
        let mut up = true;
        let mut streak = 0u32;
        let mut tick = tokio::time::interval(script.interval.get());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut command = tokio::process::Command::new(&script.command[0]);
            command
                .args(&script.command[1..])
                .env("HAPLANE_NODE", &node)
                .env("HAPLANE_NODE_ADDRESS", node_address.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let ok = match command.spawn() {
                Ok(mut child) => match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(status)) => status.success(),
                    Ok(Err(_)) => false,
                    Err(_) => {
                        debug!(node = %node, check = %script.name, "timed out after {timeout:?}");
                        let _ = child.kill().await;
                        false
                    }
                },
                Err(e) => {
                    warn!(node = %node, check = %script.name, "cannot run {}: {e}", script.command[0]);
                    false
                }
            };
            if ok == up {
                streak = 0;
                continue;
            }
            streak += 1;
            let needed = if ok { script.rise } else { script.fall };
            if streak >= needed {
                up = ok;
                streak = 0;
                if events.send(Event::Check { index, up }).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Reload the balancer's backends, policy and checks on SIGHUP or when the cluster file
/// changes (checked every 2 s). A file that fails validation is logged and ignored: the
/// running configuration stays, and established connections are never dropped.
async fn reload_loop(
    path: PathBuf,
    node: Node,
    balancer: Arc<lb::Balancer>,
    mut hup: tokio::signal::unix::Signal,
) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    let mut waiting_for_ca = Cluster::load(&path)
        .ok()
        .and_then(|(c, _)| balance::missing_ca(&c));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = modified(&path);
                if now != last {
                    last = now;
                    "the cluster file changed"
                } else if waiting_for_ca.as_ref().is_some_and(|ca| ca.exists()) {
                    "the CA file appeared"
                } else {
                    continue;
                }
            }
        };
        let cluster = match Cluster::load(&path) {
            Ok((c, _)) => c,
            Err(e) => {
                error!(node = %node.name, "reload after {reason} refused, keeping the running config: {e}");
                continue;
            }
        };
        waiting_for_ca = balance::missing_ca(&cluster);
        let Some(me) = cluster.node(&node.name) else {
            error!(node = %node.name, "reload after {reason} refused: this node is no longer listed");
            continue;
        };
        let Some(cfg) = balance::lb_config(&cluster, me) else {
            warn!(node = %node.name, "reload after {reason}: the balancer was disabled; restart to stop it");
            continue;
        };
        match balancer.reload(cfg).await {
            Ok(()) => info!(node = %node.name, "load balancer reloaded after {reason}"),
            Err(e) => error!(node = %node.name, "load balancer reload after {reason} failed: {e}"),
        }
    }
}
