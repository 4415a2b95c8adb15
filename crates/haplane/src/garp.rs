//! Gratuitous ARP (IPv4) and unsolicited Neighbor Advertisements (IPv6) on becoming master,
//! so switches and hosts learn the VIP's new MAC at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

/// A failure sending gratuitous ARP.
#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    /// AF_PACKET needs CAP_NET_RAW.
    #[error("cannot open a packet socket for gratuitous ARP on {interface}: {error}")]
    Open { interface: String, error: io::Error },
    /// The interface has no MAC address to announce.
    #[error("interface {0} has no Ethernet address; gratuitous ARP needs one")]
    NoMac(String),
    /// The frame could not be sent.
    #[error("sending gratuitous ARP for {vip} on {interface} failed: {error}")]
    Send {
        vip: IpAddr,
        interface: String,
        error: io::Error,
    },
}

/// Sends ARP announcements and unsolicited NAs out of one interface.
pub struct Announcer {
    socket: Socket,
    icmpv6: Option<Socket>,
    interface: String,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    pub fn open(interface: &str, ifindex: u32, mac: Option<[u8; 6]>) -> Result<Self, GarpError> {
        let mac = mac.ok_or_else(|| GarpError::NoMac(interface.to_string()))?;
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, None).map_err(|error| GarpError::Open {
                interface: interface.to_string(),
                error,
            })?;
        // RFC 4861 §7.2.6: unsolicited NAs go to all-nodes with hop limit 255.
        let icmpv6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .and_then(|s| {
                s.bind_device(Some(interface.as_bytes()))?;
                s.set_multicast_hops_v6(255)?;
                s.set_multicast_if_v6(ifindex)?;
                Ok(s)
            })
            .ok();
        Ok(Announcer {
            socket,
            icmpv6,
            interface: interface.to_string(),
            ifindex,
            mac,
        })
    }

    /// Announce each VIP once: gratuitous ARP for IPv4, an unsolicited NA for IPv6.
    pub fn announce(&self, vips: &[IpAddr]) -> Result<(), GarpError> {
        for vip in vips {
            let v4 = match vip {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(v6) => {
                    self.advertise_neighbor(*v6)?;
                    continue;
                }
            };
            let frame = arp_announcement(self.mac, *v4);
            let dst = sockaddr_ll::link_layer_addr(self.ifindex, ETH_P_ARP, BROADCAST);
            self.socket
                .send_to(&frame, &dst)
                .map_err(|error| GarpError::Send {
                    vip: *vip,
                    interface: self.interface.clone(),
                    error,
                })?;
        }
        Ok(())
    }
}

impl Announcer {
    fn advertise_neighbor(&self, vip: Ipv6Addr) -> Result<(), GarpError> {
        let err = |error| GarpError::Send {
            vip: IpAddr::V6(vip),
            interface: self.interface.clone(),
            error,
        };
        let socket = self
            .icmpv6
            .as_ref()
            .ok_or_else(|| err(io::Error::other("no ICMPv6 socket")))?;
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let dst = SockAddr::from(SocketAddrV6::new(all_nodes, 0, 0, self.ifindex));
        socket
            .send_to(&neighbor_advertisement(self.mac, vip), &dst)
            .map(|_| ())
            .map_err(err)
    }
}

/// An unsolicited Neighbor Advertisement for `vip` (RFC 4861 §4.4, §7.2.6): Override set,
/// Solicited clear, with the target link-layer address option. The kernel fills in the
/// ICMPv6 checksum on raw ICMPv6 sockets.
pub fn neighbor_advertisement(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.push(136); // type: Neighbor Advertisement
    m.push(0); // code
    m.extend_from_slice(&[0, 0]); // checksum, computed by the kernel
    m.extend_from_slice(&[0x20, 0, 0, 0]); // R=0 S=0 O=1
    m.extend_from_slice(&vip.octets());
    m.push(2); // option: target link-layer address
    m.push(1); // length in units of 8 octets
    m.extend_from_slice(&mac);
    m
}

/// An Ethernet frame carrying a gratuitous ARP request: sender and target are both the VIP
/// (RFC 5227 §3 "ARP Announcement"), which is what keepalived sends.
pub fn arp_announcement(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0u8; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsolicited_na_overrides_and_carries_our_mac_rfc4861_7_2_6() {
        let mac = [2, 0, 0, 0, 0, 1];
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let m = neighbor_advertisement(mac, vip);
        assert_eq!(m.len(), 32);
        assert_eq!(m[0], 136);
        assert_eq!(m[4] & 0xe0, 0x20, "override only");
        assert_eq!(&m[8..24], &vip.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &mac);
    }

    #[test]
    fn an_announcement_names_the_vip_as_sender_and_target_rfc5227_3() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = arp_announcement(mac, Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "opcode request");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[192, 0, 2, 100]);
        assert_eq!(&f[38..42], &[192, 0, 2, 100]);
    }
}
