//! Per-instance router configuration and its validation.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{AuthConfigError, AuthHmacConfig};
use crate::packet::Version;

/// Priority of the address owner (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Longest `preempt_delay` keepalived accepts.
pub const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// keepalived's bound on a tracked check's weight.
pub const MAX_WEIGHT: i16 = 253;

/// A tracked check (keepalived `track_script` / `track_interface` with a weight).
///
/// Rise/fall counting is done by the I/O side, which reports results with
/// [`Router::set_check`](crate::Router::set_check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedCheck {
    /// Name, for logs.
    pub name: String,
    /// Weight -253..=253. 0: a failure puts the instance in Fault. Negative: subtracted while
    /// failing. Positive: added while passing (keepalived semantics).
    pub weight: i16,
}

/// Configuration of one VRRP instance. `Debug` never shows the password or keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Instance name, for notify and logs.
    pub name: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Protocol version.
    pub version: Version,
    /// Our source address; its family decides IPv4 or IPv6.
    pub primary_address: IpAddr,
    /// Base priority 1..=255 (255: address owner).
    pub priority: u8,
    /// v2: whole seconds 1..=255; v3: multiples of 10 ms, 10 ms..=40.95 s.
    pub advert_interval: Duration,
    /// Whether a higher-priority backup preempts a lower-priority master (false: nopreempt).
    pub preempt: bool,
    /// keepalived `preempt_delay`, 0..=1000 s.
    pub preempt_delay: Duration,
    /// The virtual addresses, same family as `primary_address`.
    pub virtual_addresses: Vec<IpAddr>,
    /// v2 only: simple password (keepalived `auth_type PASS`; first 8 bytes used).
    pub auth_pass: Option<String>,
    /// keepalived 2.4 `auth_hmac` (v2 and v3); excludes `auth_pass`.
    pub auth_hmac: Option<AuthHmacConfig>,
    /// v3 over IPv4: checksum without the pseudo-header (keepalived `v3_checksum_as_v2`).
    pub v3_checksum_as_v2: bool,
    /// Unicast peers; empty means multicast (224.0.0.18 / ff02::12).
    pub unicast_peers: Vec<IpAddr>,
    /// Tracked checks, addressed by index in [`Router::set_check`](crate::Router::set_check).
    pub tracked: Vec<TrackedCheck>,
}

impl RouterConfig {
    /// A configuration with keepalived's defaults (priority 100, advert 1 s, preempt on,
    /// multicast, no auth, no checks) and the given identity.
    pub fn new(
        name: impl Into<String>,
        vrid: u8,
        version: Version,
        primary_address: IpAddr,
        virtual_addresses: Vec<IpAddr>,
    ) -> Self {
        RouterConfig {
            name: name.into(),
            vrid,
            version,
            primary_address,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            virtual_addresses,
            auth_pass: None,
            auth_hmac: None,
            v3_checksum_as_v2: false,
            unicast_peers: Vec::new(),
            tracked: Vec::new(),
        }
    }

