//! The maintenance handover's nftables tables (docs/maintenance.md), programmed over netlink
//! in one batch each, like the VIP gate. What `nft` would print for them:
//!
//! ```text
//! table arp haplane_park {
//!   chain input {
//!     type filter hook input priority 0;
//!     arp operation request arp daddr ip VIP drop
//!   }
//!   chain output {
//!     type filter hook output priority 0;
//!     arp saddr ip VIP arp saddr ip set NODE
//!   }
//! }
//! table ip haplane_handover {            # ip6 for an IPv6 VIP
//!   chain prerouting {
//!     type filter hook prerouting priority -150;
//!     ip daddr VIP tcp dport { PORTS } tcp flags & (syn | ack) != syn ct state new counter dup to OLD device "IF" drop
//!     ip daddr VIP tcp dport { PORTS } tcp flags & (fin | rst) != 0 ct state invalid counter dup to OLD device "IF" drop
//!   }
//! }
//! ```

use std::net::{IpAddr, Ipv4Addr};

use super::*;

/// The arp table that keeps a parked VIP from being answered or announced.
pub const PARK_TABLE: &str = "haplane_park";
/// The ip or ip6 table of the new holder's forwarding.
pub const FORWARD_TABLE: &str = "haplane_handover";

const NFPROTO_IPV4: u8 = 2;
/// NF_ARP_IN; NF_INET_PRE_ROUTING.
const HOOK_ARP_IN: u32 = 0;
const HOOK_INET_PRE_ROUTING: u32 = 0;
/// After conntrack (-200) has classified the packet: the mangle priority.
const PRIORITY_MANGLE: i32 = -150;
/// ARP (RFC 826): the operation after htype, ptype, hlen, plen; the target protocol address
/// after the sender's hardware and protocol addresses and the target's hardware address.
const ARP_OP_OFFSET: u32 = 6;
const ARP_TPA_OFFSET: u32 = 24;
const ARP_OP_REQUEST: [u8; 2] = [0, 1];
/// IPv4 and IPv6 destination address offsets (RFC 791 §3.1, RFC 8200 §3).
const IPV4_DADDR_OFFSET: u32 = 16;
const IPV6_DADDR_OFFSET: u32 = 24;
const TCP: u8 = 6;
/// TCP (RFC 9293 §3.1): destination port, flags byte.
const TCP_DPORT_OFFSET: u32 = 2;
const TCP_FLAGS_OFFSET: u32 = 13;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// The ct state bits (nf_conntrack_common.h: NF_CT_STATE_INVALID_BIT, IP_CT_NEW's bit).
const CT_STATE_INVALID: u32 = 1;
const CT_STATE_NEW: u32 = 8;
/// nft's data type id of inet_service (a port), for the port set.
const TYPE_INET_SERVICE: u32 = 13;

/// Stops answering ARP requests for `vip` and rewrites it to `source` as the sender of this
/// node's own ARP requests, replacing any earlier park table.
pub fn park_arp(vip: Ipv4Addr, source: Ipv4Addr) -> Result<(), NftError> {
    let (vip, source) = (vip.octets(), source.octets());
    NfSocket::open()?.transact("arp", PARK_TABLE, |b| {
        let f = NFPROTO_ARP;
        b.fresh_table(f, PARK_TABLE);
        b.base_chain(f, PARK_TABLE, "input", HOOK_ARP_IN, 0);
        b.rule(f, PARK_TABLE, "input", |e| {
            e.payload_load(NFT_PAYLOAD_NETWORK_HEADER, ARP_OP_OFFSET, 2, NFT_REG_1)
                .cmp(NFT_CMP_EQ, NFT_REG_1, &ARP_OP_REQUEST)
                .payload_load(NFT_PAYLOAD_NETWORK_HEADER, ARP_TPA_OFFSET, 4, NFT_REG_1)
                .cmp(NFT_CMP_EQ, NFT_REG_1, &vip)
                .verdict(NF_DROP);
        });
        b.base_chain(f, PARK_TABLE, "output", HOOK_ARP_OUT, 0);
        b.rule(f, PARK_TABLE, "output", |e| {
            e.payload_load(NFT_PAYLOAD_NETWORK_HEADER, ARP_SPA_OFFSET, 4, NFT_REG_1)
                .cmp(NFT_CMP_EQ, NFT_REG_1, &vip)
                .immediate(NFT_REG_1, &source)
                .payload_write(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, ARP_SPA_OFFSET, 4);
        });
    })
}

