//! Integration tests on real namespaces. They need root; without it each test prints why and
//! returns.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use netlab::{Error, Host, Topology};

const REACH: Duration = Duration::from_secs(3);
const NO_REACH: Duration = Duration::from_millis(700);

fn three() -> Topology {
    Topology::builder()
        .hosts(["a", "b", "c"])
        .build()
        .expect("build topology")
}

fn reaches(from: &Host, to: &Host) -> bool {
    from.ping(to.address(), REACH).expect("ping")
}

fn blocked(from: &Host, to: &Host) -> bool {
    !from.ping(to.address(), NO_REACH).expect("ping")
}

fn ns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// A pid is gone when /proc has no entry or only a zombie (waiting for a reaper we don't own).
fn pid_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        }
    }
}

fn proc_state(pid: u32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn hosts_get_default_addresses_and_ping_each_other() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    assert_eq!(a.address(), Ipv4Addr::new(192, 0, 2, 11));
    assert_eq!(c.address(), Ipv4Addr::new(192, 0, 2, 13));
    assert_eq!(a.ifname(), "eth0");
    assert!(reaches(a, b) && reaches(b, c) && reaches(c, a));
    // Loopback is up in every namespace.
    assert!(a.ping(Ipv4Addr::LOCALHOST, REACH).unwrap());
    // Commands run inside the host see its eth0 and address.
    let out = b
        .run(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.0.2.12/24"));
}

#[test]
fn custom_subnet_and_extra_addresses_are_configured() {
    netlab::require_root!();
    let t = Topology::builder()
        .subnet("198.51.100.0/24")
        .host("x")
        .host_with_addresses("y", &["198.51.100.77"])
        .extra_address("x", "198.51.100.200/24")
        .build()
        .unwrap();
    let (x, y) = (t.host("x").unwrap(), t.host("y").unwrap());
    assert_eq!(x.address(), Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(y.cidr().to_string(), "198.51.100.77/24");
    assert!(x.has_address("198.51.100.200".parse().unwrap()).unwrap());
    assert!(y.ping(Ipv4Addr::new(198, 51, 100, 200), REACH).unwrap());
}

#[test]
fn link_down_cuts_both_directions_and_link_up_restores_without_reconfiguring() {
    netlab::require_root!();
    let t = three();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    assert!(reaches(a, b));
    a.link_down().unwrap();
    assert!(blocked(b, a), "nothing reaches a host whose link is down");
    assert!(blocked(a, b), "a host whose link is down reaches nothing");
    // The host sees lost carrier, as a daemon watching its link would.
    let link = a.run(&["ip", "-o", "link", "show", "eth0"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    assert!(
        link.contains("NO-CARRIER") || link.contains("LOWERLAYERDOWN"),
        "{link}"
    );
    assert!(
        a.has_address(IpAddr::V4(a.address())).unwrap(),
        "addresses stay"
    );
    a.link_up().unwrap();
    assert!(reaches(b, a) && reaches(a, b));
}

#[test]
fn partition_blocks_a_b_both_ways_while_both_reach_c_and_heal_restores() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    assert!(reaches(a, b));
    let cut = t.partition(&[a], &[b]).unwrap();
    assert!(blocked(a, b) && blocked(b, a));
    assert!(reaches(a, c) && reaches(b, c) && reaches(c, a) && reaches(c, b));
    cut.heal().unwrap();
    assert!(reaches(a, b) && reaches(b, a));
}

#[test]
fn partition_heals_when_guard_is_dropped() {
    netlab::require_root!();
    let t = three();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    {
        let _cut = t.partition(&[a], &[b]).unwrap();
        assert!(blocked(a, b));
    }
    assert!(reaches(a, b));
}

#[test]
fn partition_blocks_arp_so_fresh_neighbours_stay_unresolved() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    let _cut = t.partition(&[a], &[b]).unwrap();
    a.run(&["ip", "neigh", "flush", "dev", "eth0"]).unwrap();
    assert!(blocked(a, b));
    assert!(reaches(a, c));
    let neigh = a.run(&["ip", "neigh", "show", "dev", "eth0"]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).into_owned();
    let b_line = neigh
        .lines()
        .find(|l| l.starts_with(&format!("{} ", b.address())))
        .unwrap_or("");
    assert!(
        !b_line.contains("lladdr"),
        "the ARP request never reached b, so no MAC is known: {neigh}"
    );
    assert!(neigh.contains(&format!("{} ", c.address())), "{neigh}");
}

#[test]
fn partition_blocks_multicast_and_broadcast_between_groups_only() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    for h in t.hosts() {
        h.sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0")
            .unwrap();
    }
    let window = Duration::from_millis(800);
    let all = a
        .ping_responders(Ipv4Addr::new(224, 0, 0, 1), window)
        .unwrap();
    assert!(
        all.contains(&b.address()) && all.contains(&c.address()),
        "{all:?}"
    );

    let _cut = t.partition(&[a], &[b]).unwrap();
    let mcast = a
        .ping_responders(Ipv4Addr::new(224, 0, 0, 1), window)
        .unwrap();
    assert!(mcast.contains(&c.address()), "{mcast:?}");
    assert!(
        !mcast.contains(&b.address()),
        "multicast crossed the partition: {mcast:?}"
    );
    let bcast = b
        .ping_responders(Ipv4Addr::new(192, 0, 2, 255), window)
        .unwrap();
    assert!(bcast.contains(&c.address()), "{bcast:?}");
    assert!(
        !bcast.contains(&a.address()),
        "broadcast crossed the partition: {bcast:?}"
    );

    // UDP multicast to the VRRP group (224.0.0.18, RFC 5798 section 5.1.1.2), as adverts travel.
    let group = Ipv4Addr::new(224, 0, 0, 18);
    let port = 40_018;
    let listen = |h: &Host| {
        let addr = h.address();
        h.enter(move || {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).unwrap();
            s.join_multicast_v4(&group, &addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
        .unwrap()
    };
    let (rb, rc) = (listen(b), listen(c));
    let sender = a
        .enter(|| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            s.set_multicast_if_v4(&Ipv4Addr::new(192, 0, 2, 11))
                .unwrap();
            UdpSocket::from(s)
        })
        .unwrap();
    let got = |r: &UdpSocket| {
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            sender
                .send_to(b"advert", SocketAddrV4::new(group, port))
                .unwrap();
            if r.recv_from(&mut buf).is_ok() {
                return true;
            }
        }
        false
    };
    assert!(got(&rc), "c hears a's multicast");
    assert!(!got(&rb), "b must not hear a's multicast");
}

#[test]
fn partitions_stack_and_heal_independently() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    let ab = t.partition(&[a], &[b]).unwrap();
    let ac = t.partition(&[a], &[c]).unwrap();
    assert!(blocked(a, b) && blocked(a, c));
    assert!(reaches(b, c));
    ab.heal().unwrap();
    assert!(reaches(a, b));
    assert!(blocked(a, c), "the other partition still holds");
    ac.persist();
    assert!(blocked(a, c), "a persisted partition outlives its guard");
    t.heal_all().unwrap();
    assert!(reaches(a, c));
}

