//! Processes started inside a host, each in its own process group so that the whole tree can be
//! frozen, thawed or killed at once.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::exec;

/// How often waiting loops poll the child (no blocking wait while holding the lock, so another
/// thread can still kill or freeze the process).
const POLL: Duration = Duration::from_millis(5);

/// State shared by a [`ProcessHandle`] and its topology's registry.
#[derive(Debug)]
pub(crate) struct ProcInner {
    pid: i32,
    command: String,
    child: Mutex<Child>,
}

/// The processes a topology must kill when it is dropped.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    procs: Mutex<Vec<Arc<ProcInner>>>,
}

/// Locks a mutex even if a panicking thread poisoned it: cleanup must run during unwinding.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Spawns `cmd` in a new process group and remembers it.
    pub(crate) fn spawn(&self, mut cmd: Command) -> Result<ProcessHandle> {
        let command = exec::describe(&cmd);
        // A process group of its own: freeze/thaw/kill act on the daemon and its children, and a
        // terminal's Ctrl-C aimed at the test runner does not reach it first.
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|error| Error::Spawn {
            command: command.clone(),
            error,
        })?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        tracing::debug!(pid, %command, "netlab: spawned");
        let inner = Arc::new(ProcInner {
            pid,
            command,
            child: Mutex::new(child),
        });
        let mut procs = lock(&self.procs);
        // Forget processes that exited and were reaped, so a long-lived lab does not grow.
        procs.retain(|p| !p.reaped());
        procs.push(inner.clone());
        Ok(ProcessHandle { inner })
    }

    /// SIGKILLs every registered process group and reaps the leaders.
    pub(crate) fn kill_all(&self) {
        let procs = std::mem::take(&mut *lock(&self.procs));
        for p in &procs {
            p.kill_group_if_unreaped();
        }
        for p in &procs {
            if let Err(e) = p.wait_bounded(Duration::from_secs(5)) {
                tracing::warn!(pid = p.pid, command = %p.command, error = %e, "netlab: process did not die");
            }
        }
    }
}

impl ProcInner {
    /// Whether the leader has been reaped (its pid may then belong to someone else).
    fn reaped(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(Some(_)))
    }

    fn kill_group_if_unreaped(&self) {
        // Checked under the lock so we never signal a pid that was reaped and reused.
        let mut child = lock(&self.child);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = signal::killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }

    fn wait_bounded(&self, limit: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            let st = lock(&self.child).try_wait().map_err(|error| Error::Wait {
                pid: self.pid,
                error,
            })?;
            if st.is_some() || Instant::now() >= deadline {
                return Ok(st);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A process started with [`Host::spawn`](crate::Host::spawn). Cloning gives another handle to
/// the same process. The topology kills it when dropped, whether or not handles remain.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    inner: Arc<ProcInner>,
}

impl ProcessHandle {
    /// The process id; also its process group id.
    pub fn pid(&self) -> u32 {
        self.inner.pid as u32
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> &str {
        &self.inner.command
    }

    fn signal_group(&self, sig: Signal) -> Result<()> {
        signal::killpg(Pid::from_raw(self.inner.pid), sig).map_err(|error| Error::Signal {
            pid: self.inner.pid,
            signal: sig.as_str(),
            error,
        })
    }

    /// Sends `sig` to the process itself (not its group), e.g. SIGHUP to make a daemon reload.
    /// Fails once the process has exited and been reaped.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let mut child = lock(&self.inner.child);
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Err(Error::Signal {
                pid: self.inner.pid,
                signal: sig.as_str(),
                error: nix::Error::ESRCH,
            });
        }
        signal::kill(Pid::from_raw(self.inner.pid), sig).map_err(|error| Error::Signal {
            pid: self.inner.pid,
            signal: sig.as_str(),
            error,
        })
    }

    /// SIGKILLs the whole process group and reaps the process. Killing a process that already
    /// exited is not an error.
    pub fn kill(&self) -> Result<ExitStatus> {
        self.inner.kill_group_if_unreaped();
        self.wait()
    }

    /// Graceful stop: SIGTERM to the process, wait up to `timeout` for it to exit, then SIGKILL
    /// its whole group (the process if still alive, and any children it left behind).
    /// Returns the process's exit status.
    pub fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        if !self.inner.reaped() {
            // It may exit between the check and the signal; that is fine.
            let _ = self.signal(Signal::SIGTERM);
            // A frozen process cannot act on SIGTERM.
            let _ = self.signal_group(Signal::SIGCONT);
        }
        let status = self.inner.wait_bounded(timeout)?;
        match status {
            None => {
                tracing::warn!(pid = self.inner.pid, command = %self.inner.command, "netlab: no exit after SIGTERM, sending SIGKILL");
                self.kill()
            }
            Some(st) => {
                // Children it left in its group: the group id cannot be reused while they live.
                let _ = signal::killpg(Pid::from_raw(self.inner.pid), Signal::SIGKILL);
                Ok(st)
            }
        }
    }

    /// SIGSTOPs the whole process group: the process stays alive but does nothing (a hung
    /// daemon), until [`thaw`](Self::thaw).
    pub fn freeze(&self) -> Result<()> {
        self.signal_group(Signal::SIGSTOP)
    }

    /// SIGCONTs the whole process group after [`freeze`](Self::freeze).
    pub fn thaw(&self) -> Result<()> {
        self.signal_group(Signal::SIGCONT)
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait(&self) -> Result<ExitStatus> {
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits at most `timeout`; `None` when the process is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.inner.wait_bounded(timeout)
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        lock(&self.inner.child)
            .try_wait()
            .map_err(|error| Error::Wait {
                pid: self.inner.pid,
                error,
            })
    }

    /// Whether the process is still running (a frozen process is running).
    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Takes the pipe to the process's stdout, if it was spawned with `Stdio::piped()`.
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        lock(&self.inner.child).stdout.take()
    }

    /// Takes the pipe to the process's stderr, if it was spawned with `Stdio::piped()`.
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        lock(&self.inner.child).stderr.take()
    }
}
