//! The etcd client haplane uses everywhere: one gRPC channel per member, per-member health
//! ([`crate::health`]), and a fast switch.
//!
//! etcd-client balances one channel over every endpoint and keeps a failed endpoint in
//! rotation, so requests and streams land on a dead, frozen or cut-off member and hang until
//! the HTTP/2 keepalive or a caller's timeout gives up (issue 14, fix 3). Here every request
//! goes first to the preferred member; if it has not answered within the *attempt timeout*
//! (250 ms by default), that member is marked down and the same request also goes to the next
//! member, while the first attempt stays in flight (a hedged request: a member that is only
//! slow still answers; a frozen one costs one attempt timeout). A member that refuses, breaks
//! the connection or has no raft leader is skipped at once. Every call also takes an overall
//! timeout, within which it keeps trying (after a round in which every member failed, a pause
//! that doubles from 25 ms to 100 ms), so a call spans an etcd raft election instead of failing
//! in its first millisecond.
//!
//! Answers carry when the answering attempt was sent and received ([`Answer`]): a lease
//! holder must count from the send time of the request that succeeded, a challenger from the
//! time it learned of a revision.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, ConnectOptions, DeleteOptions, DeleteResponse, GetOptions, GetResponse, Identity,
    PutOptions, PutResponse, TlsOptions, Txn, TxnResponse, WatchOptions,
};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::error::error_chain;
use crate::health::{Health, HealthConfig};
use crate::watch::Watch;
use crate::{ElectError, EtcdConfig};

/// HTTP/2 ping period, so a frozen or cut-off member's connection is closed within about two
/// periods even when no request is waiting on it. etcd's keepalive enforcement (grpc-go,
/// `--grpc-keepalive-min-time` 5 s, pings without an active stream not permitted) answers
/// pings on *idle* connections with GOAWAY "too_many_pings", so we ping only while streams are
/// active. Neither safety nor the fast switch depends on the ping: the attempt timeout does.
const H2_PING: Duration = Duration::from_secs(1);

/// First pause after a round in which every member failed; doubles up to [`ROUND_PAUSE_MAX`].
const ROUND_PAUSE_MIN: Duration = Duration::from_millis(25);
const ROUND_PAUSE_MAX: Duration = Duration::from_millis(100);

/// How long a background revoke keeps trying (see [`Client::revoke_in_background`]).
pub const BACKGROUND_REVOKE_BOUND: Duration = Duration::from_secs(30);

/// A successful answer and how it was obtained.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    /// The response.
    pub value: T,
    /// When the attempt that produced this answer was sent (monotonic). The server acted on
    /// the request no earlier than this.
    pub sent: Instant,
    /// When its answer arrived. The server acted on the request no later than this.
    pub received: Instant,
    /// Index of the member that answered, in [`Client::endpoints`].
    pub member: usize,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// An earlier attempt timed out or broke after it may have reached the server: a request
    /// that is not idempotent may have taken effect before this answer (a transaction that
    /// now reports a failed compare may have succeeded in the earlier attempt).
    pub uncertain: bool,
}

impl<T> std::ops::Deref for Answer<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A lease renewal confirmed by a linearizable read: see [`Client::renew_confirmed`].
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The linearizable read that confirmed the renewal.
    pub read: GetResponse,
    /// The raft term both the renewal and the read were served in.
    pub raft_term: u64,
}

/// One member as shown in `/status` (the status contract's type).
pub use status_api::EtcdMember as MemberStatus;

/// The etcd client: clone it freely (clones share channels and health).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    attempt: Duration,
}

struct Inner {
    endpoints: Vec<String>,
    members: Vec<etcd_client::Client>,
    health: Mutex<Health>,
    /// Up → down transitions, so watches move off a member that failed other requests.
    down_tx: watch::Sender<u64>,
    probe_wake: Arc<Notify>,
    /// Raft term of the newest linearizable read each member answered for
    /// [`Client::renew_confirmed`].
    terms: Mutex<Vec<Option<u64>>>,
    /// Leases being revoked in the background.
    revoking: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("preferred", &self.lock_health().preferred())
            .field("attempt_timeout", &self.attempt)
            .finish()
    }
}

