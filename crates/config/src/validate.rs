//! Rules a cluster file must follow. Each finding names the key and says how to fix it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::{AntiReplay, Cluster, Fencing, HmacMode, VrrpVersion};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works, but is probably not what you want.
    Warning,
    /// haplane refuses to run with it.
    Error,
}

/// One problem with a cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Dotted path of the offending key, e.g. `nodes[1].priority`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

pub(crate) struct Findings(Vec<Finding>);

impl Findings {
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        });
    }
    pub(crate) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        });
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(crate) fn cluster(c: &Cluster) -> Vec<Finding> {
    let mut f = Findings(Vec::new());
    if !valid_name(&c.cluster) {
        f.error(
            "cluster",
            format!(
                "{:?} is not a valid name; use lower-case letters, digits and '-' (at most 63)",
                c.cluster
            ),
        );
    }
    nodes(c, &mut f);
    vip(c, &mut f);
    auth_hmac(c, &mut f);
    status(c, &mut f);
    load_balancer(c, &mut f);
    etcd(c, &mut f);
    kubernetes(c, &mut f);
    crate::deploy::rules(c, &mut f);
    f.0
}

fn kubernetes(c: &Cluster, f: &mut Findings) {
    let image = &c.kubernetes.haplane_image;
    if image.is_empty()
        || image
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        f.error(
            "kubernetes.haplaneImage",
            format!("{image:?} is not an image reference; use e.g. localhost/haplane:0.1.0"),
        );
    }
}

