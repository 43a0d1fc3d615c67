//! The lb crate's only unsafe code: batched datagram system calls, and the
//! two calls that let a UDP session socket be used again.
//!
//! `recvmmsg(2)` and `sendmmsg(2)` move up to [`BATCH`] datagrams per call,
//! with the packet-info control messages that tell which local address a
//! wildcard listener was reached on and make replies leave from it. nix
//! wraps both, but keeps message headers between calls without restoring
//! the lengths the kernel shortens, and shares one control message across a
//! batch only by address; here the headers live on the stack for one call
//! and are rebuilt every time, so no state outlives a call and nothing is
//! allocated.
//!
//! [`disconnect`] (`connect(2)` to `AF_UNSPEC`) and [`wait_grace_period`]
//! (`membarrier(2)`) have no safe wrapper in nix or socket2, nor has
//! mimalloc's `mi_collect` ([`release_freed_memory`]) in the mimalloc crate
//! without its `extended` feature; `prctl(2)`'s THP switch
//! ([`disable_transparent_huge_pages`]) has none in nix.
#![allow(unsafe_code)]

pub mod tun;

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use socket2::SockAddr;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Room for one `in6_pktinfo` (the larger of the two) control message,
/// aligned for `cmsghdr`.
type ControlBuffer = [u64; 8];

/// One datagram of a received batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    /// The sender; `None` if the kernel gave no usable address.
    pub peer: Option<SocketAddr>,
    /// The address the datagram was sent to, when the socket asked for
    /// packet info (wildcard listeners).
    pub local: Option<IpAddr>,
    /// Longer than its slot: the tail was cut off.
    pub truncated: bool,
}

/// Receives up to `BATCH` datagrams without blocking into consecutive
/// `slot`-byte chunks of `buffer`; fills `received` and returns how many
/// (at most as many as both have room for). `WouldBlock` when none is queued.
/// `packet_info`: the socket asked for IP_PKTINFO / IPV6_PKTINFO, so room
/// for it is given (a listener bound to one address needs none).
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    buffer: &mut [u8],
    slot: usize,
    received: &mut [Received],
    packet_info: bool,
) -> io::Result<usize> {
    let count = (buffer.len() / slot.max(1)).min(received.len()).min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // Only the headers are initialised: the kernel writes the names and
    // control messages, and only what it reports as written is read.
    let mut names = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; BATCH];
    let mut controls = [const { MaybeUninit::<ControlBuffer>::uninit() }; BATCH];
    let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
    for (i, chunk) in buffer.chunks_exact_mut(slot).take(count).enumerate() {
        iovecs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        let (control, control_len) = if packet_info {
            (controls[i].as_mut_ptr().cast(), size_of::<ControlBuffer>())
        } else {
            (ptr::null_mut(), 0)
        };
        headers[i].write(libc::mmsghdr {
            msg_hdr: libc::msghdr {
                msg_name: names[i].as_mut_ptr().cast(),
                msg_namelen: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                msg_iov: ptr::addr_of_mut!(iovecs[i]),
                msg_iovlen: 1,
                msg_control: control,
                msg_controllen: control_len as _,
                msg_flags: 0,
            },
            msg_len: 0,
        });
    }
    // SAFETY: the first `count` headers are initialised above and point at
    // a name, an iovec over a distinct chunk of `buffer` and a control
    // buffer (or none), all alive and unaliased for the duration of the
    // call, with their true sizes; `count` <= BATCH.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr().cast(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (i, out) in received.iter_mut().enumerate().take(n) {
        // SAFETY: initialised before the call; the kernel filled in the
        // first `n` of them.
        let header = unsafe { headers[i].assume_init_ref() };
        let message = &header.msg_hdr;
        *out = Received {
            len: (header.msg_len as usize).min(slot),
            // SAFETY: the kernel wrote `msg_namelen` bytes of the name.
            peer: unsafe { socket_addr(names[i].as_ptr(), message.msg_namelen) },
            local: packet_info_of(message),
            truncated: message.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(n)
}

/// A datagram to send: to `to` (`None` on a connected socket), from
/// `from` when given (a wildcard listener answering from the address the
/// client used).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub data: &'a [u8],
    pub to: Option<SocketAddr>,
    pub from: Option<IpAddr>,
}

