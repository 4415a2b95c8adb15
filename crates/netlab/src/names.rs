//! Namespace naming, and removal of namespaces left behind by dead owners or named labs.
//!
//! Every namespace netlab creates is called `hpl-<owner>-<role>`:
//!
//! * throwaway topologies: `hpl-<pid>-<seq>-sw` and `hpl-<pid>-<seq>-h-<host>`, where `pid`
//!   is the creating process and `seq` a per-process counter, so parallel tests never collide and
//!   [`cleanup_stale`] can tell when the owner is gone;
//! * named labs: `hpl-lab-<name>-sw` and `hpl-lab-<name>-h-<host>`, removable with
//!   [`destroy_lab`] whatever process created them.
//!
//! Interfaces need no unique tag: netlab creates every veth directly inside its namespaces
//! (`ip -n <switch> link add ... peer ... netns <host>`), so no interface ever appears in the
//! caller's namespace and names only need to be unique within one namespace.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::exec;

/// Common prefix of every namespace netlab creates.
pub const PREFIX: &str = "hpl-";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Who owns a namespace, read back from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A throwaway topology made by this process id.
    Pid(u32),
    /// A named lab.
    Lab(String),
}

/// Splits `hpl-<owner>-<role>` into (owner, base, role) where base is `hpl-<owner>`.
pub(crate) fn parse(ns: &str) -> Option<(Owner, String, String)> {
    let rest = ns.strip_prefix(PREFIX)?;
    let (first, rest) = rest.split_once('-')?;
    if first == "lab" {
        let (name, role) = rest.split_once('-')?;
        validate_lab_name(name).ok()?;
        Some((
            Owner::Lab(name.to_owned()),
            format!("{PREFIX}lab-{name}"),
            role.to_owned(),
        ))
    } else {
        let pid: u32 = first.parse().ok()?;
        let (seq, role) = rest.split_once('-')?;
        seq.parse::<u32>().ok()?;
        Some((
            Owner::Pid(pid),
            format!("{PREFIX}{pid}-{seq}"),
            role.to_owned(),
        ))
    }
}

/// A fresh base name `hpl-<pid>-<seq>` for a throwaway topology.
///
/// The first call in a process also removes namespaces that carry this process's pid: they can
/// only come from an earlier, dead process that had the same pid.
pub(crate) fn ephemeral_base() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    static PURGE_REUSED_PID: Once = Once::new();
    let pid = std::process::id();
    PURGE_REUSED_PID.call_once(|| {
        if let Ok(all) = list_namespaces() {
            for ns in all {
                if matches!(parse(&ns), Some((Owner::Pid(p), _, _)) if p == pid) {
                    tracing::info!(
                        ns,
                        "netlab: removing namespace left by an earlier process with our pid"
                    );
                    if let Err(e) = destroy_namespace(&ns) {
                        tracing::warn!(ns, error = %e, "netlab: cannot remove stale namespace");
                    }
                }
            }
        }
    });
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{pid}-{seq}")
}

/// The base name `hpl-lab-<name>` of a named lab.
pub(crate) fn lab_base(name: &str) -> Result<String> {
    validate_lab_name(name)?;
    Ok(format!("{PREFIX}lab-{name}"))
}

/// The switch namespace of a topology.
pub(crate) fn switch_ns(base: &str) -> String {
    format!("{base}-sw")
}

/// The namespace of one host of a topology.
pub(crate) fn host_ns(base: &str, host: &str) -> String {
    format!("{base}-h-{host}")
}

/// Lab names: 1 to 24 of `[A-Za-z0-9_]` (no `-`, which separates the parts of a namespace name).
pub(crate) fn validate_lab_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        what: "lab",
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 24 {
        return Err(bad("must be 1 to 24 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad("only letters, digits and '_' are allowed"));
    }
    Ok(())
}

/// Host names: 1 to 32 of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub(crate) fn validate_host_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        what: "host",
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 32 {
        return Err(bad("must be 1 to 32 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad("only letters, digits, '_' and '-' are allowed"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    Ok(())
}

/// Every named network namespace on the machine (the entries of `/run/netns`).
pub fn list_namespaces() -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Spawn {
                command: format!("read_dir {NETNS_DIR}"),
                error: source,
            });
        }
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Whether `/run/netns` is already a mount point (`ip netns add` makes it one the first time).
fn netns_dir_is_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(4) == Some(NETNS_DIR))
        })
        .unwrap_or(false)
}

/// `ip netns add <ns>`.
///
/// The very first `ip netns add` on a machine turns `/run/netns` into a shared bind mount; two
/// running at that moment can stack two such mounts and hide each other's namespace files.
/// Until the mount exists, creations are serialised with a lock file (across processes too:
/// parallel test binaries on a fresh CI machine).
pub(crate) fn add_namespace(ns: &str) -> Result<()> {
    if netns_dir_is_mount() {
        return exec::ip(&["netns", "add", ns]).map(|_| ());
    }
    let lock_path = "/run/netlab.lock";
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|error| Error::Spawn {
            command: format!("open {lock_path}"),
            error,
        })?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, errno)| Error::Spawn {
            command: format!("flock {lock_path}"),
            error: errno.into(),
        },
    )?;
    exec::ip(&["netns", "add", ns]).map(|_| ())
}

