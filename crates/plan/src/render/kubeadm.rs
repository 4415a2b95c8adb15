//! kubeadm InitConfiguration + ClusterConfiguration (first master) and JoinConfiguration.

use std::fmt::Write;

use config::{EtcdTopology, Node, Role};

use super::{Ctx, KubeadmApi, host, q};

/// Placeholder for the CA public key hash, known only after `kubeadm init`; the runbook fills it.
pub(crate) const CA_HASH_PLACEHOLDER: &str = "sha256:REPLACE_WITH_CA_CERT_HASH";

fn api(ctx: &Ctx) -> &'static str {
    match ctx.o.kubeadm_api {
        KubeadmApi::V1beta4 => "kubeadm.k8s.io/v1beta4",
        KubeadmApi::V1beta3 => "kubeadm.k8s.io/v1beta3",
    }
}

/// `extraArgs`-style maps: a list of name/value pairs in v1beta4, a map in v1beta3.
fn args(ctx: &Ctx, out: &mut String, indent: &str, key: &str, pairs: &[(&str, String)]) {
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{key}:");
    for (name, value) in pairs {
        match ctx.o.kubeadm_api {
            KubeadmApi::V1beta4 => {
                let _ = writeln!(
                    out,
                    "{indent}  - name: {name}\n{indent}    value: {}",
                    q(value)
                );
            }
            KubeadmApi::V1beta3 => {
                let _ = writeln!(out, "{indent}  {name}: {}", q(value));
            }
        }
    }
}

fn node_registration(ctx: &Ctx, out: &mut String, node: &Node) {
    let _ = writeln!(out, "nodeRegistration:");
    let _ = writeln!(out, "  name: {}", q(&node.name));
    let _ = writeln!(out, "  criSocket: {}", q(&ctx.o.cri_socket));
    args(
        ctx,
        out,
        "  ",
        "kubeletExtraArgs",
        &[("node-ip", node.address.to_string())],
    );
}

fn patches(ctx: &Ctx, out: &mut String) {
    if ctx.bind_node_address {
        let _ = writeln!(
            out,
            "patches:\n  directory: {}",
            q(&ctx.o.patches_dir.display().to_string())
        );
    }
}

/// The kubeadm config for one node.
pub(crate) fn render(ctx: &Ctx, node: &Node) -> String {
    let mut out = String::new();
    let c = ctx.c;
    let endpoint = format!("{}:{}", host(ctx.endpoint.ip()), ctx.endpoint.port());
    if node.name == ctx.first.name {
        let _ = writeln!(
            out,
            "# haplane plan: first master {}. Run: kubeadm init --config kubeadm.yaml --upload-certs",
            node.name
        );
        let _ = writeln!(out, "apiVersion: {}\nkind: InitConfiguration", api(ctx));
        let _ = writeln!(
            out,
            "bootstrapTokens:\n  - token: {}\n    ttl: \"24h0m0s\"\n    groups: [\"system:bootstrappers:kubeadm:default-node-token\"]\n    usages: [\"signing\", \"authentication\"]",
            q(&ctx.token)
        );
        let _ = writeln!(out, "certificateKey: {}", q(&ctx.cert_key));
        let _ = writeln!(
            out,
            "localAPIEndpoint:\n  advertiseAddress: {}\n  bindPort: {}",
            q(&node.address.to_string()),
            c.api_server.port
        );
        node_registration(ctx, &mut out, node);
        patches(ctx, &mut out);
        out.push_str("---\n");
        cluster_configuration(ctx, &mut out, &endpoint);
        return out;
    }
    let master = node.is(Role::Master);
    let _ = writeln!(
        out,
        "# haplane plan: {} {}. Fill in caCertHashes (see README.md), then run: kubeadm join --config kubeadm.yaml",
        if master { "master" } else { "worker" },
        node.name
    );
    let _ = writeln!(out, "apiVersion: {}\nkind: JoinConfiguration", api(ctx));
    let _ = writeln!(
        out,
        "discovery:\n  bootstrapToken:\n    apiServerEndpoint: {}\n    token: {}\n    caCertHashes:\n      - {}",
        q(&endpoint),
        q(&ctx.token),
        q(CA_HASH_PLACEHOLDER)
    );
    node_registration(ctx, &mut out, node);
    if master {
        let _ = writeln!(
            out,
            "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {}\n    bindPort: {}\n  certificateKey: {}",
            q(&node.address.to_string()),
            c.api_server.port,
            q(&ctx.cert_key)
        );
        patches(ctx, &mut out);
    }
    out
}

