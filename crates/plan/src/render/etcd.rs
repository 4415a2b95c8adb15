//! External etcd members: an environment file for etcd (Debian's /etc/default/etcd, or
//! /etc/etcd/etcd.conf as in seed 001), with TLS on both client and peer URLs.

use std::fmt::Write;

use config::Node;

use super::{Ctx, host};

/// The environment file for one external etcd member.
pub(crate) fn member_env(ctx: &Ctx, node: &Node) -> String {
    let c = ctx.c;
    let pki = ctx.o.etcd_pki_dir.display().to_string();
    let a = host(node.address);
    let members = c.etcd_members();
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}=https://{}:2380", m.name, host(m.address)))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# etcd member {} of {} (cluster {}), rendered by haplane plan.\n# Install as /etc/default/etcd (Debian) or /etc/etcd/etcd.conf (RHEL); certificates in {pki}.",
        node.name,
        members.len(),
        c.cluster
    );
    let vars = [
        ("ETCD_NAME", node.name.clone()),
        ("ETCD_DATA_DIR", ctx.o.etcd_data_dir.display().to_string()),
        ("ETCD_LISTEN_PEER_URLS", format!("https://{a}:2380")),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            format!("https://{a}:2379,https://127.0.0.1:2379"),
        ),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("https://{a}:2380"),
        ),
        ("ETCD_ADVERTISE_CLIENT_URLS", format!("https://{a}:2379")),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".into()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", format!("{}-etcd", c.cluster)),
        ("ETCD_INITIAL_CLUSTER", initial.join(",")),
        ("ETCD_CERT_FILE", format!("{pki}/server.crt")),
        ("ETCD_KEY_FILE", format!("{pki}/server.key")),
        ("ETCD_TRUSTED_CA_FILE", format!("{pki}/ca.crt")),
        ("ETCD_CLIENT_CERT_AUTH", "true".into()),
        ("ETCD_PEER_CERT_FILE", format!("{pki}/peer.crt")),
        ("ETCD_PEER_KEY_FILE", format!("{pki}/peer.key")),
        ("ETCD_PEER_TRUSTED_CA_FILE", format!("{pki}/ca.crt")),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true".into()),
    ];
    for (k, v) in vars {
        let _ = writeln!(s, "{k}=\"{v}\"");
    }
    for (flag, ms) in raft_flags(c) {
        let var = format!("ETCD_{}", flag.to_uppercase().replace('-', "_"));
        let _ = writeln!(s, "{var}=\"{ms}\"");
    }
    s
}

/// etcd's raft timers as flags (`election-timeout`, `heartbeat-interval`, in milliseconds)
/// when the cluster file sets either; otherwise none, and etcd keeps its own defaults.
pub(crate) fn raft_flags(c: &config::Cluster) -> Vec<(&'static str, String)> {
    let Some(etcd) = c.etcd.as_ref() else {
        return Vec::new();
    };
    if etcd.election_timeout.is_none() && etcd.heartbeat_interval.is_none() {
        return Vec::new();
    }
    let (election, heartbeat) = etcd.raft_timers();
    vec![
        ("heartbeat-interval", heartbeat.as_millis().to_string()),
        ("election-timeout", election.as_millis().to_string()),
    ]
}
