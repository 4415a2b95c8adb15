//! Raw IP sockets for VRRP (protocol 112) on one interface.
//!
//! Two sockets: the receiver is not bound to an address, because a bound raw socket only sees
//! datagrams addressed to that address and would miss the multicast group; the sender is bound
//! to the node's primary address so every advert carries it as source (RFC 5798 §5.1.1.1).

use std::io::{self, IoSliceMut, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

/// A failure setting up or using the VRRP sockets.
#[derive(Debug, thiserror::Error)]
pub enum VrrpIoError {
    /// Raw sockets need CAP_NET_RAW.
    #[error(
        "cannot open a raw socket for VRRP (protocol 112) on {interface}: {error}; run as root or grant CAP_NET_RAW"
    )]
    Open { interface: String, error: io::Error },
    /// A socket option was refused.
    #[error("cannot set {option} on the VRRP socket on {interface}: {error}")]
    Option {
        option: &'static str,
        interface: String,
        error: io::Error,
    },
    /// The destination's family differs from the router's.
    #[error("cannot send to {0}: the virtual router is of the other address family")]
    FamilyMismatch(IpAddr),
    /// Sending an advert failed.
    #[error("sending an advert to {dst} failed: {error}")]
    Send { dst: IpAddr, error: io::Error },
    /// Receiving failed.
    #[error("receiving on the VRRP socket failed: {0}")]
    Receive(io::Error),
}

/// One received datagram.
pub enum Datagram {
    /// IPv4: raw sockets deliver the IP header too; the caller parses it.
    V4(Vec<u8>),
    /// IPv6: the kernel strips the header; hop limit and destination come from control
    /// messages (IPV6_RECVHOPLIMIT, IPV6_RECVPKTINFO).
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: Vec<u8>,
    },
}

/// The receive and send sockets of one interface.
pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: AsyncFd<Socket>,
    ipv6: bool,
    ifindex: u32,
}

/// A raw socket for IP protocol 112 that sees and sends only on `interface`.
fn raw_vrrp_socket(domain: Domain, interface: &str) -> Result<Socket, VrrpIoError> {
    let protocol = Protocol::from(i32::from(vrrp::packet::PROTOCOL));
    let socket =
        Socket::new(domain, Type::RAW, Some(protocol)).map_err(|error| VrrpIoError::Open {
            interface: interface.to_string(),
            error,
        })?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(opt("SO_BINDTODEVICE", interface))?;
    Ok(socket)
}

fn register(socket: Socket, interface: &str) -> Result<AsyncFd<Socket>, VrrpIoError> {
    crate::sys::async_fd(socket).map_err(|error| VrrpIoError::Open {
        interface: interface.to_string(),
        error,
    })
}

/// A receive buffer for about 4 000 adverts (≈ 0.4 s of a 10 000 packets/s flood), so a
/// scheduling hiccup under a flood of forged adverts does not drop the master's real ones.
/// SO_RCVBUFFORCE (CAP_NET_ADMIN, which the daemon has) passes net.core.rmem_max; without it
/// the kernel caps the plain request, which is still fine.
const RECEIVE_BUFFER: usize = 4 << 20;

fn receive_buffer(socket: &Socket) {
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    }
}

/// Link-local and multicast IPv6 addresses need the interface as scope.
fn scope(addr: Ipv6Addr, ifindex: u32) -> u32 {
    if addr.is_multicast() || addr.is_unicast_link_local() {
        ifindex
    } else {
        0
    }
}

