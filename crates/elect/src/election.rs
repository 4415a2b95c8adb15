//! The elector: lease, campaign on a key prefix, renewal, deadline, resign.
//!
//! Campaigning uses only the KV and lease APIs (a put-if-absent under a lease, leader =
//! lowest create revision under the prefix), which behave the same on etcd 3.4 and 3.5+.
//! See docs/elections.md for the timing argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions, WatchStream,
};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::{ElectError, ElectionConfig, action};

/// Our role in one election, as published on the watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not leading. `leader` is the identity of the current leader when known.
    Follower {
        /// Identity of the current leader, `None` when unknown (e.g. etcd unreachable).
        leader: Option<String>,
    },
    /// Leading until `deadline` (monotonic). Past the deadline this value means nothing:
    /// consumers must check it themselves (see [`Role::leading_until`]).
    Leader {
        /// Last moment at which we may act as leader.
        deadline: Instant,
    },
}

impl Role {
    /// The deadline if we lead and it has not passed yet.
    pub fn leading_until(&self) -> Option<Instant> {
        match self {
            Role::Leader { deadline } if Instant::now() < *deadline => Some(*deadline),
            _ => None,
        }
    }

    /// Whether we may act as leader right now.
    pub fn is_leader(&self) -> bool {
        self.leading_until().is_some()
    }
}

/// A serializable view of one election for `/status` and `/metrics`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ElectionStatus {
    /// Election name.
    pub name: String,
    /// Our identity.
    pub identity: String,
    /// "leader" or "follower".
    pub role: &'static str,
    /// Identity of the current leader, if known.
    pub leader: Option<String>,
    /// Milliseconds until our lease deadline, when we lead.
    pub lease_deadline_ms: Option<u64>,
}

/// A running election. Dropping it aborts the campaign without resigning (the lease then
/// expires on the server); call [`Election::resign`] for a prompt hand-over.
pub struct Election {
    name: String,
    identity: String,
    role_rx: watch::Receiver<Role>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("role", &*self.role_rx.borrow())
            .finish()
    }
}

