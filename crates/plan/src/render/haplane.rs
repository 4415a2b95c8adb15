//! haplane itself: a static-pod manifest and a systemd unit, as alternatives. Both grant the
//! daemon only what this node's part of the cluster file makes it touch (docs/install.md
//! explains every setting).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use config::{CheckType, ListenAddr, Node, Role};

use super::{Ctx, q};

/// The packaged unit (packaging/haplane.service). The rendered unit is this file with the
/// node's command line and paths filled in, so its hardening cannot drift from the package's.
const PACKAGED_UNIT: &str = include_str!("../../../../packaging/haplane.service");

/// The directories the packaged unit already makes writable.
const PACKAGED_STATE_DIR: &str = "/var/lib/haplane";
const PACKAGED_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// The packaged unit's `RuntimeDirectory=` (the default `status.adminSocket` lives there).
const PACKAGED_RUNTIME_DIR: &str = "/run/haplane";

fn args(ctx: &Ctx, node: &Node) -> Vec<String> {
    vec![
        ctx.o.haplane_subcommand.clone(),
        "--config".into(),
        ctx.o.config_path.display().to_string(),
        "--node".into(),
        node.name.clone(),
    ]
}

/// What the daemon on one node touches, from the cluster file: the least it must be allowed.
struct Needs {
    /// A port below 1024 (balancer or status listener): CAP_NET_BIND_SERVICE.
    low_ports: Vec<u16>,
    /// Directories it writes: the state dir, election manifest targets, snapshots.
    writes: Vec<PathBuf>,
    /// Directories it only reads: the cluster file's, the TLS files', manifest sources'.
    reads: Vec<PathBuf>,
    /// Commands the cluster file runs on this node (track scripts, notify, exec actions).
    commands: Vec<String>,
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// Sorted, without duplicates and without paths under another one of `paths` or of `covered`.
fn collapse(mut paths: Vec<PathBuf>, covered: &[PathBuf]) -> Vec<PathBuf> {
    paths.sort();
    paths.dedup();
    let keep: Vec<PathBuf> = paths
        .iter()
        .filter(|p| {
            !covered.iter().any(|c| p.starts_with(c))
                && !paths.iter().any(|o| o != *p && p.starts_with(o))
        })
        .cloned()
        .collect();
    keep
}

fn needs(ctx: &Ctx, node: &Node) -> Needs {
    let c = ctx.c;
    // The same roles the daemon acts on: VRRP (and the VIP's balancer) on the VIP's nodes,
    // the node-local balancer on other workers, elections and snapshots on masters.
    let vrrp = c.runs_vrrp(node);
    let lb = &c.load_balancer;
    let listens: &[ListenAddr] = if !lb.enabled {
        &[]
    } else if vrrp {
        &lb.listen
    } else if node.is(Role::Worker) {
        &lb.node_local_listen
    } else {
        &[]
    };
    let mut low_ports: Vec<u16> = listens
        .iter()
        .map(|l| c.resolve_listen(*l).port())
        .chain(std::iter::once(c.status.listen.port()))
        .filter(|p| (1..1024).contains(p))
        .collect();
    low_ports.sort_unstable();
    low_ports.dedup();

    // The state dir, and the admin socket's directory (`haplane lb` and `haplane maintenance`
    // on the host reach the daemon through it).
    let mut writes = vec![c.state_dir.clone(), dir_of(&c.admin_socket(&node.name))];
    let mut reads = vec![dir_of(&ctx.o.config_path)];
    let mut commands = Vec::new();
    let hc = &lb.health_check;
    if !listens.is_empty() && hc.kind == CheckType::Https {
        reads.extend(
            [&hc.ca_file, &hc.cert_file, &hc.key_file]
                .into_iter()
                .flatten()
                .map(|p| dir_of(p)),
        );
    }
    if let (Some(e), true) = (&c.etcd, c.uses_etcd(node)) {
        reads.extend(
            [&e.ca_file, &e.cert_file, &e.key_file]
                .into_iter()
                .flatten()
                .map(|p| dir_of(p)),
        );
    }
    if c.runs_elections(node) {
        for el in &c.elections {
            if let Some(m) = &el.manifest {
                writes.push(dir_of(&m.target));
                reads.push(dir_of(&m.source));
            }
            if let Some(x) = &el.exec {
                commands.push(format!(
                    "elections {}: exec {}",
                    el.name,
                    x.command.first().map_or("", String::as_str)
                ));
            }
        }
        if let Some(s) = &c.snapshots {
            writes.push(s.dir.clone());
        }
    }
    if vrrp {
        for t in &c.vip.track {
            commands.push(format!(
                "vip.track {}: {}",
                t.name,
                t.command.first().map_or("", String::as_str)
            ));
        }
        if let Some(n) = &c.vip.notify {
            commands.push(format!(
                "vip.notify: {}",
                n.first().map_or("", String::as_str)
            ));
        }
    }
    let writes = collapse(writes, &[]);
    let reads = collapse(reads, &writes);
    Needs {
        low_ports,
        writes,
        reads,
        commands,
    }
}

fn capabilities(needs: &Needs) -> Vec<&'static str> {
    let mut caps = vec!["NET_ADMIN", "NET_RAW"];
    if !needs.low_ports.is_empty() {
        caps.push("NET_BIND_SERVICE");
    }
    caps
}

