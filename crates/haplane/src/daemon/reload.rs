//! Reloading the running daemon from the cluster file (SIGHUP or a changed file).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use config::{Cluster, Node};
use tracing::{error, info, warn};

use crate::balance;

/// Reload the balancer's backends, policy and checks on SIGHUP or when the cluster file
/// changes (checked every 2 s). A file that fails validation is logged and ignored: the
/// running configuration stays, and established connections are never dropped.
pub(super) async fn reload_loop(
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
                error!("reload after {reason} refused, keeping the running config: {e}");
                continue;
            }
        };
        waiting_for_ca = balance::missing_ca(&cluster);
        let Some(me) = cluster.node(&node.name) else {
            error!("reload after {reason} refused: this node is no longer listed");
            continue;
        };
        let Some(cfg) = balance::lb_config(&cluster, me) else {
            warn!("reload after {reason}: the balancer was disabled; restart to stop it");
            continue;
        };
        match balancer.reload(cfg).await {
            Ok(()) => info!("load balancer reloaded after {reason}"),
            Err(e) => error!("load balancer reload after {reason} failed: {e}"),
        }
    }
}
