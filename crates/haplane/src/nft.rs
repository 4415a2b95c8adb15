//! The VIP's kernel stop: an nftables table, programmed over netlink (no `nft` binary on the
//! hot path), that lets this node answer for the VIP only while one set element is present.
//! The element carries a millisecond timeout, refreshed at every renewal the gate confirms,
//! so the kernel closes the fence by itself at the hold deadline even when the daemon is
//! frozen or dead (docs/elections.md "The VIP gate").
//!
//! IPv4: table `arp haplane_gate`, chain `out` (hook output): ARP packets whose sender address
//! is the VIP are dropped unless the VIP is in set `live`. So the node neither answers ARP
//! requests for the VIP nor announces it. IPv6: table `ip6 haplane_gate`, chain `out`:
//! neighbour advertisements whose target is the VIP are dropped unless it is in `live`.
//! Clients find the holder by ARP/ND; a client with a cached entry moves with the new
//! holder's gratuitous ARP. Traffic to the VIP itself is not filtered, so a parked VIP
//! (docs/maintenance.md) keeps serving the sessions forwarded to it.
//!
//! Messages are built by hand (nfnetlink batches, see the kernel's
//! include/uapi/linux/netfilter/nf_tables.h for every number used here); no unsafe code.
//! [`handover`] builds the maintenance handover's tables with the same pieces.

pub mod handover;

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

/// The table's name, in the `arp` (IPv4 VIP) or `ip6` (IPv6 VIP) family.
pub const TABLE: &str = "haplane_gate";
const SET: &str = "live";
const CHAIN: &str = "out";

/// Why the kernel fence could not be programmed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The netlink socket could not be opened or bound.
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(nix::Error),
    /// Sending or receiving failed.
    #[error("netfilter netlink {what} failed: {error}")]
    Io {
        /// What was going on.
        what: &'static str,
        /// The error.
        #[source]
        error: nix::Error,
    },
    /// The kernel refused a message of a batch.
    #[error("the kernel refused {what} for table {family} {table}: {errno}")]
    Refused {
        /// The message that failed.
        what: &'static str,
        /// The table's family.
        family: &'static str,
        /// The table's name.
        table: &'static str,
        /// The kernel's answer.
        errno: nix::Error,
    },
    /// No answer in time.
    #[error("no answer from nf_tables within 1s")]
    NoAnswer,
    /// Forwarding was asked for to an address of the other family than the VIP's.
    #[error("cannot forward packets for {vip} to {to}: not the same address family")]
    Family {
        /// The VIP.
        vip: IpAddr,
        /// The old holder.
        to: IpAddr,
    },
}

// include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_ARP: u8 = 3;
const NFPROTO_IPV6: u8 = 10;
// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_PAYLOAD_SREG: u16 = 5;
const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
const NFTA_PAYLOAD_CSUM_FLAGS: u16 = 8;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_DUP_SREG_ADDR: u16 = 1;
const NFTA_DUP_SREG_DEV: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
// Values.
const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_CONSTANT: u32 = 0x2;
const NFT_SET_TIMEOUT: u32 = 0x10;
/// The kernel numbers a set named like this (`__set0`, ...), as nft names its anonymous sets.
const ANONYMOUS_SET: &str = "__set%d";
const NFT_PAYLOAD_CSUM_NONE: u32 = 0;
const NFT_CT_STATE: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// NF_ARP_OUT and NF_INET_LOCAL_OUT.
const HOOK_ARP_OUT: u32 = 1;
const HOOK_INET_LOCAL_OUT: u32 = 3;
/// nft's data type ids for the set's key (ipv4_addr, ipv6_addr): only `nft list` uses them.
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
/// ARP: the sender protocol address after htype, ptype, hlen, plen, oper and the sender MAC.
const ARP_SPA_OFFSET: u32 = 14;
/// ICMPv6 neighbour advertisement (RFC 4861 §4.4): type 136, target at offset 8.
const ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_TARGET_OFFSET: u32 = 8;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes appended to a buffer.
struct Attrs<'a>(&'a mut Vec<u8>);

