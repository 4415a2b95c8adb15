//! haplane's apiserver L4 load balancer.
//!
//! A TCP proxy in front of the apiservers: health-checked backends, passive failure detection
//! with instant retry, sessions to a dead backend closed at once, no idle timeout by default,
//! and a splice(2) data path. The daemon builds an [`LbConfig`], calls [`Balancer::start`],
//! and later [`Balancer::reload`], [`Balancer::snapshot`] and [`Balancer::drain`].
#![forbid(unsafe_code)]

mod backend;
mod balancer;
mod burst;
mod config;
mod datapath;
mod error;
mod health;
mod passive;
mod policy;
mod session;
mod status;

pub use balancer::Balancer;
pub use config::{
    BackendConfig, CheckKind, HealthCheckConfig, HttpCheck, LbConfig, MAX_WEIGHT, PathProbe,
    Policy, TlsCheck,
};
pub use error::LbError;
pub use health::{HttpAnswer, judge_http_answer};
pub use status::{Admin, BackendStatus, Health, LbStatus};
