//! `haplane import`: a cluster file from an existing keepalived.conf (and haproxy.cfg).
//!
//! Every line is either mapped, mapped with a stated assumption (a note), or reported as
//! unmapped with its file and line number; nothing is dropped silently.

mod haproxy;
mod keepalived;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use config::{
    ApiServer, Backend, Cluster, Dur, IpNet, Kubernetes, ListenAddr, LoadBalancer, Node, Role,
    Status, Vip,
};
use serde::Serialize;

pub use haproxy::Haproxy;
pub use keepalived::Keepalived;

/// Why an import failed outright.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file (or an included file) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Braces do not balance.
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Includes nest too deep (a loop).
    #[error("{path}: includes nest deeper than 8 levels")]
    IncludeDepth { path: PathBuf },
    /// The keepalived file has no vrrp_instance to import.
    #[error("{path}: no vrrp_instance block; nothing describes a VIP")]
    NoInstance { path: PathBuf },
    /// The instance has no usable virtual_ipaddress.
    #[error("{path}: vrrp_instance {instance} has no usable virtual_ipaddress")]
    NoVip { path: PathBuf, instance: String },
    /// The instance has no usable virtual_router_id.
    #[error("{path}: vrrp_instance {instance} has no usable virtual_router_id")]
    NoVrid { path: PathBuf, instance: String },
}

/// A line that was not carried over, or carried over with an assumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The line's text, trimmed.
    pub text: String,
    /// Why it was not mapped, or what was assumed.
    pub reason: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.text,
            self.reason
        )
    }
}

/// What `haplane import` produces.
#[derive(Debug, Clone)]
pub struct ImportResult {
    /// The cluster built from the files.
    pub cluster: Cluster,
    /// The cluster file to print, with the notes and unmapped lines as comments on top.
    pub cluster_yaml: String,
    /// Lines not carried over.
    pub unmapped: Vec<Unmapped>,
    /// Lines carried over with an assumption worth checking.
    pub notes: Vec<Unmapped>,
}

/// Collects what happened to every line.
#[derive(Default)]
pub(crate) struct Report {
    pub unmapped: Vec<Unmapped>,
    pub notes: Vec<Unmapped>,
}

impl Report {
    pub fn unmapped(&mut self, file: &Path, line: usize, text: &str, reason: impl Into<String>) {
        self.unmapped.push(Unmapped {
            file: file.to_path_buf(),
            line,
            text: text.trim().to_string(),
            reason: reason.into(),
        });
    }
    pub fn note(&mut self, file: &Path, line: usize, text: &str, reason: impl Into<String>) {
        self.notes.push(Unmapped {
            file: file.to_path_buf(),
            line,
            text: text.trim().to_string(),
            reason: reason.into(),
        });
    }
}

/// A name the cluster file accepts, derived from any text.
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "node".into()
    } else {
        s.chars().take(63).collect()
    }
}

/// Import a keepalived.conf and, optionally, a haproxy.cfg.
pub fn import(keepalived: &Path, haproxy: Option<&Path>) -> Result<ImportResult, ImportError> {
    let mut report = Report::default();
    let k = keepalived::read(keepalived, &mut report)?;
    let h = match haproxy {
        Some(p) => Some(haproxy::read(p, &mut report)?),
        None => None,
    };
    let cluster = build(&k, h.as_ref(), &mut report);
    let mut yaml = String::from(
        "# Imported by haplane import. Check every note, then validate with haplane plan.\n",
    );
    if !report.notes.is_empty() {
        yaml.push_str("#\n# Assumed (check these):\n");
        for n in &report.notes {
            yaml.push_str(&format!("#   {n}\n"));
        }
    }
    if !report.unmapped.is_empty() {
        yaml.push_str("#\n# Not carried over:\n");
        for u in &report.unmapped {
            yaml.push_str(&format!("#   {u}\n"));
        }
    }
    yaml.push_str(&cluster.to_yaml());
    Ok(ImportResult {
        cluster,
        cluster_yaml: yaml,
        unmapped: report.unmapped,
        notes: report.notes,
    })
}

