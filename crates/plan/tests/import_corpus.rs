//! The import round trip (issue 9) on a corpus of keepalived.conf and haproxy.cfg files written
//! the way keepalived's manual and samples, haproxy's manual, kubeadm's ha-considerations and
//! the seeds show them (each `tests/import-corpus/*/README` says where it comes from).
//!
//! For every case the real tools judge the files first: Debian's keepalived (`keepalived -t`,
//! in a network namespace holding the interfaces, with the case's `etc-keepalived/` scripts
//! at /etc/keepalived) and haproxy (`haproxy -c`) must accept them. Then the case either
//! imports into a cluster file that `haplane check` and `haplane plan` accept (one set of
//! rules), whose rendered classic keepalived.conf and haproxy.cfg the real tools accept again,
//! or the import fails naming the file, the line and the reason (the `reject-*` cases).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use config::{CheckType, ListenAddr, Policy, Role, VrrpVersion};
use plan::{ImportError, ImportResult, PlanOptions};

mod common;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import-corpus")
}

/// Interfaces the corpus names (`interface`, `dev`, `track_interface`).
const INTERFACES: [&str; 5] = ["eth0", "eth1", "eth2", "eth3", "ens192"];

/// A network namespace with the corpus' interfaces and a private /etc/keepalived holding a
/// case's scripts (`ip netns exec`'s /etc/netns/NAME convention, see `common::Netns::etc_file`).
struct Sandbox {
    ns: common::Netns,
}

impl Sandbox {
    fn new(scripts: &Path) -> Sandbox {
        let ns = common::Netns::new();
        for (i, ifname) in INTERFACES.iter().enumerate() {
            ns.ip(&[
                "link",
                "add",
                ifname,
                "type",
                "veth",
                "peer",
                "name",
                &format!("p{i}"),
            ]);
        }
        // keepalived -t wants /etc/keepalived to exist even without scripts.
        ns.etc_file("keepalived/.keep", b"", 0o644);
        if let Ok(rd) = std::fs::read_dir(scripts) {
            for e in rd.flatten() {
                let name = format!("keepalived/{}", e.file_name().to_string_lossy());
                ns.etc_file(&name, &std::fs::read(e.path()).unwrap(), 0o755);
            }
        }
        Sandbox { ns }
    }

    /// Install a wrapper script the plan rendered at /etc/keepalived/NAME.
    fn install(&self, name: &str, contents: &str) {
        self.ns
            .etc_file(&format!("keepalived/{name}"), contents.as_bytes(), 0o755);
    }

    /// `keepalived -t -l -f FILE` inside the namespace.
    fn keepalived_t(&self, file: &Path) -> Output {
        self.ns
            .command("keepalived")
            .args(["-t", "-l", "-f"])
            .arg(file)
            .output()
            .expect("keepalived runs (scripts/deps installs it)")
    }
}

/// A self-signed certificate for haproxy's `ca-file`.
fn throwaway_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("ca.key"), dir.join("ca.crt"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=import-corpus",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (scripts/deps installs it)");
    assert!(out.status.success(), "{}", text(&out));
    cert
}

