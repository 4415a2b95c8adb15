//! When gratuitous ARPs / unsolicited NAs go out after the VIP is added: keepalived's
//! schedule of a burst now, another after `delay`, then every `refresh` if set.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

use crate::garp::Announcer;

/// The announcement schedule of one VIP holder; at most one schedule runs at a time.
pub(super) struct GarpSchedule {
    announcer: Option<Arc<Announcer>>,
    garp: config::Garp,
    task: Option<JoinHandle<()>>,
}

impl GarpSchedule {
    /// `announcer` is None when the packet socket could not be opened (announcements off).
    pub(super) fn new(announcer: Option<Arc<Announcer>>, garp: config::Garp) -> GarpSchedule {
        GarpSchedule {
            announcer,
            garp,
            task: None,
        }
    }

    /// Start announcing `addrs`, replacing any schedule still running.
    pub(super) fn start(&mut self, addrs: Vec<IpAddr>) {
        let Some(announcer) = self.announcer.clone() else {
            return;
        };
        self.stop();
        let garp = self.garp.clone();
        self.task = Some(crate::spawn(async move {
            let burst = |announcer: &Announcer| {
                for _ in 0..garp.repeat {
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
