//! Shared helpers for the namespace tests: start haplane and keepalived on netlab hosts,
//! sample who holds the VIP, read a daemon's /status from inside its namespace.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netlab::{Host, ProcessHandle, Topology};

pub const VIP: &str = "192.0.2.100";

pub fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

/// None when the test can run; otherwise why not (printed, and the test returns early).
/// CI runs as root, so there these tests always run.
pub fn skip() -> bool {
    if let Some(reason) = netlab::skip_reason() {
        if std::env::var_os("CI").is_some() {
            panic!("namespace tests must run in CI: {reason}");
        }
        eprintln!("skipped: {reason}");
        return true;
    }
    false
}

/// A daemon started on a host, with its log file.
pub struct Daemon {
    pub name: String,
    pub handle: ProcessHandle,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Everything a test started, for failure messages.
pub struct Lab {
    /// The address whose holders are sampled (the IPv4 VIP unless a test changes it).
    pub vip: IpAddr,
    pub topo: Topology,
    pub dir: tempfile::TempDir,
    pub daemons: Vec<Daemon>,
    /// etcd's data, on tmpfs when there is one (as in `haplane lab`): a shared machine's slow
    /// fsyncs would otherwise stall etcd for seconds and the tests would measure the disk.
    pub etcd_dir: Option<tempfile::TempDir>,
}

impl Lab {
    pub fn new(hosts: &[&str]) -> Lab {
        let topo = Topology::builder()
            .hosts(hosts.iter().copied())
            .build()
            .expect("build topology");
        Lab {
            vip: vip(),
            topo,
            dir: tempfile::tempdir().expect("tempdir"),
            daemons: Vec::new(),
            etcd_dir: None,
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        self.topo.host(name).expect("host exists")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Start `haplane run --config CFG --node HOST` on the host of the same name.
    pub fn start_haplane(&mut self, host: &str, config: &Path) -> usize {
        self.start_haplane_env(host, config, &[])
    }

    /// As [`Lab::start_haplane`], with extra environment variables for the daemon.
    pub fn start_haplane_env(&mut self, host: &str, config: &Path, env: &[(&str, &str)]) -> usize {
        let daemon = self.spawn_haplane(host, config, env);
        self.daemons.push(daemon);
        self.daemons.len() - 1
    }

    /// Starts the daemon as [`Lab::start_haplane_env`] does, but leaves it to the caller to
    /// add to `daemons` (so it can be started while other threads borrow the lab); the
    /// topology kills it when dropped either way.
    pub fn spawn_haplane(&self, host: &str, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!("{host}-haplane.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = self.host(host).command(env!("CARGO_BIN_EXE_haplane"));
        cmd.envs(env.iter().copied());
        cmd.args(["run", "--config"])
            .arg(config)
            .args(["--node", host, "--log", "debug"])
            .stdout(Stdio::null())
            .stderr(file);
        let handle = self.host(host).spawn(cmd).expect("spawn haplane");
        Daemon {
            name: format!("haplane on {host}"),
            handle,
            log,
        }
    }

    /// Start keepalived (VRRP only, foreground) with `conf` on `host`.
    pub fn start_keepalived(&mut self, host: &str, conf: &str) -> usize {
        let dir = self.dir.path();
        let conf_path = self.write(&format!("{host}-keepalived.conf"), conf);
        let log = dir.join(format!("{host}-keepalived.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = self.host(host).command("keepalived");
        cmd.args([
            "--vrrp",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "-f",
        ])
        .arg(&conf_path)
        .arg(format!(
            "--pid={}",
            dir.join(format!("{host}-k.pid")).display()
        ))
        .arg(format!(
            "--vrrp_pid={}",
            dir.join(format!("{host}-kv.pid")).display()
        ))
        .arg(format!(
            "--checkers_pid={}",
            dir.join(format!("{host}-kc.pid")).display()
        ))
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        let handle = self.host(host).spawn(cmd).expect("spawn keepalived");
        self.daemons.push(Daemon {
            name: format!("keepalived on {host}"),
            handle,
            log,
        });
        self.daemons.len() - 1
    }

    /// Hosts that have the VIP on eth0 now.
    pub fn holders(&self) -> Vec<String> {
        self.topo
            .hosts()
            .iter()
            .filter(|h| h.has_address(self.vip).unwrap_or(false))
            .map(|h| h.name().to_string())
            .collect()
    }

    /// A lab whose hosts also have IPv6 addresses `2001:db8::(11+i)/64`.
    pub fn new_dual_stack(hosts: &[&str]) -> Lab {
        let mut builder = Topology::builder().hosts(hosts.iter().copied());
        for (i, h) in hosts.iter().enumerate() {
            builder = builder.extra_address(h, &format!("2001:db8::{}/64", 11 + i));
        }
        Lab {
            vip: vip(),
            topo: builder.build().expect("build topology"),
            dir: tempfile::tempdir().expect("tempdir"),
            daemons: Vec::new(),
            etcd_dir: None,
        }
    }

    /// Wait until exactly `want` hold the VIP; the time it took, or a panic with every log.
    pub fn wait_holders(&self, want: &[&str], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let now = self.holders();
            if now == want {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!(
                    "after {limit:?} the VIP holders are {now:?}, expected {want:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The VIP holders stay exactly `want` for all of `period` (sampled every 20 ms).
    pub fn assert_holders_stay(&self, want: &[&str], period: Duration) {
        let start = Instant::now();
        while start.elapsed() < period {
            let now = self.holders();
            assert_eq!(now, want, "VIP holders changed\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The haplane daemon started on `host`.
    pub fn haplane(&self, host: &str) -> &Daemon {
        let name = format!("haplane on {host}");
        self.daemons
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for d in &self.daemons {
            let text = d.log_text();
            // Debug lines (every etcd request) would crowd out what explains a failure.
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .filter(|l| !l.contains("DEBUG"))
                .take(60)
                .collect();
            out.push_str(&format!("----- {} (last lines) -----\n", d.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// GET a path from the status server of the daemon running on `host`.
    pub fn http_get(&self, host: &str, path: &str) -> String {
        let path = path.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let result = self
                .host(host)
                .enter(|| -> std::io::Result<String> {
                    let mut s = TcpStream::connect("127.0.0.1:9470")?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
                    let mut body = String::new();
                    s.read_to_string(&mut body)?;
                    Ok(body)
                })
                .expect("enter namespace");
            match result {
                Ok(text) => {
                    return text
                        .split_once("\r\n\r\n")
                        .map(|(_, b)| b.to_string())
                        .unwrap_or(text);
                }
                Err(e) if Instant::now() > deadline => panic!("GET {path} on {host}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn status(&self, host: &str) -> serde_json::Value {
        serde_json::from_str(&self.http_get(host, "/status")).expect("status is JSON")
    }
}

/// A haplane cluster file for hosts m1.. with the given priorities.
pub struct Cfg {
    pub nodes: Vec<(&'static str, &'static str, u8)>,
    pub version: u8,
    pub advert: &'static str,
    pub unicast: bool,
    pub preempt: bool,
    pub auth: Option<&'static str>,
    pub extra_vip: String,
}

impl Cfg {
    pub fn new(nodes: &[(&'static str, &'static str, u8)]) -> Cfg {
        Cfg {
            nodes: nodes.to_vec(),
            version: 3,
            advert: "100ms",
            unicast: false,
            preempt: true,
            auth: None,
            extra_vip: String::new(),
        }
    }

    pub fn yaml(&self) -> String {
        let mut s = String::from("cluster: itest\nnodes:\n");
        for (name, addr, prio) in &self.nodes {
            s.push_str(&format!(
                "  - {{name: {name}, address: {addr}, priority: {prio}}}\n"
            ));
        }
        s.push_str(&format!(
            "vip:\n  address: {VIP}/24\n  interface: eth0\n  vrid: 51\n  version: {}\n  advertInterval: {}\n  unicast: {}\n  preempt: {}\n",
            self.version, self.advert, self.unicast, self.preempt
        ));
        if let Some(pass) = self.auth {
            s.push_str(&format!("  authPass: {pass}\n"));
        }
        s.push_str(&self.extra_vip);
        s
    }
}

/// keepalived.conf for one node with the same VRRP settings as a [`Cfg`].
pub fn keepalived_conf(cfg: &Cfg, me: &str) -> String {
    let (_, addr, prio) = cfg.nodes.iter().find(|(n, _, _)| *n == me).unwrap();
    let advert = if cfg.advert.ends_with("ms") {
        let ms: f64 = cfg.advert.trim_end_matches("ms").parse().unwrap();
        format!("{}", ms / 1000.0)
    } else {
        cfg.advert.trim_end_matches('s').to_string()
    };
    let mut s = format!(
        "global_defs {{\n  router_id {me}\n  vrrp_version {}\n}}\nvrrp_instance itest {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int {advert}\n",
        cfg.version
    );
    if !cfg.preempt {
        s.push_str("  nopreempt\n");
    }
    if let Some(pass) = cfg.auth {
        s.push_str(&format!(
            "  authentication {{\n    auth_type PASS\n    auth_pass {pass}\n  }}\n"
        ));
    }
    if cfg.unicast {
        s.push_str(&format!("  unicast_src_ip {addr}\n  unicast_peer {{\n"));
        for (n, a, _) in &cfg.nodes {
            if *n != me {
                s.push_str(&format!("    {a}\n"));
            }
        }
        s.push_str("  }\n");
    }
    s.push_str(&format!(
        "  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n"
    ));
    s
}

impl Lab {
    /// Start a 3-member (or n-member) etcd cluster, one member on each of `hosts`, and wait
    /// until it answers a quorum read. `--pre-vote` keeps a rejoining member from disrupting
    /// the term after a partition heals.
    pub fn start_etcd(&mut self, hosts: &[&str]) {
        let cluster = netlab::EtcdCluster::new(
            format!("itest-{}", std::process::id()),
            hosts.iter().map(|h| {
                (
                    h.to_string(),
                    format!("http://{}:2380", self.host(h).address()),
                )
            }),
        );
        let root = tempfile::Builder::new()
            .prefix("haplane-test-etcd")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("etcd data dir");
        let data_root = root.path().to_path_buf();
        self.etcd_dir = Some(root);
        for h in hosts {
            let addr = self.host(h).address();
            let data = data_root.join(format!("etcd-{h}"));
            let log = self.dir.path().join(format!("{h}-etcd.log"));
            let clients = [
                format!("http://{addr}:2379"),
                "http://127.0.0.1:2379".to_string(),
            ];
            let mut cmd = self.host(h).command("etcd");
            cmd.args(cluster.member_args(h, &data, &clients).expect("a member"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let handle = self.host(h).spawn(cmd).expect("spawn etcd");
            self.daemons.push(Daemon {
                name: format!("etcd on {h}"),
                handle,
                log,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoints = self.etcd_endpoints(hosts);
        loop {
            let out = self
                .host(hosts[0])
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &endpoints,
                    "--command-timeout=1s",
                    "get",
                    "probe",
                ])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not form a cluster\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// If `host`'s etcd member leads the raft cluster, hand leadership to another member.
    pub fn move_etcd_leader_off(&self, host: &str, hosts: &[&str]) {
        let endpoints = self.etcd_endpoints(hosts);
        let out = self
            .host(host)
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &endpoints,
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let own = format!("http://{}:2379", self.host(host).address());
        let mine = status
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Endpoint"] == own.as_str())
            .expect("own endpoint");
        let my_id = mine["Status"]["header"]["member_id"].as_u64().unwrap();
        if mine["Status"]["leader"].as_u64() != Some(my_id) {
            return;
        }
        let other = status
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Status"]["header"]["member_id"].as_u64().unwrap())
            .find(|id| *id != my_id)
            .unwrap();
        let out = self
            .host(host)
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &own, "move-leader", &format!("{other:x}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "move-leader: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn etcd_endpoints(&self, hosts: &[&str]) -> String {
        hosts
            .iter()
            .map(|h| format!("http://{}:2379", self.host(h).address()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Lab {
    /// Run `f` while a thread samples the VIP holders every 10 ms; returns f's result and the
    /// samples (time since start, holders).
    pub fn sampling<T>(&self, f: impl FnOnce() -> T) -> (T, Vec<(Duration, Vec<String>)>) {
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Stops the sampler even when `f` panics: the scope waits for it before unwinding.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let start = Instant::now();
                let mut samples = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    samples.push((start.elapsed(), self.holders()));
                    std::thread::sleep(Duration::from_millis(10));
                }
                samples
            });
            let guard = StopOnDrop(&stop);
            let out = f();
            drop(guard);
            (out, sampler.join().unwrap())
        })
    }
}

/// Start nginx on `host`, serving its own name on ADDRESS:8080.
pub fn start_nginx(lab: &mut Lab, host: &str) -> usize {
    let dir = lab.dir.path().join(format!("nginx-{host}"));
    std::fs::create_dir_all(&dir).unwrap();
    let addr = lab.host(host).address();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  server {{ listen {addr}:8080; location / {{ return 200 \"{host}\\n\"; }} }}\n}}\n",
        d = dir.display()
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
    lab.daemons.push(Daemon {
        name: format!("nginx on {host}"),
        handle,
        log,
    });
    lab.daemons.len() - 1
}

/// One HTTP request from `host` to VIP:6443; the body, or the error.
pub fn get(lab: &Lab, host: &str) -> Result<String, String> {
    lab.host(host)
        .enter(|| -> Result<String, String> {
            let mut s = TcpStream::connect_timeout(
                &format!("{VIP}:6443").parse().unwrap(),
                Duration::from_secs(2),
            )
            .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out).map_err(|e| e.to_string())?;
            out.split_once("\r\n\r\n")
                .map(|(_, b)| b.trim().to_string())
                .ok_or_else(|| format!("no HTTP response: {out:?}"))
        })
        .unwrap()
}

/// Who *answers* ARP for the IPv4 VIP, as host `from` on the LAN sees it: with the VIP gate a
/// node can keep the address while its kernel fence drops its ARP (frozen, crashed, or its
/// hold lapsed), and clients reach whoever answers.
pub struct Answers {
    probe: lab::arp_probe::ArpProbe,
    macs: Vec<(lab::arp_probe::Mac, String)>,
}

impl Answers {
    pub fn new(lab: &Lab, from: &str) -> Answers {
        let IpAddr::V4(vip) = lab.vip else {
            panic!("ARP answers need an IPv4 VIP");
        };
        let probe = lab::arp_probe::ArpProbe::open(lab.host(from), vip).expect("ARP probe");
        let macs = lab
            .topo
            .hosts()
            .iter()
            .filter(|h| h.name() != from)
            .map(|h| {
                (
                    lab::arp_probe::interface_mac(h, h.ifname()).expect("host MAC"),
                    h.name().to_string(),
                )
            })
            .collect();
        Answers { probe, macs }
    }

    /// The hosts that answered one probe (within 30 ms), sorted.
    pub fn now(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.round().into_iter().map(|(h, _)| h).collect();
        hosts.sort();
        hosts
    }

    /// The hosts that answered one probe (within 30 ms), in order of arrival, each with how
    /// long after the request its answer came.
    pub fn round(&self) -> Vec<(String, Duration)> {
        let round = self
            .probe
            .probe(Duration::from_millis(30))
            .expect("ARP probe");
        round
            .answers
            .iter()
            .zip(round.arrived)
            .map(|(m, after)| {
                let host = self
                    .macs
                    .iter()
                    .find(|(mac, _)| mac == m)
                    .map_or_else(|| format!("unknown {m}"), |(_, h)| h.clone());
                (host, after)
            })
            .collect()
    }

    /// Wait until exactly `want` answer (two probes in a row, so one lost reply does not
    /// count); the time it took, or a panic with every log.
    pub fn wait(&self, lab: &Lab, want: &[&str], limit: Duration) -> Duration {
        let start = Instant::now();
        let mut streak = 0;
        loop {
            let now = self.now();
            if now == want {
                streak += 1;
                if streak == 2 {
                    return start.elapsed();
                }
            } else {
                streak = 0;
            }
            if start.elapsed() > limit {
                panic!(
                    "after {limit:?} the hosts answering for the VIP are {now:?}, expected {want:?}\n{}",
                    lab.logs()
                );
            }
        }
    }

    /// Run `f` while a thread probes every 10 ms; returns f's result and the samples (time
    /// since start, hosts that answered, hosts that had the address).
    pub fn sampling<T>(&self, lab: &Lab, f: impl FnOnce() -> T) -> (T, Vec<Sample>) {
        let stop = std::sync::atomic::AtomicBool::new(false);
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let start = Instant::now();
                let mut samples = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = start.elapsed();
                    let arrival = self.round();
                    let mut answering: Vec<String> =
                        arrival.iter().map(|(h, _)| h.clone()).collect();
                    answering.sort();
                    samples.push(Sample {
                        when: start + at,
                        at,
                        answering,
                        arrival,
                        addressed: lab.holders(),
                    });
                    std::thread::sleep(Duration::from_millis(10));
                }
                samples
            });
            let guard = StopOnDrop(&stop);
            let out = f();
            drop(guard);
            (out, sampler.join().unwrap())
        })
    }
}

/// One sample of [`Answers::sampling`].
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub when: Instant,
    pub answering: Vec<String>,
    /// The same answers in order of arrival, with how long after the request each came.
    pub arrival: Vec<(String, Duration)>,
    pub addressed: Vec<String>,
}

/// No two hosts answered ARP for the VIP at one instant (what clients see).
///
/// One request answered by two hosts is split brain, except when it straddled a handover: the
/// request reached the old holder before its fence closed and the new holder (on a loaded
/// machine, milliseconds later: each namespace's veth backlog is drained on its own) after
/// its fence opened. That shape is exact: the probe before was answered by the old holder
/// alone, this one by the old holder first and then the new one, the probe after by the new
/// holder alone. An overlap shorter than one probe period (10 ms + the 30 ms window) would
/// take the same shape: that is the resolution of this check. Anything else with two answers,
/// two probes in a row with two answers among them, fails.
pub fn assert_never_two_answer(samples: &[Sample], lab: &Lab) {
    let split = two_answering(samples);
    assert!(
        split.is_empty(),
        "{} of {} samples had two hosts answering for the VIP, first at {:?}: {:?} (in order of arrival)\n{}",
        split.len(),
        samples.len(),
        split[0].at,
        split[0].arrival,
        lab.logs()
    );
}

/// The samples of [`assert_never_two_answer`] that show split brain (straddles are logged).
pub fn two_answering(samples: &[Sample]) -> Vec<&Sample> {
    let alone = |s: Option<&Sample>, host: &str| s.is_some_and(|s| s.answering == [host]);
    let mut split = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if s.answering.len() < 2 {
            continue;
        }
        let straddle = match s.arrival.as_slice() {
            [(old, _), (new, _)] => {
                alone(i.checked_sub(1).and_then(|p| samples.get(p)), old)
                    && alone(samples.get(i + 1), new)
            }
            _ => false,
        };
        if straddle {
            eprintln!(
                "a probe at {:?} straddled the handover {:?} (answer offsets from the request)",
                s.at, s.arrival
            );
        } else {
            split.push(s);
        }
    }
    split
}

/// The longest run of samples in which nobody answered, as (start, length).
pub fn longest_silence(samples: &[Sample]) -> (Duration, Duration) {
    let mut best = (Duration::ZERO, Duration::ZERO);
    let mut start: Option<Duration> = None;
    for s in samples {
        match (s.answering.is_empty(), start) {
            (true, None) => start = Some(s.at),
            (false, Some(t)) => {
                if s.at - t > best.1 {
                    best = (t, s.at - t);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(t), Some(last)) = (start, samples.last())
        && last.at - t > best.1
    {
        best = (t, last.at - t);
    }
    best
}

/// `nft monitor` in a host's namespace: what the kernel commits to its ruleset, line by line
/// ("add table arp …", "# new generation N by process …").
pub struct NftMonitor {
    handle: ProcessHandle,
    lines: std::sync::mpsc::Receiver<String>,
}

const NFT_MARKER: &str = "haplane_test_marker";

impl NftMonitor {
    /// Start it and wait until it reports (a marker table, added and deleted).
    pub fn start(host: &Host) -> NftMonitor {
        use std::io::{BufRead, BufReader};
        let mut cmd = host.command("nft");
        cmd.arg("monitor").stdout(Stdio::piped());
        let handle = host.spawn(cmd).expect("spawn nft monitor");
        let stdout = handle.take_stdout().expect("nft monitor's stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let monitor = NftMonitor { handle, lines };
        let start = Instant::now();
        loop {
            nft_marker(host, "add");
            nft_marker(host, "delete");
            let seen = monitor.until(
                &format!("delete table arp {NFT_MARKER}"),
                Duration::from_millis(500),
            );
            if seen.is_some() {
                // Its generation line, so the marker is not counted later.
                let _ = monitor.until("# new generation", Duration::from_secs(5));
                return monitor;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nft monitor never reported the marker table"
            );
        }
    }

    fn until(&self, text: &str, limit: Duration) -> Option<Vec<String>> {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            if line.contains(text) {
                return Some(seen);
            }
            seen.push(line);
        }
        None
    }

    /// Everything it reported since `start`, up to a final marker (so nothing is missed).
    pub fn finish(self, host: &Host) -> Vec<String> {
        nft_marker(host, "add");
        let seen = self
            .until(
                &format!("add table arp {NFT_MARKER}"),
                Duration::from_secs(10),
            )
            .expect("nft monitor reported the final marker");
        nft_marker(host, "delete");
        let _ = self.handle.kill();
        seen
    }
}

fn nft_marker(host: &Host, what: &str) {
    host.run(&["nft", what, "table", "arp", NFT_MARKER])
        .expect("nft marker table");
}

/// For each ruleset generation in `lines` (from [`NftMonitor`]), whether the VIP's kernel
/// fence (table `arp haplane_gate`) exists at its end; `initially`: before the first.
pub fn fence_generations(lines: &[String], initially: bool) -> Vec<bool> {
    let table = format!("table arp {}", haplane::nft::TABLE);
    let mut exists = initially;
    let mut out = Vec::new();
    for line in lines {
        if line.starts_with("# new generation") {
            out.push(exists);
        } else if line.starts_with(&format!("add {table}")) {
            exists = true;
        } else if line.starts_with(&format!("delete {table}")) {
            exists = false;
        }
    }
    out
}
