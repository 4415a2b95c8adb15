//! The fenced VIP: the driver of the sans-IO VIP gate (crates/gate).
//!
//! The gate decides; this module carries its decisions out, in the shape of quinn's
//! `ConnectionDriver`: [`GateDriver`] owns the [`gate::Gate`], a background task sends its
//! etcd requests (transactions on the key `/haplane/gate/vip-<vrid>` that compare the key's
//! mod revision, or its create revision with 0, and read the key in the else branch), a
//! second task watches the key (so a challenger learns each renewal when it commits, not at
//! its next read), and the VRRP loop wakes the driver at [`GateDriver::wait`], feeds it VRRP's want and carries out the
//! VIP actions it hands back ([`VipAction`]: hold, release, defer, quorum). The etcd requests
//! and the arming marker are the driver's own business.
//!
//! Bootstrap: the VIP must exist before any apiserver (kubeadm init needs it), and with
//! stacked etcd, before etcd. Fencing is therefore *armed* the first time this node reaches
//! etcd, and a marker file keeps it armed across restarts; until then the VIP follows plain
//! VRRP and `/status` says `armed: false`. See docs/elections.md "The fenced VIP".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elect::Client;
use elect::etcd::{
    Compare, CompareOp, EventType, GetResponse, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use gate::{Action, Gate, GateConfig, Held, KeyState, Op, Outcome, RequestFailed, RequestId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// The etcd key of the VIP with this VRID.
pub fn gate_key(vrid: u8) -> String {
    format!("/haplane/gate/vip-{vrid}")
}

/// What the VRRP driver must do about the VIP, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipAction {
    /// Add the VIP (or keep it) and let the kernel answer for it until `until` (None: not
    /// fenced, fencing is not armed yet).
    Hold(Option<Instant>),
    /// Stop answering for the VIP now and remove it.
    Release,
    /// Lower this router's priority (or not) so VRRP makes the holder master instead of
    /// this node ([`gate::Defer`]).
    Defer(gate::Defer),
    /// The etcd-quorum check went up (true) or down.
    Quorum(bool),
}

/// This node's gate as /status shows it (the typed contract, crate status-api).
pub use status_api::Fence as FenceStatus;

type Answer = (RequestId, Result<Outcome, RequestFailed>);

/// Why [`GateDriver::wait`] returned.
#[derive(Debug)]
pub enum Wake {
    /// The gate's timer.
    Timer,
    /// An etcd answer.
    Answer(RequestId, Result<Outcome, RequestFailed>),
    /// The key as the watch on it showed it.
    Watch(KeyState),
}

/// Owns the gate; the VRRP loop drives it.
pub struct GateDriver {
    gate: Gate,
    requests: mpsc::UnboundedSender<(RequestId, Op)>,
    answers: mpsc::UnboundedReceiver<Answer>,
    watched: mpsc::UnboundedReceiver<KeyState>,
    marker: PathBuf,
    status: Arc<Mutex<FenceStatus>>,
}

impl GateDriver {
    /// A driver for `cfg` (whose `armed` is taken from `marker`). The etcd client arrives on
    /// `client` once etcd has been reached; requests made before that fail.
    pub fn new(
        mut cfg: GateConfig,
        client: watch::Receiver<Option<Client>>,
        key: String,
        marker: PathBuf,
        kernel_stop: &'static str,
    ) -> Result<GateDriver, gate::ConfigError> {
        cfg.armed = marker.exists();
        let now = Instant::now();
        let status = Arc::new(Mutex::new(FenceStatus {
            mode: "quorum".to_string(),
            armed: cfg.armed,
            key: key.clone(),
            etcd_quorum: true,
            renew_interval_ms: cfg.renew_interval.as_millis() as u64,
            hold_ms: cfg.hold.as_millis() as u64,
            takeover_wait_ms: cfg.takeover_wait().as_millis() as u64,
            kernel_stop: kernel_stop.to_string(),
            ..FenceStatus::default()
        }));
        let timeout = cfg.request_timeout;
        let identity = cfg.identity.clone();
        let gate = Gate::new(cfg, now)?;
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (ans_tx, ans_rx) = mpsc::unbounded_channel();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        crate::spawn(watch_task(client.clone(), key.clone(), watch_tx));
        crate::spawn(io_task(client, key, identity, timeout, req_rx, ans_tx));
        let driver = GateDriver {
            gate,
            requests: req_tx,
            answers: ans_rx,
            watched: watch_rx,
            marker,
            status,
        };
        driver.publish(now);
        Ok(driver)
    }

    /// The status shared with /status and /metrics.
    pub fn status(&self) -> Arc<Mutex<FenceStatus>> {
        self.status.clone()
    }

    /// Fencing armed.
    pub fn is_armed(&self) -> bool {
        self.gate.is_armed()
    }

    /// Nothing of ours is left to hand back (after `want(false)`).
    pub fn is_released(&self) -> bool {
        self.gate.is_released()
    }

    /// VRRP master (true) or not.
    pub fn want(&mut self, now: Instant, want: bool) {
        self.gate.handle_want(now, want);
    }

    /// Let the gate look at the clock (call before acting on anything else, so that after a
    /// freeze it defers before the router sends an advert).
    pub fn tick(&mut self, now: Instant) {
        self.gate.handle_timeout(now);
    }

    /// Wait for the gate's timer or an etcd answer. Cancel-safe.
    ///
    /// An answer already here comes before the timer: a renewal answered just before the
    /// hold deadline but read after it extends the hold, where the timer first would have
    /// released the VIP and added it straight back (a self-inflicted drop, issue 14).
    pub async fn wait(&mut self) -> Wake {
        let deadline = self.gate.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            answer = self.answers.recv() => match answer {
                Some((id, result)) => Wake::Answer(id, result),
                // The I/O task is gone (shutdown): only the timer is left.
                None => std::future::pending().await,
            },
            Some(state) = self.watched.recv() => Wake::Watch(state),
            _ = sleep => Wake::Timer,
        }
    }

    /// Feed what [`GateDriver::wait`] returned.
    pub fn handle(&mut self, now: Instant, wake: Wake) {
        match wake {
            Wake::Timer => self.gate.handle_timeout(now),
            Wake::Answer(id, result) => self.gate.handle_response(now, id, result),
            Wake::Watch(state) => self.gate.handle_watch(now, state),
        }
    }

    /// The next VIP action. Requests and arming are carried out here as they come up, so an
    /// action returned before a request is done (the VIP released) before it is sent.
    pub fn next_action(&mut self) -> Option<VipAction> {
        loop {
            match self.gate.poll_action()? {
                Action::Send { id, op } => {
                    debug!(id, ?op, "gate request");
                    if self.requests.send((id, op)).is_err() {
                        // Only at shutdown; the gate counts it as a timeout.
                        debug!("gate request after the I/O task ended");
                    }
                }
                Action::Arm => {
                    if let Some(dir) = self.marker.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(e) =
                        std::fs::write(&self.marker, b"etcd reached; VIP fencing armed\n")
                    {
                        warn!(marker = %self.marker.display(), "cannot persist the fencing marker: {e}");
                    }
                    info!("etcd reached: VIP fencing armed");
                }
                Action::Hold { until } => return Some(VipAction::Hold(until)),
                Action::Release => return Some(VipAction::Release),
                Action::Defer(d) => return Some(VipAction::Defer(d)),
                Action::Quorum(q) => return Some(VipAction::Quorum(q)),
            }
        }
    }

    /// Update the /status copy.
    pub fn publish(&self, now: Instant) {
        let s = self.gate.status(now);
        let left =
            |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_millis() as u64);
        let mut f = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f.armed = s.armed;
        f.want = s.want;
        f.leader = s.holding && s.armed;
        f.current_holder = s.key_holder;
        f.key_mod_revision = s.key_mod_revision;
        f.holder_since_ms_ago = s
            .holder_since
            .map(|t| now.saturating_duration_since(t).as_millis() as u64);
        f.hold_remaining_ms = left(s.hold_until);
        f.takeover_in_ms = left(s.takeover_at);
        f.reason = s.reason.as_str().to_string();
        f.deferring = s.deferring;
        f.etcd_quorum = s.quorum;
        f.renewals = s.renewals;
        f.failures = s.failures;
    }
}

