//! The properties the importer fuzz targets check, shared with `tests/fuzz_corpus.rs` (which
//! replays the kept corpora under `cargo test`): any keepalived.conf, and any haproxy.cfg beside
//! a real keepalived.conf, imports into a cluster file or fails with a clear error, never a
//! panic; and the cluster file an import prints parses back, comments and all, into the same
//! cluster and passes the rules (what `haplane import` promises).
#![allow(dead_code)] // each fuzz target uses one of these

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use config::Cluster;
use plan::{ImportResult, Text, import_text};

/// The keepalived.conf files the haproxy target pairs its input with (the first input byte
/// picks one): a dedicated balancer pair, kubeadm's stacked masters, an IPv6 VIP, balancing
/// by bind port.
const KEEPALIVED: [&str; 4] = [
    include_str!("../tests/import-corpus/seed004-lb-pair/keepalived.conf"),
    include_str!("../tests/import-corpus/kubeadm-stacked-master/keepalived.conf"),
    include_str!("../tests/import-corpus/ipv6-vip/keepalived.conf"),
    include_str!("../tests/import-corpus/lb-by-bind-port/keepalived.conf"),
];

/// Server names resolve without asking this host (no DNS while fuzzing): a few fixed names.
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let ips: Vec<IpAddr> = match host {
        "localhost" => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
        "master1" | "m1" => vec![Ipv4Addr::new(192, 0, 2, 11).into()],
        "master2" | "m2" => vec![Ipv4Addr::new(192, 0, 2, 12).into()],
        "master3" | "m3" => vec![
            Ipv4Addr::new(192, 0, 2, 13).into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 13).into(),
        ],
        _ => return Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

fn judge(result: Result<ImportResult, plan::ImportError>) {
    match result {
        Ok(r) => {
            let (again, _) = Cluster::from_yaml(&r.cluster_yaml, Path::new("imported.yaml"))
                .unwrap_or_else(|e| {
                    panic!("the imported file is refused: {e}\n{}", r.cluster_yaml)
                });
            assert_eq!(
                again, r.cluster,
                "the imported file means something else:\n{}",
                r.cluster_yaml
            );
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
    }
}

/// Panics when importing `data` as a keepalived.conf breaks the property.
pub fn keepalived(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let k = Text {
        path: Path::new("keepalived.conf"),
        text: &text,
    };
    judge(import_text(k, None, resolve));
}

/// Panics when importing `data[1..]` as a haproxy.cfg beside `KEEPALIVED[data[0] % 4]` breaks
/// the property.
pub fn haproxy(data: &[u8]) {
    let Some((&pick, cfg)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(cfg);
    let k = Text {
        path: Path::new("keepalived.conf"),
        text: KEEPALIVED[usize::from(pick) % KEEPALIVED.len()],
    };
    let h = Text {
        path: Path::new("haproxy.cfg"),
        text: &text,
    };
    judge(import_text(k, Some(h), resolve));
}
