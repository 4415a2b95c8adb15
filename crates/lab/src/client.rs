//! The drill's clients: sequenced etcd v3 writes through the VIP and through the node-local
//! balancer, and the read-back that proves no acknowledged write was lost. Everything here runs
//! on a thread inside a worker's namespace, on a current-thread runtime, so every socket is
//! created in that namespace.
//!
//! The writers measure haplane, not their own timers: each write has a short deadline
//! ([`ClientOptions::request_timeout`], 200 ms by default) and, while it has no connection,
//! sends a fresh SYN every [`ClientOptions::connect_retry`] (50 ms) instead of waiting for the
//! kernel's 1 s SYN retransmission. A gap between two acknowledged writes is therefore at most
//! about one deadline plus one connect retry longer than the outage itself.
//!
//! They speak etcd's v3 JSON gateway (`POST /v3/kv/put`, served on the client port next to
//! gRPC) over one HTTP/1.1 keep-alive connection, so every timeout and every SYN is the
//! drill's own, with no hidden reconnect or back-off of a client library in between.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// How the writers time out (`haplane lab drill --request-timeout --connect-retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientOptions {
    /// A write not acknowledged this long after it started fails, and its connection is
    /// dropped (a fresh one is made for the next write, as a real client's retry would).
    #[serde(rename = "request_timeout_ms", serialize_with = "as_ms")]
    pub request_timeout: Duration,
    /// A TCP connect not answered this long is abandoned and retried with a new socket (a new
    /// SYN), until the write's deadline.
    #[serde(rename = "connect_retry_ms", serialize_with = "as_ms")]
    pub connect_retry: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_retry: DEFAULT_CONNECT_RETRY,
        }
    }
}

/// Default per-write deadline: well under the failover targets (1 s, 150 ms handovers are
/// measured between acks, so the deadline only bounds how late a stuck write notices).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
/// Default connect retry: one SYN per 50 ms while the path is down.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_millis(50);

impl ClientOptions {
    /// Checks the options: both positive, the retry no longer than the deadline.
    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout.is_zero() || self.connect_retry.is_zero() {
            return Err("--request-timeout and --connect-retry must be above 0".into());
        }
        if self.connect_retry > self.request_timeout {
            return Err(format!(
                "--connect-retry ({} ms) must not exceed --request-timeout ({} ms)",
                self.connect_retry.as_millis(),
                self.request_timeout.as_millis()
            ));
        }
        Ok(())
    }
}

/// Pause between the starts of two writes of one client (about 50 writes per second per path).
const PACE: Duration = Duration::from_millis(20);
/// Timeouts of the read-back and cleanup (after healing; not measured).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// The key of write `seq` on path `path` in run `run`.
pub fn key(run: &str, path: &str, seq: u64) -> String {
    format!("{}{path}/{seq:010}", prefix(run))
}

/// The prefix of every key that run `run` writes.
pub fn prefix(run: &str) -> String {
    format!("/haplane-drill/{run}/")
}

fn verify_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(VERIFY_TIMEOUT)
        .with_timeout(VERIFY_TIMEOUT)
}