#[test]
fn partition_rejects_empty_overlapping_or_foreign_groups() {
    netlab::require_root!();
    let t = three();
    let other = Topology::builder().host("z").build().unwrap();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    assert!(matches!(
        t.partition(&[], &[b]),
        Err(Error::InvalidPartition(_))
    ));
    assert!(matches!(
        t.partition(&[a, b], &[b]),
        Err(Error::InvalidPartition(_))
    ));
    let z = other.host("z").unwrap();
    assert!(matches!(
        t.partition(&[a], &[z]),
        Err(Error::InvalidPartition(_))
    ));
}

#[test]
fn has_address_follows_a_vip_being_added_and_removed() {
    netlab::require_root!();
    let t = three();
    let a = t.host("a").unwrap();
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    assert!(!a.has_address(vip).unwrap());
    a.run(&["ip", "addr", "add", "192.0.2.100/32", "dev", "eth0"])
        .unwrap();
    assert!(a.has_address(vip).unwrap());
    let addrs = a.addresses().unwrap();
    assert!(
        addrs.iter().any(|c| c.to_string() == "192.0.2.100/32"),
        "{addrs:?}"
    );
    assert!(
        addrs.iter().any(|c| c.to_string() == "192.0.2.11/24"),
        "{addrs:?}"
    );
    a.run(&["ip", "addr", "del", "192.0.2.100/32", "dev", "eth0"])
        .unwrap();
    assert!(!a.has_address(vip).unwrap());
    assert!(!t.host("b").unwrap().has_address(vip).unwrap());
}