/// Whether a named namespace exists.
pub(crate) fn namespace_exists(ns: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(ns).exists()
}

/// SIGKILLs every process living in `ns` (they are processes the lab started there, such as
/// daemons that double-forked out of their process group), then deletes the namespace, which
/// also deletes its interfaces and their veth peers.
pub(crate) fn destroy_namespace(ns: &str) -> Result<()> {
    kill_namespace_processes(ns);
    exec::ip(&["netns", "del", ns]).map(|_| ())
}

/// SIGKILLs every process whose network namespace is `ns`, never this process itself.
pub(crate) fn kill_namespace_processes(ns: &str) {
    let out = match exec::ip(&["netns", "pids", ns]) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(ns, error = %e, "netlab: cannot list namespace pids");
            return;
        }
    };
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid <= 1 || pid as u32 == me {
            continue;
        }
        tracing::debug!(ns, pid, "netlab: killing process left in namespace");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether process `pid` still exists.
fn pid_alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes netlab namespaces whose owner process no longer exists (throwaway topologies of a
/// test run that was killed before its destructors ran). Named labs are left alone; remove
/// them with [`destroy_lab`]. Returns the removed namespace names.
///
/// A pid that was reused by an unrelated process hides its stale namespaces until that process
/// exits too; the first topology a process builds also purges namespaces carrying its own pid.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for ns in list_namespaces()? {
        let Some((Owner::Pid(pid), _, _)) = parse(&ns) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        tracing::info!(ns, owner_pid = pid, "netlab: removing stale namespace");
        stale.push(ns);
    }
    destroy_all(stale)
}

/// Removes every namespace of the named lab (killing the processes inside). Returns the removed
/// namespace names; a lab that does not exist is [`Error::NoSuchLab`].
pub fn destroy_lab(name: &str) -> Result<Vec<String>> {
    let base = lab_base(name)?;
    let mine: Vec<String> = list_namespaces()?
        .into_iter()
        .filter(|ns| matches!(parse(ns), Some((_, b, _)) if b == base))
        .collect();
    if mine.is_empty() {
        return Err(Error::NoSuchLab(name.to_owned()));
    }
    destroy_all(mine)
}

/// Destroys every namespace in `names`, going on past failures; the removed names, or the
/// first error.
fn destroy_all(names: Vec<String>) -> Result<Vec<String>> {
    let mut first_error = None;
    let mut removed = Vec::new();
    for ns in names {
        match destroy_namespace(&ns) {
            Ok(()) => removed.push(ns),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Names of the named labs present on this machine.
pub fn list_labs() -> Result<Vec<String>> {
    let mut labs: Vec<String> = list_namespaces()?
        .iter()
        .filter_map(|ns| match parse(ns) {
            Some((Owner::Lab(name), _, _)) => Some(name),
            _ => None,
        })
        .collect();
    labs.dedup();
    Ok(labs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_names_carry_owner_pid_and_round_trip() {
        let base = "hpl-4242-7";
        let sw = switch_ns(base);
        let h = host_ns(base, "m-1");
        assert_eq!(
            parse(&sw),
            Some((Owner::Pid(4242), base.into(), "sw".into()))
        );
        assert_eq!(
            parse(&h),
            Some((Owner::Pid(4242), base.into(), "h-m-1".into()))
        );
    }

    #[test]
    fn lab_names_round_trip_and_are_not_pids() {
        let base = lab_base("demo_1").unwrap();
        assert_eq!(base, "hpl-lab-demo_1");
        assert_eq!(
            parse(&host_ns(&base, "w1")),
            Some((Owner::Lab("demo_1".into()), base.clone(), "h-w1".into()))
        );
    }

    #[test]
    fn foreign_namespaces_are_not_ours() {
        for ns in [
            "blue",
            "hpl-",
            "hpl-abc-1-sw",
            "hpl-12-x-sw",
            "hpl-lab-",
            "cni-1234",
        ] {
            assert_eq!(parse(ns), None, "{ns}");
        }
    }

    #[test]
    fn lab_and_host_names_are_validated() {
        assert!(lab_base("").is_err());
        assert!(lab_base("has-dash").is_err());
        assert!(lab_base("a/b").is_err());
        assert!(lab_base(&"x".repeat(25)).is_err());
        assert!(validate_host_name("m1").is_ok());
        assert!(validate_host_name("w-1_a").is_ok());
        assert!(validate_host_name("-m1").is_err());
        assert!(validate_host_name("m 1").is_err());
        assert!(validate_host_name("").is_err());
        assert!(validate_host_name(&"h".repeat(33)).is_err());
    }

    #[test]
    fn ephemeral_bases_are_unique_within_a_process() {
        let a = ephemeral_base();
        let b = ephemeral_base();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("hpl-{}-", std::process::id())));
    }
}