fn opt(option: &'static str, interface: &str) -> impl FnOnce(io::Error) -> VrrpIoError {
    let interface = interface.to_string();
    move |error| VrrpIoError::Option {
        option,
        interface,
        error,
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
        let primary = match primary {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => return Self::open_v6(interface, ifindex, a, join_group),
        };
        let rx = raw_vrrp_socket(Domain::IPV4, interface)?;
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
        receive_buffer(&rx);

        let tx = raw_vrrp_socket(Domain::IPV4, interface)?;
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
        Ok(VrrpSocket {
            rx: register(rx, interface)?,
            tx: register(tx, interface)?,
            ipv6: false,
            ifindex,
        })
    }

    /// IPv6 (RFC 5798 §5.1.2): adverts go to ff02::12 from the interface's link-local address
    /// (or the node address in unicast mode) with hop limit 255.
    fn open_v6(
        interface: &str,
        ifindex: u32,
        primary: Ipv6Addr,
        join_group: bool,
    ) -> Result<Self, VrrpIoError> {
        let rx = raw_vrrp_socket(Domain::IPV6, interface)?;
        if join_group {
            rx.join_multicast_v6(&vrrp::packet::MULTICAST_V6, ifindex)
                .map_err(opt("IPV6_JOIN_GROUP ff02::12", interface))?;
        }
        rx.set_recv_hoplimit_v6(true)
            .map_err(opt("IPV6_RECVHOPLIMIT", interface))?;
        setsockopt(&rx, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| opt("IPV6_RECVPKTINFO", interface)(io::Error::from(e)))?;
        rx.set_nonblocking(true)
            .map_err(opt("O_NONBLOCK", interface))?;
        receive_buffer(&rx);

        let tx = raw_vrrp_socket(Domain::IPV6, interface)?;
        tx.bind(&SockAddr::from(SocketAddrV6::new(
            primary,
            0,
            0,
            scope(primary, ifindex),
        )))
        .map_err(opt(
            "bind to the primary address (still tentative? DAD runs ~1 s after it is added)",
            interface,
        ))?;
        tx.set_multicast_hops_v6(255)
            .map_err(opt("IPV6_MULTICAST_HOPS", interface))?;
        tx.set_unicast_hops_v6(255)
            .map_err(opt("IPV6_UNICAST_HOPS", interface))?;
        tx.set_multicast_loop_v6(false)
            .map_err(opt("IPV6_MULTICAST_LOOP", interface))?;
        tx.set_multicast_if_v6(ifindex)
            .map_err(opt("IPV6_MULTICAST_IF", interface))?;
        tx.set_nonblocking(true)
            .map_err(opt("O_NONBLOCK", interface))?;
        Ok(VrrpSocket {
            rx: register(rx, interface)?,
            tx: register(tx, interface)?,
            ipv6: true,
            ifindex,
        })
    }

    /// The next datagram if one is queued, without waiting: after [`VrrpSocket::recv`] the
    /// driver drains what else arrived in one go, so a flood of forged adverts costs one
    /// status update per batch rather than per packet.
    pub fn try_recv(&self) -> Option<Datagram> {
        let mut buf = vec![0u8; 2048];
        let fd = self.rx.get_ref();
        if self.ipv6 {
            let (src, dst, hop_limit, n) = recv_v6(fd.as_raw_fd(), &mut buf).ok()?;
            buf.truncate(n);
            return Some(Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload: buf,
            });
        }
        let n = (&*fd).read(&mut buf).ok()?;
        buf.truncate(n);
        Some(Datagram::V4(buf))
    }

    /// Wait for the next datagram.
    pub async fn recv(&self) -> Result<Datagram, VrrpIoError> {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut guard = self.rx.readable().await.map_err(VrrpIoError::Receive)?;
            if self.ipv6 {
                match guard.try_io(|fd| recv_v6(fd.get_ref().as_raw_fd(), &mut buf)) {
                    Ok(Ok((src, dst, hop_limit, n))) => {
                        buf.truncate(n);
                        return Ok(Datagram::V6 {
                            src,
                            dst,
                            hop_limit,
                            payload: buf,
                        });
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(Err(e)) => return Err(VrrpIoError::Receive(e)),
                    Err(_would_block) => continue,
                }
            }
            match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(Datagram::V4(buf));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(VrrpIoError::Receive(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Send one VRRP payload; the kernel adds the IP header.
    pub async fn send(&self, dst: IpAddr, payload: &[u8]) -> Result<(), VrrpIoError> {
        let addr = match dst {
            IpAddr::V4(v4) if !self.ipv6 => {
                SockAddr::from(SocketAddr::V4(SocketAddrV4::new(v4, 0)))
            }
            IpAddr::V6(v6) if self.ipv6 => {
                SockAddr::from(SocketAddrV6::new(v6, 0, 0, scope(v6, self.ifindex)))
            }
            _ => return Err(VrrpIoError::FamilyMismatch(dst)),
        };
        loop {
            let mut guard = self
                .tx
                .writable()
                .await
                .map_err(|error| VrrpIoError::Send { dst, error })?;
            match guard.try_io(|fd| fd.get_ref().send_to(payload, &addr)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(error)) => return Err(VrrpIoError::Send { dst, error }),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Receive one IPv6 datagram with its source, destination and hop limit.
fn recv_v6(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(Ipv6Addr, Ipv6Addr, u8, usize)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let src = msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
    let mut dst = Ipv6Addr::UNSPECIFIED;
    // A missing hop limit must not pass the TTL check (RFC 5798 §7.1): default to 0.
    let mut hop_limit = 0u8;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Ipv6Addr::from(info.ipi6_addr.s6_addr)
            }
            ControlMessageOwned::Ipv6HopLimit(h) => hop_limit = u8::try_from(h).unwrap_or(0),
            _ => {}
        }
    }
    Ok((src, dst, hop_limit, msg.bytes))
}