/// Connects to etcd and proves that a quorum answers (a linearizable read).
///
/// Errors name the endpoints and the full cause (refused, TLS handshake, timeout).
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, ElectError> {
    Client::connect(cfg).await
}

/// Whether a failed attempt is worth repeating on another member, and whether it may have
/// reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The member answered with a definitive error (not found, invalid, compacted,
    /// permission): another member would say the same.
    Answered,
    /// The member refused before acting (no raft leader, connection refused): try another.
    Refused,
    /// The request may or may not have been acted on (transport broke, server timeout).
    Lost,
}

fn classify(e: &etcd_client::Error) -> Verdict {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            Code::NotFound
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::AlreadyExists
            | Code::Unimplemented => Verdict::Answered,
            Code::Unavailable
                if s.message().contains("no leader") || s.message().contains("not capable") =>
            {
                Verdict::Refused
            }
            _ if error_chain(e).contains("Connection refused") => Verdict::Refused,
            _ => Verdict::Lost,
        },
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            Verdict::Answered
        }
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => Verdict::Answered,
        _ if error_chain(e).contains("Connection refused") => Verdict::Refused,
        _ => Verdict::Lost,
    }
}

pub(crate) fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::NotFound,
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

/// How one attempt on one member ended.
pub(crate) enum Attempt<T> {
    Ok(T),
    /// A definitive error from the member.
    Answered(etcd_client::Error),
    /// Try the next member.
    Failed {
        uncertain: bool,
    },
}

