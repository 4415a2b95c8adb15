//! A haproxy.cfg reader: global, defaults, frontend, backend and listen sections, with server
//! lines and check options.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{ApiServer, CheckType, Dur, ListenAddr, LoadBalancer, Node, Policy};

use super::{ImportError, Report};

/// One `server` line.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    pub weight: Option<u32>,
    pub check: bool,
}

/// What a haproxy.cfg says about balancing the apiservers.
#[derive(Debug, Clone, Default)]
pub struct Haproxy {
    pub file: PathBuf,
    pub servers: Vec<Server>,
    pub binds: Vec<(Option<IpAddr>, u16)>,
    pub policy: Option<Policy>,
    pub check: Option<CheckType>,
    pub path: Option<String>,
    pub expect: Option<String>,
    pub inter: Option<Dur>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub insecure: bool,
    pub shutdown_sessions: bool,
    pub connect_timeout: Option<Dur>,
    pub maxconn: Option<usize>,
}

/// haproxy time: a number with an optional unit (default milliseconds).
fn time(s: &str) -> Option<Dur> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        "us" => n / 1000,
        _ => return None,
    };
    Some(Dur(Duration::from_millis(ms)))
}

fn strip_comment(line: &str) -> &str {
    let mut quote = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quote = !quote,
            '#' if !quote => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `*:6443`, `:6443`, `192.0.2.1:6443`, `[::]:6443`.
fn parse_bind(s: &str) -> Option<(Option<IpAddr>, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" || host == "0.0.0.0" || host == "::" {
        return Some((None, port));
    }
    Some((Some(host.parse().ok()?), port))
}

/// Read a haproxy.cfg. Sections other than the one backend the frontend uses are reported.
pub fn read(path: &Path, report: &mut Report) -> Result<Haproxy, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    struct Line {
        no: usize,
        raw: String,
        words: Vec<String>,
    }
    let mut sections: Vec<(String, String, Line, Vec<Line>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let words: Vec<String> = strip_comment(raw)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            continue;
        }
        let line = Line {
            no: i + 1,
            raw: raw.to_string(),
            words,
        };
        match line.words[0].as_str() {
            kind @ ("global" | "defaults" | "frontend" | "backend" | "listen" | "resolvers"
            | "peers" | "userlist" | "program" | "cache" | "mailers" | "http-errors"
            | "ring") => {
                let name = line.words.get(1).cloned().unwrap_or_default();
                sections.push((kind.to_string(), name, line, Vec::new()));
            }
            _ => match sections.last_mut() {
                Some(s) => s.3.push(line),
                None => report.unmapped(path, line.no, &line.raw, "outside any section"),
            },
        }
    }
    let mut h = Haproxy {
        file: path.to_path_buf(),
        ..Haproxy::default()
    };
    // Which backend carries the apiservers: the frontends' default_backend, else the first.
    let wanted: Option<String> = sections
        .iter()
        .filter(|s| s.0 == "frontend")
        .flat_map(|s| s.3.iter())
        .find(|l| l.words[0] == "default_backend" || l.words[0] == "use_backend")
        .and_then(|l| l.words.get(1).cloned());
    let mut backend_used = false;
    for (kind, name, head, lines) in &sections {
        let is_backend = match kind.as_str() {
            "backend" => wanted.as_deref().is_none_or(|w| w == name) && !backend_used,
            "listen" => !backend_used,
            _ => false,
        };
        match kind.as_str() {
            "global" => {
                for l in lines {
                    match l.words[0].as_str() {
                        "maxconn" => h.maxconn = l.words.get(1).and_then(|v| v.parse().ok()),
                        _ => report.unmapped(
                            path,
                            l.no,
                            &l.raw,
                            "process setting with no haplane equivalent",
                        ),
                    }
                }
            }
            "defaults" | "frontend" | "backend" | "listen" => {
                if kind == "frontend" || kind == "listen" || is_backend || kind == "defaults" {
                    if is_backend {
                        backend_used = true;
                    }
                    for l in lines {
                        line(&mut h, path, kind, &l.words, l.no, &l.raw, report);
                    }
                } else {
                    report.unmapped(
                        path,
                        head.no,
                        &head.raw,
                        "a backend the frontend does not use; its lines were not imported",
                    );
                }
            }
            _ => report.unmapped(
                path,
                head.no,
                &head.raw,
                "section with no haplane equivalent",
            ),
        }
    }
    Ok(h)
}

