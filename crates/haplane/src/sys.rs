//! The one place with `unsafe`: building a link-layer socket address for AF_PACKET sends,
//! and the SIGPIPE disposition of the commands that print.
//!
//! socket2 has no safe constructor for `sockaddr_ll`, and gratuitous ARP must leave on a chosen
//! interface with a chosen Ethernet header, so the address is built by hand here.

use socket2::SockAddr;

/// For the commands that print for a pipeline (`haplane status | head`): when the reader goes
/// away, end quietly as other Unix tools do, instead of panicking in `println!` on EPIPE (Rust
/// starts every program with SIGPIPE ignored). Never for the daemon: its balancer splices
/// into sockets, where SIGPIPE's default action would kill it.
pub fn end_quietly_when_stdout_closes() {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context; it
    // only changes the disposition, which is process-wide and is set before this command
    // starts any thread that writes to a pipe.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}

/// A `sockaddr_ll` for sending a frame out of interface `ifindex` to `dst_mac`.
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

/// Register an owned socket with the tokio reactor.
pub fn async_fd(
    socket: socket2::Socket,
) -> std::io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: `register` requires that the descriptor stays open and is not closed by anyone
    // else while registered. `socket2::Socket` owns its descriptor and closes it only on drop,
    // which happens after AsyncFd deregisters it, so the requirement holds.
    unsafe { tokio::io::unix::AsyncFd::register(socket) }.map_err(Into::into)
}
