//! The I/O of a graceful VIP handover (see `crate::maintenance` for the why): the parked VIP
//! on `lo` (rtnetlink) with its ARP rules, and the new holder's forwarding rules (nftables
//! over netlink, `crate::nft::handover`: one transaction each, in tables of their own so
//! nothing else in the host's ruleset is touched).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use vrrp::{DiscardReason, Router, State};

use crate::maintenance::{Command, Handover, HandoverAction, MaintenanceReport, ParkReason};
use crate::netlink::Netlink;
use crate::nft::{NftError, handover as rules};

/// What the handover works on, and can clean up on its own (startup, exit).
#[derive(Clone)]
pub(crate) struct HandoverEnv {
    pub node_address: IpAddr,
    pub netlink: Netlink,
    pub vip: IpAddr,
    /// The VIP interface, where forwarded packets leave.
    pub interface: String,
    /// The balancer's ports on the VIP: what is forwarded.
    pub ports: Vec<u16>,
    pub balancer: Option<Arc<lb::Balancer>>,
}

impl HandoverEnv {
    fn host_prefix(&self) -> u8 {
        if self.vip.is_ipv4() { 32 } else { 128 }
    }

    async fn lo(&self) -> Option<u32> {
        match self.netlink.link("lo").await {
            Ok(l) => Some(l.index),
            Err(e) => {
                error!("cannot find lo: {e}");
                None
            }
        }
    }

    /// Stops answering ARP for the VIP and announcing it as the sender of our own ARP
    /// requests (one netlink transaction). False when the rules could not be applied: then
    /// the VIP must not stay on lo, where Linux would answer ARP for it beside the new holder.
    pub async fn park_arp(&self) -> bool {
        if let IpAddr::V4(vip) = self.vip {
            // IPv6 needs no rule: Linux answers a neighbour solicitation only for an address on
            // the interface it came in on, and solicits from the link-local address.
            let source = match self.node_address {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            };
            if let Err(e) = netfilter(move || rules::park_arp(vip, source)).await {
                error!(vip = %self.vip, "cannot stop ARP for the parked VIP, so it is not parked (its sessions will reset): {e}");
                return false;
            }
        }
        true
    }

    /// Adds the VIP to lo (one netlink request) with a lifetime, so a crash cannot leave it
    /// there for good; the driver takes it off the interface.
    pub async fn park_lo(&self, window: Duration) {
        let Some(lo) = self.lo().await else { return };
        let secs = (window + Duration::from_secs(10))
            .as_secs()
            .min(u32::MAX as u64) as u32;
        match self
            .netlink
            .add_address_for(lo, self.vip, self.host_prefix(), secs)
            .await
        {
            Ok(()) => info!(vip = %self.vip, ?window,
                "VIP parked on lo without ARP: the sessions through it keep working while the new holder forwards their packets here"),
            Err(e) => error!(vip = %self.vip, "cannot park the VIP on lo: {e}"),
        }
    }

    /// Ends a park: optionally resets the balancer's sessions on the VIP (their packets would
    /// reach nobody once the VIP is gone), then removes the VIP from lo and the ARP rules.
    pub async fn unpark(&self, close_sessions: bool) {
        if close_sessions && let Some(b) = &self.balancer {
            let n = b.reset_sessions_to(self.vip);
            if n > 0 {
                info!(
                    sessions = n,
                    "park over: resetting the sessions still on the VIP"
                );
            }
        }
        if let Some(lo) = self.lo().await
            && let Err(e) = self
                .netlink
                .remove_address(lo, self.vip, self.host_prefix())
                .await
        {
            error!(vip = %self.vip, "cannot remove the parked VIP from lo: {e}");
        }
        if self.vip.is_ipv4()
            && let Err(e) = netfilter(rules::unpark_arp).await
        {
            error!("cannot remove the ARP rules of the parked VIP: {e}");
        }
    }

