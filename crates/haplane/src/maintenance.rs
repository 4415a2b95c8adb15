//! Maintenance and graceful VIP handover without a failed request.
//!
//! A node that gives the VIP away gracefully (`haplane maintenance enter`, or SIGTERM) sends a
//! priority-0 advert, so a backup takes over within Skew_Time (RFC 5798 §6.4.2). Without more,
//! the client packets of the sessions it still carries would reach the new holder, which has no
//! socket for them and answers with a reset. So:
//!
//! - the old holder **parks** the VIP: it moves it from the interface to `lo` and stops
//!   answering ARP for it (an nftables arp rule drops requests for the VIP, another rewrites the VIP
//!   as the sender of its own ARP requests to the node address, so no neighbour learns the VIP
//!   at its MAC); its balancer serves the sessions it has until they end or the park ends;
//! - the new holder **forwards**, for the same window, the packets for the VIP's balancer
//!   ports that are not SYNs and belong to no session it accepted, to the old holder (nftables
//!   `dup to OLD device IF` and drop in prerouting; both tables in `crate::nft::handover`). "Belongs to no local session" is
//!   conntrack's `ct state new` on a non-SYN packet: a session this node accepted saw its SYN
//!   and a reply, so it is established; a packet of the old holder's sessions is duplicated and
//!   dropped before conntrack confirms it, so it is new every time (a FIN or RST of such a flow
//!   is `invalid`, and forwarded as well). (nft's `socket` expression
//!   cannot tell: for a non-SYN packet it finds the VIP's listening socket.)
//!
//! A master **preempted** by a returning higher-priority one (RFC 5798 §6.4.3) is alive and
//! well too, and hands over the same way: it parks the VIP, and the new master, which heard
//! its adverts until it took over, forwards to it. Only to haplane masters of the cluster file:
//! a keepalived peer sends priority 0 when it stops but does not park, and forwarding its
//! sessions there would blackhole them where a reset from the new holder lets clients
//! reconnect at once.
//!
//! [`Handover`] is the sans-IO part: it decides when to park, unpark, forward and stop, from
//! the events the VRRP driver feeds it, and says when it next needs [`Handover::handle_timeout`].
//! The daemon's `daemon/handover.rs` carries its actions out; [`Maintenance`] is the handle the
//! admin socket uses.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

/// How recent a priority-0 advert must be for the next takeover to count as a handover from
/// its sender: Skew_Time is under one advert interval, plus the gate's key hand-back when fenced.
pub const HANDOVER_RECENT: Duration = Duration::from_secs(10);

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverAction {
    /// Park the VIP before giving it away (maintenance while holding it): stop ARP for it and
    /// add it to lo, so when it leaves the interface it is already in place. ARP requests for
    /// the VIP go unanswered for the Skew_Time until the new holder announces itself.
    PrePark,
    /// Report the built-in `maintenance` tracked check (weight 0: down means FAULT, which sends
    /// priority 0 and gives the VIP away; up rejoins).
    SetMaintenanceCheck { up: bool },
    /// Close the balancer's sessions on the VIP, then take the VIP off `lo` and drop the ARP
    /// rules: the park is over.
    Unpark { close_sessions: bool },
    /// Forward stray packets for the VIP's ports to this (old holder's) address.
    StartForwarding { to: IpAddr },
    /// Stop forwarding.
    StopForwarding,
}

/// Why the VIP is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParkReason {
    Maintenance,
    Shutdown,
    /// A higher-priority master took over (preemption).
    Preempted,
}

/// The handover decisions of one node.
#[derive(Debug)]
pub struct Handover {
    /// How long a parked VIP serves its sessions in maintenance.
    maintenance_window: Duration,
    /// How long it does on SIGTERM (the balancer's drain timeout).
    shutdown_window: Duration,
    maintenance: bool,
    maintenance_since: Option<Instant>,
    shutting_down: bool,
    parked: Option<(ParkReason, Instant)>,
    /// This master was just outranked by a live one: the VIP that leaves now is parked.
    preempted: bool,
    /// The masters that park when they give the VIP away (haplane's, from the cluster file).
    parking_peers: Vec<IpAddr>,
    /// The master that handed over last, by a priority-0 advert or by being preempted by us:
    /// who, when.
    departing_master: Option<(IpAddr, Instant)>,
    /// The master whose advert we last heard as backup: who, when, and its advert interval.
    last_master_advert: Option<(IpAddr, Instant, Duration)>,
    holding: bool,
    forwarding: Option<(IpAddr, Instant)>,
    actions: VecDeque<HandoverAction>,
}