fn cluster_configuration(ctx: &Ctx, out: &mut String, endpoint: &str) {
    let c = ctx.c;
    let _ = writeln!(out, "apiVersion: {}\nkind: ClusterConfiguration", api(ctx));
    let _ = writeln!(out, "clusterName: {}", q(&c.cluster));
    let _ = writeln!(out, "kubernetesVersion: {}", q(&c.kubernetes.version));
    let _ = writeln!(out, "controlPlaneEndpoint: {}", q(endpoint));
    let _ = writeln!(
        out,
        "networking:\n  podSubnet: {}\n  serviceSubnet: {}",
        q(&c.kubernetes.pod_subnet),
        q(&c.kubernetes.service_subnet)
    );
    // The VIP, every master and loopback: clients reach an apiserver through any of them,
    // including a node-local balancer on 127.0.0.1.
    let mut sans = vec![c.vip.address.addr.to_string()];
    sans.extend(c.masters().map(|n| n.address.to_string()));
    sans.push("127.0.0.1".into());
    sans.push("localhost".into());
    let _ = writeln!(out, "apiServer:\n  certSANs:");
    for s in &sans {
        let _ = writeln!(out, "    - {}", q(s));
    }
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    match topology {
        EtcdTopology::Stacked => {
            let _ = writeln!(
                out,
                "etcd:\n  local:\n    dataDir: {}",
                q(&ctx.o.etcd_data_dir.display().to_string())
            );
            let _ = writeln!(out, "    serverCertSANs:");
            for n in c.masters() {
                let _ = writeln!(out, "      - {}", q(&n.address.to_string()));
            }
            let _ = writeln!(out, "    peerCertSANs:");
            for n in c.masters() {
                let _ = writeln!(out, "      - {}", q(&n.address.to_string()));
            }
            // etcd's raft timers, when the cluster file sets them (docs/config.md: a faster
            // election shortens a failover whose holder was also etcd's leader).
            args(ctx, out, "    ", "extraArgs", &super::etcd::raft_flags(c));
        }
        EtcdTopology::External => {
            let etcd = c.etcd.as_ref();
            let _ = writeln!(out, "etcd:\n  external:\n    endpoints:");
            let explicit = etcd.map(|e| e.endpoints.clone()).unwrap_or_default();
            let endpoints: Vec<String> = if explicit.is_empty() {
                // The rendered members serve TLS only (etcd.env), so the apiservers use https.
                c.etcd_members()
                    .iter()
                    .map(|m| format!("https://{}:2379", host(m.address)))
                    .collect()
            } else {
                explicit
            };
            for e in &endpoints {
                let _ = writeln!(out, "      - {}", q(e));
            }
            let path = |p: Option<&std::path::PathBuf>, default: &str| {
                p.map(|p| p.display().to_string())
                    .unwrap_or_else(|| default.to_string())
            };
            let _ = writeln!(
                out,
                "    caFile: {}\n    certFile: {}\n    keyFile: {}",
                q(&path(
                    etcd.and_then(|e| e.ca_file.as_ref()),
                    "/etc/kubernetes/pki/etcd/ca.crt"
                )),
                q(&path(
                    etcd.and_then(|e| e.cert_file.as_ref()),
                    "/etc/kubernetes/pki/apiserver-etcd-client.crt"
                )),
                q(&path(
                    etcd.and_then(|e| e.key_file.as_ref()),
                    "/etc/kubernetes/pki/apiserver-etcd-client.key"
                ))
            );
        }
    }
}

/// A JSON patch (RFC 6902) binding this master's apiserver to its own address, so the
/// balancer can listen on the VIP at the same port (a wildcard bind would take the VIP too).
pub(crate) fn bind_patch(node: &Node) -> String {
    format!(
        "[\n  {{\"op\": \"add\", \"path\": \"/spec/containers/0/command/-\", \"value\": \"--bind-address={}\"}}\n]\n",
        node.address
    )
}
