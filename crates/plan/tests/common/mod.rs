//! Test helpers: network namespaces that are removed on drop, panics included.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace named uniquely for this process; deleted when dropped.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Create `hpl-<pid>-<n>` with loopback up.
    pub fn new() -> Netns {
        let name = format!(
            "hplp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Run `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// An interface with an address, up (a veth whose peer `<ifname>p` stays in the namespace;
    /// the dummy module is not available everywhere).
    pub fn dummy(&self, ifname: &str, cidr: &str) {
        let peer = format!("{ifname}p");
        self.ip(&["link", "add", ifname, "type", "veth", "peer", "name", &peer]);
        self.ip(&["addr", "add", cidr, "dev", ifname]);
        self.ip(&["link", "set", &peer, "up"]);
        self.ip(&["link", "set", ifname, "up"]);
    }

    /// A veth `ifname` here linked to `ifname` in `other`, both up, with the given addresses.
    pub fn link_to(&self, other: &Netns, ifname: &str, here: &str, there: &str) {
        self.ip(&[
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            &other.name,
        ]);
        self.ip(&["addr", "add", here, "dev", ifname]);
        self.ip(&["link", "set", ifname, "up"]);
        other.ip(&["addr", "add", there, "dev", ifname]);
        other.ip(&["link", "set", ifname, "up"]);
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `f` on a thread that has entered the namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Netns {
    /// Put `contents` at `/etc/REL` as seen by commands run with [`Netns::command`]:
    /// `ip netns exec` bind-mounts `/etc/netns/NAME/*` over `/etc/*` in their mount namespace,
    /// so the host's /etc is untouched. Removed on drop.
    pub fn etc_file(&self, rel: &str, contents: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::Path::new("/etc/netns")
            .join(&self.name)
            .join(rel);
        let dir = path.parent().unwrap().to_path_buf();
        // Another test's drop may remove an empty /etc/netns at the same moment: retry.
        for _ in 0..10 {
            if std::fs::create_dir_all(&dir).is_ok() && dir.is_dir() {
                break;
            }
        }
        std::fs::write(&path, contents).expect("write under /etc/netns");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&self.name));
        // Leave /etc/netns as found: removed only once empty.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}
