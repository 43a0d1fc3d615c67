//! Fuzz the VRRP decoder. Input layout: byte 0 selects the family (even:
//! IPv4, odd: IPv6), then the IP source and destination (4 + 4 or 16 + 16
//! bytes), then the VRRP payload. Any accepted packet must re-encode to the
//! same bytes.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let width = if selector & 1 == 0 { 4 } else { 16 };
    if rest.len() < 2 * width {
        return;
    }
    let (addrs, payload) = rest.split_at(2 * width);
    let ip = |b: &[u8]| -> IpAddr {
        if width == 4 {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    let (src, dst) = (ip(&addrs[..width]), ip(&addrs[width..]));
    if let Ok(d) = vrrp::decode(payload, src, dst) {
        let again = d.reencode(src, dst).expect("a decoded packet encodes");
        assert_eq!(again, payload, "re-encoding differs");
    }
});
