//! PROXY protocol v1 and v2 headers (haproxy.org/download/2.9/doc/proxy-protocol.txt),
//! sent to a server ahead of the client's bytes so it learns who the client is.
//!
//! The header describes the client-side connection: source = the client's
//! address, destination = the frontend address it connected to. Its family is
//! the client connection's family, whatever the server's: an IPv4 client
//! reaching an IPv6 server is still described as TCP4 / AF_INET.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The v2 signature, section 2.2.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header including CRLF, section 2.1.
pub const V1_MAX_LEN: usize = 107;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_VERSION_PROXY: u8 = 0x21;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
const V2_IPV4_BLOCK: usize = 12;
const V2_IPV6_BLOCK: usize = 36;

/// The protocol version: what a frontend's `proxy_protocol` sends, what
/// [`encode`] writes and what [`decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: ProxyVersion,
    /// `None` for v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family other than
    /// AF_INET / AF_INET6 (the receiver then uses the real connection).
    pub addresses: Option<ProxyAddresses>,
}

/// The connection a header describes; both addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAddresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyDecodeError {
    #[error("not a PROXY protocol header (neither \"PROXY \" nor the v2 signature)")]
    NotProxyProtocol,
    #[error("PROXY v1 header without CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("PROXY v2 header with version {0} (expected 2)")]
    V2Version(u8),
    #[error("PROXY v2 header with command {0:#x} (expected LOCAL 0x0 or PROXY 0x1)")]
    V2Command(u8),
    #[error(
        "PROXY v2 address block of {len} bytes is too short for family/protocol {family:#04x}"
    )]
    V2ShortAddresses { family: u8, len: usize },
}

/// Encodes the header for a client connection from `client` to the frontend
/// address `local`. IPv4-mapped IPv6 addresses count as IPv4.
pub fn encode(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(unmap(client), unmap(local));
    match version {
        ProxyVersion::V1 => encode_v1(source, destination),
        ProxyVersion::V2 => encode_v2(source, destination),
    }
}

fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    let line = format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    );
    debug_assert!(line.len() <= V1_MAX_LEN);
    line.into_bytes()
}

fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (family, block) = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let mut block = Vec::with_capacity(V2_IPV4_BLOCK);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            (V2_TCP4, block)
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            let mut block = Vec::with_capacity(V2_IPV6_BLOCK);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            (V2_TCP6, block)
        }
        _ => unreachable!("same_family returns one family"),
    };
    let mut out = Vec::with_capacity(16 + block.len() + 4);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION_PROXY);
    out.push(family);
    out.extend_from_slice(&((block.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// A header carries one family. Should the two ends still differ (they
/// cannot on a V6ONLY listener), IPv6 with the IPv4 end mapped is the only
/// faithful encoding.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let to_v6 = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        SocketAddr::V6(_) => addr,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (to_v6(a), to_v6(b))
    }
}

/// Decodes a header at the start of `buf`: `Ok(None)` when more bytes are
/// needed, otherwise the header and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyDecodeError> {
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            decode_v2(buf)
        };
    }
    if starts_like(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(None)
        } else {
            decode_v1(buf)
        };
    }
    Err(ProxyDecodeError::NotProxyProtocol)
}

/// `buf` and `prefix` agree on their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn decode_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyDecodeError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyDecodeError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    let used = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyDecodeError::V1Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or_default();
    if proto == "UNKNOWN" {
        let header = ProxyHeader {
            version: ProxyVersion::V1,
            addresses: None,
        };
        return Ok(Some((header, used)));
    }
    let want_v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ProxyDecodeError::V1Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut next = |what| fields.next().ok_or(ProxyDecodeError::V1Malformed(what));
    let (src, dst, sport, dport) = (
        next("missing source address")?,
        next("missing destination address")?,
        next("missing source port")?,
        next("missing destination port")?,
    );
    if fields.next().is_some() {
        return Err(ProxyDecodeError::V1Malformed(
            "extra fields after the ports",
        ));
    }
    let parse_ip = |text: &str| -> Result<IpAddr, ProxyDecodeError> {
        let ip = if want_v4 {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        } else {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        };
        ip.map_err(|_| ProxyDecodeError::V1Malformed("address does not match the protocol"))
    };
    let source = SocketAddr::new(parse_ip(src)?, parse_port(sport)?);
    let destination = SocketAddr::new(parse_ip(dst)?, parse_port(dport)?);
    let header = ProxyHeader {
        version: ProxyVersion::V1,
        addresses: Some(ProxyAddresses {
            source,
            destination,
        }),
    };
    Ok(Some((header, used)))
}

