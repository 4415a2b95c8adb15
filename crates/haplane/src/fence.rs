//! The quorum-fenced VIP: the VRRP master holds the VIP only while it also leads the VIP's
//! election in etcd, and a node cut off from the etcd majority goes to FAULT.
//!
//! VRRP still does the fast part (detecting a dead master in 3 × advert + skew); etcd makes
//! it safe: a node can only hold the VIP until its lease deadline (last renewal + TTL −
//! margin by its own clock), which passes before the server can expire the lease and let
//! another node win. See docs/elections.md for the arithmetic.
//!
//! Bootstrap: the VIP must exist before any apiserver (kubeadm init needs it), and with
//! stacked etcd, before etcd. Fencing is therefore *armed* the first time this node reaches
//! etcd, and a marker file keeps it armed across restarts; until then the VIP follows plain
//! VRRP and `/status` says `armed: false`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elect::{Client, Election, ElectionConfig, Role};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// May this node hold the VIP right now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Fencing is not armed yet: plain VRRP decides.
    Unfenced,
    /// We lead the VIP election until this deadline.
    Until(Instant),
    /// We do not lead the VIP election (yet).
    Denied,
}

impl Grant {
    pub fn allows(self, now: Instant) -> bool {
        match self {
            Grant::Unfenced => true,
            Grant::Until(deadline) => now < deadline,
            Grant::Denied => false,
        }
    }
}

/// The fence as shown in /status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FenceStatus {
    pub mode: &'static str,
    pub armed: bool,
    pub campaigning: bool,
    pub leader: bool,
    pub current_holder: Option<String>,
    pub lease_remaining_ms: Option<u64>,
    pub etcd_quorum: bool,
}

/// The VRRP loop's handle on the fence task.
pub struct Fence {
    pub want: watch::Sender<bool>,
    pub grant: watch::Receiver<Grant>,
    pub status: Arc<Mutex<FenceStatus>>,
    task: JoinHandle<()>,
}

impl Fence {
    /// Start the fence task. `client` becomes Some once etcd has been reached.
    pub fn spawn(
        client: watch::Receiver<Option<Client>>,
        election: ElectionConfig,
        marker: PathBuf,
    ) -> Fence {
        let armed = marker.exists();
        let (want_tx, want_rx) = watch::channel(false);
        let (grant_tx, grant_rx) = watch::channel(if armed {
            Grant::Denied
        } else {
            Grant::Unfenced
        });
        let status = Arc::new(Mutex::new(FenceStatus {
            mode: "quorum",
            armed,
            etcd_quorum: !armed,
            ..FenceStatus::default()
        }));
        let task = tokio::spawn(fence_task(
            client,
            election,
            marker,
            armed,
            want_rx,
            grant_tx,
            status.clone(),
        ));
        Fence {
            want: want_tx,
            grant: grant_rx,
            status,
            task,
        }
    }

    /// Stop campaigning (resigning if we lead) and wait for it, at most `limit`.
    pub async fn stop(self, limit: Duration) {
        let _ = self.want.send(false);
        drop(self.want);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            warn!("the VIP election did not resign within {limit:?}");
        }
    }
}

