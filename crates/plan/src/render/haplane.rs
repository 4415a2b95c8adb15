//! haplane itself: a static-pod manifest and a systemd unit, as alternatives.

use std::fmt::Write;

use config::Node;

use super::{Ctx, q};

fn args(ctx: &Ctx, node: &Node) -> Vec<String> {
    vec![
        ctx.o.haplane_subcommand.clone(),
        "--config".into(),
        ctx.o.config_path.display().to_string(),
        "--node".into(),
        node.name.clone(),
    ]
}

/// /etc/kubernetes/manifests/haplane.yaml. A static pod needs no apiserver, so the VIP can
/// come up before `kubeadm init` (no bootstrap deadlock as with a lease in Kubernetes).
pub(crate) fn manifest(ctx: &Ctx, node: &Node) -> String {
    let config_dir = ctx
        .o
        .config_path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/etc/haplane".into());
    let status = ctx.c.status.listen;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# haplane static pod for {} (cluster {}), rendered by haplane plan.\n# Install as /etc/kubernetes/manifests/haplane.yaml, or use haplane.service instead.",
        node.name, ctx.c.cluster
    );
    let _ = writeln!(
        s,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: haplane\n  namespace: kube-system\n  labels:\n    component: haplane\n    tier: control-plane\nspec:\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  terminationGracePeriodSeconds: {}\n  containers:\n    - name: haplane\n      image: {}\n      args:",
        ctx.c.load_balancer.drain_timeout.get().as_secs() + 5,
        q(&ctx.o.haplane_image)
    );
    for a in args(ctx, node) {
        let _ = writeln!(s, "        - {}", q(&a));
    }
    let _ = writeln!(
        s,
        "      securityContext:\n        capabilities:\n          add: [\"NET_ADMIN\", \"NET_RAW\", \"NET_BIND_SERVICE\"]\n      livenessProbe:\n        httpGet:\n          host: {}\n          port: {}\n          path: /healthz\n        periodSeconds: 5\n        failureThreshold: 3",
        q(&status.ip().to_string()),
        status.port()
    );
    let mut mounts = vec![("config", config_dir.clone())];
    if ctx.c.etcd.is_some() {
        mounts.push(("pki", "/etc/kubernetes/pki".into()));
    }
    s.push_str("      volumeMounts:\n");
    for (name, path) in &mounts {
        let _ = writeln!(
            s,
            "        - name: {name}\n          mountPath: {}\n          readOnly: true",
            q(path)
        );
    }
    s.push_str("  volumes:\n");
    for (name, path) in &mounts {
        let _ = writeln!(
            s,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: DirectoryOrCreate",
            q(path)
        );
    }
    s
}

/// /etc/systemd/system/haplane.service.
pub(crate) fn unit(ctx: &Ctx, node: &Node) -> String {
    let exec: Vec<String> = std::iter::once(ctx.o.haplane_binary.display().to_string())
        .chain(args(ctx, node))
        .collect();
    format!(
        "# haplane for {node} (cluster {cluster}), rendered by haplane plan.\n# Install as /etc/systemd/system/haplane.service, or use the static pod instead.\n[Unit]\nDescription=haplane: VIP, apiserver balancer and elections for cluster {cluster}\nAfter=network-online.target\nWants=network-online.target\nBefore=kubelet.service\n\n[Service]\nExecStart={exec}\nRestart=always\nRestartSec=1\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n# SIGTERM: haplane advertises priority 0 and drains its tunnels before exiting.\nKillSignal=SIGTERM\nTimeoutStopSec={stop}\nLimitNOFILE=1048576\n\n[Install]\nWantedBy=multi-user.target\n",
        node = node.name,
        cluster = ctx.c.cluster,
        exec = exec.join(" "),
        stop = ctx.c.load_balancer.drain_timeout.get().as_secs() + 5,
    )
}
