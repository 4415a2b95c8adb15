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

/// `name`'s cluster file with `etcd.electionTimeout` and `etcd.heartbeatInterval` added to
/// its etcd section (a new one when it has none), loaded as a user's file would be.
fn with_raft_timers(name: &str, election: &str, heartbeat: &str) -> config::Cluster {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let timers = format!("  electionTimeout: {election}\n  heartbeatInterval: {heartbeat}\n");
    let text = match text.find("\netcd:\n") {
        Some(at) => {
            let at = at + "\netcd:\n".len();
            format!("{}{timers}{}", &text[..at], &text[at..])
        }
        None => format!("{text}\netcd:\n{timers}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let (cluster, _) = plan::load(&path).expect("the cluster file with raft timers loads");
    cluster
}

#[test]
fn etcd_raft_timers_from_the_cluster_file_reach_the_stacked_members_extra_args() {
    // Issue 14: with etcd's leader on the failed holder a failover waits for etcd's election
    // (1.2-1.9 s at etcd's default 1000 ms election timeout, docs/lab.md), so the cluster file
    // carries the faster timers into kubeadm's etcd.local.extraArgs.
    let c = with_raft_timers("seed002.yaml", "500ms", "50ms");
    let v4 = plan::render(&c, &opts()).unwrap();
    let init = v4.get("dev3/kubeadm.yaml").unwrap();
    assert!(
        init.contains("    extraArgs:\n      - name: heartbeat-interval\n        value: \"50\"\n      - name: election-timeout\n        value: \"500\""),
        "{init}"
    );
    let o = PlanOptions {
        kubeadm_api: KubeadmApi::V1beta3,
        ..opts()
    };
    let v3 = plan::render(&c, &o).unwrap();
    let init = v3.get("dev3/kubeadm.yaml").unwrap();
    assert!(
        init.contains(
            "    extraArgs:\n      heartbeat-interval: \"50\"\n      election-timeout: \"500\""
        ),
        "{init}"
    );
    // Unset, etcd keeps its own defaults and the file says nothing (the goldens pin that).
    let plain = plan_of("seed002.yaml", &opts());
    assert!(
        !plain
            .get("dev3/kubeadm.yaml")
            .unwrap()
            .contains("election-timeout")
    );
}

#[test]
fn etcd_raft_timers_reach_the_external_members_environment() {
    let c = with_raft_timers("seed001.yaml", "500ms", "50ms");
    let env = plan::render(&c, &opts()).unwrap();
    let env = env.get("etcd2/etcd.env").unwrap();
    assert!(env.contains("ETCD_ELECTION_TIMEOUT=\"500\""), "{env}");
    assert!(env.contains("ETCD_HEARTBEAT_INTERVAL=\"50\""), "{env}");
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

/// A cluster from seed 002's file with `extra` appended (top-level keys).
fn seed002_with(extra: &str) -> Plan {
    let text = std::fs::read_to_string(fixture("seed002.yaml")).unwrap() + extra;
    let cluster = plan::parse(&text, Path::new("seed002+.yaml")).expect("parses");
    plan::render(&cluster, &opts()).expect("renders")
}

/// The static pod's YAML as a JSON value (the manifest must be valid YAML, not just text).
fn pod(p: &Plan, path: &str) -> serde_json::Value {
    serde_saphyr::from_str(p.get(path).unwrap()).expect("the static pod parses as YAML")
}

#[test]
fn the_static_pod_gets_net_admin_and_net_raw_only_a_read_only_root_and_no_escalation() {
    let p = plan_of("seed002.yaml", &opts());
    let pod = pod(&p, "dev3/haplane.yaml");
    assert_eq!(pod["spec"]["hostNetwork"], true);
    assert_eq!(
        pod["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["spec"]["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    // The cluster file and the kubeadm CA (HTTPS health checks) read-only; the state dir,
    // whose fencing marker must outlive the container, writable; nothing else.
    let mounts: Vec<(String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/etc/haplane".to_string(), true),
            ("/etc/kubernetes/pki".to_string(), true),
            // the admin socket's directory: `haplane lb` and `maintenance` from the host
            ("/run/haplane".to_string(), false),
            ("/var/lib/haplane".to_string(), false),
        ]
    );
    assert_eq!(
        c["image"],
        format!("localhost/haplane:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        c["imagePullPolicy"], "Never",
        "a localhost/ image is never pulled"
    );
    assert!(
        p.get("dev3/haplane.yaml")
            .unwrap()
            .contains("ctr -n k8s.io images import")
    );
}

#[test]
fn the_image_comes_from_kubernetes_haplane_image() {
    let p = seed002_with("kubernetes: {haplaneImage: registry.example/ops/haplane:1.2}\n");
    let pod = pod(&p, "dev3/haplane.yaml");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.example/ops/haplane:1.2"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(
        !p.get("dev3/haplane.yaml")
            .unwrap()
            .contains("ctr -n k8s.io")
    );
    assert!(
        p.get("README.md")
            .unwrap()
            .contains("image registry.example/ops/haplane:1.2")
    );
}

#[test]
fn only_a_port_below_1024_adds_net_bind_service() {
    let default = plan_of("seed002.yaml", &opts());
    assert!(
        !default
            .get("dev3/haplane.service")
            .unwrap()
            .contains("NET_BIND_SERVICE\n")
    );
    let text = std::fs::read_to_string(fixture("seed002.yaml"))
        .unwrap()
        .replace("listen: [\"vip:6443\"]", "listen: [\"vip:443\"]");
    let cluster = plan::parse(&text, Path::new("seed002-443.yaml")).unwrap();
    let p = plan::render(&cluster, &opts()).unwrap();
    let unit = p.get("dev3/haplane.service").unwrap();
    assert!(
        unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n")
    );
    assert!(unit.contains("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n"));
    assert!(unit.contains("listens on port 443"));
    let add = &pod(&p, "dev3/haplane.yaml")["spec"]["containers"][0]["securityContext"]["capabilities"]
        ["add"];
    assert_eq!(
        *add,
        serde_json::json!(["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"])
    );
    // The worker's node-local balancer stays on 127.0.0.1:6443.
    assert!(
        !p.get("dev4/haplane.service")
            .unwrap()
            .contains("CAP_NET_BIND_SERVICE\n")
    );
}

#[test]
fn election_targets_and_snapshots_outside_the_defaults_become_writable_and_nothing_more() {
    let p = seed002_with(
        "etcd: {}\nelections:\n  - name: scheduler\n    manifest: {source: /etc/haplane/pods/kube-scheduler.yaml, target: /etc/kubernetes/manifests/kube-scheduler.yaml}\nsnapshots: {dir: /backup/etcd}\n",
    );
    let unit = p.get("dev3/haplane.service").unwrap();
    assert!(unit.contains("ReadWritePaths=/etc/kubernetes/manifests\n"));
    assert!(unit.contains("ReadWritePaths=/backup/etcd\n"));
    assert!(
        unit.contains(
            "ExecStartPre=+/bin/mkdir -p -m 0700 /etc/kubernetes/manifests /backup/etcd\n"
        )
    );
    assert_eq!(
        unit.lines()
            .filter(|l| l.starts_with("ReadWritePaths="))
            .count(),
        2,
        "{unit}"
    );
    let pod = pod(&p, "dev3/haplane.yaml");
    let mounts: Vec<(String, bool)> = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    // The manifest source is under the (read-only) cluster file directory already.
    assert_eq!(
        mounts,
        [
            ("/etc/haplane".to_string(), true),
            ("/etc/kubernetes/pki".to_string(), true),
            ("/backup/etcd".to_string(), false),
            ("/etc/kubernetes/manifests".to_string(), false),
            // the admin socket's directory: `haplane lb` and `maintenance` from the host
            ("/run/haplane".to_string(), false),
            ("/var/lib/haplane".to_string(), false),
        ]
    );
    // Workers run no elections: nothing writable beyond the state dir.
    assert!(!p.get("dev4/haplane.yaml").unwrap().contains("/backup/etcd"));
}

#[test]
fn a_cluster_that_runs_commands_is_told_the_image_cannot_run_them() {
    let p = plan_of("seed001.yaml", &opts());
    let pod = p.get("master1/haplane.yaml").unwrap();
    assert!(
        pod.contains("#   vip.track check_k8s_master: curl"),
        "{pod}"
    );
    assert!(
        p.get("README.md")
            .unwrap()
            .contains("the image holds\nonly haplane, so use the unit")
    );
    // Workers run no track scripts; seed 002 runs none at all.
    assert!(!p.get("node1/haplane.yaml").unwrap().contains("Warning"));
    assert!(
        !plan_of("seed002.yaml", &opts())
            .get("dev3/haplane.yaml")
            .unwrap()
            .contains("Warning")
    );
}

#[test]
fn the_rendered_unit_is_the_packaged_unit_with_the_node_filled_in() {
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/haplane.service"),
    )
    .unwrap();
    let p = plan_of("seed002.yaml", &opts());
    let unit = p.get("dev6/haplane.service").unwrap();
    for line in packaged
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if line.starts_with("ExecStart=") {
            continue;
        }
        assert!(
            unit.lines().any(|l| l == line),
            "rendered unit lacks {line:?}"
        );
    }
    assert!(unit.contains(
        "ExecStart=/usr/bin/haplane run --config /etc/haplane/cluster.yaml --node dev6\n"
    ));
}

#[test]
fn lb_nodes_get_the_vip_and_balancer_files_and_masters_only_kubeadm_and_elections() {
    // Seed 004: lb-1 and lb-2 carry the VIP in front of three masters.
    let p = plan_of("seed004.yaml", &opts());
    for lb in ["lb-1", "lb-2"] {
        assert!(p.get(&format!("{lb}/haplane.service")).is_some(), "{lb}");
        assert!(p.get(&format!("{lb}/classic/keepalived.conf")).is_some());
        assert!(p.get(&format!("{lb}/classic/haproxy.cfg")).is_some());
        // No kubelet on a dedicated balancer: no kubeadm config, no static pod.
        assert!(p.get(&format!("{lb}/kubeadm.yaml")).is_none());
        assert!(p.get(&format!("{lb}/haplane.yaml")).is_none());
    }
    for m in ["master-1", "master-2", "master-3"] {
        assert!(p.get(&format!("{m}/kubeadm.yaml")).is_some());
        // The masters run haplane for the elections only: no VIP, so no classic VRRP files
        // and no patch (the apiserver may bind every address; the VIP lives elsewhere).
        assert!(p.get(&format!("{m}/haplane.service")).is_some());
        assert!(p.get(&format!("{m}/classic/keepalived.conf")).is_none());
        assert!(p.get(&format!("{m}/classic/haproxy.cfg")).is_none());
        assert!(
            p.get(&format!("{m}/patches/kube-apiserver+json.json"))
                .is_none()
        );
    }
    let k = p.get("lb-1/classic/keepalived.conf").unwrap();
    assert!(k.contains("priority 110") && k.contains("unicast_src_ip 192.0.2.252"));
    assert!(
        k.contains("unicast_peer {\n        192.0.2.253\n    }"),
        "the peers are the other lb nodes, not the masters:\n{k}"
    );
    let h = p.get("lb-1/classic/haproxy.cfg").unwrap();
    assert!(h.contains("bind 192.0.2.254:6443 transparent"), "{h}");
    for m in ["192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        assert!(
            h.contains(&format!("{m}:6443 weight 1")),
            "backend {m}:\n{h}"
        );
    }
    let init = p.get("master-1/kubeadm.yaml").unwrap();
    assert!(init.contains("controlPlaneEndpoint: \"192.0.2.254:6443\""));
    let readme = p.get("README.md").unwrap();
    for needle in [
        "| lb-1 | 192.0.2.252 | lb | 110 |",
        "| master-1 | 192.0.2.11 | master | - |",
        "## 2. haplane on the lb nodes (lb-1, lb-2)",
        "scp master-1:/etc/kubernetes/pki/ca.crt LB_NODE:/etc/kubernetes/pki/ca.crt",
        "Copy the etcd client files (/etc/kubernetes/pki/etcd/ca.crt, /etc/kubernetes/pki/apiserver-etcd-client.crt, /etc/kubernetes/pki/apiserver-etcd-client.key)",
        "The masters (master-1, master-2, master-3) run haplane for the elections",
        "exactly one lb node holds the VIP",
    ] {
        assert!(readme.contains(needle), "{needle:?} missing from\n{readme}");
    }
}

#[test]
fn lb_nodes_classic_keepalived_conf_passes_keepalived_config_test() {
    let p = plan_of("seed004.yaml", &opts());
    let text = p.get("lb-2/classic/keepalived.conf").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, text).unwrap();
    let ns = common::Netns::new();
    ns.dummy("eth0", "192.0.2.253/24");
    let out = ns
        .command("keepalived")
        .args(["-t", "-l", "-f"])
        .arg(&file)
        .output()
        .expect("keepalived runs (scripts/deps installs it)");
    assert!(
        out.status.success(),
        "keepalived -t rejected lb-2's keepalived.conf:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn commands_keepalived_cannot_write_inline_run_through_wrapper_scripts_keepalived_accepts() {
    // A name with a space and arguments with quotes: fine for haplane (no shell), and the
    // classic keepalived.conf runs them through scripts that pass each argument intact.
    let text = std::fs::read_to_string(fixture("seed002.yaml")).unwrap().replace(
        "  vrid: 33\n",
        "  vrid: 33\n  track:\n    - {name: \"api server\", command: [printf, \"%s|\", \"a b\", \"it's\", \"\\\"q\\\"\"], weight: 0}\n  notify: [sh, -c, \"echo \\\"$*\\\"\", notify]\n",
    );
    let cluster = plan::parse(&text, Path::new("wrapped.yaml")).unwrap();
    assert!(
        !plan::validate(&cluster)
            .iter()
            .any(|f| f.severity == config::Severity::Error)
    );
    let p = plan::render(&cluster, &opts()).unwrap();
    let k = p.get("dev6/classic/keepalived.conf").unwrap();
    assert!(k.contains("vrrp_script api_server {"), "{k}");
    assert!(
        k.contains("script \"/etc/keepalived/haplane-track-api_server.sh\""),
        "{k}"
    );
    assert!(
        k.contains("notify \"/etc/keepalived/haplane-notify.sh\""),
        "{k}"
    );
    let track = p.get("dev6/classic/haplane-track-api_server.sh").unwrap();
    let notify = p.get("dev6/classic/haplane-notify.sh").unwrap();
    // The wrapper hands every argument over unchanged.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("t.sh");
    std::fs::write(&script, track).unwrap();
    let out = Command::new("sh").arg(&script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's|\"q\"|");
    // notify passes keepalived's arguments on.
    std::fs::write(&script, notify).unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .args(["INSTANCE", "x", "MASTER", "100"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "INSTANCE x MASTER 100"
    );
    // And keepalived itself accepts the file with the scripts in place.
    let ns = common::Netns::new();
    ns.dummy("ens192", "192.0.2.41/24");
    ns.etc_file(
        "keepalived/haplane-track-api_server.sh",
        track.as_bytes(),
        0o755,
    );
    ns.etc_file("keepalived/haplane-notify.sh", notify.as_bytes(), 0o755);
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, k).unwrap();
    let out = ns
        .command("keepalived")
        .args(["-t", "-l", "-f"])
        .arg(&file)
        .output()
        .expect("keepalived runs (scripts/deps installs it)");
    assert!(
        out.status.success(),
        "keepalived -t rejected the wrapped file:\n{}\n{k}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_lb_nodes_the_masters_pod_is_granted_what_elections_need_and_no_balancer() {
    // Seed 004: the lb nodes carry the VIP and the balancer; the masters only elect.
    let p = plan_of("seed004.yaml", &opts());
    let master = p.get("master-1/haplane.yaml").unwrap();
    assert!(
        master.contains("#   elections snapshot-dummy: exec /bin/true"),
        "an exec action cannot run in the image: {master}"
    );
    assert!(
        !master.contains("vip.track"),
        "masters behind lb nodes run no VRRP"
    );
    let pod = pod(&p, "master-1/haplane.yaml");
    let mounts: Vec<String> = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    // The etcd client files (elections), not the HTTPS check CA (no balancer here) — both in
    // /etc/kubernetes/pki.
    assert_eq!(
        mounts,
        [
            "/etc/haplane",
            "/etc/kubernetes/pki",
            "/run/haplane",
            "/var/lib/haplane"
        ]
    );
    // An lb node has no kubelet: the unit only, with the same two capabilities.
    assert!(p.get("lb-1/haplane.yaml").is_none());
    let unit = p.get("lb-1/haplane.service").unwrap();
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n"));
    assert!(unit.contains("--node lb-1"));
}
