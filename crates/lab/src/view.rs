//! The lab's view of itself: every node's /status, etcd health and VIP address, read inside
//! its namespace (`haplane status --lab`, the drill's and chaos's samplers), and the rules
//! for "healthy" that `lab up`, the drill and chaos wait for.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::state::LabState;
use crate::status::{self, ClusterView, Target};

/// Request targets for every node of an open lab: requests run inside each node's namespace.
pub fn lab_targets<'a>(
    st: &LabState,
    topo: &'a netlab::Topology,
    timeout: Duration,
) -> Vec<Target<'a>> {
    let mut out = Vec::new();
    for n in st.nodes() {
        let Ok(host) = topo.host(&n.name) else {
            continue;
        };
        let master = st.is_master(&n.name);
        let role = st.role(&n.name);
        out.push(Target {
            name: n.name.clone(),
            address: IpAddr::V4(n.address),
            role: role.to_string(),
            status_addr: st.status_addr(),
            etcd_addr: master.then(|| st.etcd_local()),
            // Masters are checked behind lb nodes too: one holding the VIP would be a bug.
            vip_present: if role != "worker" {
                host.has_address(IpAddr::V4(st.vip)).ok()
            } else {
                None
            },
            fetch: Box::new(move |addr, method, path, body| {
                let (method, path, body) = (
                    method.to_string(),
                    path.to_string(),
                    body.map(str::to_string),
                );
                host.enter(move || {
                    crate::http::request(addr, &method, &path, body.as_deref(), timeout).ok()
                })
                .ok()
                .flatten()
            }),
        });
    }
    out
}

/// The lab's cluster view right now.
pub fn lab_view(st: &LabState, topo: &netlab::Topology) -> ClusterView {
    lab_view_within(st, topo, Duration::from_millis(800))
}

/// The lab's view with a short per-request timeout (a frozen node must not stall a sampler).
pub fn lab_view_fast(st: &LabState, topo: &netlab::Topology) -> ClusterView {
    lab_view_within(st, topo, Duration::from_millis(150))
}

fn lab_view_within(st: &LabState, topo: &netlab::Topology, timeout: Duration) -> ClusterView {
    let targets = lab_targets(st, topo, timeout);
    status::gather(&format!("lab-{}", st.name), IpAddr::V4(st.vip), &targets)
}

/// What is still wrong with the lab, or None when it is healthy: every etcd member healthy,
/// every daemon answering and connected to etcd where it uses it, exactly one VIP on an
/// interface, every balancer seeing all backends.
pub fn unhealthy(st: &LabState, v: &ClusterView) -> Option<String> {
    let mut problems = Vec::new();
    for n in &v.nodes {
        if !n.reachable {
            problems.push(format!("{}: daemon not answering", n.name));
        }
        if let Some(e) = &n.etcd
            && !e.healthy
        {
            problems.push(format!("{}: etcd not healthy", n.name));
        }
        // The daemon's etcd client (elections, the fenced VIP): an lb node has one but no member.
        if n.etcd_client.as_ref().is_some_and(|c| !c.connected) {
            problems.push(format!("{}: daemon not connected to etcd yet", n.name));
        }
        // A fenced VIP: armed once the node reached etcd, and then held only by the leader of
        // the VIP's election (between arming and winning it, the VIP briefly goes).
        if let Some(f) = &n.fence {
            if !f.armed {
                problems.push(format!("{}: VIP fence not armed yet", n.name));
            } else if n.vip_present == Some(true) && !f.leader {
                problems.push(format!(
                    "{}: has the VIP but does not lead its election yet",
                    n.name
                ));
            }
        }
        if let (Some(u), Some(t)) = (n.lb_up, n.lb_total)
            && u < t
        {
            problems.push(format!("{}: balancer sees {u}/{t} backends up", n.name));
        }
    }
    let present: Vec<&str> = v
        .nodes
        .iter()
        .filter(|n| n.vip_present == Some(true))
        .map(|n| n.name.as_str())
        .collect();
    if present.len() != 1 {
        problems.push(format!(
            "VIP {} on {} nodes {:?}",
            st.vip,
            present.len(),
            present
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Waits until the lab is healthy; returns the last view, or what was still wrong.
pub fn wait_healthy(
    st: &LabState,
    topo: &netlab::Topology,
    limit: Duration,
) -> Result<ClusterView, String> {
    let deadline = Instant::now() + limit;
    loop {
        let v = lab_view(st, topo);
        match unhealthy(st, &v) {
            None => return Ok(v),
            Some(p) if Instant::now() >= deadline => return Err(p),
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
