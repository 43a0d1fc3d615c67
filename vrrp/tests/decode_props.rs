//! Property tests of the decoder: no input panics it, and whatever it
//! accepts re-encodes to the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrrp::{decode, Packet, Version};

fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
        (any::<[u8; 4]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Input: arbitrary bytes and addresses. Output: no panic; an accepted
    /// packet re-encodes to exactly the input.
    #[test]
    fn decode_never_panics((src, dst) in ip_pair(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(d) = decode(&bytes, src, dst) {
            prop_assert_eq!(d.reencode(src, dst).unwrap(), bytes);
        }
    }

    /// Input: a valid v2 or v3 IPv4 advert with one byte changed.
    /// Output: refused. Any single-byte change alters the message's sum, so
    /// the form it was sent with no longer matches; for these addresses
    /// the pseudo-header sum (0xa3xx) is not a change one byte can make
    /// (±0x00ff or ±0xff00 per byte), so the other form cannot match either.
    #[test]
    fn single_byte_corruption_is_rejected(
        v3 in any::<bool>(),
        prio in 1u8..=255,
        n in 1usize..8,
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let version = if v3 { Version::V3 } else { Version::V2 };
        let addrs = (0..n).map(|k| IpAddr::V4(Ipv4Addr::new(192, 0, 2, k as u8 + 1))).collect();
        let p = Packet::advert(version, 9, prio, std::time::Duration::from_secs(1), addrs).unwrap();
        let src: IpAddr = "192.0.2.200".parse().unwrap();
        let dst: IpAddr = "224.0.0.18".parse().unwrap();
        let mut bytes = p.encode(src, dst, vrrp::ChecksumMode::PseudoHeader).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(decode(&bytes, src, dst).is_err());
    }
}
