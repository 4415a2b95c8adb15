//! haplane: a highly available Kubernetes control plane in one binary.
//!
//! The binary's pieces: the daemon (`run`), its status server, and the Linux I/O that
//! carries the sans-IO VRRP router from the `vrrp` crate onto a real interface.

#![deny(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod daemon;
pub mod demo;
pub mod elections;
pub mod etcd;
pub mod fence;
pub mod garp;
pub mod maintenance;
pub mod netlink;
pub mod nft;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
pub mod vrrp_io;

/// `tokio::spawn` in the current span: every task the daemon starts logs inside the node's
/// span (`node{node=m1}`), so no line repeats `node = …`.
pub(crate) fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(tracing::Instrument::in_current_span(task))
}
