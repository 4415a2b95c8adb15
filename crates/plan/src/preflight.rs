//! `haplane preflight`: checks of one host against the cluster file, each PASS, WARN or FAIL
//! with the fix. Everything runs in the calling thread's network namespace.

use std::fmt;
use std::io::ErrorKind;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use config::{Cluster, EtcdTopology, ListenAddr, Node, Role};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use config::CONTROL_PLANE_PORTS;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        })
    }
}

/// One line of preflight output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Short check name, e.g. `port 2379`.
    pub check: String,
    pub status: CheckStatus,
    /// What was found.
    pub message: String,
    /// How to fix it (for WARN and FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.check, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

/// Where and how long to look.
#[derive(Debug, Clone)]
pub struct PreflightOptions {
    /// Root for the state directories (`/etc/kubernetes/manifests`, `/var/lib/etcd`, `/etc/hosts`).
    pub root: PathBuf,
    /// Root for `/proc` and `/sys` (swap, modules, sysctls, SELinux). Default `/`.
    pub system_root: PathBuf,
    /// How long to listen for VRRP adverts with our VRID; zero skips the check.
    pub vrrp_listen: Duration,
    /// The container runtime socket.
    pub cri_socket: PathBuf,
    /// Directories searched for kubelet and kubeadm; default `$PATH`.
    pub path: Option<String>,
}

impl Default for PreflightOptions {
    fn default() -> Self {
        PreflightOptions {
            root: "/".into(),
            system_root: "/".into(),
            vrrp_listen: Duration::from_secs(3),
            cri_socket: "/var/run/containerd/containerd.sock".into(),
            path: None,
        }
    }
}

struct Out(Vec<CheckResult>);

impl Out {
    fn push(
        &mut self,
        check: impl Into<String>,
        status: CheckStatus,
        message: String,
        fix: Option<String>,
    ) {
        let r = CheckResult {
            check: check.into(),
            status,
            message,
            fix,
        };
        tracing::debug!(check = %r.check, status = %r.status, message = %r.message, "preflight");
        self.0.push(r);
    }
    fn pass(&mut self, check: impl Into<String>, message: impl Into<String>) {
        self.push(check, CheckStatus::Pass, message.into(), None);
    }
    fn warn(
        &mut self,
        check: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, CheckStatus::Warn, message.into(), Some(fix.into()));
    }
    fn fail(
        &mut self,
        check: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, CheckStatus::Fail, message.into(), Some(fix.into()));
    }
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Run every check for `node` on this host.
pub fn preflight(cluster: &Cluster, node: &Node, opts: &PreflightOptions) -> Vec<CheckResult> {
    let mut out = Out(Vec::new());
    let master = node.is(Role::Master);
    let kube = master || node.is(Role::Worker);
    tracing::debug!(node = %node.name, roles = ?node.roles, "preflight");
    ports(cluster, node, &mut out);
    dirs(cluster, node, opts, &mut out);
    if kube {
        swap(opts, &mut out);
        netfilter(opts, &mut out);
    }
    hostname(node, opts, &mut out);
    firewall(node, cluster, &mut out);
    selinux(opts, &mut out);
    time_sync(&mut out);
    if kube {
        runtime(opts, &mut out);
    }
    if cluster.runs_vrrp(node) {
        vip_interface(cluster, node, &mut out);
        vrrp_in_use(cluster, node, opts, &mut out);
    }
    if node.is(Role::Lb) && !master {
        lb_node(cluster, node, opts, &mut out);
    }
    out.0
}

/// The TCP ports this node's roles need, with who needs them.
fn needed_ports(c: &Cluster, node: &Node) -> Vec<(u16, String)> {
    let mut ports: Vec<(u16, String)> = Vec::new();
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    if node.is(Role::Master) {
        ports.push((c.api_server.port, "kube-apiserver".into()));
        for (p, what) in CONTROL_PLANE_PORTS {
            let etcd = p == 2379 || p == 2380;
            if etcd && topology == EtcdTopology::External && !node.is(Role::Etcd) {
                continue;
            }
            ports.push((p, what.into()));
        }
    }
    // The VIP's balancer runs where VRRP runs: the masters, or the lb nodes.
    if c.runs_vrrp(node) && c.load_balancer.enabled {
        for l in &c.load_balancer.listen {
            ports.push((port(l), format!("haplane balancer ({l})")));
        }
    }
    if !node.is(Role::Master) {
        if node.is(Role::Worker) {
            ports.push((10250, "kubelet".into()));
            if c.load_balancer.enabled && !c.runs_vrrp(node) {
                for l in &c.load_balancer.node_local_listen {
                    ports.push((port(l), format!("haplane node-local balancer ({l})")));
                }
            }
        }
        if node.is(Role::Etcd) {
            ports.push((2379, "etcd client".into()));
            ports.push((2380, "etcd peer".into()));
        }
    }
    ports.push((c.status.listen.port(), "haplane status".into()));
    let mut seen = std::collections::HashSet::new();
    ports.retain(|(p, _)| seen.insert(*p));
    ports
}

