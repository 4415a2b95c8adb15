//! A tiny blocking HTTP/1.0 client for the daemons' /status and etcd's /health, run on a thread
//! inside a host's network namespace (so no async runtime is needed for a few small requests).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, lossily decoded.
    pub body: String,
}

/// Sends one request (`GET` without a body, `POST` with one) and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    // HTTP/1.0 with Connection: close, so the response ends at EOF (no chunked decoding).
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Reads a whole HTTP/1.0 response (status line, headers, body up to the end of the stream):
/// the status code is the status line's second word; the body is lossily decoded.
pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// GET `path` and parse the body as JSON (None on any failure: a node that does not answer is
/// shown as unreachable, not an error of the whole command).
pub fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Option<serde_json::Value> {
    let r = request(addr, "GET", path, None, timeout).ok()?;
    serde_json::from_str(&r.body).ok()
}
