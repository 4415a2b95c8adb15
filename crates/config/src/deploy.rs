//! Rules about the cluster the file deploys, beyond each key's own range: the node roles,
//! etcd's quorum, the VRRP priorities and the track weights that must be able to move the
//! VIP, port clashes with kubeadm's components, and what keepalived peers and the classic
//! keepalived.conf (the plan's rollback path) must share (interface names, the password). `haplane check`, `haplane plan` and the daemon all run
//! these through [`crate::Cluster::validate`], so they never disagree.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::validate::Findings;
use crate::{Cluster, EtcdTopology, Fencing, ListenAddr, Node, Role};

/// etcd's client port (kubeadm binds it on 127.0.0.1 and the node address).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port (the node address).
pub const ETCD_PEER_PORT: u16 = 2380;
/// The kubelet API (every address).
pub const KUBELET_PORT: u16 = 10250;
/// kube-controller-manager's secure port (127.0.0.1 in kubeadm).
const CONTROLLER_MANAGER_PORT: u16 = 10257;
/// kube-scheduler's secure port (127.0.0.1 in kubeadm).
const SCHEDULER_PORT: u16 = 10259;

/// Ports of kubeadm's components other than the apiserver and haplane on a master.
pub const CONTROL_PLANE_PORTS: [(u16, &str); 5] = [
    (ETCD_CLIENT_PORT, "etcd client"),
    (ETCD_PEER_PORT, "etcd peer"),
    (KUBELET_PORT, "kubelet"),
    (CONTROLLER_MANAGER_PORT, "kube-controller-manager"),
    (SCHEDULER_PORT, "kube-scheduler"),
];

/// Where a kubeadm component binds its port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    /// Every address (the kubelet).
    Any,
    /// 127.0.0.1 only.
    Loopback,
    /// 127.0.0.1 and the node's address (etcd's client port).
    LoopbackAndNode,
    /// The node's address only (etcd's peer port).
    Node,
}

/// The components kubeadm runs on `node`, with their ports and bind addresses.
fn components(c: &Cluster, node: &Node) -> Vec<(u16, &'static str, Bind)> {
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    let mut out = Vec::new();
    let etcd_here = (node.is(Role::Master) && topology == EtcdTopology::Stacked)
        || (node.is(Role::Etcd) && topology == EtcdTopology::External);
    if etcd_here {
        out.push((ETCD_CLIENT_PORT, "etcd client", Bind::LoopbackAndNode));
        out.push((ETCD_PEER_PORT, "etcd peer", Bind::Node));
    }
    if node.is(Role::Master) || node.is(Role::Worker) {
        out.push((KUBELET_PORT, "kubelet", Bind::Any));
    }
    if node.is(Role::Master) {
        out.push((
            CONTROLLER_MANAGER_PORT,
            "kube-controller-manager",
            Bind::Loopback,
        ));
        out.push((SCHEDULER_PORT, "kube-scheduler", Bind::Loopback));
    }
    out
}

/// Whether a listener at `addr` on `node` takes a port that a component bound with `bind` needs.
fn clashes(addr: SocketAddr, node: &Node, bind: Bind) -> bool {
    let ip = addr.ip();
    if ip.is_unspecified() {
        return true;
    }
    match bind {
        Bind::Any => true,
        Bind::Loopback => ip.is_loopback(),
        Bind::LoopbackAndNode => ip.is_loopback() || ip == node.address,
        Bind::Node => ip == node.address,
    }
}

pub(crate) fn rules(c: &Cluster, f: &mut Findings) {
    roles(c, f);
    etcd_members(c, f);
    priorities(c, f);
    ports(c, f);
    keepalived_limits(c, f);
    track_weights(c, f);
}