fn port(l: &ListenAddr) -> u16 {
    match l {
        ListenAddr::Vip(p) => *p,
        ListenAddr::Socket(sa) => sa.port(),
    }
}

/// Whether something listens on `port` on any address: bind the wildcard and see.
fn port_free(port: u16, v6: bool) -> Result<(), std::io::Error> {
    let (domain, addr) = if v6 {
        (
            Domain::IPV6,
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        )
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR ignores TIME_WAIT leftovers but still collides with a listener.
    s.set_reuse_address(true)?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())
}

fn ports(c: &Cluster, node: &Node, out: &mut Out) {
    for (p, what) in needed_ports(c, node) {
        let check = format!("port {p}");
        match port_free(p, node.address.is_ipv6()) {
            Ok(()) => out.pass(check, format!("free for {what}")),
            Err(e) if e.kind() == ErrorKind::AddrInUse => out.fail(
                check,
                format!("port {p} ({what}) is in use"),
                format!(
                    "find the owner with `ss -ltnp 'sport = :{p}'` and stop it (seed 001: a leftover etcd container held 2379)"
                ),
            ),
            Err(e) => out.warn(
                check,
                format!("cannot test port {p} ({what}): {e}"),
                "run preflight as root",
            ),
        }
    }
}

fn dirs(c: &Cluster, node: &Node, opts: &PreflightOptions, out: &mut Out) {
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    let mut list: Vec<(&str, &str)> = Vec::new();
    if node.is(Role::Master) || node.is(Role::Worker) {
        list.push(("/etc/kubernetes/manifests", "haplane.yaml"));
    }
    let etcd_here = (node.is(Role::Master) && topology == EtcdTopology::Stacked)
        || (node.is(Role::Etcd) && topology == EtcdTopology::External);
    if etcd_here {
        list.push(("/var/lib/etcd", ""));
    }
    for (dir, allowed) in list {
        let path = under(&opts.root, dir);
        let check = format!("dir {dir}");
        match std::fs::read_dir(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => out.pass(check, "does not exist yet"),
            Err(e) => out.warn(
                check,
                format!("cannot read {}: {e}", path.display()),
                "run preflight as root",
            ),
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != allowed)
                    .collect();
                names.sort();
                if names.is_empty() {
                    out.pass(check, "empty");
                } else {
                    out.fail(
                        check,
                        format!(
                            "{dir} is not empty ({}); kubeadm refuses to start over it",
                            names.join(", ")
                        ),
                        format!("if this is a leftover, run `kubeadm reset` or move {dir} aside"),
                    );
                }
            }
        }
    }
}

fn swap(opts: &PreflightOptions, out: &mut Out) {
    let path = under(&opts.system_root, "/proc/swaps");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let active: Vec<&str> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if active.is_empty() {
                out.pass("swap", "off");
            } else {
                out.fail(
                    "swap",
                    format!("swap is on ({})", active.join(", ")),
                    "`swapoff -a` and remove swap entries from /etc/fstab (the kubelet refuses swap by default)",
                );
            }
        }
        Err(e) => out.warn(
            "swap",
            format!("cannot read {}: {e}", path.display()),
            "check `swapon --show` by hand",
        ),
    }
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn netfilter(opts: &PreflightOptions, out: &mut Out) {
    let sys = &opts.system_root;
    let loaded = std::fs::read_to_string(under(sys, "/proc/modules"))
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().next() == Some("br_netfilter"))
        })
        .unwrap_or(false)
        || under(sys, "/sys/module/br_netfilter").exists();
    if loaded {
        out.pass("br_netfilter", "loaded");
    } else {
        out.fail(
            "br_netfilter",
            "the br_netfilter module is not loaded",
            "`modprobe br_netfilter` and add it to /etc/modules-load.d/k8s.conf",
        );
    }
    for (key, file) in [
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        (
            "net.bridge.bridge-nf-call-iptables",
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
        ),
    ] {
        let check = format!("sysctl {key}");
        match read_trim(&under(sys, file)) {
            Some(v) if v == "1" => out.pass(check, "1"),
            Some(v) => out.fail(
                check,
                format!("{key} is {v}, kubernetes networking needs 1"),
                format!("`sysctl -w {key}=1` and persist it in /etc/sysctl.d/k8s.conf"),
            ),
            None => out.fail(
                check,
                format!("{key} does not exist (is br_netfilter loaded?)"),
                format!("`modprobe br_netfilter; sysctl -w {key}=1`"),
            ),
        }
    }
}

