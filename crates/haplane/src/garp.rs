//! Gratuitous ARP on becoming master, so switches and hosts learn the VIP's new MAC at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use socket2::{Domain, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

/// A failure sending gratuitous ARP.
#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    /// AF_PACKET needs CAP_NET_RAW.
    #[error("cannot open a packet socket for gratuitous ARP on {interface}: {source}")]
    Open {
        interface: String,
        source: io::Error,
    },
    /// The interface has no MAC address to announce.
    #[error("interface {0} has no Ethernet address; gratuitous ARP needs one")]
    NoMac(String),
    /// The frame could not be sent.
    #[error("sending gratuitous ARP for {vip} on {interface} failed: {source}")]
    Send {
        vip: IpAddr,
        interface: String,
        source: io::Error,
    },
}

/// Sends ARP announcements out of one interface.
pub struct Announcer {
    socket: Socket,
    interface: String,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    pub fn open(interface: &str, ifindex: u32, mac: Option<[u8; 6]>) -> Result<Self, GarpError> {
        let mac = mac.ok_or_else(|| GarpError::NoMac(interface.to_string()))?;
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, None).map_err(|source| GarpError::Open {
                interface: interface.to_string(),
                source,
            })?;
        Ok(Announcer {
            socket,
            interface: interface.to_string(),
            ifindex,
            mac,
        })
    }

    /// Announce each IPv4 VIP once. IPv6 VIPs are skipped (unsolicited NA is not built yet).
    pub fn announce(&self, vips: &[IpAddr]) -> Result<(), GarpError> {
        for vip in vips {
            let IpAddr::V4(v4) = vip else { continue };
            let frame = arp_announcement(self.mac, *v4);
            let dst = crate::sys::link_layer_addr(self.ifindex, ETH_P_ARP, BROADCAST);
            self.socket
                .send_to(&frame, &dst)
                .map_err(|source| GarpError::Send {
                    vip: *vip,
                    interface: self.interface.clone(),
                    source,
                })?;
        }
        Ok(())
    }
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
