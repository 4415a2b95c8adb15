//! Running `ip`, `nft` and friends, with errors that carry the command line and its stderr.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Renders a command line for error messages and logs.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, capturing its output; a non-zero exit is an error carrying stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    run_with_input(cmd, None)
}

/// Like [`run`], feeding `input` on standard input.
pub(crate) fn run_with_input(cmd: &mut Command, input: Option<&str>) -> Result<Output> {
    let command = describe(cmd);
    tracing::trace!(%command, "netlab: running");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|error| Error::Spawn {
        command: command.clone(),
        error,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error (EPIPE) shows up again as a failed exit status with stderr.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|error| Error::Spawn {
        command: command.clone(),
        error,
    })?;
    check(command, out)
}

/// Turns a finished command's output into `Ok` or a `CommandFailed` error.
pub(crate) fn check(command: String, out: Output) -> Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::CommandFailed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `ip <args>` in the caller's namespace (only used for `ip netns ...`).
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// `ip -n <ns> <args>`: `ip` switches into the namespace itself, which is cheaper than
/// `ip netns exec` (no mount namespace, no extra exec).
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<Output> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Runs an nft script (`nft -f -`) inside namespace `ns`.
pub(crate) fn nft_in(ns: &str, script: &str) -> Result<Output> {
    run_with_input(
        Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .env("LC_ALL", "C"),
        Some(script),
    )
}

/// Checks that we run as root and that `ip` and `nft` are installed. The result is computed
/// once per process.
///
/// Integration tests that need namespaces call [`skip_reason`] first (to skip when not root)
/// and then build a topology, which calls this and fails loudly when a tool is missing.
pub fn check_environment() -> Result<()> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let cached = RESULT.get_or_init(|| check_uncached().map_err(|e| e.to_string()));
    match cached {
        Ok(()) => Ok(()),
        Err(_) => check_uncached(),
    }
}

fn check_uncached() -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    for (tool, flag) in [("ip", "-V"), ("nft", "--version")] {
        let out = Command::new(tool)
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Error::MissingTool { tool, error })?;
        if !out.status.success() {
            return Err(Error::MissingTool {
                tool,
                error: std::io::Error::other(format!("`{tool} {flag}` exited with {}", out.status)),
            });
        }
    }
    Ok(())
}

/// Why namespace tests cannot run here, or `None` when they can.
///
/// Only "not root" is a reason to skip: when running as root, a missing `ip` or `nft` is a
/// broken environment and building a topology fails with [`Error::MissingTool`].
pub fn skip_reason() -> Option<String> {
    let euid = nix::unistd::geteuid().as_raw();
    (euid != 0).then(|| format!("netlab needs root to create network namespaces (euid {euid})"))
}

/// Returns early from the calling test, printing why, when it cannot create namespaces (not
/// root). Use at the top of integration tests: `netlab::require_root!();`, or
/// `netlab::require_root!(Ok(()))` in a test returning `Result`.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require_root!(())
    };
    ($ret:expr) => {
        if let Some(reason) = $crate::skip_reason() {
            eprintln!("skipping {}: {}", module_path!(), reason);
            return $ret;
        }
    };
}
