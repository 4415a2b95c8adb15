//! A haproxy.cfg reader: global, defaults, frontend, backend and listen sections, with server
//! lines and check options.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{ApiServer, CheckType, Dur, ListenAddr, LoadBalancer, Node, Policy};

use super::{ImportError, Origin, Report};

/// One `server` line.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    pub weight: Option<u32>,
    pub check: bool,
    /// `port N`: health checks go to this port instead of the service port.
    pub check_port: Option<u16>,
    /// The `server` line.
    pub origin: Origin,
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
    /// The line each cluster-file key came from (`loadBalancer.listen[0]`, ...).
    pub origins: Vec<(String, Origin)>,
    /// `mode http` from `defaults`, kept until a section in use says `mode tcp`.
    pending_mode: Option<Origin>,
    /// Resolve server names to IPv4 (else IPv6) addresses first: the VIP's family.
    v4: bool,
    /// How server names are resolved (`None`: by this host, as haproxy does).
    resolve: Option<Resolver>,
}

/// Resolves a host name and port (a haproxy `server` address) to socket addresses.
pub type Resolver = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_resolver(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// haproxy time: a number with an optional unit (default milliseconds).
fn time(s: &str) -> Option<Dur> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        "us" => Some(n / 1000),
        _ => return None,
    }?;
    Dur::checked(Duration::from_millis(ms))
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

/// `HOST:PORT`, `[V6]:PORT`, `HOST`, `V6` or `ipv4@HOST:PORT` into host and port.
fn split_host_port(addr: &str) -> (&str, Option<u16>) {
    let addr = addr
        .strip_prefix("ipv4@")
        .or_else(|| addr.strip_prefix("ipv6@"))
        .unwrap_or(addr);
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        return (addr, None);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (addr, None),
    }
}

