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
    /// The node's roles, comma-separated as in the cluster file: `master`, `lb`, `worker`,
    /// `master,lb`, ...
    pub role: String,
    /// What its daemon runs (/status `runs`: vrrp, balancer, elections, etcd_client, fence),
    /// when it answered and says so.
    pub runs: Option<status_api::Runs>,
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
    pub fence: Option<status_api::Fence>,
    /// The etcd member on this node, when it runs one.
    pub etcd: Option<EtcdView>,
    /// The daemon's etcd client, when it has one: (members up, members known, connected).
    /// An `lb` node has a client (for the fenced VIP) but no member.
    pub etcd_client: Option<EtcdClientView>,
    /// This node is the etcd leader.
    pub etcd_leader: bool,
}

/// A daemon's etcd client as its /status `etcd` section shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EtcdClientView {
    /// The client has reached etcd.
    pub connected: bool,
    /// Members that answer.
    pub members_up: usize,
    /// Members the client knows.
    pub members: usize,
}

impl NodeView {
    /// Whether the node has `role` (`master`, `lb`, `worker`, `etcd`).
    pub fn has_role(&self, role: &str) -> bool {
        self.role.split(',').any(|r| r.trim() == role)
    }

    /// Whether its daemon says it runs `part` (`vrrp`, `elections`, ...); None when unknown.
    pub fn runs(&self, part: &str) -> Option<bool> {
        self.runs.as_ref()?.part(part)
    }
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
    /// The node's roles, comma-separated (`master`, `lb`, `worker`, `master,lb`, ...).
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
    let health = (t.fetch)(addr, "GET", "/health", None);
    // The v3 JSON gateway (etcd 3.4 serves /v3/...): Maintenance.Status.
    let status = (t.fetch)(addr, "POST", "/v3/maintenance/status", Some("{}"));
    read_etcd(health.as_ref(), status.as_ref())
}

/// etcd as one member's answers show it: `health` to `GET /health`, `status` to `POST
/// /v3/maintenance/status` (None: no answer).
pub fn read_etcd(health: Option<&Response>, status: Option<&Response>) -> EtcdView {
    let healthy = health.is_some_and(|r| {
        r.status == 200
            && serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v.get("health").cloned())
                == Some(Value::String("true".into()))
    });
    let st = status
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

/// What one daemon's `/status` says, as `haplane status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonStatus {
    /// Its `runs` section (which parts it runs).
    pub runs: Option<status_api::Runs>,
    /// The first VRRP router's state (MASTER, BACKUP, FAULT, ...).
    pub vrrp_state: Option<String>,
    /// Its effective priority.
    pub priority: Option<u64>,
    /// It says it holds the VIP.
    pub holds_vip: bool,
    /// Balancer backends (up, configured).
    pub lb: Option<(usize, usize)>,
    /// Elections this node leads.
    pub leads: Vec<String>,
    /// Every election's leader as this node sees it (the VIP fence's holder as `vip-fence`).
    pub leaders: Vec<(String, String)>,
    /// The VIP fence section.
    pub fence: Option<status_api::Fence>,
    /// Its etcd client's view of the members.
    pub etcd_client: Option<EtcdClientView>,
}

