//! keepalived-style notify commands: run on every VRRP state change, and waited for on the
//! way out so the STOP notification is not lost to our exit.

use std::net::IpAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;
use vrrp::State;

/// Runs the cluster file's `vip.notify` command for one VRRP instance.
pub(super) struct Notifier {
    command: Option<Vec<String>>,
    instance: String,
    node: String,
    node_address: IpAddr,
    running: Vec<JoinHandle<()>>,
}

impl Notifier {
    pub(super) fn new(
        command: Option<Vec<String>>,
        instance: String,
        node: String,
        node_address: IpAddr,
    ) -> Notifier {
        Notifier {
            command,
            instance,
            node,
            node_address,
            running: Vec::new(),
        }
    }

    /// keepalived's notify arguments: `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`.
    pub(super) fn notify(&mut self, to: State, priority: u8) {
        self.running.retain(|t| !t.is_finished());
        let Some(cmd) = &self.command else { return };
        let state = match to {
            State::Initialize => "STOP",
            other => other.as_str(),
        };
        let mut command = tokio::process::Command::new(&cmd[0]);
        command
            .args(&cmd[1..])
            .arg("INSTANCE")
            .arg(&self.instance)
            .arg(state)
            .arg(priority.to_string())
            .env("HAPLANE_NODE", &self.node)
            .env("HAPLANE_NODE_ADDRESS", self.node_address.to_string())
            .kill_on_drop(false);
        match command.spawn() {
            Ok(mut child) => {
                self.running.push(crate::spawn(async move {
                    match child.wait().await {
                        Ok(s) if !s.success() => {
                            warn!("notify command exited with {s}")
                        }
                        Err(e) => warn!("notify command: {e}"),
                        _ => {}
                    }
                }));
            }
            Err(e) => warn!(command = %cmd[0], "cannot run notify command: {e}"),
        }
    }

    /// Wait for the commands still running, at most `limit`.
    pub(super) async fn finish(&mut self, limit: Duration) {
        let pending = std::mem::take(&mut self.running);
        let wait_all = futures_util::future::join_all(pending);
        if tokio::time::timeout(limit, wait_all).await.is_err() {
            warn!("notify commands still running after {limit:?}; not waiting longer");
        }
    }
}
