//! The elector: the driver of one [`Campaign`] (the sans-IO state machine in
//! `campaign.rs`), its action, and the handle callers hold.
//!
//! Campaigning uses only the KV and lease APIs (a put-if-absent under a lease, leader =
//! lowest create revision under the prefix), which behave the same on etcd 3.4 and 3.5+.
//! See docs/elections.md for the timing argument.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, GetResponse, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchOptions,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::campaign::{Campaign, Leader, Reply, Request, Timings, WatchChange};
use crate::{Client, ElectError, ElectionConfig, Watch, action};

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

/// A view of one election for `/status` and `/metrics`: the status contract's type.
pub use status_api::Election as ElectionStatus;

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
                role: "leader".to_string(),
                leader: Some(self.identity.clone()),
                lease_deadline_ms: Some((deadline - now).as_millis() as u64),
            },
            Role::Leader { .. } => ElectionStatus {
                name: self.name.clone(),
                identity: self.identity.clone(),
                role: "follower".to_string(),
                leader: None,
                lease_deadline_ms: None,
            },
            Role::Follower { leader } => ElectionStatus {
                name: self.name.clone(),
                identity: self.identity.clone(),
                role: "follower".to_string(),
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

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn timings(cfg: &ElectionConfig) -> Timings {
    Timings {
        ttl_secs: cfg.ttl_secs(),
        margin: cfg.margin,
        renew: cfg.renew_period(),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(2),
        retry_renew: Duration::from_millis(50),
    }
}

type InFlight = Pin<Box<dyn Future<Output = Reply> + Send>>;

async fn run(
    client: Client,
    cfg: ElectionConfig,
    role_tx: watch::Sender<Role>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let (mut action_stop, mut action_task) = match cfg.action.clone() {
        Some(a) => {
            let (tx, rx) = oneshot::channel();
            let task = action::spawn(&cfg.name, a, cfg.margin, role_tx.subscribe(), rx);
            (Some(tx), Some(AbortOnDrop(task)))
        }
        None => (None, None),
    };
    let prefix = key_prefix(&cfg.name);
    let t = timings(&cfg);
    let mut m = Campaign::new(prefix.clone(), t, Instant::now());
    let mut in_flight: Option<InFlight> = None;
    let mut watch: Option<(i64, Watch)> = None;
    let mut resigning = false;
    let mut log = RoleLog::default();
    loop {
        let now = Instant::now();
        if !resigning {
            let role = m.role(now);
            log.changed(&cfg, &role, &m);
            publish(&role_tx, role);
        }
        while in_flight.is_none() {
            match m.poll_request(now) {
                Some(Request::Abandon { lease }) => {
                    info!(election = %cfg.name, lease = format_args!("{lease:x}"), "revoking the old lease in the background");
                    client.revoke_in_background(lease);
                }
                Some(req) => {
                    let timeout = req.timeout(&t, m.valid_for());
                    in_flight = Some(Box::pin(perform(
                        client.clone(),
                        prefix.clone(),
                        cfg.identity.clone(),
                        req,
                        timeout,
                    )));
                }
                None => break,
            }
        }
        if m.is_done() {
            return;
        }
        match m.watch_from() {
            Some(from) if !resigning && watch.as_ref().map(|w| w.0) != Some(from) => {
                let opts = WatchOptions::new().with_prefix();
                watch = Some((from, client.watch(prefix.clone(), opts, from)));
            }
            _ => {}
        }
        let wake = m.poll_timeout(now);
        tokio::select! {
            biased;
            _ = &mut shutdown, if !resigning => {
                info!(election = %cfg.name, "resigning");
                resigning = true;
                in_flight = None;
                watch = None;
                // Stop the action first (full grace), then publish follower, then revoke:
                // nobody else may start before our action is gone.
                if let Some(tx) = action_stop.take() {
                    let _ = tx.send(());
                }
                if let Some(mut task) = action_task.take() {
                    let _ = (&mut task.0).await;
                }
                publish(&role_tx, Role::Follower { leader: None });
                m.handle_resign(Instant::now());
            }
            r = async {
                match in_flight.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                in_flight = None;
                if let Reply::Renewed { leader: Some(l), .. } | Reply::Read { leader: Some(l), .. } = &r {
                    log.blocked_by_own_old_key(&cfg, &client, l, m.key());
                }
                m.handle_reply(Instant::now(), r);
            }
            b = async {
                match watch.as_mut() {
                    Some((_, w)) => w.next().await,
                    None => std::future::pending().await,
                }
            } => match b {
                Ok(batch) => {
                    if batch.events.is_empty() {
                        continue;
                    }
                    let own = m.key().map(str::as_bytes);
                    let deleted_own = batch.events.iter().any(|ev| {
                        ev.event_type() == EventType::Delete && ev.kv().map(|kv| kv.key()) == own
                    });
                    let change = if deleted_own { WatchChange::OwnKeyDeleted } else { WatchChange::Other };
                    m.handle_watch(Instant::now(), change);
                }
                Err(e) => {
                    // Compacted (or refused): watch from now, and re-read what we missed.
                    debug!(election = %cfg.name, error = %e, "watch restarts from the current revision");
                    if let Some((from, _)) = watch.take() {
                        watch = Some((from, client.watch(prefix.clone(), WatchOptions::new().with_prefix(), 0)));
                    }
                    m.handle_watch(Instant::now(), WatchChange::Other);
                }
            },
            _ = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Publishes `role` if it changed (a leader's deadline moves at every renewal: the exec
/// guard reads it).
fn publish(role_tx: &watch::Sender<Role>, role: Role) {
    role_tx.send_if_modified(|r| {
        if *r != role {
            *r = role;
            true
        } else {
            false
        }
    });
}

/// Logs role transitions once each.
#[derive(Default)]
struct RoleLog {
    leading: bool,
    leader: Option<String>,
    blocked_by: Option<String>,
}

impl RoleLog {
    fn changed(&mut self, cfg: &ElectionConfig, role: &Role, m: &Campaign) {
        match role {
            Role::Leader { .. } => {
                if !self.leading {
                    info!(election = %cfg.name, identity = %cfg.identity, key = m.key().unwrap_or("-"), "became leader");
                }
                self.leading = true;
            }
            Role::Follower { leader } => {
                if self.leading {
                    if leader.is_none() {
                        warn!(election = %cfg.name, "lease deadline passed without a confirmed renewal; stepping down (renewals continue)");
                    } else {
                        warn!(election = %cfg.name, leader = leader.as_deref().unwrap_or("-"), "another candidate leads; stepping down");
                    }
                }
                self.leading = false;
                if *leader != self.leader {
                    debug!(election = %cfg.name, leader = leader.as_deref().unwrap_or("-"), "follower");
                    self.leader = leader.clone();
                }
            }
        }
    }

    /// The lowest key is one of this process's abandoned leases, still being revoked: say
    /// so once (it clears as soon as the revoke lands).
    fn blocked_by_own_old_key(
        &mut self,
        cfg: &ElectionConfig,
        client: &Client,
        leader: &Leader,
        own: Option<&str>,
    ) {
        if Some(leader.key.as_str()) == own {
            self.blocked_by = None;
            return;
        }
        let lease = leader
            .key
            .rsplit('/')
            .next()
            .and_then(|s| i64::from_str_radix(s, 16).ok());
        if lease.is_some_and(|l| client.is_revoking(l)) {
            if self.blocked_by.as_deref() != Some(leader.key.as_str()) {
                info!(election = %cfg.name, key = %leader.key, "our own previous key still leads; its lease is being revoked");
                self.blocked_by = Some(leader.key.clone());
            }
        } else {
            self.blocked_by = None;
        }
    }
}

/// The lowest create revision under the prefix leads.
fn leader_read() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

fn leader_of(r: &GetResponse) -> (Option<Leader>, i64) {
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    let leader = r.kvs().first().map(|kv| Leader {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        identity: String::from_utf8_lossy(kv.value()).into_owned(),
    });
    (leader, rev)
}

/// Performs one campaign request against etcd.
async fn perform(
    client: Client,
    prefix: String,
    identity: String,
    req: Request,
    timeout: Duration,
) -> Reply {
    let failed = |what: &str, e: ElectError| {
        debug!(%prefix, error = %e, "{what} failed");
        match e {
            ElectError::LeaseLost(_) => Reply::LeaseGone,
            ElectError::LeaseNotFound { .. } => Reply::LeaseGone,
            _ => Reply::Failed,
        }
    };
    match req {
        Request::Grant { ttl_secs } => match client.lease_grant(ttl_secs, timeout).await {
            Ok(a) if a.value.1 > 0 => Reply::Granted {
                sent: a.sent,
                lease: a.value.0,
                ttl_secs: a.value.1,
            },
            Ok(_) => Reply::Failed,
            Err(e) => failed("lease grant", e),
        },
        Request::Put { lease, key } => {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    identity,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            match client.txn(txn, timeout).await {
                // When the compare failed the key already exists: only we write a key named
                // after our lease, so an earlier attempt of ours wrote it.
                Ok(a) => Reply::Put {
                    revision: a.header().map(|h| h.revision()).unwrap_or(0),
                },
                Err(e) => failed("campaign put", e),
            }
        }
        Request::Renew { lease } => {
            match client
                .renew_confirmed(lease, prefix.clone(), Some(leader_read()), timeout)
                .await
            {
                Ok(a) => {
                    let (leader, revision) = leader_of(&a.read);
                    Reply::Renewed {
                        sent: a.sent,
                        leader,
                        revision,
                    }
                }
                Err(e) => failed("renewal", e),
            }
        }
        Request::Read => match client
            .get(prefix.clone(), Some(leader_read()), timeout)
            .await
        {
            Ok(a) => {
                let (leader, revision) = leader_of(&a);
                Reply::Read { leader, revision }
            }
            Err(e) => failed("leader read", e),
        },
        Request::Revoke { lease } => match client.lease_revoke(lease, timeout).await {
            Ok(_) => {
                info!(%prefix, lease = format_args!("{lease:x}"), "lease revoked");
                Reply::Revoked
            }
            Err(e) => {
                warn!(%prefix, error = %e, "resign could not revoke the lease yet; revoking in the background");
                Reply::Failed
            }
        },
        Request::Abandon { .. } => Reply::Failed,
    }
}