fn line(
    h: &mut Haproxy,
    path: &Path,
    kind: &str,
    w: &[String],
    no: usize,
    raw: &str,
    report: &mut Report,
) {
    let arg = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    match (w[0].as_str(), arg(1)) {
        ("mode", "tcp") => {}
        ("mode", _) => report.unmapped(path, no, raw, "haplane balances TCP (layer 4) only"),
        ("bind", _) => match parse_bind(arg(1)) {
            Some(b) => {
                h.binds.push(b);
                if w.len() > 2 {
                    report.unmapped(path, no, raw, "bind options (ssl, transparent, ...) are not carried over; the address was kept");
                }
            }
            None => report.unmapped(path, no, raw, "not an address:port"),
        },
        ("default_backend" | "use_backend", _) => {}
        ("balance", b) => match b {
            "roundrobin" | "static-rr" => h.policy = Some(Policy::RoundRobin),
            "leastconn" => h.policy = Some(Policy::LeastConnections),
            b if b.starts_with("random") => h.policy = Some(Policy::RandomTwoChoices),
            _ => report.unmapped(path, no, raw, "no equivalent policy; haplane uses round-robin"),
        },
        ("server", _) => server(h, path, w, no, raw, report),
        ("default-server", _) => server_opts(h, path, &w[1..], no, raw, report),
        ("option", "httpchk") => {
            h.check.get_or_insert(CheckType::Http);
            // `option httpchk GET /readyz` (old form) or `option httpchk` + http-check send.
            if let Some(uri) = w.iter().skip(2).find(|a| a.starts_with('/')) {
                h.path = Some(uri.clone());
            }
        }
        ("option", "tcp-check") => h.check = Some(CheckType::Tcp),
        ("option", "tcplog" | "dontlognull" | "clitcpka" | "srvtcpka" | "tcpka" | "redispatch") => {}
        ("http-check", "connect") if w.iter().any(|a| a == "ssl") => h.check = Some(CheckType::Https),
        ("http-check", "send") => {
            if let Some(i) = w.iter().position(|a| a == "uri") {
                h.path = w.get(i + 1).cloned();
            }
        }
        ("http-check", "expect") => match (arg(2), arg(3)) {
            ("status", code) => h.expect = Some(code.to_string()),
            ("rstatus", re) if re.starts_with("^2") => h.expect = Some("200-299".into()),
            _ => report.unmapped(path, no, raw, "only `expect status CODE` maps to expectStatus"),
        },
        ("timeout", "connect") => h.connect_timeout = time(arg(2)),
        ("timeout", "client" | "server" | "tunnel") => report.note(
            path,
            no,
            raw,
            "not carried over: haplane keeps tunnels open without an idle timeout, so `kubectl logs -f` and watches survive (kubeadm#2227)",
        ),
        ("maxconn", n) if kind != "backend" => h.maxconn = n.parse().ok(),
        ("acl", _) => report.unmapped(path, no, raw, "layer-7 ACLs do not apply to a TCP balancer"),
        _ => report.unmapped(path, no, raw, "no haplane equivalent"),
    }
}

