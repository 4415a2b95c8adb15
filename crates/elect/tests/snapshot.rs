//! Snapshots through the maintenance API, restored with `etcdctl snapshot restore`, and the
//! leader-only scheduler; TLS against a real etcd with client-certificate auth.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Overall timeout of a test's own etcd request.
const T: Duration = Duration::from_secs(5);
use elect::{ElectionConfig, SnapshotSchedule, SnapshotScheduler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restores_into_a_fresh_member_with_every_key_written_before() {
    let cluster = EtcdCluster::start(1);
    let client = elect::connect(&cluster.config()).await.unwrap();
    for i in 0..100 {
        client
            .put(format!("/test/key{i:03}"), format!("value-{i}"), None, T)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.db");
    let info = elect::snapshot(&client, &out).await.unwrap();
    eprintln!("{info:?}");
    assert!(info.size > 20_000);
    assert_eq!(elect::verify_snapshot(&out).unwrap().0, info.size);
    // Written after the snapshot: must not come back.
    client.put("/test/after", "x", None, T).await.unwrap();
    // Only the final file is left, no temp file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let (cp, pp) = (free_port(), free_port());
    let data = dir.path().join("restored");
    let peer = format!("http://127.0.0.1:{pp}");
    let restore = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "r0", "--initial-cluster", &format!("r0={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let url = format!("http://127.0.0.1:{cp}");
    let _etcd = Proc(
        // A member on the restored data dir (its membership comes from the snapshot restore).
        Command::new("etcd")
            .args(
                netlab::EtcdCluster::new("restored", [("r0".to_string(), peer.clone())])
                    .member_args("r0", &data, std::slice::from_ref(&url))
                    .expect("a member"),
            )
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut restored = None;
    for _ in 0..100 {
        if let Ok(c) = elect::connect(&elect::EtcdConfig::plain(vec![url.clone()])).await {
            restored = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restored = restored.expect("restored etcd answers");
    let got = restored
        .get(
            "/test/",
            Some(elect::etcd::GetOptions::new().with_prefix()),
            T,
        )
        .await
        .unwrap();
    let kvs: Vec<(String, String)> = got
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kvs.len(),
        100,
        "every key written before, and nothing after"
    );
    for (i, (k, v)) in kvs.iter().enumerate() {
        assert_eq!(k, &format!("/test/key{i:03}"));
        assert_eq!(v, &format!("value-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_snapshot_leader_writes_snapshots_and_keeps_the_newest_n() {
    let cluster = EtcdCluster::start(1);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut scheds = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let c = elect::connect(&cluster.config()).await.unwrap();
        let s = SnapshotSchedule {
            interval: Duration::from_millis(1100),
            dir: d.path().to_path_buf(),
            keep: 2,
        };
        scheds.push(
            SnapshotScheduler::spawn(c, s, ElectionConfig::new("ignored", format!("n{i}")))
                .unwrap(),
        );
    }
    let count = |i: usize| {
        elect::snapshot::list_snapshots(dirs[i].path())
            .unwrap()
            .len()
    };
    // File names have 1 s resolution; 1.1 s apart gives distinct names.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) && count(0) + count(1) < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let l = if scheds[0].status().role == "leader" {
        0
    } else {
        1
    };
    assert_eq!(scheds[l].status().role, "leader");
    assert_eq!(count(l), 2, "leader keeps the newest 2");
    assert_eq!(count(1 - l), 0, "the follower takes none");
    for p in elect::snapshot::list_snapshots(dirs[l].path()).unwrap() {
        elect::verify_snapshot(&p).unwrap();
    }
    // Hand over: the other node starts snapshotting.
    let old = scheds.remove(l);
    old.shutdown().await;
    let took =
        wait_until(Duration::from_secs(5), || count(1 - l) >= 1).expect("new snapshot leader");
    eprintln!("snapshot leadership moved, first snapshot after {took:?}");
    scheds.remove(0).shutdown().await;
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA plus a leaf signed by it, P-256 keys; files `<name>.pem` / `<name>.key`.
fn make_ca(dir: &std::path::Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
}

fn make_leaf(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certs_connects_and_mismatches_fail_with_clear_errors() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    make_ca(p, "ca");
    make_ca(p, "otherca");
    make_leaf(
        p,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    make_leaf(p, "ca", "client", "extendedKeyUsage=clientAuth\n");
    let tls = Tls {
        cert: p.join("server.pem"),
        key: p.join("server.key"),
        ca: p.join("ca.pem"),
    };
    let cluster = EtcdCluster::start_with(1, Some(tls));
    let good = elect::EtcdConfig {
        endpoints: cluster.endpoints(),
        ca_file: Some(p.join("ca.pem")),
        cert_file: Some(p.join("client.pem")),
        key_file: Some(p.join("client.key")),
        dial_timeout: Duration::from_secs(2),
        attempt_timeout: elect::DEFAULT_ATTEMPT_TIMEOUT,
    };
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = elect::connect(&good).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.expect("TLS connect with the right CA and client cert");
    let e = elect::Election::spawn(client, ElectionConfig::new("tls", "n0")).unwrap();
    wait_until(Duration::from_secs(10), || e.role().borrow().is_leader()).expect("leads over TLS");
    e.resign().await;

    // Server certificate from a CA we do not trust.
    let wrong_ca = elect::EtcdConfig {
        ca_file: Some(p.join("otherca.pem")),
        ..good.clone()
    };
    let err = connect_err(&wrong_ca).await;
    eprintln!("wrong CA: {err}");
    assert!(err.contains(&cluster.endpoints()[0]), "{err}");
    // No client certificate while the server requires one.
    let no_cert = elect::EtcdConfig {
        cert_file: None,
        key_file: None,
        ..good.clone()
    };
    let err = connect_err(&no_cert).await;
    eprintln!("no client cert: {err}");
    // Plain HTTP against the TLS port.
    let plain = elect::EtcdConfig::plain(vec![cluster.endpoints()[0].replace("https", "http")]);
    let err = connect_err(&plain).await;
    eprintln!("http to https port: {err}");
    // Missing key file is named.
    let missing = elect::EtcdConfig {
        key_file: Some(p.join("nope.key")),
        ..good.clone()
    };
    let err = connect_err(&missing).await;
    assert!(
        err.contains("key file") && err.contains("nope.key"),
        "{err}"
    );
}