fn nodes(c: &Cluster, f: &mut Findings) {
    if c.nodes.is_empty() {
        f.error("nodes", "no nodes are listed; add at least one master");
        return;
    }
    if c.masters().next().is_none() {
        f.error(
            "nodes",
            "no node has the master role; the cluster needs at least one apiserver",
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        if !valid_name(&node.name) {
            f.error(
                format!("{at}.name"),
                format!(
                    "{:?} is not a valid node name; use lower-case letters, digits, '-' and '.'",
                    node.name
                ),
            );
        }
        if let Some(first) = names.insert(&node.name, i) {
            f.error(
                format!("{at}.name"),
                format!(
                    "{:?} is already the name of nodes[{first}]; names must be unique",
                    node.name
                ),
            );
        }
        if let Some(first) = addresses.insert(node.address, i) {
            f.error(
                format!("{at}.address"),
                format!(
                    "{} is already the address of nodes[{first}]; addresses must be unique",
                    node.address
                ),
            );
        }
        if node.address.is_unspecified()
            || node.address.is_multicast()
            || node.address.is_loopback()
        {
            f.error(
                format!("{at}.address"),
                format!(
                    "{} cannot be a node address; use the node's address on the VIP's segment",
                    node.address
                ),
            );
        }
        if node.priority == 0 {
            f.error(
                format!("{at}.priority"),
                "priority 0 is reserved for a master that is stopping (RFC 5798 §5.2.4); use 1..=254, or 255 for the address owner",
            );
        }
        if node.roles.is_empty() {
            f.error(
                format!("{at}.roles"),
                "a node needs at least one role: master, lb, worker or etcd",
            );
        }
    }
    let owners: Vec<&str> = c
        .vrrp_nodes()
        .filter(|n| n.priority == 255)
        .map(|n| n.name.as_str())
        .collect();
    if owners.len() > 1 {
        f.error(
            "nodes",
            format!(
                "several VRRP nodes have priority 255 ({}); only the VIP's real owner may, and there is none for a floating VIP",
                owners.join(", ")
            ),
        );
    }
}

fn vip(c: &Cluster, f: &mut Findings) {
    let v = &c.vip;
    if v.vrid == 0 {
        f.error(
            "vip.vrid",
            "VRID 0 is not valid; use 1..=255, unique on the segment (RFC 5798 §5.2.3)",
        );
    }
    if v.interface.is_empty() || v.interface.len() > 15 {
        f.error(
            "vip.interface",
            format!(
                "{:?} is not an interface name (1..15 characters)",
                v.interface
            ),
        );
    }
    let vip = v.address.addr;
    for (i, node) in c.nodes.iter().enumerate() {
        if node.address == vip {
            f.error(
                "vip.address",
                format!(
                    "the VIP {vip} is nodes[{i}]'s own address; pick an unused address in the masters' subnet"
                ),
            );
        }
        let router = c.runs_vrrp(node);
        if router && !v.address.contains(node.address) {
            f.error(
                "vip.address",
                format!(
                    "the VIP {} is not in the subnet of {} {} ({}); VRRP only moves a VIP within one segment",
                    v.address,
                    if node.is(crate::Role::Lb) { "lb node" } else { "master" },
                    node.name,
                    node.address
                ),
            );
        }
        if router && node.address.is_ipv4() != vip.is_ipv4() {
            f.error(
                format!("nodes[{i}].address"),
                "the node address and the VIP must be of the same family (IPv4 or IPv6)",
            );
        }
    }
    let advert = v.advert_interval.get();
    match v.version {
        VrrpVersion::V2 => {
            if vip.is_ipv6() {
                f.error(
                    "vip.version",
                    "VRRPv2 carries IPv4 only (RFC 3768); use version: 3 for an IPv6 VIP",
                );
            }
            if advert.subsec_nanos() != 0
                || advert < Duration::from_secs(1)
                || advert.as_secs() > 255
            {
                f.error(
                    "vip.advertInterval",
                    format!(
                        "{} is not valid for VRRPv2: whole seconds from 1s to 255s (RFC 3768 §5.3.7); use version: 3 for sub-second adverts",
                        v.advert_interval
                    ),
                );
            }
        }
        VrrpVersion::V3 => {
            if advert.subsec_nanos() % 10_000_000 != 0
                || advert < Duration::from_millis(10)
                || advert > Duration::from_millis(40_950)
            {
                f.error(
                    "vip.advertInterval",
                    format!(
                        "{} is not valid for VRRPv3: 10ms steps from 10ms to 40.95s (RFC 5798 §5.2.7)",
                        v.advert_interval
                    ),
                );
            }
            if v.auth_pass.is_some() {
                f.error(
                    "vip.authPass",
                    "VRRPv3 has no authentication (RFC 5798 §9); remove authPass or use version: 2",
                );
            }
        }
    }
    if let Some(pass) = &v.auth_pass {
        let pass = pass.expose();
        if pass.is_empty() {
            f.error(
                "vip.authPass",
                "an empty password; remove the key to disable authentication",
            );
        } else if pass.len() > 8 {
            f.warn(
                "vip.authPass",
                "only the first 8 bytes of the password are used (as keepalived does)",
            );
        }
    }
    if v.v3_checksum_as_v2 && v.version == VrrpVersion::V2 {
        f.warn(
            "vip.v3ChecksumAsV2",
            "has no effect with version: 2 (the v2 checksum never covers a pseudo-header)",
        );
    }
    if v.preempt_delay.get() > Duration::from_secs(1000) {
        f.error(
            "vip.preemptDelay",
            "at most 1000s, as in keepalived's preempt_delay",
        );
    }
    if v.preempt_delay.get() > Duration::ZERO && !v.preempt {
        f.warn("vip.preemptDelay", "has no effect with preempt: false");
    }
    if v.unicast && c.vrrp_nodes().count() < 2 {
        f.warn(
            "vip.unicast",
            "unicast mode with a single VRRP node has no peer to advertise to",
        );
    }
    if v.garp.repeat == 0 {
        f.warn(
            "vip.garp.repeat",
            "0 disables gratuitous ARP: switches and clients keep the old MAC for the VIP until their caches expire",
        );
    }
    if let Some(cmd) = &v.notify
        && cmd.is_empty()
    {
        f.error(
            "vip.notify",
            "an empty command; remove the key or give a program",
        );
    }
    let mut track_names: HashMap<&str, usize> = HashMap::new();
    for (i, t) in v.track.iter().enumerate() {
        let at = format!("vip.track[{i}]");
        if t.name.is_empty() {
            f.error(format!("{at}.name"), "a tracked script needs a name");
        }
        if let Some(first) = track_names.insert(&t.name, i) {
            f.error(
                format!("{at}.name"),
                format!(
                    "{:?} is also vip.track[{first}]; names must be unique",
                    t.name
                ),
            );
        }
        if t.command.is_empty() {
            f.error(format!("{at}.command"), "a tracked script needs a command");
        }
        if !(-253..=253).contains(&t.weight) {
            f.error(
                format!("{at}.weight"),
                format!("{} is outside -253..=253 (keepalived's range)", t.weight),
            );
        }
        if t.interval.get().is_zero() {
            f.error(format!("{at}.interval"), "must be greater than 0s");
        }
        if t.rise == 0 {
            f.error(format!("{at}.rise"), "must be at least 1");
        }
        if t.fall == 0 {
            f.error(format!("{at}.fall"), "must be at least 1");
        }
    }
    // The gate's bounds (docs/elections.md "The VIP gate"); the identity is the node's name,
    // checked with the nodes.
    if let Err(e) = v.gate.gate_config("node", v.preempt).validate() {
        f.error("vip.gate", e.to_string());
    }
    if let Some(t) = &v.track_balancer {
        let at = "vip.trackBalancer";
        if !(-253..=253).contains(&t.weight) {
            f.error(
                format!("{at}.weight"),
                format!("{} is outside -253..=253 (keepalived's range)", t.weight),
            );
        }
        if t.interval.get().is_zero() {
            f.error(format!("{at}.interval"), "must be greater than 0s");
        }
        if t.rise == 0 || t.fall == 0 {
            f.error(format!("{at}.rise"), "rise and fall must be at least 1");
        }
        if !c.load_balancer.enabled {
            f.error(
                at,
                "checks the balancer, which loadBalancer.enabled: false turns off",
            );
        }
        // The seed pitfall of tracked weights: one too small never moves the VIP.
        let prios: Vec<u8> = c.vrrp_nodes().map(|n| n.priority).collect();
        if let (Some(hi), Some(lo)) = (prios.iter().max(), prios.iter().min())
            && t.weight < 0
            && i32::from(t.weight).abs() <= i32::from(*hi) - i32::from(*lo)
        {
            f.warn(
                format!("{at}.weight"),
                format!(
                    "{} cannot move the VIP off the highest master ({hi}) to the lowest ({lo}): make it larger than the spread, {}",
                    t.weight,
                    i32::from(*hi) - i32::from(*lo) + 1
                ),
            );
        }
    }
}

fn auth_hmac(c: &Cluster, f: &mut Findings) {
    let Some(h) = &c.vip.auth_hmac else {
        return;
    };
    if c.vip.auth_pass.is_some() {
        f.error(
            "vip.authPass",
            "authPass and authHmac exclude each other (as in keepalived); remove authPass",
        );
    }
    if h.keys.is_empty() {
        f.error(
            "vip.authHmac.keys",
            "no keys; give at least one, e.g. 1: \"file:/etc/haplane/vrrp.key\"",
        );
    }
    for (id, secret) in &h.keys {
        let at = format!("vip.authHmac.keys.{id}");
        if *id == 0 {
            f.error(&at, "key ids are 1..=255");
        }
        match secret.file() {
            Some(path) if !path.is_absolute() => f.error(
                &at,
                format!("file:{} must be an absolute path", path.display()),
            ),
            Some(_) => {}
            // The message names the key, never its value.
            None => {
                if let Err(e) = crate::inline_key_bytes(*id, secret.expose()) {
                    f.error(&at, e.to_string());
                }
            }
        }
    }
    match (h.active_key, h.keys.len()) {
        (Some(id), _) if !h.keys.contains_key(&id) => f.error(
            "vip.authHmac.activeKey",
            format!("{id} is not one of the key ids under keys"),
        ),
        (None, n) if n > 1 => f.error(
            "vip.authHmac.activeKey",
            "several keys: say which one signs adverts (the others are accepted too)",
        ),
        _ => {}
    }
    if let Some(w) = h.time_window {
        let d = w.get();
        if d.subsec_nanos() != 0 || !(1..=300).contains(&d.as_secs()) {
            f.error(
                "vip.authHmac.timeWindow",
                format!("{w} must be whole seconds from 1s to 300s (keepalived's range)"),
            );
        }
        if h.anti_replay == AntiReplay::Monotonic {
            f.warn(
                "vip.authHmac.timeWindow",
                "has no effect with antiReplay: monotonic",
            );
        }
    }
    match h.mode {
        HmacMode::Enforce => {}
        HmacMode::Permissive | HmacMode::ReceiveOnly => f.warn(
            "vip.authHmac.mode",
            "a migration mode: adverts without a trailer are still accepted, so anyone on the segment can still take the VIP; finish with mode: enforce on every node",
        ),
    }
}

fn status(c: &Cluster, f: &mut Findings) {
    let listen = c.status.listen;
    if !listen.ip().is_loopback() {
        f.warn(
            "status.listen",
            format!(
                "{listen} is not a loopback address: /status and /metrics (the cluster's state, no secrets) are open to whoever reaches it; keep 127.0.0.1 unless a scraper must reach it, and firewall it"
            ),
        );
    }
}

fn load_balancer(c: &Cluster, f: &mut Findings) {
    let lb = &c.load_balancer;
    if !lb.enabled {
        return;
    }
    if lb.listen.is_empty() && lb.node_local_listen.is_empty() {
        f.error(
            "loadBalancer.listen",
            "no listen addresses; add vip:6443 or set enabled: false",
        );
    }
    if let Some(backends) = &lb.backends {
        if backends.is_empty() {
            f.error(
                "loadBalancer.backends",
                "an empty list; remove the key to balance across every master",
            );
        }
        for (i, b) in backends.iter().enumerate() {
            if !(1..=256).contains(&b.weight) {
                f.error(
                    format!("loadBalancer.backends[{i}].weight"),
                    "must be 1..=256",
                );
            }
        }
    }
    if !(1..=64).contains(&lb.threads) {
        f.error(
            "loadBalancer.threads",
            format!("{} is outside 1..=64", lb.threads),
        );
    }
    let hc = &lb.health_check;
    if !hc.path.starts_with('/') {
        f.error(
            "loadBalancer.healthCheck.path",
            format!("{:?} must start with '/'", hc.path),
        );
    }
    if parse_status_range(&hc.expect_status).is_none() {
        f.error(
            "loadBalancer.healthCheck.expectStatus",
            format!(
                "{:?} is not a status range; write 200-299 or 200",
                hc.expect_status
            ),
        );
    }
    for (key, d) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if d.get().is_zero() {
            f.error(
                format!("loadBalancer.healthCheck.{key}"),
                "must be greater than 0s",
            );
        }
    }
    if hc.rise == 0 {
        f.error("loadBalancer.healthCheck.rise", "must be at least 1");
    }
    if hc.fall == 0 {
        f.error("loadBalancer.healthCheck.fall", "must be at least 1");
    }
    if hc.kind == crate::CheckType::Https && hc.ca_file.is_none() && !hc.insecure_skip_verify {
        f.error(
            "loadBalancer.healthCheck.caFile",
            "HTTPS checks need the CA that signed the apiservers' certificates (kubeadm: /etc/kubernetes/pki/ca.crt), or insecureSkipVerify: true",
        );
    }
    if hc.cert_file.is_some() != hc.key_file.is_some() {
        f.error(
            "loadBalancer.healthCheck.certFile",
            "certFile and keyFile go together; set both or neither",
        );
    }
    if lb.connect_timeout.get().is_zero() {
        f.error("loadBalancer.connectTimeout", "must be greater than 0s");
    }
    if lb.passive_fall == 0 {
        f.error("loadBalancer.passiveFall", "must be at least 1");
    }
    if lb.connect_retries > 10 {
        f.error(
            "loadBalancer.connectRetries",
            format!(
                "{} is too many: at most 10 (the pauses double from 10ms, so 10 retries already hold a client about 10s)",
                lb.connect_retries
            ),
        );
    }
    if lb.max_connections == 0 {
        f.error("loadBalancer.maxConnections", "must be at least 1");
    }
    if let Some(idle) = lb.idle_timeout
        && idle.get() < Duration::from_secs(3600)
    {
        f.warn(
            "loadBalancer.idleTimeout",
            format!(
                "{idle} cuts idle `kubectl logs -f`, exec and watches (kubeadm#2227); remove it unless you mean it"
            ),
        );
    }
}

