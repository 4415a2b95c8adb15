//! Preflight in network namespaces: occupied ports, a filled /var/lib/etcd under --root, the
//! VIP interface, and a real keepalived already using our VRID on the segment.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use plan::{CheckStatus, PreflightOptions};

mod common;

const CLUSTER: &str = r#"
cluster: pf
nodes:
  - {name: m1, address: 192.0.2.11, priority: 120}
  - {name: m2, address: 192.0.2.12, priority: 110}
  - {name: m3, address: 192.0.2.13, priority: 100}
vip:
  address: 192.0.2.100/24
  interface: eth0
  vrid: 51
  version: 2
"#;

fn cluster() -> config::Cluster {
    plan::parse(CLUSTER, Path::new("pf.yaml")).unwrap()
}

fn lines(results: &[plan::CheckResult], status: CheckStatus) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.status == status)
        .map(|r| r.to_string())
        .collect()
}

/// A keepalived we started; killed by pid on drop.
struct Keepalived(Child);

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn an_occupied_port_and_a_filled_var_lib_etcd_fail_with_their_fixes() {
    let ns = common::Netns::new();
    ns.dummy("eth0", "192.0.2.11/24");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("var/lib/etcd/member/snap")).unwrap();
    std::fs::write(root.path().join("var/lib/etcd/member/snap/db"), b"x").unwrap();
    std::fs::create_dir_all(root.path().join("etc/kubernetes/manifests")).unwrap();
    // haplane's own manifest may be there before kubeadm init; kubeadm's must not.
    std::fs::write(
        root.path().join("etc/kubernetes/manifests/haplane.yaml"),
        b"",
    )
    .unwrap();
    let opts = PreflightOptions {
        root: root.path().to_path_buf(),
        vrrp_listen: Duration::from_millis(500),
        ..PreflightOptions::default()
    };
    let results = ns.run(move || {
        // The seed 001 pitfall: something already holds the etcd client port.
        let _etcd = TcpListener::bind("127.0.0.1:2379").unwrap();
        let c = cluster();
        let node = c.node("m1").unwrap().clone();
        plan::preflight(&c, &node, &opts)
    });
    let fails = lines(&results, CheckStatus::Fail);
    assert!(
        fails.iter().any(
            |l| l.starts_with("FAIL port 2379: port 2379 (etcd client) is in use")
                && l.contains("ss -ltnp")
        ),
        "{fails:#?}"
    );
    assert!(
        fails.iter().any(|l| l
            .starts_with("FAIL dir /var/lib/etcd: /var/lib/etcd is not empty (member)")
            && l.contains("kubeadm reset")),
        "{fails:#?}"
    );
    let passes = lines(&results, CheckStatus::Pass);
    for want in [
        "PASS port 6443",
        "PASS port 2380",
        "PASS port 10250",
        "PASS dir /etc/kubernetes/manifests",
        "PASS interface eth0: exists with 192.0.2.11 in 192.0.2.100/24",
        "PASS vrid 51",
    ] {
        assert!(
            passes.iter().any(|l| l.starts_with(want)),
            "{want:?} not in {passes:#?}"
        );
    }
}

#[test]
fn a_missing_vip_interface_and_an_address_outside_the_vip_subnet_fail() {
    let ns = common::Netns::new();
    ns.dummy("eth1", "198.51.100.11/24");
    let opts = PreflightOptions {
        vrrp_listen: Duration::ZERO,
        ..PreflightOptions::default()
    };
    let c = cluster();
    let (a, b) = ns.run(move || {
        let mut other = c.clone();
        other.vip.interface = "eth1".into();
        let node = c.node("m1").unwrap().clone();
        (
            plan::preflight(&c, &node, &opts),
            plan::preflight(&other, &node, &opts),
        )
    });
    let fails = lines(&a, CheckStatus::Fail);
    assert!(
        fails
            .iter()
            .any(|l| l.starts_with("FAIL interface eth0: eth0 does not exist")),
        "{fails:#?}"
    );
    let fails = lines(&b, CheckStatus::Fail);
    assert!(
        fails.iter().any(|l| l.starts_with("FAIL interface eth1: eth1 has no address in the VIP's subnet 192.0.2.100/24 (it has 198.51.100.11)")),
        "{fails:#?}"
    );
}