/// Decimal digits only, no leading zero (u16's parser would take "+80" and "080").
fn parse_port(text: &str) -> Result<u16, ProxyDecodeError> {
    let bad = ProxyDecodeError::V1Malformed("port is not a decimal number in 0..=65535");
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn decode_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyDecodeError> {
    if buf.len() < 13 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyDecodeError::V2Version(version_command >> 4));
    }
    let command = version_command & 0x0f;
    if command > 1 {
        return Err(ProxyDecodeError::V2Command(command));
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let family = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let used = 16 + len;
    if buf.len() < used {
        return Ok(None);
    }
    let block = &buf[16..used];
    let short = ProxyDecodeError::V2ShortAddresses { family, len };
    // LOCAL: a connection the proxy made itself (health checks); addresses ignored.
    let addresses = if command == 0 {
        None
    } else {
        match family {
            V2_TCP4 => {
                let b: &[u8; V2_IPV4_BLOCK] = block
                    .get(..V2_IPV4_BLOCK)
                    .ok_or(short)?
                    .try_into()
                    .expect("sliced to size");
                let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
                let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
                Some(ProxyAddresses {
                    source: SocketAddr::new(ip(0).into(), port(8)),
                    destination: SocketAddr::new(ip(4).into(), port(10)),
                })
            }
            V2_TCP6 => {
                let b: &[u8; V2_IPV6_BLOCK] = block
                    .get(..V2_IPV6_BLOCK)
                    .ok_or(short)?
                    .try_into()
                    .expect("sliced to size");
                let ip = |at: usize| {
                    let octets: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
                    Ipv6Addr::from(octets)
                };
                let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
                Some(ProxyAddresses {
                    source: SocketAddr::new(ip(0).into(), port(32)),
                    destination: SocketAddr::new(ip(16).into(), port(34)),
                })
            }
            // UNSPEC, UDP, AF_UNIX: nothing a TCP proxy describes; skip the block.
            _ => None,
        }
    };
    Ok(Some((
        ProxyHeader {
            version: ProxyVersion::V2,
            addresses,
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    // Section 2.1: "PROXY" SP proto SP src SP dst SP sport SP dport CRLF.
    #[test]
    fn v1_tcp4_line() {
        let h = encode(
            ProxyVersion::V1,
            sa("192.0.2.7:51000"),
            sa("198.51.100.1:8080"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 8080\r\n");
    }

    #[test]
    fn v1_tcp6_line() {
        let h = encode(
            ProxyVersion::V1,
            sa("[2001:db8::7]:51000"),
            sa("[2001:db8::1]:443"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n");
    }

    // Section 2.1: the worst case (TCP6, full addresses, 5-digit ports) is 104 bytes, within 107.
    #[test]
    fn v1_longest_line_fits_107_bytes() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let h = encode(
            ProxyVersion::V1,
            sa(&format!("[{full}]:65535")),
            sa(&format!("[{full}]:65535")),
        );
        assert_eq!(h.len(), 104);
        assert!(h.len() <= V1_MAX_LEN);
    }

    // Section 2.2: signature, 0x21 (v2, PROXY), 0x11 (AF_INET, STREAM), length 12, then addresses and ports.
    #[test]
    fn v2_tcp4_fields() {
        let h = encode(
            ProxyVersion::V2,
            sa("192.0.2.7:51000"),
            sa("198.51.100.1:8080"),
        );
        assert_eq!(h[..12], V2_SIGNATURE);
        assert_eq!(
            &h[..12],
            b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
        );
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(h[16..20], [192, 0, 2, 7]);
        assert_eq!(h[20..24], [198, 51, 100, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 51000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 8080);
        assert_eq!(h.len(), 28);
    }

    // Section 2.2: 0x21 (AF_INET6, STREAM), length 36.
    #[test]
    fn v2_tcp6_fields() {
        let h = encode(
            ProxyVersion::V2,
            sa("[2001:db8::7]:51000"),
            sa("[2001:db8::1]:443"),
        );
        assert_eq!((h[12], h[13]), (0x21, 0x21));
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
        assert_eq!(
            h[16..32],
            "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            h[32..48],
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u16::from_be_bytes([h[48], h[49]]), 51000);
        assert_eq!(u16::from_be_bytes([h[50], h[51]]), 443);
        assert_eq!(h.len(), 52);
    }

    #[test]
    fn ipv4_mapped_addresses_are_described_as_ipv4() {
        let client = sa("[::ffff:192.0.2.7]:51000");
        let local = sa("[::ffff:198.51.100.1]:80");
        assert_eq!(
            encode(ProxyVersion::V1, client, local),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 80\r\n"
        );
        assert_eq!(encode(ProxyVersion::V2, client, local)[13], 0x11);
    }

    #[test]
    fn mixed_families_are_encoded_as_ipv6() {
        let h = encode(ProxyVersion::V1, sa("192.0.2.7:1"), sa("[2001:db8::1]:2"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n");
    }

    #[test]
    fn round_trips_both_versions_and_families() {
        let cases = [
            ("192.0.2.7:51000", "198.51.100.1:8080"),
            ("[2001:db8::7]:1", "[2001:db8::1]:65535"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
        ];
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            for (client, local) in cases {
                let mut bytes = encode(version, sa(client), sa(local));
                let len = bytes.len();
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let (header, used) = decode(&bytes).unwrap().unwrap();
                assert_eq!(used, len);
                assert_eq!(header.version, version);
                assert_eq!(
                    header.addresses,
                    Some(ProxyAddresses {
                        source: sa(client),
                        destination: sa(local)
                    })
                );
            }
        }
    }

    #[test]
    fn every_truncation_asks_for_more_bytes() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let bytes = encode(version, sa("[2001:db8::7]:51000"), sa("[2001:db8::1]:443"));
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Ok(None), "{version:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn v1_unknown_has_no_addresses() {
        let (h, used) = decode(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((h.version, h.addresses, used), (ProxyVersion::V1, None, 35));
    }

    #[test]
    fn v1_malformed_lines_are_rejected() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        ];
        for line in bad {
            assert!(
                matches!(decode(line), Err(ProxyDecodeError::V1Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY TCP6 ".to_vec();
        line.resize(V1_MAX_LEN, b'1');
        assert_eq!(decode(&line[..V1_MAX_LEN - 1]), Ok(None));
        assert_eq!(decode(&line), Err(ProxyDecodeError::V1TooLong));
    }

    #[test]
    fn v2_local_command_has_no_addresses() {
        let mut h = encode(ProxyVersion::V2, sa("192.0.2.7:1"), sa("198.51.100.1:2"));
        h[12] = 0x20;
        let (header, used) = decode(&h).unwrap().unwrap();
        assert_eq!((header.addresses, used), (None, 28));
    }

    #[test]
    fn v2_tlvs_after_the_addresses_are_skipped() {
        let mut h = encode(ProxyVersion::V2, sa("192.0.2.7:1"), sa("198.51.100.1:2"));
        let tlv = [0x04, 0x00, 0x01, 0x00]; // PP2_TYPE_NOOP, length 1
        h[14..16].copy_from_slice(&(12 + tlv.len() as u16).to_be_bytes());
        h.extend_from_slice(&tlv);
        let (header, used) = decode(&h).unwrap().unwrap();
        assert_eq!(used, 32);
        assert_eq!(header.addresses.unwrap().source, sa("192.0.2.7:1"));
    }

    #[test]
    fn v2_bad_version_command_and_length_are_rejected() {
        let good = encode(ProxyVersion::V2, sa("192.0.2.7:1"), sa("198.51.100.1:2"));
        let mut h = good.clone();
        h[12] = 0x11;
        assert_eq!(decode(&h), Err(ProxyDecodeError::V2Version(1)));
        let mut h = good.clone();
        h[12] = 0x22;
        assert_eq!(decode(&h), Err(ProxyDecodeError::V2Command(2)));
        let mut h = good[..24].to_vec();
        h[14..16].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            decode(&h),
            Err(ProxyDecodeError::V2ShortAddresses {
                family: 0x11,
                len: 8
            })
        );
    }

    #[test]
    fn other_bytes_are_not_proxy_protocol() {
        assert_eq!(
            decode(b"GET / HTTP/1.1\r\n"),
            Err(ProxyDecodeError::NotProxyProtocol)
        );
        assert_eq!(
            decode(b"\r\n\r\n\0\r\nQUIX"),
            Err(ProxyDecodeError::NotProxyProtocol)
        );
    }
}