    /// Check every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority);
        }
        let v4 = self.primary_address.is_ipv4();
        if self.primary_address.is_unspecified() || self.primary_address.is_multicast() {
            return Err(ConfigError::PrimaryAddress(self.primary_address));
        }
        match self.version {
            Version::V2 => {
                // RFC 3768 is IPv4 only.
                if !v4 {
                    return Err(ConfigError::V2Ipv6);
                }
                let i = self.advert_interval;
                if i.subsec_nanos() != 0 || !(1..=255).contains(&i.as_secs()) {
                    return Err(ConfigError::AdvertIntervalV2(i));
                }
            }
            Version::V3 => {
                // RFC 5798 §5.2.7: 12-bit field of centiseconds.
                let i = self.advert_interval;
                let ms = i.as_millis();
                if i.as_nanos() % 10_000_000 != 0 || !(10..=40_950).contains(&ms) {
                    return Err(ConfigError::AdvertIntervalV3(i));
                }
                if self.auth_pass.is_some() {
                    return Err(ConfigError::AuthV3);
                }
            }
        }
        if self.preempt_delay > MAX_PREEMPT_DELAY {
            return Err(ConfigError::PreemptDelay(self.preempt_delay));
        }
        if self.virtual_addresses.is_empty() {
            return Err(ConfigError::NoVirtualAddresses);
        }
        if self.virtual_addresses.len() > 255 {
            return Err(ConfigError::TooManyVirtualAddresses(
                self.virtual_addresses.len(),
            ));
        }
        let mut seen = HashSet::new();
        for a in &self.virtual_addresses {
            if a.is_ipv4() != v4 {
                return Err(ConfigError::VirtualAddressFamily(*a));
            }
            if a.is_unspecified() || a.is_multicast() {
                return Err(ConfigError::VirtualAddress(*a));
            }
            if !seen.insert(*a) {
                return Err(ConfigError::DuplicateVirtualAddress(*a));
            }
        }
        if let Some(p) = &self.auth_pass
            && p.is_empty()
        {
            return Err(ConfigError::EmptyAuthPass);
        }
        if let Some(h) = &self.auth_hmac {
            if self.auth_pass.is_some() {
                return Err(ConfigError::AuthPassWithHmac);
            }
            h.validate().map_err(ConfigError::AuthHmac)?;
        }
        let mut seen = HashSet::new();
        for p in &self.unicast_peers {
            if p.is_ipv4() != v4 {
                return Err(ConfigError::UnicastPeerFamily(*p));
            }
            if *p == self.primary_address || p.is_unspecified() || p.is_multicast() {
                return Err(ConfigError::UnicastPeer(*p));
            }
            if !seen.insert(*p) {
                return Err(ConfigError::DuplicateUnicastPeer(*p));
            }
        }
        for t in &self.tracked {
            if !(-MAX_WEIGHT..=MAX_WEIGHT).contains(&t.weight) {
                return Err(ConfigError::Weight {
                    name: t.name.clone(),
                    weight: t.weight,
                });
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("name", &self.name)
            .field("vrid", &self.vrid)
            .field("version", &self.version)
            .field("primary_address", &self.primary_address)
            .field("priority", &self.priority)
            .field("advert_interval", &self.advert_interval)
            .field("preempt", &self.preempt)
            .field("preempt_delay", &self.preempt_delay)
            .field("virtual_addresses", &self.virtual_addresses)
            .field(
                "auth_pass",
                &self.auth_pass.as_ref().map(|_| format_args!("<redacted>")),
            )
            .field("auth_hmac", &self.auth_hmac)
            .field("v3_checksum_as_v2", &self.v3_checksum_as_v2)
            .field("unicast_peers", &self.unicast_peers)
            .field("tracked", &self.tracked)
            .finish()
    }
}

