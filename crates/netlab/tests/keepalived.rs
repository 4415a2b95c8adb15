//! netlab with real keepalived: the lab primitives must produce the failures the VRRP drills
//! rely on (link down = no adverts either way, partition = split brain on multicast adverts).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netlab::{Host, ProcessHandle, Topology};

const VIP: &str = "192.0.2.100";

/// A scratch directory removed on drop (also on panic).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keepalived_installed() -> bool {
    std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok()
}

/// Starts keepalived (VRRPv3, 100 ms adverts) in `host` with `priority`.
fn start(host: &Host, dir: &Scratch, priority: u8) -> ProcessHandle {
    let base = dir.0.join(host.name());
    let conf = base.with_extension("conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version 3\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
             \x20 priority {priority}\n  advert_int 0.1\n\
             \x20 virtual_ipaddress {{\n    {VIP}/32\n  }}\n}}\n",
            name = host.name()
        ),
    )
    .unwrap();
    let pid = |suffix: &str| base.with_extension(suffix).to_string_lossy().into_owned();
    let mut cmd = host.command("keepalived");
    cmd.args(["--dont-fork", "--no-syslog", "--vrrp", "-f"])
        .arg(&conf)
        .args([
            "-p",
            &pid("pid"),
            "-r",
            &pid("vrrp.pid"),
            "-c",
            &pid("chk.pid"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    host.spawn(cmd).unwrap()
}

fn holds(h: &Host) -> bool {
    h.has_address(VIP.parse::<IpAddr>().unwrap()).unwrap()
}

/// Polls `cond` every 10 ms for up to `limit`.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn keepalived_fails_over_on_link_down_and_splits_brain_on_partition() {
    netlab::require_root!();
    if !keepalived_installed() {
        eprintln!("skipping: keepalived is not installed");
        return;
    }
    let dir = Scratch(std::env::temp_dir().join(format!("netlab-ka-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let t = Topology::builder()
        .hosts(["m1", "m2", "w1"])
        .build()
        .unwrap();
    let (m1, m2, w1) = (
        t.host("m1").unwrap(),
        t.host("m2").unwrap(),
        t.host("w1").unwrap(),
    );
    let limit = Duration::from_secs(10);
    let vip = VIP.parse().unwrap();

    let k1 = start(m1, &dir, 150);
    let _k2 = start(m2, &dir, 100);
    assert!(
        within(limit, || holds(m1) && !holds(m2)),
        "m1 (priority 150) becomes master"
    );
    assert!(w1.ping(vip, Duration::from_secs(3)).unwrap());

    // The holder's link goes down: m2 stops hearing adverts and takes over; m1 sees carrier
    // loss and (FAULT) gives the VIP up.
    m1.link_down().unwrap();
    assert!(
        within(limit, || holds(m2)),
        "m2 takes over when m1's link goes down"
    );
    assert!(
        w1.ping(vip, Duration::from_secs(3)).unwrap(),
        "the VIP answers from m2"
    );
    m1.link_up().unwrap();
    assert!(
        within(limit, || holds(m1) && !holds(m2)),
        "m1 preempts back"
    );

    // Partitioned masters cannot hear each other's multicast adverts: both hold the VIP.
    let cut = t.partition(&[m1], &[m2]).unwrap();
    assert!(
        within(limit, || holds(m1) && holds(m2)),
        "split brain under partition"
    );
    cut.heal().unwrap();
    assert!(
        within(limit, || holds(m1) && !holds(m2)),
        "healing resolves it"
    );

    // SIGTERM: keepalived sends priority 0 (RFC 5798 section 6.4.3) and m2 takes over.
    k1.terminate(Duration::from_secs(5)).unwrap();
    assert!(within(limit, || holds(m2) && !holds(m1)));
}