/// Read a daemon's answer to `GET /status` through the typed contract (crate status-api);
/// None when it is not a 200 with a JSON object in that shape (the node is shown as
/// unreachable). Fields it lacks (another version) take their defaults.
pub fn read_daemon_status(answer: &Response) -> Option<DaemonStatus> {
    if answer.status != 200 {
        return None;
    }
    let st: status_api::Status = serde_json::from_str(&answer.body).ok()?;
    let router = st.router().cloned();
    let leads = st
        .elections
        .iter()
        .filter(|e| e.role.eq_ignore_ascii_case("leader"))
        .map(|e| e.name.clone())
        .collect();
    let mut leaders: Vec<(String, String)> = st
        .elections
        .iter()
        .filter_map(|e| Some((e.name.clone(), e.leader.clone().filter(|l| !l.is_empty())?)))
        .collect();
    // The fenced VIP's election is an election too: its holder as this node sees it.
    if let Some(h) = st
        .fence
        .as_ref()
        .and_then(|f| f.current_holder.clone())
        .filter(|h| !h.is_empty())
    {
        leaders.push(("vip-fence".to_string(), h));
    }
    Some(DaemonStatus {
        runs: st.runs,
        vrrp_state: router
            .as_ref()
            .map(|r| r.state.clone())
            .filter(|s| !s.is_empty()),
        priority: router.as_ref().map(|r| u64::from(r.effective_priority)),
        holds_vip: router.as_ref().is_some_and(|r| r.holds_vip),
        lb: st
            .load_balancer
            .as_ref()
            .map(|b| (b.backends_up(), b.backends.len())),
        leads,
        leaders,
        fence: st.fence,
        etcd_client: st.etcd.map(|e| EtcdClientView {
            connected: e.connected,
            members_up: e.members.iter().filter(|m| m.up).count(),
            members: e.members.len(),
        }),
    })
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
            .as_ref()
            .and_then(read_daemon_status);
        let reachable = st.is_some();
        let d = st.unwrap_or_default();
        for (name, leader) in d.leaders {
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
            runs: d.runs,
            reachable,
            vrrp_state: d.vrrp_state,
            priority: d.priority,
            holds_vip: d.holds_vip,
            vip_present: t.vip_present,
            lb_up: d.lb.map(|(u, _)| u),
            lb_total: d.lb.map(|(_, t)| t),
            leads: d.leads,
            fence: d.fence,
            etcd: t.etcd_addr.map(|a| etcd_view(t, a)),
            etcd_client: d.etcd_client,
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

/// The table `haplane status` prints. A column that applies to no node is left out (ETCD
/// without etcd, LEADS without elections); a cell that does not apply to its node's roles
/// shows `-` (an lb node has no etcd member and runs no elections; a master behind lb nodes
/// runs no VRRP and no VIP balancer).
pub fn render_table(v: &ClusterView) -> String {
    use std::fmt::Write;
    let show_leads = v
        .nodes
        .iter()
        .any(|n| !n.leads.is_empty() || n.runs("elections") == Some(true));
    let show_etcd = v
        .nodes
        .iter()
        .any(|n| n.etcd.is_some() || n.etcd_client.is_some());
    let mut header = vec!["NODE", "ROLE", "ADDRESS", "VRRP", "PRIO", "VIP", "LB UP"];
    if show_leads {
        header.push("LEADS");
    }
    if show_etcd {
        header.push("ETCD");
    }
    let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for n in &v.nodes {
        let vip = match (n.holds_vip, n.vip_present) {
            (true, Some(false)) => "held (not on iface!)".to_string(),
            (false, Some(true)) => "on iface (not held!)".to_string(),
            (true, _) => "held".to_string(),
            (false, _) => "-".to_string(),
        };
        let etcd = match (&n.etcd, &n.etcd_client) {
            (Some(e), _) => format!(
                "{}{}",
                if e.healthy { "healthy" } else { "UNHEALTHY" },
                if n.etcd_leader { ", leader" } else { "" }
            ),
            // No member here (an lb node): its client's view of the masters' members.
            (None, Some(c)) if c.connected => {
                format!("client, {}/{} members up", c.members_up, c.members)
            }
            (None, Some(_)) => "client, NOT CONNECTED".to_string(),
            (None, None) => "-".to_string(),
        };
        let mut row = vec![
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
        ];
        if show_leads {
            row.push(if n.leads.is_empty() {
                "-".into()
            } else {
                n.leads.join(",")
            });
        }
        if show_etcd {
            row.push(etcd);
        }
        rows.push(row.iter().map(|c| printable(c)).collect());
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
        printable(&v.vip_holders.join(" AND "))
    };
    let _ = write!(out, "\nVIP {} held by {holders}", v.vip);
    if v.nodes.iter().any(|n| n.etcd.is_some()) {
        let _ = write!(
            out,
            "; etcd leader: {}",
            printable(v.etcd_leader.as_deref().unwrap_or("none"))
        );
    }
    let _ = writeln!(out);
    for (name, leader) in &v.election_leaders {
        let _ = writeln!(
            out,
            "election {}: leader {}",
            printable(name),
            printable(leader)
        );
    }
    out
}

/// `s` with control characters escaped (`\u{1b}`, `\n`): names and states come from other
/// nodes' answers, and one must not move the cursor, recolour or add rows in the operator's
/// terminal.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

    /// A target whose daemon answers /status with `status` and, when `etcd` is set, whose
    /// etcd member answers /health and Maintenance.Status as member 1 led by member 1.
    fn target(name: &str, role: &str, status: Value, etcd: bool) -> Target<'static> {
        let status_addr: SocketAddr = "127.0.0.1:9470".parse().unwrap();
        let etcd_addr: SocketAddr = "127.0.0.1:2379".parse().unwrap();
        Target {
            name: name.into(),
            address: "192.0.2.11".parse().unwrap(),
            role: role.into(),
            status_addr,
            etcd_addr: etcd.then_some(etcd_addr),
            vip_present: None,
            fetch: Box::new(move |addr, _, path, _| {
                let body = match (addr == status_addr, path) {
                    (true, "/status") => status.to_string(),
                    (false, "/health") => r#"{"health":"true"}"#.into(),
                    (false, "/v3/maintenance/status") => {
                        r#"{"header":{"member_id":"1"},"leader":"1"}"#.into()
                    }
                    _ => return None,
                };
                Some(Response { status: 200, body })
            }),
        }
    }

    fn row<'a>(table: &'a str, node: &str) -> Vec<&'a str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no row for {node}:\n{table}"));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn an_lb_node_shows_its_role_and_its_etcd_client_and_no_member_or_elections() {
        let lb1 = serde_json::json!({
            "roles": ["lb"],
            "runs": {"vrrp": true, "balancer": "vip", "elections": false, "etcd_client": true, "fence": true},
            "vrrp": [{"state": "MASTER", "effective_priority": 150, "holds_vip": true}],
            "load_balancer": {"backends": [{"up": true}, {"up": true}, {"up": true}]},
            "fence": {"armed": true, "leader": true, "current_holder": "lb1"},
            "etcd": {"connected": true, "members": [{"up": true}, {"up": true}, {"up": false}]},
        });
        let m1 = serde_json::json!({
            "roles": ["master"],
            "runs": {"vrrp": false, "balancer": null, "elections": true, "etcd_client": true, "fence": false},
            "vrrp": [],
            "elections": [{"name": "scheduler", "role": "leader", "leader": "m1"}],
            "etcd": {"connected": true, "members": [{"up": true}]},
        });
        let v = gather(
            "c",
            "192.0.2.100".parse().unwrap(),
            &[
                target("lb1", "lb", lb1, false),
                target("m1", "master", m1, true),
            ],
        );
        assert_eq!(v.vip_holders, ["lb1"]);
        assert!(v.nodes[0].has_role("lb") && v.nodes[0].runs("elections") == Some(false));
        assert_eq!(v.nodes[1].runs("balancer"), Some(false));
        let table = render_table(&v);
        assert!(
            table.starts_with(
                "NODE  ROLE    ADDRESS     VRRP    PRIO  VIP   LB UP  LEADS      ETCD"
            ),
            "{table}"
        );
        assert_eq!(
            row(&table, "lb1"),
            [
                "lb1",
                "lb",
                "192.0.2.11",
                "MASTER",
                "150",
                "held",
                "3/3",
                "-",
                "client, 2/3 members up"
            ],
            "{table}"
        );
        assert_eq!(
            row(&table, "m1"),
            [
                "m1",
                "master",
                "192.0.2.11",
                "-",
                "-",
                "-",
                "-",
                "scheduler",
                "healthy, leader"
            ],
            "{table}"
        );
        assert!(
            table.contains("VIP 192.0.2.100 held by lb1; etcd leader: m1"),
            "{table}"
        );
        assert!(table.contains("election vip-fence: leader lb1"), "{table}");
    }

    #[test]
    fn columns_that_apply_to_no_node_are_left_out() {
        let m1 = serde_json::json!({
            "roles": ["master"],
            "runs": {"vrrp": true, "balancer": "vip", "elections": false, "etcd_client": false, "fence": false},
            "vrrp": [{"state": "MASTER", "effective_priority": 110, "holds_vip": true}],
        });
        let v = gather(
            "c",
            "192.0.2.100".parse().unwrap(),
            &[target("m1", "master", m1, false)],
        );
        let table = render_table(&v);
        assert!(
            !table.contains("LEADS") && !table.contains("ETCD"),
            "{table}"
        );
        assert!(!table.contains("etcd leader"), "{table}");
        assert_eq!(
            row(&table, "m1"),
            ["m1", "master", "192.0.2.11", "MASTER", "110", "held", "-"]
        );
    }

    #[test]
    fn etcd_gateway_ids_are_shown_in_hex_like_etcdctl() {
        assert_eq!(hex_id(&Value::String("255".into())).as_deref(), Some("ff"));
        assert_eq!(hex_id(&Value::Bool(true)), None);
    }
}
