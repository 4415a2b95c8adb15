//! Issue 10: maintenance and graceful handover without a failed request, and backend admin
//! state over the root-only admin socket. Two masters with nginx backends, a client host,
//! real kernel networking in namespaces: the old holder parks the VIP on lo, the new holder
//! forwards the old sessions' packets to it (nftables dup, conntrack).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::{Cfg, Lab, VIP};

/// 1 MiB at 200 KiB/s: a stream of about 5 s.
const STREAM_BYTES: usize = 1 << 20;

/// nginx on `host`:8080: `/` answers the host's name, `/slow/big` streams 1 MiB slowly.
fn start_nginx(lab: &mut Lab, host: &str) {
    let dir = lab.dir.path().join(format!("nginx-{host}"));
    std::fs::create_dir_all(dir.join("www/slow")).unwrap();
    std::fs::write(dir.join("www/slow/big"), vec![7u8; STREAM_BYTES]).unwrap();
    let addr = lab.host(host).address();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  keepalive_timeout 300s;\n  server {{\n    listen {addr}:8080;\n    location = / {{ return 200 \"{host}\\n\"; }}\n    location /slow/ {{ root {d}/www; limit_rate 200k; }}\n  }}\n}}\n"
    );
    let path = lab.write(&format!("nginx-{host}.conf"), &conf);
    let log = dir.join("stderr.log");
    let mut cmd = lab.host(host).command("nginx");
    cmd.arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"));
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let handle = lab.host(host).spawn(cmd).unwrap();
    lab.daemons.push(support::Daemon {
        name: format!("nginx on {host}"),
        handle,
        log,
    });
}

fn cluster(lab: &Lab) -> std::path::PathBuf {
    cluster_with(lab, false)
}

fn cluster_with(lab: &Lab, preempt: bool) -> std::path::PathBuf {
    let cfg = Cfg {
        preempt,
        ..Cfg::new(&[("m1", "192.0.2.11", 150), ("m2", "192.0.2.12", 100)])
    };
    let extra = format!(
        "apiServer: {{port: 8080}}\nstatus: {{adminSocket: \"{}/{{node}}.sock\"}}\nloadBalancer:\n  healthCheck: {{type: http, path: /, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}}\n  slowStart: 0s\n",
        lab.dir.path().display()
    );
    lab.write("cluster.yaml", &(cfg.yaml() + &extra))
}

fn haplane_cli(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haplane"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// One HTTP/1.1 GET through the VIP on a new connection: the body length, or the error.
fn fetch(path: &str) -> Result<usize, String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{VIP}:6443").parse().unwrap(),
        Duration::from_secs(2),
    )
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("receive: {e}"))?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(format!("bad answer ({} bytes)", buf.len()));
    }
    let start = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    Ok(buf.len() - start)
}

/// Every stream arrived whole and no request of the loop failed (the handover's promise).
fn assert_nothing_cut_or_failed(
    lab: &Lab,
    streams: &[Result<usize, String>],
    requests: &[(Instant, Result<usize, String>)],
    old_holder: &str,
) {
    for r in streams {
        assert_eq!(
            r.as_ref().ok(),
            Some(&STREAM_BYTES),
            "a stream through {old_holder} was cut: {r:?}\n{}",
            lab.logs()
        );
    }
    let failed: Vec<_> = requests.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(requests.len() > 40, "{} requests", requests.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{}",
        failed.len(),
        requests.len(),
        lab.logs()
    );
}

