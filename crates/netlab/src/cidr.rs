//! A minimal address-with-prefix type (`192.0.2.11/24`), enough for configuring test hosts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::error::Error;

/// An IP address with a prefix length, as `ip addr` shows it: `192.0.2.11/24`.
///
/// The address keeps its host bits (it is an interface address, not only a network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// Builds a `Cidr`, rejecting a prefix longer than the address family allows.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, Error> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(Error::InvalidAddress {
                value: format!("{addr}/{prefix_len}"),
                reason: "prefix length too long for the address family",
            });
        }
        Ok(Self { addr, prefix_len })
    }

    /// The IPv4 address, if this is IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// The IPv4 network mask as an integer (`/24` -> `0xffff_ff00`).
    fn v4_mask(prefix_len: u8) -> u32 {
        if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix_len))
        }
    }

    /// For IPv4: the network address with host bits cleared.
    pub fn network_v4(&self) -> Option<Ipv4Addr> {
        let a = self.ipv4()?;
        Some(Ipv4Addr::from(
            u32::from(a) & Self::v4_mask(self.prefix_len),
        ))
    }

    /// For IPv4: the directed broadcast address of the subnet.
    pub fn broadcast_v4(&self) -> Option<Ipv4Addr> {
        let a = self.ipv4()?;
        Some(Ipv4Addr::from(
            u32::from(a) | !Self::v4_mask(self.prefix_len),
        ))
    }

    /// For IPv4: the `n`th address of the subnet (0 is the network address), if it is a usable
    /// host address (neither the network nor the broadcast address).
    pub fn nth_host_v4(&self, n: u32) -> Option<Ipv4Addr> {
        let net = u32::from(self.network_v4()?);
        let bcast = u32::from(self.broadcast_v4()?);
        let a = net.checked_add(n)?;
        (a > net && a < bcast).then(|| Ipv4Addr::from(a))
    }

    /// Whether `ip` lies inside this prefix (same family, same network bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = Self::v4_mask(self.prefix_len);
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = if self.prefix_len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix_len))
                };
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// Parses `addr/len`; a bare address gets the full-length prefix (/32 or /128).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidAddress {
            value: s.to_owned(),
            reason,
        };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
        let prefix_len = match len {
            Some(l) => l.trim().parse().map_err(|_| bad("bad prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_with_prefix_and_keeps_host_bits() {
        let c: Cidr = "192.0.2.11/24".parse().unwrap();
        assert_eq!(c.addr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.to_string(), "192.0.2.11/24");
        assert_eq!(c.network_v4(), Some(Ipv4Addr::new(192, 0, 2, 0)));
        assert_eq!(c.broadcast_v4(), Some(Ipv4Addr::new(192, 0, 2, 255)));
    }

    #[test]
    fn bare_address_gets_host_prefix() {
        let c: Cidr = "198.51.100.7".parse().unwrap();
        assert_eq!(c.prefix_len, 32);
        let c6: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(c6.prefix_len, 128);
    }

    #[test]
    fn rejects_garbage_and_overlong_prefix() {
        assert!("192.0.2.1/33".parse::<Cidr>().is_err());
        assert!("2001:db8::1/129".parse::<Cidr>().is_err());
        assert!("not-an-ip/24".parse::<Cidr>().is_err());
        assert!("192.0.2.1/x".parse::<Cidr>().is_err());
        assert!("".parse::<Cidr>().is_err());
    }

    #[test]
    fn nth_host_refuses_network_and_broadcast_addresses() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert_eq!(c.nth_host_v4(0), None);
        assert_eq!(c.nth_host_v4(11), Some(Ipv4Addr::new(192, 0, 2, 11)));
        assert_eq!(c.nth_host_v4(254), Some(Ipv4Addr::new(192, 0, 2, 254)));
        assert_eq!(c.nth_host_v4(255), None);
        assert_eq!(c.nth_host_v4(u32::MAX), None);
    }

    #[test]
    fn contains_checks_network_bits_only() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(c.contains("198.51.100.200".parse().unwrap()));
        assert!(!c.contains("198.51.101.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
    }
}
