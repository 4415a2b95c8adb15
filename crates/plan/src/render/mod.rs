//! Rendering a plan: every file each node needs, plus the runbook.

mod classic;
mod etcd;
mod haplane;
mod kubeadm;
mod runbook;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use config::{Cluster, ListenAddr, Node, Role, Severity};

use crate::PlanError;

pub(crate) use classic::{haproxy_cfg, keepalived_conf};

/// kubeadm configuration API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeadmApi {
    /// kubeadm.k8s.io/v1beta4 (kubeadm 1.31 and later).
    #[default]
    V1beta4,
    /// kubeadm.k8s.io/v1beta3 (kubeadm 1.22 to 1.30).
    V1beta3,
}

/// Choices that are not (yet) keys of the cluster file.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// kubeadm API version of the rendered configs.
    pub kubeadm_api: KubeadmApi,
    /// Container runtime socket for `nodeRegistration.criSocket`.
    pub cri_socket: String,
    /// haplane's binary on the host, for the systemd unit (the Debian package's path).
    pub haplane_binary: PathBuf,
    /// The subcommand that runs the daemon (`haplane run`).
    pub haplane_subcommand: String,
    /// Where the cluster file lives on every node.
    pub config_path: PathBuf,
    /// kubeadm bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`; random when `None`.
    pub bootstrap_token: Option<String>,
    /// kubeadm certificate key (64 hex digits) for `--upload-certs`; random when `None`.
    pub certificate_key: Option<String>,
    /// Directory of the external etcd members' certificates.
    pub etcd_pki_dir: PathBuf,
    /// etcd data directory on each member.
    pub etcd_data_dir: PathBuf,
    /// CA the classic haproxy verifies the apiservers' /readyz with (unless insecure).
    pub kube_ca_file: PathBuf,
    /// Directory kubeadm reads the per-node patches from.
    pub patches_dir: PathBuf,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            kubeadm_api: KubeadmApi::V1beta4,
            cri_socket: "unix:///var/run/containerd/containerd.sock".into(),
            haplane_binary: "/usr/bin/haplane".into(),
            haplane_subcommand: "run".into(),
            config_path: "/etc/haplane/cluster.yaml".into(),
            bootstrap_token: None,
            certificate_key: None,
            etcd_pki_dir: "/etc/etcd/pki".into(),
            etcd_data_dir: "/var/lib/etcd".into(),
            kube_ca_file: "/etc/kubernetes/pki/ca.crt".into(),
            patches_dir: "/etc/kubernetes/haplane-patches".into(),
        }
    }
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    /// The node it is for; `None` for cluster-wide files (runbook, cluster.yaml, hosts).
    pub node: Option<String>,
    /// Path relative to the output directory (`NODE/...` for node files).
    pub path: PathBuf,
    /// File contents.
    pub contents: String,
    /// Holds a secret (bootstrap token, certificate key): written with mode 0600.
    pub secret: bool,
}

/// Everything `haplane plan` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub files: Vec<PlanFile>,
}

impl Plan {
    /// The contents of the file at `path`, if rendered.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == std::path::Path::new(path))
            .map(|f| f.contents.as_str())
    }
}

/// Values derived once from the cluster file and shared by the renderers.
pub(crate) struct Ctx<'a> {
    pub c: &'a Cluster,
    pub o: &'a PlanOptions,
    pub token: String,
    pub cert_key: String,
    /// The node that runs `kubeadm init`.
    pub first: &'a Node,
    /// `controlPlaneEndpoint`: the VIP at the balancer's port (or the apiserver's).
    pub endpoint: SocketAddr,
    /// Whether the apiserver must bind its node address only (the balancer shares its port).
    pub bind_node_address: bool,
}

pub(crate) fn host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn random_chars(n: usize, alphabet: &[u8]) -> Result<String, PlanError> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(PlanError::Random)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}