    /// Forwards packets for the VIP's balancer ports that are not SYNs and match no session
    /// of this node to `to` (the old holder), before this node adds the VIP.
    pub async fn start_forwarding(&self, to: IpAddr) {
        if self.ports.is_empty() || to.is_ipv4() != self.vip.is_ipv4() {
            return;
        }
        let ports = self
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let ifindex = match self.netlink.link(&self.interface).await {
            Ok(l) => l.index,
            Err(e) => {
                error!(old_holder = %to, interface = %self.interface,
                    "cannot forward the old holder's sessions: no interface: {e}");
                return;
            }
        };
        // Priority -150 (mangle) runs after conntrack (-200) has classified the packet; see
        // crate::nft::handover for the rules and why FINs and RSTs are forwarded too.
        let (vip, list) = (self.vip, self.ports.clone());
        match netfilter(move || rules::forward(vip, &list, to, ifindex)).await {
            Ok(()) => info!(old_holder = %to, vip = %self.vip, ports = %ports,
                "forwarding the old holder's sessions to it"),
            Err(e) => {
                error!(old_holder = %to, "cannot forward the old holder's sessions: {e}")
            }
        }
    }

    pub async fn stop_forwarding(&self) {
        let vip = self.vip;
        match netfilter(move || rules::stop_forwarding(vip)).await {
            Ok(()) => info!("stopped forwarding to the old holder"),
            Err(e) => error!("cannot remove the forwarding rules: {e}"),
        }
    }

    /// Removes everything a handover may have left (a parked VIP, its ARP rules, forwarding
    /// rules): at start, where a crashed run may have left them, and at exit.
    pub async fn clear(&self) {
        self.unpark(false).await;
        let vip = self.vip;
        if let Err(e) = netfilter(move || rules::stop_forwarding(vip)).await {
            warn!("cannot remove the forwarding rules: {e}");
        }
    }
}

/// Runs one nf_tables transaction on tokio's blocking pool: its netlink calls block (a commit
/// that removes a hooked chain waits for an RCU grace period, tens of milliseconds on a busy
/// node) and must not stall the other tasks of the runtime meanwhile.
async fn netfilter(
    transaction: impl FnOnce() -> Result<(), NftError> + Send + 'static,
) -> Result<(), String> {
    match tokio::task::spawn_blocking(transaction).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the nf_tables transaction did not finish: {e}")),
    }
}

/// The driver's part: the sans-IO [`Handover`], its I/O, and the admin socket's channel.
pub(crate) struct HandoverDriver {
    pub env: HandoverEnv,
    pub core: Handover,
    /// Taken by the driver's loop.
    pub commands: Option<mpsc::Receiver<Command>>,
    pub report: watch::Sender<MaintenanceReport>,
    /// Index of the built-in `maintenance` tracked check (weight 0).
    pub check_index: usize,
    /// The VIP went to lo without its ARP rule yet (a shutdown: the rule follows the release).
    arp_pending: bool,
    /// Already on lo with its ARP rule (maintenance while holding).
    pre_parked: bool,
    /// The pre-park (ARP rules, then lo) running beside the VRRP loop: the nf_tables commit
    /// can take tens of milliseconds on a loaded node, and a loop waiting for it sends no adverts,
    /// so the backups would take over by Master_Down_Interval instead of the priority-0
    /// handover, and not know to forward the parked sessions.
    pub pre_park: Option<tokio::task::JoinHandle<bool>>,
    /// The maintenance check's drop, held back until the pre-park is done (the VIP must be on
    /// lo before it leaves eth0).
    check_after_park: Option<bool>,
    /// Adverts discarded while inactive (FAULT) when maintenance began: more later means
    /// another router is master.
    inactive_at_enter: u64,
    priority_zero_seen: u64,
    adverts_seen: u64,
}

impl HandoverDriver {
    pub fn new(
        env: HandoverEnv,
        core: Handover,
        commands: mpsc::Receiver<Command>,
        report: watch::Sender<MaintenanceReport>,
    ) -> Self {
        HandoverDriver {
            env,
            core,
            commands: Some(commands),
            report,
            check_index: 0,
            arp_pending: false,
            pre_parked: false,
            pre_park: None,
            check_after_park: None,
            inactive_at_enter: 0,
            priority_zero_seen: 0,
            adverts_seen: 0,
        }
    }

    /// A packet was handled: a priority-0 advert seen as backup names the stopping master;
    /// any advert seen as backup names the live master.
    pub fn after_packet(&mut self, now: Instant, router: &Router) {
        let adverts = router.counters().adverts_received;
        if adverts != self.adverts_seen {
            self.adverts_seen = adverts;
            if router.state() == State::Backup
                && let Some(master) = router.master_address()
            {
                self.core
                    .handle_master_advert(now, master, router.master_adver_interval());
            }
        }
        let p0 = router.counters().priority_zero_received;
        if p0 != self.priority_zero_seen {
            self.priority_zero_seen = p0;
            if router.state() == State::Backup
                && let Some(master) = router.master_address()
            {
                self.core.handle_stopping_master(now, master);
            }
        }
    }

