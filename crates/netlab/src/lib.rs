//! # netlab: throwaway network topologies for tests and labs
//!
//! A **switch** (a Linux bridge in its own network namespace, so the machine's interfaces are
//! never touched) and **hosts** (one network namespace each, joined to the switch by a veth pair
//! whose host end is `eth0`). Addresses come from 192.0.2.0/24 unless the builder says
//! otherwise. Everything is removed when the [`Topology`] is dropped, also during a panic.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! netlab::require_root!(Ok(()));
//! let topo = netlab::Topology::builder().hosts(["m1", "m2", "w1"]).build()?;
//! let (m1, m2, w1) = (topo.host("m1")?, topo.host("m2")?, topo.host("w1")?);
//! assert!(m1.ping(m2.address(), Duration::from_secs(2))?);
//!
//! let daemon = m1.spawn({
//!     let mut c = m1.command("sleep");
//!     c.arg("600");
//!     c
//! })?;
//! daemon.freeze()?;
//! daemon.thaw()?;
//!
//! let cut = topo.partition(&[m1], &[m2])?; // m1 and m2 still reach w1
//! assert!(!m1.ping(m2.address(), Duration::from_millis(500))?);
//! cut.heal()?;
//!
//! m1.link_down()?;
//! assert!(!w1.ping(m1.address(), Duration::from_millis(500))?);
//! m1.link_up()?;
//! # Ok::<(), netlab::Error>(())
//! ```
//!
//! Needs root plus `ip` (iproute2) and `nft` (nftables). See `README.md` for the naming scheme
//! and lab (persistent) use.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cidr;
mod error;
mod etcd;
mod exec;
mod host;
mod icmp;
mod names;
mod partition;
mod process;
mod topology;

pub use cidr::Cidr;
pub use error::{Error, Result};
pub use etcd::EtcdCluster;
pub use exec::{check_environment, skip_reason};
pub use host::{HOST_IFNAME, Host};
pub use names::{PREFIX, cleanup_stale, destroy_lab, list_labs, list_namespaces};
pub use nix::sys::signal::Signal;
pub use partition::PartitionGuard;
pub use process::ProcessHandle;
pub use topology::{BRIDGE, DEFAULT_SUBNET, FIRST_HOST, Topology, TopologyBuilder};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn topology_hosts_handles_and_guards_can_be_shared_across_threads() {
        // Drills sample has_address from one thread while another moves the VIP.
        assert_send_sync::<crate::Topology>();
        assert_send_sync::<crate::Host>();
        assert_send_sync::<crate::ProcessHandle>();
        assert_send_sync::<crate::PartitionGuard>();
        assert_send_sync::<crate::Error>();
    }
}
