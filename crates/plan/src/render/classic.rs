//! The classic stack: a keepalived.conf and haproxy.cfg equivalent to the cluster file, for
//! people who keep keepalived + haproxy.

use std::fmt::Write;
use std::time::Duration;

use config::{CheckType, Cluster, Fencing, Node, Policy, VrrpVersion};

use super::{PlanOptions, host};

/// Round a duration up to whole seconds, at least 1 (keepalived's script intervals).
fn whole_secs_up(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() != 0);
    s.max(1)
}

/// Seconds as keepalived writes them: an integer, or a decimal for sub-second values.
fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Characters keepalived reads as part of one word of a quoted script string.
fn keepalived_word(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '"' || c == '\'' || c == '\\' || c.is_control())
}

/// A name keepalived accepts for a vrrp_script: letters, digits, `_`, `-` and `.`.
fn keepalived_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "track".into() } else { s }
}

/// One argument for /bin/sh, in single quotes (a quote inside becomes `'\''`).
fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// A script file next to keepalived.conf for a command its script line cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrapper {
    /// The file name under `NODE/classic/` and /etc/keepalived/.
    pub name: String,
    pub contents: String,
}

/// How keepalived.conf runs `cmd`: inline when every argument is a word its quoted string can
/// hold, else through a wrapper script (`append_args`: keepalived's notify arguments go on).
fn command(cmd: &[String], file: &str, append_args: bool, wrappers: &mut Vec<Wrapper>) -> String {
    if cmd.iter().all(|a| keepalived_word(a)) {
        return script_line(cmd);
    }
    let args: Vec<String> = cmd.iter().map(|a| sh_quote(a)).collect();
    wrappers.push(Wrapper {
        name: file.to_string(),
        contents: format!(
            "#!/bin/sh\n# Rendered by haplane plan: keepalived's script line cannot carry this command's\n# quotes or backslashes. Install as /etc/keepalived/{file}, mode 0755, owned by root.\nexec {}{}\n",
            args.join(" "),
            if append_args { " \"$@\"" } else { "" }
        ),
    });
    format!("\"/etc/keepalived/{file}\"")
}