fn haproxy_c(file: &Path) -> Output {
    Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(file)
        .output()
        .expect("haproxy runs (scripts/deps installs it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn opts() -> PlanOptions {
    PlanOptions {
        bootstrap_token: Some("abcdef.0123456789abcdef".into()),
        certificate_key: Some("0".repeat(64)),
        ..PlanOptions::default()
    }
}

/// What a case must come to.
enum Expect {
    /// Imports, and the result satisfies the check.
    Imports(fn(&ImportResult)),
    /// The import fails; each (file, line, words) is one rejection it names.
    Rejects(&'static [(&'static str, usize, &'static str)]),
}

fn names_and_priorities(r: &ImportResult) -> Vec<String> {
    r.cluster
        .nodes
        .iter()
        .map(|n| {
            let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
            format!("{}={}/{}", n.name, roles.join("+"), n.priority)
        })
        .collect()
}

fn note(r: &ImportResult, needle: &str) -> bool {
    r.notes.iter().any(|n| n.reason.contains(needle))
}

fn unmapped_line(r: &ImportResult, file: &str, line: usize) -> bool {
    r.unmapped
        .iter()
        .any(|u| u.line == line && u.file.ends_with(file))
}

fn warned(r: &ImportResult, path: &str, needle: &str) -> bool {
    r.warnings
        .iter()
        .any(|f| f.path == path && f.message.contains(needle))
}

fn cases() -> Vec<(&'static str, Expect)> {
    vec![
        (
            "kubeadm-stacked-master",
            Expect::Imports(|r| {
                // The case: MASTER 101 with weight -2. The guessed backups sit within
                // the weight (100, 99), so a failing check still moves the VIP (not 91, 81).
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "master1=master/101",
                        "master2=master/100",
                        "master3=master/99"
                    ]
                );
                let c = &r.cluster;
                assert_eq!(c.vip.track[0].weight, -2);
                assert_eq!(
                    c.vip.track[0].command,
                    ["/etc/keepalived/check_apiserver.sh"]
                );
                assert_eq!(c.vip.track[0].fall, 10);
                assert_eq!(c.vip.address.to_string(), "192.0.2.100/24");
                assert_eq!(c.vip.version, VrrpVersion::V2);
                assert_eq!(c.vip.auth_pass.as_ref().map(|p| p.expose()), Some("42"));
                assert_eq!(c.load_balancer.listen, [ListenAddr::Vip(8443)]);
                assert_eq!(c.api_server.port, 6443);
                // `option ssl-hello-chk` comes after `option httpchk`, so haproxy sends an SSL
                // hello: the closest haplane check is a TCP connect, and the note says so.
                assert_eq!(c.load_balancer.health_check.kind, CheckType::Tcp);
                assert!(note(r, "SSL hello check"));
                assert!(note(r, "closer than the smallest tracked weight 2"));
                // `mode http` in defaults is overridden by `mode tcp` where it matters.
                assert!(!r.unmapped.iter().any(|u| u.text.starts_with("mode")));
            }),
        ),
        (
            "kubeadm-stacked-backup",
            Expect::Imports(|r| {
                // A BACKUP's file: one other node is the higher master, the rest below.
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "master1=master/101",
                        "master2=master/100",
                        "master3=master/99"
                    ]
                );
                assert!(note(
                    r,
                    "state BACKUP, so one other node is the higher master"
                ));
            }),
        ),
        (
            "kubeadm-unicast-https-check",
            Expect::Imports(|r| {
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "master1=master/101",
                        "master2=master/100",
                        "master3=master/99"
                    ]
                );
                let c = &r.cluster;
                assert!(c.vip.unicast);
                assert_eq!(c.vip.version, VrrpVersion::V3);
                let hc = &c.load_balancer.health_check;
                assert_eq!(hc.kind, CheckType::Https);
                assert!(hc.insecure_skip_verify, "verify none");
                assert_eq!(hc.path, "/healthz");
                assert_eq!(hc.expect_status, "200");
                assert_eq!((hc.rise, hc.fall), (2, 3), "haproxy's defaults");
                assert!(
                    r.notes.iter().any(|n| n.reason.contains("kubeadm#2227")),
                    "the 35 s timeouts are reported as not carried over"
                );
            }),
        ),
        (
            "seed004-lb-pair",
            Expect::Imports(|r| {
                // Issue 9: a keepalived pair in front of haproxy's servers is two lb nodes
                // plus the masters, not two stacked-etcd masters.
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "lb-1=lb/100",
                        "peer-1=lb/90",
                        "master-1=master/100",
                        "master-2=master/100",
                        "master-3=master/100"
                    ]
                );
                let c = &r.cluster;
                assert_eq!(c.vip.track[0].weight, -20);
                assert_eq!(c.load_balancer.listen, [ListenAddr::Vip(6443)]);
                assert!(c.load_balancer.backends.is_none(), "the masters at 6443");
                let backends: Vec<String> = c
                    .lb_backends()
                    .iter()
                    .map(|b| b.address.to_string())
                    .collect();
                assert_eq!(
                    backends,
                    ["192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"]
                );
                assert_eq!(
                    c.etcd_members().len(),
                    3,
                    "etcd on the masters, not the lb nodes"
                );
                assert_eq!(c.load_balancer.max_connections, 4096);
                assert!(note(r, "became lb nodes"));
            }),
        ),
        (
            "lb-pair-multicast",
            Expect::Imports(|r| {
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "lb-a=lb/150",
                        "cp1=master/100",
                        "cp2=master/100",
                        "cp3=master/100"
                    ]
                );
                let c = &r.cluster;
                assert_eq!(c.vip.interface, "eth1");
                assert_eq!(c.load_balancer.policy, Policy::LeastConnections);
                let hc = &c.load_balancer.health_check;
                assert_eq!(hc.kind, CheckType::Tcp);
                assert_eq!(
                    (hc.interval.to_string().as_str(), hc.rise, hc.fall),
                    ("3s", 2, 2)
                );
                // Multicast names only this node: the other lb node is for the user to add.
                assert!(warned(r, "nodes", "lb-a is the only lb node"));
            }),
        ),
        (
            "lb-by-bind-port",
            Expect::Imports(|r| {
                let c = &r.cluster;
                assert!(c.nodes[0].is(Role::Lb) && c.nodes[0].name == "haproxy-a");
                assert!(
                    r.unmapped
                        .iter()
                        .any(|u| u.reason.contains("it became lb node haproxy-a"))
                );
                let masters: Vec<&str> = c.masters().map(|n| n.name.as_str()).collect();
                assert_eq!(masters, ["k8s-m1", "k8s-m2", "k8s-m3"]);
            }),
        ),
        (
            "keepalived-sample-vrrp",
            Expect::Imports(|r| {
                let c = &r.cluster;
                assert_eq!(c.cluster, "lvs-devel");
                assert_eq!(c.vip.address.to_string(), "192.0.2.16/24");
                assert_eq!(c.vip.garp.delay.to_string(), "10s");
                assert!(r.unmapped.iter().any(|u| u.reason.contains("placeholder")));
                // VI_2, VI_3 and VI_4 are reported, with their lines.
                for line in [36, 49, 67] {
                    assert!(unmapped_line(r, "keepalived.conf", line), "line {line}");
                }
            }),
        ),
        (
            "keepalived-sample-localcheck",
            Expect::Imports(|r| {
                let c = &r.cluster;
                let weights: Vec<(String, i16)> = c
                    .vip
                    .track
                    .iter()
                    .map(|t| (t.name.clone(), t.weight))
                    .collect();
                assert_eq!(
                    weights,
                    [
                        ("chk-sshd".to_string(), -4),
                        ("chk-haproxy".to_string(), 2),
                        ("chk-http-port".to_string(), -2)
                    ],
                    "the track_script line's weight overrides the script's"
                );
                assert_eq!(
                    c.vip.track[2].command,
                    ["/bin/bash", "-c", "</dev/tcp/127.0.0.1/80"]
                );
                assert!(
                    unmapped_line(r, "keepalived.conf", 42),
                    "track_interface is reported"
                );
            }),
        ),
        (
            "unicast-v3-notify",
            Expect::Imports(|r| {
                // BACKUP at 120 without weights: a master 10 above, the other backup 10 below.
                assert_eq!(
                    names_and_priorities(r),
                    ["cp-a=master/120", "peer-1=master/130", "peer-2=master/110"]
                );
                let c = &r.cluster;
                assert_eq!(c.vip.version, VrrpVersion::V3);
                assert_eq!(c.vip.advert_interval.to_string(), "200ms");
                assert!(!c.vip.preempt && c.vip.unicast);
                assert_eq!(c.vip.interface, "ens192");
                assert_eq!(
                    c.vip.notify.as_deref(),
                    Some(&["/etc/keepalived/notify.sh".to_string()][..])
                );
                assert_eq!(
                    (c.vip.garp.repeat, c.vip.garp.delay.to_string().as_str()),
                    (3, "2s")
                );
            }),
        ),
        (
            "ipv6-vip",
            Expect::Imports(|r| {
                let c = &r.cluster;
                assert_eq!(c.vip.version, VrrpVersion::V3);
                assert_eq!(c.vip.address.to_string(), "2001:db8::100/64");
                assert_eq!(c.nodes[0].address.to_string(), "2001:db8::11");
            }),
        ),
        (
            "haproxy-listen-section",
            Expect::Imports(|r| {
                assert_eq!(
                    names_and_priorities(r),
                    ["cp1=master/200", "cp2=master/190", "cp3=master/180"],
                    "haproxy's server names replace made-up ones"
                );
                let c = &r.cluster;
                assert_eq!(c.load_balancer.listen, [ListenAddr::Vip(9443)]);
                assert_eq!(c.load_balancer.policy, Policy::LeastConnections);
                let weights: Vec<u32> = c
                    .load_balancer
                    .backends
                    .as_ref()
                    .expect("weights need explicit backends")
                    .iter()
                    .map(|b| b.weight)
                    .collect();
                assert_eq!(weights, [10, 10, 5]);
                let hc = &c.load_balancer.health_check;
                assert_eq!(
                    (hc.kind, hc.interval.to_string().as_str(), hc.fall),
                    (CheckType::Tcp, "3s", 3)
                );
            }),
        ),
        (
            "haproxy-servers-without-port",
            Expect::Imports(|r| {
                assert_eq!(
                    names_and_priorities(r),
                    [
                        "node-1=lb/90",
                        "peer-1=lb/100",
                        "m1=master/100",
                        "m2=master/100",
                        "m3=master/100"
                    ]
                );
                let c = &r.cluster;
                assert_eq!(c.api_server.port, 6443, "the client's port, from the bind");
                assert_eq!(c.load_balancer.listen, [ListenAddr::Vip(6443)]);
                assert!(note(r, "no port: the client's port 6443"));
            }),
        ),
        (
            "pair-without-haproxy",
            Expect::Imports(|r| {
                assert_eq!(
                    names_and_priorities(r),
                    ["node-1=master/150", "peer-1=master/140"]
                );
                assert!(warned(
                    r,
                    "nodes (masters, stacked etcd)",
                    "give them roles: [lb]"
                ));
            }),
        ),
        (
            "reject-vip-is-node-address",
            Expect::Rejects(&[("keepalived.conf", 11, "is nodes[0]'s own address")]),
        ),
        (
            "reject-server-on-loopback",
            Expect::Rejects(&[("haproxy.cfg", 12, "cannot be a node address")]),
        ),
        (
            "reject-weight-clamped",
            Expect::Rejects(&[("keepalived.conf", 8, "50 cannot move the VIP")]),
        ),
    ]
}

