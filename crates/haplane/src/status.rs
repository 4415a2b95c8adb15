//! /healthz, /status (JSON) and /metrics (Prometheus) on a local address.
//!
//! Every subsystem publishes a section; the server renders them at request time, so nothing is
//! copied on the hot path and a scrape always sees current numbers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// A failure of the status server.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The listen address is taken or not local.
    #[error("cannot listen for /status on {addr}: {error}; change status.listen")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

// The /status document's types are the contract readers share (crate status-api).
pub use status_api::{
    AuthHmac as AuthHmacStatus, Check as CheckStatus, Router as RouterStatus, RouterCounters,
};

/// A subsystem that contributes to /status and /metrics (the balancer, elections, ...).
pub trait Section: Send + Sync + 'static {
    /// Its part of the /status document.
    fn json(&self) -> serde_json::Value;
    /// Its metrics.
    fn metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error>;
}

/// Everything the status server shows.
pub struct Hub {
    pub node: String,
    pub cluster: String,
    started: f64,
    routers: RwLock<Vec<RouterStatus>>,
    sections: RwLock<BTreeMap<String, Arc<dyn Section>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("node", &self.node).finish()
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Hub {
    pub fn new(cluster: &str, node: &str) -> Arc<Hub> {
        Arc::new(Hub {
            node: node.to_string(),
            cluster: cluster.to_string(),
            started: unix_now(),
            routers: RwLock::new(Vec::new()),
            sections: RwLock::new(BTreeMap::new()),
        })
    }

    /// Replace the status of router `index` (routers are numbered in config order).
    pub fn set_router(&self, index: usize, status: RouterStatus) {
        let mut routers = self.routers.write().unwrap_or_else(|e| e.into_inner());
        if routers.len() <= index {
            routers.resize(index + 1, status.clone());
        }
        routers[index] = status;
    }

    pub fn add_section(&self, name: &str, section: Arc<dyn Section>) {
        self.sections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), section);
    }

    pub fn remove_section(&self, name: &str) {
        self.sections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    pub fn routers(&self) -> Vec<RouterStatus> {
        self.routers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The /status document.
    pub fn json(&self) -> serde_json::Value {
        let header = status_api::Header {
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started: self.started,
            now: unix_now(),
        };
        let mut doc = serde_json::to_value(header).unwrap_or_default();
        doc["vrrp"] = serde_json::to_value(self.routers()).unwrap_or_default();
        let sections = self.sections.read().unwrap_or_else(|e| e.into_inner());
        for (name, section) in sections.iter() {
            doc[name.as_str()] = section.json();
        }
        doc
    }

    /// The /metrics text (OpenMetrics).
    pub fn metrics_text(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(HubCollector(self.clone())));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}

type RouterGauge = fn(&RouterStatus) -> i64;
type RouterCounter = fn(&RouterCounters) -> u64;

#[derive(Debug)]
struct HubCollector(Arc<Hub>);

fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = &self.0;
        let routers = hub.routers();
        {
            let mut m = family(
                &mut encoder,
                "haplane_up",
                "The daemon is running.",
                MetricType::Gauge,
            )?;
            let labels = [
                ("node", hub.node.as_str()),
                ("cluster", hub.cluster.as_str()),
            ];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        {
            let mut m = family(
                &mut encoder,
                "haplane_vrrp_state",
                "1 for the router's current state (INIT, BACKUP, MASTER, FAULT).",
                MetricType::Gauge,
            )?;
            for r in &routers {
                for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
                    let labels = [("instance", r.instance.as_str()), ("state", state)];
                    ConstGauge::new(i64::from(r.state == state))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let gauges: [(&str, &str, RouterGauge); 3] = [
            (
                "haplane_vrrp_effective_priority",
                "Base priority adjusted by tracked checks.",
                |r| i64::from(r.effective_priority),
            ),
            (
                "haplane_vrrp_vip_held",
                "1 while this node has the VIP on its interface.",
                |r| i64::from(r.holds_vip),
            ),
            (
                "haplane_vrrp_link_up",
                "1 while the VRRP interface is up with carrier.",
                |r| i64::from(r.link_up),
            ),
        ];
        for (name, help, get) in gauges {
            let mut m = family(&mut encoder, name, help, MetricType::Gauge)?;
            for r in &routers {
                let labels = [("instance", r.instance.as_str())];
                ConstGauge::new(get(r)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = family(
                &mut encoder,
                "haplane_vrrp_auth_hmac_mode",
                "1 for the router's auth_hmac mode (off, receive-only, permissive, enforce).",
                MetricType::Gauge,
            )?;
            for r in &routers {
                let mode = r.auth_hmac.as_ref().map_or("off", |a| a.mode.as_str());
                for state in ["off", "receive-only", "permissive", "enforce"] {
                    let labels = [("instance", r.instance.as_str()), ("mode", state)];
                    ConstGauge::new(i64::from(mode == state)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let counters: [(&str, &str, RouterCounter); 7] = [
            (
                "haplane_vrrp_adverts_received",
                "Valid adverts processed.",
                |c| c.adverts_received,
            ),
            ("haplane_vrrp_adverts_sent", "Adverts sent.", |c| {
                c.adverts_sent
            }),
            (
                "haplane_vrrp_priority_zero_received",
                "Priority-0 (master stopping) adverts received.",
                |c| c.priority_zero_received,
            ),
            (
                "haplane_vrrp_priority_zero_sent",
                "Priority-0 adverts sent.",
                |c| c.priority_zero_sent,
            ),
            ("haplane_vrrp_transitions", "State changes.", |c| {
                c.transitions
            }),
            (
                "haplane_vrrp_hmac_verified",
                "Adverts accepted with a verified auth_hmac trailer.",
                |c| c.hmac_verified,
            ),
            (
                "haplane_vrrp_hmac_unsigned_accepted",
                "Adverts accepted without an auth_hmac trailer (permissive or receive-only).",
                |c| c.hmac_unsigned_accepted,
            ),
        ];
        for (name, help, get) in counters {
            let mut m = family(&mut encoder, name, help, MetricType::Counter)?;
            for r in &routers {
                let labels = [("instance", r.instance.as_str())];
                ConstCounter::new(get(&r.counters)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = family(
                &mut encoder,
                "haplane_vrrp_discarded",
                "Received packets discarded, by reason.",
                MetricType::Counter,
            )?;
            for r in &routers {
                for (reason, count) in &r.counters.discarded {
                    let labels = [("instance", r.instance.as_str()), ("reason", reason)];
                    ConstCounter::new(*count).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let sections: Vec<Arc<dyn Section>> = hub
            .sections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for section in sections {
            section.metrics(&mut encoder)?;
        }
        Ok(())
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error"))))
}

async fn handle(
    hub: Arc<Hub>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/status" => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&hub.json()).unwrap_or_default() + "\n",
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            hub.metrics_text(),
        ),
        other => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no such page {other:?}; try /healthz, /status or /metrics\n"),
        ),
    })
}

/// The status port serves the cluster's state (no secrets) to whoever reaches it: off
/// loopback, say so in the log (`haplane check` says so too, as `status.listen`).
fn warn_unless_loopback(local: SocketAddr) {
    if !local.ip().is_loopback() {
        tracing::warn!(
            listen = %local,
            "/status and /metrics listen on a non-loopback address: anyone who reaches it reads the cluster's state; firewall it or keep status.listen on 127.0.0.1"
        );
    }
}

/// Bind the status address now (so a clash fails start-up) and serve it in the background.
pub async fn serve(addr: SocketAddr, hub: Arc<Hub>) -> Result<SocketAddr, StatusError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| StatusError::Bind { addr, error })?;
    let local = listener.local_addr().unwrap_or(addr);
    warn_unless_loopback(local);
    crate::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let hub = hub.clone();
            crate::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(hub.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A `MakeWriter` that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What the status server logs about where it listens.
    fn listen_log(addr: &str) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            warn_unless_loopback(addr.parse().unwrap())
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    /// The status port stays on loopback by default (config: `127.0.0.1:9470`); bound
    /// anywhere else (`serve` checks the address it bound) the daemon says so in its log,
    /// naming the address.
    #[test]
    fn a_status_port_off_loopback_is_logged_as_a_warning() {
        assert_eq!(
            config::Status::default().listen.ip(),
            IpAddr::from([127, 0, 0, 1])
        );
        for quiet in ["127.0.0.1:9470", "[::1]:9470"] {
            let log = listen_log(quiet);
            assert!(log.is_empty(), "{quiet}: {log}");
        }
        for open in ["192.0.2.11:9470", "0.0.0.0:9470", "[::]:9470"] {
            let log = listen_log(open);
            assert!(
                log.contains("WARN") && log.contains("non-loopback") && log.contains(open),
                "{open}: {log}"
            );
        }
    }

    /// Least privilege: the status port changes nothing. Every method but GET/HEAD is
    /// refused on every path, and only the three read-only pages exist.
    #[tokio::test]
    async fn the_status_port_serves_read_only_pages_and_refuses_every_other_method() {
        let hub = Hub::new("c", "n");
        let addr = serve("127.0.0.1:0".parse().unwrap(), hub).await.unwrap();
        for path in ["/healthz", "/status", "/metrics"] {
            assert!(
                request(addr, "GET", path).await.starts_with("HTTP/1.1 200"),
                "{path}"
            );
            for method in ["POST", "PUT", "DELETE", "PATCH"] {
                let r = request(addr, method, path).await;
                assert!(r.starts_with("HTTP/1.1 405"), "{method} {path}: {r}");
            }
        }
        for path in ["/admin", "/reload", "/maintenance", "/"] {
            assert!(
                request(addr, "GET", path).await.starts_with("HTTP/1.1 404"),
                "{path}"
            );
        }
    }
}
