//! The VRRP driver: carries the sans-IO router from the `vrrp` crate onto a real interface
//! (raw sockets, netlink addresses, link state), and holds the VIP only while VRRP and the
//! VIP gate (with `fencing: quorum`, crate `gate`, driven by `crate::fence`) allow it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{Cluster, Fencing, Node, TrackScript, VrrpVersion};
use tokio::sync::mpsc;
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
use crate::fence::{GateDriver, VipAction};
use crate::garp::Announcer;
use crate::netlink::Netlink;
use crate::status::{self, Hub};
use crate::vrrp_io::VrrpSocket;

/// The built-in check that puts the router in FAULT while the etcd quorum is out of reach.
pub const QUORUM_CHECK: &str = "etcd-quorum";
/// The built-in check that lowers the router's priority while another node holds the VIP's
/// key (the gate defers), so VRRP keeps the holder master instead of this node.
pub const DEFER_CHECK: &str = "gate-defer";

/// The built-in check that lowers the router's priority while the key is this node's but
/// holds nothing (etcd has not confirmed it since the node stalled, or its renewals lapsed):
/// just above the nodes that defer to it, below any holder.
pub const UNCONFIRMED_CHECK: &str = "gate-unconfirmed";

/// The gate-defer check's weight for `node`: deferring, the VRRP nodes keep their order
/// (by priority, then address, as RFC 5798 §6.4.3 breaks ties) at priorities 1, 2, 3, …, so
/// they all stay below a holder's base priority, and when the holder is gone the best of
/// them still wins the VRRP election as it would have without the gate.
pub fn defer_weight(cluster: &Cluster, node: &Node) -> i16 {
    let rank = cluster
        .vrrp_nodes()
        .filter(|n| (n.priority, n.address) < (node.priority, node.address))
        .count();
    let target = 1 + i16::try_from(rank).unwrap_or(i16::MAX - 1);
    weight_to(node, target)
}

/// The gate-unconfirmed check's weight for `node`: priority N + 1 with N VRRP nodes, above
/// every node deferring to a holder (1..=N), so a holder that stalled past its hold but
/// was not replaced stays master instead of yielding to one of them (chaos seed 3, issue
/// 11), and below any holder's base priority, so a stale one still goes backup under a
/// new holder.
pub fn unconfirmed_weight(cluster: &Cluster, node: &Node) -> i16 {
    let n = cluster.vrrp_nodes().count();
    weight_to(node, i16::try_from(n).unwrap_or(i16::MAX - 1) + 1)
}

/// The weight that takes `node`'s base priority to `target`: never 0 (that would mean
/// FAULT) and never positive.
fn weight_to(node: &Node, target: i16) -> i16 {
    (target - i16::from(node.priority)).min(-1)
}

/// The VRRP router settings for `node`, from the cluster file. With `fencing: quorum` the
/// gate's checks are part of it from the start ([`QUORUM_CHECK`], [`DEFER_CHECK`],
/// [`UNCONFIRMED_CHECK`]),
/// after the tracked scripts: there is no unfenced fallback if they cannot be added.
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
    if cluster.fencing() == Fencing::Quorum {
        rc.tracked.push(TrackedCheck {
            name: QUORUM_CHECK.into(),
            weight: 0,
        });
        rc.tracked.push(TrackedCheck {
            name: DEFER_CHECK.into(),
            weight: defer_weight(cluster, node),
        });
        rc.tracked.push(TrackedCheck {
            name: UNCONFIRMED_CHECK.into(),
            weight: unconfirmed_weight(cluster, node),
        });
    }
    rc
}

/// The VIP's address lifetime while fenced, beyond the hold: not the stop (the kernel fence
/// is), only so a crashed holder's address does not stay on its interface for good.
const ADDRESS_BACKSTOP: Duration = Duration::from_secs(1);