#[test]
fn run_reports_the_failing_command_and_its_stderr() {
    netlab::require_root!();
    let t = three();
    let err = t
        .host("a")
        .unwrap()
        .run(&["ip", "link", "show", "nosuchdev"])
        .unwrap_err();
    match &err {
        Error::CommandFailed {
            command, stderr, ..
        } => {
            assert!(command.contains("nosuchdev"), "{command}");
            assert!(stderr.contains("does not exist"), "{stderr}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let empty: &[&str] = &[];
    assert!(matches!(
        t.host("a").unwrap().run(empty),
        Err(Error::EmptyCommand)
    ));
    assert!(matches!(t.host("nope"), Err(Error::UnknownHost(_))));
}

#[test]
fn spawn_refuses_a_command_that_would_run_outside_the_host() {
    netlab::require_root!();
    let t = three();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    let plain = std::process::Command::new("sleep");
    assert!(matches!(a.spawn(plain), Err(Error::NotInHost { .. })));
    assert!(matches!(
        a.spawn(b.command("sleep")),
        Err(Error::NotInHost { .. })
    ));
}

#[test]
fn sysctl_is_per_host_and_refuses_non_net_keys() {
    netlab::require_root!();
    let t = three();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    let key = "net.ipv4.ip_nonlocal_bind";
    a.sysctl(key, "1").unwrap();
    let read = |h: &Host| {
        let o = h
            .run(&["cat", "/proc/sys/net/ipv4/ip_nonlocal_bind"])
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(read(a), "1");
    assert_eq!(read(b), "0");
    assert!(a.sysctl("kernel.pid_max", "1").is_err());
}

#[test]
fn process_handle_freezes_thaws_and_terminates_the_group() {
    netlab::require_root!();
    let t = three();
    let a = t.host("a").unwrap();
    let p = a.spawn_argv(&["sleep", "600"]).unwrap();
    assert!(p.is_running());
    p.freeze().unwrap();
    assert!(
        eventually(|| proc_state(p.pid()) == "T"),
        "SIGSTOP stops it"
    );
    p.thaw().unwrap();
    assert!(
        eventually(|| proc_state(p.pid()) == "S"),
        "SIGCONT resumes it"
    );
    let st = p.terminate(Duration::from_secs(5)).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(15), "plain SIGTERM ended it");
    assert!(!p.is_running());
    // Killing an exited process is fine.
    p.kill().unwrap();
}

#[test]
fn terminate_falls_back_to_sigkill_of_the_whole_group() {
    netlab::require_root!();
    let t = three();
    let a = t.host("a").unwrap();
    // The shell ignores SIGTERM and has a child in its group.
    let mut cmd = a.command("sh");
    cmd.args(["-c", "trap '' TERM; sleep 600 & echo $!; wait"])
        .stdout(std::process::Stdio::piped());
    let p = a.spawn(cmd).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(p.take_stdout().unwrap()),
        &mut line,
    )
    .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    let st = p.terminate(Duration::from_millis(300)).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9));
    assert!(
        eventually(|| pid_dead(child)),
        "the group's other member died too"
    );
}

#[test]
fn frozen_group_includes_children() {
    netlab::require_root!();
    let t = three();
    let a = t.host("a").unwrap();
    let mut cmd = a.command("sh");
    cmd.args(["-c", "sleep 600 & echo $!; wait"])
        .stdout(std::process::Stdio::piped());
    let p = a.spawn(cmd).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(p.take_stdout().unwrap()),
        &mut line,
    )
    .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    p.freeze().unwrap();
    assert!(eventually(|| proc_state(child) == "T"));
    p.thaw().unwrap();
    assert!(eventually(|| proc_state(child) == "S"));
    p.kill().unwrap();
    assert!(eventually(|| pid_dead(child)));
}

