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
    Severity, Status, Vip,
};
use serde::Serialize;

pub use haproxy::{Haproxy, Resolver};
pub use keepalived::{InitialState, Keepalived};

/// Why an import failed outright.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file (or an included file) could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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
    /// The files parse, but the cluster file they describe breaks haplane's rules.
    #[error("cannot import: {} line(s) describe what haplane refuses:\n{}", .problems.len(), rejections(.problems))]
    Rejected { problems: Vec<Rejection> },
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
    /// What `haplane check` warns about in the result (errors make the import fail).
    pub warnings: Vec<config::Finding>,
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

/// Where a cluster-file key came from: a line of keepalived.conf or haproxy.cfg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The line's text, trimmed.
    pub text: String,
}

impl Origin {
    pub(crate) fn of(item: &keepalived::Item) -> Origin {
        Origin {
            file: item.file.clone(),
            line: item.line,
            text: item.text.trim().to_string(),
        }
    }
}

/// One rule the imported cluster would break, with the source line that produced the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The source line.
    pub origin: Origin,
    /// The cluster-file key the finding is about, e.g. `vip.track[0].weight`.
    pub key: String,
    /// The rule's message (what `haplane check` would print).
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {} (it would become {}, which haplane check rejects)",
            self.origin.file.display(),
            self.origin.line,
            self.origin.text,
            self.message,
            self.key
        )
    }
}