impl<'a> Outgoing<'a> {
    /// A datagram for a connected socket: its peer is the destination and
    /// the kernel picks the source.
    pub const fn connected(data: &'a [u8]) -> Self {
        Outgoing {
            data,
            to: None,
            from: None,
        }
    }
}

/// Sends up to `BATCH` datagrams without blocking; returns how many left.
/// An error means the first one could not (`WouldBlock` when the socket
/// buffer is full).
pub fn send_batch(fd: BorrowedFd<'_>, datagrams: &[Outgoing<'_>]) -> io::Result<usize> {
    let count = datagrams.len().min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    let mut names: [Option<SockAddr>; BATCH] = [const { None }; BATCH];
    let mut controls = [ControlBuffer::default(); BATCH];
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: mmsghdr is a plain C struct; all-zero bytes are a valid value.
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, datagram) in datagrams.iter().take(count).enumerate() {
        // The kernel only reads through iov_base on send.
        iovecs[i] = libc::iovec {
            iov_base: datagram.data.as_ptr().cast_mut().cast(),
            iov_len: datagram.data.len(),
        };
        let header = &mut headers[i].msg_hdr;
        if let Some(to) = datagram.to {
            let name = names[i].insert(SockAddr::from(to));
            header.msg_name = name.as_ptr().cast_mut().cast();
            header.msg_namelen = name.len();
        }
        header.msg_iov = ptr::addr_of_mut!(iovecs[i]);
        header.msg_iovlen = 1;
        if let Some(from) = datagram.from {
            let len = write_packet_info(&mut controls[i], from);
            header.msg_control = controls[i].as_mut_ptr().cast();
            header.msg_controllen = len as _;
        }
    }
    // SAFETY: every header points at live memory of the stated sizes (its
    // destination, one iovec over a caller's datagram, its control buffer)
    // for the duration of the call; `count` <= BATCH.
    let n = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Dissolves the association of a connected UDP socket (`connect(2)` to an
/// `AF_UNSPEC` address): the kernel takes it out of its lookup tables and
/// releases the port it picked, so no datagram can reach it any more until
/// the next `connect`, which picks a fresh port. The socket stays open.
pub fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr is a plain C struct; all-zero bytes are valid.
    let mut unspecified: libc::sockaddr = unsafe { zeroed() };
    unspecified.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: a live descriptor and an address of the stated size.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &unspecified,
            size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `MEMBARRIER_CMD_GLOBAL` of linux/membarrier.h (the libc crate does not
/// export it on every target).
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;

/// Whether [`wait_grace_period`] is available (membarrier(2) with
/// `MEMBARRIER_CMD_GLOBAL`: not under nohz_full, nor where a seccomp
/// filter forbids it).
pub fn grace_periods_available() -> bool {
    // SAFETY: the query command reads nothing from the caller.
    let commands = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
    commands > 0 && commands & libc::c_long::from(MEMBARRIER_CMD_GLOBAL) != 0
}

/// Blocks until every CPU has passed through a quiescent state: an RCU
/// grace period, which `MEMBARRIER_CMD_GLOBAL` waits for. Whatever the
/// kernel was doing under `rcu_read_lock` or in a softirq when this was
/// called (such as delivering a datagram to a socket it had just looked
/// up) has finished when it returns.
pub fn wait_grace_period() -> io::Result<()> {
    // SAFETY: the global command takes no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Registers `inner` with the tokio reactor for readability. Only for types
/// that own their descriptor (a socket, an epoll set): this is what makes
/// the registration sound.
pub fn register_readable<T: std::os::fd::AsRawFd>(
    inner: T,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: the callers pass types that own their descriptor (std's
    // UdpSocket, an epoll set over an OwnedFd) and return the same one from
    // every as_raw_fd; the AsyncFd owns them until it is dropped, so the
    // descriptor is neither closed nor replaced while registered.
    Ok(unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }?)
}

/// # Safety
/// `storage` points at a `sockaddr_storage` of which the kernel wrote the
/// first `len` bytes.
unsafe fn socket_addr(
    storage: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    if len < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the family is within the written bytes (checked above).
    let family = unsafe { (*storage).ss_family };
    match libc::c_int::from(family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a whole sockaddr_in (family AF_INET,
            // length checked) into storage, which is larger and aligned.
            let sin = unsafe { &*storage.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &*storage.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The destination address from an IP_PKTINFO / IPV6_PKTINFO control
/// message of a received header.
fn packet_info_of(header: &libc::msghdr) -> Option<IpAddr> {
    if header.msg_controllen == 0 || header.msg_flags & libc::MSG_CTRUNC != 0 {
        return None;
    }
    // SAFETY: msg_control/msg_controllen describe the control bytes the
    // kernel wrote for this header; CMSG_FIRSTHDR/CMSG_NXTHDR read only
    // headers that lie within them.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR is a valid header.
        let c = unsafe { &*cmsg };
        // SAFETY: CMSG_DATA of a valid header points inside the buffer; the
        // payload is read unaligned with the size the kernel wrote for its type.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        match (c.cmsg_level, c.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                // SAFETY: see above; an IP_PKTINFO payload is an in_pktinfo.
                let info = unsafe { ptr::read_unaligned(data.cast::<libc::in_pktinfo>()) };
                return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                // SAFETY: see above; an IPV6_PKTINFO payload is an in6_pktinfo.
                let info = unsafe { ptr::read_unaligned(data.cast::<libc::in6_pktinfo>()) };
                return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
        // SAFETY: header and cmsg are valid as established above.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    None
}

/// Writes an IP_PKTINFO / IPV6_PKTINFO message choosing source address
/// `from` into `control`; returns its length.
fn write_packet_info(control: &mut ControlBuffer, from: IpAddr) -> usize {
    let (level, kind, payload_len) = match from {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(payload_len as u32) as usize,
            libc::CMSG_LEN(payload_len as u32) as usize,
        )
    };
    debug_assert!(space <= size_of::<ControlBuffer>());
    // SAFETY: a header built over our own buffer of `space` bytes, which
    // CMSG_FIRSTHDR then finds at its start; it holds a cmsghdr and the
    // payload (checked just above), and `control` is u64-aligned.
    unsafe {
        let mut header: libc::msghdr = zeroed();
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = len as _;
        let data = libc::CMSG_DATA(cmsg);
        match from {
            IpAddr::V4(ip) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                ptr::write_unaligned(data.cast(), info);
            }
            IpAddr::V6(ip) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                ptr::write_unaligned(data.cast(), info);
            }
        }
    }
    space
}

// The allocator's crate, linked even where this crate's user did not make
// it the global allocator, so `mi_collect` always resolves.
use mimalloc as _;

extern "C" {
    fn mi_collect(force: bool);
}

/// Has the allocator take back, on the calling thread, the blocks other
/// threads freed of what this thread allocated, and return the pages left
/// empty to the system. mimalloc does this by itself only when the thread
/// allocates again; the thread that applies reloads then sleeps, holding
/// what a large config it replaced had used.
pub fn release_freed_memory() {
    // SAFETY: takes no pointer and only walks the calling thread's heap
    // (and abandoned ones, with `force`), which mimalloc synchronises.
    unsafe { mi_collect(true) }
}

/// Keeps the kernel from backing this process's memory with transparent
/// huge pages. mimalloc asks for them (`MADV_HUGEPAGE`) on its arenas, so
/// the first touch of each 2 MiB zeroes all of it inside one page fault,
/// and with the common `defrag = madvise` setting may compact memory first:
/// the single worker stalls for milliseconds while clients wait, exactly
/// when a burst of new connections makes the heap grow. Small pages spread
/// that cost over the connections that need it. The flag is the process's
/// (inherited by children), read at each fault, so setting it after start
/// covers memory mapped earlier too.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and no pointer; it
    // only sets a flag on this process's memory descriptor.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether transparent huge pages are disabled for this process.
#[cfg(test)]
fn transparent_huge_pages_disabled() -> io::Result<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes no pointer; it returns the flag.
    let r = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn wait_readable(socket: &UdpSocket) {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut probe = [0u8; 1];
        socket.peek(&mut probe).ok();
    }

    #[test]
    fn huge_pages_are_off_for_the_process_once_disabled() {
        disable_transparent_huge_pages().unwrap();
        assert!(transparent_huge_pages_disabled().unwrap());
    }

    #[test]
    fn a_batch_round_trips_with_packet_info_on_a_wildcard_socket() {
        for (wildcard, loopback) in [("0.0.0.0:0", "127.0.0.1"), ("[::]:0", "::1")] {
            let server = UdpSocket::bind(wildcard).unwrap();
            set_packet_info(&server, loopback != "::1");
            let port = server.local_addr().unwrap().port();
            let target: SocketAddr = SocketAddr::new(loopback.parse().unwrap(), port);
            let client = UdpSocket::bind(SocketAddr::new(loopback.parse().unwrap(), 0)).unwrap();
            client.connect(target).unwrap();
            let datagrams: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
            let outgoing: Vec<Outgoing<'_>> =
                datagrams.iter().map(|d| Outgoing::connected(d)).collect();
            assert_eq!(send_batch(client.as_fd(), &outgoing).unwrap(), 5);

            wait_readable(&server);
            let mut buffer = vec![0u8; 4 * 1024 * BATCH];
            let mut received = [Received::default(); BATCH];
            let n = recv_batch(server.as_fd(), &mut buffer, 4096, &mut received, true).unwrap();
            assert_eq!(n, 5, "{wildcard}");
            for (i, r) in received.iter().take(n).enumerate() {
                assert_eq!(r.peer, Some(client.local_addr().unwrap()));
                assert_eq!(r.local, Some(target.ip()), "{wildcard}: packet info");
                assert_eq!(&buffer[i * 4096..i * 4096 + r.len], datagrams[i].as_slice());
                assert!(!r.truncated);
            }

            // Replies from the address the client used.
            let replies: Vec<Outgoing<'_>> = [&b"one"[..], &b"two"[..]]
                .into_iter()
                .map(|data| Outgoing {
                    data,
                    to: received[0].peer,
                    from: received[0].local,
                })
                .collect();
            assert_eq!(send_batch(server.as_fd(), &replies).unwrap(), 2);
            let mut reply = [0u8; 16];
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            assert_eq!(client.recv(&mut reply).unwrap(), 3);
            assert_eq!(&reply[..3], b"one");
        }
    }

    #[test]
    fn an_empty_socket_would_block() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buffer = vec![0u8; 2048];
        let mut received = [Received::default(); BATCH];
        let error =
            recv_batch(socket.as_fd(), &mut buffer, 2048, &mut received, false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_batch_without_packet_info_names_the_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, client) in clients.iter().enumerate() {
            client
                .send_to(&[i as u8; 7], server.local_addr().unwrap())
                .unwrap();
        }
        wait_readable(&server);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buffer = vec![0u8; 64 * BATCH];
        let mut received = [Received::default(); BATCH];
        let n = recv_batch(server.as_fd(), &mut buffer, 64, &mut received, false).unwrap();
        assert_eq!(n, 3);
        for (i, r) in received.iter().take(n).enumerate() {
            assert_eq!(r.peer, Some(clients[i].local_addr().unwrap()));
            assert_eq!(r.local, None);
            assert_eq!(&buffer[i * 64..i * 64 + r.len], &[i as u8; 7]);
        }
    }

    #[test]
    fn a_disconnected_socket_gives_up_its_port_and_connects_again() {
        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            let server = UdpSocket::bind(loopback).unwrap();
            let socket = UdpSocket::bind(loopback).unwrap();
            socket.connect(server.local_addr().unwrap()).unwrap();
            let old = socket.local_addr().unwrap();
            disconnect(socket.as_fd()).unwrap();
            assert_eq!(
                socket.local_addr().unwrap().port(),
                0,
                "{loopback}: port released"
            );
            assert!(socket.peer_addr().is_err(), "{loopback}: no peer any more");
            // Nothing reaches the old port now.
            server.send_to(b"late", old).unwrap();
            socket.set_nonblocking(true).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut buffer = [0u8; 16];
            assert_eq!(
                socket.recv(&mut buffer).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            // Connected again: a fresh port, a working exchange.
            socket.connect(server.local_addr().unwrap()).unwrap();
            assert_ne!(socket.local_addr().unwrap().port(), 0);
            socket.send(b"again").unwrap();
            wait_readable(&server);
            let (n, from) = server.recv_from(&mut buffer).unwrap();
            assert_eq!(
                (&buffer[..n], from),
                (&b"again"[..], socket.local_addr().unwrap())
            );
        }
    }

    #[test]
    fn a_grace_period_passes() {
        if grace_periods_available() {
            wait_grace_period().unwrap();
        }
    }

    fn set_packet_info(socket: &UdpSocket, v4: bool) {
        use nix::sys::socket::{setsockopt, sockopt};
        if v4 {
            setsockopt(socket, sockopt::Ipv4PacketInfo, &true).unwrap();
        } else {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true).unwrap();
        }
    }
}
