//! Raw IP sockets for VRRP (protocol 112) on one interface.
//!
//! Two sockets: the receiver is not bound to an address, because a bound raw socket only sees
//! datagrams addressed to that address and would miss the multicast group; the sender is bound
//! to the node's primary address so every advert carries it as source (RFC 5798 §5.1.1.1).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

/// A failure setting up or using the VRRP sockets.
#[derive(Debug, thiserror::Error)]
pub enum VrrpIoError {
    /// Raw sockets need CAP_NET_RAW.
    #[error(
        "cannot open a raw socket for VRRP (protocol 112) on {interface}: {source}; run as root or grant CAP_NET_RAW"
    )]
    Open {
        interface: String,
        source: io::Error,
    },
    /// A socket option was refused.
    #[error("cannot set {option} on the VRRP socket on {interface}: {source}")]
    Option {
        option: &'static str,
        interface: String,
        source: io::Error,
    },
    /// The daemon's I/O path handles IPv4 only so far.
    #[error(
        "the VRRP daemon handles IPv4 virtual routers only; {0} is IPv6 (the codec supports it, the socket layer does not yet)"
    )]
    Ipv6Unsupported(IpAddr),
    /// Sending an advert failed.
    #[error("sending an advert to {dst} failed: {source}")]
    Send { dst: IpAddr, source: io::Error },
    /// Receiving failed.
    #[error("receiving on the VRRP socket failed: {0}")]
    Receive(#[source] io::Error),
}

/// One received datagram, IP header included (raw IPv4 sockets deliver it).
pub struct Datagram {
    pub bytes: Vec<u8>,
}

/// The receive and send sockets of one interface.
pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: AsyncFd<Socket>,
}

fn opt(option: &'static str, interface: &str) -> impl FnOnce(io::Error) -> VrrpIoError {
    let interface = interface.to_string();
    move |source| VrrpIoError::Option {
        option,
        interface,
        source,
    }
}

impl VrrpSocket {
    /// Open sockets on `interface` (index `ifindex`), sending from `primary`.
    pub fn open(
        interface: &str,
        ifindex: u32,
        primary: IpAddr,
        join_group: bool,
    ) -> Result<Self, VrrpIoError> {
        let IpAddr::V4(primary) = primary else {
            return Err(VrrpIoError::Ipv6Unsupported(primary));
        };
        let open = || {
            Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(i32::from(vrrp::packet::PROTOCOL))),
            )
            .map_err(|source| VrrpIoError::Open {
                interface: interface.to_string(),
                source,
            })
        };
        let rx = open()?;
        rx.bind_device(Some(interface.as_bytes()))
            .map_err(opt("SO_BINDTODEVICE", interface))?;
        if join_group {
            // RFC 5798 §5.1.1.2: adverts go to 224.0.0.18; we must be a member on this link.
            rx.join_multicast_v4_n(
                &vrrp::packet::MULTICAST_V4,
                &InterfaceIndexOrAddress::Index(ifindex),
            )
            .map_err(opt("IP_ADD_MEMBERSHIP 224.0.0.18", interface))?;
        }
        rx.set_nonblocking(true)
            .map_err(opt("O_NONBLOCK", interface))?;

        let tx = open()?;
        tx.bind_device(Some(interface.as_bytes()))
            .map_err(opt("SO_BINDTODEVICE", interface))?;
        tx.bind(&SockAddr::from(SocketAddrV4::new(primary, 0)))
            .map_err(opt("bind to the primary address", interface))?;
        // RFC 5798 §5.1.1.3: TTL 255, so receivers can tell the advert never crossed a router.
        tx.set_multicast_ttl_v4(255)
            .map_err(opt("IP_MULTICAST_TTL", interface))?;
        tx.set_ttl_v4(255).map_err(opt("IP_TTL", interface))?;
        tx.set_multicast_loop_v4(false)
            .map_err(opt("IP_MULTICAST_LOOP", interface))?;
        tx.set_multicast_if_v4(&primary)
            .map_err(opt("IP_MULTICAST_IF", interface))?;
        tx.set_nonblocking(true)
            .map_err(opt("O_NONBLOCK", interface))?;
        let wrap = |s: Socket| {
            crate::sys::async_fd(s).map_err(|source| VrrpIoError::Open {
                interface: interface.to_string(),
                source,
            })
        };
        Ok(VrrpSocket {
            rx: wrap(rx)?,
            tx: wrap(tx)?,
        })
    }

    /// Wait for the next datagram.
    pub async fn recv(&self) -> Result<Datagram, VrrpIoError> {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut guard = self.rx.readable().await.map_err(VrrpIoError::Receive)?;
            match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(Datagram { bytes: buf });
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(VrrpIoError::Receive(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Send one VRRP payload; the kernel adds the IP header.
    pub async fn send(&self, dst: IpAddr, payload: &[u8]) -> Result<(), VrrpIoError> {
        let IpAddr::V4(v4) = dst else {
            return Err(VrrpIoError::Ipv6Unsupported(dst));
        };
        let addr = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(v4, 0)));
        loop {
            let mut guard = self
                .tx
                .writable()
                .await
                .map_err(|source| VrrpIoError::Send { dst, source })?;
            match guard.try_io(|fd| fd.get_ref().send_to(payload, &addr)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(source)) => return Err(VrrpIoError::Send { dst, source }),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The unspecified IPv4 address, for callers that need a placeholder.
pub const ANY_V4: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
