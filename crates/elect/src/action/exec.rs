//! The `exec` action: run a command while leader, stop it on loss, restart it with backoff.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::Write;
use std::os::fd::AsFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::guard;
use crate::Role;

/// A run this long counts as healthy and resets the restart backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const SETPRIV: &str = "/usr/bin/setpriv";

/// The fallback lease guard, when no kernel-timer guard is installed (guard.rs): run by bash
/// between us and the command. It reads "seconds left on the
/// lease" lines from its stdin (we write one per renewal); when none arrives in time (we are
/// frozen by SIGSTOP, hung, or dead: EOF) it sends SIGTERM, then SIGKILL after the fence
/// grace, to the command. So the command cannot outlive our deadline even when this process
/// cannot run. It exits with the command's status so we still see exits and restart.
const GUARD: &str = r#"t=$HAPLANE_LEASE_LEFT; g=$HAPLANE_FENCE_GRACE
unset HAPLANE_LEASE_LEFT HAPLANE_FENCE_GRACE
exec 3<&0
"$@" </dev/null 3<&- &
c=$!
( while IFS= read -r -u 3 -t "$t" t; do :; done
  kill -TERM "$c" 2>/dev/null; sleep "$g"; kill -KILL "$c" 2>/dev/null ) </dev/null &
w=$!
exec 3<&-
wait "$c"; s=$?
kill "$w" 2>/dev/null
exit "$s""#;
const BASH: &str = "/bin/bash";

/// The guard, the command and the watchdog share one process group; dropping this kills
/// the whole group, so nothing the command forked outlives a leadership we no longer hold.
struct Running {
    child: Child,
    heartbeat: Option<std::fs::File>,
    pgid: Pid,
    started: Instant,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

fn start(command: &[String], left: Duration, fence_grace: Duration) -> std::io::Result<Running> {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    let guarded = if let Some(prefix) = guard::installed() {
        // The kernel-timer guard (guard.rs): fences even when the whole node is frozen.
        argv.extend(prefix.iter().cloned());
        true
    } else {
        // setpriv --pdeathsig: if this process dies, the kernel kills the guard at once and
        // the guard's EOF on stdin stops the command.
        if Path::new(SETPRIV).exists() {
            argv.extend([SETPRIV, "--pdeathsig", "KILL", "--"].map(Into::into));
        }
        let bash = Path::new(BASH).exists();
        if bash {
            argv.extend([BASH, "-c", GUARD, "haplane-lease-guard"].map(Into::into));
        }
        bash
    };
    argv.extend(command.iter().map(Into::into));
    // Our own pipe: tokio's piped stdin would hand the guard a non-blocking fd, on which
    // bash's `read -t` fails at once. Only our end is made non-blocking. Close-on-exec, so
    // no other child inherits the writing end and the guard sees EOF when we are gone.
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let fd = writer.as_fd();
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env(guard::ENV_LEASE_LEFT, format!("{:.3}", left.as_secs_f64()))
        .env(
            guard::ENV_FENCE_GRACE,
            format!("{:.3}", fence_grace.as_secs_f64()),
        )
        .process_group(0)
        .stdin(if guarded {
            Stdio::from(reader)
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0) as i32;
    Ok(Running {
        heartbeat: guarded.then(|| std::fs::File::from(writer)),
        child,
        pgid: Pid::from_raw(pid),
        started: Instant::now(),
    })
}

/// Tells the guard how long the lease is still ours.
fn heartbeat(r: &mut Running, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if let Some(w) = r.heartbeat.as_mut() {
        let line = format!("{:.3}\n", left.as_secs_f64());
        match w.write(line.as_bytes()) {
            Ok(_) => {}
            // A full pipe means the guard is not reading (frozen); it will fence by itself.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => r.heartbeat = None,
        }
    }
}

/// SIGTERM to the group, SIGKILL after `grace`, then reap.
async fn stop(election: &str, mut r: Running, grace: Duration) {
    let _ = killpg(r.pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, r.child.wait()).await {
        Ok(st) => info!(%election, status = ?st.ok(), "command stopped"),
        Err(_) => {
            warn!(%election, ?grace, "command ignored SIGTERM; sending SIGKILL");
            let _ = killpg(r.pgid, Signal::SIGKILL);
            let _ = r.child.wait().await;
        }
    }
    // Stragglers in the group (children of the command) go too.
    let _ = killpg(r.pgid, Signal::SIGKILL);
}

pub(crate) async fn run(
    election: String,
    command: Vec<String>,
    grace: Duration,
    margin: Duration,
    mut role: watch::Receiver<Role>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    // On a lease loss the command must be gone before the server can expire the lease,
    // which is at least `margin` after our deadline: cap the grace at half of it.
    let fence_grace = grace.min(margin / 2);
    let mut backoff = crate::Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut not_before = Instant::now();
    let mut running: Option<Running> = None;
    loop {
        let until = role.borrow_and_update().leading_until();
        match (until, running.take()) {
            (Some(d), None) if Instant::now() >= not_before => match start(
                &command,
                d.saturating_duration_since(Instant::now()),
                fence_grace,
            ) {
                Ok(r) => {
                    info!(%election, ?command, pid = r.pgid.as_raw(), "command started");
                    running = Some(r);
                }
                Err(e) => {
                    warn!(%election, ?command, error = %e, "command failed to start");
                    not_before = Instant::now() + backoff.next_delay();
                }
            },
            (None, Some(r)) => {
                info!(%election, "leadership lost; stopping command");
                stop(&election, r, fence_grace).await;
            }
            (Some(d), Some(mut r)) => {
                heartbeat(&mut r, d);
                running = Some(r);
            }
            (_, r) => running = r,
        }
        tokio::select! {
            biased;
            _ = &mut stop_rx => break,
            r = role.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now).into()), if until.is_some() => {}
            st = async {
                match running.as_mut() {
                    Some(r) => r.child.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                let ran = running.as_ref().map(|r| r.started.elapsed()).unwrap_or_default();
                running = None;
                if ran >= HEALTHY_RUN {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                warn!(%election, status = ?st.ok(), restart_in = ?wait, "command exited");
                not_before = Instant::now() + wait;
            }
            _ = tokio::time::sleep_until(not_before.into()), if running.is_none() && until.is_some() => {}
        }
    }
    if let Some(r) = running.take() {
        stop(&election, r, grace).await;
    }
}
