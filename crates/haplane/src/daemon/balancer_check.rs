//! The built-in `balancer` tracked check (`vip.trackBalancer`): VIP health gated on this
//! node's balancer path rather than on its local apiserver (OpenShift learned this in
//! OCPBUGS-1257).
//!
//! Every `interval` a readiness request (the balancer's health check: GET `/readyz`) goes
//! through this node's own balancer, on its internal loopback listener, so it takes the same
//! accept, backend selection, connect and data path as a client of the VIP. It passes when some
//! ready backend answered through it. Debounced by `rise`/`fall`, a failure applies the check's
//! weight, so the VIP leaves a node whose balancer cannot reach any ready apiserver (its own
//! listener broke, or it is cut off from every master), while a node whose own apiserver is
//! down but whose balancer reaches the others keeps the VIP: clients through it are served.
//! A loopback listener rather than the VIP itself, because a backup does not hold the VIP.

use std::sync::Arc;

use config::TrackBalancer;
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Probes the balancer path every `interval`; reports a change after `rise` successes or
/// `fall` failures in a row as `event(up)`.
pub(super) fn spawn_balancer_check<E: Send + 'static>(
    balancer: Arc<lb::Balancer>,
    settings: TrackBalancer,
    events: mpsc::Sender<E>,
    event: impl Fn(bool) -> E + Send + 'static,
) {
    crate::spawn(async move {
        let mut state = super::debounce::Debounce::new(settings.rise, settings.fall);
        let mut tick = tokio::time::interval(settings.interval.get());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ok = match balancer.probe_path().await {
                Ok(_) => true,
                Err(e) => {
                    debug!(check = "balancer", "{e}");
                    if state.is_up() {
                        info!(check = "balancer", "balancer path check failed: {e}");
                    }
                    false
                }
            };
            if let Some(up) = state.handle_result(ok)
                && events.send(event(up)).await.is_err()
            {
                return;
            }
        }
    });
}
