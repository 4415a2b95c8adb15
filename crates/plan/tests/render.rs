//! Rendering: golden files for the seeds' topologies, and the classic configs accepted by the
//! real keepalived and haproxy from Debian.

use std::path::{Path, PathBuf};
use std::process::Command;

use plan::{KubeadmApi, Plan, PlanOptions};

mod common;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts() -> PlanOptions {
    PlanOptions {
        bootstrap_token: Some("abcdef.0123456789abcdef".into()),
        certificate_key: Some("0".repeat(64)),
        ..PlanOptions::default()
    }
}

fn plan_of(name: &str, opts: &PlanOptions) -> Plan {
    let (cluster, _) = plan::load(&fixture(name)).expect("fixture loads");
    plan::render(&cluster, opts).expect("fixture renders")
}

/// Compare every rendered file with tests/golden/<seed>/; UPDATE_GOLDEN=1 rewrites them.
fn golden(seed: &str, plan: &Plan) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(seed);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        plan::write_plan(plan, &dir).unwrap();
    }
    for f in &plan.files {
        let want = std::fs::read_to_string(dir.join(&f.path)).unwrap_or_else(|e| {
            panic!(
                "golden {} missing ({e}); run with UPDATE_GOLDEN=1",
                f.path.display()
            )
        });
        assert_eq!(
            f.contents,
            want,
            "{} differs from its golden file",
            f.path.display()
        );
    }
}

#[test]
fn seed_001_three_masters_with_external_etcd_match_the_golden_files() {
    golden("seed001", &plan_of("seed001.yaml", &opts()));
}

#[test]
fn seed_002_stacked_masters_with_apiserver_on_9443_match_the_golden_files() {
    golden("seed002", &plan_of("seed002.yaml", &opts()));
}

#[test]
fn the_first_master_gets_init_and_the_others_join_with_the_vip_as_endpoint() {
    let p = plan_of("seed002.yaml", &opts());
    let init = p.get("dev3/kubeadm.yaml").unwrap();
    assert!(init.contains("kind: InitConfiguration"));
    assert!(init.contains("kind: ClusterConfiguration"));
    assert!(init.contains("apiVersion: kubeadm.k8s.io/v1beta4"));
    assert!(init.contains("controlPlaneEndpoint: \"192.0.2.200:6443\""));
    assert!(
        init.contains("bindPort: 9443"),
        "seed 002 moves the apiserver to 9443"
    );
    assert!(init.contains("etcd:\n  local:"), "stacked etcd");
    // certSANs: the VIP, every master and loopback for node-local balancing.
    for san in [
        "192.0.2.200",
        "192.0.2.122",
        "192.0.2.41",
        "192.0.2.42",
        "127.0.0.1",
    ] {
        assert!(
            init.contains(&format!("    - \"{san}\"")),
            "certSAN {san} missing:\n{init}"
        );
    }
    let join = p.get("dev6/kubeadm.yaml").unwrap();
    assert!(join.contains("kind: JoinConfiguration"));
    assert!(join.contains("controlPlane:"));
    assert!(join.contains("apiServerEndpoint: \"192.0.2.200:6443\""));
    let worker = p.get("dev4/kubeadm.yaml").unwrap();
    assert!(worker.contains("kind: JoinConfiguration") && !worker.contains("controlPlane:"));
    // Different ports: the apiserver may keep its wildcard bind, so no patch is needed.
    assert!(p.get("dev3/patches/kube-apiserver+json.json").is_none());
}

#[test]
fn an_apiserver_sharing_the_balancer_port_binds_its_own_address_through_a_patch() {
    let p = plan_of("seed001.yaml", &opts());
    let patch = p.get("master2/patches/kube-apiserver+json.json").unwrap();
    assert!(patch.contains("--bind-address=192.0.2.92"), "{patch}");
    let join = p.get("master2/kubeadm.yaml").unwrap();
    assert!(join.contains("patches:\n  directory: \"/etc/kubernetes/haplane-patches\""));
}

#[test]
fn v1beta3_uses_maps_for_extra_args_and_its_own_api_version() {
    let o = PlanOptions {
        kubeadm_api: KubeadmApi::V1beta3,
        ..opts()
    };
    let init = plan_of("seed002.yaml", &o)
        .get("dev3/kubeadm.yaml")
        .unwrap()
        .to_string();
    assert!(init.contains("apiVersion: kubeadm.k8s.io/v1beta3"));
    assert!(
        init.contains("kubeletExtraArgs:\n    node-ip: \"192.0.2.122\""),
        "{init}"
    );
    assert!(!init.contains("v1beta4"));
}

#[test]
fn external_etcd_members_get_tls_and_an_odd_initial_cluster() {
    let p = plan_of("seed001.yaml", &opts());
    let env = p.get("etcd2/etcd.env").unwrap();
    assert!(env.contains("ETCD_NAME=\"etcd2\""));
    assert!(env.contains("ETCD_LISTEN_PEER_URLS=\"https://198.51.100.97:2380\""));
    assert!(env.contains("ETCD_INITIAL_CLUSTER=\"etcd1=https://198.51.100.96:2380,etcd2=https://198.51.100.97:2380,etcd3=https://198.51.100.98:2380\""));
    assert!(
        env.contains("ETCD_CLIENT_CERT_AUTH=\"true\"")
            && env.contains("ETCD_PEER_CLIENT_CERT_AUTH=\"true\"")
    );
    let init = p.get("master1/kubeadm.yaml").unwrap();
    assert!(
        init.contains("external:\n    endpoints:\n      - \"https://198.51.100.96:2379\""),
        "{init}"
    );
}

