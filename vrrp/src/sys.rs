//! The vrrp crate's only unsafe code: the two socket calls that neither
//! socket2 nor nix 0.29 offer safely — `recvmsg` with control messages
//! nix cannot parse (IPV6_HOPLIMIT), and `sendto` an AF_PACKET address.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// One control message: level, type and its data bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cmsg {
    pub level: i32,
    pub kind: i32,
    pub data: Vec<u8>,
}

/// What one `recvmsg` returned besides the payload.
#[derive(Debug)]
pub(crate) struct Received {
    pub len: usize,
    /// The sender as the socket sees it (for raw IPv6 the IP source).
    pub src: Option<IpAddr>,
    pub cmsgs: Vec<Cmsg>,
}

/// `recvmsg(2)` into `buf`, returning the sender and every control message.
pub(crate) fn recvmsg(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 32];
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points to a live buffer of the stated
    // length for the duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cmsgs = Vec::new();
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the
    // CMSG_* macros walk only within it, and each data slice is bounded by
    // its header's cmsg_len.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data_len = header.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let data = std::slice::from_raw_parts(libc::CMSG_DATA(cmsg), data_len);
            cmsgs.push(Cmsg {
                level: header.cmsg_level,
                kind: header.cmsg_type,
                data: data.to_vec(),
            });
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let src = match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    };
    Ok(Received {
        len: n as usize,
        src,
        cmsgs,
    })
}

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

/// Registers a socket with the tokio reactor.
pub(crate) fn async_fd(
    socket: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: the Socket owns its descriptor, and the AsyncFd owns the
    // Socket until it is dropped: the descriptor is neither closed nor
    // replaced while registered.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(socket) }?)
}
