//! The apiserver balancer inside the daemon: config mapping, status, metrics and reload.

use std::net::SocketAddr;
use std::sync::Arc;

use config::{CheckType, Cluster, Node, Role};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::status::Section;

/// The CA file the HTTPS checks wait for, when it does not exist yet.
pub fn missing_ca(cluster: &Cluster) -> Option<std::path::PathBuf> {
    let hc = &cluster.load_balancer.health_check;
    match (&hc.ca_file, hc.kind, hc.insecure_skip_verify) {
        (Some(path), CheckType::Https, false) if !path.exists() => Some(path.clone()),
        _ => None,
    }
}

/// Where a node's balancer listens (part of the /status contract).
pub use status_api::BalancerPlace;

/// Where `node`'s balancer listens: on the VIP's listen addresses when it runs VRRP for the
/// VIP (the masters, or the `lb` nodes when there are any), node-local on a worker, else
/// nowhere (a master behind `lb` nodes balances nothing). None as well when the balancer is
/// disabled or the list for its place is empty.
pub fn place(cluster: &Cluster, node: &Node) -> Option<BalancerPlace> {
    let c = &cluster.load_balancer;
    if !c.enabled {
        return None;
    }
    let (place, listens) = if cluster.runs_vrrp(node) {
        (BalancerPlace::Vip, &c.listen)
    } else if node.is(Role::Worker) {
        (BalancerPlace::NodeLocal, &c.node_local_listen)
    } else {
        return None;
    };
    (!listens.is_empty()).then_some(place)
}

/// The balancer settings for `node`, listening where [`place`] says. None when this node
/// balances nothing.
///
/// Before `kubeadm init` the cluster CA does not exist, yet the VIP and the balancer must
/// already run; until the CA appears, HTTPS checks fall back to TCP connects.
pub fn lb_config(cluster: &Cluster, node: &Node) -> Option<lb::LbConfig> {
    let c = &cluster.load_balancer;
    let listens = match place(cluster, node)? {
        BalancerPlace::Vip => &c.listen,
        BalancerPlace::NodeLocal => &c.node_local_listen,
    };
    let listen: Vec<SocketAddr> = listens.iter().map(|l| cluster.resolve_listen(*l)).collect();
    let hc = &c.health_check;
    let (lo, hi) = config::parse_status_range(&hc.expect_status).unwrap_or((200, 299));
    let http = lb::HttpCheck {
        path: hc.path.clone(),
        host: None,
        expect_status: lo..=hi,
    };
    let kind = match hc.kind {
        CheckType::Https if missing_ca(cluster).is_some() => lb::CheckKind::Tcp,
        CheckType::Tcp => lb::CheckKind::Tcp,
        CheckType::Http => lb::CheckKind::Http(http),
        CheckType::Https => lb::CheckKind::Https(
            http,
            lb::TlsCheck {
                ca_file: hc.ca_file.clone(),
                client_cert: hc.cert_file.clone(),
                client_key: hc.key_file.clone(),
                insecure_skip_verify: hc.insecure_skip_verify,
                server_name: None,
            },
        ),
    };
    Some(lb::LbConfig {
        listen,
        backends: cluster
            .lb_backends()
            .iter()
            .map(|b| lb::BackendConfig {
                addr: b.address,
                weight: b.weight,
            })
            .collect(),
        policy: match c.policy {
            config::Policy::RoundRobin => lb::Policy::RoundRobin,
            config::Policy::LeastConnections => lb::Policy::LeastConnections,
            config::Policy::RandomTwoChoices => lb::Policy::RandomTwoChoices,
        },
        health_check: lb::HealthCheckConfig {
            kind,
            interval: hc.interval.get(),
            timeout: hc.timeout.get(),
            rise: hc.rise,
            fall: hc.fall,
            ..lb::HealthCheckConfig::default()
        },
        connect_timeout: c.connect_timeout.get(),
        passive_fall: c.passive_fall,
        connect_retries: c.connect_retries,
        shutdown_sessions_on_down: c.shutdown_sessions_on_down,
        backend_drain_timeout: c.backend_drain_timeout.get(),
        slow_start: c.slow_start.get(),
        idle_timeout: c.idle_timeout.map(|d| d.get()),
        tcp_keepalive: c.tcp_keepalive.map(|d| d.get()),
        max_connections: c.max_connections,
        max_connections_per_backend: c.max_connections_per_backend,
        drain_timeout: c.drain_timeout.get(),
        splice: c.splice,
        threads: c.threads,
        // The built-in `balancer` tracked check sends its request through an internal listener;
        // the apiservers' certificates carry the VIP, so that is the name to verify.
        path_probe: (cluster.runs_vrrp(node) && cluster.vip.track_balancer.is_some()).then(|| {
            lb::PathProbe {
                server_name: Some(cluster.vip.address.addr.to_string()),
            }
        }),
        ..lb::LbConfig::default()
    })
}