/// Sends the gate's requests, each in a task of its own, and reports their answers.
async fn io_task(
    client: watch::Receiver<Option<Client>>,
    key: String,
    identity: String,
    timeout: Duration,
    mut requests: mpsc::UnboundedReceiver<(RequestId, Op)>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    while let Some((id, op)) = requests.recv().await {
        let Some(c) = client.borrow().clone() else {
            // Not connected yet: fail at once; the gate retries on its schedule.
            let _ = answers.send((id, Err(RequestFailed)));
            continue;
        };
        // Two attempts fit in one request: a member that does not answer within half the
        // request timeout is marked down and the next one gets the request too.
        let c = c.with_attempt_timeout(c.attempt_timeout().min(timeout / 2));
        let (key, identity, answers) = (key.clone(), identity.clone(), answers.clone());
        crate::spawn(async move {
            let result = perform(&c, &key, &identity, op, timeout).await;
            let _ = answers.send((id, result));
        });
    }
}

/// Watches the key once etcd has been reached and hands every change to the gate. The watch
/// moves between members by itself ([`elect::Watch`]); after a compaction, or an error etcd
/// gives for good, it starts again from now (the gate's reads cover what it missed).
async fn watch_task(
    mut client: watch::Receiver<Option<Client>>,
    key: String,
    events: mpsc::UnboundedSender<KeyState>,
) {
    let Some(c) = crate::etcd::connected(&mut client).await else {
        return;
    };
    loop {
        let mut watch = c.watch(key.as_str(), WatchOptions::new(), 0);
        loop {
            let batch = match watch.next().await {
                Ok(batch) => batch,
                Err(e) => {
                    debug!(key = %key, "the gate's watch ended ({e}); watching again from now");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            };
            for event in &batch.events {
                let Some(kv) = event.kv() else { continue };
                let value = match event.event_type() {
                    EventType::Put => Some(Held {
                        holder: String::from_utf8_lossy(kv.value()).into_owned(),
                        mod_revision: kv.mod_revision(),
                    }),
                    EventType::Delete => None,
                };
                let state = KeyState {
                    revision: kv.mod_revision(),
                    value,
                };
                if events.send(state).is_err() {
                    // The driver is gone (shutdown).
                    return;
                }
            }
        }
    }
}

fn key_state(revision: i64, get: &GetResponse) -> KeyState {
    KeyState {
        revision,
        value: get.kvs().first().map(|kv| Held {
            holder: String::from_utf8_lossy(kv.value()).into_owned(),
            mod_revision: kv.mod_revision(),
        }),
    }
}

/// One gate request against etcd.
async fn perform(
    client: &Client,
    key: &str,
    identity: &str,
    op: Op,
    timeout: Duration,
) -> Result<Outcome, RequestFailed> {
    let failed = |what: &str, e: elect::ElectError| {
        debug!(key, "gate {what} failed: {e}");
        RequestFailed
    };
    let (compare, then) = match op {
        Op::Read => {
            let a = client
                .get(key, None, timeout)
                .await
                .map_err(|e| failed("read", e))?;
            let revision = a.header().map(|h| h.revision()).unwrap_or(0);
            return Ok(Outcome::Read(key_state(revision, &a.value)));
        }
        Op::Create => (
            Compare::create_revision(key, CompareOp::Equal, 0),
            TxnOp::put(key, identity, None),
        ),
        Op::Swap { expect } => (
            Compare::mod_revision(key, CompareOp::Equal, expect),
            TxnOp::put(key, identity, None),
        ),
        Op::Delete { expect } => (
            Compare::mod_revision(key, CompareOp::Equal, expect),
            TxnOp::delete(key, None),
        ),
    };
    let txn = Txn::new()
        .when([compare])
        .and_then([then])
        .or_else([TxnOp::get(key, None)]);
    let a = client
        .txn(txn, timeout)
        .await
        .map_err(|e| failed("transaction", e))?;
    let revision = a.header().map(|h| h.revision()).unwrap_or(0);
    if a.succeeded() {
        return Ok(Outcome::Done { revision });
    }
    // The else branch read the key.
    match a.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(get)) => Ok(Outcome::Refused(key_state(revision, &get))),
        _ => {
            warn!(key, "a refused gate transaction came back without its read");
            Err(RequestFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_already_waiting_comes_before_a_lapsed_timer() {
        // No etcd client: every request is answered at once (failed). Let the answer queue
        // up, let the gate's timer lapse too, and see the answer handed out first, every
        // time (a random pick would fail this about once in two rounds).
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        let mut driver = GateDriver::new(
            GateConfig::new("m1"),
            rx,
            gate_key(51),
            dir.path().join("marker"),
            "test",
        )
        .unwrap();
        let sleep_past = |due: Option<Instant>| {
            let due = due.expect("the gate always wakes");
            std::thread::sleep(
                due.saturating_duration_since(Instant::now()) + Duration::from_millis(5),
            );
        };
        for round in 0..12 {
            // The gate's request goes to the I/O task, which answers it.
            while driver.next_action().is_some() {}
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            sleep_past(driver.gate.poll_timeout());
            // Let the runtime's timer see that time passed, so the gate's timer is due too.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let wake = driver.wait().await;
            assert!(
                matches!(wake, Wake::Answer(..)),
                "round {round}: the lapsed timer came before the waiting answer"
            );
            driver.handle(Instant::now(), wake);
            // After the failure the gate waits R, then sends its next request.
            sleep_past(driver.gate.poll_timeout());
            driver.handle(Instant::now(), Wake::Timer);
        }
    }
}