impl Handover {
    /// `parking_peers`: the other masters that park the VIP when they hand it over, so that
    /// forwarding to them carries their sessions (haplane's VRRP nodes).
    pub fn new(
        maintenance_window: Duration,
        shutdown_window: Duration,
        parking_peers: Vec<IpAddr>,
    ) -> Self {
        Handover {
            maintenance_window,
            shutdown_window,
            maintenance: false,
            maintenance_since: None,
            shutting_down: false,
            parked: None,
            preempted: false,
            parking_peers,
            departing_master: None,
            last_master_advert: None,
            holding: false,
            forwarding: None,
            actions: VecDeque::new(),
        }
    }

    /// The window a new holder forwards for: the longer of the two, since it cannot tell a
    /// maintenance handover from a shutdown.
    pub fn forward_window(&self) -> Duration {
        self.maintenance_window.max(self.shutdown_window)
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance
    }

    pub fn parked(&self) -> Option<(ParkReason, Instant)> {
        self.parked
    }

    pub fn forwarding_to(&self) -> Option<IpAddr> {
        self.forwarding.map(|(a, _)| a)
    }

    pub fn maintenance_since(&self) -> Option<Instant> {
        self.maintenance_since
    }

    /// `haplane maintenance enter` (true) or `exit` (false).
    pub fn handle_maintenance(&mut self, now: Instant, on: bool) {
        if on == self.maintenance {
            return;
        }
        self.maintenance = on;
        self.maintenance_since = on.then_some(now);
        if on && self.holding && self.parked.is_none() {
            self.actions.push_back(HandoverAction::PrePark);
        }
        self.actions
            .push_back(HandoverAction::SetMaintenanceCheck { up: !on });
        // Leaving maintenance keeps a parked VIP until its window ends or this node holds the
        // VIP again: the sessions it carries are still being forwarded to it.
    }

    /// SIGTERM: from now on, a VIP that leaves is parked for the shutdown window.
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// The driver is about to take the VIP off the interface: park it instead? Only a graceful
    /// departure parks (maintenance, shutdown, preemption by a live master); losing the VIP to
    /// a fault or to the fence does not, as no new holder forwards to us then.
    pub fn should_park(&mut self, now: Instant) -> bool {
        let preempted = std::mem::take(&mut self.preempted);
        let reason = if self.shutting_down {
            ParkReason::Shutdown
        } else if self.maintenance {
            ParkReason::Maintenance
        } else if preempted {
            ParkReason::Preempted
        } else {
            return false;
        };
        let window = match reason {
            ParkReason::Maintenance | ParkReason::Preempted => self.maintenance_window,
            ParkReason::Shutdown => self.shutdown_window,
        };
        self.parked = Some((reason, now + window));
        true
    }

    /// A priority-0 advert arrived from `from` while we were backup.
    pub fn handle_stopping_master(&mut self, now: Instant, from: IpAddr) {
        self.note_departing(now, from);
    }

    /// As backup we heard an advert from the master `from`, which advertises every
    /// `interval` (its Master_Adver_Interval, RFC 5798 §6.4.2).
    pub fn handle_master_advert(&mut self, now: Instant, from: IpAddr, interval: Duration) {
        self.last_master_advert = Some((from, now, interval));
    }

    /// We became master. If the last master we heard advertised within two of its intervals
    /// (one that crashed, froze or was cut off has been silent for three, Master_Down_Interval),
    /// it is alive: we preempted it (RFC 5798 §6.4.2), and it parks the VIP when our advert
    /// reaches it. Returns that master when its sessions will be forwarded to it.
    pub fn handle_became_master(&mut self, now: Instant) -> Option<IpAddr> {
        let (from, at, interval) = self.last_master_advert.take()?;
        if now.saturating_duration_since(at) > 2 * interval {
            return None;
        }
        self.note_departing(now, from);
        self.departing_master.map(|(a, _)| a)
    }

    /// As master, we were outranked by the live master `by` (RFC 5798 §6.4.3): the VIP that
    /// leaves now is parked, as the new master forwards our sessions to us (when it is one of
    /// ours; a keepalived master would not).
    pub fn handle_preempted(&mut self, by: IpAddr) {
        self.preempted = self.parking_peers.contains(&by);
    }

