//! `haplane status`: one table for the cluster, from each daemon's /status and from etcd.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::http::{self, Response};

/// How long one node may take to answer.
const TIMEOUT: Duration = Duration::from_millis(800);

/// etcd as one member sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EtcdView {
    /// GET /health said healthy (the member has a leader and answers reads).
    pub healthy: bool,
    /// This member's id (hex), when it answered.
    pub member_id: Option<String>,
    /// The raft leader's member id (hex) as this member sees it.
    pub leader_id: Option<String>,
}

/// One node's row.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Node address.
    pub address: IpAddr,
    /// `master` or `worker`.
    pub role: String,
    /// Its daemon answered /status.
    pub reachable: bool,
    /// VRRP state (MASTER, BACKUP, FAULT, ...).
    pub vrrp_state: Option<String>,
    /// Effective VRRP priority.
    pub priority: Option<u64>,
    /// The daemon says it holds the VIP.
    pub holds_vip: bool,
    /// The kernel has the VIP on this node's interface (lab only: checked in its namespace).
    pub vip_present: Option<bool>,
    /// Balancer backends marked up.
    pub lb_up: Option<usize>,
    /// Balancer backends configured.
    pub lb_total: Option<usize>,
    /// Elections this node leads.
    pub leads: Vec<String>,
    /// The VIP fence, as the daemon reports it.
    pub fence: Option<Value>,
    /// The etcd member on this node, when it runs one.
    pub etcd: Option<EtcdView>,
    /// This node is the etcd leader.
    pub etcd_leader: bool,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// Cluster name.
    pub cluster: String,
    /// The VIP.
    pub vip: IpAddr,
    /// Every node whose daemon says it holds the VIP (more than one is a split brain).
    pub vip_holders: Vec<String>,
    /// The etcd leader's node name, when the members agree on one.
    pub etcd_leader: Option<String>,
    /// Election name -> leader, as the daemons report it.
    pub election_leaders: BTreeMap<String, String>,
    /// One row per node.
    pub nodes: Vec<NodeView>,
}

/// Sends one request: (address, method, path, body); None when there is no answer.
pub type Fetch<'a> = Box<dyn Fn(SocketAddr, &str, &str, Option<&str>) -> Option<Response> + 'a>;

/// How to reach one node: a request function (which may run inside a namespace).
pub struct Target<'a> {
    /// Node name.
    pub name: String,
    /// Node address.
    pub address: IpAddr,
    /// `master` or `worker`.
    pub role: String,
    /// Where its daemon's /status is, from wherever `fetch` runs.
    pub status_addr: SocketAddr,
    /// Where its etcd member's client URL is, when it has one.
    pub etcd_addr: Option<SocketAddr>,
    /// Whether the VIP is on its interface (lab only).
    pub vip_present: Option<bool>,
    /// Sends one request: (address, method, path, body).
    pub fetch: Fetch<'a>,
}

/// A plain request from this process's namespace.
pub fn direct(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Option<Response> {
    http::request(addr, method, path, body, TIMEOUT).ok()
}

/// etcd's JSON gateway prints uint64 ids as decimal strings; `etcdctl` shows them in hex.
fn hex_id(v: &Value) -> Option<String> {
    let n = match v {
        Value::String(s) => s.parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    Some(format!("{n:x}"))
}

fn etcd_view(t: &Target<'_>, addr: SocketAddr) -> EtcdView {
    let healthy = (t.fetch)(addr, "GET", "/health", None)
        .map(|r| {
            r.status == 200
                && serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("health").cloned())
                    == Some(Value::String("true".into()))
        })
        .unwrap_or(false);
    // The v3 JSON gateway (etcd 3.4 serves /v3/...): Maintenance.Status.
    let st = (t.fetch)(addr, "POST", "/v3/maintenance/status", Some("{}"))
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok());
    let member_id = st
        .as_ref()
        .and_then(|v| v.pointer("/header/member_id"))
        .and_then(hex_id);
    let leader_id = st
        .as_ref()
        .and_then(|v| v.get("leader"))
        .and_then(hex_id)
        .filter(|l| l != "0");
    EtcdView {
        healthy,
        member_id,
        leader_id,
    }
}