fn build(k: &Keepalived, h: Option<&Haproxy>, report: &mut Report) -> Cluster {
    let file = &k.file;
    let family_v4 = k.vip.addr.is_ipv4();
    // Nodes, merged by address: this node first, then unicast peers, then haproxy servers.
    let mut nodes: Vec<Node> = Vec::new();
    let add = |nodes: &mut Vec<Node>, name: String, address: IpAddr| {
        if !nodes.iter().any(|n| n.address == address) {
            let mut name = sanitize(&name);
            if nodes.iter().any(|n| n.name == name) {
                name = format!("{name}-{}", nodes.len() + 1);
            }
            nodes.push(Node {
                name,
                address,
                priority: 100,
                roles: vec![Role::Master],
                interface: None,
            });
        }
    };
    let own_name = k.router_id.clone().unwrap_or_else(|| "node-1".into());
    if let Some(src) = k.src_ip {
        add(&mut nodes, own_name.clone(), src);
    }
    for (i, peer) in k.unicast_peers.iter().enumerate() {
        add(&mut nodes, format!("peer-{}", i + 1), *peer);
    }
    if let Some(h) = h {
        for s in &h.servers {
            if let Some(n) = nodes.iter_mut().find(|n| n.address == s.address.ip()) {
                // A server name from haproxy is usually the host name; prefer it over peer-N.
                if n.name.starts_with("peer-") {
                    n.name = sanitize(&s.name);
                }
            } else {
                add(&mut nodes, s.name.clone(), s.address.ip());
            }
        }
    }
    nodes.retain(|n| n.address.is_ipv4() == family_v4);
    if nodes.is_empty() {
        // Nothing names a node: invent one in the VIP's subnet and say so loudly.
        let placeholder = placeholder_address(k.vip);
        report.unmapped.push(Unmapped {
            file: file.clone(),
            line: k.vip_line,
            text: k.vip.to_string(),
            reason: format!(
                "no node address in the files (no unicast_src_ip, mcast_src_ip, unicast_peer or haproxy server); nodes[0].address is a placeholder {placeholder}: replace it and add the other masters"
            ),
        });
        add(&mut nodes, own_name, placeholder);
    }
    // Priorities: the file's priority belongs to this node (by source address, else the first).
    let own = k
        .src_ip
        .and_then(|a| nodes.iter().position(|n| n.address == a))
        .unwrap_or(0);
    let prio = k.priority.unwrap_or(100);
    let mut next = prio;
    for (i, n) in nodes.iter_mut().enumerate() {
        if i == own {
            n.priority = prio;
        } else {
            next = next.saturating_sub(10).max(1);
            n.priority = next;
        }
    }
    if nodes.len() > 1 {
        let others: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own)
            .map(|(_, n)| format!("{} {}", n.name, n.priority))
            .collect();
        report.note(
            file,
            k.priority_line,
            &format!("priority {prio}"),
            format!(
                "a keepalived.conf holds one node's priority; gave it to {} and assumed {} for the others",
                nodes[own].name,
                others.join(", ")
            ),
        );
    }
    let mut api_server = ApiServer::default();
    let mut lb = LoadBalancer::default();
    if let Some(h) = h {
        h.apply(&mut lb, &mut api_server, &nodes);
    }
    let version = k.version;
    Cluster {
        cluster: sanitize(k.router_id.as_deref().unwrap_or("imported")),
        nodes,
        vip: Vip {
            address: k.vip,
            interface: k.interface.clone().unwrap_or_else(|| "eth0".into()),
            vrid: k.vrid,
            version,
            advert_interval: k.advert.unwrap_or(Dur::from_secs(1)),
            unicast: !k.unicast_peers.is_empty(),
            preempt: k.preempt,
            preempt_delay: k.preempt_delay.unwrap_or_default(),
            auth_pass: k.auth_pass.clone(),
            v3_checksum_as_v2: false,
            fencing: config::Fencing::None,
            garp: k.garp.clone().unwrap_or_default(),
            notify: k.notify.clone(),
            track: k.track.clone(),
        },
        status: Status::default(),
        api_server,
        load_balancer: lb,
        etcd: None,
        elections: Vec::new(),
        snapshots: None,
        state_dir: "/var/lib/haplane".into(),
        kubernetes: Kubernetes::default(),
    }
}

/// The first host address of the VIP's subnet that is not the VIP.
fn placeholder_address(vip: IpNet) -> IpAddr {
    match vip.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(vip.prefix))
                .unwrap_or(0);
            let net = u32::from(a) & mask;
            let mut cand = net.wrapping_add(1);
            if cand == u32::from(a) {
                cand = cand.wrapping_add(1);
            }
            IpAddr::V4(cand.into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(vip.prefix))
                .unwrap_or(0);
            let net = u128::from(a) & mask;
            let mut cand = net.wrapping_add(1);
            if cand == u128::from(a) {
                cand = cand.wrapping_add(1);
            }
            IpAddr::V6(cand.into())
        }
    }
}

/// Shared by both parsers: keep a listen address as `vip:PORT` when it is the VIP or a wildcard.
pub(crate) fn listen_for(addr: Option<IpAddr>, port: u16, vip: Option<IpAddr>) -> ListenAddr {
    match addr {
        None => ListenAddr::Vip(port),
        Some(a) if Some(a) == vip || a.is_unspecified() => ListenAddr::Vip(port),
        Some(a) => ListenAddr::Socket(SocketAddr::new(a, port)),
    }
}

pub(crate) fn backends_from(servers: &[haproxy::Server]) -> Vec<Backend> {
    servers
        .iter()
        .map(|s| Backend {
            address: s.address,
            weight: s.weight.unwrap_or(1),
        })
        .collect()
}