fn hostname(node: &Node, opts: &PreflightOptions, out: &mut Out) {
    let name = &node.name;
    // /etc/hosts first (under --root), then the resolver.
    let from_hosts: Vec<IpAddr> = std::fs::read_to_string(under(&opts.root, "/etc/hosts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut words = l.split_whitespace();
            let addr: IpAddr = words.next()?.parse().ok()?;
            words.any(|w| w == name).then_some(addr)
        })
        .collect();
    let addrs: Vec<IpAddr> = if from_hosts.is_empty() {
        (name.as_str(), 0)
            .to_socket_addrs()
            .map(|it| it.map(|sa| sa.ip()).collect())
            .unwrap_or_default()
    } else {
        from_hosts
    };
    let check = "hostname";
    if addrs.contains(&node.address) {
        let loopback: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_loopback())
            .map(|a| a.to_string())
            .collect();
        if loopback.is_empty() {
            out.pass(check, format!("{name} resolves to {}", node.address));
        } else {
            out.warn(
                check,
                format!("{name} resolves to {} but also to {}", node.address, loopback.join(", ")),
                format!("remove {name} from the 127.0.0.1/::1 lines of /etc/hosts (seed 001 mapped it to both)"),
            );
        }
    } else if addrs.is_empty() {
        out.fail(
            check,
            format!("{name} does not resolve"),
            "append the plan's `hosts` file to /etc/hosts on every node",
        );
    } else {
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        out.fail(
            check,
            format!(
                "{name} resolves to {}, not {}",
                list.join(", "),
                node.address
            ),
            "fix /etc/hosts (or DNS) with the plan's `hosts` file",
        );
    }
    if let Ok(h) = nix::unistd::gethostname() {
        let h = h.to_string_lossy();
        if h != *name && h.split('.').next() != Some(name.as_str()) {
            out.warn(
                "hostname",
                format!("this host is called {h:?}, the cluster file calls it {name:?}"),
                format!("`hostnamectl set-hostname {name}` or pass the right --node"),
            );
        }
    }
}

