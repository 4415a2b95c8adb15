//! A keepalived.conf reader: nested blocks, `include`, `!` and `#` comments, quoted strings
//! (keepalived.conf(5), "Quoted strings"), then the VRRP keys haplane understands.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{AntiReplay, AuthHmac, Dur, Garp, HmacMode, IpNet, Secret, TrackScript, VrrpVersion};

use super::{ImportError, Origin, Report};

/// One token with where it came from.
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    quoted: bool,
    file: PathBuf,
    line: usize,
    /// Index of the physical line, to tell "same line" apart across files.
    seq: usize,
}

/// A keyword with its arguments and, for blocks, its children.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub key: String,
    pub args: Vec<String>,
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
    pub children: Option<Vec<Item>>,
}

/// The `state` a keepalived instance starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Master,
    Backup,
}

/// The VRRP settings read from one keepalived.conf.
#[derive(Debug, Clone)]
pub struct Keepalived {
    pub file: PathBuf,
    pub router_id: Option<String>,
    pub vip: IpNet,
    pub vip_line: usize,
    /// The VIP was written without a prefix length and got /24 (/64).
    pub vip_prefix_assumed: bool,
    pub vrid: u8,
    pub version: VrrpVersion,
    pub interface: Option<String>,
    pub priority: Option<u8>,
    pub priority_line: usize,
    /// `state MASTER` or `state BACKUP`, when given.
    pub state: Option<InitialState>,
    pub advert: Option<Dur>,
    pub preempt: bool,
    pub preempt_delay: Option<Dur>,
    /// `unicast_src_ip` or `mcast_src_ip`: this node's address.
    pub src_ip: Option<(IpAddr, Origin)>,
    pub unicast_peers: Vec<(IpAddr, Origin)>,
    pub auth_pass: Option<String>,
    /// keepalived 2.4 `auth_hmac`, keys as written (`hex:`, `file:` or a string).
    pub auth_hmac: Option<AuthHmac>,
    pub garp: Option<Garp>,
    pub notify: Option<Vec<String>>,
    pub track: Vec<TrackScript>,
    /// The line each cluster-file key came from (`vip.vrid`, `vip.track[0]`, ...).
    pub origins: Vec<(String, Origin)>,
}

fn strip_comment(line: &str) -> &str {
    // `!` and `#` start a comment anywhere outside quotes.
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '!' | '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn tokenize_line(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    quoted = true;
                }
                '{' | '}' => {
                    if !cur.is_empty() || quoted {
                        out.push((std::mem::take(&mut cur), quoted));
                        quoted = false;
                    }
                    out.push((c.to_string(), false));
                }
                c if c.is_whitespace() => {
                    if !cur.is_empty() || quoted {
                        out.push((std::mem::take(&mut cur), quoted));
                        quoted = false;
                    }
                }
                c => cur.push(c),
            },
        }
    }
    if !cur.is_empty() || quoted {
        out.push((cur, quoted));
    }
    out
}

/// Files matching a keepalived include pattern (`*` and `?` in the last component only).
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| glob_match(name.as_bytes(), n.to_string_lossy().as_bytes()))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

