//! When gratuitous ARPs / unsolicited NAs go out after the VIP is added: keepalived's
//! schedule of a burst now, another after `delay`, then every `refresh` if set.
//!
//! While fenced, an announcement goes out only before the hold deadline. The announcements are
//! sent on a packet socket, which the kernel fence (nftables) does not see, and a node that was
//! frozen wakes with its timers overdue: without this check a thawed old holder's delayed or
//! refresh burst could fire before its driver has noticed it lost the VIP, and point the
//! neighbours' ARP entries at a node that no longer has the address. (Suspected, not shown, in
//! one lab holder-freeze run: the VIP path down from the thaw to the end of the run, 2.8 s,
//! while the new holder answered ARP.)

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::garp::Announcer;

/// Until when this node may announce the VIP: `None` unfenced (while it holds the VIP), or the
/// gate's hold deadline.
pub(super) type Hold = Option<Instant>;

/// Whether an announcement may go out at `now` under `hold`.
fn may_announce(hold: Hold, now: Instant) -> bool {
    hold.is_none_or(|until| now < until)
}

/// The announcement schedule of one VIP holder; at most one schedule runs at a time.
pub(super) struct GarpSchedule {
    announcer: Option<Arc<Announcer>>,
    garp: config::Garp,
    task: Option<JoinHandle<()>>,
    hold: watch::Sender<Hold>,
}

impl GarpSchedule {
    /// `announcer` is None when the packet socket could not be opened (announcements off).
    pub(super) fn new(announcer: Option<Arc<Announcer>>, garp: config::Garp) -> GarpSchedule {
        GarpSchedule {
            announcer,
            garp,
            task: None,
            hold: watch::Sender::new(None),
        }
    }

    /// The hold the VIP was last added or refreshed for; announcements stop at its deadline.
    pub(super) fn set_hold(&mut self, hold: Hold) {
        self.hold.send_replace(hold);
    }

    /// Start announcing `addrs`, replacing any schedule still running.
    pub(super) fn start(&mut self, addrs: Vec<IpAddr>) {
        let Some(announcer) = self.announcer.clone() else {
            return;
        };
        self.stop();
        let garp = self.garp.clone();
        let hold = self.hold.subscribe();
        self.task = Some(crate::spawn(async move {
            let burst = |announcer: &Announcer| {
                for _ in 0..garp.repeat {
                    if !may_announce(*hold.borrow(), Instant::now()) {
                        debug!("hold deadline passed: announcement not sent");
                        return;
                    }
                    if let Err(e) = announcer.announce(&addrs) {
                        warn!("{e}");
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

    /// Stop announcing (the VIP left this node).
    pub(super) fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_holder_announces_only_before_its_hold_deadline() {
        let t = Instant::now();
        let until = t + Duration::from_millis(600);
        assert!(may_announce(Some(until), t));
        assert!(may_announce(Some(until), until - Duration::from_millis(1)));
        // A thawed node's overdue burst: the deadline it last renewed for has passed.
        assert!(!may_announce(Some(until), until));
        assert!(!may_announce(Some(until), t + Duration::from_secs(6)));
    }

    #[test]
    fn an_unfenced_holder_announces_as_keepalived_does() {
        assert!(may_announce(None, Instant::now()));
    }
}