/// SIGTERM: hand over the VIP, resign elections (up to 10s), drain tunnels; as the unit.
fn stop_seconds(ctx: &Ctx) -> u64 {
    ctx.c.load_balancer.drain_timeout.get().as_secs() + 30
}

/// A volume name (a DNS label) for a host path.
fn volume_name(path: &Path, taken: &[String]) -> String {
    let mut base: String = path
        .to_string_lossy()
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base = base.trim_matches('-').to_string();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    if base.is_empty() {
        base = "root".into();
    }
    base.truncate(56);
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// /etc/kubernetes/manifests/haplane.yaml. A static pod needs no apiserver, so the VIP can
/// come up before `kubeadm init` (no bootstrap deadlock as with a lease in Kubernetes).
pub(crate) fn manifest(ctx: &Ctx, node: &Node) -> String {
    let needs = needs(ctx, node);
    let image = &ctx.c.kubernetes.haplane_image;
    let status = ctx.c.status.listen;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# haplane static pod for {} (cluster {}), rendered by haplane plan.\n# Install as /etc/kubernetes/manifests/haplane.yaml, or use haplane.service instead.",
        node.name, ctx.c.cluster
    );
    if image.starts_with("localhost/") {
        let _ = writeln!(
            s,
            "# Load the image on this node first: ctr -n k8s.io images import haplane-{}-oci.tar",
            image.rsplit(':').next().unwrap_or("VERSION")
        );
    }
    if !needs.commands.is_empty() {
        s.push_str(
            "# Warning: the image holds only haplane, and these commands of the cluster file would\n# run inside it and fail; run haplane.service on this node instead:\n",
        );
        for cmd in &needs.commands {
            let _ = writeln!(s, "#   {cmd}");
        }
    }
    let _ = writeln!(
        s,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: haplane\n  namespace: kube-system\n  labels:\n    component: haplane\n    tier: control-plane\nspec:\n  # VRRP, the VIP and the balancer live in the host's network namespace.\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  # SIGTERM: hand the VIP over, resign elections, drain tunnels.\n  terminationGracePeriodSeconds: {}\n  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n  containers:\n    - name: haplane\n      image: {}",
        stop_seconds(ctx),
        q(image)
    );
    if image.starts_with("localhost/") {
        s.push_str(
            "      # Imported with ctr on each node; there is no registry to pull it from.\n      imagePullPolicy: Never\n",
        );
    } else {
        s.push_str("      imagePullPolicy: IfNotPresent\n");
    }
    s.push_str("      args:\n");
    for a in args(ctx, node) {
        let _ = writeln!(s, "        - {}", q(&a));
    }
    let caps: Vec<String> = capabilities(&needs).iter().map(|c| q(c)).collect();
    let _ = writeln!(
        s,
        "      securityContext:\n        # Root's uid for root's files (0600 etcd client keys, the manifest directory), with\n        # no capability but these: NET_ADMIN for the VIP (rtnetlink), NET_RAW for VRRP and\n        # gratuitous ARP{}.\n        runAsUser: 0\n        runAsGroup: 0\n        privileged: false\n        allowPrivilegeEscalation: false\n        readOnlyRootFilesystem: true\n        capabilities:\n          drop: [\"ALL\"]\n          add: [{}]",
        if needs.low_ports.is_empty() {
            String::new()
        } else {
            format!(
                ", NET_BIND_SERVICE for port {}",
                needs
                    .low_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        caps.join(", ")
    );
    let _ = writeln!(
        s,
        "      livenessProbe:\n        httpGet:\n          host: {}\n          port: {}\n          path: /healthz\n        periodSeconds: 5\n        failureThreshold: 3",
        q(&status.ip().to_string()),
        status.port()
    );
    // Read-only mounts: the cluster file and the TLS files' directories (the kubeadm CA
    // appears only at `kubeadm init`, so the directory, not the file, is mounted). Writable:
    // the state dir (the fencing marker must outlive the container), election targets and
    // snapshots.
    let mut mounts: Vec<(String, &PathBuf, bool)> = Vec::new();
    let mut taken = Vec::new();
    for (path, read_only) in needs
        .reads
        .iter()
        .map(|p| (p, true))
        .chain(needs.writes.iter().map(|p| (p, false)))
    {
        let name = volume_name(path, &taken);
        taken.push(name.clone());
        mounts.push((name, path, read_only));
    }
    s.push_str("      volumeMounts:\n");
    for (name, path, read_only) in &mounts {
        let _ = writeln!(
            s,
            "        - name: {name}\n          mountPath: {}\n          readOnly: {read_only}",
            q(&path.display().to_string())
        );
    }
    s.push_str("  volumes:\n");
    for (name, path, _) in &mounts {
        let _ = writeln!(
            s,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: DirectoryOrCreate",
            q(&path.display().to_string())
        );
    }
    s
}

/// /etc/systemd/system/haplane.service: the packaged unit for this node.
pub(crate) fn unit(ctx: &Ctx, node: &Node) -> String {
    let needs = needs(ctx, node);
    let exec: Vec<String> = std::iter::once(ctx.o.haplane_binary.display().to_string())
        .chain(args(ctx, node))
        .collect();
    let covered = [
        PathBuf::from(PACKAGED_STATE_DIR),
        PathBuf::from(PACKAGED_MANIFEST_DIR),
        PathBuf::from(PACKAGED_RUNTIME_DIR),
    ];
    let extra_writes: Vec<&PathBuf> = needs
        .writes
        .iter()
        .filter(|p| !covered.iter().any(|c| p.starts_with(c)))
        .collect();
    let body = PACKAGED_UNIT
        .find("[Unit]")
        .map_or(PACKAGED_UNIT, |i| &PACKAGED_UNIT[i..]);
    let mut s = format!(
        "# haplane for {} (cluster {}), rendered by haplane plan from the packaged unit.\n# Install as /etc/systemd/system/haplane.service (it overrides the package's), or use the\n# static pod instead.\n",
        node.name, ctx.c.cluster
    );
    for line in body.lines() {
        let key = line.split_once('=').map(|(k, _)| k);
        match key {
            Some("ExecStart") => {
                let _ = writeln!(s, "ExecStart={}", exec.join(" "));
            }
            Some("ConditionPathExists") => {
                let _ = writeln!(s, "ConditionPathExists={}", ctx.o.config_path.display());
            }
            Some("TimeoutStopSec") => {
                let _ = writeln!(s, "TimeoutStopSec={}s", stop_seconds(ctx));
            }
            Some("CapabilityBoundingSet" | "AmbientCapabilities")
                if !needs.low_ports.is_empty() =>
            {
                let _ = writeln!(s, "{line} CAP_NET_BIND_SERVICE");
            }
            Some("NoNewPrivileges") if !needs.low_ports.is_empty() => {
                let _ = writeln!(
                    s,
                    "# This node listens on port {} (below 1024): CAP_NET_BIND_SERVICE above.\n{line}",
                    needs
                        .low_ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Some("ReadWritePaths") if !extra_writes.is_empty() => {
                let _ = writeln!(s, "{line}");
                s.push_str("# From the cluster file (state dir, election targets, snapshots):\n");
                for p in &extra_writes {
                    let _ = writeln!(s, "ReadWritePaths={}", p.display());
                }
            }
            Some("ExecStartPre") if !extra_writes.is_empty() && line.contains("mkdir") => {
                let mut l = line.to_string();
                for p in &extra_writes {
                    l.push(' ');
                    l.push_str(&p.display().to_string());
                }
                let _ = writeln!(s, "{l}");
            }
            _ => {
                let _ = writeln!(s, "{line}");
            }
        }
    }
    s
}
