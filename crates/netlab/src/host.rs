//! One host: a network namespace with `lo` and `eth0`, joined to the switch by a veth pair.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use nix::sched::CloneFlags;

use crate::cidr::Cidr;
use crate::error::{Error, Result};
use crate::exec;
use crate::icmp;
use crate::process::{ProcessHandle, Registry};

/// Name of the host's interface to the switch, in every host.
pub const HOST_IFNAME: &str = "eth0";

/// A host of a [`Topology`](crate::Topology). Obtained from `topology.host("m1")` or
/// `topology.hosts()`; it lives as long as the topology.
#[derive(Debug)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) ns: String,
    pub(crate) switch_ns: String,
    pub(crate) port: String,
    pub(crate) addresses: Vec<Cidr>,
    pub(crate) registry: Arc<Registry>,
}

impl Host {
    /// The name the builder gave ("m1").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace name, for `ip netns exec <ns>` or `ip -n <ns>`.
    pub fn ns_name(&self) -> &str {
        &self.ns
    }

    /// The host's interface to the switch: always `eth0`.
    pub fn ifname(&self) -> &str {
        HOST_IFNAME
    }

    /// The switch-side end of this host's veth (the bridge port), as nft rules and
    /// `ip -n <switch> link` see it.
    pub fn port_name(&self) -> &str {
        &self.port
    }

