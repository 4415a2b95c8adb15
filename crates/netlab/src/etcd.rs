//! etcd members for labs and tests: the one place that knows etcd's command line (the lab,
//! the daemon's and the elect crate's test suites all start members through it).
//!
//! A cluster is static: every member is named with its peer URL up front
//! (`--initial-cluster`, state `new`), members share a token so two clusters on one machine
//! never join each other, and pre-vote is on so a member rejoining after a partition does
//! not force a new term on the healthy majority (etcd's docs; raft thesis §9.6).

use std::path::Path;

/// The members of one static etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdCluster {
    token: String,
    /// (name, peer URL), in order.
    members: Vec<(String, String)>,
}

impl EtcdCluster {
    /// A cluster of `members` (name, peer URL such as `http://192.0.2.11:2380`), told apart
    /// from any other on this machine by `token`.
    pub fn new(
        token: impl Into<String>,
        members: impl IntoIterator<Item = (String, String)>,
    ) -> EtcdCluster {
        EtcdCluster {
            token: token.into(),
            members: members.into_iter().collect(),
        }
    }

    /// The `--initial-cluster` value.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|(n, p)| format!("{n}={p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcd's arguments (without the program) for member `name`, keeping its data in
    /// `data_dir` and serving clients on `client_urls` (the first is advertised). Logs go to
    /// stderr at `warn`; append flags to change that or to add TLS and raft timings (etcd
    /// takes the last value of a repeated flag). None if `name` is not a member.
    pub fn member_args(
        &self,
        name: &str,
        data_dir: &Path,
        client_urls: &[String],
    ) -> Option<Vec<String>> {
        let (_, peer) = self.members.iter().find(|(n, _)| n == name)?;
        let advertise = client_urls.first()?;
        Some(vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={}", client_urls.join(",")),
            format!("--advertise-client-urls={advertise}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".to_string(),
            "--pre-vote=true".to_string(),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
            "--log-level=warn".to_string(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_names_the_whole_cluster_and_its_own_urls() {
        let c = EtcdCluster::new(
            "t1",
            ["m1", "m2"].map(|n| (n.to_string(), format!("http://{n}:2380"))),
        );
        let a = c
            .member_args(
                "m2",
                Path::new("/d/m2"),
                &["http://m2:2379".into(), "http://127.0.0.1:2379".into()],
            )
            .unwrap();
        assert!(a.contains(&"--name=m2".to_string()));
        assert!(a.contains(&"--initial-cluster=m1=http://m1:2380,m2=http://m2:2380".to_string()));
        assert!(a.contains(&"--listen-peer-urls=http://m2:2380".to_string()));
        assert!(a.contains(&"--advertise-client-urls=http://m2:2379".to_string()));
        assert!(
            a.contains(&"--listen-client-urls=http://m2:2379,http://127.0.0.1:2379".to_string())
        );
        assert!(a.contains(&"--initial-cluster-token=t1".to_string()));
        assert_eq!(c.member_args("m9", Path::new("/d"), &["x".into()]), None);
        assert_eq!(
            c.member_args("m1", Path::new("/d"), &[]),
            None,
            "no client URL"
        );
    }
}