impl Attrs<'_> {
    fn bytes(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.bytes(ty, &data)
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    fn u64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs<'_>)) -> &mut Self {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        f(&mut Attrs(self.0));
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// One expression of a rule.
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Attrs<'_>)) -> &mut Self {
        self.nest(NFTA_LIST_ELEM, |e| {
            e.str(NFTA_EXPR_NAME, name).nest(NFTA_EXPR_DATA, data);
        })
    }
}

/// The expressions of a rule (inside `NFTA_RULE_EXPRESSIONS`), one method each, named after
/// what `nft --debug=netlink` prints for them.
impl Attrs<'_> {
    /// `[ payload load LEN @ BASE + OFFSET => reg DREG ]`
    fn payload_load(&mut self, base: u32, offset: u32, len: u32, dreg: u32) -> &mut Self {
        self.expr("payload", |p| {
            p.u32(NFTA_PAYLOAD_DREG, dreg)
                .u32(NFTA_PAYLOAD_BASE, base)
                .u32(NFTA_PAYLOAD_OFFSET, offset)
                .u32(NFTA_PAYLOAD_LEN, len);
        })
    }

    /// `[ payload write reg SREG => LEN @ BASE + OFFSET ]`, no checksum to fix (ARP has none).
    fn payload_write(&mut self, sreg: u32, base: u32, offset: u32, len: u32) -> &mut Self {
        self.expr("payload", |p| {
            p.u32(NFTA_PAYLOAD_SREG, sreg)
                .u32(NFTA_PAYLOAD_BASE, base)
                .u32(NFTA_PAYLOAD_OFFSET, offset)
                .u32(NFTA_PAYLOAD_LEN, len)
                .u32(NFTA_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_NONE)
                .u32(NFTA_PAYLOAD_CSUM_OFFSET, 0)
                .u32(NFTA_PAYLOAD_CSUM_FLAGS, 0);
        })
    }

    /// `[ meta load KEY => reg DREG ]`
    fn meta_load(&mut self, key: u32, dreg: u32) -> &mut Self {
        self.expr("meta", |m| {
            m.u32(NFTA_META_KEY, key).u32(NFTA_META_DREG, dreg);
        })
    }

    /// `[ ct load KEY => reg DREG ]`
    fn ct_load(&mut self, key: u32, dreg: u32) -> &mut Self {
        self.expr("ct", |c| {
            c.u32(NFTA_CT_KEY, key).u32(NFTA_CT_DREG, dreg);
        })
    }

    /// `[ cmp OP reg SREG VALUE ]`
    fn cmp(&mut self, op: u32, sreg: u32, value: &[u8]) -> &mut Self {
        self.expr("cmp", |c| {
            c.u32(NFTA_CMP_SREG, sreg)
                .u32(NFTA_CMP_OP, op)
                .nest(NFTA_CMP_DATA, |d| {
                    d.bytes(NFTA_DATA_VALUE, value);
                });
        })
    }

    /// `[ bitwise reg R = ( reg R & MASK ) ^ 0 ]`
    fn and(&mut self, reg: u32, mask: &[u8]) -> &mut Self {
        let zero = vec![0u8; mask.len()];
        self.expr("bitwise", |b| {
            b.u32(NFTA_BITWISE_SREG, reg)
                .u32(NFTA_BITWISE_DREG, reg)
                .u32(NFTA_BITWISE_LEN, mask.len() as u32)
                .nest(NFTA_BITWISE_MASK, |d| {
                    d.bytes(NFTA_DATA_VALUE, mask);
                })
                .nest(NFTA_BITWISE_XOR, |d| {
                    d.bytes(NFTA_DATA_VALUE, &zero);
                });
        })
    }

    /// `[ lookup reg SREG set NAME ]` of a set created in the same batch with `id`.
    fn lookup(&mut self, set: &str, id: u32, sreg: u32) -> &mut Self {
        self.expr("lookup", |l| {
            l.str(NFTA_LOOKUP_SET, set)
                .u32(NFTA_LOOKUP_SET_ID, id)
                .u32(NFTA_LOOKUP_SREG, sreg);
        })
    }

    /// `[ immediate reg DREG VALUE ]`
    fn immediate(&mut self, dreg: u32, value: &[u8]) -> &mut Self {
        self.expr("immediate", |i| {
            i.u32(NFTA_IMMEDIATE_DREG, dreg)
                .nest(NFTA_IMMEDIATE_DATA, |d| {
                    d.bytes(NFTA_DATA_VALUE, value);
                });
        })
    }

    /// `[ immediate reg 0 VERDICT ]`
    fn verdict(&mut self, code: u32) -> &mut Self {
        self.expr("immediate", |i| {
            i.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                .nest(NFTA_IMMEDIATE_DATA, |d| {
                    d.nest(NFTA_DATA_VERDICT, |v| {
                        v.u32(NFTA_VERDICT_CODE, code);
                    });
                });
        })
    }

    /// `[ counter pkts 0 bytes 0 ]`
    fn counter(&mut self) -> &mut Self {
        self.expr("counter", |c| {
            c.u64(NFTA_COUNTER_BYTES, 0).u64(NFTA_COUNTER_PACKETS, 0);
        })
    }

    /// `[ dup sreg_addr ADDR sreg_dev DEV ]` (nft_dup_ipv4 / nft_dup_ipv6, by the table's family)
    fn dup(&mut self, sreg_addr: u32, sreg_dev: u32) -> &mut Self {
        self.expr("dup", |d| {
            d.u32(NFTA_DUP_SREG_ADDR, sreg_addr)
                .u32(NFTA_DUP_SREG_DEV, sreg_dev);
        })
    }
}

