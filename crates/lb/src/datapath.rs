//! Moving bytes between two sockets: a per-thread buffer for small messages, splice(2) through
//! a pooled pipe for bulk. Idle sessions hold no buffer and no pipe.
//!
//! All syscalls go through nix's safe wrappers, so this crate needs no `unsafe`.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::backend::{lock, now_ms};

/// Copy buffer, one per worker thread, borrowed only inside a non-async section.
const SCRATCH: usize = 64 * 1024;
/// A read at least this large suggests bulk data: switch the direction to splice.
const BULK: usize = 16 * 1024;
/// Pipe capacity asked for with F_SETPIPE_SZ (the kernel default, 16 slots). Measured with
/// 1 MiB objects through loopback (bench/lb, wrk -c8): CPU per MiB 377 us with 64 KiB, 404 us
/// with 128 KiB, 410-420 us with 256 KiB, 440-520 us with 32 KiB; bigger fills cost more
/// kernel work per byte than they save in syscalls.
const PIPE_SIZE: i32 = 64 * 1024;
/// Idle pipes kept for reuse; more are closed.
const POOL_MAX: usize = 256;

thread_local! {
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

static PIPES: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = lock(&PIPES).pop() {
            return Ok(p);
        }
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A larger pipe means fewer splice calls per MiB; failure just keeps the default.
        let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { r, w })
    }

    /// Only an empty pipe may go back to the pool; one holding bytes is closed.
    fn give_back(self) {
        let mut pool = lock(&PIPES);
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
    }
}

/// Bytes still to write when the destination pushed back during a copy.
enum Step {
    Eof,
    Idle,
    Moved(usize),
    Blocked(Vec<u8>),
}

/// Carries `src` → `dst` until EOF on `src`, then half-closes `dst` (shutdown(Write)) so the
/// other direction keeps flowing: a half-close is carried through. `ended` is shared by the
/// two directions of a session: the second one to reach EOF skips the shutdown, since both
/// sockets are closed right after and close(2) sends the same FIN (their receive queues are
/// empty: both were read to EOF), one syscall less per connection. `activity` holds the time of
/// the session's latest burst either way ([`now_ms`]); when `src` reaches EOF first,
/// `on_first_eof` learns how long the session had been silent, before the half-close is passed
/// on. Errors are not reported: a killed process resets only the sockets it left data unread
/// on (sessions waiting for it, not silent ones), and a failed write to `dst` says nothing
/// about `src`.
pub(crate) async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    bytes: &AtomicU64,
    activity: &AtomicU64,
    use_splice: bool,
    ended: &AtomicBool,
    on_first_eof: &(dyn Fn(Duration) + Sync),
) -> io::Result<()> {
    let mut bulk = false;
    loop {
        src.readable().await?;
        let eof = if use_splice && bulk {
            let (eof, moved) = splice_burst(src, dst, bytes).await?;
            bulk = moved >= BULK;
            eof
        } else {
            copy_burst(src, dst, bytes, &mut bulk).await?
        };
        let now = now_ms();
        let before = activity.swap(now, Relaxed);
        if eof {
            if !ended.swap(true, Relaxed) {
                on_first_eof(Duration::from_millis(now.saturating_sub(before)));
                socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write)?;
            }
            return Ok(());
        }
    }
}

/// Reads and writes until `src` has nothing more. Returns true on EOF.
async fn copy_burst(
    src: &TcpStream,
    dst: &TcpStream,
    bytes: &AtomicU64,
    bulk: &mut bool,
) -> io::Result<bool> {
    loop {
        match copy_once(src, dst)? {
            Step::Eof => return Ok(true),
            Step::Idle => return Ok(false),
            Step::Moved(n) => {
                bytes.fetch_add(n as u64, Relaxed);
                if n >= BULK {
                    *bulk = true;
                    return Ok(false);
                }
            }
            Step::Blocked(rest) => {
                // Only now does the session own memory: the bytes the peer has not taken yet.
                let mut off = 0;
                while off < rest.len() {
                    dst.writable().await?;
                    match dst.try_write(&rest[off..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => off += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                bytes.fetch_add(rest.len() as u64, Relaxed);
            }
        }
    }
}

fn copy_once(src: &TcpStream, dst: &TcpStream) -> io::Result<Step> {
    let mut step = None;
    // The read runs inside `try_io` so a short read can clear tokio's readiness: with epoll,
    // a read that did not fill the buffer drained the socket (tokio's own poll_read relies on
    // this), which saves the extra read that would only return EAGAIN.
    let r = src.try_io(Interest::READABLE, || {
        let s = BUF.with_borrow_mut(|buf| copy_through(src, dst, buf))?;
        let short = match &s {
            Step::Moved(n) => *n < SCRATCH,
            Step::Blocked(_) => true,
            Step::Eof | Step::Idle => false,
        };
        step = Some(s);
        if short {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => Ok(step.unwrap_or(Step::Idle)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(step.unwrap_or(Step::Idle)),
        Err(e) => Err(e),
    }
}

fn copy_through(src: &TcpStream, dst: &TcpStream, buf: &mut [u8]) -> io::Result<Step> {
    let n = match src.try_read(buf) {
        Ok(0) => return Ok(Step::Eof),
        Ok(n) => n,
        Err(e) => return Err(e),
    };
    let mut off = 0;
    while off < n {
        match dst.try_write(&buf[off..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => off += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Step::Blocked(buf[off..n].to_vec()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Step::Moved(n))
}

/// splice(2) socket → pipe → socket until `src` is empty. Returns (eof, bytes moved).
///
/// The pipe is always drained before the next fill, so EAGAIN from the fill can only mean
/// "socket empty" and EAGAIN from the drain only "socket full": tokio's readiness stays right.
async fn splice_burst(
    src: &TcpStream,
    dst: &TcpStream,
    bytes: &AtomicU64,
) -> io::Result<(bool, usize)> {
    let pipe = Pipe::take()?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut moved = 0usize;
    loop {
        let filled = src.try_io(Interest::READABLE, || {
            splice(src, None, &pipe.w, None, PIPE_SIZE as usize, flags).map_err(io::Error::from)
        });
        let mut in_pipe = match filled {
            Ok(0) => {
                pipe.give_back();
                return Ok((true, moved));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pipe.give_back();
                return Ok((false, moved));
            }
            // The pipe is empty here, so it can still be reused.
            Err(e) => {
                pipe.give_back();
                return Err(e);
            }
        };
        while in_pipe > 0 {
            let drained = dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.r, None, dst, None, in_pipe, flags).map_err(io::Error::from)
            });
            match drained {
                Ok(n) => {
                    in_pipe -= n;
                    moved += n;
                    bytes.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                // Dropping the pipe discards what it still holds.
                Err(e) => return Err(e),
            }
        }
    }
}