fn roles(c: &Cluster, f: &mut Findings) {
    let lbs: Vec<&str> = c
        .nodes
        .iter()
        .filter(|n| n.is(Role::Lb))
        .map(|n| n.name.as_str())
        .collect();
    if lbs.is_empty() {
        return;
    }
    if lbs.len() == 1 {
        f.warn(
            "nodes",
            format!(
                "{} is the only lb node: the VIP and the balancer stop when it does; add a second lb node",
                lbs[0]
            ),
        );
    }
    if !c.load_balancer.enabled {
        f.warn(
            "loadBalancer.enabled",
            "false: the lb nodes only carry the VIP and nothing forwards it to the apiservers",
        );
    }
    for (i, n) in c.nodes.iter().enumerate() {
        if n.is(Role::Master) && !n.is(Role::Lb) && n.priority != 100 {
            f.warn(
                format!("nodes[{i}].priority"),
                format!(
                    "{} is a master in a cluster with lb nodes: it does not run VRRP, so its priority has no effect",
                    n.name
                ),
            );
        }
    }
}

fn etcd_members(c: &Cluster, f: &mut Findings) {
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    let members: Vec<&str> = c.etcd_members().iter().map(|n| n.name.as_str()).collect();
    let (count, what, path) = if !members.is_empty() {
        let path = match topology {
            EtcdTopology::Stacked => "nodes (masters, stacked etcd)",
            EtcdTopology::External => "nodes (role etcd)",
        };
        (members.len(), members.join(", "), path)
    } else {
        // External etcd managed elsewhere: judge by the endpoints the user listed.
        let endpoints = c
            .etcd
            .as_ref()
            .map(|e| e.endpoints.clone())
            .unwrap_or_default();
        if endpoints.is_empty() {
            return;
        }
        (endpoints.len(), endpoints.join(", "), "etcd.endpoints")
    };
    if count % 2 == 0 {
        let message = format!(
            "etcd has {count} members ({what}); an even count tolerates no more failures than {} and a partition can leave no majority: use {} or {} members",
            count - 1,
            count - 1,
            count + 1
        );
        if c.etcd.is_some() {
            // haplane elects (and fences the VIP) through this etcd: one lost member stops it.
            f.error(path, message);
        } else {
            f.warn(
                path,
                format!(
                    "{message} (kubeadm's stacked etcd; to put the VIP on two dedicated balancer nodes instead, give them roles: [lb])"
                ),
            );
        }
    } else if count < 3 {
        f.warn(
            path,
            format!(
                "etcd has {count} member ({what}); losing it loses the cluster: use 3 or 5 members"
            ),
        );
    }
    if topology == EtcdTopology::External {
        for (i, n) in c.nodes.iter().enumerate() {
            if n.is(Role::Etcd) && n.is(Role::Master) {
                f.warn(
                    format!("nodes[{i}].roles"),
                    format!(
                        "{} is both master and external etcd member: kubeadm init refuses a non-empty /var/lib/etcd (seed 001); give etcd its own nodes or topology: stacked",
                        n.name
                    ),
                );
            }
        }
        if let Some(etcd) = &c.etcd
            && etcd.ca_file.is_none()
        {
            f.warn(
                "etcd.caFile",
                "the rendered external etcd members require TLS; set etcd.caFile, certFile and keyFile so haplane and the apiservers can reach them",
            );
        }
    }
    // lb nodes run no etcd member: with quorum fencing they campaign for the VIP as clients
    // over the network, so an endpoint on loopback would point them at nothing.
    if let Some(etcd) = &c.etcd
        && c.fencing() == Fencing::Quorum
        && c.has_lb_nodes()
    {
        for (i, e) in etcd.endpoints.iter().enumerate() {
            if endpoint_is_loopback(e) {
                f.error(
                    format!("etcd.endpoints[{i}]"),
                    format!(
                        "{e} is on loopback, but the lb nodes run no etcd member and reach etcd over the network to fence the VIP; list the members' addresses"
                    ),
                );
            }
        }
    }
}

/// Whether an etcd URL's host is a loopback address or `localhost`.
fn endpoint_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn priorities(c: &Cluster, f: &mut Findings) {
    let mut seen: HashMap<u8, &str> = HashMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        if !c.runs_vrrp(n) {
            continue;
        }
        if let Some(first) = seen.insert(n.priority, &n.name) {
            f.warn(
                format!("nodes[{i}].priority"),
                format!(
                    "{} has the same priority {} as {first}; the tie is broken by the higher address (RFC 5798 §6.4.3), so failover order is accidental: give each VRRP node its own priority",
                    n.name, n.priority
                ),
            );
        }
        if n.priority == 255 {
            f.error(
                format!("nodes[{i}].priority"),
                format!(
                    "255 marks the owner of the VIP (RFC 5798 §5.2.4), but a floating VIP has no owner; keepalived then ignores weighted track scripts and nopreempt: give {} 1..=254",
                    n.name
                ),
            );
        }
    }
}

