//! The VRRP driver: carries the sans-IO router from the `vrrp` crate onto a real interface
//! (raw sockets, netlink addresses, link state), and holds the VIP only while VRRP and the
//! fence (if any) allow it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{Cluster, Node, TrackScript, VrrpVersion};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use vrrp::{Action, Incoming, Router, RouterConfig, TrackedCheck, Version};

use super::DaemonError;
use super::garp_schedule::GarpSchedule;
use super::handover::HandoverDriver;
use super::link_watch::spawn_link_watch;
use super::notify::Notifier;
use super::router_status::{DriverFacts, router_status};
use super::track::spawn_track_script;
use super::vrrp_auth::{self, DiscardLog};
use crate::garp::Announcer;
use crate::netlink::Netlink;
use crate::status::{self, Hub};
use crate::vrrp_io::VrrpSocket;

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
    rc.auth_pass = vip.auth_pass.as_ref().map(|p| p.expose().to_string());
    rc.v3_checksum_as_v2 = vip.v3_checksum_as_v2;
    if vip.unicast {
        rc.unicast_peers = cluster
            .vrrp_nodes()
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

pub(super) enum Event {
    Check {
        index: usize,
        up: bool,
    },
    Link(bool),
    /// New auth_hmac settings from the cluster file (rotation, migration step).
    AuthHmac(Option<vrrp::AuthHmacConfig>),
}

pub(super) struct VrrpRunner {
    node: String,
    node_address: IpAddr,
    interface: String,
    ifindex: u32,
    prefix: u8,
    router: Router,
    socket: VrrpSocket,
    netlink: Netlink,
    garp: GarpSchedule,
    notifier: Notifier,
    hub: Arc<Hub>,
    fencing: String,
    track: Vec<TrackScript>,
    checks_up: Vec<bool>,
    holds_vip: bool,
    link_up: bool,
    last_transition: f64,
    ip_errors: u64,
    /// VRRP says we are master and want the VIP.
    want_vip: bool,
    /// The VIP election's answer when fencing; None means plain VRRP.
    fence: Option<crate::fence::Fence>,
    grant: crate::fence::Grant,
    quorum_check: Option<(usize, watch::Receiver<Option<elect::Client>>)>,
    /// The lease deadline the VIP's lifetime was last refreshed for.
    refreshed_for: Option<Instant>,
    /// Rate-limited log of discarded adverts.
    discard_log: DiscardLog,
    /// The cluster file to watch for auth_hmac changes.
    auth_watch: Option<std::path::PathBuf>,
    /// Maintenance and graceful handover (daemon/handover.rs); None in tests of the bare driver.
    handover: Option<HandoverDriver>,
    /// The built-in `balancer` check (daemon/balancer_check.rs), with its index.
    balancer_check: Option<(usize, Arc<lb::Balancer>, config::TrackBalancer)>,
}

impl VrrpRunner {
    pub(super) async fn new(
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
        rc.auth_hmac =
            vrrp_auth::auth_hmac_config(cluster).map_err(|error| DaemonError::AuthHmacKey {
                node: node.name.clone(),
                error,
            })?;
        info!(node = %node.name, "auth_hmac: {}", vrrp_auth::describe(rc.auth_hmac.as_ref()));
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
        let instance = router.config().name.clone();
        Ok(VrrpRunner {
            node: node.name.clone(),
            node_address: node.address,
            interface,
            ifindex: link.index,
            prefix: vip.prefix,
            router,
            socket,
            netlink,
            garp: GarpSchedule::new(announcer, cluster.vip.garp.clone(), node.name.clone()),
            notifier: Notifier::new(
                cluster.vip.notify.clone(),
                instance,
                node.name.clone(),
                node.address,
            ),
            hub,
            fencing: format!("{:?}", cluster.fencing()).to_lowercase(),
            track: cluster.vip.track.clone(),
            checks_up: vec![true; cluster.vip.track.len()],
            holds_vip: false,
            link_up: link.up,
            last_transition: status::unix_now(),
            ip_errors: 0,
            want_vip: false,
            fence: None,
            grant: crate::fence::Grant::Unfenced,
            quorum_check: None,
            refreshed_for: None,
            discard_log: DiscardLog::new(),
            auth_watch: None,
            handover: None,
            balancer_check: None,
        })
    }

    /// Follow `vip.authHmac` in `path` live (rotation and migration without a restart).
    pub(super) fn watch_auth_hmac(&mut self, path: std::path::PathBuf) {
        self.auth_watch = Some(path);
    }

    /// The current instant, with the router told the wall clock at it (auth_hmac).
    fn now(&mut self) -> Instant {
        let now = Instant::now();
        self.router.set_wall_clock(now, vrrp_auth::wall_clock());
        now
    }

    /// Gate the VIP on this node's balancer path: add the built-in `balancer` check.
    pub(super) fn set_balancer_check(
        &mut self,
        balancer: Arc<lb::Balancer>,
        settings: config::TrackBalancer,
    ) {
        let mut rc = self.router.config().clone();
        rc.tracked.push(TrackedCheck {
            name: "balancer".into(),
            weight: settings.weight,
        });
        match Router::new(rc) {
            Ok(router) => self.router = router,
            Err(e) => {
                error!(node = %self.node, "cannot add the balancer check: {e}");
                return;
            }
        }
        self.checks_up.push(true);
        self.balancer_check = Some((self.router.config().tracked.len() - 1, balancer, settings));
    }

    /// Take part in maintenance and graceful handover: add the built-in `maintenance` check
    /// (weight 0: FAULT while in maintenance, which sends priority 0 and gives the VIP away).
    pub(super) fn set_handover(&mut self, mut handover: HandoverDriver) {
        let mut rc = self.router.config().clone();
        rc.tracked.push(TrackedCheck {
            name: "maintenance".into(),
            weight: 0,
        });
        match Router::new(rc) {
            Ok(router) => self.router = router,
            Err(e) => {
                error!(node = %self.node, "cannot add the maintenance check: {e}");
                return;
            }
        }
        handover.check_index = self.router.config().tracked.len() - 1;
        self.checks_up.push(true);
        self.handover = Some(handover);
    }

    /// Carry out the handover's actions; a maintenance change moves the router at once.
    async fn run_handover(&mut self) {
        let Some(h) = self.handover.as_mut() else {
            return;
        };
        let index = h.check_index;
        if let Some(up) = h.apply().await {
            if let Some(slot) = self.checks_up.get_mut(index) {
                *slot = up;
            }
            self.router.set_check(Instant::now(), index, up);
            self.apply_actions().await;
            self.sync_vip().await;
        }
    }

    /// Fence the VIP by etcd quorum: add the `etcd-quorum` check (weight 0: FAULT while the
    /// quorum is out of reach) and hold the VIP only while the VIP election grants it.
    pub(super) fn set_fence(
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
                // Before the gratuitous ARP sends the old holder's clients here: forward their
                // sessions back to it, or end our own park.
                if let Some(h) = self.handover.as_mut() {
                    h.before_hold(now).await;
                }
                self.holds_vip = true;
                self.garp.start(vips);
            }
        } else if !desired && self.holds_vip {
            self.garp.stop();
            if let Some(h) = self.handover.as_mut() {
                h.before_release(now).await;
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
            if let Some(h) = self.handover.as_mut() {
                h.after_release(now).await;
            }
        }
    }

    pub(super) async fn run(
        mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        let (events_tx, mut events) = mpsc::channel(64);
        spawn_link_watch(
            self.netlink.clone(),
            self.interface.clone(),
            self.link_up,
            events_tx.clone(),
            Event::Link,
        );
        for (index, script) in self.track.iter().enumerate() {
            spawn_track_script(
                script.clone(),
                self.node.clone(),
                self.node_address,
                events_tx.clone(),
                move |up| Event::Check { index, up },
            );
        }
        if let Some((index, balancer, settings)) = self.balancer_check.clone() {
            super::balancer_check::spawn_balancer_check(
                balancer,
                settings,
                self.node.clone(),
                events_tx.clone(),
                move |up| Event::Check { index, up },
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
        if let Some(path) = self.auth_watch.clone() {
            vrrp_auth::spawn_auth_watch(
                path,
                self.node.clone(),
                self.router.auth_hmac().cloned(),
                events_tx.clone(),
                Event::AuthHmac,
            );
        }
        let mut grant_rx = self.fence.as_ref().map(|f| f.grant.clone());
        let mut maintenance_rx = self.handover.as_mut().and_then(|h| h.commands.take());
        let now = self.now();
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
            let handover_deadline = self.handover.as_ref().and_then(|h| h.core.poll_timeout());
            let handover_timer = async {
                match handover_deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let maintenance_command = async {
                match maintenance_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(command) = maintenance_command => {
                    if let Some(h) = self.handover.as_mut() {
                        h.on_command(Instant::now(), &self.router, command);
                    }
                }
                _ = handover_timer => {
                    if let Some(h) = self.handover.as_mut() {
                        h.core.handle_timeout(Instant::now());
                    }
                }
                grant = grant_changed => self.grant = grant,
                _ = fence_expiry => warn!(node = %self.node, "VIP lease deadline passed without renewal; dropping the VIP"),
                packet = self.socket.recv() => {
                    match packet {
                        Ok(d) => {
                            self.on_datagram(&d);
                            // Whatever else queued meanwhile, before the next status update.
                            for _ in 0..256 {
                                let Some(d) = self.socket.try_recv() else { break };
                                self.on_datagram(&d);
                            }
                            if let Some(h) = self.handover.as_mut() {
                                h.after_packet(Instant::now(), &self.router);
                            }
                        }
                        Err(e) => {
                            error!(node = %self.node, interface = %self.interface, "{e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                _ = sleep => {
                    let now = self.now();
                    self.router.handle_timeout(now);
                }
                Some(event) = events.recv() => self.on_event(event),
                _ = stop.wait_for(|s| *s) => break,
            }
            self.apply_actions().await;
            self.sync_vip().await;
            self.discard_log.flush(&self.node, Instant::now());
            self.run_handover().await;
        }
        // A VIP that leaves now is parked while the balancer drains (daemon.rs clears it).
        if let Some(h) = self.handover.as_mut() {
            h.core.handle_shutdown();
        }
        // RFC 5798 §6.4.3 Shutdown: a master sends priority 0 so a backup takes over after
        // Skew_Time instead of Master_Down_Interval, and the VIP leaves with us.
        let now = self.now();
        self.router.shutdown(now);
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
        self.notifier.finish(Duration::from_secs(5)).await;
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
                let now = self.now();
                if let Some(reason) = self.router.handle_packet(now, pkt) {
                    self.discard_log.record(&self.node, now, reason, pkt.src);
                }
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
                let now = Instant::now();
                self.router.set_wall_clock(now, vrrp_auth::wall_clock());
                if let Some(reason) = self.router.handle_packet(now, pkt) {
                    self.discard_log.record(&self.node, now, reason, pkt.src);
                }
            }
            Err(e) => {
                self.ip_errors += 1;
                debug!(node = %self.node, "discarding a datagram with a bad IPv4 header: {e}");
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Check { index, up } => {
                if let Some(slot) = self.checks_up.get_mut(index) {
                    *slot = up;
                }
                // Scripts first, then the built-in checks (etcd-quorum, maintenance, balancer).
                let name = self
                    .router
                    .config()
                    .tracked
                    .get(index)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                info!(node = %self.node, check = %name, up, "tracked check changed");
                self.router.set_check(now, index, up);
            }
            Event::Link(up) => {
                info!(node = %self.node, interface = %self.interface, up, "link state changed");
                self.link_up = up;
                self.router.set_interface_up(now, up);
            }
            // The send sequence and replay marks carry over; the state does not change.
            Event::AuthHmac(cfg) => {
                let text = vrrp_auth::describe(cfg.as_ref());
                match self.router.set_auth_hmac(cfg) {
                    Ok(()) => info!(node = %self.node, "auth_hmac now {text}"),
                    Err(e) => {
                        error!(node = %self.node, "auth_hmac change refused, keeping the running keys: {e}")
                    }
                }
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
                        self.garp.start(addrs);
                    }
                }
                Action::StateChanged { from, to, priority } => {
                    info!(node = %self.node, instance = %self.router.config().name,
                        %from, %to, priority, "VRRP state changed");
                    self.last_transition = status::unix_now();
                    self.notifier.notify(to, priority);
                }
            }
        }
    }

    fn publish(&self) {
        let status = router_status(
            &self.router,
            DriverFacts {
                interface: &self.interface,
                prefix: self.prefix,
                holds_vip: self.holds_vip,
                link_up: self.link_up,
                last_transition: self.last_transition,
                fencing: &self.fencing,
                checks_up: &self.checks_up,
                ip_errors: self.ip_errors,
            },
        );
        self.hub.set_router(0, status);
        if let Some(h) = &self.handover {
            h.publish(&self.router, self.holds_vip);
        }
    }
}