fn backstop_secs(until: Instant, now: Instant) -> u32 {
    let left = until.saturating_duration_since(now) + ADDRESS_BACKSTOP;
    u32::try_from(left.as_secs() + 1).unwrap_or(u32::MAX)
}

/// Taken off the address's lifetime when estimating when the kernel removes it: its expiry
/// check is fuzzed by up to HZ/50 (20 ms) towards earlier.
const EXPIRY_MARGIN: Duration = Duration::from_millis(100);

/// When the kernel removes an address added at `now` with a lifetime of `secs`, at the
/// earliest.
fn address_expiry(now: Instant, secs: u32) -> Instant {
    now + Duration::from_secs(u64::from(secs)).saturating_sub(EXPIRY_MARGIN)
}

/// Whether a renewal that extends the hold to `until` must also re-add the address: only
/// when its lifetime (ending at `expires`) no longer outlasts the hold by the backstop.
/// Each renewal moves the deadline by about R, so the address is refreshed every few
/// renewals instead of at each one: fewer netlink round trips in the VRRP loop, whose
/// adverts and gate answers would wait behind them on a busy machine (issue 14).
fn address_refresh_due(expires: Option<Instant>, until: Instant) -> bool {
    expires.is_none_or(|e| e < until + ADDRESS_BACKSTOP)
}