#[test]
fn drop_during_panic_kills_processes_and_deletes_namespaces() {
    netlab::require_root!();
    let mut namespaces = Vec::new();
    let mut pids = Vec::new();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let t = three();
        namespaces.push(t.switch_ns().to_owned());
        for h in t.hosts() {
            namespaces.push(h.ns_name().to_owned());
            let mut c = h.command("sleep");
            c.arg("600");
            pids.push(h.spawn(c).unwrap().pid());
        }
        // A daemon that left its process group is still found through its namespace.
        let mut c = t.host("a").unwrap().command("sh");
        c.args(["-c", "setsid sleep 600 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        let p = t.host("a").unwrap().spawn(c).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(p.take_stdout().unwrap()),
            &mut line,
        )
        .unwrap();
        pids.push(line.trim().parse().unwrap());
        let frozen = {
            let mut c = t.host("b").unwrap().command("sleep");
            c.arg("600");
            t.host("b").unwrap().spawn(c).unwrap()
        };
        frozen.freeze().unwrap();
        pids.push(frozen.pid());
        panic!("test body fails while the topology is up");
    }));
    assert!(result.is_err());
    assert_eq!(namespaces.len(), 4);
    for ns in &namespaces {
        assert!(!ns_exists(ns), "{ns} leaked");
    }
    for pid in &pids {
        assert!(eventually(|| pid_dead(*pid)), "pid {pid} survived");
    }
}

#[test]
fn parallel_topologies_with_the_same_host_names_do_not_collide() {
    netlab::require_root!();
    let names: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let t = Topology::builder().hosts(["m1", "m2"]).build().unwrap();
                    let (m1, m2) = (t.host("m1").unwrap(), t.host("m2").unwrap());
                    assert!(reaches(m1, m2));
                    let _cut = t.partition(&[m1], &[m2]).unwrap();
                    assert!(blocked(m1, m2));
                    t.hosts().iter().map(|h| h.ns_name().to_owned()).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = names.iter().flatten().collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "namespace names are unique");
    for ns in all {
        assert!(!ns_exists(ns));
    }
}

#[test]
fn cleanup_stale_removes_namespaces_of_a_dead_owner_only() {
    netlab::require_root!();
    let live = three();
    // A pid that certainly belonged to a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let stale = format!("hpl-{dead_pid}-0-h-x");
    let st = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(st.success());
    // A leftover daemon inside the stale namespace.
    let mut daemon = std::process::Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "600"])
        .spawn()
        .unwrap();
    let in_ns = || {
        let o = std::process::Command::new("ip")
            .args(["netns", "pids", &stale])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .any(|p| p == daemon.id().to_string())
    };
    assert!(eventually(in_ns), "the daemon entered the namespace");
    let removed = netlab::cleanup_stale().unwrap();
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(!ns_exists(&stale));
    // The daemon was killed; we are its parent, so reap it (and never hang on failure).
    let died = eventually(|| matches!(daemon.try_wait(), Ok(Some(_))));
    if !died {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    assert!(
        died,
        "cleanup_stale killed the process inside the stale namespace"
    );
    // Live owners are untouched.
    assert!(ns_exists(live.switch_ns()));
    assert!(reaches(live.host("a").unwrap(), live.host("b").unwrap()));
}

#[test]
fn named_lab_persists_reopens_and_is_destroyed_by_name() {
    netlab::require_root!();
    let lab = format!("t{}", std::process::id());
    let mut t = Topology::builder()
        .lab_name(&lab)
        .hosts(["m1", "w1"])
        .build()
        .unwrap();
    assert!(matches!(
        Topology::builder().lab_name(&lab).host("m1").build(),
        Err(Error::LabExists(_))
    ));
    let daemon = {
        let mut c = t.host("m1").unwrap().command("sleep");
        c.arg("600");
        t.host("m1").unwrap().spawn(c).unwrap()
    };
    let switch = t.switch_ns().to_owned();
    t.persist();
    drop(t);
    assert!(ns_exists(&switch), "a persisted lab outlives its value");
    assert!(daemon.is_running(), "and so do its processes");
    assert!(netlab::list_labs().unwrap().contains(&lab));
    netlab::cleanup_stale().unwrap();
    assert!(ns_exists(&switch), "cleanup_stale leaves named labs alone");

    let again = Topology::open(&lab).unwrap();
    assert!(again.is_persistent());
    let (m1, w1) = (again.host("m1").unwrap(), again.host("w1").unwrap());
    assert_eq!(m1.address(), Ipv4Addr::new(192, 0, 2, 11));
    assert_eq!(w1.address(), Ipv4Addr::new(192, 0, 2, 12));
    assert!(reaches(w1, m1));
    let cut = again.partition(&[m1], &[w1]).unwrap();
    assert!(blocked(w1, m1));
    cut.heal().unwrap();
    drop(again);
    assert!(ns_exists(&switch), "dropping an opened lab leaves it up");

    let removed = Topology::destroy_by_name(&lab).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(!ns_exists(&switch));
    assert!(
        eventually(|| !daemon.is_running()),
        "its processes were killed"
    );
    assert!(matches!(Topology::open(&lab), Err(Error::NoSuchLab(_))));
    assert!(matches!(
        Topology::destroy_by_name(&lab),
        Err(Error::NoSuchLab(_))
    ));
}