fn on_path(opts: &PreflightOptions, program: &str) -> Option<PathBuf> {
    let path = opts
        .path
        .clone()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn run(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new(program).args(args).output().ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn firewall(node: &Node, c: &Cluster, out: &mut Out) {
    let vrrp = c.runs_vrrp(node);
    let kube = node.is(Role::Master) || node.is(Role::Worker);
    let mut needs: Vec<String> = Vec::new();
    if vrrp {
        needs.push("vrrp (protocol 112)".into());
    }
    if node.is(Role::Master) {
        needs.push(c.api_server.port.to_string());
        needs.push("2379-2380".into());
    }
    // An lb node's clients arrive at the balancer's ports.
    let lb_ports: Vec<String> = if vrrp && !node.is(Role::Master) && c.load_balancer.enabled {
        c.load_balancer
            .listen
            .iter()
            .map(|l| port(l).to_string())
            .collect()
    } else {
        Vec::new()
    };
    needs.extend(lb_ports.iter().cloned());
    if kube {
        needs.push("10250".into());
    }
    let tcp: Vec<&String> = needs.iter().filter(|n| !n.starts_with("vrrp")).collect();
    let firewalld_fix = format!(
        "{}{} && firewall-cmd --reload",
        if vrrp {
            "firewall-cmd --permanent --add-protocol=vrrp"
        } else {
            "firewall-cmd --permanent"
        },
        tcp.iter()
            .map(|p| format!(" --add-port={p}/tcp"))
            .collect::<String>()
    );
    let nft_fix = format!(
        "{}nft add rule inet filter input tcp dport {{ {} }} accept",
        if vrrp {
            "nft add rule inet filter input ip protocol vrrp accept; "
        } else {
            ""
        },
        tcp.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let check = "firewall";
    if let Some((true, state)) = run("firewall-cmd", &["--state"])
        && state.trim() == "running"
    {
        out.warn(
            check,
            "firewalld is running (seed 001: it blocked joins)",
            format!("allow {}: `{firewalld_fix}`", needs.join(", ")),
        );
        return;
    }
    let ruleset = run("nft", &["list", "ruleset"])
        .filter(|(ok, _)| *ok)
        .map(|(_, s)| s)
        .or_else(|| {
            run("iptables-save", &[])
                .filter(|(ok, _)| *ok)
                .map(|(_, s)| s)
        });
    let Some(ruleset) = ruleset else {
        out.warn(
            check,
            "neither nft nor iptables-save could list the rules",
            "check the host firewall by hand",
        );
        return;
    };
    let restrictive = ruleset.contains("policy drop")
        || ruleset.contains(":INPUT DROP")
        || ruleset.lines().any(|l| {
            let l = l.trim();
            (l.ends_with(" drop")
                || l.ends_with(" reject")
                || l.contains("-j DROP")
                || l.contains("-j REJECT"))
                && !l.contains("established")
        });
    if !restrictive {
        out.pass(check, "no input rule drops or rejects traffic");
        return;
    }
    let mentions = |token: &str| ruleset.contains(token);
    let mut missing = Vec::new();
    if vrrp && !(mentions("vrrp") || mentions("112")) {
        missing.push("vrrp (protocol 112)".to_string());
    }
    for p in [c.api_server.port.to_string(), "2379".into(), "10250".into()] {
        let needed = if p == "10250" {
            kube
        } else {
            node.is(Role::Master)
        };
        if needed && !mentions(&p) {
            missing.push(p);
        }
    }
    for p in &lb_ports {
        if !mentions(p) && !missing.contains(p) {
            missing.push(p.clone());
        }
    }
    if missing.is_empty() {
        out.pass(
            check,
            format!(
                "the rules drop some traffic but mention {}",
                needs.join(", ")
            ),
        );
    } else {
        out.fail(
            check,
            format!(
                "the firewall drops or rejects traffic and has no rule for {}",
                missing.join(", ")
            ),
            format!("accept them, e.g. `{nft_fix}`"),
        );
    }
}

fn selinux(opts: &PreflightOptions, out: &mut Out) {
    match read_trim(&under(&opts.system_root, "/sys/fs/selinux/enforce")).as_deref() {
        None => out.pass("selinux", "not enabled"),
        Some("0") => out.pass("selinux", "permissive"),
        Some(_) => out.warn(
            "selinux",
            "enforcing (seed 001: joins failed until `setenforce 0`)",
            "use a container runtime and policy that support SELinux, or `setenforce 0` and SELINUX=permissive in /etc/selinux/config",
        ),
    }
}

fn time_sync(out: &mut Out) {
    if let Some((true, v)) = run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]) {
        match v.trim() {
            "yes" => return out.pass("time sync", "NTP synchronized (timedatectl)"),
            "no" => {}
            _ => {}
        }
    }
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return out.pass("time sync", "systemd-timesyncd synchronized");
    }
    if let Some((true, v)) = run("chronyc", &["tracking"])
        && v.contains("Leap status     : Normal")
    {
        return out.pass("time sync", "chrony synchronized");
    }
    if let Some((true, _)) = run("ntpstat", &[]) {
        return out.pass("time sync", "ntpd synchronized");
    }
    out.warn(
        "time sync",
        "the clock is not known to be synchronized (certificates and etcd leases need it)",
        "enable chrony or systemd-timesyncd: `timedatectl set-ntp true`",
    );
}

fn runtime(opts: &PreflightOptions, out: &mut Out) {
    use std::os::unix::fs::FileTypeExt;
    let sock = &opts.cri_socket;
    match std::fs::metadata(sock) {
        Ok(m) if m.file_type().is_socket() => {
            out.pass("container runtime", format!("{} exists", sock.display()))
        }
        _ => out.fail(
            "container runtime",
            format!("no container runtime socket at {}", sock.display()),
            "install and start containerd (or CRI-O), or pass the runtime's socket",
        ),
    }
    for program in ["kubelet", "kubeadm"] {
        match on_path(opts, program) {
            Some(p) => out.pass(program, format!("{}", p.display())),
            None => out.fail(
                program,
                format!("{program} is not on PATH"),
                format!("install {program} from the Kubernetes package repository, same version as kubernetes.version"),
            ),
        }
    }
}

