//! Elections against a real 3-member etcd 3.4 cluster on loopback, several electors in
//! one process.

mod common;

use std::time::{Duration, Instant};

use common::*;
use elect::{Election, ElectionAction, ElectionConfig, Role};

fn cfg(name: &str, id: &str) -> ElectionConfig {
    ElectionConfig::new(name, id) // TTL 2 s (etcd's minimum), margin 500 ms
}

use testkit::until as wait_for;

fn leaders(es: &[Election]) -> Vec<usize> {
    es.iter()
        .enumerate()
        .filter(|(_, e)| e.role().borrow().is_leader())
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_three_leads_followers_see_it_and_resign_hands_over_at_once() {
    let cluster = EtcdCluster::start(3);
    let name = unique("e");
    let mut es = Vec::new();
    for i in 0..3 {
        let c = elect::connect(&cluster.config()).await.unwrap();
        es.push(Election::spawn(c, cfg(&name, &format!("node{i}"))).unwrap());
    }
    wait_for(Duration::from_secs(10), || leaders(&es).len() == 1)
        .await
        .expect("a leader within 10 s");
    let l = leaders(&es)[0];
    let leader_id = format!("node{l}");
    // Followers name the leader.
    wait_for(Duration::from_secs(2), || {
        es.iter()
            .enumerate()
            .filter(|(i, _)| *i != l)
            .all(|(_, e)| {
                *e.role().borrow()
                    == Role::Follower {
                        leader: Some(leader_id.clone()),
                    }
            })
    })
    .await
    .expect("followers learn the leader");
    let st = es[l].status();
    assert_eq!(st.role, "leader");
    assert_eq!(st.leader.as_deref(), Some(leader_id.as_str()));
    // Deadline is at most TTL - margin ahead.
    assert!(st.lease_deadline_ms.unwrap() <= 1500, "{st:?}");
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["name"], name.as_str());

    // Sampled for 2 s: never two leaders.
    for _ in 0..200 {
        assert_eq!(leaders(&es).len(), 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Resigning revokes the lease: the next leader does not wait for the 2 s TTL.
    let old = es.remove(l);
    let t0 = Instant::now();
    old.resign().await;
    let took = wait_for(Duration::from_secs(5), || leaders(&es).len() == 1)
        .await
        .expect("new leader after resign");
    eprintln!(
        "handover after resign: {:?} (resign itself {:?})",
        took,
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "resign hand-over took {:?}",
        t0.elapsed()
    );
    for e in es {
        e.resign().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_steps_down_by_its_own_deadline_when_etcd_freezes_and_recovers_after() {
    let cluster = EtcdCluster::start(3);
    let c = elect::connect(&cluster.config()).await.unwrap();
    let e = Election::spawn(c, cfg(&unique("frozen"), "solo")).unwrap();
    let mut role = e.role();
    wait_for(Duration::from_secs(10), || role.borrow().is_leader())
        .await
        .expect("leader");
    for m in &cluster.members {
        m.stop();
    }
    let frozen = Instant::now();
    // The published role must turn to follower by itself (not merely expire in place).
    let stepped = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if matches!(*role.borrow_and_update(), Role::Follower { .. }) {
                return Instant::now();
            }
            role.changed().await.unwrap();
        }
    })
    .await
    .expect("stepped down");
    let after = stepped - frozen;
    eprintln!("stepped down {after:?} after etcd froze");
    // deadline = last renewal sent + 2 s - 0.5 s; renewals every 667 ms: within 1.5 s, and
    // strictly before the 2 s server TTL could run out.
    assert!(after <= Duration::from_millis(1600), "{after:?}");
    assert_eq!(e.status().role, "follower");
    for m in &cluster.members {
        m.cont();
    }
    wait_for(Duration::from_secs(15), || role.borrow().is_leader())
        .await
        .expect("leads again once etcd is back");
    e.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_is_held_by_exactly_one_node_and_follows_the_source() {
    let cluster = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("kube-scheduler.yaml");
    std::fs::write(&source, "v: 1\n").unwrap();
    let name = unique("manifest");
    let targets: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("node{i}.yaml")))
        .collect();
    let mut es = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let c = elect::connect(&cluster.config()).await.unwrap();
        let mut cf = cfg(&name, &format!("node{i}"));
        cf.action = Some(ElectionAction::Manifest {
            source: source.clone(),
            target: t.clone(),
        });
        es.push(Election::spawn(c, cf).unwrap());
    }
    let held = |ts: &[std::path::PathBuf]| ts.iter().filter(|t| t.exists()).count();
    wait_for(Duration::from_secs(10), || held(&targets) == 1)
        .await
        .expect("one manifest");
    let l = (0..3).find(|i| targets[*i].exists()).unwrap();
    assert!(es[l].role().borrow().is_leader());
    assert_eq!(std::fs::read(&targets[l]).unwrap(), b"v: 1\n");
    std::fs::write(&source, "v: 2\n").unwrap();
    wait_for(Duration::from_secs(3), || {
        std::fs::read(&targets[l]).unwrap_or_default() == b"v: 2\n"
    })
    .await
    .expect("target follows source edits");
    // Resign the holder: its manifest goes, another node's appears, never two at once.
    let sampler = {
        let ts = targets.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                max = max.max(ts.iter().filter(|t| t.exists()).count());
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        })
    };
    es.remove(l).resign().await;
    assert!(!targets[l].exists(), "resigned node removed its manifest");
    let took = wait_for(Duration::from_secs(3), || held(&targets) == 1)
        .await
        .expect("moved");
    eprintln!("manifest moved {took:?} after resign");
    assert_eq!(sampler.join().unwrap(), 1, "two manifests at once");
    for e in es {
        e.resign().await;
    }
    assert_eq!(held(&targets), 0, "all removed after everyone resigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_fail_clearly_and_an_unreachable_cluster_never_makes_a_leader() {
    let port = free_port(); // nothing listens here
    let mut ec = elect::EtcdConfig::plain(vec![format!("http://127.0.0.1:{port}")]);
    ec.dial_timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let err = connect_err(&ec).await;
    eprintln!("unreachable: {err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    let bad = elect::EtcdConfig::plain(vec!["127.0.0.1:2379".into()]);
    let err = connect_err(&bad).await;
    assert!(err.contains("must start with http"), "{err}");

    let mut tls_on_http = elect::EtcdConfig::plain(vec!["http://127.0.0.1:2379".into()]);
    tls_on_http.ca_file = Some("/nonexistent/ca.pem".into());
    let err = connect_err(&tls_on_http).await;
    assert!(err.contains("uses http://"), "{err}");

    let empty = elect::EtcdConfig::plain(vec![]);
    assert!(connect_err(&empty).await.contains("empty"));

    // An elector given a client whose cluster is gone stays a follower with no leader.
    let client = elect::Client::new(&elect::EtcdConfig::plain(vec![format!(
        "http://127.0.0.1:{port}"
    )]))
    .await
    .unwrap();
    let e = Election::spawn(client, cfg("unreachable", "n")).unwrap();
    let role = e.role();
    for _ in 0..150 {
        assert_eq!(*role.borrow(), Role::Follower { leader: None });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.status().role, "follower");
    e.resign().await;
}

#[test]
fn config_validation_rejects_unsafe_timings() {
    let mut c = ElectionConfig::new("x", "n");
    assert!(c.validate().is_ok());
    c.margin = Duration::from_millis(1900); // 1.9 + 0.1 >= 2: no renewal fits
    assert!(c.validate().unwrap_err().to_string().contains("margin"));
    c = ElectionConfig::new("a/b", "n");
    assert!(c.validate().is_err());
    c = ElectionConfig::new("x", "n");
    c.ttl = Duration::from_millis(500);
    assert!(c.validate().is_err());
    c = ElectionConfig::new("x", "n");
    c.action = Some(ElectionAction::Exec {
        command: vec![],
        grace: Duration::from_secs(1),
    });
    assert!(c.validate().is_err());
    assert_eq!(ElectionConfig::new("x", "n").ttl_secs(), 2);
}
