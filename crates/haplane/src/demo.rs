//! `haplane demo`: two VRRP nodes in network namespaces, one failover, printed as it happens.
//!
//! This is the README's first command until the full lab exists. It builds a switch and two
//! hosts, runs `haplane run` on each, shows who holds the VIP, takes the holder's link down,
//! measures how long the VIP is missing, brings the link back and shows the preemption.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netlab::{Host, Topology};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The namespaces could not be built (usually: not root).
    #[error("cannot build the demo network: {0}")]
    Topology(netlab::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Something expected did not happen in time.
    #[error("{0}")]
    Timeout(String),
}

// Shown in the message, so not a `source()` as well (one rule for errors: never both).
impl From<netlab::Error> for DemoError {
    fn from(e: netlab::Error) -> DemoError {
        DemoError::Topology(e)
    }
}

const VIP: &str = "192.0.2.100";

fn config(advert: &str) -> String {
    format!(
        "cluster: demo
nodes:
  - {{name: m1, address: 192.0.2.11, priority: 110}}
  - {{name: m2, address: 192.0.2.12, priority: 100}}
vip:
  address: {VIP}/24
  interface: eth0
  vrid: 51
  version: 3
  advertInterval: {advert}
status: {{listen: \"127.0.0.1:9470\"}}
"
    )
}

fn holders<'a>(hosts: &'a [&'a Host]) -> Vec<&'a str> {
    let vip = VIP.parse().expect("constant address");
    hosts
        .iter()
        .filter(|h| h.has_address(vip).unwrap_or(false))
        .map(|h| h.name())
        .collect()
}

/// Wait until exactly `want` holds the VIP; returns the time it took.
fn wait_for_holder(hosts: &[&Host], want: &str, limit: Duration) -> Result<Duration, DemoError> {
    let start = Instant::now();
    loop {
        let now = holders(hosts);
        if now == [want] {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(DemoError::Timeout(format!(
                "after {limit:?} the VIP holders are {now:?}, expected [{want}]; see the daemon logs printed above"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run the demo, printing to stdout. `advert` is the VRRP advert interval (e.g. "100ms").
pub fn run(haplane: &Path, advert: &str, logs: &Path) -> Result<(), DemoError> {
    let out = &mut std::io::stdout();
    let topo = Topology::builder().hosts(["m1", "m2"]).build()?;
    let dir = logs.to_path_buf();
    let cfg_path = dir.join("demo.yaml");
    std::fs::write(&cfg_path, config(advert)).map_err(|error| DemoError::Io {
        path: cfg_path.display().to_string(),
        error,
    })?;
    let m1 = topo.host("m1")?;
    let m2 = topo.host("m2")?;
    let hosts = [m1, m2];
    let mut daemons = Vec::new();
    for host in hosts {
        let log_path = dir.join(format!("{}.log", host.name()));
        let log = std::fs::File::create(&log_path).map_err(|error| DemoError::Io {
            path: log_path.display().to_string(),
            error,
        })?;
        let mut cmd = host.command(haplane);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .arg("--node")
            .arg(host.name())
            .stdout(Stdio::null())
            .stderr(log);
        daemons.push(host.spawn(cmd)?);
    }
    let _ = writeln!(
        out,
        "demo: two masters on a switch in network namespaces; VIP {VIP}, VRRPv3, advert {advert}\n      m1 priority 110 ({}), m2 priority 100 ({}); logs in {}",
        m1.address(),
        m2.address(),
        dir.display()
    );
    let took = wait_for_holder(&hosts, "m1", Duration::from_secs(15))?;
    let _ = writeln!(
        out,
        "before: m1 holds the VIP (elected {:.2}s after start)",
        took.as_secs_f64()
    );

    let _ = writeln!(out, "fault:  taking m1's link down");
    m1.link_down()?;
    let gap = wait_for_holder(&[m2], "m2", Duration::from_secs(15))?;
    let _ = writeln!(
        out,
        "after:  m2 holds the VIP, {:.0} ms after m1's link went down",
        gap.as_secs_f64() * 1000.0
    );

    m1.link_up()?;
    let back = wait_for_holder(&hosts, "m1", Duration::from_secs(15))?;
    let _ = writeln!(
        out,
        "heal:   m1's link is back; m1 preempted after {:.0} ms (priority 110 > 100)",
        back.as_secs_f64() * 1000.0
    );

    let stop = Instant::now();
    let _ = daemons[0].terminate(Duration::from_secs(5));
    let handover = wait_for_holder(&hosts, "m2", Duration::from_secs(5))?;
    let _ = writeln!(
        out,
        "stop:   SIGTERM to m1; it sent priority 0 and m2 held the VIP {:.0} ms later",
        handover.max(stop.elapsed()).as_secs_f64() * 1000.0
    );
    for d in &daemons {
        let _ = d.terminate(Duration::from_secs(5));
    }
    drop(topo);
    let _ = writeln!(out, "done:   namespaces and processes removed");
    Ok(())
}
