//! What runs in the lab, from /proc: each node's haplane and etcd processes (pid, resident
//! memory, open descriptors) and which election singletons run where. One sweep reads /proc
//! once and maps each process to a node by its network namespace (the inode of
//! `/proc/PID/ns/net` against `/run/netns/NS`), so a sweep costs a few milliseconds, spawns
//! nothing and sees every node at one moment.
//!
//! The lab runs each election's singleton as `exec -a haplane-singleton-NAME sleep infinity`
//! (see `up::cluster_file`), so its process names its election.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::check::Daemon;

/// argv[0] of a lab election's singleton process: this prefix, then the election's name.
pub const SINGLETON_PREFIX: &str = "haplane-singleton-";

/// What a process is, from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A daemon.
    Daemon(Daemon),
    /// The singleton of this election.
    Singleton(String),
}

/// Classifies a NUL-separated command line.
pub fn classify(cmdline: &[u8]) -> Option<What> {
    let argv: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let first = std::str::from_utf8(argv.first()?).ok()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    if let Some(e) = base.strip_prefix(SINGLETON_PREFIX) {
        return Some(What::Singleton(e.to_string()));
    }
    if base == "etcd" {
        return Some(What::Daemon(Daemon::Etcd));
    }
    let has = |s: &[u8]| argv.contains(&s);
    (has(b"run") && has(b"--node")).then_some(What::Daemon(Daemon::Haplane))
}

/// The state letter of `/proc/PID/stat` (after the parenthesised name, which may hold spaces
/// and parentheses itself).
pub fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The start time (clock ticks since boot, field 22) of `/proc/PID/stat`.
pub fn start_of(stat: &str) -> Option<u64> {
    // Fields after the name start with the state, field 3.
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Whether a process in that state runs (not stopped, traced, zombie or dead).
pub fn running(state: char) -> bool {
    !matches!(state, 'T' | 't' | 'Z' | 'X')
}

/// Resident memory in KiB from `/proc/PID/statm` (pages; 4 KiB pages on this machine's
/// architectures, read from the kernel's page size at run time by the caller).
pub fn rss_kb(statm: &str, page_kb: u64) -> Option<u64> {
    statm
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|p| p * page_kb)
}

/// The namespace inode in a `/proc/PID/ns/net` link (`net:[4026532281]`).
pub fn ns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// One daemon process seen in a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSeen {
    /// Its pid.
    pub pid: i32,
    /// Resident memory, KiB.
    pub rss_kb: u64,
    /// Open descriptors.
    pub fds: u64,
}

/// One sweep of /proc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Per (node, daemon), the process: the oldest when there are several (a daemon's child
    /// between fork and exec carries the daemon's command line; pids wrap, start times don't).
    pub daemons: BTreeMap<(String, Daemon), DaemonSeen>,
    /// Per election, the nodes whose singleton process runs (not stopped).
    pub singletons: BTreeMap<String, Vec<String>>,
}

/// Maps namespaces to nodes for sweeps.
#[derive(Debug, Clone)]
pub struct Observer {
    by_inode: BTreeMap<u64, String>,
    page_kb: u64,
}

impl Observer {
    /// An observer of `nodes`: (node name, netns name).
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a str)>) -> std::io::Result<Self> {
        let mut by_inode = BTreeMap::new();
        for (node, ns) in nodes {
            let md = std::fs::metadata(format!("/run/netns/{ns}"))?;
            by_inode.insert(md.ino(), node.to_string());
        }
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as u64;
        Ok(Observer {
            by_inode,
            page_kb: (page / 1024).max(1),
        })
    }

    /// Reads /proc once.
    pub fn sweep(&self) -> Sweep {
        let mut out = Sweep::default();
        let mut started_at: BTreeMap<(String, Daemon), (u64, i32)> = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let dir = e.path();
            let Some(node) = std::fs::read_link(dir.join("ns/net"))
                .ok()
                .and_then(|l| ns_inode(&l.to_string_lossy()))
                .and_then(|i| self.by_inode.get(&i))
            else {
                continue;
            };
            let Some(what) = std::fs::read(dir.join("cmdline"))
                .ok()
                .and_then(|c| classify(&c))
            else {
                continue;
            };
            let Some(stat) = std::fs::read_to_string(dir.join("stat")).ok() else {
                continue;
            };
            let (Some(state), Some(started)) = (state_of(&stat), start_of(&stat)) else {
                continue;
            };
            match what {
                What::Singleton(e) => {
                    if running(state) {
                        let nodes = out.singletons.entry(e).or_default();
                        if !nodes.contains(node) {
                            nodes.push(node.clone());
                        }
                    }
                }
                What::Daemon(d) => {
                    if matches!(state, 'Z' | 'X') {
                        continue;
                    }
                    let key = (node.clone(), d);
                    if started_at
                        .get(&key)
                        .is_some_and(|(t, p)| (*t, *p) < (started, pid))
                    {
                        continue;
                    }
                    started_at.insert(key.clone(), (started, pid));
                    let rss = std::fs::read_to_string(dir.join("statm"))
                        .ok()
                        .and_then(|s| rss_kb(&s, self.page_kb))
                        .unwrap_or(0);
                    let fds = std::fs::read_dir(dir.join("fd"))
                        .map(|d| d.count() as u64)
                        .unwrap_or(0);
                    out.daemons.insert(
                        key,
                        DaemonSeen {
                            pid,
                            rss_kb: rss,
                            fds,
                        },
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_the_daemon_or_the_singletons_election() {
        assert_eq!(
            classify(b"/usr/bin/etcd\0--name=m1\0"),
            Some(What::Daemon(Daemon::Etcd))
        );
        assert_eq!(
            classify(b"/work/target/debug/haplane\0run\0--config\0/x\0--node\0m2\0"),
            Some(What::Daemon(Daemon::Haplane))
        );
        assert_eq!(
            classify(b"haplane-singleton-controller-manager\0infinity\0"),
            Some(What::Singleton("controller-manager".into()))
        );
        // The guard between haplane and the singleton, and anything else, is neither.
        assert_eq!(classify(b"/bin/bash\0-c\0...\0haplane-lease-guard\0"), None);
        assert_eq!(classify(b"sleep\0infinity\0"), None);
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn the_state_is_read_after_a_name_with_spaces_and_parentheses() {
        assert_eq!(state_of("42 (a) b (c)) T 1 2 3"), Some('T'));
        assert_eq!(state_of("7 (etcd) S 1 7 7 0"), Some('S'));
        assert!(running('S') && running('R') && running('D'));
        assert!(!running('T') && !running('Z'));
        assert_eq!(state_of("garbage"), None);
        let stat =
            "77 (hap lane) S 1 77 77 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 9 0 123456 1000 250";
        assert_eq!(start_of(stat), Some(123_456));
        assert_eq!(start_of("1 (x) S 1"), None);
    }

    #[test]
    fn statm_and_namespace_links_parse() {
        assert_eq!(rss_kb("5000 1234 300 10 0 800 0", 4), Some(4936));
        assert_eq!(rss_kb("5000", 4), None);
        assert_eq!(ns_inode("net:[4026532281]"), Some(4_026_532_281));
        assert_eq!(ns_inode("mnt:[1]"), None);
    }

    #[test]
    fn a_sweep_of_no_lab_nodes_sees_nothing() {
        // This process's own namespace is no lab node's: nothing is attributed.
        let o = Observer {
            by_inode: BTreeMap::new(),
            page_kb: 4,
        };
        assert_eq!(o.sweep(), Sweep::default());
    }
}