fn port_of(l: &ListenAddr) -> u16 {
    match l {
        ListenAddr::Vip(p) => *p,
        ListenAddr::Socket(sa) => sa.port(),
    }
}

fn ports(c: &Cluster, f: &mut Findings) {
    let api = c.api_server.port;
    for (port, what) in CONTROL_PLANE_PORTS {
        if api == port {
            f.error(
                "apiServer.port",
                format!("{api} is the {what} port on every master; use 6443 or 9443"),
            );
        }
    }
    let status = c.status.listen;
    let mut taken: Vec<(u16, String)> = CONTROL_PLANE_PORTS
        .iter()
        .map(|(p, w)| (*p, (*w).to_string()))
        .collect();
    taken.push((api, "kube-apiserver".into()));
    if c.load_balancer.enabled {
        let mut lb_seen = BTreeSet::new();
        for (i, l) in c.load_balancer.listen.iter().enumerate() {
            let at = format!("loadBalancer.listen[{i}]");
            let addr = c.resolve_listen(*l);
            if !lb_seen.insert(addr) {
                f.error(&at, format!("{l} is listed twice; remove the duplicate"));
            }
            listener_clashes(c, f, &at, *l, c.vrrp_nodes());
            taken.push((port_of(l), format!("the balancer ({l})")));
        }
        for (i, l) in c.load_balancer.node_local_listen.iter().enumerate() {
            let at = format!("loadBalancer.nodeLocalListen[{i}]");
            let on = c
                .nodes
                .iter()
                .filter(|n| n.is(Role::Worker) && !c.runs_vrrp(n));
            listener_clashes(c, f, &at, *l, on);
        }
    }
    // haplane's status listener runs on every node, next to whatever that node runs; sharing a
    // port number with any component is a clash somewhere, so it must avoid all of them.
    if let Some((port, what)) = taken.iter().find(|(p, _)| *p == status.port()) {
        f.error(
            "status.listen",
            format!("{status} uses port {port}, which {what} needs; the default is 127.0.0.1:9470"),
        );
    }
}