/// Tables, chains, rules and sets, for batches that build a whole table.
impl Batch {
    /// Replaces table `family` `name` by an empty one: create (so the delete finds it whether
    /// or not it existed), delete, create. In one batch nothing is ever half there.
    fn fresh_table(&mut self, family: u8, name: &str) {
        self.drop_table(family, name);
        self.msg(
            "the new table",
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            family,
            |a| {
                a.str(NFTA_TABLE_NAME, name);
            },
        );
    }

    /// Removes table `family` `name` if it is there.
    fn drop_table(&mut self, family: u8, name: &str) {
        self.msg("the table", NFT_MSG_NEWTABLE, NLM_F_CREATE, family, |a| {
            a.str(NFTA_TABLE_NAME, name);
        });
        self.msg("the table's removal", NFT_MSG_DELTABLE, 0, family, |a| {
            a.str(NFTA_TABLE_NAME, name);
        });
    }

    /// A filter chain on `hook` with `priority` and policy accept.
    fn base_chain(&mut self, family: u8, table: &str, chain: &str, hook: u32, priority: i32) {
        self.msg("the chain", NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, |a| {
            a.str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, chain)
                .nest(NFTA_CHAIN_HOOK, |h| {
                    h.u32(NFTA_HOOK_HOOKNUM, hook)
                        .u32(NFTA_HOOK_PRIORITY, priority as u32);
                })
                .u32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                .str(NFTA_CHAIN_TYPE, "filter");
        });
    }

    /// A rule appended to `chain`.
    fn rule(&mut self, family: u8, table: &str, chain: &str, exprs: impl FnOnce(&mut Attrs<'_>)) {
        self.msg(
            "the rule",
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            family,
            |a| {
                a.str(NFTA_RULE_TABLE, table)
                    .str(NFTA_RULE_CHAIN, chain)
                    .nest(NFTA_RULE_EXPRESSIONS, exprs);
            },
        );
    }

    /// An anonymous constant set (what nft makes of `{ a, b }` in a rule) with its elements,
    /// for one rule of this batch to bind by `id` (`lookup`); it goes with that rule.
    fn anonymous_set(
        &mut self,
        family: u8,
        table: &str,
        id: u32,
        key_type: u32,
        key_len: u32,
        keys: &[&[u8]],
    ) {
        self.msg("the set", NFT_MSG_NEWSET, NLM_F_CREATE, family, |a| {
            a.str(NFTA_SET_TABLE, table)
                .str(NFTA_SET_NAME, ANONYMOUS_SET)
                .u32(NFTA_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT)
                .u32(NFTA_SET_KEY_TYPE, key_type)
                .u32(NFTA_SET_KEY_LEN, key_len)
                .u32(NFTA_SET_ID, id);
        });
        self.msg(
            "the set's elements",
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            family,
            |a| {
                a.str(NFTA_SET_ELEM_LIST_TABLE, table)
                    .str(NFTA_SET_ELEM_LIST_SET, ANONYMOUS_SET)
                    .u32(NFTA_SET_ELEM_LIST_SET_ID, id)
                    .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
                        for key in keys {
                            l.nest(NFTA_LIST_ELEM, |e| {
                                e.nest(NFTA_SET_ELEM_KEY, |k| {
                                    k.bytes(NFTA_DATA_VALUE, key);
                                });
                            });
                        }
                    });
            },
        );
    }
}