fn lex(
    path: &Path,
    depth: usize,
    seq: &mut usize,
    toks: &mut Vec<Tok>,
    lines: &mut Vec<String>,
    report: &mut Report,
) -> Result<(), ImportError> {
    if depth > 8 {
        return Err(ImportError::IncludeDepth {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|error| ImportError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    lex_text(path, &text, Some(depth), seq, toks, lines, report)
}

/// Tokenize `text`, read from `path`; includes are followed at `depth` (`None`: the text was
/// given in memory, its includes are reported, not read).
fn lex_text(
    path: &Path,
    text: &str,
    depth: Option<usize>,
    seq: &mut usize,
    toks: &mut Vec<Tok>,
    lines: &mut Vec<String>,
    report: &mut Report,
) -> Result<(), ImportError> {
    for (i, raw) in text.lines().enumerate() {
        let words = tokenize_line(strip_comment(raw));
        if words.first().map(|w| w.0.starts_with("include")) == Some(true) && !words[0].1 {
            let Some(depth) = depth else {
                report.unmapped(
                    path,
                    i + 1,
                    raw,
                    "the file was given as text; its includes are not read",
                );
                continue;
            };
            // include FILE (and includer/includem/...): relative to the including file.
            for (w, _) in &words[1..] {
                let base = path.parent().unwrap_or(Path::new("."));
                let files = expand(&base.join(w));
                if files.is_empty() {
                    report.unmapped(path, i + 1, raw, "the include matches no file");
                }
                for f in files {
                    lex(&f, depth + 1, seq, toks, lines, report)?;
                }
            }
            continue;
        }
        *seq += 1;
        lines.push(raw.to_string());
        for (w, quoted) in words {
            toks.push(Tok {
                text: w,
                quoted,
                file: path.to_path_buf(),
                line: i + 1,
                seq: *seq,
            });
        }
    }
    Ok(())
}

fn parse_block(
    toks: &[Tok],
    i: &mut usize,
    lines: &[String],
    nested: bool,
) -> Result<Vec<Item>, ImportError> {
    let mut items = Vec::new();
    while *i < toks.len() {
        let t = &toks[*i];
        if t.text == "}" && !t.quoted {
            if nested {
                *i += 1;
                return Ok(items);
            }
            return Err(ImportError::Syntax {
                path: t.file.clone(),
                line: t.line,
                message: "a '}' without a matching '{'".into(),
            });
        }
        let start = t.clone();
        *i += 1;
        let mut args = Vec::new();
        let mut children = None;
        while *i < toks.len() && toks[*i].seq == start.seq {
            let a = &toks[*i];
            if !a.quoted && a.text == "{" {
                *i += 1;
                children = Some(parse_block(toks, i, lines, true)?);
                break;
            }
            if !a.quoted && a.text == "}" {
                break;
            }
            args.push(a.text.clone());
            *i += 1;
        }
        // `key` on one line and `{` on the next is also accepted by keepalived.
        if children.is_none() && *i < toks.len() && toks[*i].text == "{" && !toks[*i].quoted {
            *i += 1;
            children = Some(parse_block(toks, i, lines, true)?);
        }
        items.push(Item {
            key: start.text.clone(),
            args,
            file: start.file.clone(),
            line: start.line,
            text: lines.get(start.seq - 1).cloned().unwrap_or_default(),
            children,
        });
    }
    if nested {
        let last = toks.last();
        return Err(ImportError::Syntax {
            path: last.map(|t| t.file.clone()).unwrap_or_default(),
            line: last.map(|t| t.line).unwrap_or(0),
            message: "a '{' is never closed".into(),
        });
    }
    Ok(items)
}

/// Parse a file (following includes), or `text` given for `path` (not following them), into
/// items.
pub(crate) fn parse_file(
    path: &Path,
    text: Option<&str>,
    report: &mut Report,
) -> Result<Vec<Item>, ImportError> {
    let mut toks = Vec::new();
    let mut lines = Vec::new();
    let mut seq = 0;
    match text {
        None => lex(path, 0, &mut seq, &mut toks, &mut lines, report)?,
        Some(text) => lex_text(path, text, None, &mut seq, &mut toks, &mut lines, report)?,
    }
    let mut i = 0;
    parse_block(&toks, &mut i, &lines, false)
}

fn secs(s: &str) -> Option<Dur> {
    let v: f64 = s.parse().ok()?;
    if !(v.is_finite() && v >= 0.0 && v * 1000.0 <= Dur::MAX.0.as_millis() as f64) {
        return None;
    }
    Dur::checked(Duration::from_millis((v * 1000.0).round() as u64))
}

/// Split a keepalived script string into arguments; single quotes keep spaces.
pub(crate) fn split_script(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                any = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The lines of a vrrp_script's keys, by suffix (`""` for the block, `.weight`, `.command`).
type ScriptKeys = Vec<(&'static str, Origin)>;

fn templated(item: &Item) -> bool {
    item.args.iter().any(|a| a.contains('$'))
}

/// Read a keepalived.conf (or `text` given for `path`) and pick out the first vrrp_instance.
pub fn read(
    path: &Path,
    text: Option<&str>,
    report: &mut Report,
) -> Result<Keepalived, ImportError> {
    let items = parse_file(path, text, report)?;
    let mut router_id = None;
    let mut version = None;
    let mut origins: Vec<(String, Origin)> = Vec::new();
    let mut garp: Option<Garp> = None;
    let mut scripts: Vec<(TrackScript, &Item, ScriptKeys)> = Vec::new();
    let mut instances: Vec<&Item> = Vec::new();
    for item in &items {
        match item.key.as_str() {
            "global_defs" => {
                for g in item.children.as_deref().unwrap_or_default() {
                    let arg = g.args.first().map(String::as_str).unwrap_or("");
                    match g.key.as_str() {
                        _ if templated(g) => report.unmapped(
                            &g.file,
                            g.line,
                            &g.text,
                            "parameter substitution ($NAME) is not resolved; set the value by hand",
                        ),
                        "router_id" => {
                            router_id = Some(arg.to_string());
                            origins.push(("cluster".into(), Origin::of(g)));
                        }
                        "vrrp_version" => {
                            origins.push(("vip.version".into(), Origin::of(g)));
                            version = Some(if arg == "3" {
                                VrrpVersion::V3
                            } else {
                                VrrpVersion::V2
                            })
                        }
                        "vrrp_garp_master_repeat" => {
                            origins.push(("vip.garp.repeat".into(), Origin::of(g)));
                            garp.get_or_insert_with(Garp::default).repeat = arg.parse().unwrap_or(5)
                        }
                        "vrrp_garp_master_delay" => {
                            origins.push(("vip.garp.delay".into(), Origin::of(g)));
                            garp.get_or_insert_with(Garp::default).delay =
                                secs(arg).unwrap_or(Dur::from_secs(5))
                        }
                        "vrrp_garp_interval" => {
                            origins.push(("vip.garp.interval".into(), Origin::of(g)));
                            garp.get_or_insert_with(Garp::default).interval =
                                secs(arg).unwrap_or_default()
                        }
                        "vrrp_garp_master_refresh" => {
                            origins.push(("vip.garp.refresh".into(), Origin::of(g)));
                            garp.get_or_insert_with(Garp::default).refresh =
                                secs(arg).unwrap_or_default()
                        }
                        "enable_script_security" | "script_user" => report.unmapped(
                            &g.file,
                            g.line,
                            &g.text,
                            "haplane runs track commands itself, without a shell; not needed",
                        ),
                        _ => report.unmapped(&g.file, g.line, &g.text, "no haplane equivalent"),
                    }
                }
            }
            "vrrp_script" => {
                let name = item.args.first().cloned().unwrap_or_default();
                let mut t = TrackScript {
                    name: super::sanitize(&name),
                    command: Vec::new(),
                    interval: Dur::from_secs(1),
                    timeout: None,
                    rise: 1,
                    fall: 1,
                    weight: 0,
                };
                let mut keys = vec![("", Origin::of(item))];
                for s in item.children.as_deref().unwrap_or_default() {
                    let arg = s.args.first().map(String::as_str).unwrap_or("");
                    let suffix = match s.key.as_str() {
                        "script" => ".command",
                        "interval" => ".interval",
                        "timeout" => ".timeout",
                        "rise" => ".rise",
                        "fall" => ".fall",
                        "weight" => ".weight",
                        _ => "",
                    };
                    if !suffix.is_empty() {
                        keys.push((suffix, Origin::of(s)));
                    }
                    match s.key.as_str() {
                        "script" => t.command = split_script(&s.args.join(" ")),
                        "interval" => t.interval = secs(arg).unwrap_or(Dur::from_secs(1)),
                        "timeout" => t.timeout = secs(arg),
                        "rise" => t.rise = arg.parse().unwrap_or(1),
                        "fall" => t.fall = arg.parse().unwrap_or(1),
                        "weight" if s.args.len() == 1 => t.weight = arg.parse().unwrap_or(0),
                        _ => report.unmapped(
                            &s.file,
                            s.line,
                            &s.text,
                            "no haplane equivalent in a tracked script",
                        ),
                    }
                }
                scripts.push((t, item, keys));
            }
            "vrrp_instance" => instances.push(item),
            _ => report.unmapped(
                &item.file,
                item.line,
                &item.text,
                "only global_defs, vrrp_script and vrrp_instance map to haplane",
            ),
        }
    }
    let Some(inst) = instances.first() else {
        return Err(ImportError::NoInstance {
            path: path.to_path_buf(),
        });
    };
    for other in &instances[1..] {
        report.unmapped(
            &other.file,
            other.line,
            &other.text,
            "haplane manages one VIP; only the first vrrp_instance was imported",
        );
    }
    let name = inst.args.first().cloned().unwrap_or_default();
    let mut k = Keepalived {
        file: path.to_path_buf(),
        router_id,
        vip: IpNet {
            addr: IpAddr::from([0, 0, 0, 0]),
            prefix: 32,
        },
        vip_line: inst.line,
        vip_prefix_assumed: false,
        vrid: 0,
        version: version.unwrap_or(VrrpVersion::V2),
        interface: None,
        priority: None,
        priority_line: inst.line,
        state: None,
        advert: None,
        preempt: true,
        preempt_delay: None,
        src_ip: None,
        unicast_peers: Vec::new(),
        auth_pass: None,
        auth_hmac: None,
        garp,
        notify: None,
        track: Vec::new(),
        origins,
    };
    let mut have_vip = false;
    let mut explicit_version = version.is_some();
    for s in inst.children.as_deref().unwrap_or_default() {
        let arg = s.args.first().map(String::as_str).unwrap_or("");
        if templated(s) {
            report.unmapped(
                &s.file,
                s.line,
                &s.text,
                "parameter substitution ($NAME) is not resolved; set the value by hand",
            );
            continue;
        }
        let key = |k: &mut Keepalived, path: &str| k.origins.push((path.into(), Origin::of(s)));
        match s.key.as_str() {
            "state" => {
                k.state = match arg {
                    "MASTER" => Some(InitialState::Master),
                    "BACKUP" => Some(InitialState::Backup),
                    _ => None,
                };
                report.unmapped(
                    &s.file,
                    s.line,
                    &s.text,
                    "haplane starts every node as backup; the priority decides the master",
                )
            }
            "interface" => {
                key(&mut k, "vip.interface");
                k.interface = Some(arg.to_string())
            }
            "virtual_router_id" => match arg.parse::<u8>() {
                Ok(v) if v > 0 => {
                    key(&mut k, "vip.vrid");
                    k.vrid = v
                }
                _ => report.unmapped(&s.file, s.line, &s.text, "not a VRID in 1..=255"),
            },
            "priority" => match arg.parse::<u8>() {
                Ok(p) if p > 0 => {
                    k.priority = Some(p);
                    k.priority_line = s.line;
                }
                _ => report.unmapped(&s.file, s.line, &s.text, "not a priority in 1..=255"),
            },
            "advert_int" => {
                key(&mut k, "vip.advertInterval");
                k.advert = secs(arg)
            }
            "version" => {
                key(&mut k, "vip.version");
                k.version = if arg == "3" {
                    VrrpVersion::V3
                } else {
                    VrrpVersion::V2
                };
                explicit_version = true;
            }
            "nopreempt" => {
                key(&mut k, "vip.preempt");
                k.preempt = false
            }
            "preempt" => k.preempt = true,
            "preempt_delay" => {
                key(&mut k, "vip.preemptDelay");
                k.preempt_delay = secs(arg)
            }
            "mcast_src_ip" | "unicast_src_ip" => match arg.parse() {
                Ok(a) => k.src_ip = Some((a, Origin::of(s))),
                Err(_) => report.unmapped(&s.file, s.line, &s.text, "not an IP address"),
            },
            "unicast_peer" => {
                for p in s.children.as_deref().unwrap_or_default() {
                    match p.key.parse() {
                        Ok(a) if p.args.is_empty() => k.unicast_peers.push((a, Origin::of(p))),
                        Ok(a) => {
                            k.unicast_peers.push((a, Origin::of(p)));
                            report.unmapped(
                                &p.file,
                                p.line,
                                &p.text,
                                "per-peer options are not supported; the address was kept",
                            );
                        }
                        Err(_) => report.unmapped(&p.file, p.line, &p.text, "not an IP address"),
                    }
                }
            }
            "authentication" => {
                let mut kind = None;
                for a in s.children.as_deref().unwrap_or_default() {
                    match a.key.as_str() {
                        "auth_type" => kind = a.args.first().cloned(),
                        "auth_pass" => {
                            k.origins.push(("vip.authPass".into(), Origin::of(a)));
                            k.auth_pass = a.args.first().cloned()
                        }
                        _ => {
                            report.unmapped(&a.file, a.line, &a.text, "unknown authentication key")
                        }
                    }
                }
                if kind.as_deref() == Some("AH") {
                    report.unmapped(
                        &s.file,
                        s.line,
                        &s.text,
                        "IPsec AH authentication is not supported; only PASS",
                    );
                    k.auth_pass = None;
                }
            }
            "auth_hmac" => k.auth_hmac = auth_hmac(s, report),
            "track_script" => {
                for t in s.children.as_deref().unwrap_or_default() {
                    match scripts
                        .iter()
                        .find(|(_, it, _)| it.args.first() == Some(&t.key))
                    {
                        Some((script, _, keys)) => {
                            let mut script = script.clone();
                            let at = format!("vip.track[{}]", k.track.len());
                            for (suffix, origin) in keys {
                                k.origins.push((format!("{at}{suffix}"), origin.clone()));
                            }
                            // `NAME weight N` on the track_script line overrides the script's
                            // weight (keepalived.conf(5), track_script).
                            match t.args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                                [] => {}
                                ["weight", w] | [w] if w.parse::<i16>().is_ok() => {
                                    script.weight = w.parse().unwrap_or(script.weight);
                                    k.origins.push((format!("{at}.weight"), Origin::of(t)));
                                }
                                _ => report.unmapped(
                                    &t.file,
                                    t.line,
                                    &t.text,
                                    "only `weight N` is carried over (not `reverse`); the script's own weight was kept",
                                ),
                            }
                            k.track.push(script);
                        }
                        None => {
                            report.unmapped(&t.file, t.line, &t.text, "no vrrp_script of that name")
                        }
                    }
                }
            }
            "virtual_ipaddress" => {
                for (n, v) in s.children.as_deref().unwrap_or_default().iter().enumerate() {
                    if n > 0 || have_vip {
                        report.unmapped(
                            &v.file,
                            v.line,
                            &v.text,
                            "haplane manages one VIP; only the first address was imported",
                        );
                        continue;
                    }
                    match vip(v, report) {
                        Some((net, assumed)) => {
                            k.vip = net;
                            k.vip_prefix_assumed = assumed;
                            k.vip_line = v.line;
                            k.origins.push(("vip.address".into(), Origin::of(v)));
                            have_vip = true;
                        }
                        None => report.unmapped(&v.file, v.line, &v.text, "not an address"),
                    }
                }
            }
            "notify" => {
                key(&mut k, "vip.notify");
                k.notify = Some(split_script(&s.args.join(" ")))
            }
            "garp_master_delay" => {
                k.garp.get_or_insert_with(Garp::default).delay =
                    secs(arg).unwrap_or(Dur::from_secs(5))
            }
            "garp_master_repeat" => {
                k.garp.get_or_insert_with(Garp::default).repeat = arg.parse().unwrap_or(5)
            }
            "garp_master_refresh" => {
                k.garp.get_or_insert_with(Garp::default).refresh = secs(arg).unwrap_or_default()
            }
            "garp_interval" => {
                k.garp.get_or_insert_with(Garp::default).interval = secs(arg).unwrap_or_default()
            }
            _ => report.unmapped(&s.file, s.line, &s.text, "no haplane equivalent"),
        }
    }
    for (script, item, _) in &scripts {
        if !k.track.iter().any(|t| t.name == script.name) {
            report.unmapped(
                &item.file,
                item.line,
                &item.text,
                "the script is not tracked by the imported instance",
            );
        }
    }
    if !have_vip {
        return Err(ImportError::NoVip {
            path: path.to_path_buf(),
            instance: name,
        });
    }
    if k.vrid == 0 {
        return Err(ImportError::NoVrid {
            path: path.to_path_buf(),
            instance: name,
        });
    }
    if k.vip.addr.is_ipv6() {
        // keepalived runs IPv6 instances as VRRPv3 whatever vrrp_version says.
        k.version = VrrpVersion::V3;
    } else if !explicit_version {
        report.note(
            path,
            inst.line,
            &inst.text,
            "no version given: keepalived's default is VRRPv2, so the import keeps version: 2 to interoperate during migration",
        );
    }
    Ok(k)
}

/// keepalived 2.4's `auth_hmac { key ID VALUE; active_key; anti_replay; time_window; mode }`
/// as `vip.authHmac`. Key values are carried over as written; report lines never show them.
fn auth_hmac(block: &Item, report: &mut Report) -> Option<AuthHmac> {
    let mut h = AuthHmac {
        keys: Default::default(),
        active_key: None,
        anti_replay: AntiReplay::Time,
        time_window: None,
        mode: HmacMode::Enforce,
    };
    let mut inline = false;
    for a in block.children.as_deref().unwrap_or_default() {
        let arg = a.args.first().map(String::as_str).unwrap_or("");
        // Say where, never what: the line holds a key.
        let shown = format!("{} ...", a.key);
        match a.key.as_str() {
            "key" => match (arg.parse::<u8>(), a.args.get(1), a.args.len()) {
                (Ok(id), Some(value), 2) if id > 0 => {
                    if value.contains('$') {
                        report.unmapped(
                            &a.file,
                            a.line,
                            &shown,
                            "parameter substitution (${_ENV ...}) is not resolved; write the key file's absolute path as file:/...",
                        );
                    } else if h.keys.insert(id, Secret::new(value.as_str())).is_some() {
                        report.unmapped(
                            &a.file,
                            a.line,
                            &shown,
                            "key id defined twice; the last was kept",
                        );
                    } else if !value.starts_with("file:") {
                        inline = true;
                    }
                }
                _ => report.unmapped(
                    &a.file,
                    a.line,
                    &shown,
                    "expected `key ID VALUE` with an id of 1..=255",
                ),
            },
            "active_key" => match arg.parse::<u8>() {
                Ok(id) if id > 0 => h.active_key = Some(id),
                _ => report.unmapped(&a.file, a.line, &a.text, "not a key id in 1..=255"),
            },
            "anti_replay" => match arg {
                "time" => h.anti_replay = AntiReplay::Time,
                "monotonic" => h.anti_replay = AntiReplay::Monotonic,
                _ => report.unmapped(&a.file, a.line, &a.text, "anti_replay is time or monotonic"),
            },
            "time_window" => match arg.parse::<u64>() {
                Ok(s) => h.time_window = Some(Dur::from_secs(s)),
                Err(_) => report.unmapped(&a.file, a.line, &a.text, "not whole seconds"),
            },
            "mode" => match arg {
                "enforce" => h.mode = HmacMode::Enforce,
                "permissive" => h.mode = HmacMode::Permissive,
                "receive-only" => h.mode = HmacMode::ReceiveOnly,
                _ => report.unmapped(
                    &a.file,
                    a.line,
                    &a.text,
                    "mode is enforce, permissive or receive-only",
                ),
            },
            _ => report.unmapped(&a.file, a.line, &shown, "unknown auth_hmac key"),
        }
    }
    if h.keys.is_empty() {
        report.unmapped(
            &block.file,
            block.line,
            "auth_hmac {",
            "no usable key; authHmac was not imported",
        );
        return None;
    }
    if inline {
        report.note(
            &block.file,
            block.line,
            "auth_hmac {",
            "inline keys were copied into the cluster file: keep it mode 600 on every node, or move them to file: keys",
        );
    }
    Some(h)
}

fn vip(v: &Item, report: &mut Report) -> Option<(IpNet, bool)> {
    let text = v.key.as_str();
    let (net, assumed) = match text.parse::<IpNet>() {
        Ok(n) => (n, false),
        Err(_) => {
            let addr: IpAddr = text.parse().ok()?;
            let prefix = if addr.is_ipv4() { 24 } else { 64 };
            (IpNet { addr, prefix }, true)
        }
    };
    if assumed {
        report.note(
            &v.file,
            v.line,
            &v.text,
            format!(
                "no prefix length: keepalived adds it as /{}; assumed /{} so the masters share its subnet",
                if net.addr.is_ipv4() { 32 } else { 128 },
                net.prefix
            ),
        );
    }
    if !v.args.is_empty() {
        let opts = v.args.join(" ");
        if !(v.args.len() == 2 && v.args[0] == "dev") {
            report.unmapped(
                &v.file,
                v.line,
                &v.text,
                format!("address options {opts:?} are not supported"),
            );
        }
    }
    Some((net, assumed))
}
