//! The drill's clients: sequenced etcd v3 writes through the VIP and through the node-local
//! balancer, and the read-back that proves no acknowledged write was lost. Everything here runs
//! on a thread inside a worker's namespace, on a current-thread runtime, so every socket (also
//! the ones tonic opens later) is created in that namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};

/// One write attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Path index (0 = VIP, 1 = node-local).
    pub path: usize,
    /// Sequence number written.
    pub seq: u64,
    /// Start, ms since the drill's origin.
    pub start_ms: u64,
    /// End, ms since the drill's origin.
    pub end_ms: u64,
    /// Acknowledged by etcd.
    pub ok: bool,
    /// Why it failed (static text, so attempts stay `Copy`).
    pub error: Option<&'static str>,
}

/// A shared log of attempts.
pub type Log = Arc<Mutex<Vec<Attempt>>>;

/// Pause between writes of one client (about 50 writes per second per path).
const PACE: Duration = Duration::from_millis(20);
/// Per-request limit: a request stuck on a dead or minority path counts as failed after it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The key of write `seq` on path `path` in run `run`.
pub fn key(run: &str, path: &str, seq: u64) -> String {
    format!("/haplane-drill/{run}/{path}/{seq:010}")
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(REQUEST_TIMEOUT)
}

fn ms(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

/// Writes sequenced keys to `url` until `stop`; every attempt is logged.
pub async fn writer(
    url: String,
    run: String,
    path_name: String,
    path: usize,
    origin: Instant,
    stop: Arc<AtomicBool>,
    log: Log,
) {
    let mut client: Option<Client> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let begun = Instant::now();
        let start_ms = ms(origin);
        if client.is_none() {
            // Connect lazily: the TCP connect happens with the first request.
            client = Client::connect([url.as_str()], Some(options())).await.ok();
        }
        let error = match client.as_mut() {
            Some(c) => {
                let put = c.put(key(&run, &path_name, seq), seq.to_string(), None);
                match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => {
                        tracing::debug!(path = %path_name, seq, error = %e, "lab: write failed");
                        Some(classify(&e))
                    }
                    Err(_) => Some("timeout"),
                }
            }
            None => Some("connect"),
        };
        let ok = error.is_none();
        if !ok {
            // A fresh connection for the next attempt: a broken one is never reused.
            client = None;
        }
        let a = Attempt {
            path,
            seq,
            start_ms,
            end_ms: ms(origin),
            ok,
            error,
        };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(a);
        if let Some(rest) = PACE.checked_sub(begun.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// A short reason for a failed write.
fn classify(e: &etcd_client::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("leader") {
        "no leader"
    } else if text.contains("timed out") || text.contains("deadline") {
        "etcd timeout"
    } else if text.contains("transport") || text.contains("connect") || text.contains("broken pipe")
    {
        "transport"
    } else if text.contains("Unavailable") || text.contains("unavailable") {
        "unavailable"
    } else {
        "other"
    }
}

/// Reads back `acked` sequence numbers of `path_name`; returns the ones missing.
pub async fn missing(
    endpoints: &[String],
    run: &str,
    path_name: &str,
    acked: &[u64],
) -> Result<Vec<u64>, String> {
    let mut c = Client::connect(endpoints, Some(options()))
        .await
        .map_err(|e| e.to_string())?;
    let prefix = format!("/haplane-drill/{run}/{path_name}/");
    let mut last = None;
    // A few tries: right after healing a member may still be catching up.
    for _ in 0..10 {
        match c
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
        {
            Ok(resp) => {
                let have: std::collections::HashSet<u64> = resp
                    .kvs()
                    .iter()
                    .filter_map(|kv| kv.key_str().ok()?.rsplit('/').next()?.parse().ok())
                    .collect();
                return Ok(acked
                    .iter()
                    .copied()
                    .filter(|s| !have.contains(s))
                    .collect());
            }
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(last.unwrap_or_default())
}

/// Deletes the run's keys (so repeated drills do not grow the lab's etcd).
pub async fn cleanup(endpoints: &[String], run: &str) -> Result<(), String> {
    let mut c = Client::connect(endpoints, Some(options()))
        .await
        .map_err(|e| e.to_string())?;
    c.delete(
        format!("/haplane-drill/{run}/"),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// A current-thread runtime for the namespace thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
