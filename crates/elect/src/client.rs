//! Connecting to etcd, with TLS and a quorum probe so bad endpoints fail loudly at start.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::error::error_chain;
use crate::{ElectError, EtcdConfig};

/// HTTP/2 ping period, so a frozen or cut-off etcd member is dropped from the balancer within
/// about two periods. etcd's keepalive enforcement (grpc-go, `--grpc-keepalive-min-time` 5 s,
/// pings without an active stream not permitted) answers pings on *idle* connections with
/// GOAWAY "too_many_pings", so we ping only while streams are active; there the server's own
/// data frames (lease keep-alive answers every TTL/3) reset its ping-strike count. Safety never
/// depends on the ping: a leader stops at its own lease deadline.
const H2_PING: Duration = Duration::from_secs(1);

/// Connects to etcd and proves that a quorum answers (a linearizable read).
///
/// Errors name the endpoints and the full cause (refused, TLS handshake, timeout).
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, ElectError> {
    let endpoints = cfg.endpoints.join(",");
    let opts = connect_options(cfg)?;
    let client = tokio::time::timeout(
        cfg.dial_timeout,
        Client::connect(cfg.endpoints.clone(), Some(opts)),
    )
    .await
    .map_err(|_| ElectError::Unreachable {
        endpoints: endpoints.clone(),
        timeout: cfg.dial_timeout,
    })?
    .map_err(|e| ElectError::Connect {
        endpoints: endpoints.clone(),
        detail: error_chain(&e),
    })?;
    probe(&client, &endpoints, cfg.dial_timeout).await?;
    tracing::info!(%endpoints, "connected to etcd");
    Ok(client)
}

/// A quorum read: with require-leader set, a member without a leader refuses it.
async fn probe(client: &Client, endpoints: &str, timeout: Duration) -> Result<(), ElectError> {
    let mut kv = client.kv_client();
    match tokio::time::timeout(timeout, kv.get("/haplane/probe", None)).await {
        Err(_) => Err(ElectError::Unreachable {
            endpoints: endpoints.to_string(),
            timeout,
        }),
        Ok(Err(e)) => Err(ElectError::Connect {
            endpoints: endpoints.to_string(),
            detail: error_chain(&e),
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

fn connect_options(cfg: &EtcdConfig) -> Result<ConnectOptions, ElectError> {
    if cfg.endpoints.is_empty() {
        return Err(ElectError::InvalidConfig("etcd endpoints are empty".into()));
    }
    let tls = cfg.ca_file.is_some() || cfg.cert_file.is_some() || cfg.key_file.is_some();
    for e in &cfg.endpoints {
        let https = e.starts_with("https://");
        if !https && !e.starts_with("http://") {
            return Err(ElectError::InvalidConfig(format!(
                "etcd endpoint {e:?} must start with http:// or https://"
            )));
        }
        // A scheme that disagrees with the TLS settings would otherwise surface later as
        // an opaque transport error; name the mismatch instead.
        if tls && !https {
            return Err(ElectError::InvalidConfig(format!(
                "etcd TLS files are set but endpoint {e} uses http://"
            )));
        }
        if !tls && https {
            return Err(ElectError::InvalidConfig(format!(
                "etcd endpoint {e} uses https:// but no caFile is set"
            )));
        }
    }
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.dial_timeout)
        .with_keep_alive(H2_PING, H2_PING / 2)
        .with_keep_alive_while_idle(false)
        // A member cut off from the majority must refuse, not serve stale answers.
        .with_require_leader(true);
    if tls {
        let mut t = TlsOptions::new();
        match &cfg.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|source| ElectError::TlsFile {
                    what: "ca file",
                    path: ca.clone(),
                    source,
                })?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            None => {
                return Err(ElectError::InvalidConfig(
                    "etcd certFile/keyFile need a caFile to verify the server".into(),
                ));
            }
        }
        match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c).map_err(|source| ElectError::TlsFile {
                    what: "cert file",
                    path: c.clone(),
                    source,
                })?;
                let key = std::fs::read(k).map_err(|source| ElectError::TlsFile {
                    what: "key file",
                    path: k.clone(),
                    source,
                })?;
                t = t.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => {
                return Err(ElectError::InvalidConfig(
                    "etcd certFile and keyFile must be set together".into(),
                ));
            }
        }
        opts = opts.with_tls(t);
    }
    Ok(opts)
}
