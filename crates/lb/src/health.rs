//! Active health checks: TCP connect, HTTP GET, HTTPS GET. One task per backend, so checks run
//! concurrently and a slow backend never delays another's verdict.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::LbError;
use crate::backend::{Backend, CheckFailure, DownPolicy};
use crate::config::{CheckKind, HealthCheckConfig, HttpCheck, TlsCheck};

/// A check configuration with its TLS client built once (files read at start/reload).
pub(crate) struct Checker {
    pub cfg: HealthCheckConfig,
    tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    pub policy: DownPolicy,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("cfg", &self.cfg).finish()
    }
}

impl Checker {
    pub fn new(cfg: &HealthCheckConfig, policy: DownPolicy) -> Result<Self, LbError> {
        let tls = match &cfg.kind {
            CheckKind::Https(_, t) => Some((
                tokio_rustls::TlsConnector::from(Arc::new(client_config(t)?)),
                t.server_name.clone(),
            )),
            _ => None,
        };
        Ok(Checker {
            cfg: cfg.clone(),
            tls,
            policy,
        })
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.cfg.kind, CheckKind::None)
    }

    /// Runs checks on `backend` until `stop` fires.
    pub fn spawn(self: &Arc<Self>, backend: Arc<Backend>, stop: CancellationToken) {
        if !self.enabled() {
            return;
        }
        let this = self.clone();
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            // A random first offset spreads the checks of all backends over the interval.
            let first = this.cfg.interval.mul_f64(fastrand::f64());
            let mut next = tokio::time::Instant::now() + first;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => {}
                    // A close burst made it suspect: check now (see crate::burst).
                    _ = backend.check_now.notified() => {}
                }
                let started = Instant::now();
                next = tokio::time::Instant::now() + this.jittered_interval();
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(this.cfg.timeout, this.probe(backend.addr)) => match r {
                        Ok(Ok(())) => Ok(started.elapsed()),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(CheckFailure::Unreachable(format!("timed out after {:?}", this.cfg.timeout))),
                    },
                };
                match &result {
                    Ok(_) => backend.check_passed(started),
                    Err(e) => {
                        tracing::debug!(backend = %backend.addr, error = ?e, "health check failed")
                    }
                }
                backend.record_check(result, this.cfg.rise, this.cfg.fall, this.policy);
            }
        }));
    }

    fn jittered_interval(&self) -> Duration {
        let j = self.cfg.jitter;
        self.cfg
            .interval
            .mul_f64(1.0 + j * (2.0 * fastrand::f64() - 1.0))
    }

    async fn probe(&self, addr: SocketAddr) -> Result<(), CheckFailure> {
        self.probe_as(addr, None).await
    }

    /// One check of `addr`, with `name` (when given) as the TLS name to verify instead of the
    /// configured one or the address.
    pub async fn probe_as(&self, addr: SocketAddr, name: Option<&str>) -> Result<(), CheckFailure> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| CheckFailure::Unreachable(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match (&self.cfg.kind, &self.tls) {
            (CheckKind::None | CheckKind::Tcp, _) => Ok(()),
            (CheckKind::Http(h), _) => http_get(tcp, h, addr).await,
            (CheckKind::Https(h, _), Some((connector, configured))) => {
                let name = name.map(str::to_string).or_else(|| configured.clone());
                let server_name = match name {
                    Some(n) => ServerName::try_from(n)
                        .map_err(|e| CheckFailure::Unreachable(e.to_string()))?,
                    None => ServerName::IpAddress(addr.ip().into()),
                };
                let tls = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| CheckFailure::Unreachable(format!("tls: {e}")))?;
                http_get(tls, h, addr).await
            }
            (CheckKind::Https(..), None) => Err(CheckFailure::Unreachable(
                "https check without tls client".to_string(),
            )),
        }
    }
}

