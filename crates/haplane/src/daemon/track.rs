//! Tracked scripts (keepalived's `vrrp_script`): a command run every `interval` whose
//! result, debounced by `rise`/`fall`, moves the router's effective priority or sends it to
//! FAULT.

use std::net::IpAddr;

use config::TrackScript;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Run a tracked script every `interval`; report a change after `rise` successes or `fall`
/// failures in a row (keepalived's vrrp_script semantics) as `event(up)`.
/// The script sees `HAPLANE_NODE` and `HAPLANE_NODE_ADDRESS`, so one command in the shared
/// cluster file can check this node's own service.
pub(super) fn spawn_track_script<E: Send + 'static>(
    script: TrackScript,
    node: String,
    node_address: IpAddr,
    events: mpsc::Sender<E>,
    event: impl Fn(bool) -> E + Send + 'static,
) {
    crate::spawn(async move {
        let timeout = script.timeout.unwrap_or(script.interval).get();
        let mut state = super::debounce::Debounce::new(script.rise, script.fall);
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
                        debug!(check = %script.name, "timed out after {timeout:?}");
                        let _ = child.kill().await;
                        false
                    }
                },
                Err(e) => {
                    warn!(check = %script.name, "cannot run {}: {e}", script.command[0]);
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