impl Election {
    /// Validates `cfg` and starts campaigning in the background (needs a tokio runtime).
    pub fn spawn(client: Client, cfg: ElectionConfig) -> Result<Election, ElectError> {
        cfg.validate()?;
        let (role_tx, role_rx) = watch::channel(Role::Follower { leader: None });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let name = cfg.name.clone();
        let identity = cfg.identity.clone();
        let task = tokio::spawn(run(client, cfg, role_tx, shutdown_rx));
        Ok(Election {
            name,
            identity,
            role_rx,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// Election name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A receiver of our role; gate actions on [`Role::leading_until`].
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role_rx.clone()
    }

    /// A snapshot of the election for status pages.
    pub fn status(&self) -> ElectionStatus {
        let role = self.role_rx.borrow().clone();
        let now = Instant::now();
        match role {
            Role::Leader { deadline } if now < deadline => ElectionStatus {
                name: self.name.clone(),
                identity: self.identity.clone(),
                role: "leader",
                leader: Some(self.identity.clone()),
                lease_deadline_ms: Some((deadline - now).as_millis() as u64),
            },
            Role::Leader { .. } => ElectionStatus {
                name: self.name.clone(),
                identity: self.identity.clone(),
                role: "follower",
                leader: None,
                lease_deadline_ms: None,
            },
            Role::Follower { leader } => ElectionStatus {
                name: self.name.clone(),
                identity: self.identity.clone(),
                role: "follower",
                leader,
                lease_deadline_ms: None,
            },
        }
    }

    /// Stops acting (the action is stopped with its full grace), then revokes the lease so
    /// the next candidate takes over at once instead of after the TTL.
    pub async fn resign(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Key prefix of an election.
pub fn key_prefix(name: &str) -> String {
    format!("/haplane/elections/{name}/")
}

/// Bounds an etcd call with a timeout and maps both failure kinds.
async fn timed<T>(
    op: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ElectError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ElectError::Timeout { op, timeout }),
        Ok(Err(e)) => Err(ElectError::etcd(op, e)),
        Ok(Ok(v)) => Ok(v),
    }
}

async fn run(
    mut client: Client,
    cfg: ElectionConfig,
    role_tx: watch::Sender<Role>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let (action_stop, action_task) = match cfg.action.clone() {
        Some(a) => {
            let (tx, rx) = oneshot::channel();
            let task = action::spawn(&cfg.name, a, cfg.margin, role_tx.subscribe(), rx);
            (Some(tx), Some(AbortOnDrop(task)))
        }
        None => (None, None),
    };
    let stop_action = async move |stop: Option<oneshot::Sender<()>>, task: Option<AbortOnDrop>| {
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        if let Some(mut t) = task {
            let _ = (&mut t.0).await;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let mut lease = None;
        let started = Instant::now();
        let res = campaign(&mut client, &cfg, &role_tx, &mut shutdown, &mut lease).await;
        match res {
            Ok(()) => {
                info!(election = %cfg.name, "resigning");
                // Stop the action first (full grace), then publish follower, then revoke:
                // nobody else may start before our action is gone.
                stop_action(action_stop, action_task).await;
                role_tx.send_replace(Role::Follower { leader: None });
                if let Some(id) = lease {
                    let mut lc = client.lease_client();
                    match timed("lease revoke", cfg.ttl, lc.revoke(id)).await {
                        Ok(_) => {
                            info!(election = %cfg.name, lease = format_args!("{id:x}"), "lease revoked")
                        }
                        Err(e) => {
                            warn!(election = %cfg.name, error = %e, "resign could not revoke lease; it will expire")
                        }
                    }
                }
                return;
            }
            Err(e) => {
                role_tx.send_replace(Role::Follower { leader: None });
                if started.elapsed() > cfg.ttl * 3 {
                    backoff.reset();
                }
                warn!(election = %cfg.name, error = %e, "not campaigning; will retry");
                if let Some(id) = lease {
                    // Best effort, so a lost session's key disappears early when etcd is back.
                    let mut lc = client.lease_client();
                    let ttl = cfg.ttl;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(ttl, lc.revoke(id)).await;
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next()) => {}
                    _ = &mut shutdown => {
                        stop_action(action_stop, action_task).await;
                        return;
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exponential backoff between campaign attempts.
pub(crate) struct Backoff {
    cur: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { cur: min, min, max }
    }
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }
    pub(crate) fn reset(&mut self) {
        self.cur = self.min;
    }
}

/// One campaign: a lease, our key, renewals and leader evaluation. Returns `Ok` when a
/// shutdown was requested and `Err` when the session is lost.
async fn campaign(
    client: &mut Client,
    cfg: &ElectionConfig,
    role_tx: &watch::Sender<Role>,
    shutdown: &mut oneshot::Receiver<()>,
    lease_slot: &mut Option<i64>,
) -> Result<(), ElectError> {
    let renew = cfg.renew_period();
    let prefix = key_prefix(&cfg.name);

    let sent = Instant::now();
    let grant = timed(
        "lease grant",
        cfg.ttl,
        client.lease_grant(cfg.ttl_secs(), None),
    )
    .await?;
    if grant.ttl() <= 0 {
        return Err(ElectError::LeaseLost(grant.id()));
    }
    let lease = grant.id();
    *lease_slot = Some(lease);
    // The server may raise the TTL to its minimum; a larger TTL only delays server expiry.
    let ttl = Duration::from_secs(grant.ttl() as u64);
    let valid_for = ttl.saturating_sub(cfg.margin);
    let mut deadline = sent + valid_for;

    let key = format!("{prefix}{lease:016x}");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            cfg.identity.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let resp = timed("campaign put", renew, client.txn(txn)).await?;
    let mut rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    debug!(election = %cfg.name, %key, rev, "campaign key written");

    let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut watcher: Option<WatchStream> = None;
    let mut leading = false;
    let mut next_renew = tokio::time::Instant::now();

    loop {
        // Renewal and (re)establishing streams happen at each tick.
        if tokio::time::Instant::now() >= next_renew {
            next_renew = tokio::time::Instant::now() + renew;
            // Everything in this tick ends by the deadline, so the deadline timer below is
            // never starved by a slow etcd.
            let tick_end = (Instant::now() + renew).min(deadline);
            let budget = || tick_end.saturating_duration_since(Instant::now());
            if let Some((k, _)) = &mut keeper {
                if pending.len() >= 2 {
                    // Two renewals unanswered: the stream is probably stuck on a dead
                    // member; a fresh stream may be balanced onto a live one.
                    debug!(election = %cfg.name, "keep-alive stream stalled; reopening");
                    keeper = None;
                    pending.clear();
                } else {
                    let t = Instant::now();
                    if k.keep_alive().await.is_ok() {
                        pending.push_back(t);
                    } else {
                        keeper = None;
                        pending.clear();
                    }
                }
            }
            if keeper.is_none() {
                let t = Instant::now();
                let mut lc = client.lease_client();
                match timed("lease keep-alive", budget(), lc.keep_alive(lease)).await {
                    Ok(pair) => {
                        deadline = deadline.max(t + valid_for);
                        keeper = Some(pair);
                    }
                    Err(ElectError::Etcd { detail, .. }) if detail.contains("lease not found") => {
                        return Err(ElectError::LeaseLost(lease));
                    }
                    Err(e) => {
                        debug!(election = %cfg.name, error = %e, "keep-alive not established")
                    }
                }
            }
            if watcher.is_none() {
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1);
                let mut wc = client.watch_client();
                match timed("watch", budget(), wc.watch(prefix.clone(), Some(opts))).await {
                    Ok(w) => watcher = Some(w),
                    Err(e) => debug!(election = %cfg.name, error = %e, "watch not established"),
                }
                // Re-evaluate: changes may have happened while we had no watch.
                match evaluate(client, &prefix, budget()).await {
                    Ok((leader, r)) => {
                        rev = rev.max(r);
                        publish(role_tx, cfg, (&key, lease), leader, deadline, &mut leading)?;
                    }
                    Err(e) => debug!(election = %cfg.name, error = %e, "leader read failed"),
                }
            }
        }
        if leading && Instant::now() < deadline {
            role_tx.send_if_modified(|r| {
                let new = Role::Leader { deadline };
                if *r != new {
                    *r = new;
                    true
                } else {
                    false
                }
            });
        }

        tokio::select! {
            biased;
            _ = &mut *shutdown => return Ok(()),
            _ = tokio::time::sleep_until(deadline.into()) => {
                if leading {
                    warn!(election = %cfg.name, "lease deadline passed without renewal; stepping down");
                }
                return Err(ElectError::DeadlinePassed);
            }
            m = async {
                match keeper.as_mut() {
                    Some((_, s)) => s.message().await,
                    None => std::future::pending().await,
                }
            } => match m {
                Ok(Some(resp)) => {
                    let t = pending.pop_front();
                    if resp.ttl() <= 0 {
                        return Err(ElectError::LeaseLost(lease));
                    }
                    if let Some(t) = t {
                        // Counted from when the request was sent: the server renewed no earlier.
                        deadline = deadline.max(t + valid_for);
                    }
                }
                Ok(None) | Err(_) => {
                    debug!(election = %cfg.name, "keep-alive stream closed");
                    keeper = None;
                    pending.clear();
                }
            },
            m = async {
                match watcher.as_mut() {
                    Some(w) => w.message().await,
                    None => std::future::pending().await,
                }
            } => match m {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        debug!(election = %cfg.name, reason = resp.cancel_reason(), "watch canceled");
                        watcher = None;
                        next_renew = tokio::time::Instant::now();
                        continue;
                    }
                    if let Some(h) = resp.header() {
                        rev = rev.max(h.revision());
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    for ev in resp.events() {
                        if ev.event_type() == EventType::Delete
                            && ev.kv().map(|kv| kv.key()) == Some(key.as_bytes())
                        {
                            return Err(ElectError::LeaseLost(lease));
                        }
                    }
                    let budget = renew.min(deadline.saturating_duration_since(Instant::now()));
                    match evaluate(client, &prefix, budget).await {
                        Ok((leader, r)) => {
                            rev = rev.max(r);
                            publish(role_tx, cfg, (&key, lease), leader, deadline, &mut leading)?;
                        }
                        Err(e) => {
                            debug!(election = %cfg.name, error = %e, "leader read failed; retrying at next tick");
                            watcher = None;
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    debug!(election = %cfg.name, "watch stream closed");
                    watcher = None;
                }
            },
            _ = tokio::time::sleep_until(next_renew) => {}
        }
    }
}

/// Reads the key with the lowest create revision under the prefix: that candidate leads.
async fn evaluate(
    client: &mut Client,
    prefix: &str,
    timeout: Duration,
) -> Result<(Option<(String, String)>, i64), ElectError> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let resp = timed("leader read", timeout, client.get(prefix, Some(opts))).await?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    let leader = resp.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.key()).into_owned(),
            String::from_utf8_lossy(kv.value()).into_owned(),
        )
    });
    Ok((leader, rev))
}

fn publish(
    role_tx: &watch::Sender<Role>,
    cfg: &ElectionConfig,
    (key, lease): (&str, i64),
    leader: Option<(String, String)>,
    deadline: Instant,
    leading: &mut bool,
) -> Result<(), ElectError> {
    let new = match leader {
        Some((k, _)) if k == key => {
            if Instant::now() >= deadline {
                return Err(ElectError::DeadlinePassed);
            }
            if !*leading {
                info!(election = %cfg.name, identity = %cfg.identity, "became leader");
            }
            *leading = true;
            Role::Leader { deadline }
        }
        // Our own key is missing: it was deleted or its lease expired.
        None => return Err(ElectError::LeaseLost(lease)),
        Some((_, v)) => {
            if *leading {
                // Only reachable if our key was removed behind our back.
                warn!(election = %cfg.name, "another candidate leads; stepping down");
            }
            *leading = false;
            Role::Follower { leader: Some(v) }
        }
    };
    role_tx.send_if_modified(|r| {
        if *r != new {
            debug!(election = %cfg.name, role = ?new, "role");
            *r = new;
            true
        } else {
            false
        }
    });
    Ok(())
}