/// Sends `GET path HTTP/1.1` and judges the status line (RFC 9112 §4). A status outside the
/// expected range means "answers, not ready" (draining); anything short of a status line means
/// "no answer" (dead).
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    h: &HttpCheck,
    addr: SocketAddr,
) -> Result<(), CheckFailure> {
    let host = h.host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: haplane-lb\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        h.path
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| CheckFailure::Unreachable(format!("send: {e}")))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    // The status line is short; 4 KiB without a line end is not HTTP.
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| CheckFailure::Unreachable(format!("receive: {e}")))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match judge_http_answer(&buf, &h.expect_status) {
        HttpAnswer::Ready(_) => Ok(()),
        HttpAnswer::NotReady(code) => Err(CheckFailure::NotReady(format!("status {code}"))),
        HttpAnswer::NoStatusLine => {
            Err(CheckFailure::Unreachable("no http status line".to_string()))
        }
    }
}

/// What a backend's answer to the HTTP check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnswer {
    /// A status line whose status is in the expected range: ready.
    Ready(u16),
    /// A status line with another status: the backend answers but is not ready (draining).
    NotReady(u16),
    /// The answer does not start with an HTTP/1.x status line: no answer (dead).
    NoStatusLine,
}

/// Judge the first bytes of a backend's answer to the check's request against `expect`.
/// Only the status line is read (everything after its line end is ignored).
pub fn judge_http_answer(answer: &[u8], expect: &RangeInclusive<u16>) -> HttpAnswer {
    match parse_status(answer) {
        Some(code) if expect.contains(&code) => HttpAnswer::Ready(code),
        Some(code) => HttpAnswer::NotReady(code),
        None => HttpAnswer::NoStatusLine,
    }
}

/// Status code of an HTTP/1.x status line (RFC 9112 §4: `status-line = HTTP-version SP
/// status-code SP [ reason-phrase ]`, `HTTP-version = "HTTP/" DIGIT "." DIGIT` (§2.3),
/// `status-code = 3DIGIT`). The reason phrase may hold any octet but CR and LF (obs-text is
/// allowed), so it is not read as UTF-8; a missing SP after the code is tolerated.
fn parse_status(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let (code, after) = rest.split_at_checked(3)?;
    if !minor.is_ascii_digit() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(after.is_empty() || after[0] == b' ') {
        return None;
    }
    Some(code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &std::path::Path, e: impl std::fmt::Display) -> LbError {
    LbError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn client_config(t: &TlsCheck) -> Result<rustls::ClientConfig, LbError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &t.ca_file {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| pem_err(path, e))?;
            for c in certs {
                roots
                    .add(c.map_err(|e| pem_err(path, e))?)
                    .map_err(|e| pem_err(path, e))?;
            }
            if roots.is_empty() {
                return Err(pem_err(path, "no certificate in file"));
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            Ok(builder.with_client_auth_cert(chain, key)?)
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Insecure mode: any certificate is accepted, but handshake signatures are still verified so
/// the check at least talks to the holder of the presented key.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing_follows_rfc9112_section_4() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(
            parse_status(b"HTTP/1.1 +20 OK\r\n"),
            None,
            "3DIGIT, no sign"
        );
        assert_eq!(
            parse_status(b"HTTP/1.x 200 OK\r\n"),
            None,
            "HTTP-version has a digit"
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 200\r\n"),
            Some(200),
            "reason-phrase is optional"
        );
        assert_eq!(parse_status(b"HTTP/1.1 200"), Some(200), "no line end yet");
        assert_eq!(parse_status(b"HTTP/1.1  200 OK\r\n"), None);
        assert_eq!(
            parse_status(b"HTTP/1.1 200 Gr\xfc\xdf Gott\r\n"),
            Some(200),
            "reason-phrase may hold obs-text (%x80-FF)"
        );
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn https_check_without_ca_or_insecure_mode_is_rejected() {
        let cfg = crate::LbConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            backends: vec![crate::BackendConfig::new("127.0.0.1:1".parse().unwrap())],
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(LbError::InvalidConfig(_))));
    }

    #[test]
    fn insecure_https_client_builds_without_files() {
        let t = TlsCheck {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(client_config(&t).is_ok());
    }

    #[test]
    fn missing_ca_file_is_reported_with_its_path() {
        let t = TlsCheck {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        match client_config(&t) {
            Err(LbError::Pem { path, .. }) => {
                assert_eq!(path, std::path::Path::new("/nonexistent/ca.pem"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
