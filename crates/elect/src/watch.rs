//! A watch that moves to another member when its member fails.
//!
//! A watch stream lives on one member. When that member dies the stream ends; when it is
//! frozen or cut off the stream just goes quiet, and a quiet stream looks like "nothing
//! changed". So [`Watch`] checks its stream: when it has been quiet for `2 × attempt timeout`
//! it asks for a progress notification (etcd ≥ 3.4 answers at once, from the member itself),
//! and a stream that does not answer within another `2 × attempt timeout` is declared stuck,
//! its member marked down, and the watch reopened on the next member from the revision after
//! the last event it delivered: a frozen member's watch moves within about 1 s by default.
//! It also moves as soon as other requests mark its member down.
//!
//! Events are never lost or repeated across a move: the new stream starts at the revision
//! after the last delivered event. If that revision was compacted meanwhile, [`Watch::next`]
//! returns [`ElectError::Compacted`] and the caller must read the current state and start a
//! new watch.

use std::time::{Duration, Instant};

use etcd_client::{Event, WatchOptions, WatchStream};
use tokio::sync::watch;
use tracing::debug;

use crate::ElectError;
use crate::client::{Attempt, Client};
use crate::error::error_chain;

/// Events (or a progress notification, with none) from one watch response.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The events, in revision order. Empty for a progress notification.
    pub events: Vec<Event>,
    /// The header revision of the response.
    pub revision: i64,
    /// When the response arrived (monotonic): a challenger counts from here.
    pub received: Instant,
    /// Index of the member the stream is on.
    pub member: usize,
}

struct Open {
    member: usize,
    stream: WatchStream,
    /// When the progress request in flight was sent.
    progress_sent: Option<Instant>,
    next_progress: Instant,
}

/// A watch over a key or range that survives member failures (see the module docs).
pub struct Watch {
    client: Client,
    key: Vec<u8>,
    opts: WatchOptions,
    /// The revision the next stream starts at; 0 = from now.
    next_revision: i64,
    open: Option<Open>,
    down: watch::Receiver<u64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("next_revision", &self.next_revision)
            .field("member", &self.open.as_ref().map(|o| o.member))
            .finish()
    }
}

impl Watch {
    pub(crate) fn new(
        client: Client,
        key: Vec<u8>,
        opts: WatchOptions,
        start_revision: i64,
        down: watch::Receiver<u64>,
    ) -> Watch {
        Watch {
            client,
            key,
            opts,
            next_revision: start_revision,
            open: None,
            down,
        }
    }

    /// The revision a reopened stream would start at (the one after the last delivered
    /// event, or the start revision).
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// The member the stream is on, once open.
    pub fn member(&self) -> Option<usize> {
        self.open.as_ref().map(|o| o.member)
    }

    /// The next batch of events or progress notification. Never returns an error for a
    /// member failure (the watch moves); only for [`ElectError::Compacted`] or a definitive
    /// error from etcd. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<WatchBatch, ElectError> {
        let patience = self.client.attempt_timeout() * 2;
        loop {
            if self.open.is_none() {
                self.open = Some(self.open_stream().await?);
            }
            let open = self.open.as_mut().expect("opened above");
            let check_at = match open.progress_sent {
                Some(t) => t + patience,
                None => open.next_progress,
            };
            tokio::select! {
                m = open.stream.message() => match m {
                    Ok(Some(resp)) => {
                        let received = Instant::now();
                        open.progress_sent = None;
                        open.next_progress = received + patience;
                        if resp.canceled() {
                            if resp.compact_revision() > 0 {
                                self.open = None;
                                return Err(ElectError::Compacted {
                                    revision: resp.compact_revision(),
                                });
                            }
                            debug!(reason = resp.cancel_reason(), "watch canceled by the server; reopening");
                            let m = open.member;
                            self.open = None;
                            self.client.report_failure(m, format!("watch canceled: {}", resp.cancel_reason()));
                            continue;
                        }
                        if resp.created() && resp.events().is_empty() {
                            continue;
                        }
                        if let Some(last) = resp.events().last().and_then(|e| e.kv()) {
                            self.next_revision = self.next_revision.max(last.mod_revision() + 1);
                        }
                        return Ok(WatchBatch {
                            events: resp.events().to_vec(),
                            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
                            received,
                            member: open.member,
                        });
                    }
                    Ok(None) => {
                        let m = open.member;
                        self.open = None;
                        self.client.report_failure(m, "watch stream closed".into());
                    }
                    Err(e) => {
                        let m = open.member;
                        self.open = None;
                        self.client.report_failure(m, format!("watch stream: {}", error_chain(&e)));
                    }
                },
                _ = tokio::time::sleep_until(check_at.into()) => {
                    if open.progress_sent.is_some() {
                        let m = open.member;
                        self.open = None;
                        self.client.report_failure(m, format!("watch stream silent for {patience:?} after a progress request"));
                    } else if open.stream.request_progress().await.is_ok() {
                        open.progress_sent = Some(Instant::now());
                    } else {
                        let m = open.member;
                        self.open = None;
                        self.client.report_failure(m, "watch stream closed".into());
                    }
                }
                changed = self.down.changed() => {
                    if changed.is_ok() && !self.client.is_up(open.member) {
                        debug!(member = open.member, "watch member marked down; moving");
                        self.open = None;
                    }
                }
            }
        }
    }

    /// Opens a stream on the first member (health order) that creates the watch within four
    /// attempt timeouts (creating a stream is slower than a read on a loaded machine), trying
    /// every member in turn and pausing between rounds.
    async fn open_stream(&mut self) -> Result<Open, ElectError> {
        let patience = self.client.attempt_timeout() * 2;
        let bound = patience * 2;
        let mut pause = Duration::from_millis(25);
        loop {
            for m in self.client.order() {
                let opts = self.opts.clone().with_start_revision(self.next_revision);
                let mut wc = self.client.member(m).watch_client();
                let key = self.key.clone();
                let fut = async move {
                    let mut stream = wc.watch(key, Some(opts)).await?;
                    // The first response confirms the watch was created (or says why not).
                    let first = stream.message().await?;
                    Ok::<_, etcd_client::Error>((stream, first))
                };
                match self.client.attempt_on(m, bound, fut).await {
                    Attempt::Ok((stream, first)) => {
                        if let Some(r) = &first
                            && r.canceled()
                        {
                            if r.compact_revision() > 0 {
                                return Err(ElectError::Compacted {
                                    revision: r.compact_revision(),
                                });
                            }
                            self.client
                                .report_failure(m, format!("watch refused: {}", r.cancel_reason()));
                            continue;
                        }
                        if first.is_none() {
                            self.client.report_failure(m, "watch stream closed".into());
                            continue;
                        }
                        // Mark the member's state as seen now, so a later `down` change that
                        // predates this stream does not move it.
                        self.down.borrow_and_update();
                        debug!(member = m, from = self.next_revision, "watch open");
                        return Ok(Open {
                            member: m,
                            stream,
                            progress_sent: None,
                            next_progress: Instant::now() + patience,
                        });
                    }
                    Attempt::Answered(e) => return Err(ElectError::etcd("watch", e)),
                    Attempt::Failed { .. } => {}
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}
