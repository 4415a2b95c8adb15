//! The lease guard: a small process between haplane and an `exec` command whose kernel timer
//! kills the command at the lease deadline even when no process of the node can run.
//!
//! haplane writes "seconds left on the lease" lines to the guard's stdin, one per renewal. The
//! guard re-arms a POSIX timer (`timer_create`, CLOCK_BOOTTIME) that delivers SIGKILL to the
//! guard itself at `left + fence grace`; the command runs with a parent-death signal of
//! SIGKILL (set by the same binary, `__lease-guard-exec`, just before it execs the command, so
//! the image needs no setpriv). Both signals are SIGKILL, which the kernel delivers
//! to stopped processes too: when the whole node is frozen (every process SIGSTOPped, as `lab
//! chaos` `stop-node` does, or a cgroup freeze), the timer still fires, the guard dies, and
//! the command dies with it, all inside the kernel, before the lease can expire on the etcd
//! server. A thaw then finds no command to resume. The bash guard this replaces had to run
//! to fence, so a thawed command ran until it was scheduled (docs/lab.md, chaos seed 4).
//!
//! In user space, as before: no line in time (haplane hung or frozen) or EOF (haplane gone)
//! sends SIGTERM to the command at the deadline; the timer's SIGKILL follows after the grace.
//! SIGTERM to the guard itself (haplane's stop signals the whole process group) is blocked:
//! the command gets it and the guard exits with the command's status, so haplane's grace
//! applies to the command. Grandchildren of the command are not reached by the parent-death
//! signal; haplane kills the process group when it sees the guard exit.

use std::ffi::OsString;
use std::io::BufRead;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigEvent, SigSet, SigevNotify, Signal, kill};
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
use nix::time::ClockId;
use nix::unistd::Pid;

/// The argument (after the program) that makes haplane's binary act as the lease guard.
pub const SUBCOMMAND: &str = "__lease-guard";
/// Environment: seconds left on the lease when the guard starts.
pub const ENV_LEASE_LEFT: &str = "HAPLANE_LEASE_LEFT";
/// Environment: seconds between the SIGTERM at the deadline and the kernel's SIGKILL.
pub const ENV_FENCE_GRACE: &str = "HAPLANE_FENCE_GRACE";
/// The argument that makes the binary set a parent-death signal and exec the command.
pub const EXEC_SUBCOMMAND: &str = "__lease-guard-exec";
/// Environment of the exec half: the guard's pid, to tell whether it died before the
/// parent-death signal was set.
const ENV_GUARD_PID: &str = "HAPLANE_LEASE_GUARD_PID";

static PROGRAM: OnceLock<Vec<OsString>> = OnceLock::new();

/// Makes `exec` actions start their commands under this guard, run as `argv` followed by the
/// command (e.g. `["/proc/self/exe", "__lease-guard"]` for a binary whose `main` calls
/// [`run_if_asked`] first). Without it they use the bash guard, which fences only once it
/// can run. The first call wins.
pub fn install(argv: Vec<OsString>) {
    let _ = PROGRAM.set(argv);
}

/// The installed guard's argv prefix; None: the bash guard is used.
pub(crate) fn installed() -> Option<&'static [OsString]> {
    PROGRAM.get().map(|v| v.as_slice())
}

/// For a binary's `main`: runs the guard or its exec half when `argv[1]` asks for one
/// ([`SUBCOMMAND`], [`EXEC_SUBCOMMAND`]); `None` otherwise.
pub fn run_if_asked(argv: &[OsString]) -> Option<ExitCode> {
    let rest = argv.get(2..).unwrap_or_default();
    match argv.get(1)?.to_str()? {
        SUBCOMMAND => Some(main(rest)),
        EXEC_SUBCOMMAND => Some(exec_main(rest)),
        _ => None,
    }
}

/// The guard's child: dies with the guard (SIGKILL, even while stopped), then becomes the
/// command. Returns only when that fails.
fn exec_main(command: &[OsString]) -> ExitCode {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let fail = |what: String| {
        eprintln!("haplane lease guard: {what}");
        ExitCode::from(127)
    };
    if command.is_empty() {
        return fail("no command given".into());
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(format!("setting the parent-death signal: {e}"));
    }
    // A guard that died before the line above sent no signal: nothing would fence us.
    let guard = std::env::var(ENV_GUARD_PID)
        .ok()
        .and_then(|p| p.parse().ok());
    if guard != Some(nix::unistd::getppid().as_raw()) {
        return fail("the lease guard is gone".into());
    }
    let cstr = |o: &std::ffi::OsStr| CString::new(o.as_bytes());
    let Ok(args) = command
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()
    else {
        return fail("an argument holds a NUL byte".into());
    };
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ENV_GUARD_PID)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    match nix::unistd::execvpe(&args[0], &args, &env) {
        Err(e) => fail(format!("running {:?}: {e}", command[0])),
        Ok(never) => match never {},
    }
}