#[test]
fn a_keepalived_already_using_our_vrid_on_the_segment_is_detected() {
    let here = common::Netns::new();
    let there = common::Netns::new();
    here.link_to(&there, "eth0", "192.0.2.11/24", "192.0.2.250/24");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        "global_defs {\n  router_id old\n}\nvrrp_instance OLD {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 1\n  virtual_ipaddress {\n    192.0.2.99/24\n  }\n}\n",
    )
    .unwrap();
    let pid = |n: &str| dir.path().join(n).display().to_string();
    let Ok(child) = there
        .command("keepalived")
        .args(["-n", "-l", "-P", "-f"])
        .arg(&conf)
        .args([
            "-p",
            &pid("k.pid"),
            "-r",
            &pid("v.pid"),
            "-c",
            &pid("c.pid"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("keepalived not installed; skipping");
        return;
    };
    let _keepalived = Keepalived(child);
    // keepalived starts in BACKUP and takes over after Master_Down_Interval (3.6s for
    // priority 150, RFC 3768 §6.1), then advertises every second: 9s hears several.
    let opts = PreflightOptions {
        vrrp_listen: Duration::from_secs(9),
        ..PreflightOptions::default()
    };
    let results = here.run(move || {
        let c = cluster();
        let node = c.node("m1").unwrap().clone();
        plan::preflight(&c, &node, &opts)
    });
    let fails = lines(&results, CheckStatus::Fail);
    assert!(
        fails.iter().any(|l| l.starts_with("FAIL vrid 51: VRID 51 is already in use on eth0: 192.0.2.250 advertises priority 150 for 192.0.2.99")),
        "{fails:#?}"
    );
}

#[test]
fn swap_netfilter_and_sysctls_are_read_from_the_system_root() {
    let sys = tempfile::tempdir().unwrap();
    let p = sys.path();
    std::fs::create_dir_all(p.join("proc/sys/net/ipv4")).unwrap();
    std::fs::write(
        p.join("proc/swaps"),
        "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
    )
    .unwrap();
    std::fs::write(p.join("proc/modules"), "overlay 151552 0 - Live 0x0\n").unwrap();
    std::fs::write(p.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
    std::fs::create_dir_all(p.join("sys/fs/selinux")).unwrap();
    std::fs::write(p.join("sys/fs/selinux/enforce"), "1").unwrap();
    let opts = PreflightOptions {
        system_root: p.to_path_buf(),
        vrrp_listen: Duration::ZERO,
        path: Some(String::new()),
        ..PreflightOptions::default()
    };
    let c = cluster();
    let results = plan::preflight(&c, c.node("m1").unwrap(), &opts);
    let fails = lines(&results, CheckStatus::Fail);
    for want in [
        "FAIL swap: swap is on (/swapfile)",
        "FAIL br_netfilter: the br_netfilter module is not loaded",
        "FAIL sysctl net.ipv4.ip_forward: net.ipv4.ip_forward is 0",
        "FAIL sysctl net.bridge.bridge-nf-call-iptables: net.bridge.bridge-nf-call-iptables does not exist",
        "FAIL kubelet: kubelet is not on PATH",
        "FAIL kubeadm: kubeadm is not on PATH",
        "FAIL container runtime: no container runtime socket",
    ] {
        assert!(
            fails.iter().any(|l| l.starts_with(want)),
            "{want:?} not in {fails:#?}"
        );
    }
    let warns = lines(&results, CheckStatus::Warn);
    assert!(
        warns
            .iter()
            .any(|l| l.starts_with("WARN selinux: enforcing")),
        "{warns:#?}"
    );
}

#[test]
fn every_line_has_a_fix_unless_it_passes_and_json_carries_the_status() {
    let opts = PreflightOptions {
        vrrp_listen: Duration::ZERO,
        ..PreflightOptions::default()
    };
    let c = cluster();
    let results = plan::preflight(&c, c.node("m1").unwrap(), &opts);
    for r in &results {
        assert_eq!(r.fix.is_some(), r.status != CheckStatus::Pass, "{r}");
    }
    let json = serde_json::to_string(&results).unwrap();
    assert!(
        json.contains("\"status\":\"PASS\"") || json.contains("\"status\":\"FAIL\""),
        "{json}"
    );
}

const LB_CLUSTER: &str = r#"
cluster: pflb
nodes:
  - {name: lb-1, address: 192.0.2.252, priority: 110, roles: [lb]}
  - {name: lb-2, address: 192.0.2.253, priority: 100, roles: [lb]}
  - {name: m1, address: 192.0.2.11, roles: [master]}
  - {name: m2, address: 192.0.2.12, roles: [master]}
  - {name: m3, address: 192.0.2.13, roles: [master]}
vip:
  address: 192.0.2.254/24
  interface: eth0
  vrid: 51
etcd:
  caFile: /etc/kubernetes/pki/etcd/ca.crt
  certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
  keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
"#;

#[test]
fn an_lb_node_is_checked_for_vrrp_its_backends_the_ca_and_etcd_not_for_kubernetes() {
    let ns = common::Netns::new();
    let m1 = common::Netns::new();
    ns.link_to(&m1, "eth0", "192.0.2.252/24", "192.0.2.11/24");
    // m1's apiserver answers (in its own namespace, so 6443 stays free here); m2 and m3 are
    // not up yet, as before kubeadm init.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (ready, listening) = std::sync::mpsc::channel::<()>();
    let m1_path = format!("/run/netns/{}", m1.name);
    let apiserver = std::thread::spawn(move || {
        let fd = std::fs::File::open(&m1_path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let _l = TcpListener::bind("192.0.2.11:6443").unwrap();
        ready.send(()).unwrap();
        let _ = stopped.recv();
    });
    listening.recv().unwrap();
    let root = tempfile::tempdir().unwrap();
    let pki = root.path().join("etc/kubernetes/pki/etcd");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.crt"), b"x").unwrap();
    let opts = PreflightOptions {
        root: root.path().to_path_buf(),
        vrrp_listen: Duration::from_millis(300),
        ..PreflightOptions::default()
    };
    let results = ns.run(move || {
        let c = plan::parse(LB_CLUSTER, Path::new("pflb.yaml")).unwrap();
        let node = c.node("lb-1").unwrap().clone();
        plan::preflight(&c, &node, &opts)
    });
    let _ = stop.send(());
    apiserver.join().unwrap();
    let checks: Vec<&str> = results.iter().map(|r| r.check.as_str()).collect();
    // No apiserver, etcd member or kubelet here: none of kubeadm's checks apply.
    for absent in [
        "swap",
        "br_netfilter",
        "container runtime",
        "kubelet",
        "port 2379",
        "port 10250",
        "dir /var/lib/etcd",
        "dir /etc/kubernetes/manifests",
    ] {
        assert!(
            !checks.contains(&absent),
            "{absent} checked on an lb node: {checks:?}"
        );
    }
    let pass = lines(&results, CheckStatus::Pass);
    let warn = lines(&results, CheckStatus::Warn);
    for want in [
        "PASS port 6443: free for haplane balancer (vip:6443)",
        "PASS interface eth0: exists with 192.0.2.252 in 192.0.2.254/24",
        "PASS backend 192.0.2.11:6443: accepts connections",
        "PASS file /etc/kubernetes/pki/etcd/ca.crt: etcd.caFile exists",
    ] {
        assert!(
            pass.iter().any(|l| l.starts_with(want)),
            "{want:?} in {pass:#?}"
        );
    }
    for want in [
        "WARN backend 192.0.2.12:6443: 192.0.2.12:6443 does not accept connections",
        "WARN file /etc/kubernetes/pki/ca.crt: missing: the balancer checks the apiservers with TCP connects",
        "WARN file /etc/kubernetes/pki/apiserver-etcd-client.crt: etcd.certFile is missing",
        "WARN etcd endpoints: 0 of 3 etcd endpoints",
    ] {
        assert!(
            warn.iter().any(|l| l.starts_with(want)),
            "{want:?} in {warn:#?}"
        );
    }
    assert!(checks.contains(&"vrid 51"), "{checks:?}");
}

#[test]
fn a_master_behind_lb_nodes_runs_no_vrrp_checks() {
    let ns = common::Netns::new();
    ns.dummy("eth0", "192.0.2.11/24");
    let opts = PreflightOptions {
        vrrp_listen: Duration::from_millis(300),
        root: tempfile::tempdir().unwrap().path().to_path_buf(),
        ..PreflightOptions::default()
    };
    let results = ns.run(move || {
        let c = plan::parse(LB_CLUSTER, Path::new("pflb.yaml")).unwrap();
        let node = c.node("m1").unwrap().clone();
        plan::preflight(&c, &node, &opts)
    });
    let checks: Vec<&str> = results.iter().map(|r| r.check.as_str()).collect();
    assert!(
        !checks
            .iter()
            .any(|c| c.starts_with("vrid") || c.starts_with("interface")),
        "{checks:?}"
    );
    assert!(
        checks.contains(&"port 2379") && checks.contains(&"port 6443"),
        "{checks:?}"
    );
}