fn ms(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

/// Writes sequenced keys to `target` (an etcd client port, direct or balanced) until `stop`;
/// every attempt is logged.
#[allow(clippy::too_many_arguments)]
pub async fn writer(
    target: SocketAddr,
    run: String,
    path_name: String,
    path: usize,
    origin: Instant,
    opts: ClientOptions,
    stop: Arc<AtomicBool>,
    log: Log,
) {
    let mut conn: Option<TcpStream> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let begun = Instant::now();
        let deadline = tokio::time::Instant::from_std(begun + opts.request_timeout);
        let start_ms = ms(origin);
        let body = put_body(&key(&run, &path_name, seq), &seq.to_string());
        let result = attempt(&mut conn, target, &body, deadline, opts.connect_retry).await;
        if let Err(e) = result {
            tracing::debug!(path = %path_name, seq, error = e, "lab: write failed");
            // A fresh connection for the next attempt: a broken one is never reused.
            conn = None;
        }
        let a = Attempt {
            path,
            seq,
            start_ms,
            end_ms: ms(origin),
            ok: result.is_ok(),
            error: result.err(),
        };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(a);
        if let Some(rest) = PACE.checked_sub(begun.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// One write: connect if needed (a new SYN every `retry`), send the put, read the answer, all
/// before `deadline`.
async fn attempt(
    conn: &mut Option<TcpStream>,
    target: SocketAddr,
    body: &str,
    deadline: tokio::time::Instant,
    retry: Duration,
) -> Result<(), &'static str> {
    if conn.is_none() {
        *conn = Some(connect(target, deadline, retry).await?);
    }
    let stream = conn.as_mut().ok_or("connect")?;
    match tokio::time::timeout_at(deadline, put(stream, target, body)).await {
        Ok(r) => r,
        Err(_) => Err("timeout"),
    }
}

/// Connects to `target`, abandoning each attempt after `retry` and trying again with a new
/// socket, until `deadline`.
async fn connect(
    target: SocketAddr,
    deadline: tokio::time::Instant,
    retry: Duration,
) -> Result<TcpStream, &'static str> {
    let mut last = "connect";
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(last);
        }
        let slot_end = (now + retry).min(deadline);
        match tokio::time::timeout_at(slot_end, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => {
                // Refused or unreachable: an answer, but not a connection; wait out the slot so
                // a refusing path is not hammered.
                last = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    "refused"
                } else {
                    "connect"
                };
                tokio::time::sleep_until(slot_end).await;
            }
            Err(_) => last = "connect",
        }
    }
}

/// The JSON body of a put of `key` = `value` (the gateway takes base64 bytes).
fn put_body(key: &str, value: &str) -> String {
    format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        base64(key.as_bytes()),
        base64(value.as_bytes())
    )
}

/// Sends one `POST /v3/kv/put` on the keep-alive connection and reads its response.
async fn put(stream: &mut TcpStream, target: SocketAddr, body: &str) -> Result<(), &'static str> {
    let req = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|_| "transport")?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(r) = parse_response(&buf)? {
            return if r.status == 200 {
                Ok(())
            } else {
                Err(classify(r.status, &r.body))
            };
        }
        let n = stream.read(&mut chunk).await.map_err(|_| "transport")?;
        if n == 0 {
            return Err("closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return Err("bad response");
        }
    }
}

/// A complete HTTP/1.1 response.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// Parses one HTTP/1.1 response from the start of `buf`: `Ok(None)` while it is incomplete.
/// Knows `Content-Length` and `Transfer-Encoding: chunked` (what etcd's gateway sends).
pub fn parse_response(buf: &[u8]) -> Result<Option<HttpResponse>, &'static str> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "bad response")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("bad response")?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad response")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &buf[head_end + 4..];
    if chunked {
        return dechunk(rest).map(|b| b.map(|body| HttpResponse { status, body }));
    }
    // Without a length the body would end at close; the gateway always sends one.
    let length = length.ok_or("bad response")?;
    Ok((rest.len() >= length).then(|| HttpResponse {
        status,
        body: rest[..length].to_vec(),
    }))
}

fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad response")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad response")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // The last chunk; no trailers are expected, just the final CRLF.
            return Ok(find(rest, b"\r\n").map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A short reason for a write etcd (or the gateway) refused.
fn classify(status: u16, body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body);
    if text.contains("no leader") {
        "no leader"
    } else if text.contains("timed out") || text.contains("deadline") {
        "etcd timeout"
    } else if text.contains("nspace") || status == 503 {
        "unavailable"
    } else {
        "http error"
    }
}

