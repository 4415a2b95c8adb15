//! The one place with `unsafe` in this crate: registering raw sockets with tokio, and the
//! SIGPIPE disposition of the commands that print. (The AF_PACKET address for gratuitous ARP
//! is built in crate sockaddr-ll, shared with the lab.)

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

/// Register an owned socket with the tokio reactor.
pub fn async_fd(
    socket: socket2::Socket,
) -> std::io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: `register` requires that the descriptor stays open and is not closed by anyone
    // else while registered. `socket2::Socket` owns its descriptor and closes it only on drop,
    // which happens after AsyncFd deregisters it, so the requirement holds.
    unsafe { tokio::io::unix::AsyncFd::register(socket) }.map_err(Into::into)
}
