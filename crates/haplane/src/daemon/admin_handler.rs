//! What the daemon does with admin-socket commands (`haplane lb`, `haplane maintenance`).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::admin::{AdminState, Handler, MaintenanceAction, Request};
use crate::maintenance::Maintenance;

/// The daemon's parts the admin socket can reach.
pub struct DaemonAdmin {
    pub node: String,
    pub balancer: Option<Arc<lb::Balancer>>,
    /// Present on the nodes that run VRRP for the VIP (the router takes part in maintenance).
    pub maintenance: Option<Maintenance>,
}

impl Handler for DaemonAdmin {
    fn handle(&self, request: Request) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let balancer = self.balancer.clone();
        let maintenance = self.maintenance.clone();
        let node = self.node.clone();
        async move {
            match request {
                Request::LbStatus => {
                    let b = balancer.ok_or_else(|| no_balancer(&node))?;
                    serde_json::to_value(b.snapshot()).map_err(|e| e.to_string())
                }
                Request::LbAdmin { backend, state } => {
                    let b = balancer.ok_or_else(|| no_balancer(&node))?;
                    let admin = match state {
                        AdminState::Drain => lb::Admin::Drain,
                        AdminState::Ready => lb::Admin::Ready,
                    };
                    let s = b.set_admin(backend, admin).map_err(|e| e.to_string())?;
                    serde_json::to_value(s).map_err(|e| e.to_string())
                }
                Request::Maintenance { action } => {
                    let m = maintenance.ok_or_else(|| {
                        format!("node {node} runs no VRRP for the VIP (a master behind lb nodes, or a worker): it holds no VIP, so it has no maintenance mode")
                    })?;
                    let report = match action {
                        MaintenanceAction::Enter => m.enter().await?,
                        MaintenanceAction::Exit => m.exit().await?,
                        MaintenanceAction::Status => m.report(),
                    };
                    serde_json::to_value(report).map_err(|e| e.to_string())
                }
            }
        }
        .boxed()
    }
}

fn no_balancer(node: &str) -> String {
    format!(
        "node {node} runs no balancer (loadBalancer.enabled is false, or no listen address applies to its role)"
    )
}