/// One nfnetlink batch (a transaction: all of it applies or none).
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// (sequence number, what) of each message that expects an answer.
    acks: Vec<(u32, &'static str)>,
}

impl Batch {
    fn new(seq: u32) -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq,
            acks: Vec::new(),
        };
        b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        b
    }

    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // length, filled in by `close`
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id (big endian).
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        start
    }

    fn close(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn msg(
        &mut self,
        what: &'static str,
        ty: u16,
        flags: u16,
        family: u8,
        attrs: impl FnOnce(&mut Attrs<'_>),
    ) {
        let seq = self.seq;
        let start = self.header(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            0,
        );
        attrs(&mut Attrs(&mut self.buf));
        self.close(start);
        self.acks.push((seq, what));
    }

    fn finish(mut self) -> (Vec<u8>, Vec<(u32, &'static str)>, u32) {
        let begin_len = 20u32;
        self.buf[0..4].copy_from_slice(&begin_len.to_ne_bytes());
        let start = self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.close(start);
        (self.buf, self.acks, self.seq)
    }
}

/// A netfilter netlink socket that sends one batch at a time and waits for its answers.
struct NfSocket {
    sock: OwnedFd,
    seq: u32,
}

impl NfSocket {
    fn open() -> Result<NfSocket, NftError> {
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(NftError::Socket)?;
        bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NftError::Socket)?;
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(1, 0))
            .map_err(NftError::Socket)?;
        Ok(NfSocket {
            sock,
            seq: std::process::id().wrapping_mul(1000),
        })
    }

    /// Send one batch and wait for the answer to each of its messages; `family` and `table`
    /// name the table in errors.
    fn transact(
        &mut self,
        family: &'static str,
        table: &'static str,
        build: impl FnOnce(&mut Batch),
    ) -> Result<(), NftError> {
        let mut batch = Batch::new(self.seq);
        build(&mut batch);
        let (buf, acks, next) = batch.finish();
        self.seq = next;
        send(self.sock.as_raw_fd(), &buf, MsgFlags::empty()).map_err(|error| NftError::Io {
            what: "send",
            error,
        })?;
        let mut pending: Vec<(u32, &'static str)> = acks;
        let mut first_error = None;
        let mut rx = vec![0u8; 16384];
        while !pending.is_empty() {
            let n = match recv(self.sock.as_raw_fd(), &mut rx, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::Error::EAGAIN) => return Err(NftError::NoAnswer),
                Err(source) => {
                    return Err(NftError::Io {
                        what: "receive",
                        error: source,
                    });
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(rx[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
                let ty = u16::from_ne_bytes(rx[at + 4..at + 6].try_into().unwrap_or([0; 2]));
                let seq = u32::from_ne_bytes(rx[at + 8..at + 12].try_into().unwrap_or([0; 4]));
                if len < 16 || at + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let code =
                        i32::from_ne_bytes(rx[at + 16..at + 20].try_into().unwrap_or([0; 4]));
                    let what = pending
                        .iter()
                        .position(|(s, _)| *s == seq)
                        .map(|i| pending.remove(i).1)
                        .unwrap_or("the batch");
                    if code != 0 && first_error.is_none() {
                        first_error = Some(NftError::Refused {
                            what,
                            family,
                            table,
                            errno: nix::Error::from_raw(-code),
                        });
                    }
                    if what == "the batch" {
                        // The batch itself was refused: no other answers come.
                        pending.clear();
                    }
                }
                at += align(len);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The fence for one VIP.
pub struct KernelFence {
    nl: NfSocket,
    family: u8,
    family_name: &'static str,
    key: Vec<u8>,
}

impl std::fmt::Debug for KernelFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelFence({} {TABLE})", self.family_name)
    }
}

impl KernelFence {
    /// Replace any table left by an earlier run with a fresh one whose fence is closed, in one
    /// transaction, so the node never runs without a fence in between.
    pub fn install(vip: IpAddr) -> Result<KernelFence, NftError> {
        let nl = NfSocket::open()?;
        let (family, family_name, key) = match vip {
            IpAddr::V4(a) => (NFPROTO_ARP, "arp", a.octets().to_vec()),
            IpAddr::V6(a) => (NFPROTO_IPV6, "ip6", a.octets().to_vec()),
        };
        let mut fence = KernelFence {
            nl,
            family,
            family_name,
            key,
        };
        fence.replace()?;
        Ok(fence)
    }

    /// The table's family and name, for logs and /status.
    pub fn describe(&self) -> String {
        format!("nftables {} {TABLE}", self.family_name)
    }

    /// Replace whatever table is there with a fresh, closed one in one transaction: the
    /// kernel commits the whole batch or none of it, so there is no moment without a fence
    /// (a restarted daemon's predecessor may have left the VIP on the interface; soak seed
    /// 30, docs/lab.md "Chaos", answered ARP for it between a delete and a create).
    fn replace(&mut self) -> Result<(), NftError> {
        let (family, key) = (self.family, self.key.clone());
        let v4 = family == NFPROTO_ARP;
        self.transact(|b| {
            // Creating it first makes the delete succeed whether or not it existed.
            b.msg("the table", NFT_MSG_NEWTABLE, NLM_F_CREATE, family, |a| {
                a.str(NFTA_TABLE_NAME, TABLE);
            });
            b.msg(
                "the old table's removal",
                NFT_MSG_DELTABLE,
                0,
                family,
                |a| {
                    a.str(NFTA_TABLE_NAME, TABLE);
                },
            );
            b.msg(
                "the new table",
                NFT_MSG_NEWTABLE,
                NLM_F_CREATE,
                family,
                |a| {
                    a.str(NFTA_TABLE_NAME, TABLE);
                },
            );
            b.msg("the set", NFT_MSG_NEWSET, NLM_F_CREATE, family, |a| {
                a.str(NFTA_SET_TABLE, TABLE)
                    .str(NFTA_SET_NAME, SET)
                    .u32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT)
                    .u32(
                        NFTA_SET_KEY_TYPE,
                        if v4 { TYPE_IPV4_ADDR } else { TYPE_IPV6_ADDR },
                    )
                    .u32(NFTA_SET_KEY_LEN, key.len() as u32)
                    .u32(NFTA_SET_ID, 1);
            });
            b.msg("the chain", NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, |a| {
                a.str(NFTA_CHAIN_TABLE, TABLE)
                    .str(NFTA_CHAIN_NAME, CHAIN)
                    .nest(NFTA_CHAIN_HOOK, |h| {
                        h.u32(
                            NFTA_HOOK_HOOKNUM,
                            if v4 {
                                HOOK_ARP_OUT
                            } else {
                                HOOK_INET_LOCAL_OUT
                            },
                        )
                        .u32(NFTA_HOOK_PRIORITY, 0);
                    })
                    .u32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                    .str(NFTA_CHAIN_TYPE, "filter");
            });
            b.msg(
                "the rule",
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                family,
                |a| {
                    a.str(NFTA_RULE_TABLE, TABLE)
                        .str(NFTA_RULE_CHAIN, CHAIN)
                        .nest(NFTA_RULE_EXPRESSIONS, |e| {
                            let load = |e: &mut Attrs<'_>, base: u32, offset: u32, len: u32| {
                                e.expr("payload", |p| {
                                    p.u32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                                        .u32(NFTA_PAYLOAD_BASE, base)
                                        .u32(NFTA_PAYLOAD_OFFSET, offset)
                                        .u32(NFTA_PAYLOAD_LEN, len);
                                });
                            };
                            let equals = |e: &mut Attrs<'_>, value: &[u8]| {
                                e.expr("cmp", |c| {
                                    c.u32(NFTA_CMP_SREG, NFT_REG_1)
                                        .u32(NFTA_CMP_OP, NFT_CMP_EQ)
                                        .nest(NFTA_CMP_DATA, |d| {
                                            d.bytes(NFTA_DATA_VALUE, value);
                                        });
                                });
                            };
                            if v4 {
                                // arp saddr ip == VIP
                                load(e, NFT_PAYLOAD_NETWORK_HEADER, ARP_SPA_OFFSET, 4);
                            } else {
                                // meta l4proto icmpv6, icmpv6 type nd-neighbor-advert,
                                // target == VIP
                                e.expr("meta", |m| {
                                    m.u32(NFTA_META_KEY, NFT_META_L4PROTO)
                                        .u32(NFTA_META_DREG, NFT_REG_1);
                                });
                                equals(e, &[ICMPV6]);
                                load(e, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
                                equals(e, &[ND_NEIGHBOR_ADVERT]);
                                load(e, NFT_PAYLOAD_TRANSPORT_HEADER, NA_TARGET_OFFSET, 16);
                            }
                            equals(e, &key);
                            // ... and not in @live: drop.
                            e.expr("lookup", |l| {
                                l.str(NFTA_LOOKUP_SET, SET)
                                    .u32(NFTA_LOOKUP_SET_ID, 1)
                                    .u32(NFTA_LOOKUP_SREG, NFT_REG_1)
                                    .u32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                            });
                            e.expr("immediate", |i| {
                                i.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT).nest(
                                    NFTA_IMMEDIATE_DATA,
                                    |d| {
                                        d.nest(NFTA_DATA_VERDICT, |v| {
                                            v.u32(NFTA_VERDICT_CODE, NF_DROP);
                                        });
                                    },
                                );
                            });
                        });
                },
            );
        })
    }

    /// Let the VIP be answered for `timeout` from now (None: until closed).
    pub fn open(&mut self, timeout: Option<Duration>) -> Result<(), NftError> {
        let (family, key) = (self.family, self.key.clone());
        // Whole milliseconds, rounded down so the kernel never stops later than asked.
        let ms = timeout.map(|t| (t.as_millis() as u64).max(1));
        self.transact(|b| {
            flush(b, family);
            b.msg(
                "the set element",
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE,
                family,
                |a| {
                    a.str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
                        .str(NFTA_SET_ELEM_LIST_SET, SET)
                        .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
                            l.nest(NFTA_LIST_ELEM, |e| {
                                e.nest(NFTA_SET_ELEM_KEY, |k| {
                                    k.bytes(NFTA_DATA_VALUE, &key);
                                });
                                if let Some(ms) = ms {
                                    e.u64(NFTA_SET_ELEM_TIMEOUT, ms);
                                }
                            });
                        });
                },
            );
        })
    }

    /// Stop answering for the VIP now.
    pub fn close(&mut self) -> Result<(), NftError> {
        let family = self.family;
        self.transact(|b| flush(b, family))
    }

    /// Remove the table (at exit).
    pub fn remove(&mut self) -> Result<(), NftError> {
        let family = self.family;
        // Creating it first makes the delete succeed whether or not it existed.
        self.transact(|b| {
            b.msg("the table", NFT_MSG_NEWTABLE, NLM_F_CREATE, family, |a| {
                a.str(NFTA_TABLE_NAME, TABLE);
            });
            b.msg("the table's removal", NFT_MSG_DELTABLE, 0, family, |a| {
                a.str(NFTA_TABLE_NAME, TABLE);
            });
        })
    }

    /// Send one batch to this fence's table and wait for its answers.
    fn transact(&mut self, build: impl FnOnce(&mut Batch)) -> Result<(), NftError> {
        self.nl.transact(self.family_name, TABLE, build)
    }
}

/// Empty the set (a delete without elements flushes it).
fn flush(b: &mut Batch, family: u8) {
    b.msg("the set flush", NFT_MSG_DELSETELEM, 0, family, |a| {
        a.str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
            .str(NFTA_SET_ELEM_LIST_SET, SET);
    });
}