const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn check_token(t: &str) -> bool {
    // kubeadm's bootstrap token format: [a-z0-9]{6}.[a-z0-9]{16}.
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

/// Render every file for every node. Refuses a cluster with validation errors.
pub fn render(cluster: &Cluster, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let findings = crate::validate(cluster);
    if findings.iter().any(|f| f.severity == Severity::Error) {
        return Err(PlanError::Invalid(findings));
    }
    let token = match &opts.bootstrap_token {
        Some(t) if check_token(t) => t.clone(),
        Some(t) => {
            return Err(PlanError::Option {
                name: "bootstrap token",
                message: format!("{t:?} is not [a-z0-9]{{6}}.[a-z0-9]{{16}}"),
            });
        }
        None => format!(
            "{}.{}",
            random_chars(6, TOKEN_ALPHABET)?,
            random_chars(16, TOKEN_ALPHABET)?
        ),
    };
    let cert_key = match &opts.certificate_key {
        Some(k) if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) => k.clone(),
        Some(k) => {
            return Err(PlanError::Option {
                name: "certificate key",
                message: format!("{k:?} is not 64 hex digits"),
            });
        }
        None => random_chars(64, HEX)?,
    };
    let Some(first) = cluster.masters().next() else {
        return Err(PlanError::Invalid(findings));
    };
    let lb = &cluster.load_balancer;
    let vip_port = lb.listen.iter().find_map(|l| match l {
        ListenAddr::Vip(p) => Some(*p),
        ListenAddr::Socket(sa) if sa.ip() == cluster.vip.address.addr => Some(sa.port()),
        ListenAddr::Socket(_) => None,
    });
    let (endpoint_port, bind_node_address) = match vip_port {
        Some(p) if lb.enabled => (
            p,
            // Only where the VIP's balancer shares a host with an apiserver.
            cluster.vrrp_nodes().any(|n| n.is(Role::Master))
                && lb
                    .listen
                    .iter()
                    .any(|l| port_of(l) == cluster.api_server.port),
        ),
        _ => (cluster.api_server.port, false),
    };
    let ctx = Ctx {
        c: cluster,
        o: opts,
        token,
        cert_key,
        first,
        endpoint: SocketAddr::new(cluster.vip.address.addr, endpoint_port),
        bind_node_address,
    };
    let mut files = Vec::new();
    let mut add = |node: Option<&str>, path: String, contents: String, secret: bool| {
        files.push(PlanFile {
            node: node.map(str::to_string),
            path: PathBuf::from(path),
            contents,
            secret,
        })
    };
    add(None, "README.md".into(), runbook::render(&ctx), false);
    add(None, "cluster.yaml".into(), cluster.to_yaml(), false);
    add(None, "hosts".into(), hosts(cluster), false);
    for node in &cluster.nodes {
        let n = node.name.as_str();
        let vrrp = cluster.runs_vrrp(node);
        // The kubelet runs on masters and workers; an lb-only node may have none.
        let kubelet = node.is(Role::Master) || node.is(Role::Worker);
        if kubelet {
            add(
                Some(n),
                format!("{n}/kubeadm.yaml"),
                kubeadm::render(&ctx, node),
                true,
            );
        }
        if node.is(Role::Master) && ctx.bind_node_address {
            add(
                Some(n),
                format!("{n}/patches/kube-apiserver+json.json"),
                kubeadm::bind_patch(node),
                false,
            );
        }
        let node_local =
            node.is(Role::Worker) && !vrrp && lb.enabled && !lb.node_local_listen.is_empty();
        // haplane has work on a node that carries the VIP, balances locally or elects.
        if vrrp || node_local || cluster.runs_elections(node) {
            if kubelet {
                add(
                    Some(n),
                    format!("{n}/haplane.yaml"),
                    haplane::manifest(&ctx, node),
                    false,
                );
            }
            add(
                Some(n),
                format!("{n}/haplane.service"),
                haplane::unit(&ctx, node),
                false,
            );
        }
        if vrrp {
            let (conf, wrappers) = keepalived_conf(cluster, node);
            add(
                Some(n),
                format!("{n}/classic/keepalived.conf"),
                conf,
                cluster.vip.auth_pass.is_some(),
            );
            for w in wrappers {
                add(
                    Some(n),
                    format!("{n}/classic/{}", w.name),
                    w.contents,
                    false,
                );
            }
        }
        if (vrrp && lb.enabled) || node_local {
            add(
                Some(n),
                format!("{n}/classic/haproxy.cfg"),
                haproxy_cfg(cluster, node, opts),
                false,
            );
        }
        if node.is(Role::Etcd)
            && cluster.etcd.as_ref().map(|e| e.topology) == Some(config::EtcdTopology::External)
        {
            add(
                Some(n),
                format!("{n}/etcd.env"),
                etcd::member_env(&ctx, node),
                false,
            );
        }
    }
    tracing::debug!(cluster = %cluster.cluster, files = files.len(), "plan rendered");
    Ok(Plan { files })
}

fn port_of(l: &ListenAddr) -> u16 {
    match l {
        ListenAddr::Vip(p) => *p,
        ListenAddr::Socket(sa) => sa.port(),
    }
}

/// /etc/hosts lines for every node, so nobody copies them by hand (seed 001).
fn hosts(c: &Cluster) -> String {
    let mut s = format!(
        "# haplane plan: /etc/hosts entries for cluster {}\n",
        c.cluster
    );
    for n in &c.nodes {
        s.push_str(&format!("{} {}\n", n.address, n.name));
    }
    s
}

/// Quote a string for YAML (double-quoted, JSON-compatible escapes).
pub(crate) fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