fn server(h: &mut Haproxy, path: &Path, w: &[String], no: usize, raw: &str, report: &mut Report) {
    let (Some(name), Some(addr)) = (w.get(1), w.get(2)) else {
        return report.unmapped(path, no, raw, "a server line needs a name and an address");
    };
    let Some(address) = addr.parse::<SocketAddr>().ok() else {
        return report.unmapped(
            path,
            no,
            raw,
            "the server address is not IP:PORT (names are not resolved)",
        );
    };
    let mut weight = None;
    let mut i = 3;
    while i < w.len() {
        if w[i] == "weight" {
            weight = w.get(i + 1).and_then(|v| v.parse().ok());
            i += 2;
        } else {
            i += 1;
        }
    }
    let check = w.iter().any(|a| a == "check");
    h.servers.push(Server {
        name: name.clone(),
        address,
        weight,
        check,
    });
    let rest: Vec<String> = w[3..].to_vec();
    server_opts(h, path, &rest, no, raw, report);
}

fn server_opts(
    h: &mut Haproxy,
    path: &Path,
    w: &[String],
    no: usize,
    raw: &str,
    report: &mut Report,
) {
    let mut i = 0;
    let mut unknown = Vec::new();
    while i < w.len() {
        let next = w.get(i + 1).map(String::as_str).unwrap_or("");
        match w[i].as_str() {
            "check" => {}
            "check-ssl" => h.check = Some(CheckType::Https),
            "inter" => {
                h.inter = time(next);
                i += 1;
            }
            "rise" => {
                h.rise = next.parse().ok();
                i += 1;
            }
            "fall" => {
                h.fall = next.parse().ok();
                i += 1;
            }
            "weight" => i += 1,
            "verify" => {
                h.insecure = next == "none";
                i += 1;
            }
            "on-marked-down" => {
                h.shutdown_sessions = next == "shutdown-sessions";
                i += 1;
            }
            other => unknown.push(other.to_string()),
        }
        i += 1;
    }
    if !unknown.is_empty() {
        report.unmapped(
            path,
            no,
            raw,
            format!("server options {} are not carried over", unknown.join(" ")),
        );
    }
}

impl Haproxy {
    /// Fill the balancer and apiserver sections from what was read.
    pub(crate) fn apply(&self, lb: &mut LoadBalancer, api: &mut ApiServer, nodes: &[Node]) {
        if let Some(p) = self.policy {
            lb.policy = p;
        }
        if !self.binds.is_empty() {
            lb.listen = self
                .binds
                .iter()
                .map(|(a, p)| super::listen_for(*a, *p, None))
                .collect::<Vec<ListenAddr>>();
        }
        // The servers are the masters' apiservers: one common port becomes apiServer.port.
        let ports: std::collections::BTreeSet<u16> =
            self.servers.iter().map(|s| s.address.port()).collect();
        let all_masters = self
            .servers
            .iter()
            .all(|s| nodes.iter().any(|n| n.address == s.address.ip()))
            && self.servers.len() == nodes.len();
        let weights_default = self.servers.iter().all(|s| s.weight.unwrap_or(1) == 1);
        if ports.len() == 1 && all_masters && weights_default {
            api.port = *ports.iter().next().unwrap_or(&6443);
        } else if !self.servers.is_empty() {
            lb.backends = Some(super::backends_from(&self.servers));
        }
        let hc = &mut lb.health_check;
        hc.kind = self.check.unwrap_or(CheckType::Tcp);
        if let Some(p) = &self.path {
            hc.path = p.clone();
        }
        if let Some(e) = &self.expect {
            hc.expect_status = e.clone();
        }
        if self.servers.iter().any(|s| s.check) {
            // haproxy's own defaults when a server says only `check`: inter 2s, rise 2, fall 3.
            hc.interval = self.inter.unwrap_or(Dur::from_secs(2));
            hc.rise = self.rise.unwrap_or(2);
            hc.fall = self.fall.unwrap_or(3);
        }
        hc.insecure_skip_verify = self.insecure && hc.kind == CheckType::Https;
        if let Some(d) = self.connect_timeout {
            lb.connect_timeout = d;
        }
        if let Some(m) = self.maxconn {
            lb.max_connections = m;
        }
        // haplane closes sessions to a dead backend by default; keep that even if haproxy did not.
        let _ = self.shutdown_sessions;
    }
}