/// Parse `200-299` or `200` into an inclusive range.
pub fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = text.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

fn etcd(c: &Cluster, f: &mut Findings) {
    match (&c.etcd, c.vip.fencing) {
        (None, Fencing::Quorum) => f.error(
            "vip.fencing",
            "quorum fencing needs an etcd section to elect through; add etcd: or set fencing: none",
        ),
        (None, _) if !c.elections.is_empty() => f.error(
            "elections",
            "elections need an etcd section; add etcd: {endpoints: [...]}",
        ),
        (None, _) if c.snapshots.is_some() => f.error(
            "snapshots",
            "snapshots need an etcd section; add etcd: {endpoints: [...]}",
        ),
        _ => {}
    }
    if let Some(etcd) = &c.etcd {
        if etcd.endpoints.is_empty() && c.etcd_members().is_empty() {
            f.error(
                "etcd.endpoints",
                "no endpoints and no etcd members to derive them from; list the client URLs",
            );
        }
        for (i, e) in etcd.endpoints.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                f.error(
                    format!("etcd.endpoints[{i}]"),
                    format!("{e:?} needs a scheme: http://HOST:2379 or https://HOST:2379"),
                );
            }
        }
        if etcd.cert_file.is_some() != etcd.key_file.is_some() {
            f.error(
                "etcd.certFile",
                "certFile and keyFile go together; set both or neither",
            );
        }
        let attempt = etcd.attempt_timeout.get();
        if attempt < Duration::from_millis(10) || attempt >= etcd.lease_ttl.get() / 4 {
            f.error(
                "etcd.attemptTimeout",
                format!(
                    "{} is not valid: between 10ms and a quarter of leaseTtl ({}), so a leader can try every member before its deadline",
                    etcd.attempt_timeout, etcd.lease_ttl
                ),
            );
        }
        let (election, heartbeat) = etcd.raft_timers();
        for (key, d) in [
            ("etcd.electionTimeout", etcd.election_timeout),
            ("etcd.heartbeatInterval", etcd.heartbeat_interval),
        ] {
            if let Some(d) = d
                && (d.get().subsec_nanos() % 1_000_000 != 0 || d.get().is_zero())
            {
                f.error(
                    key,
                    format!("{d} is not valid: etcd takes whole milliseconds, above 0"),
                );
            }
        }
        // etcd refuses to start otherwise (its embed.Config.Validate).
        if election < 5 * heartbeat {
            f.error(
                "etcd.electionTimeout",
                format!(
                    "{} is not valid with heartbeatInterval {}: etcd needs the election timeout at least 5 times the heartbeat (its tuning guide says about 10 times)",
                    crate::Dur(election),
                    crate::Dur(heartbeat)
                ),
            );
        } else if election > Duration::from_millis(50_000) {
            f.error(
                "etcd.electionTimeout",
                format!(
                    "{} is not valid: etcd allows at most 50s",
                    crate::Dur(election)
                ),
            );
        }
        let ttl = etcd.lease_ttl.get();
        if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) {
            f.error(
                "etcd.leaseTtl",
                format!(
                    "{} is not valid: etcd leases are whole seconds and the server raises anything under its minimum (2s with default timeouts)",
                    etcd.lease_ttl
                ),
            );
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, e) in c.elections.iter().enumerate() {
        let at = format!("elections[{i}]");
        if !valid_name(&e.name) {
            f.error(
                format!("{at}.name"),
                format!("{:?}: use lower-case letters, digits and '-'", e.name),
            );
        }
        if let Some(first) = names.insert(&e.name, i) {
            f.error(
                format!("{at}.name"),
                format!(
                    "{:?} is also elections[{first}]; names must be unique",
                    e.name
                ),
            );
        }
        if e.manifest.is_none() && e.exec.is_none() {
            f.warn(
                at.clone(),
                "has neither manifest nor exec: the leader is elected but does nothing",
            );
        }
        if let Some(exec) = &e.exec
            && exec.command.is_empty()
        {
            f.error(format!("{at}.exec.command"), "an empty command");
        }
        if let Some(m) = &e.manifest
            && m.source == m.target
        {
            f.error(
                format!("{at}.manifest.target"),
                "source and target are the same file; the target is deleted when not leader",
            );
        }
    }
    if let Some(s) = &c.snapshots {
        if s.keep == 0 {
            f.error("snapshots.keep", "must be at least 1");
        }
        if s.interval.get() < Duration::from_secs(60) {
            f.warn(
                "snapshots.interval",
                "snapshots more often than once a minute load etcd for little gain",
            );
        }
    }
}
