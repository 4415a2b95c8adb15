//! What this node runs, decided once from its roles by the same helpers `haplane check` and
//! `haplane plan` use (`Cluster::runs_vrrp`, `runs_elections`, `uses_etcd`), so the daemon,
//! the rendered files and preflight never disagree, and shown in /status and /metrics.
//!
//! Without `lb` nodes the masters carry the VIP and its balancer; with them (seed 004's
//! lb-1 and lb-2) the `lb` nodes do, and the masters only run the elections. An `lb` node has
//! no etcd member: with quorum fencing it is a client of the masters' etcd for the VIP's
//! election only.

use config::{Cluster, Fencing, Node, Role};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;

use crate::balance::{self, BalancerPlace};
use crate::status::Section;

/// The parts of the daemon this node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duties {
    /// The node's roles as the cluster file gives them.
    #[serde(skip)]
    pub roles: Vec<Role>,
    /// A VRRP router for the VIP.
    pub vrrp: bool,
    /// Where the balancer listens: `vip` (loadBalancer.listen) or `node-local`
    /// (loadBalancer.nodeLocalListen); None when it runs none.
    pub balancer: Option<BalancerPlace>,
    /// The configured elections and snapshots.
    pub elections: bool,
    /// An etcd client (for the elections, the fenced VIP or both); never an etcd member.
    pub etcd_client: bool,
    /// The VIP fenced by etcd quorum.
    pub fence: bool,
}

impl Duties {
    /// What `node` runs in `cluster`.
    pub fn of(cluster: &Cluster, node: &Node) -> Duties {
        let vrrp = cluster.runs_vrrp(node);
        let etcd_client = cluster.etcd.is_some() && cluster.uses_etcd(node);
        Duties {
            roles: node.roles.clone(),
            vrrp,
            balancer: balance::place(cluster, node),
            elections: cluster.runs_elections(node),
            etcd_client,
            fence: etcd_client && vrrp && cluster.fencing() == Fencing::Quorum,
        }
    }

    /// One line for the log: `roles [lb]: vrrp, balancer on vip, etcd client (fence)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.vrrp {
            parts.push("vrrp".to_string());
        }
        if let Some(p) = self.balancer {
            parts.push(format!("balancer on {}", p.as_str()));
        }
        if self.elections {
            parts.push("elections".to_string());
        }
        if self.etcd_client {
            parts.push(
                if self.fence && !self.elections {
                    "etcd client (fence)"
                } else {
                    "etcd client"
                }
                .to_string(),
            );
        }
        let roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        format!(
            "roles [{}]: {}",
            roles.join(", "),
            if parts.is_empty() {
                "nothing".to_string()
            } else {
                parts.join(", ")
            }
        )
    }
}

/// /status `roles`: the node's roles; /metrics `haplane_node_role`.
pub struct RolesSection(pub Vec<Role>);

impl Section for RolesSection {
    fn json(&self) -> serde_json::Value {
        serde_json::Value::from(self.0.iter().map(|r| r.as_str()).collect::<Vec<_>>())
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "haplane_node_role",
            "1 for each role this node has in the cluster file (master, lb, worker, etcd).",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.0 {
            ConstGauge::new(1i64).encode(m.encode_family(&[("role", r.as_str())])?)?;
        }
        Ok(())
    }
}

/// /status `runs`: what the daemon runs on this node; /metrics `haplane_node_runs`.
pub struct RunsSection(pub Duties);

impl Section for RunsSection {
    fn json(&self) -> serde_json::Value {
        let d = &self.0;
        serde_json::to_value(status_api::Runs {
            vrrp: d.vrrp,
            balancer: d.balancer,
            elections: d.elections,
            etcd_client: d.etcd_client,
            fence: d.fence,
        })
        .unwrap_or_default()
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "haplane_node_runs",
            "1 for each part of the daemon this node runs (vrrp, balancer, elections, etcd_client, fence).",
            None,
            MetricType::Gauge,
        )?;
        let d = &self.0;
        for (part, on) in [
            ("vrrp", d.vrrp),
            ("balancer", d.balancer.is_some()),
            ("elections", d.elections),
            ("etcd_client", d.etcd_client),
            ("fence", d.fence),
        ] {
            ConstGauge::new(i64::from(on)).encode(m.encode_family(&[("part", part)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cluster(nodes: &str, fencing: &str) -> Cluster {
        let text = format!(
            "cluster: t\nnodes:\n{nodes}vip: {{address: 192.0.2.100/24, interface: eth0, vrid: 51, fencing: {fencing}}}\netcd: {{endpoints: [\"http://192.0.2.11:2379\"]}}\n"
        );
        Cluster::from_yaml(&text, Path::new("t.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .0
    }

    const SEED_004: &str = "  - {name: lb1, address: 192.0.2.21, roles: [lb]}\n  - {name: lb2, address: 192.0.2.22, roles: [lb]}\n  - {name: m1, address: 192.0.2.11}\n  - {name: m2, address: 192.0.2.12}\n  - {name: m3, address: 192.0.2.13}\n  - {name: w1, address: 192.0.2.31, roles: [worker]}\n";

    fn duties(c: &Cluster, name: &str) -> Duties {
        Duties::of(c, c.node(name).unwrap())
    }

    #[test]
    fn an_lb_node_runs_vrrp_and_the_vip_balancer_and_is_only_an_etcd_client_for_the_fence() {
        let c = cluster(SEED_004, "quorum");
        let d = duties(&c, "lb1");
        assert!(d.vrrp && d.fence && d.etcd_client, "{d:?}");
        assert_eq!(d.balancer, Some(BalancerPlace::Vip));
        assert!(!d.elections, "an lb node runs no elections: {d:?}");
        assert_eq!(
            d.describe(),
            "roles [lb]: vrrp, balancer on vip, etcd client (fence)"
        );
    }

    #[test]
    fn masters_behind_lb_nodes_run_the_elections_but_no_vrrp_no_fence_and_no_vip_balancer() {
        let c = cluster(SEED_004, "quorum");
        let d = duties(&c, "m1");
        assert!(d.elections && d.etcd_client, "{d:?}");
        assert!(!d.vrrp && !d.fence, "{d:?}");
        assert_eq!(d.balancer, None);
        assert_eq!(duties(&c, "w1").balancer, Some(BalancerPlace::NodeLocal));
        assert!(!duties(&c, "w1").etcd_client);
    }

    #[test]
    fn an_unfenced_lb_node_does_not_talk_to_etcd_at_all() {
        let c = cluster(SEED_004, "none");
        let d = duties(&c, "lb2");
        assert!(d.vrrp && !d.etcd_client && !d.fence, "{d:?}");
    }

    #[test]
    fn without_lb_nodes_the_masters_carry_the_vip_as_before() {
        let c = cluster(
            "  - {name: m1, address: 192.0.2.11}\n  - {name: m2, address: 192.0.2.12}\n  - {name: m3, address: 192.0.2.13}\n",
            "quorum",
        );
        let d = duties(&c, "m1");
        assert!(d.vrrp && d.fence && d.elections && d.etcd_client, "{d:?}");
        assert_eq!(d.balancer, Some(BalancerPlace::Vip));
    }
}