fn rejections(list: &[Rejection]) -> String {
    list.iter()
        .map(|r| format!("  {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source line of every key the import set; the longest matching key wins.
#[derive(Debug, Default)]
struct Origins(Vec<(String, Origin)>);

impl Origins {
    fn add(&mut self, key: impl Into<String>, origin: Origin) {
        self.0.push((key.into(), origin));
    }

    /// The origin of `path` (or of its nearest parent key), latest entry first.
    fn find(&self, path: &str) -> Option<&Origin> {
        self.0
            .iter()
            .rev()
            .filter(|(k, _)| {
                path == k
                    || path
                        .strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[', ' ']))
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, o)| o)
    }
}

/// Import a keepalived.conf and, optionally, a haproxy.cfg.
///
/// The result always passes the cluster file's rules, the ones `haplane check` and `haplane
/// plan` run: when a file keepalived and haproxy accept cannot become such a cluster file,
/// the import fails with [`ImportError::Rejected`], naming each source line and the reason.
pub fn import(keepalived: &Path, haproxy: Option<&Path>) -> Result<ImportResult, ImportError> {
    let mut report = Report::default();
    let k = keepalived::read(keepalived, None, &mut report)?;
    let h = match haproxy {
        Some(p) => Some(haproxy::read(
            p,
            None,
            k.vip.addr.is_ipv4(),
            None,
            &mut report,
        )?),
        None => None,
    };
    finish(k, h, report)
}

/// One input file given as text: the name it is reported under, and its contents.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    /// The name errors and unmapped lines are reported under.
    pub path: &'a Path,
    /// The file's contents.
    pub text: &'a str,
}

/// [`import`] from text in memory (fuzzing, tests): keepalived `include`s are reported as
/// unmapped, not read, and haproxy server names are resolved by `resolve`, not by this host.
pub fn import_text(
    keepalived: Text<'_>,
    haproxy: Option<Text<'_>>,
    resolve: Resolver,
) -> Result<ImportResult, ImportError> {
    let mut report = Report::default();
    let k = keepalived::read(keepalived.path, Some(keepalived.text), &mut report)?;
    let h = match haproxy {
        Some(t) => Some(haproxy::read(
            t.path,
            Some(t.text),
            k.vip.addr.is_ipv4(),
            Some(resolve),
            &mut report,
        )?),
        None => None,
    };
    finish(k, h, report)
}

/// Build the cluster from what the files say, apply its rules and render the cluster file.
fn finish(
    k: Keepalived,
    h: Option<Haproxy>,
    mut report: Report,
) -> Result<ImportResult, ImportError> {
    let (cluster, origins) = build(&k, h.as_ref(), &mut report);
    let findings = cluster.validate();
    let fallback = Origin {
        file: k.file.clone(),
        line: k.vip_line,
        text: k.vip.to_string(),
    };
    let rejected: Vec<Rejection> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| Rejection {
            origin: origins.find(&f.path).unwrap_or(&fallback).clone(),
            key: f.path.clone(),
            message: f.message.clone(),
        })
        .collect();
    if !rejected.is_empty() {
        tracing::debug!(file = %k.file.display(), errors = rejected.len(), "import rejected");
        return Err(ImportError::Rejected { problems: rejected });
    }
    let mut yaml = String::from(
        "# Imported by haplane import. Check every note, then validate with haplane plan.\n",
    );
    if !report.notes.is_empty() {
        yaml.push_str("#\n# Assumed (check these):\n");
        for n in &report.notes {
            yaml.push_str(&comment(&n.to_string()));
        }
    }
    if !report.unmapped.is_empty() {
        yaml.push_str("#\n# Not carried over:\n");
        for u in &report.unmapped {
            yaml.push_str(&comment(&u.to_string()));
        }
    }
    if !findings.is_empty() {
        yaml.push_str("#\n# Warnings (haplane check prints them too):\n");
        for f in &findings {
            yaml.push_str(&comment(&f.to_string()));
        }
    }
    yaml.push_str(&cluster.to_yaml());
    Ok(ImportResult {
        cluster,
        cluster_yaml: yaml,
        unmapped: report.unmapped,
        notes: report.notes,
        warnings: findings,
    })
}

/// One `#   text` comment line of the imported file. The text quotes the source files, so
/// what YAML does not allow in a comment (YAML 1.2 §5.1: only printable characters; §5.4: CR
/// and LF end the line, so one would let a quoted line add keys) is escaped (`\u{18}`).
fn comment(text: &str) -> String {
    let printable = |c: char| {
        matches!(c, '\t' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
            && c != '\u{feff}'
    };
    let mut line = String::from("#   ");
    for c in text.chars() {
        if printable(c) {
            line.push(c);
        } else {
            line.extend(c.escape_unicode());
        }
    }
    line.push('\n');
    line
}

/// A node named by the files, before its roles are known.
struct Candidate {
    name: String,
    address: IpAddr,
    origin: Origin,
    /// Named by keepalived.conf: this node (`*_src_ip`) or a `unicast_peer`.
    vrrp: bool,
    /// A haproxy `server`: an apiserver.
    server: bool,
    /// The name came from the files (router_id, a server name), not made up (node-1, peer-N).
    named: bool,
}

/// Who carries the VIP and who runs the apiservers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// keepalived runs on the apiserver hosts (kubeadm's static-pod option).
    Stacked,
    /// keepalived + haproxy on their own hosts in front of the masters (seed 004).
    Dedicated,
    /// keepalived on some apiserver hosts and on others that are not.
    Mixed,
}

fn build(k: &Keepalived, h: Option<&Haproxy>, report: &mut Report) -> (Cluster, Origins) {
    let file = &k.file;
    let mut origins = Origins(k.origins.clone());
    if let Some(h) = h {
        origins.0.extend(h.origins.iter().cloned());
    }
    let family_v4 = k.vip.addr.is_ipv4();
    let own_name = k.router_id.clone().unwrap_or_else(|| "node-1".into());
    let mut cands: Vec<Candidate> = Vec::new();
    let add = |cands: &mut Vec<Candidate>,
               name: String,
               address: IpAddr,
               origin: &Origin,
               vrrp: bool,
               server: bool,
               report: &mut Report| {
        if address.is_ipv4() != family_v4 {
            report.unmapped(
                &origin.file,
                origin.line,
                &origin.text,
                format!(
                    "{address} is not of the VIP's family ({}); one VRRP instance carries one family",
                    k.vip.addr
                ),
            );
            return;
        }
        if let Some(c) = cands.iter_mut().find(|c| c.address == address) {
            c.vrrp |= vrrp;
            c.server |= server;
            // A server name from haproxy is usually the host name; prefer it over peer-N.
            if server && !c.named {
                c.name = name;
                c.named = true;
            }
            return;
        }
        cands.push(Candidate {
            name,
            address,
            origin: origin.clone(),
            vrrp,
            server,
            named: server,
        });
    };
    if let Some((src, origin)) = &k.src_ip {
        add(
            &mut cands,
            own_name.clone(),
            *src,
            origin,
            true,
            false,
            report,
        );
        if let Some(c) = cands.first_mut() {
            c.named = k.router_id.is_some();
        }
    }
    for (i, (peer, origin)) in k.unicast_peers.iter().enumerate() {
        add(
            &mut cands,
            format!("peer-{}", i + 1),
            *peer,
            origin,
            true,
            false,
            report,
        );
    }
    if let Some(h) = h {
        for s in &h.servers {
            let origin = &s.origin;
            add(
                &mut cands,
                s.name.clone(),
                s.address.ip(),
                origin,
                false,
                true,
                report,
            );
        }
    }
    let vrrp_known = cands.iter().any(|c| c.vrrp);
    let servers_known = cands.iter().any(|c| c.server);
    let unicast = !k.unicast_peers.is_empty();
    let topology = if !servers_known {
        Topology::Stacked
    } else if !vrrp_known {
        // Nothing names the keepalived hosts. A haproxy that binds every address at the very
        // port its servers listen on cannot share a host with an apiserver: its own host.
        if h.is_some_and(|h| h.wildcard_bind_on_server_port()) {
            Topology::Dedicated
        } else {
            Topology::Stacked
        }
    } else if cands.iter().filter(|c| c.vrrp).all(|c| !c.server) {
        Topology::Dedicated
    } else if cands.iter().filter(|c| c.vrrp).all(|c| c.server)
        && (!unicast || cands.iter().all(|c| c.vrrp))
    {
        // Multicast names only this node, so every master is assumed to run keepalived.
        Topology::Stacked
    } else {
        Topology::Mixed
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_origin: Vec<Origin> = Vec::new();
    let push = |nodes: &mut Vec<Node>, name: &str, address: IpAddr, roles: Vec<Role>| {
        let mut name = sanitize(name);
        if nodes.iter().any(|n| n.name == name) {
            name = format!("{name}-{}", nodes.len() + 1);
        }
        nodes.push(Node {
            name,
            address,
            priority: 100,
            roles,
            interface: None,
        });
    };
    if topology == Topology::Dedicated && !vrrp_known {
        let placeholder = placeholder_address(k.vip);
        report.unmapped.push(Unmapped {
            file: file.clone(),
            line: k.vip_line,
            text: k.vip.to_string(),
            reason: format!(
                "this keepalived node's address is not in the file (no unicast_src_ip or mcast_src_ip); it became lb node {} with the placeholder {placeholder}: replace it and add the other lb node",
                sanitize(&own_name)
            ),
        });
        push(&mut nodes, &own_name, placeholder, vec![Role::Lb]);
        node_origin.push(Origin {
            file: file.clone(),
            line: k.vip_line,
            text: k.vip.to_string(),
        });
    }
    for c in &cands {
        let roles = match topology {
            Topology::Stacked => vec![Role::Master],
            Topology::Dedicated if c.server => vec![Role::Master],
            Topology::Dedicated => vec![Role::Lb],
            Topology::Mixed => match (c.server, c.vrrp) {
                (true, true) => vec![Role::Master, Role::Lb],
                (true, false) => vec![Role::Master],
                _ => vec![Role::Lb],
            },
        };
        push(&mut nodes, &c.name, c.address, roles);
        node_origin.push(c.origin.clone());
    }
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
        push(&mut nodes, &own_name, placeholder, vec![Role::Master]);
        node_origin.push(Origin {
            file: file.clone(),
            line: k.vip_line,
            text: k.vip.to_string(),
        });
    }
    match topology {
        Topology::Dedicated => report.note(
            file,
            k.vip_line,
            &k.vip.to_string(),
            "the keepalived nodes are not haproxy's servers: they became lb nodes (VRRP + balancer, no apiserver, no etcd) and the servers became masters",
        ),
        Topology::Mixed => report.note(
            file,
            k.vip_line,
            &k.vip.to_string(),
            "keepalived runs on some of haproxy's servers and on other hosts: every keepalived node got the lb role (masters among them keep master too)",
        ),
        Topology::Stacked => {}
    }
    let mut vip = k.vip;
    if k.vip_prefix_assumed {
        widen_to_cover(&mut vip, &nodes, report, k);
    }
    // The file's own node: by its source address, else the placeholder (index 0).
    let own = k
        .src_ip
        .as_ref()
        .and_then(|(a, _)| nodes.iter().position(|n| n.address == *a))
        .or_else(|| (topology == Topology::Dedicated && !vrrp_known).then_some(0));
    let vrrp: Vec<usize> = {
        let lb = nodes.iter().any(|n| n.is(Role::Lb));
        (0..nodes.len())
            .filter(|i| nodes[*i].is(if lb { Role::Lb } else { Role::Master }))
            .collect()
    };
    guess_priorities(k, &mut nodes, &vrrp, own, report);
    for (i, o) in node_origin.iter().enumerate() {
        origins.add(format!("nodes[{i}]"), o.clone());
        if vrrp.contains(&i) {
            origins.add(
                format!("nodes[{i}].priority"),
                Origin {
                    file: file.clone(),
                    line: k.priority_line,
                    text: format!("priority {}", k.priority.unwrap_or(100)),
                },
            );
        }
    }
    let mut api_server = ApiServer::default();
    let mut lb = LoadBalancer::default();
    if let Some(h) = h {
        let masters: Vec<&Node> = nodes.iter().filter(|n| n.is(Role::Master)).collect();
        let vrrp_addresses: Vec<IpAddr> = vrrp.iter().map(|i| nodes[*i].address).collect();
        h.apply(
            &mut lb,
            &mut api_server,
            &masters,
            vip.addr,
            &vrrp_addresses,
            report,
        );
    }
    let version = k.version;
    let cluster = Cluster {
        cluster: sanitize(k.router_id.as_deref().unwrap_or("imported")),
        nodes,
        vip: Vip {
            address: vip,
            interface: k.interface.clone().unwrap_or_else(|| "eth0".into()),
            vrid: k.vrid,
            version,
            advert_interval: k.advert.unwrap_or(Dur::from_secs(1)),
            unicast: !k.unicast_peers.is_empty(),
            preempt: k.preempt,
            preempt_delay: k.preempt_delay.unwrap_or_default(),
            auth_pass: k.auth_pass.as_deref().map(config::Secret::new),
            auth_hmac: k.auth_hmac.clone(),
            v3_checksum_as_v2: false,
            fencing: config::Fencing::None,
            garp: k.garp.clone().unwrap_or_default(),
            notify: k.notify.clone(),
            track: k.track.clone(),
            track_balancer: None,
            maintenance_drain_timeout: Dur::from_secs(300),
            gate: config::VipGate::default(),
        },
        status: Status::default(),
        api_server,
        load_balancer: lb,
        etcd: None,
        elections: Vec::new(),
        snapshots: None,
        state_dir: "/var/lib/haplane".into(),
        kubernetes: Kubernetes::default(),
    };
    (cluster, origins)
}

/// A keepalived.conf holds one node's priority. The others are guessed so that the source's
/// behaviour survives: every tracked weight that moved the VIP still moves it. keepalived
/// moves the VIP when the failing holder's priority drops strictly below a backup's
/// (RFC 5798 §6.4.3), so neighbours sit closer together than the smallest weight: kubeadm's
/// MASTER 101 with weight -2 keeps its BACKUPs at 100, 99 (not 91, 81: 101 - 2 = 99 would
/// never cross 91).
fn guess_priorities(
    k: &Keepalived,
    nodes: &mut [Node],
    vrrp: &[usize],
    own: Option<usize>,
    report: &mut Report,
) {
    let mut prio = k.priority.unwrap_or(100);
    if prio == 255 {
        // RFC 5798 §5.2.4: 255 is the address owner's; a floating VIP has none.
        report.note(
            &k.file,
            k.priority_line,
            "priority 255",
            "255 is reserved for the owner of the VIP's address (RFC 5798 §5.2.4) and this VIP floats; imported as 254",
        );
        prio = 254;
    }
    let backup = k.state == Some(InitialState::Backup);
    let smallest = k
        .track
        .iter()
        .filter(|t| t.weight != 0)
        .map(|t| t.weight.unsigned_abs())
        .min();
    // Neighbours sit `gap` apart: 10 without weights, else less than the smallest weight.
    let gap: i32 = smallest.map_or(10, |w| (i32::from(w) - 1).min(10));
    let clamp = |p: i32| p.clamp(1, 254) as u8;
    let p = i32::from(prio);
    // The priorities in descending order, with the file's own slot.
    let mut ladder: Vec<u8> = Vec::new();
    // A BACKUP's file: some other node is the master above it (if the files name another).
    if backup && vrrp.len() > 1 {
        ladder.push(clamp(p + gap));
    }
    let own_slot = ladder.len();
    ladder.push(prio);
    let mut next = p;
    while ladder.len() < vrrp.len().max(1) {
        next -= gap;
        ladder.push(clamp(next));
    }
    let own = own.filter(|o| vrrp.contains(o));
    let order: Vec<usize> = match own {
        // This node takes its slot; the others fill the rest in file order.
        Some(o) => {
            let mut others = vrrp.iter().copied().filter(|i| *i != o);
            (0..vrrp.len())
                .map(|slot| {
                    if slot == own_slot {
                        o
                    } else {
                        others.next().unwrap_or(o)
                    }
                })
                .collect()
        }
        None => vrrp.to_vec(),
    };
    for (slot, i) in order.iter().enumerate() {
        nodes[*i].priority = ladder[slot];
    }
    if vrrp.len() > 1 {
        let holder = order.get(own_slot).map(|i| nodes[*i].name.clone());
        let others: Vec<String> = order
            .iter()
            .enumerate()
            .filter(|(slot, _)| *slot != own_slot)
            .map(|(_, i)| format!("{} {}", nodes[*i].name, nodes[*i].priority))
            .collect();
        let why = match smallest {
            None => "10 apart, no tracked weight to keep".to_string(),
            Some(1) => "equal: the smallest tracked weight is 1, so only a tie lets it move the VIP (the higher address wins a tie, RFC 5798 §6.4.3)".to_string(),
            Some(w) => format!(
                "{gap} apart, closer than the smallest tracked weight {w}, so a failing check still moves the VIP as it did in keepalived"
            ),
        };
        report.note(
            &k.file,
            k.priority_line,
            &format!("priority {}", k.priority.unwrap_or(100)),
            format!(
                "a keepalived.conf holds one node's priority; gave {prio}{} to {} and assumed {} for the others ({why})",
                match k.state {
                    Some(InitialState::Master) => " (state MASTER)",
                    Some(InitialState::Backup) => " (state BACKUP, so one other node is the higher master)",
                    None => "",
                },
                holder.unwrap_or_default(),
                others.join(", "),
            ),
        );
    }
}

/// A VIP written without a prefix: keepalived adds it as /32 (/128), but the cluster file
/// needs the subnet it floats in. Start from /24 (/64) and widen until every node that
/// carries it is inside.
fn widen_to_cover(vip: &mut IpNet, nodes: &[Node], report: &mut Report, k: &Keepalived) {
    let lb = nodes.iter().any(|n| n.is(Role::Lb));
    let carriers: Vec<IpAddr> = nodes
        .iter()
        .filter(|n| n.is(if lb { Role::Lb } else { Role::Master }))
        .map(|n| n.address)
        .collect();
    let floor = if vip.addr.is_ipv4() { 8 } else { 48 };
    let start = vip.prefix;
    while vip.prefix > floor && !carriers.iter().all(|a| vip.contains(*a)) {
        vip.prefix -= 1;
    }
    if vip.prefix != start && carriers.iter().all(|a| vip.contains(*a)) {
        report.note(
            &k.file,
            k.vip_line,
            &k.vip.to_string(),
            format!(
                "widened the assumed prefix to /{} so every node that carries the VIP is in its subnet",
                vip.prefix
            ),
        );
    } else if vip.prefix != start {
        vip.prefix = start;
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
