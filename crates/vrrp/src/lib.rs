//! Sans-IO VRRP core: a VRRPv2 (RFC 3768) / VRRPv3 (RFC 5798) codec and router state
//! machine, wire-compatible with keepalived.
//!
//! No sockets, clocks or tasks: the caller passes the current [`std::time::Instant`] into
//! every call, feeds received messages to [`Router::handle_packet`], wakes the router at
//! [`Router::poll_timeout`] and carries out the [`Action`]s from [`Router::poll_action`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod log_limit;
pub mod packet;
pub mod router;
#[cfg(feature = "sim")]
pub mod sim;

pub use auth::{AntiReplay, AuthHmacConfig, AuthReject, HmacAuth, HmacKey, HmacMode};
pub use config::{ConfigError, RouterConfig, TrackedCheck};
pub use packet::{
    Advertisement, ChecksumMode, DecodeError, EncodeError, Ipv4Datagram, Ipv4Error, Version,
    parse_ipv4,
};
pub use router::{Action, Counters, DiscardReason, Incoming, Router, State};
