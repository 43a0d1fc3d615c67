//! The vrrp crate's only unsafe code: `sendto(2)` an AF_PACKET address,
//! which neither socket2 nor nix can build safely (nix's `LinkAddr` has
//! no safe constructor), and registering a socket with tokio.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sends a complete Ethernet frame on interface `ifindex` through an
/// AF_PACKET SOCK_RAW socket.
pub(crate) fn send_frame(fd: BorrowedFd<'_>, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `sll` are live for the call and their lengths are
    // passed alongside.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers a socket with the tokio reactor (`AsyncFd::new` is deprecated
/// as unsound: the registration relies on the descriptor staying open).
pub(crate) fn async_fd(
    socket: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: the Socket owns its descriptor, and the AsyncFd owns the
    // Socket until it is dropped: the descriptor is neither closed nor
    // replaced while registered.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(socket) }?)
}
