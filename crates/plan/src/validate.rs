//! The plan validates with the cluster file's own rules, the same ones `haplane check` and
//! the daemon run (`config::Cluster::validate`), so check and plan never disagree.

use config::{Cluster, Finding};

/// Every rule of the cluster file: each key's range and the cluster it deploys (etcd quorum,
/// priorities and track weights, port clashes, what keepalived can express, the node roles).
pub fn validate(cluster: &Cluster) -> Vec<Finding> {
    cluster.validate()
}