/// Standard base64 with padding (RFC 4648 §4), for the gateway's byte fields.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads back `acked` sequence numbers of `path_name`; returns the ones missing.
pub async fn missing(
    endpoints: &[String],
    run: &str,
    path_name: &str,
    acked: &[u64],
) -> Result<Vec<u64>, String> {
    let mut c = Client::connect(endpoints, Some(verify_options()))
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
    let mut c = Client::connect(endpoints, Some(verify_options()))
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

/// The clients of a run, as the drill and chaos both use them: one [`writer`] per path
/// (`paths[i]` names `targets[i]`) on a runtime inside `host`'s namespace, until `stop` is
/// set. Returns when they have all stopped; a client that cannot start is an error.
#[allow(clippy::too_many_arguments)]
pub fn run_writers(
    host: &netlab::Host,
    targets: &[SocketAddr],
    paths: &[&str],
    run: &str,
    origin: Instant,
    opts: ClientOptions,
    stop: &AtomicBool,
    log: &Log,
) -> Result<(), String> {
    let entered = host.enter(|| {
        let rt = runtime().map_err(|e| format!("no runtime for the clients: {e}"))?;
        let done = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for (i, target) in targets.iter().enumerate() {
                tasks.push(tokio::spawn(writer(
                    *target,
                    run.to_string(),
                    paths[i].to_string(),
                    i,
                    origin,
                    opts,
                    done.clone(),
                    log.clone(),
                )));
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(())
    });
    entered.map_err(|e| e.to_string())?
}

/// A current-thread runtime for the namespace thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_test_vectors() {
        // RFC 4648 §10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
    }

    #[test]
    fn a_response_is_complete_only_with_its_whole_body() {
        let full =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..full.len() {
            assert_eq!(parse_response(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_response(full),
            Ok(Some(HttpResponse {
                status: 200,
                body: b"{}".to_vec()
            }))
        );
    }

    #[test]
    fn chunked_responses_are_reassembled() {
        let r = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"err\r\n4\r\nor\"}\r\n0\r\n\r\n";
        let got = parse_response(r).unwrap().unwrap();
        assert_eq!(got.status, 503);
        assert_eq!(got.body, b"{\"error\"}");
        assert_eq!(parse_response(&r[..r.len() - 2]), Ok(None));
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(parse_response(b"nonsense\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn etcd_refusals_are_classified() {
        let body = br#"{"error":"etcdserver: no leader","code":14}"#;
        assert_eq!(classify(503, body), "no leader");
        assert_eq!(
            classify(504, b"etcdserver: request timed out"),
            "etcd timeout"
        );
        assert_eq!(classify(500, b"?"), "http error");
    }

    #[test]
    fn options_reject_a_retry_longer_than_the_deadline() {
        assert!(ClientOptions::default().validate().is_ok());
        let bad = ClientOptions {
            request_timeout: Duration::from_millis(100),
            connect_retry: Duration::from_millis(200),
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_writer_reconnects_when_its_path_returns_and_then_keeps_one_connection() {
        // Nothing listens at first (refused), then a listener appears: the writer connects
        // and every later write goes over that one keep-alive connection.
        let rt = runtime().unwrap();
        rt.block_on(async {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = probe.local_addr().unwrap();
            drop(probe);
            let stop = Arc::new(AtomicBool::new(false));
            let log: Log = Arc::default();
            let w = tokio::spawn(writer(
                addr,
                "t".into(),
                "vip".into(),
                0,
                Instant::now(),
                ClientOptions::default(),
                stop.clone(),
                log.clone(),
            ));
            while log.lock().unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = accepted.clone();
            let server = tokio::spawn(async move {
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        let mut seen = Vec::new();
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            seen.extend_from_slice(&buf[..n]);
                            while let Some(end) = find(&seen, b"}") {
                                seen.drain(..=end);
                                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                                let _ = s.write_all(ok).await;
                            }
                        }
                    });
                }
            });
            while log.lock().unwrap().iter().filter(|a| a.ok).count() < 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.store(true, Ordering::Relaxed);
            w.await.unwrap();
            server.abort();
            let log = log.lock().unwrap();
            assert!(
                log.iter().take(3).all(|a| a.error == Some("refused")),
                "refused while nothing listened: {log:?}"
            );
            let first_ok = log.iter().position(|a| a.ok).unwrap();
            assert!(log[first_ok..].iter().all(|a| a.ok), "{log:?}");
            assert_eq!(
                accepted.load(Ordering::Relaxed),
                1,
                "one keep-alive connection"
            );
        });
    }
}
