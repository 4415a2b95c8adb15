//! What a leader does: keep a manifest in place, or run a command.

mod exec;
pub mod guard;
mod manifest;

pub(crate) use manifest::fsync_dir;
pub use manifest::{remove_file_durably, sync_file};

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::{ElectionAction, Role};

/// Starts the action runner. It acts only while the role says leader *and* the role's
/// deadline has not passed, and cleans up when `stop` fires.
pub(crate) fn spawn(
    election: &str,
    action: ElectionAction,
    margin: Duration,
    role: watch::Receiver<Role>,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let election = election.to_string();
    match action {
        ElectionAction::Manifest { source, target } => {
            tokio::spawn(manifest::run(election, source, target, role, stop))
        }
        ElectionAction::Exec { command, grace } => {
            tokio::spawn(exec::run(election, command, grace, margin, role, stop))
        }
    }
}