/// Read a haproxy.cfg (or `text` given for `path`). Sections other than the one backend the
/// frontend uses are reported.
///
/// Server names are resolved here, preferring addresses of the VIP's family (`v4`).
pub fn read(
    path: &Path,
    text: Option<&str>,
    v4: bool,
    resolve: Option<Resolver>,
    report: &mut Report,
) -> Result<Haproxy, ImportError> {
    let text = match text {
        Some(t) => t.to_string(),
        None => std::fs::read_to_string(path).map_err(|error| ImportError::Read {
            path: path.to_path_buf(),
            error,
        })?,
    };
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
        v4,
        resolve,
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
    let mut used_sections = 0;
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
                    if kind != "defaults" {
                        used_sections += 1;
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
    // Servers without a port take the port the client connected to: the bind's.
    let bind_ports: std::collections::BTreeSet<u16> = h.binds.iter().map(|b| b.1).collect();
    let mut kept = Vec::new();
    for mut srv in std::mem::take(&mut h.servers) {
        if srv.address.port() == 0 {
            match bind_ports.iter().next() {
                Some(p) if bind_ports.len() == 1 => {
                    srv.address.set_port(*p);
                    report.note(
                        &srv.origin.file,
                        srv.origin.line,
                        &srv.origin.text,
                        format!("no port: the client's port {p} from the bind, as haproxy does"),
                    );
                }
                _ => {
                    report.unmapped(
                        &srv.origin.file,
                        srv.origin.line,
                        &srv.origin.text,
                        "no port, and the frontend binds several (or none): write IP:PORT",
                    );
                    continue;
                }
            }
        }
        if let Some(p) = srv.check_port
            && p != srv.address.port()
        {
            report.unmapped(
                &srv.origin.file,
                srv.origin.line,
                &srv.origin.text,
                format!(
                    "checks on port {p}, not the service port {}: haplane checks the port it forwards to",
                    srv.address.port()
                ),
            );
        }
        kept.push(srv);
    }
    h.servers = kept;
    if let Some(o) = h.pending_mode.take() {
        report.unmapped(
            &o.file,
            o.line,
            &o.text,
            "haplane balances TCP (layer 4) only; no section in use says `mode tcp`",
        );
    }
    if used_sections == 0 {
        report.unmapped(
            path,
            1,
            "",
            "no frontend, backend or listen section: nothing describes the apiserver balancer",
        );
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
    let origin = Origin {
        file: path.to_path_buf(),
        line: no,
        text: raw.trim().to_string(),
    };
    let key = match (w[0].as_str(), arg(1)) {
        ("balance", _) => Some("loadBalancer.policy"),
        ("option", "httpchk" | "tcp-check" | "ssl-hello-chk") | ("http-check", _) => {
            Some("loadBalancer.healthCheck")
        }
        ("timeout", "connect") => Some("loadBalancer.connectTimeout"),
        ("maxconn", _) if kind != "backend" => Some("loadBalancer.maxConnections"),
        _ => None,
    };
    if let Some(key) = key {
        h.origins.push((key.to_string(), origin.clone()));
    }
    match (w[0].as_str(), arg(1)) {
        ("mode", "tcp") => {
            if kind != "defaults" {
                h.pending_mode = None;
            }
        }
        // `defaults` often say `mode http` for every proxy and the apiserver's frontend and
        // backend override it with `mode tcp` (kubeadm's ha-considerations haproxy.cfg).
        ("mode", _) if kind == "defaults" => h.pending_mode = Some(origin.clone()),
        ("mode", _) => report.unmapped(path, no, raw, "haplane balances TCP (layer 4) only"),
        ("bind", _) => match parse_bind(arg(1)) {
            Some(b) => {
                h.origins
                    .push((format!("loadBalancer.listen[{}]", h.binds.len()), origin.clone()));
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
            // The last check option wins, as in haproxy; `http-check connect ssl` makes it https.
            if h.check != Some(CheckType::Https) {
                h.check = Some(CheckType::Http);
            }
            // `option httpchk GET /readyz` (old form) or `option httpchk` + http-check send.
            if let Some(uri) = w.iter().skip(2).find(|a| a.starts_with('/')) {
                h.path = Some(uri.clone());
            }
        }
        ("option", "tcp-check") => {
            h.check = Some(CheckType::Tcp)
        }
        ("option", "ssl-hello-chk") => {
            h.check = Some(CheckType::Tcp);
            h.path = None;
            report.note(
                path,
                no,
                raw,
                "an SSL hello check becomes a TCP connect check; prefer healthCheck.type: https on /readyz with the cluster CA",
            );
        }
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
        ("timeout", "connect") => {
            h.connect_timeout = time(arg(2))
        }
        ("timeout", "client" | "server" | "tunnel") => report.note(
            path,
            no,
            raw,
            "not carried over: haplane keeps tunnels open without an idle timeout, so `kubectl logs -f` and watches survive (kubeadm#2227)",
        ),
        ("maxconn", n) if kind != "backend" => {
            h.maxconn = n.parse().ok()
        }
        ("acl", _) => report.unmapped(path, no, raw, "layer-7 ACLs do not apply to a TCP balancer"),
        _ => report.unmapped(path, no, raw, "no haplane equivalent"),
    }
}

fn server(h: &mut Haproxy, path: &Path, w: &[String], no: usize, raw: &str, report: &mut Report) {
    let (Some(name), Some(addr)) = (w.get(1), w.get(2)) else {
        return report.unmapped(path, no, raw, "a server line needs a name and an address");
    };
    let (host, port) = split_host_port(addr);
    let address = match host.parse::<IpAddr>() {
        // Port 0: "the port the client connected to", filled in from the bind once all
        // sections are read (haproxy's rule for a server without a port).
        Ok(ip) => SocketAddr::new(ip, port.unwrap_or(0)),
        Err(_) => {
            // haproxy resolves server names when it starts (and `haproxy -c` does too), so a
            // file it accepts has names this host resolves: do the same, and say so.
            match h.resolve.unwrap_or(system_resolver)(host, port.unwrap_or(0)) {
                Ok(found) => match found.into_iter().min_by_key(|a| a.is_ipv4() != h.v4) {
                    Some(a) => {
                        report.note(
                            path,
                            no,
                            raw,
                            format!(
                                "{host} resolved to {} on this host, as haproxy does at startup",
                                a.ip()
                            ),
                        );
                        a
                    }
                    None => {
                        return report.unmapped(path, no, raw, format!("{host} does not resolve"));
                    }
                },
                Err(e) => {
                    return report.unmapped(
                        path,
                        no,
                        raw,
                        format!("{host} does not resolve here ({e}); write the address"),
                    );
                }
            }
        }
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
    let check_port = w
        .iter()
        .position(|a| a == "port")
        .and_then(|i| w.get(i + 1))
        .and_then(|p| p.parse().ok());
    h.servers.push(Server {
        name: name.clone(),
        address,
        weight,
        check,
        check_port,
        origin: Origin {
            file: path.to_path_buf(),
            line: no,
            text: raw.trim().to_string(),
        },
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
            // The check port: checked below against the service port, once that is known.
            "port" => i += 1,
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
    /// Whether a frontend binds every address at the port the servers listen on: such a
    /// haproxy cannot share a host with one of its apiservers.
    pub(crate) fn wildcard_bind_on_server_port(&self) -> bool {
        self.binds
            .iter()
            .any(|(a, p)| a.is_none() && self.servers.iter().any(|s| s.address.port() == *p))
    }

    /// Fill the balancer and apiserver sections from what was read. `masters` are the nodes
    /// with an apiserver; `vrrp_addresses` the addresses of the nodes that carry the VIP.
    pub(crate) fn apply(
        &self,
        lb: &mut LoadBalancer,
        api: &mut ApiServer,
        masters: &[&Node],
        vip: IpAddr,
        vrrp_addresses: &[IpAddr],
        report: &mut Report,
    ) {
        if let Some(p) = self.policy {
            lb.policy = p;
        }
        if !self.binds.is_empty() {
            let mut listen: Vec<ListenAddr> = Vec::new();
            for (i, (a, p)) in self.binds.iter().enumerate() {
                let mut l = super::listen_for(*a, *p, Some(vip));
                // One node's own address is not a listen address the shared file can give
                // every node: the other nodes would take it over. The VIP is what it serves.
                if let Some(a) = a
                    && vrrp_addresses.contains(a)
                {
                    l = ListenAddr::Vip(*p);
                    if let Some((_, o)) = self
                        .origins
                        .iter()
                        .find(|(k, _)| *k == format!("loadBalancer.listen[{i}]"))
                    {
                        report.note(
                            &o.file,
                            o.line,
                            &o.text,
                            format!("{a} is one node's own address; the shared cluster file listens on vip:{p} on every node that carries the VIP"),
                        );
                    }
                }
                if !listen.contains(&l) {
                    listen.push(l);
                }
            }
            lb.listen = listen;
        }
        // The servers are the masters' apiservers: one common port becomes apiServer.port.
        let ports: std::collections::BTreeSet<u16> =
            self.servers.iter().map(|s| s.address.port()).collect();
        let all_masters = self
            .servers
            .iter()
            .all(|s| masters.iter().any(|n| n.address == s.address.ip()))
            && self.servers.len() == masters.len();
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
