//! The advertisement socket of one interface and family: a raw IP socket
//! of protocol 112 joined to the VRRP group on that interface only.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    self as nixsock, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn,
    SockaddrIn6, SockaddrStorage,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::packet::{Family, MULTICAST_V4, MULTICAST_V6};
use crate::sys;

/// IANA protocol number of VRRP.
pub(super) const IPPROTO_VRRP: i32 = 112;
/// TTL / hop limit of every advert, and the only one accepted (RFC 9568 §5.1.1.3).
pub(super) const TTL: u8 = 255;

/// A received datagram with what the checks need from its IP header.
#[derive(Debug, Clone)]
pub(super) struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4 header) or hop limit (IPV6_HOPLIMIT); `None` if the
    /// kernel did not say, which is treated as wrong.
    pub ttl: Option<u8>,
    /// Interface it arrived on (IP_PKTINFO / IPV6_PKTINFO).
    pub ifindex: Option<u32>,
    /// The VRRP message (IP header removed).
    pub payload: Vec<u8>,
}

pub(super) struct AdvertSocket {
    fd: AsyncFd<Socket>,
    family: Family,
    ifindex: u32,
}

impl AdvertSocket {
    /// Opens, binds to `ifname` and joins the group. Needs CAP_NET_RAW.
    pub(super) fn open(ifname: &str, ifindex: u32, family: Family) -> io::Result<AdvertSocket> {
        let protocol = Some(Protocol::from(IPPROTO_VRRP));
        let socket = match family {
            Family::V4 => {
                let s = Socket::new(Domain::IPV4, Type::RAW, protocol)?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                s.set_multicast_loop_v4(false)?;
                s.set_multicast_ttl_v4(u32::from(TTL))?;
                s.set_ttl(u32::from(TTL))?;
                nixsock::setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?;
                s
            }
            Family::V6 => {
                let s = Socket::new(Domain::IPV6, Type::RAW, protocol)?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.join_multicast_v6(&MULTICAST_V6, ifindex)?;
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_loop_v6(false)?;
                s.set_multicast_hops_v6(u32::from(TTL))?;
                s.set_unicast_hops_v6(u32::from(TTL))?;
                s.set_recv_hoplimit_v6(true)?;
                nixsock::setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)?;
                s
            }
        };
        socket.set_nonblocking(true)?;
        Ok(AdvertSocket {
            fd: sys::async_fd(socket)?,
            family,
            ifindex,
        })
    }

    /// A socket that only sends, bound to `ifname` (a `virtual_mac`
    /// macvlan): adverts sent on it leave with the device's MAC, the
    /// virtual router MAC, as Ethernet source (RFC 9568 §7.3), while their
    /// IP source stays the parent's primary address. It joins no group and
    /// is never read. IPv6 needs freebind: the kernel accepts a link-local
    /// source only if it is on the sending device, and the primary
    /// link-local is the parent's.
    pub(super) fn open_sender(
        ifname: &str,
        ifindex: u32,
        family: Family,
    ) -> io::Result<AdvertSocket> {
        let protocol = Some(Protocol::from(IPPROTO_VRRP));
        let socket = match family {
            Family::V4 => {
                let s = Socket::new(Domain::IPV4, Type::RAW, protocol)?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.set_multicast_ttl_v4(u32::from(TTL))?;
                s.set_ttl(u32::from(TTL))?;
                s
            }
            Family::V6 => {
                let s = Socket::new(Domain::IPV6, Type::RAW, protocol)?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_hops_v6(u32::from(TTL))?;
                s.set_unicast_hops_v6(u32::from(TTL))?;
                s.set_freebind_ipv6(true)?;
                s
            }
        };
        // Protocol 112 arriving on the device (unicast adverts to it)
        // would queue here unread: keep that queue at its minimum.
        socket.set_recv_buffer_size(0)?;
        socket.set_nonblocking(true)?;
        Ok(AdvertSocket {
            fd: sys::async_fd(socket)?,
            family,
            ifindex,
        })
    }

    /// The next datagram; malformed IP headers come back as errors of
    /// kind InvalidData so the caller can count them.
    pub(super) async fn recv(&self) -> io::Result<Datagram> {
        let mut buf = vec![0u8; 2048];
        let got = loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| receive(inner.get_ref(), &mut buf)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        buf.truncate(got.len);
        match self.family {
            Family::V4 => parse_v4(buf, &got.cmsgs),
            Family::V6 => parse_v6(buf, got.src, &got.cmsgs),
        }
    }

    /// Sends `bytes` from `src` to `dst` out of this interface.
    pub(super) fn send(&self, src: IpAddr, dst: IpAddr, bytes: &[u8]) -> io::Result<()> {
        let iov = [IoSlice::new(bytes)];
        let fd = self.fd.get_ref();
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as i32,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(src).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                nixsock::sendmsg(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&to))?;
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, self.ifindex));
                let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                nixsock::sendmsg(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&to))?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("source {src} and destination {dst} differ in family"),
                ))
            }
        }
        Ok(())
    }
}