impl Client {
    /// Validates `cfg`, sets up one channel per member (they connect lazily), and proves that
    /// a quorum answers: a linearizable read, sent to every member at once, must succeed on
    /// one of them within `dial_timeout`. The first member to answer becomes the preferred
    /// one, so a node uses its closest member.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Client, ElectError> {
        let client = Client::new(cfg).await?;
        let endpoints = cfg.endpoints.join(",");
        let (tx, mut rx) = tokio::sync::mpsc::channel(client.inner.members.len());
        let dial = cfg.dial_timeout;
        for i in 0..client.inner.members.len() {
            let (c, tx) = (client.clone(), tx.clone());
            tokio::spawn(async move {
                let r = c.probe(i, dial).await;
                let _ = tx.send((i, r)).await;
            });
        }
        drop(tx);
        let mut last = None;
        let waited = tokio::time::timeout(cfg.dial_timeout, async {
            while let Some((i, r)) = rx.recv().await {
                match r {
                    Ok(()) => return Some(i),
                    Err(e) => last = Some(e),
                }
            }
            None
        })
        .await;
        match waited {
            Ok(Some(i)) => {
                client.lock_health().prefer(i);
                info!(%endpoints, preferred = %client.inner.endpoints[i], "connected to etcd");
                Ok(client)
            }
            Ok(None) => Err(ElectError::Connect {
                endpoints,
                detail: last.unwrap_or_else(|| "no member answered".into()),
            }),
            Err(_) => Err(ElectError::Unreachable {
                endpoints,
                timeout: cfg.dial_timeout,
            }),
        }
    }

    /// Like [`Client::connect`] without the quorum read: the client is returned even when
    /// no member is reachable yet (requests then fail until one is).
    pub async fn new(cfg: &EtcdConfig) -> Result<Client, ElectError> {
        let opts = connect_options(cfg)?;
        let mut members = Vec::with_capacity(cfg.endpoints.len());
        for e in &cfg.endpoints {
            let c = etcd_client::Client::connect([e.as_str()], Some(opts.clone()))
                .await
                .map_err(|err| ElectError::Connect {
                    endpoints: e.clone(),
                    detail: error_chain(&err),
                })?;
            members.push(c);
        }
        let (down_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            endpoints: cfg.endpoints.clone(),
            health: Mutex::new(Health::new(members.len(), HealthConfig::default())),
            terms: Mutex::new(vec![None; members.len()]),
            members,
            down_tx,
            probe_wake: Arc::new(Notify::new()),
            revoking: Mutex::new(HashSet::new()),
        });
        let client = Client {
            inner,
            attempt: cfg.attempt_timeout,
        };
        tokio::spawn(probe_loop(
            Arc::downgrade(&client.inner),
            client.inner.probe_wake.clone(),
            client.attempt,
        ));
        Ok(client)
    }

    /// The same client with another attempt timeout (the bound on one request to one member
    /// before the next member is tried). Clones share channels and health.
    pub fn with_attempt_timeout(&self, attempt: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            attempt,
        }
    }

    /// The attempt timeout of this handle.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt
    }

    /// The configured client URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Every member's health, for `/status`.
    pub fn members(&self) -> Vec<MemberStatus> {
        self.lock_health().members(&self.inner.endpoints)
    }

    /// The member requests go to first.
    pub fn preferred(&self) -> usize {
        self.lock_health().preferred()
    }

    /// Reads a key or range (linearizable unless `opts` asks for serializable).
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<GetOptions>,
        timeout: Duration,
    ) -> Result<Answer<GetResponse>, ElectError> {
        let key = key.into();
        self.call("get", timeout, |mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    /// Writes a key. A retried put may have been applied twice (see [`Answer::uncertain`]).
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: Option<PutOptions>,
        timeout: Duration,
    ) -> Result<Answer<PutResponse>, ElectError> {
        let (key, value) = (key.into(), value.into());
        self.call("put", timeout, |mut c| {
            let (key, value, opts) = (key.clone(), value.clone(), opts.clone());
            async move { c.put(key, value, opts).await }
        })
        .await
    }

    /// Deletes a key or range.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<DeleteOptions>,
        timeout: Duration,
    ) -> Result<Answer<DeleteResponse>, ElectError> {
        let key = key.into();
        self.call("delete", timeout, |mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.delete(key, opts).await }
        })
        .await
    }

    /// A transaction (compare, then success or failure ops). It commits through raft, so an
    /// isolated raft leader cannot answer it. When [`Answer::uncertain`] is set, an earlier
    /// attempt may have committed: a compare-and-swap that now reports `succeeded == false`
    /// may have been the caller's own earlier attempt; read the key to find out.
    pub async fn txn(
        &self,
        txn: Txn,
        timeout: Duration,
    ) -> Result<Answer<TxnResponse>, ElectError> {
        self.call("txn", timeout, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Grants a lease of `ttl_secs`; returns (id, granted TTL in seconds). A retried grant
    /// may leave an unused lease behind, which expires on its own.
    pub async fn lease_grant(
        &self,
        ttl_secs: i64,
        timeout: Duration,
    ) -> Result<Answer<(i64, i64)>, ElectError> {
        self.call("lease grant", timeout, |mut c| async move {
            c.lease_grant(ttl_secs, None)
                .await
                .map(|r| (r.id(), r.ttl()))
        })
        .await
    }

    /// Revokes a lease (its keys are deleted at once). `Ok(true)` when it was revoked now,
    /// `Ok(false)` when etcd no longer knew it (expired or revoked before).
    pub async fn lease_revoke(
        &self,
        lease: i64,
        timeout: Duration,
    ) -> Result<Answer<bool>, ElectError> {
        let r = self
            .call("lease revoke", timeout, |mut c| async move {
                match c.lease_revoke(lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_lease_not_found(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await;
        if let Ok(a) = &r {
            debug!(
                lease = format_args!("{lease:x}"),
                revoked = a.value,
                "lease revoke answered"
            );
        }
        r
    }

    /// One lease keep-alive. `Err(LeaseLost)` when the lease is gone. Note that an isolated raft leader answers keep-alives from its own lease table
    /// until it steps down (about one election timeout): use [`Client::renew_confirmed`] when
    /// that matters.
    pub async fn lease_keep_alive(
        &self,
        lease: i64,
        timeout: Duration,
    ) -> Result<Answer<()>, ElectError> {
        let r = self
            .call("lease keep-alive", timeout, |c| keep_alive_once(c, lease))
            .await;
        lease_lost(lease, r)
    }

    /// A lease renewal that an isolated raft leader cannot answer (issue 14, fix 4).
    ///
    /// On one member M: a linearizable read, a keep-alive, and the linearizable read of
    /// `key`/`opts`, in that order, accepted only if both reads report the same raft term.
    /// M's term is then the same throughout, so M handed the keep-alive to that term's leader;
    /// and the second read, sent after the keep-alive was answered, proves that leader still
    /// led with a quorum after it renewed. No later leader can have been elected before the
    /// renewal, and a newly elected leader renews every lease in full, so the server cannot
    /// expire the lease before `sent + TTL`. The first read is skipped when M answered an
    /// earlier confirming read (its term is remembered), so the cost is one keep-alive plus
    /// one linearizable read (a heartbeat round to a quorum, no disk write) per renewal.
    ///
    /// `sent` in the answer is when the keep-alive was sent.
    pub async fn renew_confirmed(
        &self,
        lease: i64,
        key: impl Into<Vec<u8>>,
        opts: Option<GetOptions>,
        timeout: Duration,
    ) -> Result<Answer<Renewal>, ElectError> {
        let key = key.into();
        let op = "confirmed lease renewal";
        let r = self
            .call_stateful(op, timeout, |this, m, bound| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { this.renew_on(m, lease, key, opts, bound).await }
            })
            .await;
        lease_lost(lease, r)
    }

    async fn renew_on(
        &self,
        m: usize,
        lease: i64,
        key: Vec<u8>,
        opts: Option<GetOptions>,
        bound: Duration,
    ) -> Attempt<(Renewal, Instant)> {
        let c = &self.inner.members[m];
        let read = |c: etcd_client::Client, key: Vec<u8>, opts: Option<GetOptions>| async move {
            let mut c = c;
            c.get(key, opts).await
        };
        // Two tries on this member: the first may only learn its term.
        for _ in 0..2 {
            let before = self.inner.terms.lock().unwrap_or_else(|e| e.into_inner())[m];
            let before = match before {
                Some(t) => t,
                None => match self
                    .attempt_on(m, bound, read(c.clone(), key.clone(), opts.clone()))
                    .await
                {
                    Attempt::Ok(r) => {
                        let t = term_of(&r);
                        self.set_term(m, t);
                        t
                    }
                    Attempt::Answered(e) => return Attempt::Answered(e),
                    Attempt::Failed { uncertain } => return Attempt::Failed { uncertain },
                },
            };
            let sent = Instant::now();
            match self
                .attempt_on(m, bound, keep_alive_once(c.clone(), lease))
                .await
            {
                Attempt::Ok(_) => {}
                Attempt::Answered(e) => return Attempt::Answered(e),
                Attempt::Failed { .. } => return Attempt::Failed { uncertain: false },
            }
            let after = match self
                .attempt_on(m, bound, read(c.clone(), key.clone(), opts.clone()))
                .await
            {
                Attempt::Ok(r) => r,
                Attempt::Answered(e) => return Attempt::Answered(e),
                Attempt::Failed { .. } => return Attempt::Failed { uncertain: false },
            };
            let term = term_of(&after);
            self.set_term(m, term);
            if term == before && term != 0 {
                return Attempt::Ok((
                    Renewal {
                        read: after,
                        raft_term: term,
                    },
                    sent,
                ));
            }
            debug!(
                member = m,
                before,
                after = term,
                "raft term changed during a renewal; renewing again"
            );
        }
        Attempt::Failed { uncertain: false }
    }

    fn set_term(&self, m: usize, t: u64) {
        self.inner.terms.lock().unwrap_or_else(|e| e.into_inner())[m] = Some(t);
    }

    /// Watches `key` (with `opts`: prefix, range, start revision, prev_kv…) across member
    /// failures: see [`Watch`].
    pub fn watch(&self, key: impl Into<Vec<u8>>, opts: WatchOptions, start_revision: i64) -> Watch {
        Watch::new(
            self.clone(),
            key.into(),
            opts,
            start_revision,
            self.inner.down_tx.subscribe(),
        )
    }

    /// Revokes `lease` in the background until etcd confirms it gone (revoked now, or
    /// already unknown) or [`BACKGROUND_REVOKE_BOUND`] passes, and returns at once. Used when
    /// a revoke could not land (etcd had no leader), so our own key does not block our next
    /// campaign until the lease expires (issue 14, fix 2).
    pub fn revoke_in_background(&self, lease: i64) {
        if !self
            .inner
            .revoking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lease)
        {
            return;
        }
        let c = self.clone();
        tokio::spawn(async move {
            match c.lease_revoke(lease, BACKGROUND_REVOKE_BOUND).await {
                Ok(a) => info!(
                    lease = format_args!("{lease:x}"),
                    revoked = a.value,
                    attempts = a.attempts,
                    "abandoned lease revoked in the background"
                ),
                Err(e) => {
                    warn!(lease = format_args!("{lease:x}"), error = %e, "gave up revoking an abandoned lease; it will expire")
                }
            }
            c.inner
                .revoking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&lease);
        });
    }

    /// Whether `lease` is being revoked in the background.
    pub fn is_revoking(&self, lease: i64) -> bool {
        self.inner
            .revoking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&lease)
    }

    /// The raw etcd-client of the preferred member, for streaming calls this type does not
    /// wrap (the maintenance snapshot).
    pub(crate) fn preferred_member(&self) -> (usize, etcd_client::Client) {
        let i = self.preferred();
        (i, self.inner.members[i].clone())
    }

    pub(crate) fn member(&self, i: usize) -> etcd_client::Client {
        self.inner.members[i].clone()
    }

    pub(crate) fn order(&self) -> Vec<usize> {
        self.lock_health().order()
    }

    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.lock_health().is_up(i)
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn report_answer(&self, m: usize, rtt: Duration) {
        self.lock_health().handle_answer(Instant::now(), m, rtt);
    }

    pub(crate) fn report_failure(&self, m: usize, error: String) {
        let mut h = self.lock_health();
        let before = h.down_events();
        debug!(endpoint = %self.inner.endpoints[m], %error, "etcd member failed a request");
        h.handle_failure(Instant::now(), m, error);
        let after = h.down_events();
        drop(h);
        if after != before {
            warn!(endpoint = %self.inner.endpoints[m], "etcd member marked down; using the next one");
            self.inner.down_tx.send_replace(after);
        }
        self.inner.probe_wake.notify_one();
    }

    /// One attempt on member `m`, bounded by `bound`, with health reporting. A timeout only
    /// counts against the member when the full attempt timeout was allowed.
    pub(crate) async fn attempt_on<T>(
        &self,
        m: usize,
        bound: Duration,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Attempt<T> {
        let sent = Instant::now();
        match tokio::time::timeout(bound, fut).await {
            Ok(Ok(v)) => {
                self.report_answer(m, sent.elapsed());
                Attempt::Ok(v)
            }
            Ok(Err(e)) => match classify(&e) {
                Verdict::Answered => {
                    self.report_answer(m, sent.elapsed());
                    Attempt::Answered(e)
                }
                Verdict::Refused => {
                    self.report_failure(m, error_chain(&e));
                    Attempt::Failed { uncertain: false }
                }
                Verdict::Lost => {
                    self.report_failure(m, error_chain(&e));
                    Attempt::Failed { uncertain: true }
                }
            },
            Err(_) => {
                if bound >= self.attempt {
                    self.report_failure(m, format!("no answer within {bound:?}"));
                }
                Attempt::Failed { uncertain: true }
            }
        }
    }

    /// Sends a request to one member after another (health order) until one answers or
    /// `timeout` passes.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        f: F,
    ) -> Result<Answer<T>, ElectError>
    where
        F: Fn(etcd_client::Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_stateful(op, timeout, |this, m, bound| {
            let fut = f(this.inner.members[m].clone());
            async move {
                let sent = Instant::now();
                match this.attempt_on(m, bound, fut).await {
                    Attempt::Ok(v) => Attempt::Ok((v, sent)),
                    Attempt::Answered(e) => Attempt::Answered(e),
                    Attempt::Failed { uncertain } => Attempt::Failed { uncertain },
                }
            }
        })
        .await
    }

    /// The retry loop behind every call: `f(self, member, bound)` makes one attempt on a
    /// member and returns its value with the send time that counts.
    ///
    /// Hedged: the first attempt goes to the first member in health order; if it has not
    /// answered within the attempt timeout, that member is reported slow (marked down) and
    /// the next member gets the same request *while the first stays in flight*, and so on.
    /// The first success wins; a failure starts the next member at once. A slow member that
    /// still answers therefore still counts, and a dead one costs one attempt timeout. When
    /// every member has failed, the round repeats after a pause (25 ms doubling to 100 ms).
    async fn call_stateful<'a, T, F, Fut>(
        &'a self,
        op: &'static str,
        timeout: Duration,
        f: F,
    ) -> Result<Answer<T>, ElectError>
    where
        F: Fn(&'a Client, usize, Duration) -> Fut,
        Fut: Future<Output = Attempt<(T, Instant)>> + 'a,
    {
        use futures_util::StreamExt;
        use futures_util::stream::FuturesUnordered;

        let end = Instant::now() + timeout;
        let mut attempts = 0u32;
        let mut uncertain = false;
        let mut pause = ROUND_PAUSE_MIN;
        let mut running = FuturesUnordered::new();
        let mut order = self.order();
        let mut next = 0;
        // The newest attempt still in flight, and when the next member gets the request.
        let mut newest: Option<(usize, Instant)> = None;
        let mut launch_now = false;
        loop {
            if running.is_empty() && next == order.len() {
                // Every member failed this round.
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.gave_up(op, timeout, attempts));
                }
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(ROUND_PAUSE_MAX);
                order = self.order();
                next = 0;
            }
            let now = Instant::now();
            let overdue = newest.is_some_and(|(_, t)| now >= t);
            if running.is_empty() || overdue || launch_now {
                launch_now = false;
                if overdue && let Some((slow, _)) = newest.take() {
                    // It may still answer (and commit): any answer is now uncertain.
                    uncertain = true;
                    self.report_failure(slow, format!("no answer within {:?}", self.attempt));
                }
                if next < order.len() {
                    if now >= end {
                        return Err(self.gave_up(op, timeout, attempts));
                    }
                    let m = order[next];
                    next += 1;
                    attempts += 1;
                    let fut = f(self, m, end - now);
                    running.push(async move { (m, fut.await) });
                    newest = Some((m, now + self.attempt));
                }
            }
            let hedge = newest.map(|(_, t)| t);
            tokio::select! {
                Some((m, r)) = running.next() => match r {
                    Attempt::Ok((value, sent)) => {
                        return Ok(Answer {
                            value,
                            sent,
                            received: Instant::now(),
                            member: m,
                            attempts,
                            uncertain,
                        });
                    }
                    Attempt::Answered(e) => return Err(ElectError::etcd(op, e)),
                    Attempt::Failed { uncertain: u } => {
                        uncertain |= u;
                        if newest.is_some_and(|(n, _)| n == m) {
                            // The newest attempt failed: the next member now, not at the hedge.
                            newest = None;
                            launch_now = true;
                        }
                    }
                },
                _ = async {
                    match hedge {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep_until(end.into()) => {
                    return Err(self.gave_up(op, timeout, attempts));
                }
            }
        }
    }

    fn gave_up(&self, op: &'static str, timeout: Duration, attempts: u32) -> ElectError {
        let h = self.lock_health();
        let why: Vec<String> = h
            .members(&self.inner.endpoints)
            .iter()
            .filter_map(|m| {
                m.last_error
                    .as_ref()
                    .map(|e| format!("{}: {e}", self.inner.endpoints[m.index]))
            })
            .collect();
        ElectError::Unavailable {
            op,
            timeout,
            attempts,
            detail: if why.is_empty() {
                "no member answered".into()
            } else {
                why.join("; ")
            },
        }
    }

    /// A linearizable read on member `m` that proves it has a leader and a quorum.
    async fn probe(&self, m: usize, bound: Duration) -> Result<(), String> {
        let mut c = self.inner.members[m].clone();
        let fut = async move {
            c.get("/haplane/probe", Some(GetOptions::new().with_count_only()))
                .await
        };
        match self.attempt_on(m, bound, fut).await {
            Attempt::Ok(_) => Ok(()),
            Attempt::Answered(e) => Err(error_chain(&e)),
            Attempt::Failed { .. } => Err(self
                .lock_health()
                .members(&self.inner.endpoints)
                .get(m)
                .and_then(|s| s.last_error.clone())
                .map(|e| format!("{}: {e}", self.inner.endpoints[m]))
                .unwrap_or_else(|| "no answer".into())),
        }
    }
}

fn term_of(r: &GetResponse) -> u64 {
    r.header().map(|h| h.raft_term()).unwrap_or(0)
}

/// One keep-alive on a fresh stream: etcd-client's `keep_alive` sends the first request and
/// waits for its answer, and fails with "lease not found" when the server reports TTL 0.
/// The stream closes when the keeper is dropped. A stream per renewal costs one HTTP/2
/// stream; it keeps every renewal on the member the health tracker chose.
async fn keep_alive_once(mut c: etcd_client::Client, lease: i64) -> Result<(), etcd_client::Error> {
    let (_keeper, _stream) = c.lease_keep_alive(lease).await?;
    Ok(())
}

fn lease_lost<T>(lease: i64, r: Result<Answer<T>, ElectError>) -> Result<Answer<T>, ElectError> {
    match r {
        Err(ElectError::LeaseNotFound { .. }) => Err(ElectError::LeaseLost(lease)),
        other => other,
    }
}

async fn probe_loop(inner: Weak<Inner>, wake: Arc<Notify>, attempt: Duration) {
    loop {
        let next = {
            let Some(i) = inner.upgrade() else { return };
            let client = Client { inner: i, attempt };
            let now = Instant::now();
            let due = client.lock_health().poll_probe(now);
            if let Some(m) = due {
                // A probe tells down from slow: a member that answers within four attempt
                // timeouts is up (requests are hedged around it while it is slow anyway).
                tokio::spawn(async move {
                    let _ = client.probe(m, attempt * 4).await;
                });
                continue;
            }
            client.lock_health().poll_timeout()
        };
        let sleep = match next {
            Some(t) => tokio::time::sleep_until(t.into()),
            None => tokio::time::sleep(Duration::from_secs(1)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
        }
    }
}

fn connect_options(cfg: &EtcdConfig) -> Result<ConnectOptions, ElectError> {
    if cfg.endpoints.is_empty() {
        return Err(ElectError::InvalidConfig("etcd endpoints are empty".into()));
    }
    if cfg.attempt_timeout.is_zero() {
        return Err(ElectError::InvalidConfig(
            "etcd attempt timeout must be positive".into(),
        ));
    }
    let tls = cfg.ca_file.is_some() || cfg.cert_file.is_some() || cfg.key_file.is_some();
    for e in &cfg.endpoints {
        let https = e.starts_with("https://");
        if !https && !e.starts_with("http://") {
            return Err(ElectError::InvalidConfig(format!(
                "etcd endpoint {e:?} must start with http:// or https://"
            )));
        }
        // A scheme that disagrees with the TLS settings would otherwise surface later as
        // an opaque transport error; name the mismatch instead.
        if tls && !https {
            return Err(ElectError::InvalidConfig(format!(
                "etcd TLS files are set but endpoint {e} uses http://"
            )));
        }
        if !tls && https {
            return Err(ElectError::InvalidConfig(format!(
                "etcd endpoint {e} uses https:// but no caFile is set"
            )));
        }
    }
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.dial_timeout)
        .with_keep_alive(H2_PING, H2_PING / 2)
        .with_keep_alive_while_idle(false)
        // A member cut off from the majority must refuse, not serve stale answers.
        .with_require_leader(true);
    if tls {
        let mut t = TlsOptions::new();
        match &cfg.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|error| ElectError::TlsFile {
                    what: "ca file",
                    path: ca.clone(),
                    error,
                })?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            None => {
                return Err(ElectError::InvalidConfig(
                    "etcd certFile/keyFile need a caFile to verify the server".into(),
                ));
            }
        }
        match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c).map_err(|error| ElectError::TlsFile {
                    what: "cert file",
                    path: c.clone(),
                    error,
                })?;
                let key = std::fs::read(k).map_err(|error| ElectError::TlsFile {
                    what: "key file",
                    path: k.clone(),
                    error,
                })?;
                t = t.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => {
                return Err(ElectError::InvalidConfig(
                    "etcd certFile and keyFile must be set together".into(),
                ));
            }
        }
        opts = opts.with_tls(t);
    }
    Ok(opts)
}
