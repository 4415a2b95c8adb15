//! `haplane etcd snapshot` (issue 4): stream a snapshot of a real etcd through the maintenance
//! API, restore it with `etcdctl snapshot restore` into a fresh member, read every key back.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Cfg, Lab};

#[test]
fn a_snapshot_restores_into_a_fresh_member_with_every_key_written_before() {
    if support::skip() {
        return;
    }
    let mut lab = Lab::new(&["m1"]);
    lab.start_etcd(&["m1"]);
    let etcdctl = |lab: &Lab, endpoint: &str, args: &[&str]| {
        let out = lab
            .host("m1")
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for i in 0..50 {
        etcdctl(
            &lab,
            "http://192.0.2.11:2379",
            &["put", &format!("/k/{i:02}"), &format!("v{i}")],
        );
    }
    let cfg = Cfg::new(&[("m1", "192.0.2.11", 150)]);
    let path = lab.write(
        "cluster.yaml",
        &format!(
            "{}etcd: {{endpoints: [\"http://192.0.2.11:2379\"]}}\n",
            cfg.yaml()
        ),
    );
    let snap = lab.dir.path().join("backup/etcd.db");
    std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
    let out = lab
        .host("m1")
        .command(env!("CARGO_BIN_EXE_haplane"))
        .args(["etcd", "snapshot", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&snap)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sha256"), "{stdout}");
    // A key written after the snapshot must not be in it.
    etcdctl(&lab, "http://192.0.2.11:2379", &["put", "/k/after", "x"]);

    let restored = lab.dir.path().join("restored");
    etcdctl(
        &lab,
        "http://127.0.0.1:2379",
        &[
            "snapshot",
            "restore",
            snap.to_str().unwrap(),
            "--name=r1",
            &format!("--data-dir={}", restored.display()),
            "--initial-cluster=r1=http://127.0.0.1:2390",
            "--initial-advertise-peer-urls=http://127.0.0.1:2390",
        ],
    );
    let mut cmd = lab.host("m1").command("etcd");
    // A member on the restored data dir, through the one etcd command line (netlab).
    let member = netlab::EtcdCluster::new(
        "restored",
        [("r1".to_string(), "http://127.0.0.1:2390".to_string())],
    );
    cmd.args(
        member
            .member_args("r1", &restored, &["http://127.0.0.1:2389".to_string()])
            .expect("a member"),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.host("m1").spawn(cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listing = loop {
        let out = lab
            .host("m1")
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints=http://127.0.0.1:2389",
                "get",
                "/k/",
                "--prefix",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(Instant::now() < deadline, "restored etcd never answered");
        std::thread::sleep(Duration::from_millis(200));
    };
    for i in 0..50 {
        assert!(
            listing.contains(&format!("/k/{i:02}\nv{i}\n")),
            "key {i} missing:\n{listing}"
        );
    }
    assert!(
        !listing.contains("/k/after"),
        "the snapshot has a key written after it"
    );
}

#[test]
fn a_snapshot_of_an_unreachable_cluster_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    let cfg = Cfg::new(&[("m1", "192.0.2.11", 150)]);
    // 127.0.0.1:9 (discard) refuses connections on this machine: nothing leaves it.
    std::fs::write(
        &path,
        format!(
            "{}etcd: {{endpoints: [\"http://127.0.0.1:9\"], dialTimeout: 1s}}\n",
            cfg.yaml()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haplane"))
        .args(["etcd", "snapshot", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(dir.path().join("s.db"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("127.0.0.1:9"),
        "the error names the endpoint: {err}"
    );
    assert!(
        !dir.path().join("s.db").exists(),
        "no partial snapshot is left"
    );
}