/// Counts (up, total) backends in the balancer's /status section (tolerant of its shape).
fn lb_counts(lb: &Value) -> Option<(usize, usize)> {
    let backends = lb
        .get("backends")
        .or_else(|| lb.pointer("/status/backends"))?
        .as_array()?;
    let up = backends
        .iter()
        .filter(|b| b.get("up").and_then(Value::as_bool) == Some(true))
        .count();
    Some((up, backends.len()))
}

/// Elections led by this node, and every election's leader as this node sees it.
fn elections(st: &Value) -> (Vec<String>, Vec<(String, String)>) {
    let mut leads = Vec::new();
    let mut leaders = Vec::new();
    let list = st
        .get("elections")
        .and_then(|e| {
            e.as_array()
                .cloned()
                .or_else(|| e.get("elections")?.as_array().cloned())
        })
        .unwrap_or_default();
    for e in list {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        let role = e.get("role").and_then(Value::as_str).unwrap_or("");
        if role.eq_ignore_ascii_case("leader") {
            leads.push(name.to_string());
        }
        if let Some(l) = e.get("leader").and_then(Value::as_str)
            && !l.is_empty()
        {
            leaders.push((name.to_string(), l.to_string()));
        }
    }
    (leads, leaders)
}

/// The node an election identity belongs to: the identity itself when it is a node name, or
/// the node name it starts with (`m1@192.0.2.11`, `m1-4242`); else the identity unchanged.
pub fn node_of(identity: &str, names: &[String]) -> String {
    names
        .iter()
        .filter(|n| {
            identity == n.as_str()
                || identity
                    .strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.starts_with(|c: char| !c.is_ascii_alphanumeric()))
        })
        .max_by_key(|n| n.len())
        .cloned()
        .unwrap_or_else(|| identity.to_string())
}