/// Removes the park table if it is there.
pub fn unpark_arp() -> Result<(), NftError> {
    NfSocket::open()?.transact("arp", PARK_TABLE, |b| b.drop_table(NFPROTO_ARP, PARK_TABLE))
}

/// Forwards the packets for `vip`:`ports` (TCP) that start no connection and belong to no
/// connection of this node to `to` through interface `ifindex`, replacing any earlier table.
/// `to` must be of `vip`'s family.
pub fn forward(vip: IpAddr, ports: &[u16], to: IpAddr, ifindex: u32) -> Result<(), NftError> {
    let (f, name, daddr_offset, vip, to) = match (vip, to) {
        (IpAddr::V4(v), IpAddr::V4(t)) => (
            NFPROTO_IPV4,
            "ip",
            IPV4_DADDR_OFFSET,
            v.octets().to_vec(),
            t.octets().to_vec(),
        ),
        (IpAddr::V6(v), IpAddr::V6(t)) => (
            NFPROTO_IPV6,
            "ip6",
            IPV6_DADDR_OFFSET,
            v.octets().to_vec(),
            t.octets().to_vec(),
        ),
        _ => return Err(NftError::Family { vip, to }),
    };
    let keys: Vec<[u8; 2]> = ports.iter().map(|p| p.to_be_bytes()).collect();
    let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    NfSocket::open()?.transact(name, FORWARD_TABLE, |b| {
        b.fresh_table(f, FORWARD_TABLE);
        b.base_chain(
            f,
            FORWARD_TABLE,
            "prerouting",
            HOOK_INET_PRE_ROUTING,
            PRIORITY_MANGLE,
        );
        // An ACK or data segment of a flow conntrack has not seen is `new`; a FIN or RST of
        // one is `invalid` (RFC 9293's states give it no place to start), and it must reach
        // the old holder too, or the new holder answers the client's FIN with a reset and the
        // old holder's session never closes.
        let rules: [(u8, u8, u32, u32); 2] = [
            (TCP_SYN | TCP_ACK, TCP_SYN, CT_STATE_NEW, 1),
            (TCP_FIN | TCP_RST, 0, CT_STATE_INVALID, 2),
        ];
        for (mask, not, state, set) in rules {
            // As nft does: one port is a comparison, more are an anonymous set.
            let one = match keys.as_slice() {
                [one] => Some(*one),
                _ => {
                    b.anonymous_set(f, FORWARD_TABLE, set, TYPE_INET_SERVICE, 2, &keys);
                    None
                }
            };
            b.rule(f, FORWARD_TABLE, "prerouting", |e| {
                e.payload_load(
                    NFT_PAYLOAD_NETWORK_HEADER,
                    daddr_offset,
                    vip.len() as u32,
                    NFT_REG_1,
                )
                .cmp(NFT_CMP_EQ, NFT_REG_1, &vip)
                .meta_load(NFT_META_L4PROTO, NFT_REG_1)
                .cmp(NFT_CMP_EQ, NFT_REG_1, &[TCP])
                .payload_load(
                    NFT_PAYLOAD_TRANSPORT_HEADER,
                    TCP_DPORT_OFFSET,
                    2,
                    NFT_REG_1,
                );
                match one {
                    Some(port) => e.cmp(NFT_CMP_EQ, NFT_REG_1, port),
                    None => e.lookup(ANONYMOUS_SET, set, NFT_REG_1),
                }
                .payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, TCP_FLAGS_OFFSET, 1, NFT_REG_1)
                .and(NFT_REG_1, &[mask])
                .cmp(NFT_CMP_NEQ, NFT_REG_1, &[not])
                // ct state is a host-order bit mask in a 32-bit register.
                .ct_load(NFT_CT_STATE, NFT_REG_1)
                .and(NFT_REG_1, &state.to_ne_bytes())
                .cmp(NFT_CMP_NEQ, NFT_REG_1, &0u32.to_ne_bytes())
                .counter()
                .immediate(NFT_REG_1, &to)
                // An interface index is a host-order u32 too.
                .immediate(NFT_REG_2, &ifindex.to_ne_bytes())
                .dup(NFT_REG_1, NFT_REG_2)
                .verdict(NF_DROP);
            });
        }
    })
}

/// Removes the forwarding table of `vip`'s family if it is there.
pub fn stop_forwarding(vip: IpAddr) -> Result<(), NftError> {
    let (f, name) = if vip.is_ipv4() {
        (NFPROTO_IPV4, "ip")
    } else {
        (NFPROTO_IPV6, "ip6")
    };
    NfSocket::open()?.transact(name, FORWARD_TABLE, |b| b.drop_table(f, FORWARD_TABLE))
}