fn vip_interface(c: &Cluster, node: &Node, out: &mut Out) {
    let iface = c.vip_interface(node);
    let check = format!("interface {iface}");
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => {
            return out.warn(
                check,
                format!("cannot list interfaces: {e}"),
                "check `ip addr` by hand",
            );
        }
    };
    let ours: Vec<&nix::ifaddrs::InterfaceAddress> =
        addrs.iter().filter(|a| a.interface_name == iface).collect();
    if ours.is_empty() {
        let mut names: Vec<&str> = addrs.iter().map(|a| a.interface_name.as_str()).collect();
        names.dedup();
        return out.fail(
            check,
            format!("{iface} does not exist (this host has {})", names.join(", ")),
            format!("set vip.interface (or nodes[].interface for {}) to the interface on the VIP's segment", node.name),
        );
    }
    let ips: Vec<IpAddr> = ours
        .iter()
        .filter_map(|a| a.address.as_ref())
        .filter_map(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        // Only the VIP's family matters (and IPv6 link-local addresses are always there).
        .filter(|a| a.is_ipv4() == c.vip.address.addr.is_ipv4())
        .collect();
    let vip = c.vip.address;
    if let Some(a) = ips.iter().find(|a| vip.contains(**a) && **a != vip.addr) {
        out.pass(check, format!("exists with {a} in {vip}"));
    } else {
        let list: Vec<String> = ips.iter().map(|a| a.to_string()).collect();
        out.fail(
            check,
            format!(
                "{iface} has no address in the VIP's subnet {vip} (it has {})",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            ),
            format!(
                "put {} on {iface}, or pick a VIP in {iface}'s subnet",
                node.address
            ),
        );
    }
}

fn vrrp_in_use(c: &Cluster, node: &Node, opts: &PreflightOptions, out: &mut Out) {
    let vrid = c.vip.vrid;
    let check = format!("vrid {vrid}");
    if opts.vrrp_listen.is_zero() {
        return out.warn(
            check,
            "not checked (listen time 0)",
            "listen for a few seconds before the first start",
        );
    }
    if !c.vip.address.addr.is_ipv4() {
        return out.warn(
            check,
            "not checked for IPv6",
            "check with `tcpdump -i IFACE ip6 proto 112`",
        );
    }
    let iface = c.vip_interface(node);
    match listen_vrrp(iface, opts.vrrp_listen) {
        Err(e) => out.warn(
            check,
            format!("cannot listen for VRRP on {iface}: {e}"),
            "run preflight as root (raw sockets need CAP_NET_RAW)",
        ),
        Ok(seen) => {
            let others: Vec<&Seen> = seen.iter().filter(|s| s.src != node.address).collect();
            let clash: Vec<&&Seen> = others.iter().filter(|s| s.vrid == vrid).collect();
            if let Some(s) = clash.first() {
                let vips: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
                out.fail(
                    check,
                    format!(
                        "VRID {vrid} is already in use on {iface}: {} advertises priority {} for {}",
                        s.src,
                        s.priority,
                        vips.join(", ")
                    ),
                    "pick a vip.vrid no other router uses on this segment, or stop the old keepalived first",
                );
            } else {
                let mut used: Vec<u8> = others.iter().map(|s| s.vrid).collect();
                used.sort_unstable();
                used.dedup();
                let used: Vec<String> = used.iter().map(|v| v.to_string()).collect();
                out.pass(
                    check,
                    format!(
                        "no other router uses it on {iface} (listened {:?}{})",
                        opts.vrrp_listen,
                        if used.is_empty() {
                            String::new()
                        } else {
                            format!("; VRIDs seen: {}", used.join(", "))
                        }
                    ),
                );
            }
        }
    }
}

/// One advertisement heard on the segment.
#[derive(Debug, Clone)]
struct Seen {
    src: IpAddr,
    vrid: u8,
    priority: u8,
    addresses: Vec<IpAddr>,
}