/// A balancer listener `l` on each of `nodes` must not take a port kubeadm's components or
/// the apiserver bind there.
fn listener_clashes<'a>(
    c: &Cluster,
    f: &mut Findings,
    at: &str,
    l: ListenAddr,
    nodes: impl Iterator<Item = &'a Node>,
) {
    let addr = c.resolve_listen(l);
    let mut reported = BTreeSet::new();
    for node in nodes {
        // The apiserver binds every address unless plan's patch binds it to the node address;
        // a listener on the VIP at its port is what that patch is for.
        if node.is(Role::Master)
            && addr.port() == c.api_server.port
            && (addr.ip().is_unspecified() || addr.ip() == node.address)
            && reported.insert(c.api_server.port)
        {
            f.error(
                at,
                format!(
                    "{addr} clashes with the apiserver on port {}; listen on vip:{} or move apiServer.port (seed 002 moved it to 9443)",
                    c.api_server.port, c.api_server.port
                ),
            );
        }
        for (port, what, bind) in components(c, node) {
            if port == addr.port() && clashes(addr, node, bind) && reported.insert(port) {
                f.error(
                    at,
                    format!(
                        "{l} takes the {what} port {port} on {} ({}); pick another port",
                        node.name,
                        node.roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
}

/// Round a duration up to whole seconds, at least 1.
fn whole_secs_up(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() != 0);
    s.max(1)
}

fn keepalived_limits(c: &Cluster, f: &mut Findings) {
    let v = &c.vip;
    if v.interface.chars().any(|c| c.is_whitespace() || c == '/') {
        f.error(
            "vip.interface",
            format!(
                "{:?} is not an interface name keepalived accepts",
                v.interface
            ),
        );
    }
    for (i, n) in c.nodes.iter().enumerate() {
        if let Some(ifname) = &n.interface
            && (ifname.is_empty()
                || ifname.len() > 15
                || ifname.chars().any(|c| c.is_whitespace() || c == '/'))
        {
            f.error(
                format!("nodes[{i}].interface"),
                format!("{ifname:?} is not an interface name (1..15 characters, no spaces)"),
            );
        }
    }
    // Commands keepalived's quoted script line cannot carry (quotes, backslashes) and names
    // it does not take are no problem: the plan renders wrapper scripts and safe names.
    for (i, t) in v.track.iter().enumerate() {
        let at = format!("vip.track[{i}]");
        for (key, d) in [("interval", Some(t.interval)), ("timeout", t.timeout)] {
            if let Some(d) = d
                && (d.get().subsec_nanos() != 0 || d.get() < Duration::from_secs(1))
            {
                f.warn(
                    format!("{at}.{key}"),
                    format!(
                        "keepalived's vrrp_script {key} takes whole seconds from 1; the rendered keepalived.conf rounds {d} up to {}s",
                        whole_secs_up(d.get())
                    ),
                );
            }
        }
    }
    if let Some(pass) = &v.auth_pass
        && !pass.expose().chars().all(|c| c.is_ascii_graphic())
    {
        f.error(
            "vip.authPass",
            "keepalived's auth_pass is one word of printable ASCII, and keepalived peers must send the same password during a migration; remove spaces and other characters",
        );
    }
    let delay = v.garp.delay.get();
    if delay.subsec_nanos() != 0 {
        f.warn(
            "vip.garp.delay",
            format!(
                "keepalived's vrrp_garp_master_delay takes whole seconds; the rendered keepalived.conf uses {}s",
                whole_secs_up(delay)
            ),
        );
    }
}

/// keepalived clamps a non-owner's effective priority to 1..=254 (vrrp.c, `vrrp_set_effective_priority`).
fn clamp(p: i32) -> i32 {
    p.clamp(1, 254)
}

fn track_weights(c: &Cluster, f: &mut Findings) {
    let routers: Vec<&Node> = c.vrrp_nodes().collect();
    if routers.len() < 2 {
        return;
    }
    let bonus: i32 = c
        .vip
        .track
        .iter()
        .filter(|t| t.weight > 0)
        .map(|t| i32::from(t.weight))
        .sum();
    // A healthy node carries every positive weight; a failing script takes its own weight away
    // (negative: subtracted; positive: no longer added).
    let healthy = |n: &Node| clamp(i32::from(n.priority) + bonus);
    for (i, t) in c.vip.track.iter().enumerate() {
        if t.weight == 0 {
            // Weight 0 sends the instance to FAULT: the VIP always moves.
            continue;
        }
        let mut worst: Option<(String, i32, String, i32)> = None;
        for m in &routers {
            let failing = clamp(i32::from(m.priority) + bonus - i32::from(t.weight).abs());
            let (best_name, best) = routers
                .iter()
                .filter(|o| o.name != m.name)
                .map(|o| (o.name.clone(), healthy(o)))
                .max_by_key(|(_, p)| *p)
                .unwrap_or_default();
            // The VIP moves only if a backup's priority is strictly higher: with equal
            // priorities the current master may keep it on the address tie-break (RFC 5798 §6.4.3).
            if failing >= best {
                let gap = healthy(m) - best + 1;
                if worst.as_ref().is_none_or(|w| gap > w.3) {
                    worst = Some((m.name.clone(), failing, best_name, gap));
                }
            }
        }
        if let Some((name, failing, other, gap)) = worst {
            f.error(
                format!("vip.track[{i}].weight"),
                format!(
                    "{} cannot move the VIP: when {:?} fails on {name} its priority only drops to {failing}, not below {other}'s; use a weight of at least {gap} in magnitude, or 0 to go to FAULT",
                    t.weight, t.name
                ),
            );
        }
    }
}