fn wait_backends_up(lab: &Lab, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = lab.status(host);
        let up = st["load_balancer"]["backends"]
            .as_array()
            .map(|b| b.iter().filter(|b| b["up"] == true).count());
        if up == Some(2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends not up on {host}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn maintenance_hands_the_vip_over_without_a_failed_request_or_a_reset_stream() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let config = cluster(&lab);
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    lab.start_haplane("m1", &config);
    // No preemption: m1 must be master before m2 starts.
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    lab.start_haplane("m2", &config);
    wait_backends_up(&lab, "m1");
    wait_backends_up(&lab, "m2");

    let stop = AtomicBool::new(false);
    let client = lab.host("c");
    let (streams, requests) = std::thread::scope(|s| {
        // Long-lived streams, all through the VIP holder m1's balancer.
        let streams: Vec<_> = (0..3)
            .map(|_| s.spawn(|| client.enter(|| fetch("/slow/big")).unwrap()))
            .collect();
        // A request loop: a new connection every 20 ms.
        let loop_ = s.spawn(|| {
            client
                .enter(|| {
                    let mut results = Vec::new();
                    while !stop.load(Relaxed) {
                        let t = Instant::now();
                        results.push((t, fetch("/")));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    results
                })
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(1000));
        let (ok, out) = haplane_cli(&["maintenance", "enter", "--node", "m1"], &config);
        assert!(ok, "maintenance enter: {out}\n{}", lab.logs());
        assert!(out.contains("another router took the VIP"), "{out}");
        lab.wait_holders(&["m2"], Duration::from_secs(2));
        let streams: Vec<_> = streams.into_iter().map(|t| t.join().unwrap()).collect();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Relaxed);
        (streams, loop_.join().unwrap())
    });

    assert_nothing_cut_or_failed(&lab, &streams, &requests, "the old holder");

    // The old sessions closed properly through the forwarding (FIN, ACK): none left open.
    let deadline = Instant::now() + Duration::from_secs(3);
    while lab.status("m1")["load_balancer"]["activeConnections"] != 0 {
        assert!(
            Instant::now() < deadline,
            "sessions left on m1\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m1 = lab.status("m1");
    assert_eq!(m1["maintenance"]["active"], true, "{m1}");
    assert_eq!(m1["maintenance"]["parked"], "maintenance", "{m1}");
    assert_eq!(m1["vrrp"][0]["state"], "FAULT", "{m1}");
    let m2 = lab.status("m2");
    assert_eq!(m2["maintenance"]["forwardingTo"], "192.0.2.11", "{m2}");
    let metrics = lab.http_get("m1", "/metrics");
    assert!(metrics.contains("haplane_vip_parked 1"), "{metrics}");

    let (ok, out) = haplane_cli(&["maintenance", "exit", "--node", "m1"], &config);
    assert!(ok, "maintenance exit: {out}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while lab.status("m1")["vrrp"][0]["state"] != "BACKUP" {
        assert!(
            Instant::now() < deadline,
            "m1 did not rejoin\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.status("m1")["maintenance"]["active"], false);
    // No preemption here: the VIP stays where it went.
    lab.assert_holders_stay(&["m2"], Duration::from_millis(500));
}

#[test]
fn a_preempting_master_takes_the_vip_without_cutting_a_stream_or_failing_a_request() {
    // RFC 5798 §6.4.3: a returning higher-priority master (m1, 150) outranks the holder (m2,
    // 100), which goes backup at once. Issue 14: a node's return must cost no more than a
    // graceful handover, so the preempted holder parks the VIP and the preempting one,
    // which heard its adverts until it took over, forwards its sessions to it.
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let config = cluster_with(&lab, true);
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    lab.start_haplane("m2", &config);
    lab.wait_holders(&["m2"], Duration::from_secs(6));
    wait_backends_up(&lab, "m2");

    let stop = AtomicBool::new(false);
    let client = lab.host("c");
    let (streams, requests, m1) = std::thread::scope(|s| {
        let streams: Vec<_> = (0..3)
            .map(|_| s.spawn(|| client.enter(|| fetch("/slow/big")).unwrap()))
            .collect();
        let loop_ = s.spawn(|| {
            client
                .enter(|| {
                    let mut results = Vec::new();
                    while !stop.load(Relaxed) {
                        results.push((Instant::now(), fetch("/")));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    results
                })
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(1000));
        let m1 = lab.spawn_haplane("m1", &config, &[]);
        lab.wait_holders(&["m1"], Duration::from_secs(6));
        let streams: Vec<_> = streams.into_iter().map(|t| t.join().unwrap()).collect();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Relaxed);
        (streams, loop_.join().unwrap(), m1)
    });
    lab.daemons.push(m1);

    assert_nothing_cut_or_failed(&lab, &streams, &requests, "the preempted holder");
    let m2 = lab.status("m2");
    assert_eq!(m2["maintenance"]["parked"], "preempted", "{m2}");
    assert_eq!(m2["vrrp"][0]["state"], "BACKUP", "{m2}");
    let m1 = lab.status("m1");
    assert_eq!(m1["maintenance"]["forwardingTo"], "192.0.2.12", "{m1}");
}

#[test]
fn lb_drain_over_the_admin_socket_keeps_sessions_and_enable_restores_the_backend() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let config = cluster(&lab);
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    lab.start_haplane("m1", &config);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    wait_backends_up(&lab, "m1");
    let names = |n: usize| -> std::collections::BTreeSet<String> {
        (0..n)
            .map(|_| {
                lab.host("c")
                    .enter(|| {
                        let mut s = TcpStream::connect(format!("{VIP}:6443")).unwrap();
                        write!(s, "GET / HTTP/1.0\r\n\r\n").unwrap();
                        let mut out = String::new();
                        s.read_to_string(&mut out).unwrap();
                        out.rsplit("\r\n\r\n").next().unwrap().trim().to_string()
                    })
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(names(6).len(), 2);

    // A node name picks its backend; the reply says what changed.
    let (ok, out) = haplane_cli(&["lb", "drain", "m2", "--node", "m1"], &config);
    assert!(ok, "{out}\n{}", lab.logs());
    assert!(out.contains("192.0.2.12:8080 admin drain"), "{out}");
    assert_eq!(names(6).into_iter().collect::<Vec<_>>(), ["m1"]);
    let st = lab.status("m1");
    let b = &st["load_balancer"]["backends"][1];
    assert_eq!(
        (b["admin"].as_str(), b["state"].as_str()),
        (Some("drain"), Some("up")),
        "{st}"
    );
    assert!(
        lab.http_get("m1", "/metrics")
            .contains("haplane_lb_backend_admin_drain{backend=\"192.0.2.12:8080\"} 1")
    );

    let (ok, out) = haplane_cli(
        &["lb", "enable", "192.0.2.12:8080", "--node", "m1"],
        &config,
    );
    assert!(ok, "{out}");
    assert_eq!(names(6).len(), 2);

    // Bad input names what is wrong; the status port takes no commands.
    let (ok, out) = haplane_cli(&["lb", "drain", "192.0.2.99:1", "--node", "m1"], &config);
    assert!(
        !ok && out.contains("192.0.2.99:1 is not a backend"),
        "{out}"
    );
    let (ok, out) = haplane_cli(&["lb", "drain", "m2", "--node", "m2"], &config);
    assert!(!ok && out.contains("no haplane daemon answers"), "{out}");
    let post = lab
        .host("m1")
        .enter(|| {
            let mut s = TcpStream::connect("127.0.0.1:9470").unwrap();
            write!(s, "POST /lb/drain HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    assert!(
        post.starts_with("HTTP/1.0 405") || post.starts_with("HTTP/1.1 405"),
        "{post}"
    );
    let mode = std::fs::metadata(lab.dir.path().join("m1.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn sigterm_parks_the_vip_so_a_stream_through_the_old_holder_finishes() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "c"]);
    let config = cluster(&lab);
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    let m1 = lab.start_haplane("m1", &config);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    lab.start_haplane("m2", &config);
    wait_backends_up(&lab, "m1");
    wait_backends_up(&lab, "m2");
    let client = lab.host("c");
    let (stream, after) = std::thread::scope(|s| {
        let stream = s.spawn(|| client.enter(|| fetch("/slow/big")).unwrap());
        std::thread::sleep(Duration::from_millis(800));
        lab.daemons[m1]
            .handle
            .signal(nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        lab.wait_holders(&["m2"], Duration::from_secs(2));
        // New connections go to the new holder at once.
        let after = client.enter(|| fetch("/")).unwrap();
        (stream.join().unwrap(), after)
    });
    assert_eq!(after.ok(), Some(3), "m1 or m2 answered a new request");
    assert_eq!(
        stream.ok(),
        Some(STREAM_BYTES),
        "the stream through the stopping holder was cut\n{}",
        lab.logs()
    );
    let exited = lab.daemons[m1]
        .handle
        .wait_timeout(Duration::from_secs(10))
        .unwrap();
    // It exits once the stream ended: the client's closing FIN reached it through m2.
    assert!(exited.is_some_and(|s| s.success()), "{}", lab.logs());
    // It removed the parked VIP and its rules on the way out.
    let lo = lab
        .host("m1")
        .run(&["ip", "-o", "addr", "show", "dev", "lo"])
        .unwrap();
    assert!(!String::from_utf8_lossy(&lo.stdout).contains(VIP));
    let nft = lab.host("m1").run(&["nft", "list", "tables"]).unwrap();
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("haplane"));
}

/// The handover's tables as the text rules the daemon once piped into `nft -f -`, for a VIP
/// on `eth0` with balancer port 6443, node address `node` and old holder `to`.
fn handover_rules_text(node: &str, to: &str) -> String {
    format!(
        "table arp haplane_park {{\n  chain input {{\n    type filter hook input priority 0;\n    arp operation request arp daddr ip {VIP} drop\n  }}\n  chain output {{\n    type filter hook output priority 0;\n    arp saddr ip {VIP} arp saddr ip set {node}\n  }}\n}}\n\
         table ip haplane_handover {{\n  chain prerouting {{\n    type filter hook prerouting priority -150;\n\
         \x20   ip daddr {VIP} tcp dport {{ 6443 }} tcp flags & (syn | ack) != syn ct state new counter dup to {to} device \"eth0\" drop\n\
         \x20   ip daddr {VIP} tcp dport {{ 6443 }} tcp flags & (fin | rst) != 0 ct state invalid counter dup to {to} device \"eth0\" drop\n  }}\n}}\n"
    )
}

/// `nft -j list table FAMILY NAME` on `host`: its chains and rules, without handles and with
/// counters zeroed, so two tables built the same way compare equal.
fn table_json(lab: &Lab, host: &str, family: &str, name: &str) -> (Vec<serde_json::Value>, u64) {
    let out = lab
        .host(host)
        .run(&["nft", "-j", "list", "table", family, name])
        .unwrap_or_else(|e| panic!("no table {family} {name} on {host}: {e}\n{}", lab.logs()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut packets = 0;
    let mut items = Vec::new();
    for item in v["nftables"].as_array().unwrap() {
        let mut item = item.clone();
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        if obj.contains_key("metainfo") {
            continue;
        }
        for inner in obj.values_mut() {
            if let Some(o) = inner.as_object_mut() {
                o.remove("handle");
                for e in o
                    .get_mut("expr")
                    .and_then(|e| e.as_array_mut())
                    .into_iter()
                    .flatten()
                {
                    if let Some(c) = e.get_mut("counter") {
                        packets += c["packets"].as_u64().unwrap_or(0);
                        *c = serde_json::json!({"packets": 0, "bytes": 0});
                    }
                }
            }
        }
        items.push(item);
    }
    (items, packets)
}

/// The handover's nftables rules are programmed over netlink (no `nft` binary: the static
/// pod's image has none), and they are the same rules nft makes of the text the daemon used to
/// pipe into it. With them a stream through the old holder survives maintenance, its packets
/// forwarded by the new holder's rules.
#[test]
fn without_the_nft_binary_the_handover_rules_are_programmed_and_a_stream_survives_maintenance() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1", "m2", "c", "x"]);
    let config = cluster(&lab);
    start_nginx(&mut lab, "m1");
    start_nginx(&mut lab, "m2");
    // A PATH with `ip` only (the host's `ip netns exec` starts the daemon): no `nft`.
    let bin = lab.dir.path().join("bin-without-nft");
    std::fs::create_dir(&bin).unwrap();
    let ip = ["/usr/bin/ip", "/bin/ip", "/usr/sbin/ip", "/sbin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("iproute2's ip");
    std::os::unix::fs::symlink(ip, bin.join("ip")).unwrap();
    let path = [("PATH", bin.to_str().unwrap())];
    lab.start_haplane_env("m1", &config, &path);
    lab.wait_holders(&["m1"], Duration::from_secs(6));
    lab.start_haplane_env("m2", &config, &path);
    wait_backends_up(&lab, "m1");
    wait_backends_up(&lab, "m2");

    let client = lab.host("c");
    let stream = std::thread::scope(|s| {
        let stream = s.spawn(|| client.enter(|| fetch("/slow/big")).unwrap());
        std::thread::sleep(Duration::from_millis(800));
        let (ok, out) = haplane_cli(&["maintenance", "enter", "--node", "m1"], &config);
        assert!(ok, "maintenance enter: {out}\n{}", lab.logs());
        lab.wait_holders(&["m2"], Duration::from_secs(2));
        stream.join().unwrap()
    });
    assert_eq!(
        stream.ok(),
        Some(STREAM_BYTES),
        "the stream through the old holder was cut\n{}",
        lab.logs()
    );

    // What nft itself makes of the old text rules, on a spare host (same interface name).
    let text = lab.write(
        "handover.nft",
        &handover_rules_text(&lab.host("m1").address().to_string(), "192.0.2.11"),
    );
    lab.host("x")
        .run(&["nft", "-f", text.to_str().unwrap()])
        .unwrap();
    let (park_want, _) = table_json(&lab, "x", "arp", "haplane_park");
    let (forward_want, _) = table_json(&lab, "x", "ip", "haplane_handover");
    // A table, its chains and their rules.
    assert_eq!(
        (park_want.len(), forward_want.len()),
        (5, 4),
        "{park_want:?} {forward_want:?}"
    );
    let (park, _) = table_json(&lab, "m1", "arp", "haplane_park");
    let (forward, forwarded) = table_json(&lab, "m2", "ip", "haplane_handover");
    assert_eq!(
        serde_json::Value::from(park),
        serde_json::Value::from(park_want),
        "the old holder's ARP rules"
    );
    assert_eq!(
        serde_json::Value::from(forward),
        serde_json::Value::from(forward_want),
        "the new holder's forwarding rules"
    );
    // The stream's ACKs (and its closing FIN) went through the new holder's rules.
    assert!(forwarded > 0, "nothing was forwarded\n{}", lab.logs());
    let logs = lab.logs();
    assert!(
        !logs.contains("cannot stop ARP") && !logs.contains("cannot forward"),
        "the daemons logged a failure\n{logs}"
    );
}