/// The balancer's part of /status and /metrics.
pub struct BalancerSection(pub Arc<lb::Balancer>);

impl Section for BalancerSection {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.0.snapshot()).unwrap_or_default()
    }

    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_up",
                "1 while the backend passes its health checks.",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstGauge::new(i64::from(b.up))
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_state",
                "1 for the backend's health: up, draining (answers but not ready: no new sessions, established ones continue) or dead (sessions closed).",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                for state in lb::Health::ALL {
                    ConstGauge::new(i64::from(b.state == state)).encode(m.encode_family(&[
                        ("backend", addr.as_str()),
                        ("state", state.as_str()),
                    ])?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_admin_drain",
                "1 while an operator has drained the backend (haplane lb drain).",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstGauge::new(i64::from(b.admin == lb::Admin::Drain))
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_weight_ramp",
                "Share of its weight the backend gets now: below 1 during its slow start.",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstGauge::new(b.slow_start_ramp.unwrap_or(1.0))
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_active_connections",
                "Open tunnels to the backend.",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstGauge::new(b.active_connections as i64)
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_backend_check_latency_seconds",
                "Duration of the last health check.",
                None,
                MetricType::Gauge,
            )?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstGauge::new(b.check_latency_seconds.unwrap_or(f64::NAN))
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        type Get = fn(&lb::BackendStatus) -> u64;
        let counters: [(&str, &str, Get); 10] = [
            (
                "haplane_lb_backend_connections",
                "Tunnels opened to the backend.",
                |b| b.total_connections,
            ),
            (
                "haplane_lb_backend_bytes_to_backend",
                "Bytes sent to the backend.",
                |b| b.bytes_to_backend,
            ),
            (
                "haplane_lb_backend_bytes_from_backend",
                "Bytes received from the backend.",
                |b| b.bytes_from_backend,
            ),
            (
                "haplane_lb_backend_connect_errors",
                "Failed connects to the backend.",
                |b| b.connect_errors,
            ),
            (
                "haplane_lb_backend_connects_overloaded",
                "Failed connects (resets, timeouts) not counted toward passiveFall because others succeeded meanwhile.",
                |b| b.connects_overloaded,
            ),
            (
                "haplane_lb_backend_sessions_closed_on_down",
                "Sessions closed because the backend was marked dead.",
                |b| b.sessions_closed_on_down,
            ),
            (
                "haplane_lb_backend_sessions_closed_drain_timeout",
                "Sessions closed because the backend stayed draining past backendDrainTimeout.",
                |b| b.sessions_closed_drain_timeout,
            ),
            (
                "haplane_lb_backend_dead_transitions",
                "Times the backend went from up to dead.",
                |b| b.down_transitions,
            ),
            (
                "haplane_lb_backend_draining_transitions",
                "Times the backend went from up to draining.",
                |b| b.drain_transitions,
            ),
            (
                "haplane_lb_backend_close_bursts",
                "Times the backend closed a burst of idle sessions at once and became suspect until a check passed.",
                |b| b.close_bursts,
            ),
        ];
        for (name, help, get) in counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for b in &s.backends {
                let addr = b.address.to_string();
                ConstCounter::new(get(b))
                    .encode(m.encode_family(&[("backend", addr.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "haplane_lb_active_connections",
                "Open client connections.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(s.active_connections as i64)
                .encode(m.encode_family(&[("listener", "all")])?)?;
        }
        Ok(())
    }
}
