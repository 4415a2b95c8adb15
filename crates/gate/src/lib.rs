//! The VIP gate: may this node hold the VIP right now?
//!
//! Sans-IO and deterministic, like the `vrrp` crate: feed it the VRRP role, the answers of
//! etcd and the clock with [`Gate::handle_want`], [`Gate::handle_response`] and
//! [`Gate::handle_timeout`]; carry out the [`Action`]s from [`Gate::poll_action`] (etcd
//! requests, add/refresh/remove the VIP, VRRP deferral) and wake it at
//! [`Gate::poll_timeout`]. It has no sockets, no clock, no tokio and no etcd client, so the
//! simulation (feature `sim`) runs the same code as the daemon.
//!
//! The lease lives on the clients' monotonic clocks; etcd only provides a linearizable
//! compare-and-swap on one key (docs/elections.md has the proof):
//! - the holder renews every `renew_interval` with a swap on the key's mod revision and holds
//!   until `t_sent + hold` by its own clock, where `t_sent` is when it sent the last renewal
//!   that succeeded;
//! - a challenger that learned of the key's newest mod revision at local time `w` swaps on
//!   that revision only after `w + hold·(1+ρ) + δ`;
//! - a graceful holder stops answering for the VIP, then deletes the key.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod gate;
#[cfg(feature = "sim")]
pub mod sim;

pub use config::{ConfigError, GateConfig};
pub use gate::{
    Action, Defer, Gate, GateStatus, Held, KeyState, Op, Outcome, Reason, RequestFailed, RequestId,
};