/// Listen on `iface` for `dur` and decode every VRRP advertisement with the `vrrp` codec.
fn listen_vrrp(iface: &str, dur: Duration) -> std::io::Result<Vec<Seen>> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
    sock.bind_device(Some(iface.as_bytes()))?;
    let index = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
    // Without membership the NIC may filter 224.0.0.18 (RFC 5798 §5.1.1.2).
    if let Err(e) = sock.join_multicast_v4_n(
        &Ipv4Addr::new(224, 0, 0, 18),
        &socket2::InterfaceIndexOrAddress::Index(index),
    ) {
        tracing::debug!(%iface, error = %e, "cannot join the VRRP group; listening anyway");
    }
    let deadline = Instant::now() + dur;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left))?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(dgram) = vrrp::parse_ipv4(&buf[..n]) else {
            continue;
        };
        let (src, dst) = (IpAddr::V4(dgram.src), IpAddr::V4(dgram.dst));
        // Accept either v3 checksum flavour: we only want to know who uses which VRID.
        let adv =
            vrrp::Advertisement::decode(src, dst, dgram.payload, vrrp::ChecksumMode::default())
                .or_else(|_| {
                    vrrp::Advertisement::decode(
                        src,
                        dst,
                        dgram.payload,
                        vrrp::ChecksumMode::MessageOnly,
                    )
                });
        match adv {
            Ok(a) => seen.push(Seen {
                src,
                vrid: a.vrid,
                priority: a.priority,
                addresses: a.addresses,
            }),
            Err(e) => tracing::debug!(%src, error = %e, "undecodable VRRP packet"),
        }
    }
    Ok(seen)
}

/// A TCP connect to `addr` within `timeout`.
fn reachable(addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    std::net::TcpStream::connect_timeout(&addr, timeout).map(drop)
}

/// `host:port` of an etcd URL such as `https://192.0.2.11:2379`.
fn endpoint_socket(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    authority
        .to_socket_addrs()
        .ok()?
        .next()
        .or_else(|| authority.parse().ok())
}

/// What a dedicated balancer node needs besides VRRP: its backends (the masters'
/// apiservers), the CA its HTTPS checks verify them with, and, when it fences the VIP by
/// quorum, the etcd client files and endpoints. Before `kubeadm init` none of these exist
/// yet, and haplane copes (TCP checks, plain VRRP until the fence arms), so each is a WARN.
fn lb_node(c: &Cluster, node: &Node, opts: &PreflightOptions, out: &mut Out) {
    if c.load_balancer.enabled {
        for b in c.lb_backends() {
            let check = format!("backend {}", b.address);
            match reachable(b.address, Duration::from_secs(1)) {
                Ok(()) => out.pass(check, "accepts connections"),
                Err(e) => out.warn(
                    check,
                    format!("{} does not accept connections from {} ({e})", b.address, node.name),
                    "expected before kubeadm init; afterwards check the apiserver and the firewall between this lb node and the master",
                ),
            }
        }
        let hc = &c.load_balancer.health_check;
        if hc.kind == config::CheckType::Https
            && !hc.insecure_skip_verify
            && let Some(ca) = &hc.ca_file
        {
            let check = format!("file {}", ca.display());
            if under(&opts.root, &ca.display().to_string()).is_file() {
                out.pass(check, "the CA for the HTTPS health checks exists");
            } else {
                out.warn(
                    check,
                    "missing: the balancer checks the apiservers with TCP connects until it appears",
                    format!(
                        "after kubeadm init copy it from the first master: scp MASTER:{ca} {ca}",
                        ca = ca.display()
                    ),
                );
            }
        }
    }
    if !c.uses_etcd(node) {
        return;
    }
    let Some(etcd) = &c.etcd else {
        return;
    };
    for (key, f) in [
        ("etcd.caFile", &etcd.ca_file),
        ("etcd.certFile", &etcd.cert_file),
        ("etcd.keyFile", &etcd.key_file),
    ] {
        let Some(f) = f else {
            continue;
        };
        let check = format!("file {}", f.display());
        if under(&opts.root, &f.display().to_string()).is_file() {
            out.pass(check, format!("{key} exists"));
        } else {
            out.warn(
                check,
                format!("{key} is missing: this lb node cannot reach etcd to fence the VIP, so it holds it by plain VRRP until the fence arms"),
                format!("copy {} from a master (kubeadm creates it at init) to the same path here", f.display()),
            );
        }
    }
    let endpoints = c.etcd_endpoints();
    let answering: Vec<&String> = endpoints
        .iter()
        .filter(|e| {
            endpoint_socket(e).is_some_and(|a| reachable(a, Duration::from_secs(1)).is_ok())
        })
        .collect();
    let check = "etcd endpoints";
    if answering.len() * 2 > endpoints.len() {
        out.pass(
            check,
            format!(
                "{} of {} accept connections",
                answering.len(),
                endpoints.len()
            ),
        );
    } else {
        out.warn(
            check,
            format!(
                "{} of {} etcd endpoints ({}) accept connections from {}: the VIP's election needs a majority",
                answering.len(),
                endpoints.len(),
                endpoints.join(", "),
                node.name
            ),
            "expected before kubeadm init; afterwards open 2379 on the masters to the lb nodes",
        );
    }
}