    /// The router asks for the VIP: as a new master that preempted a live one, forward that
    /// one's sessions to it once we hold the VIP.
    pub fn before_vips_added(&mut self, now: Instant, router: &Router) {
        if router.state() == State::Master
            && let Some(master) = self.core.handle_became_master(now)
        {
            info!(old_master = %master, "preempted a live master: its sessions will be forwarded to it");
        }
    }

    /// The router gives the VIP up: outranked by a live master (it is backup under it, RFC
    /// 5798 §6.4.3, not in FAULT), it parks the VIP for the sessions it carries.
    pub fn before_vips_removed(&mut self, router: &Router, holds_vip: bool) {
        if holds_vip
            && router.state() == State::Backup
            && let Some(by) = router.master_address()
        {
            info!(new_master = %by, "preempted: parking the VIP for the sessions through it");
            self.core.handle_preempted(by);
        }
    }

    /// `enter`/`exit` from the admin socket; the router's check follows via the actions.
    pub fn on_command(&mut self, now: Instant, router: &Router, command: Command) {
        match command {
            Command::Enter(done) => {
                self.inactive_at_enter = router.counters().discarded(DiscardReason::Inactive);
                info!("entering maintenance: giving the VIP away");
                self.core.handle_maintenance(now, true);
                let _ = done.send(Ok(()));
            }
            Command::Exit(done) => {
                info!("leaving maintenance");
                self.core.handle_maintenance(now, false);
                let _ = done.send(Ok(()));
            }
        }
    }

    /// Carries out the core's actions; returns the maintenance check's new value, if any.
    pub async fn apply(&mut self) -> Option<bool> {
        let mut check = None;
        while let Some(action) = self.core.poll_action() {
            match action {
                HandoverAction::PrePark => {
                    let env = self.env.clone();
                    let window = self.core.forward_window();
                    self.pre_park = Some(crate::spawn(async move {
                        if env.park_arp().await {
                            env.park_lo(window).await;
                            true
                        } else {
                            false
                        }
                    }));
                }
                HandoverAction::SetMaintenanceCheck { up } if self.pre_park.is_some() => {
                    self.check_after_park = Some(up)
                }
                HandoverAction::SetMaintenanceCheck { up } => check = Some(up),
                HandoverAction::Unpark { close_sessions } => {
                    self.pre_parked = false;
                    self.arp_pending = false;
                    self.env.unpark(close_sessions).await
                }
                HandoverAction::StartForwarding { to } => self.env.start_forwarding(to).await,
                HandoverAction::StopForwarding => self.env.stop_forwarding().await,
            }
        }
        check
    }

    /// The pre-park finished (`parked`: the VIP is on lo with its ARP rules); returns the
    /// maintenance check it held back.
    pub fn pre_park_done(&mut self, parked: bool) -> Option<bool> {
        self.pre_park = None;
        self.pre_parked = parked;
        self.check_after_park.take()
    }

    /// The VIP is about to leave the interface: park it if this is a graceful departure.
    /// Maintenance parked it already. A shutdown stops ARP for it first and only then adds it
    /// to lo: Linux answers ARP for an address on lo from eth0, so the other order let two
    /// nodes answer for the VIP until the rule landed (`lab chaos` seed 2, docs/lab.md). The
    /// priority-0 advert has gone out before this, and the VIP stays on eth0 meanwhile.
    pub async fn before_release(&mut self, now: Instant) {
        if self.core.should_park(now)
            && let Some((reason, until)) = self.core.parked()
        {
            if !std::mem::take(&mut self.pre_parked) && self.env.park_arp().await {
                self.env.park_lo(until.saturating_duration_since(now)).await;
            }
            if reason == ParkReason::Shutdown {
                info!("shutting down: the VIP stays parked while the balancer drains");
            }
        } else if std::mem::take(&mut self.pre_parked) {
            // Pre-parked, but leaving for another reason: nothing will forward to us.
            self.env.unpark(false).await;
        }
    }