    /// The primary address (the first configured one), e.g. 192.0.2.11.
    pub fn address(&self) -> Ipv4Addr {
        match self.addresses.first().map(|c| c.addr) {
            Some(IpAddr::V4(a)) => a,
            // The builder guarantees an IPv4 primary address.
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The primary address with its prefix, e.g. 192.0.2.11/24.
    pub fn cidr(&self) -> Cidr {
        self.addresses.first().copied().unwrap_or(Cidr {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
        })
    }

    /// Every address the builder configured on `eth0`, primary first.
    pub fn configured_addresses(&self) -> &[Cidr] {
        &self.addresses
    }

    /// A command that runs `program` inside this host (`ip netns exec <ns> <program>`). Add
    /// arguments, then run it, or hand it to [`spawn`](Self::spawn).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs `argv` inside this host to completion. A non-zero exit is
    /// [`Error::CommandFailed`] carrying the command line and stderr.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<Output> {
        let (program, args) = argv.split_first().ok_or(Error::EmptyCommand)?;
        exec::run(self.command(program).args(args))
    }

    /// Starts `cmd` (made by [`command`](Self::command)) in its own process group and registers
    /// it so the topology kills it when dropped.
    pub fn spawn(&self, cmd: Command) -> Result<ProcessHandle> {
        let args: Vec<_> = cmd.get_args().take(3).collect();
        let in_ns = cmd.get_program() == "ip"
            && args.len() == 3
            && args[0] == "netns"
            && args[1] == "exec"
            && args[2] == self.ns.as_str();
        if !in_ns {
            return Err(Error::NotInHost {
                command: exec::describe(&cmd),
                host: self.name.clone(),
            });
        }
        self.registry.spawn(cmd)
    }

    /// Shorthand for `spawn(command(argv[0]).args(&argv[1..]))`.
    pub fn spawn_argv<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<ProcessHandle> {
        let (program, args) = argv.split_first().ok_or(Error::EmptyCommand)?;
        let mut cmd = self.command(program);
        cmd.args(args);
        self.spawn(cmd)
    }

    /// Takes the host's link down, like pulling its cable: the switch-side end of the veth goes
    /// down, so the host's `eth0` loses carrier (LOWERLAYERDOWN, which daemons watching netlink
    /// see as link down) and the host can neither send nor receive anything through the switch.
    ///
    /// The host's own configuration is untouched: `eth0` stays administratively up and keeps
    /// its addresses and routes, so [`link_up`](Self::link_up) restores the exact previous
    /// state. (Setting the host-side `eth0` down instead would flush its routes and IPv6
    /// addresses; use `host.run(&["ip", "link", "set", "eth0", "down"])` for that scenario.)
    pub fn link_down(&self) -> Result<()> {
        tracing::debug!(host = %self.name, port = %self.port, "netlab: link down");
        exec::ip_in(&self.switch_ns, &["link", "set", &self.port, "down"]).map(|_| ())
    }

    /// Restores the link after [`link_down`](Self::link_down). The bridge runs without STP, so
    /// the port forwards again at once.
    pub fn link_up(&self) -> Result<()> {
        tracing::debug!(host = %self.name, port = %self.port, "netlab: link up");
        exec::ip_in(&self.switch_ns, &["link", "set", &self.port, "up"]).map(|_| ())
    }

    /// Runs `f` on a helper thread that has entered this host's network namespace, and returns
    /// its result. Sockets created inside `f` stay in the namespace for their whole life, so
    /// this is how a test opens a client or server socket "on" a host:
    ///
    /// ```no_run
    /// # fn demo(host: &netlab::Host) -> netlab::Result<()> {
    /// let sock = host.enter(|| std::net::UdpSocket::bind("0.0.0.0:5000"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// Only the network namespace is entered (no mount namespace), and the calling thread is
    /// unaffected. A panic in `f` is propagated.
    pub fn enter<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = format!("/run/netns/{}", self.ns);
        let file = File::open(&path).map_err(|e| Error::EnterNamespace {
            ns: self.ns.clone(),
            detail: format!("open {path}: {e}"),
        })?;
        let joined = std::thread::scope(|s| {
            s.spawn(move || -> Result<T> {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::EnterNamespace {
                        ns: self.ns.clone(),
                        detail: format!("setns: {e}"),
                    }
                })?;
                Ok(f())
            })
            .join()
        });
        match joined {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The addresses currently on `eth0` (IPv4 and IPv6, including link-local), read from the
    /// kernel with one netlink dump (`getifaddrs`) from a thread inside the namespace.
    ///
    /// Cost: one short-lived thread plus one RTM_GETADDR/RTM_GETLINK dump, tens of
    /// microseconds, with no process spawned, so sampling every 10 ms in a drill is fine.
    /// `ip -j addr` would cost a fork+exec (about a millisecond) per call.
    pub fn addresses(&self) -> Result<Vec<Cidr>> {
        let ns = self.ns.clone();
        self.enter(|| interface_addresses(HOST_IFNAME))?
            .map_err(|error| Error::Io {
                what: "reading addresses",
                ns,
                error,
            })
    }

    /// Whether `ip` is currently configured on `eth0` (e.g. "does this host hold the VIP?").
    /// Same cost as [`addresses`](Self::addresses).
    pub fn has_address(&self, ip: IpAddr) -> Result<bool> {
        Ok(self.addresses()?.iter().any(|c| c.addr == ip))
    }

    /// Pings `dst` from this host with ICMP echo (RFC 792), resending every 200 ms, until a
    /// reply comes from `dst` (`true`) or `timeout` passes (`false`). Needs no `ping` binary.
    pub fn ping(&self, dst: Ipv4Addr, timeout: Duration) -> Result<bool> {
        let sock = self.raw_icmp_socket()?;
        let seen = icmp::echo(&sock, dst, timeout, true).map_err(|error| Error::Io {
            what: "icmp socket",
            ns: self.ns.clone(),
            error,
        })?;
        Ok(seen.contains(&dst))
    }

    /// Sends ICMP echo requests to a broadcast or multicast `dst` (e.g. 224.0.0.1 or
    /// 192.0.2.255) for `window` and returns who answered. Multicast requests leave through
    /// `eth0`. Hosts only answer such pings when their `net.ipv4.icmp_echo_ignore_broadcasts`
    /// is 0 (see [`sysctl`](Self::sysctl)); the default is 1.
    pub fn ping_responders(&self, dst: Ipv4Addr, window: Duration) -> Result<BTreeSet<Ipv4Addr>> {
        let sock = self.raw_icmp_socket()?;
        if dst.is_multicast() {
            sock.set_multicast_if_v4(&self.address())
                .map_err(|error| Error::Io {
                    what: "icmp socket",
                    ns: self.ns.clone(),
                    error,
                })?;
        }
        icmp::echo(&sock, dst, window, false).map_err(|error| Error::Io {
            what: "icmp socket",
            ns: self.ns.clone(),
            error,
        })
    }

    fn raw_icmp_socket(&self) -> Result<socket2::Socket> {
        self.enter(icmp::open_socket)?.map_err(|error| Error::Io {
            what: "icmp socket",
            ns: self.ns.clone(),
            error,
        })
    }

    /// Sets a network sysctl inside this host, e.g. `sysctl("net.ipv4.ip_nonlocal_bind", "1")`.
    /// Only `net.*` keys are per namespace; others would change the machine, so they are
    /// refused.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let bad = |reason| Error::InvalidName {
            what: "sysctl",
            name: key.to_owned(),
            reason,
        };
        if !key.starts_with("net.") {
            return Err(bad("only net.* sysctls are per network namespace"));
        }
        if key.contains('/') || key.contains("..") {
            return Err(bad("not a sysctl key"));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let ns = self.ns.clone();
        let value = value.to_owned();
        // /proc/sys/net resolves against the opening thread's network namespace.
        self.enter(move || std::fs::write(&path, value))?
            .map_err(|error| Error::Io {
                what: "writing sysctl",
                ns,
                error,
            })
    }
}

/// The addresses on interface `ifname` in the current thread's network namespace.
fn interface_addresses(ifname: &str) -> std::io::Result<Vec<Cidr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        if ifa.interface_name != ifname {
            continue;
        }
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            out.push(Cidr {
                addr: IpAddr::V4(a.ip()),
                prefix_len: u32::from(m.ip()).count_ones() as u8,
            });
        } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            out.push(Cidr {
                addr: IpAddr::V6(a.ip()),
                prefix_len: u128::from(m.ip()).count_ones() as u8,
            });
        }
    }
    Ok(out)
}
