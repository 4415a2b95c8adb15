//! Shared helpers for the vrrp integration tests.
#![allow(dead_code)]

pub mod pcap;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vrrp::{RouterConfig, TrackedCheck, Version};

/// 192.0.2.`host`: every test host lives in TEST-NET-1.
pub fn ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
}

pub fn vip() -> IpAddr {
    ip(100)
}

/// A v3 router at 192.0.2.`host` with `priority`, advert 1 s, VIP 192.0.2.100, VRID 51.
pub fn v3(host: u8, priority: u8) -> RouterConfig {
    RouterConfig {
        priority,
        ..RouterConfig::new(format!("r{host}"), 51, Version::V3, ip(host), vec![vip()])
    }
}

/// The same as [`v3`] but VRRPv2.
pub fn v2(host: u8, priority: u8) -> RouterConfig {
    RouterConfig {
        version: Version::V2,
        ..v3(host, priority)
    }
}

pub fn with_check(mut cfg: RouterConfig, weight: i16) -> RouterConfig {
    cfg.tracked.push(TrackedCheck {
        name: "apiserver".into(),
        weight,
    });
    cfg
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Skew_Time for a 1 s interval: (256 − p)/256 s.
pub fn skew_1s(priority: u8) -> Duration {
    Duration::from_secs(1) * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval for a 1 s interval.
pub fn mdi_1s(priority: u8) -> Duration {
    Duration::from_secs(3) + skew_1s(priority)
}