/// Queries every target and assembles the cluster view.
pub fn gather(cluster: &str, vip: IpAddr, targets: &[Target<'_>]) -> ClusterView {
    let mut nodes = Vec::new();
    let mut leaders_seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for t in targets {
        let st = (t.fetch)(t.status_addr, "GET", "/status", None)
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok());
        let router = st.as_ref().and_then(|s| s.pointer("/vrrp/0"));
        let (lb_up, lb_total) = st
            .as_ref()
            .and_then(|s| s.get("load_balancer"))
            .and_then(lb_counts)
            .map_or((None, None), |(u, t)| (Some(u), Some(t)));
        let (leads, mut leaders) = st.as_ref().map(elections).unwrap_or_default();
        // The fenced VIP's election is an election too: its holder as this node sees it.
        if let Some(h) = st
            .as_ref()
            .and_then(|s| s.pointer("/fence/current_holder"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
        {
            leaders.push(("vip-fence".to_string(), h.to_string()));
        }
        for (name, leader) in leaders {
            *leaders_seen
                .entry(name)
                .or_default()
                .entry(leader)
                .or_default() += 1;
        }
        nodes.push(NodeView {
            name: t.name.clone(),
            address: t.address,
            role: t.role.clone(),
            reachable: st.is_some(),
            vrrp_state: router
                .and_then(|r| r.get("state"))
                .and_then(Value::as_str)
                .map(str::to_string),
            priority: router
                .and_then(|r| r.get("effective_priority"))
                .and_then(Value::as_u64),
            holds_vip: router
                .and_then(|r| r.get("holds_vip"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            vip_present: t.vip_present,
            lb_up,
            lb_total,
            leads,
            fence: st.as_ref().and_then(|s| s.get("fence")).cloned(),
            etcd: t.etcd_addr.map(|a| etcd_view(t, a)),
            etcd_leader: false,
        });
    }
    // The etcd leader: the member id most members name, mapped to the node that has it.
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        if let Some(l) = n.etcd.as_ref().and_then(|e| e.leader_id.clone()) {
            *votes.entry(l).or_default() += 1;
        }
    }
    let leader_id = votes.into_iter().max_by_key(|(_, c)| *c).map(|(id, _)| id);
    let mut etcd_leader = None;
    for n in &mut nodes {
        if let (Some(id), Some(e)) = (&leader_id, &n.etcd)
            && e.member_id.as_ref() == Some(id)
        {
            n.etcd_leader = true;
            etcd_leader = Some(n.name.clone());
        }
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let election_leaders = leaders_seen
        .into_iter()
        .filter_map(|(name, m)| Some((name, m.into_iter().max_by_key(|(_, c)| *c)?.0)))
        .map(|(name, identity)| (name, node_of(&identity, &names)))
        .collect();
    ClusterView {
        cluster: cluster.to_string(),
        vip,
        vip_holders: nodes
            .iter()
            .filter(|n| n.holds_vip)
            .map(|n| n.name.clone())
            .collect(),
        etcd_leader,
        election_leaders,
        nodes,
    }
}

/// The table `haplane status` prints.
pub fn render_table(v: &ClusterView) -> String {
    use std::fmt::Write;
    let mut rows = vec![
        [
            "NODE", "ROLE", "ADDRESS", "VRRP", "PRIO", "VIP", "LB UP", "LEADS", "ETCD",
        ]
        .map(String::from),
    ];
    for n in &v.nodes {
        let vip = match (n.holds_vip, n.vip_present) {
            (true, Some(false)) => "held (not on iface!)".to_string(),
            (false, Some(true)) => "on iface (not held!)".to_string(),
            (true, _) => "held".to_string(),
            (false, _) => "-".to_string(),
        };
        let etcd = match &n.etcd {
            None => "-".to_string(),
            Some(e) => format!(
                "{}{}",
                if e.healthy { "healthy" } else { "UNHEALTHY" },
                if n.etcd_leader { ", leader" } else { "" }
            ),
        };
        rows.push([
            n.name.clone(),
            n.role.clone(),
            n.address.to_string(),
            if n.reachable {
                n.vrrp_state.clone().unwrap_or_else(|| "-".into())
            } else {
                "UNREACHABLE".into()
            },
            n.priority.map_or("-".into(), |p| p.to_string()),
            vip,
            match (n.lb_up, n.lb_total) {
                (Some(u), Some(t)) => format!("{u}/{t}"),
                _ => "-".into(),
            },
            if n.leads.is_empty() {
                "-".into()
            } else {
                n.leads.join(",")
            },
            etcd,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let holders = if v.vip_holders.is_empty() {
        "nobody".to_string()
    } else {
        v.vip_holders.join(" AND ")
    };
    let _ = writeln!(
        out,
        "\nVIP {} held by {holders}; etcd leader: {}",
        v.vip,
        v.etcd_leader.as_deref().unwrap_or("none")
    );
    for (name, leader) in &v.election_leaders {
        let _ = writeln!(out, "election {name}: leader {leader}");
    }
    out
}

/// Whether `ip` is an address of this machine (binding to it succeeds only then).
pub fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Parses `http://HOST:PORT` (an etcd endpoint) into a socket address.
pub fn endpoint_addr(url: &str) -> Option<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next()?;
    hostport.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_election_identity_maps_to_its_node_but_not_to_a_longer_name() {
        let names = vec!["m1".to_string(), "m10".to_string()];
        assert_eq!(node_of("m1", &names), "m1");
        assert_eq!(node_of("m1@192.0.2.11", &names), "m1");
        assert_eq!(node_of("m10-77", &names), "m10");
        assert_eq!(node_of("elsewhere", &names), "elsewhere");
    }

    #[test]
    fn etcd_gateway_ids_are_shown_in_hex_like_etcdctl() {
        assert_eq!(hex_id(&Value::String("255".into())).as_deref(), Some("ff"));
        assert_eq!(hex_id(&Value::Bool(true)), None);
    }
}