/// A command as one keepalived script string; arguments with spaces go in single quotes
/// (keepalived.conf(5), "Quoted strings").
fn script_line(cmd: &[String]) -> String {
    let words: Vec<String> = cmd
        .iter()
        .map(|a| {
            if a.chars().any(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    format!("\"{}\"", words.join(" "))
}

/// keepalived.conf for one node that carries the VIP (a master, or an `lb` node), and the
/// wrapper scripts it runs.
pub(crate) fn keepalived_conf(c: &Cluster, node: &Node) -> (String, Vec<Wrapper>) {
    let v = &c.vip;
    let mut wrappers = Vec::new();
    let names: Vec<String> = v
        .track
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n = keepalived_name(&t.name);
            let taken = v.track[..i].iter().any(|o| keepalived_name(&o.name) == n);
            if taken { format!("{n}_{i}") } else { n }
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "! keepalived.conf for {} (cluster {}), rendered by haplane plan.\n! The classic-stack equivalent of the cluster file's vip section.",
        node.name, c.cluster
    );
    if c.fencing() == Fencing::Quorum {
        s.push_str("! NOTE: keepalived has no quorum fencing; haplane's fencing: quorum (hold the VIP only\n! while holding its etcd election) is not reproduced here.\n");
    }
    if v.v3_checksum_as_v2 {
        s.push_str("! NOTE: vip.v3ChecksumAsV2 needs keepalived's v3_checksum_as_v2 (not in keepalived 2.2.7).\n");
    }
    let scripts = !v.track.is_empty() || v.notify.is_some();
    let _ = writeln!(s, "global_defs {{\n    router_id {}", node.name);
    if scripts {
        // Without script security keepalived refuses to run scripts as root silently.
        s.push_str("    enable_script_security\n    script_user root\n");
    }
    let _ = writeln!(
        s,
        "    vrrp_version {}\n    vrrp_garp_master_repeat {}\n    vrrp_garp_master_delay {}",
        if v.version == VrrpVersion::V2 { 2 } else { 3 },
        v.garp.repeat,
        if v.garp.delay.get().is_zero() {
            0
        } else {
            whole_secs_up(v.garp.delay.get())
        },
    );
    // keepalived rejects an explicit 0 for these two; leaving them out means "off".
    if !v.garp.interval.get().is_zero() {
        let _ = writeln!(s, "    vrrp_garp_interval {}", secs(v.garp.interval.get()));
    }
    if v.garp.refresh.get().as_secs() > 0 {
        let _ = writeln!(
            s,
            "    vrrp_garp_master_refresh {}",
            v.garp.refresh.get().as_secs()
        );
    }
    s.push_str("}\n");
    for (t, name) in v.track.iter().zip(&names) {
        let script = command(
            &t.command,
            &format!("haplane-track-{name}.sh"),
            false,
            &mut wrappers,
        );
        let _ = writeln!(s, "\nvrrp_script {name} {{\n    script {script}");
        let _ = writeln!(s, "    interval {}", whole_secs_up(t.interval.get()));
        if let Some(timeout) = t.timeout {
            let _ = writeln!(s, "    timeout {}", whole_secs_up(timeout.get()));
        }
        let _ = writeln!(
            s,
            "    rise {}\n    fall {}\n    weight {}\n}}",
            t.rise, t.fall, t.weight
        );
    }
    let iface = c.vip_interface(node);
    let _ = writeln!(
        s,
        "\nvrrp_instance haplane_{} {{\n    # BACKUP everywhere: the highest priority wins the election instead of every\n    # node claiming the VIP at boot.\n    state BACKUP\n    interface {iface}\n    virtual_router_id {}\n    version {}\n    priority {}\n    advert_int {}",
        c.cluster.replace('-', "_"),
        v.vrid,
        if v.version == VrrpVersion::V2 { 2 } else { 3 },
        node.priority,
        secs(v.advert_interval.get())
    );
    if !v.preempt {
        s.push_str("    nopreempt\n");
    } else if !v.preempt_delay.get().is_zero() {
        let _ = writeln!(s, "    preempt_delay {}", secs(v.preempt_delay.get()));
    }
    if v.unicast {
        let _ = writeln!(
            s,
            "    unicast_src_ip {}\n    unicast_peer {{",
            node.address
        );
        for peer in c.vrrp_nodes().filter(|m| m.name != node.name) {
            let _ = writeln!(s, "        {}", peer.address);
        }
        s.push_str("    }\n");
    }
    if let Some(pass) = &v.auth_pass
        && v.version == VrrpVersion::V2
    {
        let _ = writeln!(
            s,
            "    authentication {{\n        auth_type PASS\n        auth_pass {}\n    }}",
            pass.expose()
        );
    }
    if let Some(h) = &v.auth_hmac {
        s.push_str(
            "    # auth_hmac needs keepalived 2.4 or later (Debian 12's 2.2.7 refuses it)\n",
        );
        s.push_str("    auth_hmac {\n");
        for (id, key) in &h.keys {
            let _ = writeln!(s, "        key {id} {}", key.expose());
        }
        if let Some(id) = h.active() {
            let _ = writeln!(s, "        active_key {id}");
        }
        let anti_replay = match h.anti_replay {
            config::AntiReplay::Time => "time",
            config::AntiReplay::Monotonic => "monotonic",
        };
        let _ = writeln!(s, "        anti_replay {anti_replay}");
        if let Some(w) = h.time_window {
            let _ = writeln!(s, "        time_window {}", w.get().as_secs());
        }
        let mode = match h.mode {
            config::HmacMode::Enforce => "enforce",
            config::HmacMode::Permissive => "permissive",
            config::HmacMode::ReceiveOnly => "receive-only",
        };
        let _ = writeln!(s, "        mode {mode}\n    }}");
    }
    if !v.track.is_empty() {
        s.push_str("    track_script {\n");
        for name in &names {
            let _ = writeln!(s, "        {name}");
        }
        s.push_str("    }\n");
    }
    let _ = writeln!(
        s,
        "    virtual_ipaddress {{\n        {} dev {iface}\n    }}",
        v.address
    );
    if let Some(cmd) = &v.notify {
        let notify = command(cmd, "haplane-notify.sh", true, &mut wrappers);
        let _ = writeln!(s, "    notify {notify}");
    }
    s.push_str("}\n");
    (s, wrappers)
}

/// The haproxy `balance` algorithm closest to the cluster file's policy.
fn balance(p: Policy) -> &'static str {
    match p {
        Policy::RoundRobin => "roundrobin",
        Policy::LeastConnections => "leastconn",
        Policy::RandomTwoChoices => "random(2)",
    }
}

fn expect(status: &str) -> String {
    match config::parse_status_range(status) {
        Some((lo, hi)) if lo == hi => format!("status {lo}"),
        Some((lo, hi)) if lo % 100 == 0 && hi == lo + 99 => {
            format!("rstatus ^{}[0-9][0-9]$", lo / 100)
        }
        Some((lo, hi)) => {
            let codes: Vec<String> = (lo..=hi).map(|c| c.to_string()).collect();
            format!("rstatus ^({})$", codes.join("|"))
        }
        None => "status 200".into(),
    }
}

/// haproxy.cfg for one node: the VIP on the nodes that carry it, node-local listeners on workers.
pub(crate) fn haproxy_cfg(c: &Cluster, node: &Node, o: &PlanOptions) -> String {
    let lb = &c.load_balancer;
    let hc = &lb.health_check;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# haproxy.cfg for {} (cluster {}), rendered by haplane plan.\n# The classic-stack equivalent of the cluster file's loadBalancer section.",
        node.name, c.cluster
    );
    let _ = writeln!(
        s,
        "global\n    log /dev/log local0\n    maxconn {}\n\ndefaults\n    mode tcp\n    log global\n    option tcplog\n    option dontlognull\n    timeout connect {}ms",
        lb.max_connections,
        lb.connect_timeout.get().as_millis()
    );
    // Without an idle timeout haplane keeps watches and `kubectl logs -f` open (kubeadm#2227);
    // haproxy needs some value, so use a day unless the file sets one.
    let idle = lb
        .idle_timeout
        .map(|d| format!("{}ms", d.get().as_millis()))
        .unwrap_or_else(|| "24h".into());
    let _ = writeln!(
        s,
        "    timeout client {idle}\n    timeout server {idle}\n    timeout tunnel {idle}\n    timeout client-fin 10s\n    timeout server-fin 10s"
    );
    if lb.tcp_keepalive.is_some() {
        s.push_str("    option clitcpka\n    option srvtcpka\n");
    }
    let _ = writeln!(s, "\nfrontend apiserver");
    let listens = if c.runs_vrrp(node) {
        &lb.listen
    } else {
        &lb.node_local_listen
    };
    for l in listens {
        let sa = c.resolve_listen(*l);
        // `transparent` lets a backup bind the VIP before it holds it (like ip_nonlocal_bind).
        let extra = if sa.ip() == c.vip.address.addr {
            " transparent"
        } else {
            ""
        };
        let _ = writeln!(s, "    bind {}:{}{extra}", host(sa.ip()), sa.port());
    }
    let _ = writeln!(
        s,
        "    default_backend apiserver\n\nbackend apiserver\n    balance {}",
        balance(lb.policy)
    );
    match hc.kind {
        CheckType::Tcp => {}
        CheckType::Http | CheckType::Https => {
            s.push_str("    option httpchk\n");
            if hc.kind == CheckType::Https {
                s.push_str("    http-check connect ssl\n");
            }
            let _ = writeln!(
                s,
                "    http-check send meth GET uri {}\n    http-check expect {}",
                hc.path,
                expect(&hc.expect_status)
            );
        }
    }
    let mut server_opts = format!(
        "check inter {}ms fall {} rise {}",
        hc.interval.get().as_millis(),
        hc.fall,
        hc.rise
    );
    if hc.kind == CheckType::Https {
        if hc.insecure_skip_verify {
            server_opts.push_str(" check-ssl verify none");
        } else {
            let ca = hc.ca_file.clone().unwrap_or_else(|| o.kube_ca_file.clone());
            let _ = write!(
                server_opts,
                " check-ssl verify required ca-file {}",
                ca.display()
            );
        }
        if let Some(cert) = &hc.cert_file {
            let _ = write!(server_opts, " crt {}", cert.display());
        }
    }
    if lb.shutdown_sessions_on_down {
        // Clients reconnect at once instead of waiting for TCP retransmission (15 min).
        server_opts.push_str(" on-marked-down shutdown-sessions");
    }
    if let Some(max) = lb.max_connections_per_backend {
        let _ = write!(server_opts, " maxconn {max}");
    }
    let _ = writeln!(s, "    default-server {server_opts}");
    let names: std::collections::HashMap<std::net::IpAddr, &str> = c
        .nodes
        .iter()
        .map(|n| (n.address, n.name.as_str()))
        .collect();
    for (i, b) in c.lb_backends().iter().enumerate() {
        let name = names
            .get(&b.address.ip())
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("backend{i}"));
        let _ = writeln!(
            s,
            "    server {name} {}:{} weight {}",
            host(b.address.ip()),
            b.address.port(),
            b.weight
        );
    }
    s
}