    /// The VIP is about to be added: forward for a handover, end a park.
    pub async fn before_hold(&mut self, now: Instant) {
        self.core.handle_holding(now, true);
        self.apply().await;
    }

    pub async fn after_release(&mut self, now: Instant) {
        if std::mem::take(&mut self.arp_pending) && !self.env.park_arp().await {
            self.env.unpark(false).await;
        }
        self.core.handle_holding(now, false);
        self.apply().await;
    }

    pub fn publish(&self, router: &Router, holds_vip: bool) {
        let now = Instant::now();
        let taken = self.core.in_maintenance()
            && router.counters().discarded(DiscardReason::Inactive) > self.inactive_at_enter;
        let sessions = self
            .env
            .balancer
            .as_ref()
            .map(|b| b.snapshot().active_connections);
        self.report.send_modify(|r| {
            r.active = self.core.in_maintenance();
            r.holds_vip = holds_vip;
            r.parked = self.core.parked().map(|(why, _)| why);
            r.park_left_seconds = self
                .core
                .parked()
                .map(|(_, until)| until.saturating_duration_since(now).as_secs_f64());
            r.vip_taken_over = taken;
            r.forwarding_to = self.core.forwarding_to();
            r.forward_left_seconds = None;
            r.balancer_sessions = sessions;
        });
    }
}

/// The maintenance handle and the driver's handover for a master.
pub(crate) async fn for_master(
    cluster: &config::Cluster,
    node: &config::Node,
    netlink: &Netlink,
    balancer: Option<Arc<lb::Balancer>>,
) -> (crate::maintenance::Maintenance, HandoverDriver) {
    let vip = cluster.vip.address.addr;
    let lb = &cluster.load_balancer;
    let ports: Vec<u16> = if lb.enabled {
        lb.listen
            .iter()
            .map(|l| cluster.resolve_listen(*l))
            .filter(|sa| sa.ip() == vip)
            .map(|sa| sa.port())
            .collect()
    } else {
        Vec::new()
    };
    let env = HandoverEnv {
        node_address: node.address,
        netlink: netlink.clone(),
        vip,
        interface: cluster.vip_interface(node).to_string(),
        ports,
        balancer,
    };
    // A crashed run may have left a parked VIP or forwarding rules behind.
    env.clear().await;
    // Another router takes over within Skew_Time of our priority-0 advert; a fenced VIP's
    // key is handed back at once, or taken after the gate's takeover wait if that failed.
    let mut takeover = Duration::from_secs(3) + 4 * cluster.vip.advert_interval.get();
    if cluster.fencing() == config::Fencing::Quorum {
        takeover += cluster
            .vip
            .gate
            .gate_config(&node.name, cluster.vip.preempt)
            .takeover_wait();
    }
    let (maintenance, commands, report) =
        crate::maintenance::Maintenance::channel(&node.name, takeover);
    // The other haplane routers: they park the VIP when they hand it over (their VRRP
    // source address is their node address on the VIP's interface).
    let parking_peers = cluster
        .vrrp_nodes()
        .filter(|n| n.name != node.name)
        .map(|n| n.address)
        .collect();
    let core = Handover::new(
        cluster.vip.maintenance_drain_timeout.get(),
        lb.drain_timeout.get(),
        parking_peers,
    );
    (
        maintenance,
        HandoverDriver::new(env, core, commands, report),
    )
}

/// Maintenance in /status and /metrics.
pub(crate) struct MaintenanceSection(pub crate::maintenance::Maintenance);

impl crate::status::Section for MaintenanceSection {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.0.report()).unwrap_or_default()
    }

    fn metrics(
        &self,
        encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let r = self.0.report();
        let gauges: [(&str, &str, bool); 3] = [
            (
                "haplane_maintenance",
                "1 while the node is in maintenance (haplane maintenance enter).",
                r.active,
            ),
            (
                "haplane_vip_parked",
                "1 while the VIP is parked on lo, serving the sessions this node carried when it gave the VIP away.",
                r.parked.is_some(),
            ),
            (
                "haplane_handover_forwarding",
                "1 while this node forwards an old holder's session packets to it.",
                r.forwarding_to.is_some(),
            ),
        ];
        for (name, help, v) in gauges {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::from(v)).encode(m)?;
        }
        Ok(())
    }
}
