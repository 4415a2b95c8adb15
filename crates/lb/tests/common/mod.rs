//! Test harness: real nginx backends, each test inside a private network namespace.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `f` on a current-thread runtime in a thread that moved into a fresh network namespace.
/// Every socket and child process the test makes lives there, so nft rules and ports never
/// touch the host; the namespace vanishes when the thread and its children are gone.
pub fn in_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "lb=info".into()),
        )
        .with_test_writer()
        .try_init();
    raise_nofile();
    let handle = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        run(&["ip", "link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f());
    });
    if let Err(p) = handle.join() {
        std::panic::resume_unwind(p);
    }
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn run_stdin(args: &[&str], input: &str) {
    use std::io::Write;
    let mut c = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn raise_nofile() {
    use nix::sys::resource::{Resource, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_NOFILE, 200_000, 200_000);
}

/// Drops every packet to `port` in this namespace (the caller's thread must be in it).
pub fn blackhole(port: u16) {
    run_stdin(
        &["nft", "-f", "-"],
        &format!(
            "table inet lbtest {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  tcp dport {port} drop\n }}\n}}\n"
        ),
    );
}

#[allow(unused_imports)]
pub use testkit::{free_port, until as wait_for};

/// One nginx process (master_process off, so SIGKILL takes it down whole), killed on drop.
pub struct Nginx {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
    backlog: u32,
}

pub const BIG: usize = 1 << 20;

pub fn big_body() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

impl Nginx {
    pub async fn start() -> Nginx {
        Self::start_with("").await
    }

    /// `extra` goes into the server block (e.g. TLS settings).
    pub async fn start_with(extra: &str) -> Nginx {
        Self::start_full(extra, 4096).await
    }

    /// An nginx whose listen queue holds only `backlog` connections (`listen ... backlog=`),
    /// so a burst of connects overflows it the way a reconnect storm overflows an apiserver's.
    pub async fn start_with_backlog(backlog: u32) -> Nginx {
        Self::start_full("", backlog).await
    }

    async fn start_full(extra: &str, backlog: u32) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/big"), big_body()).unwrap();
        let mut n = Nginx {
            port: free_port(),
            dir,
            child: None,
            extra: extra.to_string(),
            backlog,
        };
        n.spawn().await;
        n
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn conf(&self) -> String {
        let d = self.dir.path().display();
        let port = self.port;
        let extra = &self.extra;
        let backlog = self.backlog;
        format!(
            r#"daemon off;
master_process off;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_timeout 300s; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog={backlog} {extra_listen};
    {extra}
    location = / {{ return 200 "backend {port}\n"; }}
    location = /readyz {{ if (-f {d}/notready) {{ return 503 "not ready\n"; }} return 200 "ok\n"; }}
    location /slow/ {{ alias {d}/www/; limit_rate 256k; }}
    location / {{ root {d}/www; }}
  }}
}}
"#,
            extra_listen = if extra.contains("ssl_certificate") {
                "ssl"
            } else {
                ""
            },
        )
    }

    async fn spawn(&mut self) {
        let conf = self.dir.path().join("nginx.conf");
        std::fs::write(&conf, self.conf()).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(self.dir.path())
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        wait_listening(self.addr(), Duration::from_secs(10)).await;
    }

    /// SIGKILL and reap: afterwards the kernel refuses connects to the port.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a frozen process, as on a host that hangs. Its
    /// kernel still completes handshakes into the listen queue, so connects succeed and then
    /// nothing answers.
    pub fn freeze(&self, frozen: bool) {
        use nix::sys::signal::{Signal, kill};
        let child = self.child.as_ref().expect("nginx running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let sig = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(pid, sig).expect("signal nginx");
    }

    /// Starts again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes /readyz answer 200 (true) or 503 (false), like a kube-apiserver that got SIGTERM
    /// and keeps serving through its shutdown delay.
    pub fn set_ready(&self, ready: bool) {
        let flag = self.dir.path().join("notready");
        if ready {
            let _ = std::fs::remove_file(flag);
        } else {
            std::fs::write(flag, b"").unwrap();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_listening(addr: SocketAddr, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            start.elapsed() < limit,
            "{addr} not listening after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request on a new connection (Connection: close); returns the body as text.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    get_bytes(addr, path)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// One HTTP/1.1 request on a new connection (Connection: close); returns the raw body.
pub async fn get_bytes(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        let text = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
        return Err(std::io::Error::other(format!("bad response: {text:?}")));
    }
    let start = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    Ok(buf.split_off(start))
}

/// A keep-alive client connection.
pub struct Conn(pub TcpStream);

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn(TcpStream::connect(addr).await?))
    }

    /// Sends `GET /` and returns nginx's "backend PORT" body line.
    pub async fn request(&mut self) -> std::io::Result<String> {
        self.send().await?;
        self.recv().await
    }

    pub async fn send(&mut self) -> std::io::Result<()> {
        self.0.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await
    }

    /// Reads one response (headers, then Content-Length bytes of body).
    pub async fn recv(&mut self) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if self.0.read(&mut byte).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no content-length in {head:?}")))?;
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).await?;
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    }
}

pub fn port_of(body: &str) -> u16 {
    body.trim()
        .strip_prefix("backend ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
}

pub fn lb_config(backends: &[SocketAddr]) -> lb::LbConfig {
    lb::LbConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        backends: backends
            .iter()
            .map(|&a| lb::BackendConfig::new(a))
            .collect(),
        health_check: lb::HealthCheckConfig {
            kind: lb::CheckKind::Http(lb::HttpCheck::default()),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn status_of(b: &lb::Balancer, addr: SocketAddr) -> lb::BackendStatus {
    b.snapshot()
        .backends
        .into_iter()
        .find(|s| s.address == addr)
        .expect("backend in snapshot")
}

pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