fn check_index(router: &Router, name: &str) -> Option<usize> {
    router.config().tracked.iter().position(|t| t.name == name)
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

/// Why the loop woke.
enum Wake {
    Maintenance(crate::maintenance::Command),
    /// The maintenance pre-park finished (true: parked on lo with its ARP rules).
    PreParked(bool),
    HandoverTimer,
    Gate(crate::fence::Wake),
    Packet(Result<crate::vrrp_io::Datagram, crate::vrrp_io::VrrpIoError>),
    RouterTimer,
    Event(Event),
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
    /// The VIP gate when fencing; None means plain VRRP.
    gate: Option<GateDriver>,
    /// What the gate allows: None nothing, Some(None) unfenced, Some(Some(t)) until t.
    hold: Option<Option<Instant>>,
    /// The kernel stop (nftables), with the gate.
    kernel_fence: Option<crate::nft::KernelFence>,
    /// Indices of the gate's built-in checks in the router's config.
    quorum_index: Option<usize>,
    defer_index: Option<usize>,
    unconfirmed_index: Option<usize>,
    /// The hold deadline the VIP's lifetime was last refreshed for.
    refreshed_for: Option<Instant>,
    /// When the kernel removes the VIP's address at the earliest (None: no lifetime, or
    /// not added).
    address_expires: Option<Instant>,
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
        info!("auth_hmac: {}", vrrp_auth::describe(rc.auth_hmac.as_ref()));
        let primary = rc.primary_address;
        let router = Router::new(rc).map_err(|error| DaemonError::Router {
            node: node.name.clone(),
            error,
        })?;
        // A crashed run may have left the VIP behind; we are not master yet, so it must go,
        // or two nodes would answer for it (seed pitfall: two holders after a reboot).
        let present = netlink.addresses_on(link.index).await?;
        if present.iter().any(|(a, _)| *a == vip.addr) {
            warn!(interface = %interface, vip = %vip,
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
                    debug!("VRRP socket not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let announcer = match Announcer::open(&interface, link.index, link.mac) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                warn!("gratuitous ARP disabled: {e}");
                None
            }
        };
        let instance = router.config().name.clone();
        let checks = router.config().tracked.len();
        let quorum_index = check_index(&router, QUORUM_CHECK);
        let defer_index = check_index(&router, DEFER_CHECK);
        let unconfirmed_index = check_index(&router, UNCONFIRMED_CHECK);
        Ok(VrrpRunner {
            node: node.name.clone(),
            node_address: node.address,
            interface,
            ifindex: link.index,
            prefix: vip.prefix,
            router,
            socket,
            netlink,
            garp: GarpSchedule::new(announcer, cluster.vip.garp.clone()),
            notifier: Notifier::new(
                cluster.vip.notify.clone(),
                instance,
                node.name.clone(),
                node.address,
            ),
            hub,
            fencing: format!("{:?}", cluster.fencing()).to_lowercase(),
            track: cluster.vip.track.clone(),
            checks_up: vec![true; checks],
            holds_vip: false,
            link_up: link.up,
            last_transition: status::unix_now(),
            ip_errors: 0,
            want_vip: false,
            gate: None,
            hold: None,
            kernel_fence: None,
            quorum_index,
            defer_index,
            unconfirmed_index,
            refreshed_for: None,
            address_expires: None,
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
                error!("cannot add the balancer check: {e}");
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
                error!("cannot add the maintenance check: {e}");
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
            self.settle().await;
            self.sync_vip().await;
        }
    }

    /// Fence the VIP with the gate: hold it only while the gate allows, and let the gate's
    /// quorum and deferral drive the built-in checks that `router_config` added.
    pub(super) fn set_gate(&mut self, gate: GateDriver, fence: crate::nft::KernelFence) {
        if self.quorum_index.is_none()
            || self.defer_index.is_none()
            || self.unconfirmed_index.is_none()
        {
            // router_config adds them whenever fencing is quorum, which is when a gate exists.
            error!(
                "the router has no {QUORUM_CHECK}/{DEFER_CHECK}/{UNCONFIRMED_CHECK} checks; the gate cannot defer or fault"
            );
        }
        self.gate = Some(gate);
        self.kernel_fence = Some(fence);
    }

    /// Carry out the gate's VIP actions; true if there were any.
    async fn apply_gate(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.gate.as_mut().and_then(|g| g.next_action()) {
            any = true;
            let now = self.now();
            match action {
                VipAction::Hold(until) => {
                    self.hold = Some(until);
                    self.sync_vip().await;
                }
                VipAction::Release => {
                    if self.holds_vip {
                        let late = self
                            .hold
                            .flatten()
                            .map(|u| now.saturating_duration_since(u));
                        info!(want = self.want_vip, ?late, "the gate releases the VIP");
                    }
                    self.hold = None;
                    self.sync_vip().await;
                }
                VipAction::Defer(defer) => {
                    // At most one of the two is down, each with its weight. Lower first,
                    // then raise, so no step in between shows the base priority.
                    let want = [
                        (
                            self.defer_index,
                            DEFER_CHECK,
                            defer != gate::Defer::ToHolder,
                        ),
                        (
                            self.unconfirmed_index,
                            UNCONFIRMED_CHECK,
                            defer != gate::Defer::OwnKeyUnconfirmed,
                        ),
                    ];
                    for raise in [false, true] {
                        for (index, name, up) in want {
                            let Some(index) = index else { continue };
                            if up == raise && self.checks_up.get(index) != Some(&up) {
                                info!(
                                    check = name,
                                    up,
                                    ?defer,
                                    "tracked check changed (the VIP gate defers: {defer:?})"
                                );
                                self.set_builtin_check(now, index, up);
                            }
                        }
                    }
                }
                VipAction::Quorum(up) => {
                    if let Some(index) = self.quorum_index {
                        info!(check = QUORUM_CHECK, up, "tracked check changed");
                        self.set_builtin_check(now, index, up);
                    }
                }
            }
        }
        any
    }

    fn set_builtin_check(&mut self, now: Instant, index: usize, up: bool) {
        if let Some(slot) = self.checks_up.get_mut(index) {
            *slot = up;
        }
        self.router.set_check(now, index, up);
    }

    /// Run the router's and the gate's actions until neither has any left (one feeds the
    /// other: a deferral can make the router backup, which makes the gate release).
    async fn settle(&mut self) {
        for _ in 0..16 {
            let router = self.apply_actions().await;
            let gate = self.apply_gate().await;
            if !router && !gate {
                return;
            }
        }
    }

    /// Make the interface agree with "VRRP master, and the gate (if any) allows it".
    ///
    /// While fenced, the kernel fence (crate::nft) is opened until the hold deadline at every
    /// renewal the gate confirms, *before* the address is added or refreshed, and closed
    /// before it is removed: the kernel stops answering for the VIP at the deadline even if
    /// this process freezes or dies, which is what the other nodes' takeover wait counts on
    /// (docs/elections.md).
    async fn sync_vip(&mut self) {
        let now = Instant::now();
        let allowed = match &self.gate {
            None => Some(None),
            Some(_) => self.hold,
        };
        let desired = self.want_vip && allowed.is_some();
        let vips = self.router.config().virtual_addresses.clone();
        let deadline = allowed.flatten();
        let renewed = deadline.is_some() && self.refreshed_for != deadline;
        if desired && (!self.holds_vip || renewed) {
            if let Some(fence) = self.kernel_fence.as_mut() {
                if let Some(until) = deadline
                    && until <= now
                {
                    return;
                }
                if let Err(e) = fence.open(deadline.map(|u| u - now)) {
                    // Fail closed: without the fence's element the VIP is not answered for,
                    // so do not add it either; an earlier element still times out by itself.
                    error!("cannot open the VIP's kernel fence: {e}");
                    return;
                }
            }
            self.refreshed_for = deadline;
            self.garp.set_hold(deadline);
            let refresh = self.holds_vip;
            if !refresh && let Some(h) = self.handover.as_mut() {
                // Before the address: forward the old holder's sessions back to it, or end our
                // own park. Once the VIP is on eth0 the kernel answers ARP for it (a client's
                // re-ARP, not only our gratuitous ARP, moves its packets here), and a packet of
                // a session this node does not know would be answered with a reset.
                h.before_hold(now).await;
            }
            let readd = match deadline {
                Some(until) => !refresh || address_refresh_due(self.address_expires, until),
                None => true,
            };
            let secs = deadline.map(|until| backstop_secs(until, now));
            let mut all_added = true;
            for addr in vips.iter().filter(|_| readd) {
                let result = match secs {
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
                        info!(vip = %addr, interface = %self.interface, fenced = deadline.is_some(), "VIP added")
                    }
                    Err(e) => {
                        all_added = false;
                        error!(vip = %addr, "{e}")
                    }
                }
            }
            if readd {
                // A failed add is retried at the next renewal.
                self.address_expires = secs
                    .filter(|_| all_added)
                    .map(|secs| address_expiry(now, secs));
            }
            if !refresh {
                self.holds_vip = true;
                self.garp.start(vips);
            }
        } else if !desired && self.holds_vip {
            self.garp.stop();
            if let Some(fence) = self.kernel_fence.as_mut()
                && let Err(e) = fence.close()
            {
                // Its element still times out at the deadline by itself.
                error!("cannot close the VIP's kernel fence: {e}");
            }
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
                        info!(vip = %addr, want = self.want_vip, gate = ?self.hold, "VIP removed")
                    }
                    Err(e) => error!(vip = %addr, "{e}"),
                }
            }
            self.holds_vip = false;
            self.refreshed_for = None;
            self.address_expires = None;
            if let Some(h) = self.handover.as_mut() {
                h.after_release(now).await;
            }
        }
    }

    /// The VRRP instance's name (keepalived's vrrp_instance).
    pub(super) fn instance(&self) -> String {
        self.router.config().name.clone()
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
                events_tx.clone(),
                move |up| Event::Check { index, up },
            );
        }
        if let Some(path) = self.auth_watch.clone() {
            vrrp_auth::spawn_auth_watch(
                path,
                self.router.auth_hmac().cloned(),
                events_tx.clone(),
                Event::AuthHmac,
            );
        }
        let mut maintenance_rx = self.handover.as_mut().and_then(|h| h.commands.take());
        let now = self.now();
        if !self.link_up {
            self.router.set_interface_up(now, false);
        }
        // The gate's first word (deferral while it does not know the key yet) before the
        // router's first advert.
        self.apply_gate().await;
        self.router.start(now);
        self.settle().await;
        loop {
            self.publish();
            let deadline = self.router.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let gate_wake = async {
                match self.gate.as_mut() {
                    Some(g) => g.wait().await,
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
            let pre_park = async {
                match self.handover.as_mut().and_then(|h| h.pre_park.as_mut()) {
                    Some(task) => task.await.unwrap_or(false),
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                Some(command) = maintenance_command => Wake::Maintenance(command),
                parked = pre_park => Wake::PreParked(parked),
                _ = handover_timer => Wake::HandoverTimer,
                w = gate_wake => Wake::Gate(w),
                packet = self.socket.recv() => Wake::Packet(packet),
                _ = sleep => Wake::RouterTimer,
                Some(event) = events.recv() => Wake::Event(event),
                _ = stop.wait_for(|s| *s) => break,
            };
            // The gate sees the clock first: after a freeze it defers (and drops a lapsed
            // hold) before the router acts on its own late timer, so a thawed master does
            // not knock the new holder off with a stale advert.
            // An etcd answer goes in at once, as the gate looks at the clock first there too:
            // a tick first would release a hold that the answer, read late, extends.
            let now = self.now();
            let wake = match wake {
                Wake::Gate(w) => {
                    if let Some(g) = self.gate.as_mut() {
                        g.handle(now, w);
                    }
                    None
                }
                wake => {
                    if let Some(g) = self.gate.as_mut() {
                        g.tick(now);
                    }
                    Some(wake)
                }
            };
            self.apply_gate().await;
            match wake {
                // Handled above.
                None | Some(Wake::Gate(_)) => {}
                Some(Wake::Maintenance(command)) => {
                    if let Some(h) = self.handover.as_mut() {
                        h.on_command(Instant::now(), &self.router, command);
                    }
                }
                Some(Wake::PreParked(parked)) => {
                    let check = self.handover.as_mut().and_then(|h| h.pre_park_done(parked));
                    if let (Some(up), Some(index)) =
                        (check, self.handover.as_ref().map(|h| h.check_index))
                    {
                        if let Some(slot) = self.checks_up.get_mut(index) {
                            *slot = up;
                        }
                        self.router.set_check(Instant::now(), index, up);
                    }
                }
                Some(Wake::HandoverTimer) => {
                    if let Some(h) = self.handover.as_mut() {
                        h.core.handle_timeout(Instant::now());
                    }
                }
                Some(Wake::Packet(Ok(d))) => {
                    self.on_datagram(&d);
                    // Whatever else queued meanwhile, before the next status update.
                    for _ in 0..256 {
                        let Some(d) = self.socket.try_recv() else {
                            break;
                        };
                        self.on_datagram(&d);
                    }
                    if let Some(h) = self.handover.as_mut() {
                        h.after_packet(Instant::now(), &self.router);
                    }
                }
                Some(Wake::Packet(Err(e))) => {
                    error!(interface = %self.interface, "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(Wake::RouterTimer) => {
                    let now = self.now();
                    self.router.handle_timeout(now);
                }
                Some(Wake::Event(event)) => self.on_event(event),
            }
            self.settle().await;
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
        self.settle().await;
        self.want_vip = false;
        self.sync_vip().await;
        // Hand the key back (the VIP is already gone) so the next master need not wait out
        // our hold.
        self.release_gate(Duration::from_secs(2)).await;
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
        if let Some(mut fence) = self.kernel_fence.take()
            && let Err(e) = fence.remove()
        {
            warn!(
                "cannot remove the VIP's kernel fence ({}): {e}",
                fence.describe()
            );
        }
        self.publish();
        // The STOP notification must not be lost to our exit: wait for it, within reason.
        self.notifier.finish(Duration::from_secs(5)).await;
        Ok(())
    }

    /// After `want(false)`: run the gate until it has deleted our key, at most `limit`.
    async fn release_gate(&mut self, limit: Duration) {
        let Some(g) = self.gate.as_mut() else {
            return;
        };
        g.want(Instant::now(), false);
        let end = tokio::time::Instant::now() + limit;
        loop {
            self.apply_gate().await;
            let Some(g) = self.gate.as_mut() else {
                return;
            };
            if g.is_released() {
                return;
            }
            match tokio::time::timeout_at(end, g.wait()).await {
                Ok(w) => g.handle(Instant::now(), w),
                Err(_) => {
                    warn!(
                        "the VIP's key was not handed back within {limit:?}; the next holder waits out our hold"
                    );
                    return;
                }
            }
        }
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
                debug!("discarding a datagram with a bad IPv4 header: {e}");
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
                info!(check = %name, up, "tracked check changed");
                self.router.set_check(now, index, up);
            }
            Event::Link(up) => {
                info!(interface = %self.interface, up, "link state changed");
                self.link_up = up;
                self.router.set_interface_up(now, up);
            }
            // The send sequence and replay marks carry over; the state does not change.
            Event::AuthHmac(cfg) => {
                let text = vrrp_auth::describe(cfg.as_ref());
                match self.router.set_auth_hmac(cfg) {
                    Ok(()) => info!("auth_hmac now {text}"),
                    Err(e) => {
                        error!("auth_hmac change refused, keeping the running keys: {e}")
                    }
                }
            }
        }
    }

    /// Carry out the router's actions; true if there were any.
    async fn apply_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.router.poll_action() {
            any = true;
            match action {
                Action::Send { dst, payload } => {
                    if let Err(e) = self.socket.send(dst, &payload).await {
                        // A down link refuses sends; the router learns of it via the link watch.
                        debug!("{e}");
                    }
                }
                Action::AddVips(_) => {
                    if let Some(h) = self.handover.as_mut() {
                        h.before_vips_added(Instant::now(), &self.router);
                    }
                    self.want_vip = true;
                    if let Some(g) = self.gate.as_mut() {
                        g.want(Instant::now(), true);
                    }
                    self.sync_vip().await;
                }
                Action::RemoveVips(_) => {
                    if let Some(h) = self.handover.as_mut() {
                        h.before_vips_removed(&self.router, self.holds_vip);
                    }
                    self.want_vip = false;
                    if let Some(g) = self.gate.as_mut() {
                        g.want(Instant::now(), false);
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
                    info!(%from, %to, priority, "VRRP state changed");
                    self.last_transition = status::unix_now();
                    self.notifier.notify(to, priority);
                }
            }
        }
        any
    }

    fn publish(&self) {
        if let Some(g) = &self.gate {
            g.publish(Instant::now());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_re_adds_the_address_only_when_its_lifetime_would_not_outlast_the_hold() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // Added for a hold until now + 600 ms: 1.6 s left with the backstop, so 2 s.
        let until = now + ms(600);
        let secs = backstop_secs(until, now);
        assert_eq!(secs, 2);
        let expires = address_expiry(now, secs);
        assert!(
            expires >= until + ADDRESS_BACKSTOP,
            "it outlasts the hold it was added for"
        );
        // The next renewals move the deadline by R = 100 ms each.
        assert!(!address_refresh_due(Some(expires), until + ms(100)));
        assert!(!address_refresh_due(Some(expires), until + ms(300)));
        // Once the lifetime no longer covers deadline + backstop, the address is re-added.
        assert!(address_refresh_due(Some(expires), until + ms(400)));
        assert!(
            address_refresh_due(None, until),
            "not added yet, or without a lifetime"
        );
        // A re-add then covers the new deadline again.
        let later = now + ms(400);
        let e2 = address_expiry(later, backstop_secs(until + ms(400), later));
        assert!(e2 >= until + ms(400) + ADDRESS_BACKSTOP);
    }
}