/// The classic keepalived.conf and haproxy.cfg the plan renders for `node` pass the real tools.
fn rendered_classic_files_pass_the_real_tools(
    sandbox: &Sandbox,
    plan: &plan::Plan,
    node: &str,
    case: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    for f in &plan.files {
        let name = f.path.file_name().unwrap().to_string_lossy();
        if f.node.as_deref() == Some(node) && name.starts_with("haplane-") && name.ends_with(".sh")
        {
            sandbox.install(&name, &f.contents);
        }
    }
    if let Some(k) = plan.get(&format!("{node}/classic/keepalived.conf")) {
        let f = dir.path().join("keepalived.conf");
        std::fs::write(&f, k).unwrap();
        let out = sandbox.keepalived_t(&f);
        assert!(
            out.status.success(),
            "{case}: keepalived -t rejected the planned keepalived.conf of {node}:\n{}\n{k}",
            text(&out)
        );
    }
    if let Some(h) = plan.get(&format!("{node}/classic/haproxy.cfg")) {
        let f = dir.path().join("haproxy.cfg");
        std::fs::write(&f, h).unwrap();
        let out = haproxy_c(&f);
        assert!(
            out.status.success(),
            "{case}: haproxy -c rejected the planned haproxy.cfg of {node}:\n{}\n{h}",
            text(&out)
        );
    }
}

