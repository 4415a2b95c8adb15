//! Plan rules: problems that the file format allows but that break a kubeadm cluster or its
//! classic keepalived/haproxy equivalent. Each finding names the key and the fix.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use config::{Cluster, EtcdTopology, Finding, ListenAddr, Role, Severity};

/// Ports kubeadm's control plane binds on every master (kubeadm preflight checks them too).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd peer port.
pub const ETCD_PEER_PORT: u16 = 2380;
/// kubelet API.
pub const KUBELET_PORT: u16 = 10250;
/// kube-controller-manager secure port.
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
/// kube-scheduler secure port.
pub const SCHEDULER_PORT: u16 = 10259;

/// Ports of components other than the apiserver and haplane on a master.
pub const CONTROL_PLANE_PORTS: [(u16, &str); 5] = [
    (ETCD_CLIENT_PORT, "etcd client"),
    (ETCD_PEER_PORT, "etcd peer"),
    (KUBELET_PORT, "kubelet"),
    (CONTROLLER_MANAGER_PORT, "kube-controller-manager"),
    (SCHEDULER_PORT, "kube-scheduler"),
];

fn error(out: &mut Vec<Finding>, path: impl Into<String>, message: impl Into<String>) {
    out.push(Finding {
        severity: Severity::Error,
        path: path.into(),
        message: message.into(),
    });
}

fn warn(out: &mut Vec<Finding>, path: impl Into<String>, message: impl Into<String>) {
    out.push(Finding {
        severity: Severity::Warning,
        path: path.into(),
        message: message.into(),
    });
}

/// The file format's rules followed by the plan rules.
pub fn validate(cluster: &Cluster) -> Vec<Finding> {
    let mut out = cluster.validate();
    out.extend(plan_rules(cluster));
    out
}

/// Only the rules this crate adds on top of the file format.
pub fn plan_rules(c: &Cluster) -> Vec<Finding> {
    let mut out = Vec::new();
    etcd_members(c, &mut out);
    priorities(c, &mut out);
    ports(c, &mut out);
    keepalived_limits(c, &mut out);
    track_weights(c, &mut out);
    out
}

fn etcd_members(c: &Cluster, out: &mut Vec<Finding>) {
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
        error(
            out,
            path,
            format!(
                "etcd has {count} members ({what}); an even count tolerates no more failures than {} and a partition can leave no majority: use {} or {} members",
                count - 1,
                count - 1,
                count + 1
            ),
        );
    } else if count < 3 {
        warn(
            out,
            path,
            format!(
                "etcd has {count} member ({what}); losing it loses the cluster: use 3 or 5 members"
            ),
        );
    }
    if topology == EtcdTopology::External {
        for (i, n) in c.nodes.iter().enumerate() {
            if n.is(Role::Etcd) && n.is(Role::Master) {
                warn(
                    out,
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
            warn(
                out,
                "etcd.caFile",
                "the rendered external etcd members require TLS; set etcd.caFile, certFile and keyFile so haplane and the apiservers can reach them",
            );
        }
    }
}

fn priorities(c: &Cluster, out: &mut Vec<Finding>) {
    let mut seen: HashMap<u8, &str> = HashMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        if !n.is(Role::Master) {
            continue;
        }
        if let Some(first) = seen.insert(n.priority, &n.name) {
            warn(
                out,
                format!("nodes[{i}].priority"),
                format!(
                    "{} has the same priority {} as {first}; the tie is broken by the higher address (RFC 5798 §6.4.3), so failover order is accidental: give each master its own priority",
                    n.name, n.priority
                ),
            );
        }
        if n.priority == 255 {
            error(
                out,
                format!("nodes[{i}].priority"),
                format!(
                    "255 marks the owner of the VIP (RFC 5798 §5.2.4), but a floating VIP has no owner; keepalived then ignores weighted track scripts and nopreempt: give {} 1..=254",
                    n.name
                ),
            );
        }
    }
}