/// A configuration field out of range or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `name` is empty.
    #[error("name: must not be empty")]
    EmptyName,
    /// `vrid` is 0.
    #[error("vrid: must be 1..=255")]
    Vrid,
    /// `priority` is 0 (reserved for a stopping master, RFC 5798 §5.2.4).
    #[error("priority: must be 1..=255 (0 is reserved for a stopping master)")]
    Priority,
    /// `primary_address` is unspecified or multicast.
    #[error("primary_address: {0} is not a usable unicast address")]
    PrimaryAddress(IpAddr),
    /// `version` 2 with an IPv6 `primary_address`.
    #[error("version: vrrp version 2 is ipv4 only (rfc 3768); use version 3 for ipv6")]
    V2Ipv6,
    /// `advert_interval` out of range for v2.
    #[error("advert_interval: {0:?} must be whole seconds 1..=255 for version 2")]
    AdvertIntervalV2(Duration),
    /// `advert_interval` out of range for v3.
    #[error("advert_interval: {0:?} must be a multiple of 10ms in 10ms..=40.95s for version 3")]
    AdvertIntervalV3(Duration),
    /// `auth_pass` set with version 3.
    #[error("auth_pass: version 3 has no authentication (rfc 5798 §9)")]
    AuthV3,
    /// `auth_pass` is the empty string.
    #[error("auth_pass: must not be empty")]
    EmptyAuthPass,
    /// `auth_pass` and `auth_hmac` together (keepalived: mutually exclusive).
    #[error("auth_pass: cannot be combined with auth_hmac; use one or the other")]
    AuthPassWithHmac,
    /// An `auth_hmac` setting is wrong.
    #[error(transparent)]
    AuthHmac(AuthConfigError),
    /// `preempt_delay` above 1000 s.
    #[error("preempt_delay: {0:?} exceeds 1000s")]
    PreemptDelay(Duration),
    /// `virtual_addresses` is empty.
    #[error("virtual_addresses: at least one is required")]
    NoVirtualAddresses,
    /// More than 255 `virtual_addresses`.
    #[error("virtual_addresses: {0} exceed the 255 an advertisement can carry")]
    TooManyVirtualAddresses(usize),
    /// A virtual address of the other family.
    #[error("virtual_addresses: {0} is not of the primary address family")]
    VirtualAddressFamily(IpAddr),
    /// A virtual address that is unspecified or multicast.
    #[error("virtual_addresses: {0} is not a usable unicast address")]
    VirtualAddress(IpAddr),
    /// A virtual address listed twice.
    #[error("virtual_addresses: {0} is listed twice")]
    DuplicateVirtualAddress(IpAddr),
    /// A unicast peer of the other family.
    #[error("unicast_peers: {0} is not of the primary address family")]
    UnicastPeerFamily(IpAddr),
    /// A unicast peer that is ourselves, unspecified or multicast.
    #[error("unicast_peers: {0} is not a usable peer address")]
    UnicastPeer(IpAddr),
    /// A unicast peer listed twice.
    #[error("unicast_peers: {0} is listed twice")]
    DuplicateUnicastPeer(IpAddr),
    /// A tracked check weight outside -253..=253.
    #[error("tracked[{name}].weight: {weight} is outside -253..=253")]
    Weight {
        /// The check's name.
        name: String,
        /// The weight given.
        weight: i16,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RouterConfig {
        RouterConfig::new(
            "vi_1",
            51,
            Version::V3,
            "192.0.2.1".parse().unwrap(),
            vec!["192.0.2.100".parse().unwrap()],
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(base().validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(RouterConfig, &str)> = vec![
            (
                RouterConfig {
                    name: String::new(),
                    ..base()
                },
                "name:",
            ),
            (RouterConfig { vrid: 0, ..base() }, "vrid:"),
            (
                RouterConfig {
                    priority: 0,
                    ..base()
                },
                "priority:",
            ),
            (
                RouterConfig {
                    version: Version::V2,
                    advert_interval: Duration::from_millis(1500),
                    ..base()
                },
                "advert_interval:",
            ),
            (
                RouterConfig {
                    advert_interval: Duration::from_millis(5),
                    ..base()
                },
                "advert_interval:",
            ),
            (
                RouterConfig {
                    advert_interval: Duration::from_millis(40_960),
                    ..base()
                },
                "advert_interval:",
            ),
            (
                RouterConfig {
                    auth_pass: Some("x".into()),
                    ..base()
                },
                "auth_pass:",
            ),
            (
                RouterConfig {
                    preempt_delay: Duration::from_secs(1001),
                    ..base()
                },
                "preempt_delay:",
            ),
            (
                RouterConfig {
                    virtual_addresses: vec![],
                    ..base()
                },
                "virtual_addresses:",
            ),
            (
                RouterConfig {
                    virtual_addresses: vec!["2001:db8::1".parse().unwrap()],
                    ..base()
                },
                "virtual_addresses:",
            ),
            (
                RouterConfig {
                    unicast_peers: vec!["192.0.2.1".parse().unwrap()],
                    ..base()
                },
                "unicast_peers:",
            ),
            (
                RouterConfig {
                    tracked: vec![TrackedCheck {
                        name: "apiserver".into(),
                        weight: 254,
                    }],
                    ..base()
                },
                "tracked[apiserver].weight:",
            ),
            (
                RouterConfig {
                    version: Version::V2,
                    primary_address: "fe80::1".parse().unwrap(),
                    virtual_addresses: vec!["2001:db8::1".parse().unwrap()],
                    ..base()
                },
                "version:",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().expect_err(field).to_string();
            assert!(err.starts_with(field), "{err:?} should name {field}");
        }
    }

    /// keepalived accepts a password longer than 8 characters and uses the first 8.
    #[test]
    fn long_v2_password_is_accepted() {
        let cfg = RouterConfig {
            version: Version::V2,
            auth_pass: Some("longer-than-eight".into()),
            ..base()
        };
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn v3_interval_bounds_are_inclusive() {
        for ms in [10, 40_950] {
            let cfg = RouterConfig {
                advert_interval: Duration::from_millis(ms),
                ..base()
            };
            assert_eq!(cfg.validate(), Ok(()), "{ms}ms");
        }
    }
}