fn run_case(name: &str, expect: &Expect, ca: &Path) {
    let dir = corpus().join(name);
    let keepalived = dir.join("keepalived.conf");
    let haproxy = dir.join("haproxy.cfg");
    let haproxy = haproxy.exists().then_some(haproxy);
    let sandbox = Sandbox::new(&dir.join("etc-keepalived"));
    // The real tools accept the source files: this is a config people can run.
    let out = sandbox.keepalived_t(&keepalived);
    assert!(
        out.status.success(),
        "{name}: keepalived -t rejects the corpus file:\n{}",
        text(&out)
    );
    if let Some(h) = &haproxy {
        let out = haproxy_c(h);
        assert!(
            out.status.success(),
            "{name}: haproxy -c rejects the corpus file:\n{}",
            text(&out)
        );
    }
    let result = plan::import(&keepalived, haproxy.as_deref());
    match (expect, result) {
        (Expect::Imports(check), Ok(r)) => {
            // What import prints is what check and plan read.
            let (cluster, _) =
                config::Cluster::from_yaml(&r.cluster_yaml, Path::new("imported.yaml"))
                    .unwrap_or_else(|e| panic!("{name}: haplane check rejects the import: {e}"));
            assert_eq!(
                cluster, r.cluster,
                "{name}: the YAML holds the whole cluster"
            );
            assert!(
                !plan::validate(&cluster)
                    .iter()
                    .any(|f| f.severity == config::Severity::Error),
                "{name}"
            );
            let p = plan::render(&cluster, &opts())
                .unwrap_or_else(|e| panic!("{name}: haplane plan rejects the import: {e}"));
            assert!(p.get("README.md").is_some());
            // haproxy -c opens the CA of HTTPS checks: kubeadm's does not exist here.
            let mut here = cluster.clone();
            here.load_balancer.health_check.ca_file = Some(ca.to_path_buf());
            let p = plan::render(&here, &opts()).unwrap();
            for n in cluster.vrrp_nodes() {
                rendered_classic_files_pass_the_real_tools(&sandbox, &p, &n.name, name);
            }
            check(&r);
        }
        (Expect::Rejects(want), Err(ImportError::Rejected { problems })) => {
            let shown = ImportError::Rejected {
                problems: problems.clone(),
            }
            .to_string();
            for (file, line, words) in *want {
                assert!(
                    problems.iter().any(|p| p.origin.file.ends_with(file)
                        && p.origin.line == *line
                        && p.message.contains(words)),
                    "{name}: expected {file}:{line} ({words}) in\n{shown}"
                );
                assert!(shown.contains(&format!("{file}:{line}: ")), "{shown}");
            }
        }
        (Expect::Imports(_), Err(e)) => panic!("{name}: import failed: {e}"),
        (Expect::Rejects(_), Ok(r)) => {
            panic!(
                "{name}: import succeeded but must be rejected:\n{}",
                r.cluster_yaml
            )
        }
        (Expect::Rejects(_), Err(e)) => panic!("{name}: failed for another reason: {e}"),
    }
}

#[test]
fn every_corpus_config_the_real_tools_accept_round_trips_or_is_rejected_by_line() {
    let cases = cases();
    let mut dirs: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut listed: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        dirs, listed,
        "every corpus directory has an expectation, and only those"
    );
    let tmp = tempfile::tempdir().unwrap();
    let ca = throwaway_ca(tmp.path());
    // One case at a time: each borrows /etc/netns for its scripts.
    for (name, expect) in &cases {
        run_case(name, expect, &ca);
    }
}
