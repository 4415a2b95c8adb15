//! The `maintenance` scenario's own clients (issue 10: "long-lived streams and a request loop
//! through the VIP, 0 failed requests, 0 reset streams"), beside the drill's writers:
//!
//! - **streams**: etcd watches over the JSON gateway (`POST /v3/watch`), opened through the VIP
//!   before the node enters maintenance and kept open across the move. The writers put keys
//!   under the watched prefix every 20 ms, so a live stream keeps receiving; one that ends, or
//!   errs, or falls silent, is a reset stream.
//! - **a request loop**: `GET /version` every 20 ms, each on a new connection, so every request
//!   also tests where new connections land while the VIP moves.
//!
//! Blocking sockets on threads of their own that joined the worker's network namespace, so
//! nothing here waits on the drill's runtime or samplers.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::base64;

/// How many watch streams the scenario keeps open.
pub const STREAMS: usize = 3;
/// Pace of the request loop.
const REQUEST_PACE: Duration = Duration::from_millis(20);
/// One request of the loop (connect + answer) fails after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// A stream with no byte for this long, while the writers put a key every 20 ms, has stalled.
const STREAM_SILENCE: Duration = Duration::from_secs(2);

/// What the streams and the request loop saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    /// Watch streams opened before the fault.
    pub streams: usize,
    /// Streams that ended, erred or stalled before the scenario closed them, each with when
    /// (ms since the drill's origin) and why.
    pub streams_reset: Vec<String>,
    /// Streams that received data after the VIP had moved (must equal `streams`).
    pub streams_alive_after_move: usize,
    /// Requests of the loop, each on a new connection.
    pub requests: u64,
    /// Failed requests, each with when and why.
    pub requests_failed: Vec<String>,
}

impl StreamReport {
    /// No reset stream, no failed request, every stream still carried data after the move.
    pub fn clean(&self) -> bool {
        self.streams_reset.is_empty()
            && self.requests_failed.is_empty()
            && self.streams_alive_after_move == self.streams
    }
}

struct StreamEnd {
    reset: Option<String>,
    last_data: Option<Instant>,
}

/// The running probe; [`StreamProbe::finish`] stops it and reports.
pub struct StreamProbe {
    stop: Arc<AtomicBool>,
    origin: Instant,
    streams: Vec<JoinHandle<StreamEnd>>,
    opened: usize,
    open_errors: Vec<String>,
    requests: Option<JoinHandle<(u64, Vec<String>)>>,
}

/// Joins the network namespace `ns` (a name under /run/netns) on the calling thread.
fn join_netns(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {ns}: {e}"))
}

fn ms(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

impl StreamProbe {
    /// Opens [`STREAMS`] watches on `prefix` through `target` and starts the request loop,
    /// all from inside namespace `ns`. `origin` is the drill's time origin (for the report).
    pub fn start(ns: &str, target: SocketAddr, prefix: &str, origin: Instant) -> StreamProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let mut probe = StreamProbe {
            stop: stop.clone(),
            origin,
            streams: Vec::new(),
            opened: 0,
            open_errors: Vec::new(),
            requests: None,
        };
        for i in 0..STREAMS {
            let (ns, prefix, stop) = (ns.to_string(), prefix.to_string(), stop.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let handle = std::thread::spawn(move || {
                let stream = join_netns(&ns).and_then(|()| open_watch(target, &prefix));
                let stream = match stream {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.clone()));
                        return StreamEnd {
                            reset: None,
                            last_data: None,
                        };
                    }
                };
                follow(stream, &stop)
            });
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {
                    probe.opened += 1;
                    probe.streams.push(handle);
                }
                Ok(Err(e)) => probe.open_errors.push(format!("stream {i}: {e}")),
                Err(_) => probe
                    .open_errors
                    .push(format!("stream {i}: not open within 5 s")),
            }
        }
        let (ns, stop2) = (ns.to_string(), stop);
        probe.requests = Some(std::thread::spawn(move || {
            if let Err(e) = join_netns(&ns) {
                return (0, vec![format!("{} ms: {e}", ms(origin))]);
            }
            let mut count = 0;
            let mut failed = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let t = Instant::now();
                count += 1;
                if let Err(e) = get_version(target) {
                    failed.push(format!("{} ms: {e}", ms(origin)));
                }
                std::thread::sleep(REQUEST_PACE.saturating_sub(t.elapsed()));
            }
            (count, failed)
        }));
        probe
    }

    /// Stops everything and reports; `moved_at` is when another node took the VIP (streams
    /// must have carried data after it).
    pub fn finish(mut self, moved_at: Option<Instant>) -> StreamReport {
        let ended_at = Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        let mut report = StreamReport {
            streams: self.opened,
            streams_reset: std::mem::take(&mut self.open_errors),
            ..StreamReport::default()
        };
        for (i, h) in self.streams.drain(..).enumerate() {
            let end = h.join().unwrap_or(StreamEnd {
                reset: Some("the stream's thread panicked".into()),
                last_data: None,
            });
            if let Some(r) = end.reset {
                report.streams_reset.push(format!("stream {i}: {r}"));
            }
            match (end.last_data, moved_at) {
                (Some(last), Some(moved)) if last > moved => report.streams_alive_after_move += 1,
                (Some(last), None) if ended_at.duration_since(last) < STREAM_SILENCE => {
                    report.streams_alive_after_move += 1
                }
                _ => {}
            }
        }
        if let Some(h) = self.requests.take() {
            let (n, failed) = h
                .join()
                .unwrap_or((0, vec!["the request loop panicked".into()]));
            report.requests = n;
            report.requests_failed = failed;
        }
        let _ = self.origin;
        report
    }
}

/// Opens a watch of every key under `prefix` and reads the response header.
fn open_watch(target: SocketAddr, prefix: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .map_err(|e| format!("connect {target}: {e}"))?;
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = format!(
        r#"{{"create_request":{{"key":"{}","range_end":"{}"}}}}"#,
        base64(prefix.as_bytes()),
        base64(&end)
    );
    let req = format!(
        "POST /v3/watch HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send the watch: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read the watch's answer: {e}"))?;
        if n == 0 {
            return Err("the watch was closed before its answer".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&head);
        return Err(format!(
            "the watch was refused: {}",
            line.lines().next().unwrap_or("")
        ));
    }
    Ok(s)
}

/// Reads the stream until `stop`: why it ended early, if it did, and when data last came.
fn follow(mut s: TcpStream, stop: &AtomicBool) -> StreamEnd {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16384];
    let mut last_data = Instant::now();
    let mut end = StreamEnd {
        reset: None,
        last_data: Some(last_data),
    };
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => {
                end.reset = Some("closed by the far end".into());
                break;
            }
            Ok(_) => {
                last_data = Instant::now();
                end.last_data = Some(last_data);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if last_data.elapsed() > STREAM_SILENCE {
                    end.reset = Some(format!(
                        "no data for {} ms while keys were written",
                        last_data.elapsed().as_millis()
                    ));
                    break;
                }
            }
            Err(e) => {
                end.reset = Some(e.to_string());
                break;
            }
        }
    }
    end
}

/// `GET /version` on a new connection; the error, if it failed.
fn get_version(target: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut s = TcpStream::connect_timeout(&target, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /version HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("receive: {e}"))?;
    if raw.starts_with(b"HTTP/1.0 200") || raw.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else if raw.is_empty() {
        Err("closed without an answer".into())
    } else {
        Err(format!(
            "answered {}",
            String::from_utf8_lossy(&raw).lines().next().unwrap_or("")
        ))
    }
}