    fn note_departing(&mut self, now: Instant, from: IpAddr) {
        if self.parking_peers.contains(&from) {
            self.departing_master = Some((from, now));
        } else {
            // Not one of ours (a keepalived peer): it does not park, so its sessions' packets
            // must reach us and be reset, not be forwarded into a blackhole.
            self.departing_master = None;
        }
    }

    /// The driver added (true) or removed (false) the VIP on the interface.
    pub fn handle_holding(&mut self, now: Instant, holding: bool) {
        if holding == self.holding {
            return;
        }
        self.holding = holding;
        if holding {
            self.preempted = false;
            if self.parked.take().is_some() {
                // Ours again: the parked sessions carry on on the interface.
                self.actions.push_back(HandoverAction::Unpark {
                    close_sessions: false,
                });
            }
            if let Some((from, at)) = self.departing_master.take()
                && now.saturating_duration_since(at) <= HANDOVER_RECENT
            {
                self.forwarding = Some((from, now + self.forward_window()));
                self.actions
                    .push_back(HandoverAction::StartForwarding { to: from });
            }
        } else if self.forwarding.take().is_some() {
            self.actions.push_back(HandoverAction::StopForwarding);
        }
    }

    /// The end of the daemon: whatever is parked goes now (the balancer has drained).
    pub fn handle_exit(&mut self) {
        if self.parked.take().is_some() {
            self.actions.push_back(HandoverAction::Unpark {
                close_sessions: true,
            });
        }
        if self.forwarding.take().is_some() {
            self.actions.push_back(HandoverAction::StopForwarding);
        }
    }

    /// The next deadline for [`Handover::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A shutdown park ends with the daemon (handle_exit), after the balancer drained.
        let park = match self.parked {
            Some((ParkReason::Maintenance | ParkReason::Preempted, until)) => Some(until),
            _ => None,
        };
        [park, self.forwarding.map(|(_, until)| until)]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((ParkReason::Maintenance | ParkReason::Preempted, until)) = self.parked
            && now >= until
        {
            self.parked = None;
            self.actions.push_back(HandoverAction::Unpark {
                close_sessions: true,
            });
        }
        if let Some((_, until)) = self.forwarding
            && now >= until
        {
            self.forwarding = None;
            self.actions.push_back(HandoverAction::StopForwarding);
        }
    }

    pub fn poll_action(&mut self) -> Option<HandoverAction> {
        self.actions.pop_front()
    }
}

/// Where maintenance stands, for the CLI and /status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceReport {
    pub node: String,
    /// In maintenance now.
    pub active: bool,
    /// This node has the VIP on its interface.
    pub holds_vip: bool,
    /// The VIP is parked on lo (serving the sessions it had); why, and for how much longer.
    pub parked: Option<ParkReason>,
    pub park_left_seconds: Option<f64>,
    /// Another router has advertised since this node gave the VIP away (maintenance only).
    pub vip_taken_over: bool,
    /// This node forwards stray packets of an old holder's sessions to it.
    pub forwarding_to: Option<IpAddr>,
    pub forward_left_seconds: Option<f64>,
    /// Client sessions this node's balancer still carries.
    pub balancer_sessions: Option<u64>,
    /// What happened, for the operator.
    pub message: String,
}

/// A request from the admin socket to the VRRP driver.
#[derive(Debug)]
pub enum Command {
    Enter(oneshot::Sender<Result<(), String>>),
    Exit(oneshot::Sender<Result<(), String>>),
}

/// The admin socket's handle on maintenance (masters only).
#[derive(Debug, Clone)]
pub struct Maintenance {
    commands: mpsc::Sender<Command>,
    report: watch::Receiver<MaintenanceReport>,
    /// How long `enter` waits for another router to take the VIP.
    takeover_wait: Duration,
}

impl Maintenance {
    /// The handle, and the driver's ends: commands in, reports out.
    pub fn channel(
        node: &str,
        takeover_wait: Duration,
    ) -> (
        Maintenance,
        mpsc::Receiver<Command>,
        watch::Sender<MaintenanceReport>,
    ) {
        let (ctx, crx) = mpsc::channel(4);
        let (rtx, rrx) = watch::channel(MaintenanceReport {
            node: node.to_string(),
            ..Default::default()
        });
        (
            Maintenance {
                commands: ctx,
                report: rrx,
                takeover_wait,
            },
            crx,
            rtx,
        )
    }

