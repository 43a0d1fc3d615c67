//! Adverts captured from keepalived and FRR (see tests/data/README.md):
//! they decode with the checksum form those implementations use, carry the
//! configured values, and re-encode to the very same bytes.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use vrrp::{decode, ChecksumMode, Version};

struct Vector {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    payload: Vec<u8>,
}

fn load(name: &str) -> Vector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name}: no `{key}` line"))
            .trim()
            .to_owned()
    };
    let hex = field("payload");
    let payload = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Vector {
        src: field("src").parse().unwrap(),
        dst: field("dst").parse().unwrap(),
        ttl: field("ttl").parse().unwrap(),
        payload,
    }
}

/// Input: a captured file. Output: decoded packet checked against the
/// sender's configuration; re-encoding with the matched checksum form gives
/// the captured bytes.
fn check(
    name: &str,
    version: Version,
    checksum: ChecksumMode,
    vrid: u8,
    priority: u8,
    interval: Duration,
    addresses: &[&str],
) {
    let v = load(name);
    assert_eq!(
        v.ttl, 255,
        "{name}: RFC 9568 §5.1.1.3 / §5.1.2.3 send TTL 255"
    );
    let d = decode(&v.payload, v.src, v.dst).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(d.checksum, checksum, "{name}");
    let p = &d.packet;
    assert_eq!(p.version, version, "{name}");
    assert_eq!(p.vrid, vrid, "{name}");
    assert_eq!(p.priority, priority, "{name}");
    assert_eq!(p.interval(), interval, "{name}");
    let expected: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(p.addresses, expected, "{name}");
    let again = p.encode(v.src, v.dst, d.checksum).unwrap();
    assert_eq!(again, v.payload, "{name}: re-encoding differs");
    assert_eq!(d.reencode(v.src, v.dst).unwrap(), v.payload, "{name}");
}

#[test]
fn keepalived_v2_ipv4() {
    check(
        "keepalived-v2-ipv4.txt",
        Version::V2,
        ChecksumMode::MessageOnly,
        21,
        200,
        Duration::from_secs(1),
        &["10.99.0.21", "10.99.0.22"],
    );
}

/// keepalived includes the IPv4 pseudo-header in VRRPv3 checksums.
#[test]
fn keepalived_v3_ipv4() {
    check(
        "keepalived-v3-ipv4.txt",
        Version::V3,
        ChecksumMode::PseudoHeader,
        31,
        150,
        Duration::from_millis(500),
        &["10.99.0.31"],
    );
}

#[test]
fn keepalived_v3_ipv6() {
    check(
        "keepalived-v3-ipv6.txt",
        Version::V3,
        ChecksumMode::PseudoHeader,
        36,
        120,
        Duration::from_secs(1),
        &["fe80::36", "2001:db8:99::36"],
    );
}

#[test]
fn frr_v2_ipv4() {
    check(
        "frr-v2-ipv4.txt",
        Version::V2,
        ChecksumMode::MessageOnly,
        42,
        170,
        Duration::from_secs(1),
        &["10.99.42.42"],
    );
}

/// FRR, like keepalived, includes the IPv4 pseudo-header in VRRPv3.
#[test]
fn frr_v3_ipv4() {
    check(
        "frr-v3-ipv4.txt",
        Version::V3,
        ChecksumMode::PseudoHeader,
        41,
        180,
        Duration::from_millis(200),
        &["10.99.41.41"],
    );
}

#[test]
fn frr_v3_ipv6() {
    check(
        "frr-v3-ipv6.txt",
        Version::V3,
        ChecksumMode::PseudoHeader,
        46,
        160,
        Duration::from_secs(1),
        &["2001:db8:99::46"],
    );
}

/// The same captured bytes fail when the IP addresses they were sent with
/// change: the pseudo-header really is part of the v3 checksum.
#[test]
fn captured_v3_checksums_depend_on_ip_addresses() {
    for name in ["keepalived-v3-ipv4.txt", "frr-v3-ipv6.txt"] {
        let v = load(name);
        let other: IpAddr = match v.src {
            IpAddr::V4(_) => "10.99.0.77".parse().unwrap(),
            IpAddr::V6(_) => "fe80::77".parse().unwrap(),
        };
        let e = decode(&v.payload, other, v.dst).unwrap_err();
        assert_eq!(e.reason(), "checksum", "{name}");
    }
}