fn set(status: &Mutex<FenceStatus>, f: impl FnOnce(&mut FenceStatus)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

async fn fence_task(
    mut client_rx: watch::Receiver<Option<Client>>,
    election: ElectionConfig,
    marker: PathBuf,
    mut armed: bool,
    mut want: watch::Receiver<bool>,
    grant: watch::Sender<Grant>,
    status: Arc<Mutex<FenceStatus>>,
) {
    let name = election.name.clone();
    loop {
        // Wait for a client; arm on first contact.
        let client = loop {
            if let Some(c) = client_rx.borrow_and_update().clone() {
                break c;
            }
            if client_rx.changed().await.is_err() {
                return;
            }
        };
        if !armed {
            armed = true;
            if let Some(dir) = marker.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(&marker, b"etcd reached; VIP fencing armed\n") {
                warn!(marker = %marker.display(), "cannot persist the fencing marker: {e}");
            }
            info!(election = %name, "etcd reached: VIP fencing armed");
            set(&status, |s| s.armed = true);
            let _ = grant.send(Grant::Denied);
        }
        // Campaign only while VRRP wants the VIP, so the election winner is the VRRP master.
        if want.wait_for(|w| *w).await.is_err() {
            return;
        }
        let campaign = match Election::spawn(client.clone(), election.clone()) {
            Ok(e) => e,
            Err(e) => {
                warn!(election = %name, "cannot campaign for the VIP: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        set(&status, |s| s.campaigning = true);
        let mut role = campaign.role();
        loop {
            let r = role.borrow_and_update().clone();
            let g = match r.leading_until() {
                Some(deadline) => Grant::Until(deadline),
                None => Grant::Denied,
            };
            set(&status, |s| {
                s.leader = matches!(g, Grant::Until(_));
                s.current_holder = match &r {
                    Role::Follower { leader } => leader.clone(),
                    Role::Leader { .. } => Some(election.identity.clone()),
                };
            });
            grant.send_if_modified(|old| {
                let changed = *old != g;
                *old = g;
                changed
            });
            // A campaign that has neither led nor seen a leader for 3 TTLs is stuck (for
            // example after etcd lost its leader mid-renewal): start a fresh one.
            let stalled = async {
                if matches!(g, Grant::Denied) && r == (Role::Follower { leader: None }) {
                    tokio::time::sleep(election.ttl * 3).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                changed = role.changed() => if changed.is_err() {
                    warn!(election = %name, "the VIP campaign ended; campaigning again");
                    break;
                },
                _ = want.wait_for(|w| !*w) => break,
                _ = stalled => {
                    warn!(election = %name, "no VIP leader for 3 lease TTLs; campaigning afresh");
                    break;
                }
            }
        }
        // Stop acting before resigning: the VRRP loop drops the VIP on Denied.
        let _ = grant.send(Grant::Denied);
        // Revoking needs an etcd leader; without one, drop the campaign instead (its lease
        // expires on the server) so we can campaign again as soon as etcd recovers.
        if tokio::time::timeout(election.ttl, campaign.resign())
            .await
            .is_err()
        {
            warn!(election = %name, "resigning timed out; the old lease will expire on the server");
        }
        set(&status, |s| {
            s.campaigning = false;
            s.leader = false;
        });
        if want.has_changed().is_err() {
            return;
        }
    }
}

/// Probe etcd's quorum with a linearizable read every 500 ms; report `up` changes (after 6
/// failures, 3 s, or 2 successes in a row) as tracked-check events for the router's
/// `etcd-quorum` check (weight 0: FAULT while down). Until fencing is armed the check stays up.
///
/// 3 s outlasts an etcd raft election (1–2 s), during which reads fail everywhere: a shorter
/// fall would send the healthy holder to FAULT. Safety does not depend on the probe (the lease
/// deadline drops the VIP); it only moves mastership away from a node cut off for good.
pub fn spawn_quorum_probe<E: Send + 'static>(
    mut client_rx: watch::Receiver<Option<Client>>,
    status: Arc<Mutex<FenceStatus>>,
    events: mpsc::Sender<E>,
    event: impl Fn(bool) -> E + Send + 'static,
) {
    tokio::spawn(async move {
        let client = loop {
            if let Some(c) = client_rx.borrow_and_update().clone() {
                break c;
            }
            if client_rx.changed().await.is_err() {
                return;
            }
        };
        let mut up = true;
        let mut streak = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The client moves to the next member when one does not answer within its
            // attempt timeout (250 ms), so one unreachable member among several is not lost
            // quorum; bounded by the tick so 6 failures still take about 3 s.
            let ok = client
                .get("/haplane/quorum-probe", None, Duration::from_millis(500))
                .await
                .is_ok();
            set(&status, |s| s.etcd_quorum = ok);
            if ok == up {
                streak = 0;
                continue;
            }
            streak += 1;
            if streak >= if ok { 2 } else { 6 } {
                up = ok;
                streak = 0;
                if events.send(event(up)).await.is_err() {
                    return;
                }
            }
        }
    });
}
