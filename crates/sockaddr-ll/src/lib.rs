//! A link-layer socket address for AF_PACKET sockets.
//!
//! socket2 has no safe constructor for `sockaddr_ll`, and both the daemon's gratuitous ARP
//! and the lab's ARP probe must bind to, or send out of, one interface with their own
//! Ethernet header, so the address is built by hand here, once.
#![deny(unsafe_code)]

use socket2::SockAddr;

/// A `sockaddr_ll` for interface `ifindex`, protocol `ethertype` (host byte order) and, for
/// sends, destination `dst_mac`.
#[allow(unsafe_code)]
pub fn link_layer_addr(ifindex: u32, ethertype: u16, dst_mac: [u8; 6]) -> SockAddr {
    let mut sll_addr = [0u8; 8];
    sll_addr[..6].copy_from_slice(&dst_mac);
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr,
    };
    // SAFETY: `SockAddr::try_init` hands us zeroed storage large enough for any socket address
    // (sockaddr_storage, 128 bytes); we write one `sockaddr_ll` (20 bytes) at its start, which
    // is properly aligned because sockaddr_storage has the strictest alignment of all sockaddrs,
    // and report exactly that length.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            storage.cast::<libc::sockaddr_ll>().write(ll);
            *len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }
    .expect("the initialiser closure never fails");
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_an_af_packet_one_of_sockaddr_ll_length() {
        let a = link_layer_addr(7, 0x0806, [0xff; 6]);
        assert_eq!(a.family(), libc::AF_PACKET as libc::sa_family_t);
        assert_eq!(a.len() as usize, std::mem::size_of::<libc::sockaddr_ll>());
    }
}
