//! Making a takeover visible: gratuitous ARP (IPv4) and unsolicited
//! Neighbor Advertisements with the override flag (IPv6, RFC 4861 §7.2.6)
//! for each virtual address, from the MAC that now answers for it.
//!
//! Frame and message building is pure; `send` does the IO.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];
/// All-nodes multicast: every host on the link hears the advertisement.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;

/// An Ethernet frame carrying a gratuitous ARP request for `ip`: sender
/// and target protocol address both `ip`, broadcast (RFC 5227 §3, the
/// form keepalived and FRR send).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// The ICMPv6 part of an unsolicited Neighbor Advertisement for `target`
/// with the override flag and the target link-layer address option. The
/// kernel fills in the checksum of raw ICMPv6 sockets.
pub fn na_message(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0]);
    m.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]);
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
    m.extend_from_slice(&mac);
    m
}

/// Sends one announcement per address out of `ifname` (index `ifindex`)
/// on behalf of `mac`. Returns the first error after trying them all.
pub(super) fn send(ifname: &str, ifindex: u32, mac: [u8; 6], addrs: &[IpAddr]) -> io::Result<()> {
    let mut first_error = None;
    let v4: Vec<Ipv4Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    if !v4.is_empty() {
        // Protocol 0: a send-only packet socket that receives nothing.
        match Socket::new(Domain::PACKET, Type::RAW, None) {
            Ok(s) => {
                for ip in v4 {
                    if let Err(e) = sys::send_frame(s.as_fd(), ifindex, &garp_frame(mac, ip)) {
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !v6.is_empty() {
        let result = (|| -> io::Result<()> {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
            s.bind_device(Some(ifname.as_bytes()))?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_hops_v6(255)?;
            s.set_multicast_loop_v6(false)?;
            let to = SocketAddrV6::new(ALL_NODES, 0, 0, ifindex);
            for target in v6 {
                s.send_to(&na_message(mac, target), &to.into())?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];

    // RFC 5227 §3 / RFC 826: Ethernet header, then htype 1, ptype 0x0800,
    // hlen 6, plen 4, op 1, SHA, SPA = VIP, THA zero, TPA = VIP.
    #[test]
    fn gratuitous_arp_frame_layout() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &[192, 0, 2, 10]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[192, 0, 2, 10]);
    }

    // RFC 4861 §4.4 / §7.2.6: type 136, code 0, Override set, Solicited and
    // Router clear, target, then option 2 (length 1 = 8 bytes) with the MAC.
    #[test]
    fn unsolicited_na_layout() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let m = na_message(MAC, target);
        assert_eq!(m.len(), 32);
        assert_eq!(m[0], 136);
        assert_eq!(m[1], 0);
        assert_eq!(m[4], 0x20, "override only, not solicited, not router");
        assert_eq!(&m[8..24], &target.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &MAC);
    }
}