fn ports(c: &Cluster, out: &mut Vec<Finding>) {
    let api = c.api_server.port;
    for (port, what) in CONTROL_PLANE_PORTS {
        if api == port {
            error(
                out,
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
    let mut lb_seen = BTreeSet::new();
    if c.load_balancer.enabled {
        for (i, l) in c.load_balancer.listen.iter().enumerate() {
            let at = format!("loadBalancer.listen[{i}]");
            let port = match l {
                ListenAddr::Vip(p) => *p,
                ListenAddr::Socket(sa) => sa.port(),
            };
            if !lb_seen.insert(c.resolve_listen(*l)) {
                error(
                    out,
                    &at,
                    format!("{l} is listed twice; remove the duplicate"),
                );
            }
            for (p, what) in CONTROL_PLANE_PORTS {
                if port == p {
                    error(
                        out,
                        &at,
                        format!("{l} takes the {what} port {p} on the masters; pick another port"),
                    );
                }
            }
            taken.push((port, format!("the balancer ({l})")));
        }
        for (i, l) in c.load_balancer.node_local_listen.iter().enumerate() {
            let port = match l {
                ListenAddr::Vip(p) => *p,
                ListenAddr::Socket(sa) => sa.port(),
            };
            if port == KUBELET_PORT {
                error(
                    out,
                    format!("loadBalancer.nodeLocalListen[{i}]"),
                    format!("{l} takes the kubelet port {KUBELET_PORT}; use 127.0.0.1:6443"),
                );
            }
        }
    }
    // Components bind the wildcard, the node address or loopback; sharing a port number with
    // any of them is a clash on some node, so the status listener must avoid all of them.
    if let Some((port, what)) = taken.iter().find(|(p, _)| *p == status.port()) {
        error(
            out,
            "status.listen",
            format!("{status} uses port {port}, which {what} needs; the default is 127.0.0.1:9470"),
        );
    }
}

/// Characters keepalived reads as part of one word of a quoted script string.
fn keepalived_word(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '"' || c == '\'' || c == '\\' || c.is_control())
}

fn keepalived_limits(c: &Cluster, out: &mut Vec<Finding>) {
    let v = &c.vip;
    if v.interface.chars().any(|c| c.is_whitespace() || c == '/') {
        error(
            out,
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
            error(
                out,
                format!("nodes[{i}].interface"),
                format!("{ifname:?} is not an interface name (1..15 characters, no spaces)"),
            );
        }
    }
    for (i, t) in v.track.iter().enumerate() {
        let at = format!("vip.track[{i}]");
        if !t
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            error(
                out,
                format!("{at}.name"),
                format!(
                    "{:?} cannot be a keepalived vrrp_script name; use letters, digits, '_', '-' and '.'",
                    t.name
                ),
            );
        }
        if let Some(arg) = t.command.iter().find(|a| !keepalived_word(a)) {
            error(
                out,
                format!("{at}.command"),
                format!(
                    "the argument {arg:?} is empty or holds a quote, backslash or control character, which keepalived's script line cannot carry; wrap the check in a script file"
                ),
            );
        }
        for (key, d) in [("interval", Some(t.interval)), ("timeout", t.timeout)] {
            if let Some(d) = d
                && (d.get().subsec_nanos() != 0 || d.get() < Duration::from_secs(1))
            {
                warn(
                    out,
                    format!("{at}.{key}"),
                    format!(
                        "keepalived's vrrp_script {key} takes whole seconds from 1; the rendered keepalived.conf rounds {d} up to {}s",
                        whole_secs_up(d.get())
                    ),
                );
            }
        }
    }
    if let Some(cmd) = &v.notify
        && let Some(arg) = cmd.iter().find(|a| !keepalived_word(a))
    {
        error(
            out,
            "vip.notify",
            format!(
                "the argument {arg:?} is empty or holds a quote, backslash or control character, which keepalived's notify line cannot carry"
            ),
        );
    }
    if let Some(pass) = &v.auth_pass
        && !pass.chars().all(|c| c.is_ascii_graphic())
    {
        error(
            out,
            "vip.authPass",
            "keepalived's auth_pass is one word of printable ASCII; remove spaces and other characters",
        );
    }
    let delay = v.garp.delay.get();
    if delay.subsec_nanos() != 0 {
        warn(
            out,
            "vip.garp.delay",
            format!(
                "keepalived's vrrp_garp_master_delay takes whole seconds; the rendered keepalived.conf uses {}s",
                whole_secs_up(delay)
            ),
        );
    }
}

/// Round a duration up to whole seconds, at least 1.
pub(crate) fn whole_secs_up(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() != 0);
    s.max(1)
}

/// keepalived clamps a non-owner's effective priority to 1..=254 (vrrp.c, `vrrp_set_effective_priority`).
fn clamp(p: i32) -> i32 {
    p.clamp(1, 254)
}

fn track_weights(c: &Cluster, out: &mut Vec<Finding>) {
    let masters: Vec<&config::Node> = c.masters().collect();
    if masters.len() < 2 {
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
    let healthy = |n: &config::Node| clamp(i32::from(n.priority) + bonus);
    for (i, t) in c.vip.track.iter().enumerate() {
        if t.weight == 0 {
            // Weight 0 sends the instance to FAULT: the VIP always moves.
            continue;
        }
        let mut worst: Option<(String, i32, String, i32)> = None;
        for m in &masters {
            let failing = clamp(i32::from(m.priority) + bonus - i32::from(t.weight).abs());
            let (best_name, best) = masters
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
            error(
                out,
                format!("vip.track[{i}].weight"),
                format!(
                    "{} cannot move the VIP: when {:?} fails on {name} its priority only drops to {failing}, not below {other}'s; use a weight of at least {gap} in magnitude, or 0 to go to FAULT",
                    t.weight, t.name
                ),
            );
        }
    }
}