#[test]
fn explicit_destroy_removes_everything() {
    netlab::require_root!();
    let t = three();
    let all: Vec<String> = std::iter::once(t.switch_ns().to_owned())
        .chain(t.hosts().iter().map(|h| h.ns_name().to_owned()))
        .collect();
    t.destroy().unwrap();
    for ns in &all {
        assert!(!ns_exists(ns));
    }
}

#[test]
fn failed_build_removes_what_it_created() {
    netlab::require_root!();
    let lab = format!("fail{}", std::process::id());
    // The kernel refuses a multicast IPv6 address, after the switch and host a exist.
    let err = Topology::builder()
        .lab_name(&lab)
        .hosts(["a", "b"])
        .extra_address("b", "ff02::1/64")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }), "{err}");
    let prefix = format!("hpl-lab-{lab}-");
    let left: Vec<String> = netlab::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Sends `n` broadcast datagrams from `from` (paced, so no receive buffer overflows) and
/// counts how many `to` received.
fn broadcasts_heard(from: &Host, to: &Host, n: usize, port: u16) -> usize {
    let rx = to
        .enter(|| {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        })
        .unwrap();
    let tx = from
        .enter(|| {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            s.set_broadcast(true).unwrap();
            s
        })
        .unwrap();
    std::thread::scope(|sc| {
        let counter = sc.spawn(|| {
            let mut buf = [0u8; 64];
            let mut got = 0;
            while rx.recv_from(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        for _ in 0..n {
            tx.send_to(b"x", SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 255), port))
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        counter.join().unwrap()
    })
}

#[test]
fn a_one_way_partition_drops_frames_from_a_to_b_only() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    let cut = t.partition_one_way(&[a], &[b]).unwrap();
    // Broadcasts need no ARP, so each direction shows on its own.
    assert_eq!(broadcasts_heard(a, b, 20, 40_101), 0, "a -> b is cut");
    assert_eq!(broadcasts_heard(b, a, 20, 40_102), 20, "b -> a still flows");
    assert_eq!(broadcasts_heard(a, c, 20, 40_103), 20, "a -> c still flows");
    // A round trip needs both directions: ping fails from either side.
    assert!(blocked(a, b) && blocked(b, a));
    assert!(reaches(a, c) && reaches(b, c));
    cut.heal().unwrap();
    assert!(reaches(a, b) && reaches(b, a));
}

#[test]
fn loss_drops_a_random_share_of_a_hosts_frames_both_ways_until_healed() {
    netlab::require_root!();
    let t = three();
    let (a, b, c) = (
        t.host("a").unwrap(),
        t.host("b").unwrap(),
        t.host("c").unwrap(),
    );
    let lossy = t.loss(a, 30).unwrap();
    // 400 frames at 30 %: 280 expected, sigma 9.2; the bounds are 8 sigma away.
    let out = broadcasts_heard(a, b, 400, 40_111);
    let inn = broadcasts_heard(b, a, 400, 40_112);
    assert!((206..=354).contains(&out), "a -> b: {out} of 400 arrived");
    assert!((206..=354).contains(&inn), "b -> a: {inn} of 400 arrived");
    assert_eq!(
        broadcasts_heard(c, b, 400, 40_113),
        400,
        "hosts other than a lose nothing"
    );
    lossy.heal().unwrap();
    assert_eq!(broadcasts_heard(a, b, 400, 40_114), 400, "healed");
    assert!(matches!(t.loss(a, 0), Err(Error::InvalidLoss(0))));
}

#[test]
fn heal_all_removes_losses_and_one_way_partitions_too() {
    netlab::require_root!();
    let t = three();
    let (a, b) = (t.host("a").unwrap(), t.host("b").unwrap());
    t.partition_one_way(&[a], &[b]).unwrap().persist();
    t.loss(b, 100).unwrap().persist();
    assert!(blocked(a, b));
    t.heal_all().unwrap();
    assert!(reaches(a, b) && reaches(b, a));
}
