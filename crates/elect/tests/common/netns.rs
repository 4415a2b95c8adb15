//! Real etcd 3.4 members in network namespaces (crates/netlab): hosts m1, m2, m3 run a member
//! each; c1 is a client host. Electors run in this process on a tokio runtime whose worker
//! threads live in a host's namespace, so their sockets are that host's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elect::Role;
use tokio::runtime::Runtime;
use tokio::sync::watch;

pub const MEMBERS: [&str; 3] = ["m1", "m2", "m3"];

pub struct Cluster {
    pub topo: netlab::Topology,
    pub etcd: Vec<netlab::ProcessHandle>,
    pub endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three members on m1..m3 and a client host c1, healthy.
    pub fn start() -> Arc<Cluster> {
        let topo = netlab::Topology::builder()
            .hosts(MEMBERS.iter().copied().chain(["c1"]))
            .build()
            .expect("topology");
        let dir = tempfile::tempdir().unwrap();
        let cluster = netlab::EtcdCluster::new(
            format!("faults-{}", std::process::id()),
            MEMBERS.iter().map(|m| {
                let h = topo.host(m).unwrap();
                (m.to_string(), format!("http://{}:2380", h.address()))
            }),
        );
        let mut etcd = Vec::new();
        let mut endpoints = Vec::new();
        for m in MEMBERS {
            let h = topo.host(m).unwrap();
            let a = h.address();
            let mut c = h.command("etcd");
            c.args(
                cluster
                    .member_args(m, &dir.path().join(m), &[format!("http://{a}:2379")])
                    .expect("a member"),
            )
            .arg("--log-level=error")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("{m}.log"))).unwrap());
            etcd.push(h.spawn(c).expect("etcd (etcd-server package)"));
            endpoints.push(format!("http://{a}:2379"));
        }
        let cluster = Arc::new(Cluster {
            topo,
            etcd,
            endpoints,
            _dir: dir,
        });
        let t0 = Instant::now();
        while !cluster.healthy(&[0, 1, 2]) {
            assert!(t0.elapsed() < Duration::from_secs(30), "etcd never healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    pub fn host(&self, name: &str) -> &netlab::Host {
        self.topo.host(name).unwrap()
    }

    /// Host of member `i`.
    pub fn member_host(&self, i: usize) -> &netlab::Host {
        self.host(MEMBERS[i])
    }

    fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Option<std::process::Output> {
        let mut argv = vec![
            "etcdctl".to_string(),
            "--endpoints".into(),
            endpoints.join(","),
            "--command-timeout=1s".into(),
            "--dial-timeout=1s".into(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        self.host("c1")
            .command(&argv[0])
            .args(&argv[1..])
            .env("ETCDCTL_API", "3")
            .output()
            .ok()
    }

    /// Every member in `which` answers a health check (a quorum read through it).
    pub fn healthy(&self, which: &[usize]) -> bool {
        which.iter().all(|&i| {
            self.etcdctl(&[self.endpoints[i].clone()], &["endpoint", "health"])
                .is_some_and(|o| o.status.success())
        })
    }

    /// (member id, leader id) as member `i` reports them.
    fn status(&self, i: usize) -> Option<(u64, u64)> {
        let o = self.etcdctl(
            &[self.endpoints[i].clone()],
            &["endpoint", "status", "-w", "json"],
        )?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let s = &v.as_array()?.first()?["Status"];
        Some((s["header"]["member_id"].as_u64()?, s["leader"].as_u64()?))
    }

    /// Index of etcd's raft leader, as the members that answer see it.
    pub fn leader(&self) -> Option<usize> {
        let ids: Vec<Option<(u64, u64)>> = (0..3).map(|i| self.status(i)).collect();
        let leader = ids.iter().flatten().map(|(_, l)| *l).next()?;
        ids.iter()
            .position(|s| s.is_some_and(|(id, _)| id == leader))
    }

    /// Moves etcd's raft leadership to member `to` (etcdctl move-leader).
    pub fn move_leader_to(&self, to: usize) {
        let t0 = Instant::now();
        loop {
            let Some(l) = self.leader() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if l == to {
                return;
            }
            let (target, _) = self.status(to).expect("target member answers");
            let _ = self.etcdctl(
                &[self.endpoints[l].clone()],
                &["move-leader", &format!("{target:x}")],
            );
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "cannot move the etcd leader"
            );
        }
    }

    /// Keeps etcd's raft leader off member `i` (so faulting `i` causes no raft election).
    pub fn move_leader_off(&self, i: usize) {
        if self.leader() == Some(i) {
            self.move_leader_to((i + 1) % 3);
        }
    }
}

/// A multi-threaded runtime whose worker threads are inside `host`'s network namespace.
/// Run everything that opens sockets as a task on it (`rt.spawn`), not in `block_on`.
pub fn runtime_in(host: &netlab::Host) -> Runtime {
    host.enter(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
    .unwrap()
}

/// Every role an election published, with when.
#[derive(Clone)]
pub struct Timeline(Arc<Mutex<Vec<(Instant, Role)>>>);

impl Timeline {
    /// Records every change of `role` from now on (spawn on the elector's runtime).
    pub fn record(mut role: watch::Receiver<Role>) -> Timeline {
        let t = Timeline(Arc::new(Mutex::new(Vec::new())));
        let events = t.0.clone();
        tokio::spawn(async move {
            loop {
                let r = role.borrow_and_update().clone();
                events.lock().unwrap().push((Instant::now(), r));
                if role.changed().await.is_err() {
                    return;
                }
            }
        });
        t
    }

    pub fn events(&self) -> Vec<(Instant, Role)> {
        self.0.lock().unwrap().clone()
    }

    /// Leader without a break from `from` to `to`: the role at `from` is `Leader` with a
    /// deadline after `from`, and every later change is a `Leader` published before the
    /// previous deadline passed, the last deadline after `to`. Exact: no sampling.
    pub fn led_throughout(&self, from: Instant, to: Instant) -> Result<(), String> {
        let ev = self.events();
        let start = ev
            .iter()
            .rposition(|(t, _)| *t <= from)
            .ok_or("no role before `from`")?;
        let mut deadline = match &ev[start].1 {
            Role::Leader { deadline } => *deadline,
            r => return Err(format!("not leading at `from`: {r:?}")),
        };
        for (t, r) in ev[start + 1..].iter().filter(|(t, _)| *t <= to) {
            if *t >= deadline {
                return Err(format!(
                    "deadline passed {:?} before the next renewal",
                    *t - deadline
                ));
            }
            match r {
                Role::Leader { deadline: d } => deadline = *d,
                r => return Err(format!("stepped down at {:?}: {r:?}", *t - from)),
            }
        }
        if deadline <= to {
            return Err(format!("deadline passed {:?} before `to`", to - deadline));
        }
        Ok(())
    }

    /// When it first became leader (a `Leader` with a deadline in the future) at or after
    /// `after`.
    pub fn led_at(&self, after: Instant) -> Option<Instant> {
        self.events()
            .into_iter()
            .find(|(t, r)| *t >= after && matches!(r, Role::Leader { deadline } if deadline > t))
            .map(|(t, _)| t)
    }

    /// The latest deadline it ever published.
    pub fn last_deadline(&self) -> Option<Instant> {
        self.events()
            .iter()
            .filter_map(|(_, r)| match r {
                Role::Leader { deadline } => Some(*deadline),
                _ => None,
            })
            .max()
    }

    /// Whether it led at any moment in `[from, to]`.
    pub fn led_during(&self, from: Instant, to: Instant) -> bool {
        let ev = self.events();
        ev.iter().enumerate().any(|(i, (t, r))| {
            let Role::Leader { deadline } = r else {
                return false;
            };
            let end = ev
                .get(i + 1)
                .map(|(n, _)| *n)
                .unwrap_or(*deadline)
                .min(*deadline);
            *t <= to && end > from
        })
    }
}

/// Runs a blocking harness call (etcdctl, nft, signals) off the runtime's worker threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[allow(unused_imports)]
pub use testkit::until;