    /// Gives the VIP away and waits (up to the takeover wait) until another router advertises.
    pub async fn enter(&self) -> Result<MaintenanceReport, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Enter(tx)).await?;
        rx.await
            .map_err(|_| "the VRRP driver stopped".to_string())??;
        let mut report = self.report.clone();
        let taken = tokio::time::timeout(
            self.takeover_wait,
            report.wait_for(|r| r.active && !r.holds_vip && r.vip_taken_over),
        )
        .await;
        let mut r = self.report();
        r.message = match taken {
            Ok(Ok(_)) => match r.parked {
                Some(_) => "in maintenance: another router took the VIP; the VIP is parked on lo so the sessions this node carries keep working until they end".into(),
                None => "in maintenance: another router took the VIP".into(),
            },
            _ => format!(
                "in maintenance, but no other router took the VIP within {:?}: is another master up and not in maintenance?",
                self.takeover_wait
            ),
        };
        Ok(r)
    }

    /// Takes part in VRRP again.
    pub async fn exit(&self) -> Result<MaintenanceReport, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Exit(tx)).await?;
        rx.await
            .map_err(|_| "the VRRP driver stopped".to_string())??;
        let mut r = self.report();
        r.message = "out of maintenance: this node takes part in VRRP again".into();
        Ok(r)
    }

    pub fn report(&self) -> MaintenanceReport {
        self.report.borrow().clone()
    }

    async fn send(&self, c: Command) -> Result<(), String> {
        self.commands
            .send(c)
            .await
            .map_err(|_| "the VRRP driver stopped".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Duration = Duration::from_secs(300);
    const S: Duration = Duration::from_secs(30);

    fn drain(h: &mut Handover) -> Vec<HandoverAction> {
        std::iter::from_fn(|| h.poll_action()).collect()
    }

    fn old() -> IpAddr {
        "192.0.2.11".parse().unwrap()
    }

    #[test]
    fn entering_maintenance_fails_the_check_and_a_departing_vip_is_parked_for_the_window() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        h.handle_maintenance(t, true);
        assert_eq!(
            drain(&mut h),
            vec![
                HandoverAction::PrePark,
                HandoverAction::SetMaintenanceCheck { up: false }
            ]
        );
        assert!(h.should_park(t));
        h.handle_holding(t, false);
        assert_eq!(h.poll_timeout(), Some(t + M));
        h.handle_timeout(t + M);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::Unpark {
                close_sessions: true
            }]
        );
        assert_eq!(h.parked(), None);
    }

    #[test]
    fn a_backup_entering_maintenance_has_nothing_to_park() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_maintenance(t, true);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::SetMaintenanceCheck { up: false }]
        );
    }

    #[test]
    fn a_vip_lost_to_a_fault_or_the_fence_is_not_parked() {
        // Nobody forwards to us then (no priority 0 was sent, nobody preempted us), so parking
        // would only keep clients hanging where a reset from the new holder makes them
        // reconnect.
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        assert!(!h.should_park(t));
    }

    #[test]
    fn a_preempted_master_parks_its_vip_for_the_maintenance_window() {
        // RFC 5798 §6.4.3: a higher-priority advert sends the master to backup; the preempting
        // master forwards our sessions, so they are served here until they end.
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        h.handle_preempted(old());
        assert!(h.should_park(t));
        h.handle_holding(t, false);
        assert_eq!(h.parked(), Some((ParkReason::Preempted, t + M)));
        assert_eq!(h.poll_timeout(), Some(t + M));
        h.handle_timeout(t + M);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::Unpark {
                close_sessions: true
            }]
        );
        // One preemption parks one departure: a later fault does not park.
        h.handle_holding(t + M, true);
        assert!(!h.should_park(t + M));
    }

    const ADVERT: Duration = Duration::from_millis(100);

    #[test]
    fn a_master_that_preempts_a_live_master_forwards_its_sessions_to_it() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_master_advert(t, old(), ADVERT);
        assert_eq!(h.handle_became_master(t + ADVERT), Some(old()));
        h.handle_holding(t + Duration::from_millis(110), true);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::StartForwarding { to: old() }]
        );
    }

    #[test]
    fn a_takeover_after_the_masters_silence_is_no_preemption_at_its_own_interval() {
        // RFC 5798 §6.4.2: Master_Down_Interval is three of the master's intervals, which in
        // v3 it announces and may differ from ours: a master silent for three of its 100 ms
        // has crashed even if we advertise every second, and nothing goes to it.
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_master_advert(t, old(), ADVERT);
        assert_eq!(h.handle_became_master(t + 3 * ADVERT), None);
        h.handle_holding(t + 3 * ADVERT, true);
        assert_eq!(drain(&mut h), vec![]);
        // A slow master (1 s) heard 1.5 s ago is still alive.
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_master_advert(t, old(), Duration::from_secs(1));
        assert_eq!(
            h.handle_became_master(t + Duration::from_millis(1500)),
            Some(old())
        );
    }

    #[test]
    fn a_departing_master_that_is_not_a_haplane_node_gets_nothing_forwarded() {
        // A keepalived peer sends priority 0 when it stops (VRRP_PRIO_STOP) but keeps no parked
        // VIP: its sessions' packets must reach the new holder and be reset.
        let t = Instant::now();
        let keepalived: IpAddr = "192.0.2.99".parse().unwrap();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_stopping_master(t, keepalived);
        h.handle_holding(t, true);
        assert_eq!(drain(&mut h), vec![]);
        h.handle_holding(t, false);
        h.handle_master_advert(t, keepalived, ADVERT);
        assert_eq!(h.handle_became_master(t), None);
        h.handle_holding(t, true);
        assert_eq!(drain(&mut h), vec![]);
    }

    #[test]
    fn a_shutdown_parks_until_the_daemon_exits() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        h.handle_shutdown();
        assert!(h.should_park(t));
        h.handle_holding(t, false);
        assert_eq!(
            h.poll_timeout(),
            None,
            "ends with the daemon, after the drain"
        );
        h.handle_exit();
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::Unpark {
                close_sessions: true
            }]
        );
    }

    #[test]
    fn a_takeover_right_after_priority_zero_forwards_to_the_old_holder_for_the_window() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_stopping_master(t, old());
        h.handle_holding(t + Duration::from_millis(60), true);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::StartForwarding { to: old() }]
        );
        assert_eq!(h.forwarding_to(), Some(old()));
        let end = t + Duration::from_millis(60) + M;
        assert_eq!(h.poll_timeout(), Some(end));
        h.handle_timeout(end);
        assert_eq!(drain(&mut h), vec![HandoverAction::StopForwarding]);
    }

    #[test]
    fn a_takeover_long_after_priority_zero_or_without_one_does_not_forward() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        assert_eq!(
            drain(&mut h),
            vec![],
            "master-down timer: the old holder crashed"
        );
        h.handle_holding(t, false);
        h.handle_stopping_master(t, old());
        h.handle_holding(t + HANDOVER_RECENT + Duration::from_secs(1), true);
        assert_eq!(drain(&mut h), vec![]);
    }

    #[test]
    fn losing_the_vip_stops_forwarding() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_stopping_master(t, old());
        h.handle_holding(t, true);
        drain(&mut h);
        h.handle_holding(t, false);
        assert_eq!(drain(&mut h), vec![HandoverAction::StopForwarding]);
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn exiting_maintenance_keeps_the_park_and_holding_again_ends_it_without_closing() {
        let t = Instant::now();
        let mut h = Handover::new(M, S, vec![old()]);
        h.handle_holding(t, true);
        h.handle_maintenance(t, true);
        assert!(h.should_park(t));
        h.handle_holding(t, false);
        h.handle_maintenance(t, false);
        assert_eq!(
            drain(&mut h),
            vec![
                HandoverAction::PrePark,
                HandoverAction::SetMaintenanceCheck { up: false },
                HandoverAction::SetMaintenanceCheck { up: true }
            ]
        );
        assert!(
            h.parked().is_some(),
            "the sessions are still forwarded to us"
        );
        h.handle_holding(t + Duration::from_secs(5), true);
        assert_eq!(
            drain(&mut h),
            vec![HandoverAction::Unpark {
                close_sessions: false
            }]
        );
    }

    #[test]
    fn a_new_holder_forwards_for_the_longer_window_as_it_cannot_tell_why_the_master_left() {
        let h = Handover::new(Duration::from_secs(10), Duration::from_secs(30), vec![]);
        assert_eq!(h.forward_window(), Duration::from_secs(30));
    }
}