#[test]
fn the_bootstrap_token_must_have_kubeadms_format() {
    let (cluster, _) = plan::load(&fixture("seed002.yaml")).unwrap();
    let o = PlanOptions {
        bootstrap_token: Some("not-a-token".into()),
        ..opts()
    };
    let e = plan::render(&cluster, &o).unwrap_err().to_string();
    assert!(e.contains("[a-z0-9]{6}.[a-z0-9]{16}"), "{e}");
}

#[test]
fn a_random_token_is_generated_when_none_is_given() {
    let (cluster, _) = plan::load(&fixture("seed002.yaml")).unwrap();
    let a = plan::render(&cluster, &PlanOptions::default()).unwrap();
    let b = plan::render(&cluster, &PlanOptions::default()).unwrap();
    assert_ne!(a.get("dev3/kubeadm.yaml"), b.get("dev3/kubeadm.yaml"));
    assert!(
        a.files
            .iter()
            .find(|f| f.path == Path::new("dev3/kubeadm.yaml"))
            .unwrap()
            .secret
    );
}

#[test]
fn the_runbook_lists_the_steps_in_order_with_verification() {
    let p = plan_of("seed001.yaml", &opts());
    let r = p.get("README.md").unwrap();
    let order = [
        "preflight",
        "External etcd",
        "haplane on the masters",
        "The first master",
        "Join the other masters",
        "Workers",
        "Drill",
    ];
    let mut at = 0;
    for step in order {
        let i = r[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing or out of order"));
        at += i;
    }
    assert!(r.contains("etcdctl") && r.contains("member list"));
    assert!(r.contains("/readyz"));
}

/// Run a command; None when the program is not installed here.
fn run(cmd: &mut Command) -> Option<std::process::Output> {
    cmd.output().ok()
}

#[test]
fn rendered_keepalived_conf_passes_keepalived_config_test() {
    for (seed, node) in [("seed001.yaml", "master1"), ("seed002.yaml", "dev6")] {
        let p = plan_of(seed, &opts());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keepalived.conf");
        let text = p.get(&format!("{node}/classic/keepalived.conf")).unwrap();
        std::fs::write(&file, text).unwrap();
        // keepalived -t fails on a missing interface: give it the rendered ones in a namespace.
        let ns = common::Netns::new();
        ns.dummy("eth0", "192.0.2.91/24");
        ns.dummy("ens192", "192.0.2.41/24");
        let Some(out) = run(ns.command("keepalived").args(["-t", "-l", "-f"]).arg(&file)) else {
            eprintln!("keepalived not installed; skipping");
            return;
        };
        assert!(
            out.status.success(),
            "keepalived -t rejected {seed}/{node}:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn keepalived_itself_rejects_priority_255_with_weighted_track_scripts() {
    // Pins the validation rule nodes[].priority 255: the real keepalived refuses the combination.
    let p = plan_of("seed001.yaml", &opts());
    let text = p
        .get("master1/classic/keepalived.conf")
        .unwrap()
        .replace("priority 110", "priority 255");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, &text).unwrap();
    let ns = common::Netns::new();
    ns.dummy("eth0", "192.0.2.91/24");
    let Some(out) = run(ns.command("keepalived").args(["-t", "-l", "-f"]).arg(&file)) else {
        return;
    };
    assert!(
        !out.status.success(),
        "keepalived accepted priority 255 with weights"
    );
}

#[test]
fn rendered_haproxy_cfg_passes_haproxy_check() {
    // haproxy -c opens the CA file, so point it at one that exists here.
    let here = "/etc/ssl/certs/ca-certificates.crt";
    let o = PlanOptions {
        kube_ca_file: here.into(),
        ..opts()
    };
    for (seed, node) in [
        ("seed001.yaml", "master1"),
        ("seed002.yaml", "dev6"),
        ("seed002.yaml", "dev4"),
    ] {
        let (mut cluster, _) = plan::load(&fixture(seed)).expect("fixture loads");
        cluster.load_balancer.health_check.ca_file = Some(here.into());
        let p = plan::render(&cluster, &o).expect("fixture renders");
        let text = p.get(&format!("{node}/classic/haproxy.cfg")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, text).unwrap();
        let Some(out) = run(Command::new("haproxy").arg("-c").arg("-f").arg(&file)) else {
            eprintln!("haproxy not installed; skipping");
            return;
        };
        assert!(
            out.status.success(),
            "haproxy -c rejected {seed}/{node}:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn write_plan_creates_node_directories_and_keeps_secrets_private() {
    use std::os::unix::fs::PermissionsExt;
    let p = plan_of("seed002.yaml", &opts());
    let dir = tempfile::tempdir().unwrap();
    plan::write_plan(&p, dir.path()).unwrap();
    let meta = std::fs::metadata(dir.path().join("dev3/kubeadm.yaml")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(dir.path().join("dev6/haplane.service").is_file());
    assert!(dir.path().join("README.md").is_file());
}
