//! Test harness: real etcd 3.4 members on loopback, killed by pid when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod netns;

use elect::EtcdConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

// Shared with every test suite (crate testkit); not every binary that includes this uses both.
#[allow(unused_imports)]
pub use testkit::{free_port, wait_until};

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub child: Child,
}

impl Member {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
    pub fn stop(&self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
    }
    pub fn cont(&self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
    }
}

pub struct EtcdCluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
}

/// Extra etcd flags, e.g. TLS.
#[derive(Default, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, None)
    }

    pub fn start_with(n: usize, tls: Option<Tls>) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let token = format!("t{}-{}", std::process::id(), ports[0].0);
        let cluster = netlab::EtcdCluster::new(
            token,
            ports
                .iter()
                .enumerate()
                .map(|(i, (_, p))| (format!("m{i}"), format!("http://127.0.0.1:{p}"))),
        );
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                let name = format!("m{i}");
                let client_url = format!("{scheme}://127.0.0.1:{c}");
                let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
                let mut cmd = Command::new("etcd");
                cmd.args(
                    cluster
                        .member_args(
                            &name,
                            &dir.path().join(&name),
                            std::slice::from_ref(&client_url),
                        )
                        .expect("a member"),
                )
                .arg("--log-level=info")
                .stdout(Stdio::null())
                .stderr(log);
                if let Some(t) = &tls {
                    cmd.arg("--cert-file").arg(&t.cert);
                    cmd.arg("--key-file").arg(&t.key);
                    cmd.arg("--trusted-ca-file").arg(&t.ca);
                    cmd.arg("--client-cert-auth");
                }
                Member {
                    name,
                    client_url,
                    child: cmd.spawn().expect("etcd binary (etcd-server package)"),
                }
            })
            .collect();
        let c = EtcdCluster { members, dir };
        if tls.is_none() {
            c.wait_healthy();
        }
        c
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::plain(self.endpoints())
    }

    pub fn wait_healthy(&self) {
        let t0 = Instant::now();
        for m in &self.members {
            loop {
                let ok = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &m.client_url,
                        "--command-timeout=1s",
                        "endpoint",
                        "health",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "etcd {} not healthy",
                    m.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = kill(m.pid(), Signal::SIGCONT);
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

/// A child process killed by pid on drop (SIGCONT first, in case a test froze it).
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }
    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of an example binary built next to the test binary.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// A process on this machine: pid, parent pid and state letter from /proc/<pid>/stat.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
}

pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some(ProcInfo { pid, ppid, state })
}

/// Processes whose argv equals `argv`, and that are actually able to run (not stopped,
/// not zombies).
pub fn running_with_argv(argv: &[&str]) -> Vec<ProcInfo> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0u8])).collect();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd != want {
            continue;
        }
        if let Some(p) = proc_info(pid).filter(|p| !matches!(p.state, 'T' | 't' | 'Z' | 'X')) {
            out.push(p);
        }
    }
    out
}

/// Is `pid` a descendant of `ancestor`?
pub fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut cur = pid;
    for _ in 0..8 {
        match proc_info(cur) {
            Some(p) if p.ppid == ancestor => return true,
            Some(p) if p.ppid > 1 => cur = p.ppid,
            _ => return false,
        }
    }
    false
}

pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(args)
        .output()
        .unwrap()
}

pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The error of a connect that must fail (Client has no Debug, so no unwrap_err).
pub async fn connect_err(cfg: &EtcdConfig) -> String {
    match elect::connect(cfg).await {
        Ok(_) => panic!("connect to {:?} unexpectedly succeeded", cfg.endpoints),
        Err(e) => e.to_string(),
    }
}