enum Event {
    Line(Option<Duration>),
    Eof,
    Exited(std::process::ExitStatus),
}

fn seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(1e6)))
}

fn env_seconds(name: &str) -> Result<Duration, String> {
    let raw = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
    seconds(&raw).ok_or_else(|| format!("{name}={raw:?} is not a number of seconds"))
}

/// Runs `command` under the guard and returns its exit status (128 + signal if a signal
/// ended it). `command` is what follows [`SUBCOMMAND`] on the command line.
fn main(command: &[OsString]) -> ExitCode {
    match run(command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("haplane lease guard: {e}");
            ExitCode::from(125)
        }
    }
}

fn run(command: &[OsString]) -> Result<u8, String> {
    if command.is_empty() {
        return Err("no command given".into());
    }
    let left = env_seconds(ENV_LEASE_LEFT)?;
    let grace = env_seconds(ENV_FENCE_GRACE)?;
    // The kernel's fence: SIGKILL to this process at deadline + grace unless re-armed.
    let mut timer = Timer::new(
        ClockId::CLOCK_BOOTTIME,
        SigEvent::new(SigevNotify::SigevSignal {
            signal: Signal::SIGKILL,
            si_value: 0,
        }),
    )
    .map_err(|e| format!("timer_create: {e}"))?;
    let mut arm = |after: Duration| {
        // A zero expiry disarms a POSIX timer; one nanosecond is "now".
        let after = after.max(Duration::from_nanos(1));
        timer
            .set(
                Expiration::OneShot(TimeSpec::from_duration(after)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(|e| format!("timer_settime: {e}"))
    };
    arm(left + grace)?;
    // Spawned from this (the main) thread, which lives until the guard exits: the parent-death
    // signal follows the thread that forked, not the process.
    // This process is the binary that handles EXEC_SUBCOMMAND.
    let mut child = Command::new("/proc/self/exe")
        .arg(EXEC_SUBCOMMAND)
        .args(command)
        .env_remove(ENV_LEASE_LEFT)
        .env_remove(ENV_FENCE_GRACE)
        .env(ENV_GUARD_PID, std::process::id().to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", command[0]))?;
    let pid = Pid::from_raw(child.id() as i32);
    // Blocked after the spawn (a child inherits the mask through exec) and before any other
    // thread starts (they inherit it too). A SIGTERM before this line ends the guard, and the
    // command with it (parent-death signal): only the grace is lost.
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_block()
        .map_err(|e| format!("blocking SIGTERM: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let lines = tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = lines.send(Event::Eof);
                    return;
                }
                Ok(_) => {
                    if lines.send(Event::Line(seconds(&line))).is_err() {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = tx.send(Event::Exited(st));
        }
    });
    let mut term_at = Instant::now() + left;
    let mut fenced = false;
    loop {
        let wait = term_at.saturating_duration_since(Instant::now());
        let event = if fenced {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(wait) {
                Ok(e) => Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(125),
            }
        };
        match event {
            Some(Event::Exited(st)) => {
                use std::os::unix::process::ExitStatusExt;
                let code = st
                    .code()
                    .or_else(|| st.signal().map(|s| 128 + s))
                    .unwrap_or(125);
                return Ok(code.clamp(0, 255) as u8);
            }
            // Once fenced, stay fenced: a late line does not bring the command back.
            Some(Event::Line(Some(left))) if !fenced => {
                arm(left + grace)?;
                term_at = Instant::now() + left;
            }
            Some(Event::Line(_)) => {}
            Some(Event::Eof) if !fenced => {
                let _ = kill(pid, Signal::SIGTERM);
                fenced = true;
                arm(grace)?;
            }
            Some(Event::Eof) => {}
            None if !fenced => {
                // No renewal in time: the deadline passed. The timer's SIGKILL follows.
                let _ = kill(pid, Signal::SIGTERM);
                fenced = true;
            }
            None => return Ok(125),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_what_haplane_writes_and_refuse_the_rest() {
        assert_eq!(seconds("1.250\n"), Some(Duration::from_millis(1250)));
        assert_eq!(seconds("0.000"), Some(Duration::ZERO));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
        assert_eq!(seconds("soon"), None);
    }
}
