//! The VRRP interface's link state, for the router's FAULT state (RFC 5798 §6.4.1: an
//! interface that goes down stops the router).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::netlink::Netlink;

/// Poll the link every 100 ms: cheap, and it cannot miss a flap the way a lost netlink
/// notification could. Reports each change as `event(up)`.
pub(super) fn spawn_link_watch<E: Send + 'static>(
    netlink: Netlink,
    interface: String,
    mut last: bool,
    events: mpsc::Sender<E>,
    event: impl Fn(bool) -> E + Send + 'static,
) {
    crate::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let up = match netlink.link(&interface).await {
                Ok(link) => link.up,
                Err(_) => false,
            };
            if up != last {
                last = up;
                if events.send(event(up)).await.is_err() {
                    return;
                }
            }
        }
    });
}
