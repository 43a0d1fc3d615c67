//! Socket setup for UDP listeners and for the per-session sockets towards
//! the servers.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Kernel receive queue of a listener: room for a burst of datagrams while
/// the listener task is busy (the kernel caps it at net.core.rmem_max).
const LISTENER_RECEIVE_BUFFER: usize = 4 << 20;

/// Binds a UDP listener: free bind so a VRRP backup listens on a virtual
/// address before owning it, v6-only so `0.0.0.0:p` and `[::]:p` coexist,
/// and packet info on wildcard addresses so replies leave from the address
/// each client sent to. No SO_REUSEADDR: for UDP it would let a second
/// process bind the same port and take part of the traffic.
pub fn bind_listener(address: SocketAddr) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_ipv6(true)?;
    } else {
        socket.set_freebind(true)?;
    }
    if address.ip().is_unspecified() {
        use nix::sys::socket::{setsockopt, sockopt};
        if address.is_ipv6() {
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        } else {
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
        }
    }
    // Best effort: a smaller queue only means drops under bursts.
    let _ = socket.set_recv_buffer_size(LISTENER_RECEIVE_BUFFER);
    socket.bind(&address.into())?;
    crate::sys::register_readable(socket.into())
}

/// A socket connected to `server`: the kernel picks the source address and
/// port, delivers only that server's datagrams to it, and reports an ICMP
/// port unreachable as a refused receive or send.
pub fn connect_session(server: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    socket.connect(&server.into())?;
    Ok(socket)
}

/// Errors that mean the process or the host ran out of something, rather
/// than that this server is unreachable.
pub fn is_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
