//! The one error type of the crate.

use std::process::ExitStatus;

/// Everything that can go wrong while building, using or tearing down a topology.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Network namespaces need root (CAP_SYS_ADMIN + CAP_NET_ADMIN).
    #[error("netlab needs root (effective uid is {euid})")]
    NotRoot {
        /// The effective uid we run with.
        euid: u32,
    },
    /// A required external tool (`ip`, `nft`) is not installed or not runnable.
    #[error("required tool `{tool}` is not available: {error}")]
    MissingTool {
        /// The program name.
        tool: &'static str,
        /// Why starting it failed.
        error: std::io::Error,
    },
    /// A command could not be started at all.
    #[error("cannot start `{command}`: {error}")]
    Spawn {
        /// The command line, for humans.
        command: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for humans.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A name (lab, host) is empty, too long or has characters we do not allow.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "lab" or "host".
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An address or subnet could not be parsed or does not fit the topology.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The rejected text or value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Two hosts were given the same name.
    #[error("duplicate host name {0:?}")]
    DuplicateHost(String),
    /// No host of that name exists in the topology.
    #[error("no host named {0:?} in this topology")]
    UnknownHost(String),
    /// A lab of that name already exists (its namespaces are present).
    #[error("lab {0:?} already exists; destroy it first")]
    LabExists(String),
    /// No lab of that name exists.
    #[error("no lab named {0:?}")]
    NoSuchLab(String),
    /// A partition group is empty or a host appears on both sides.
    #[error("invalid partition: {0}")]
    InvalidPartition(&'static str),
    /// A packet-loss percentage outside 1..=100.
    #[error("invalid loss {0}%: give 1 to 100 percent")]
    InvalidLoss(u8),
    /// A command given to `Host::spawn` was not made by that host's `command()`.
    #[error("`{command}` would not run inside host {host}; build it with host.command()")]
    NotInHost {
        /// The command line, for humans.
        command: String,
        /// The host it was given to.
        host: String,
    },
    /// An empty argument list was given where a program is needed.
    #[error("empty command line")]
    EmptyCommand,
    /// Sending a signal to a process or process group failed.
    #[error("cannot send {signal} to pid {pid}: {error}")]
    Signal {
        /// The process (or process group) id.
        pid: i32,
        /// The signal name.
        signal: &'static str,
        /// The OS error.
        error: nix::Error,
    },
    /// Waiting for a process failed.
    #[error("cannot wait for pid {pid}: {error}")]
    Wait {
        /// The process id.
        pid: i32,
        /// The OS error.
        error: std::io::Error,
    },
    /// Entering a network namespace from a helper thread failed.
    #[error("cannot enter network namespace {ns}: {detail}")]
    EnterNamespace {
        /// The namespace name.
        ns: String,
        /// What failed.
        detail: String,
    },
    /// An I/O operation inside a namespace (socket, sysctl write, address dump) failed.
    #[error("{what} in namespace {ns}: {error}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The namespace name.
        ns: String,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