/// What one `recvmsg(2)` returned besides the payload.
struct Received {
    len: usize,
    /// The sender as the socket sees it (for raw IPv6 the IP source).
    src: Option<IpAddr>,
    cmsgs: Vec<ControlMessageOwned>,
}

/// One non-blocking `recvmsg(2)` into `buf`, with the sender and the
/// control messages the socket was asked for.
fn receive(socket: &Socket, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int, libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = nixsock::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let src = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| IpAddr::V4(v4.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
    });
    Ok(Received {
        len: msg.bytes,
        src,
        cmsgs: msg.cmsgs()?.collect(),
    })
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Raw IPv4 sockets deliver the IP header: TTL, source and destination
/// come from it; the interface from IP_PKTINFO.
fn parse_v4(buf: Vec<u8>, cmsgs: &[ControlMessageOwned]) -> io::Result<Datagram> {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return Err(invalid(format!("{} bytes: not an IPv4 header", buf.len())));
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if ihl < 20 || ihl > buf.len() || total < ihl {
        return Err(invalid(format!("IPv4 header length {ihl}, total {total}")));
    }
    let end = total.min(buf.len());
    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
    let ifindex = cmsgs.iter().find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(info) => u32::try_from(info.ipi_ifindex).ok(),
        _ => None,
    });
    Ok(Datagram {
        src: src.into(),
        dst: dst.into(),
        ttl: Some(buf[8]),
        ifindex,
        payload: buf[ihl..end].to_vec(),
    })
}

/// Raw IPv6 sockets deliver the payload only: the hop limit and the
/// destination come from control messages.
fn parse_v6(
    buf: Vec<u8>,
    src: Option<IpAddr>,
    cmsgs: &[ControlMessageOwned],
) -> io::Result<Datagram> {
    let src = src.ok_or_else(|| invalid("no IPv6 source address".to_owned()))?;
    let mut dst = None;
    let mut ifindex = None;
    let mut ttl = None;
    for c in cmsgs {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                ifindex = Some(info.ipi6_ifindex);
            }
            ControlMessageOwned::Ipv6HopLimit(limit) => ttl = u8::try_from(*limit).ok(),
            _ => {}
        }
    }
    let dst = dst.ok_or_else(|| invalid("no IPV6_PKTINFO: destination unknown".to_owned()))?;
    Ok(Datagram {
        src,
        dst,
        ttl,
        ifindex,
        payload: buf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pktinfo_v6(dst: Ipv6Addr, ifindex: u32) -> ControlMessageOwned {
        ControlMessageOwned::Ipv6PacketInfo(libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: dst.octets(),
            },
            ipi6_ifindex: ifindex,
        })
    }

    // Input: an IPv4 header with TTL 254 and options (IHL 6) before the
    // VRRP bytes. Output: TTL, addresses and payload start read from it.
    #[test]
    fn ipv4_header_gives_ttl_addresses_and_payload() {
        let mut buf = vec![
            0x46, 0, 0, 28, 0, 0, 0, 0, 254, 112, 0, 0, 192, 0, 2, 1, 224, 0, 0, 18, 1, 1, 1, 1,
        ];
        buf.extend_from_slice(&[0x31, 1, 100, 1]);
        let info = ControlMessageOwned::Ipv4PacketInfo(libc::in_pktinfo {
            ipi_ifindex: 7,
            ipi_spec_dst: libc::in_addr { s_addr: 0 },
            ipi_addr: libc::in_addr { s_addr: 0 },
        });
        let d = parse_v4(buf, &[info]).unwrap();
        assert_eq!(d.ttl, Some(254));
        assert_eq!(d.src, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.dst, "224.0.0.18".parse::<IpAddr>().unwrap());
        assert_eq!(d.ifindex, Some(7));
        assert_eq!(d.payload, vec![0x31, 1, 100, 1]);
    }

    #[test]
    fn ipv4_header_longer_than_packet_is_invalid() {
        let buf = vec![
            0x4f, 0, 0, 20, 0, 0, 0, 0, 255, 112, 0, 0, 192, 0, 2, 1, 224, 0, 0, 18,
        ];
        assert_eq!(
            parse_v4(buf, &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    // Input: IPV6_PKTINFO (ff02::12, ifindex 3) and IPV6_HOPLIMIT 255.
    #[test]
    fn ipv6_control_messages_give_destination_interface_and_hop_limit() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let cmsgs = [
            pktinfo_v6(MULTICAST_V6, 3),
            ControlMessageOwned::Ipv6HopLimit(255),
        ];
        let d = parse_v6(vec![0x31], Some(src), &cmsgs).unwrap();
        assert_eq!(
            (d.dst, d.ifindex, d.ttl),
            (IpAddr::V6(MULTICAST_V6), Some(3), Some(255))
        );
    }

    #[test]
    fn ipv6_without_hop_limit_reports_none() {
        let cmsgs = [pktinfo_v6(MULTICAST_V6, 3)];
        let d = parse_v6(vec![], Some("fe80::1".parse().unwrap()), &cmsgs).unwrap();
        assert_eq!(d.ttl, None);
    }
}
