//! The reconnect-storm client of bench/lb/run.sh.
//!
//! storm_clients ADDR N
//!
//! Opens N keep-alive HTTP/1.1 connections to ADDR and makes one request on each, then prints
//! `READY <n>`. On the line `ARM` from stdin it notes the time, prints `ARMED`, and from then on
//! every connection that the proxy closes (its backend was killed) reconnects at once and makes
//! a request; a refused or failed attempt is retried after 10 ms (a client's shortest back-off).
//! When all N have been answered again (or after 60 s) it prints
//! `DONE <answered> <all_ms> <p50_ms> <p99_ms> <failed_attempts> <connect> <reset> <eof> <other>`:
//! `all_ms` is the time from ARM until the last of them was answered; the last four split the
//! failed attempts by what the client saw: its connect to the proxy failed, the connection was
//! reset, it ended (EOF) before an answer, or anything else (an answer other than 200).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: storm\r\n\r\n";

/// One response on `s`: true for a 200 with its body read.
async fn exchange(s: &mut TcpStream) -> std::io::Result<bool> {
    s.write_all(REQUEST).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut have = buf.len() - end - 4;
            while have < len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                have += n;
            }
            return Ok(head.starts_with("http/1.1 200"));
        }
    }
}

/// Failed attempts after ARM, by what the client saw.
#[derive(Default)]
struct Failures {
    connect: AtomicU64,
    reset: AtomicU64,
    eof: AtomicU64,
    other: AtomicU64,
}

impl Failures {
    fn count(&self, seen: &Failure) {
        let counter = match seen {
            Failure::Connect => &self.connect,
            Failure::Reset => &self.reset,
            Failure::Eof => &self.eof,
            Failure::Other => &self.other,
        };
        counter.fetch_add(1, Relaxed);
    }

    fn total(&self) -> u64 {
        [&self.connect, &self.reset, &self.eof, &self.other]
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    }
}

enum Failure {
    Connect,
    Reset,
    Eof,
    Other,
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => Failure::Reset,
            std::io::ErrorKind::UnexpectedEof => Failure::Eof,
            _ => Failure::Other,
        }
    }
}

async fn client(
    addr: SocketAddr,
    open: Arc<Semaphore>,
    mut armed: watch::Receiver<Option<Instant>>,
    failures: Arc<Failures>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Option<Duration> {
    let mut s = {
        let _p = open.acquire().await.ok()?;
        let mut s = TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        if !exchange(&mut s).await.ok()? {
            return None;
        }
        s
    };
    let _ = ready.send(()).await;
    // Wait for the proxy to close this connection, after ARM.
    let mut byte = [0u8; 1];
    let _ = s.read(&mut byte).await;
    drop(s);
    let t0 = (*armed.wait_for(|a| a.is_some()).await.ok()?)?;
    loop {
        let attempt = async {
            let mut s = TcpStream::connect(addr)
                .await
                .map_err(|_| Failure::Connect)?;
            let _ = s.set_nodelay(true);
            match exchange(&mut s).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Failure::Other),
                Err(e) => Err(Failure::from(e)),
            }
        };
        match attempt.await {
            Ok(()) => return Some(t0.elapsed()),
            Err(seen) => {
                failures.count(&seen);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: storm_clients ADDR N");
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: storm_clients ADDR N");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let open = Arc::new(Semaphore::new(256));
        let (arm_tx, arm_rx) = watch::channel(None);
        let failures = Arc::new(Failures::default());
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(n.max(1));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(client(
                    addr,
                    open.clone(),
                    arm_rx.clone(),
                    failures.clone(),
                    ready_tx.clone(),
                ))
            })
            .collect();
        drop(ready_tx);
        let mut ready = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        while ready < n {
            tokio::select! {
                r = ready_rx.recv() => match r { Some(()) => ready += 1, None => break },
                _ = &mut deadline => break,
            }
        }
        println!("READY {ready}");
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if line.trim() == "ARM" {
                break;
            }
        }
        let _ = arm_tx.send(Some(Instant::now()));
        println!("ARMED");
        let mut times = Vec::with_capacity(n);
        let all = async {
            for t in tasks {
                if let Ok(Some(d)) = t.await {
                    times.push(d);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(60), all).await;
        times.sort();
        let ms = |d: Option<&Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
        let pct = |p: f64| {
            times.get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
        };
        println!(
            "DONE {} {:.0} {:.0} {:.0} {} {} {} {} {}",
            times.len(),
            ms(times.last()),
            ms(pct(0.5)),
            ms(pct(0.99)),
            failures.total(),
            failures.connect.load(Relaxed),
            failures.reset.load(Relaxed),
            failures.eof.load(Relaxed),
            failures.other.load(Relaxed),
        );
    });
}
