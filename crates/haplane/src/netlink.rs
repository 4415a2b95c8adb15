//! Interface addresses and link state through rtnetlink (the daemon never shells out to `ip`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::{AddressMessageBuilder, Handle};

/// A failure talking to the kernel about links and addresses.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Open(std::io::Error),
    /// The interface does not exist in this network namespace.
    #[error("interface {0:?} does not exist on this host")]
    NoSuchInterface(String),
    /// The kernel refused a request.
    #[error("netlink request for {what} failed: {error}")]
    Request {
        what: String,
        error: rtnetlink::Error,
    },
}

/// What the daemon needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Administratively up and with carrier.
    pub up: bool,
}

/// A handle on the kernel's routing netlink.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Open a connection; its driver runs on the current tokio runtime.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        crate::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Look up an interface by name.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Err(NetlinkError::NoSuchInterface(name.to_string())),
            // The kernel answers ENODEV for an unknown name.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                return Err(NetlinkError::NoSuchInterface(name.to_string()));
            }
            Err(source) => {
                return Err(NetlinkError::Request {
                    what: format!("link {name}"),
                    error: source,
                });
            }
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(bytes);
                Some(mac)
            }
            _ => None,
        });
        let flags = link.header.flags;
        Ok(LinkInfo {
            index: link.header.index,
            name: name.to_string(),
            mac,
            up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
        })
    }

    /// Every address on the host (to find our node entry).
    pub async fn local_addresses(&self) -> Result<Vec<IpAddr>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|error| NetlinkError::Request {
                what: "the address list".into(),
                error,
            })?;
        Ok(messages.iter().filter_map(address_of).collect())
    }

    /// Addresses on one interface.
    pub async fn addresses_on(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|error| NetlinkError::Request {
                what: format!("addresses of interface {index}"),
                error,
            })?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| address_of(m).map(|a| (a, m.header.prefix_len)))
            .collect())
    }

    /// Add `addr/prefix` to the interface; adding an address that is already there succeeds.
    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, addr, prefix)
            .replace()
            .execute()
            .await
            .map_err(|error| NetlinkError::Request {
                what: format!("adding {addr}/{prefix}"),
                error,
            })
    }

    /// Add or refresh `addr/prefix` with a valid lifetime of `secs`: the kernel removes the
    /// address by itself when the lifetime runs out without a refresh, even if this process
    /// is frozen or killed. The fenced VIP uses it so a stalled holder cannot keep the VIP past
    /// its lease deadline.
    pub async fn add_address_for(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        secs: u32,
    ) -> Result<(), NetlinkError> {
        let mut request = self.handle.address().add(index, addr, prefix).replace();
        no_dad(request.message_mut(), addr);
        let mut lifetime = CacheInfo::default();
        lifetime.ifa_preferred = secs;
        lifetime.ifa_valid = secs;
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(lifetime));
        request
            .execute()
            .await
            .map_err(|error| NetlinkError::Request {
                what: format!("adding {addr}/{prefix} for {secs}s"),
                error,
            })
    }

    /// Remove `addr/prefix` from the interface; removing an absent address succeeds.
    pub async fn remove_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let message = match addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, prefix)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, prefix)
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENOENT =>
            {
                Ok(())
            }
            Err(source) => Err(NetlinkError::Request {
                what: format!("removing {addr}/{prefix}"),
                error: source,
            }),
        }
    }
}

/// A moving IPv6 VIP must be usable at once: skip duplicate address detection (as keepalived
/// does), which would otherwise hold it tentative for about a second.
fn no_dad(message: &mut AddressMessage, addr: IpAddr) {
    if addr.is_ipv6() {
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut found = None;
    for attr in &message.attributes {
        match attr {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => found = Some(*a),
            _ => {}
        }
    }
    found
}
