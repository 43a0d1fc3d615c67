//! Decode and encode rules, each named after the RFC section it checks.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const SRC4: &str = "192.0.2.1";
const SRC6: &str = "fe80::1";

fn v3_v4() -> Packet {
    Packet::advert(
        Version::V3,
        51,
        100,
        Duration::from_millis(100),
        vec![ip("192.0.2.10"), ip("192.0.2.11")],
    )
    .unwrap()
}

fn v3_v6() -> Packet {
    Packet::advert(
        Version::V3,
        51,
        100,
        Duration::from_secs(1),
        vec![ip("fe80::10"), ip("2001:db8::10")],
    )
    .unwrap()
}

fn v2_v4() -> Packet {
    Packet::advert(
        Version::V2,
        7,
        150,
        Duration::from_secs(1),
        vec![ip("192.0.2.10")],
    )
    .unwrap()
}

fn bytes(p: &Packet, src: &str, mode: ChecksumMode) -> Vec<u8> {
    let src = ip(src);
    let dst = Family::of(src).multicast_group();
    p.encode(src, dst, mode).unwrap()
}

fn dec(b: &[u8], src: &str) -> Result<Decoded, DecodeError> {
    let src = ip(src);
    decode(b, src, Family::of(src).multicast_group())
}

/// Recompute the v2/message-only checksum after editing bytes, so that the
/// rule under test, not the checksum, is what rejects the packet.
fn fix_message_checksum(b: &mut [u8]) {
    b[6..8].copy_from_slice(&[0, 0]);
    let c = crate::checksum::message_only(b);
    b[6..8].copy_from_slice(&c.to_be_bytes());
}

fn fix_pseudo_checksum(b: &mut [u8], src: &str) {
    let src = ip(src);
    b[6..8].copy_from_slice(&[0, 0]);
    let c = crate::checksum::with_pseudo_header(src, Family::of(src).multicast_group(), b).unwrap();
    b[6..8].copy_from_slice(&c.to_be_bytes());
}

/// RFC 9568 §5.2: the v3 header layout (version 3, type 1, VRID, priority,
/// count, 4 reserved bits + 12-bit interval, checksum, addresses).
#[test]
fn rfc9568_5_2_v3_ipv4_layout() {
    let b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(&b[..6], &[0x31, 51, 100, 2, 0x00, 10]);
    assert_eq!(&b[8..], &[192, 0, 2, 10, 192, 0, 2, 11]);
}

/// RFC 3768 §5.3: the v2 layout (auth type byte, 8-bit interval in
/// seconds, addresses, then 8 bytes of authentication data).
#[test]
fn rfc3768_5_3_v2_layout() {
    let b = bytes(&v2_v4(), SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(&b[..6], &[0x21, 7, 150, 1, 0, 1]);
    assert_eq!(&b[8..12], &[192, 0, 2, 10]);
    assert_eq!(&b[12..], &[0; 8]);
}

/// RFC 9568 §5.2.7: the v3 interval is in centiseconds, 12 bits.
#[test]
fn rfc9568_5_2_7_interval_in_centiseconds() {
    let d = dec(&bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader), SRC4).unwrap();
    assert_eq!(d.packet.max_advert_int, 10);
    assert_eq!(d.packet.interval(), Duration::from_millis(100));
    assert_eq!(
        Version::V3.raw_interval(Duration::from_millis(40950)),
        Some(4095)
    );
    assert_eq!(Version::V3.raw_interval(Duration::from_millis(40960)), None);
    assert_eq!(Version::V3.raw_interval(Duration::from_millis(15)), None);
}

/// RFC 3768 §5.3.7: the v2 interval is in whole seconds, 8 bits.
#[test]
fn rfc3768_5_3_7_interval_in_seconds() {
    let d = dec(&bytes(&v2_v4(), SRC4, ChecksumMode::MessageOnly), SRC4).unwrap();
    assert_eq!(d.packet.interval(), Duration::from_secs(1));
    assert_eq!(Version::V2.raw_interval(Duration::from_millis(1500)), None);
    assert_eq!(
        Version::V2.raw_interval(Duration::from_secs(255)),
        Some(255)
    );
    assert_eq!(Version::V2.raw_interval(Duration::from_secs(256)), None);
}

/// RFC 9568 §5.2.8: over IPv4 both checksum forms are accepted and the one
/// that matched is reported.
#[test]
fn rfc9568_5_2_8_ipv4_accepts_both_checksum_forms() {
    for mode in [ChecksumMode::PseudoHeader, ChecksumMode::MessageOnly] {
        let b = bytes(&v3_v4(), SRC4, mode);
        let d = dec(&b, SRC4).unwrap();
        assert_eq!(d.checksum, mode);
        assert_eq!(d.packet, v3_v4());
    }
}

/// RFC 9568 §5.2.8: over IPv6 the checksum includes the pseudo-header
/// (RFC 8200 §8.1); the message-only form is wrong there.
#[test]
fn rfc9568_5_2_8_ipv6_requires_pseudo_header() {
    let b = bytes(&v3_v6(), SRC6, ChecksumMode::MessageOnly);
    let d = dec(&b, SRC6).unwrap();
    assert_eq!(
        d.checksum,
        ChecksumMode::PseudoHeader,
        "mode ignored for IPv6"
    );
    let mut wrong = b.clone();
    fix_message_checksum(&mut wrong);
    assert_eq!(dec(&wrong, SRC6).unwrap_err().reason(), "checksum");
}

/// RFC 3768 §5.3.8: the v2 checksum covers the message alone.
#[test]
fn rfc3768_5_3_8_v2_checksum_is_message_only() {
    let b = bytes(&v2_v4(), SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(crate::checksum::message_only(&b), 0);
    assert_eq!(dec(&b, SRC4).unwrap().checksum, ChecksumMode::MessageOnly);
    let mut pseudo = b.clone();
    fix_pseudo_checksum(&mut pseudo, SRC4);
    assert!(matches!(
        dec(&pseudo, SRC4),
        Err(DecodeError::Checksum { .. })
    ));
}

/// RFC 9568 §7.1: a packet with a bad checksum is discarded.
#[test]
fn rfc9568_7_1_bad_checksum_discarded() {
    let mut b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    b[2] ^= 1;
    let e = dec(&b, SRC4).unwrap_err();
    assert!(matches!(e, DecodeError::Checksum { .. }));
    assert_eq!(e.reason(), "checksum");
    // The checksum depends on the addresses of the IP header too.
    let b = bytes(&v3_v6(), SRC6, ChecksumMode::PseudoHeader);
    assert_eq!(dec(&b, "fe80::2").unwrap_err().reason(), "checksum");
}

/// RFC 9568 §7.1: only versions 2 and 3 are processed.
#[test]
fn rfc9568_7_1_unknown_version_discarded() {
    let mut b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    b[0] = 0x41;
    fix_pseudo_checksum(&mut b, SRC4);
    assert_eq!(dec(&b, SRC4).unwrap_err(), DecodeError::Version(4));
    assert_eq!(DecodeError::Version(4).reason(), "version");
}

/// RFC 3768 §1 / RFC 9568 §1: VRRPv2 is IPv4 only.
#[test]
fn rfc3768_1_v2_over_ipv6_discarded() {
    let mut b = bytes(&v3_v6(), SRC6, ChecksumMode::PseudoHeader);
    b[0] = 0x21;
    assert_eq!(dec(&b, SRC6).unwrap_err(), DecodeError::V2OverIpv6);
    assert!(v2_v4()
        .encode(ip(SRC6), ip("ff02::12"), ChecksumMode::PseudoHeader)
        .is_err());
}

/// RFC 9568 §5.2.2: type 1 (ADVERTISEMENT) is the only type; others are
/// discarded.
#[test]
fn rfc9568_5_2_2_unknown_type_discarded() {
    let mut b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    b[0] = 0x32;
    fix_pseudo_checksum(&mut b, SRC4);
    let e = dec(&b, SRC4).unwrap_err();
    assert_eq!(e, DecodeError::Type(2));
    assert_eq!(e.reason(), "type");
}

/// RFC 9568 §5.2.5: an advertisement carries at least one address.
#[test]
fn rfc9568_5_2_5_zero_address_count_discarded() {
    let b = [0x31, 51, 100, 0, 0, 100, 0, 0];
    let mut b = b.to_vec();
    fix_pseudo_checksum(&mut b, SRC4);
    let e = dec(&b, SRC4).unwrap_err();
    assert_eq!(e, DecodeError::NoAddresses);
    assert_eq!(e.reason(), "count_zero");
}

/// RFC 9568 §7.1: the packet must hold exactly the addresses its count
/// announces (too short or with trailing bytes).
#[test]
fn rfc9568_7_1_length_must_match_address_count() {
    let b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    let short = &b[..b.len() - 4];
    assert_eq!(
        dec(short, SRC4).unwrap_err(),
        DecodeError::Length {
            count: 2,
            expected: 16,
            actual: 12
        }
    );
    let mut long = b.clone();
    long.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(dec(&long, SRC4).unwrap_err().reason(), "length");
    // The same bytes read as IPv6 need 16 bytes per address.
    let b6 = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(dec(&b6, SRC6).unwrap_err().reason(), "length");
}

/// RFC 3768 §7.1: the v2 packet must include its 8 bytes of
/// authentication data.
#[test]
fn rfc3768_7_1_v2_length_includes_auth_data() {
    let b = bytes(&v2_v4(), SRC4, ChecksumMode::MessageOnly);
    assert_eq!(b.len(), 20);
    assert_eq!(dec(&b[..12], SRC4).unwrap_err().reason(), "length");
}

/// A packet shorter than the fixed header is refused before reading it.
#[test]
fn rfc9568_7_1_truncated_header_discarded() {
    for len in 0..HEADER_LEN {
        assert_eq!(
            dec(&[0x31; 8][..len], SRC4).unwrap_err(),
            DecodeError::Truncated { len }
        );
    }
}

/// RFC 9568 §5.1: IPv4 and IPv6 virtual routers are separate; a packet
/// whose IP source and destination differ in family is malformed.
#[test]
fn rfc9568_5_1_family_mix_discarded() {
    let b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    let e = decode(&b, ip(SRC4), ip("ff02::12")).unwrap_err();
    assert_eq!(e.reason(), "family_mix");
}

/// RFC 3768 §5.3.6 and §7.1: the auth type must match the local method;
/// only 0 (no authentication) is supported (types 1 and 2 were removed by
/// RFC 3768 §10).
#[test]
fn rfc3768_5_3_6_auth_type_other_than_zero_discarded() {
    for auth in [1u8, 2, 3] {
        let mut b = bytes(&v2_v4(), SRC4, ChecksumMode::MessageOnly);
        b[4] = auth;
        fix_message_checksum(&mut b);
        let e = dec(&b, SRC4).unwrap_err();
        assert_eq!(e, DecodeError::AuthType(auth));
        assert_eq!(e.reason(), "auth_type");
    }
}

/// RFC 3768 §5.3.10: with auth type 0 the authentication data is ignored
/// on receipt (keepalived sends zeros; anything is accepted) and kept so
/// the packet re-encodes exactly.
#[test]
fn rfc3768_5_3_10_auth_data_ignored_and_kept() {
    let mut b = bytes(&v2_v4(), SRC4, ChecksumMode::MessageOnly);
    let n = b.len();
    b[n - 8..].copy_from_slice(b"secret!!");
    fix_message_checksum(&mut b);
    let d = dec(&b, SRC4).unwrap();
    assert_eq!(&d.packet.auth_data, b"secret!!");
    assert_eq!(
        d.packet
            .encode(ip(SRC4), ip("224.0.0.18"), d.checksum)
            .unwrap(),
        b
    );
}

/// RFC 9568 §5.2.6: the reserved bits are ignored on receipt (kept for
/// exact re-encoding) and sent as zero by `Packet::advert`.
#[test]
fn rfc9568_5_2_6_reserved_bits_ignored_and_kept() {
    let mut b = bytes(&v3_v4(), SRC4, ChecksumMode::PseudoHeader);
    b[4] |= 0xa0;
    fix_pseudo_checksum(&mut b, SRC4);
    let d = dec(&b, SRC4).unwrap();
    assert_eq!(d.packet.reserved, 0xa);
    assert_eq!(d.packet.max_advert_int, 10);
    assert_eq!(
        d.packet
            .encode(ip(SRC4), ip("224.0.0.18"), d.checksum)
            .unwrap(),
        b
    );
    assert_eq!(v3_v4().reserved, 0);
}

/// RFC 9568 §5.2.3: VRIDs are 1..=255.
#[test]
fn rfc9568_5_2_3_vrid_zero_discarded() {
    let mut p = v3_v4();
    p.vrid = 0;
    let b = bytes(&p, SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(dec(&b, SRC4).unwrap_err(), DecodeError::VridZero);
}

/// RFC 9568 §5.2.7: an interval of 0 would make Master_Down_Interval
/// almost nothing; such a packet is refused rather than trusted.
#[test]
fn rfc9568_5_2_7_interval_zero_discarded() {
    let mut p = v3_v4();
    p.max_advert_int = 0;
    let b = bytes(&p, SRC4, ChecksumMode::PseudoHeader);
    assert_eq!(dec(&b, SRC4).unwrap_err().reason(), "interval_zero");
}

/// Every kind round-trips: decode(encode(p)) == p and re-encoding the
/// decoded packet gives the same bytes.
#[test]
fn roundtrip_all_kinds() {
    let cases = [
        (v3_v4(), SRC4, ChecksumMode::PseudoHeader),
        (v3_v4(), SRC4, ChecksumMode::MessageOnly),
        (v3_v6(), SRC6, ChecksumMode::PseudoHeader),
        (v2_v4(), SRC4, ChecksumMode::MessageOnly),
    ];
    for (p, src, mode) in cases {
        let b = bytes(&p, src, mode);
        let d = dec(&b, src).unwrap();
        assert_eq!(d.packet, p);
        assert_eq!(d.checksum, mode);
        assert_eq!(bytes(&d.packet, src, d.checksum), b);
    }
}

#[test]
fn encode_refuses_what_the_format_cannot_carry() {
    let src = ip(SRC4);
    let dst = ip("224.0.0.18");
    let mode = ChecksumMode::PseudoHeader;
    let mut p = v3_v4();
    p.addresses.clear();
    assert_eq!(p.encode(src, dst, mode), Err(EncodeError::NoAddresses));
    p.addresses = vec![ip("192.0.2.1"); 256];
    assert_eq!(
        p.encode(src, dst, mode),
        Err(EncodeError::TooManyAddresses(256))
    );
    p.addresses = vec![ip("2001:db8::1")];
    assert!(matches!(
        p.encode(src, dst, mode),
        Err(EncodeError::AddressFamily { .. })
    ));
    let mut p = v3_v4();
    p.max_advert_int = 0x1000;
    assert!(matches!(
        p.encode(src, dst, mode),
        Err(EncodeError::IntervalRange { .. })
    ));
    let mut p = v2_v4();
    p.max_advert_int = 256;
    assert!(matches!(
        p.encode(src, dst, mode),
        Err(EncodeError::IntervalRange { .. })
    ));
    let mut p = v3_v4();
    p.reserved = 0x10;
    assert_eq!(p.encode(src, dst, mode), Err(EncodeError::Reserved(0x10)));
    assert!(matches!(
        v3_v4().encode(src, ip("ff02::12"), mode),
        Err(EncodeError::FamilyMix { .. })
    ));
    assert!(Packet::advert(Version::V3, 1, 1, Duration::from_millis(5), vec![src]).is_err());
}

/// Every discard reason has its own distinct label.
#[test]
fn decode_error_reasons_are_distinct() {
    let a = ip(SRC4);
    let all = [
        DecodeError::Truncated { len: 0 },
        DecodeError::FamilyMix { src: a, dst: a },
        DecodeError::Version(1),
        DecodeError::V2OverIpv6,
        DecodeError::Type(2),
        DecodeError::NoAddresses,
        DecodeError::Length {
            count: 1,
            expected: 12,
            actual: 8,
        },
        DecodeError::Checksum { received: 0 },
        DecodeError::AuthType(1),
        DecodeError::VridZero,
        DecodeError::IntervalZero,
    ];
    let labels: std::collections::BTreeSet<_> = all.iter().map(DecodeError::reason).collect();
    assert_eq!(labels.len(), all.len());
}

/// RFC 1071 §2: one's complement has two zeros. A sender writing 0xffff
/// where the computed checksum is 0x0000 is accepted, and `reencode` gives
/// its bytes back (found by the fuzzer).
#[test]
fn rfc1071_negative_zero_checksum_accepted_and_kept() {
    // Pick the vrid that makes the canonical checksum 0x0000.
    let src = ip(SRC4);
    let dst = ip("224.0.0.18");
    let (p, b) = (1..=255u8)
        .find_map(|vrid| {
            let mut p = v3_v4();
            p.vrid = vrid;
            for prio in 1..=255u8 {
                p.priority = prio;
                let b = p.encode(src, dst, ChecksumMode::MessageOnly).unwrap();
                if b[6..8] == [0, 0] {
                    return Some((p, b));
                }
            }
            None
        })
        .expect("some vrid/priority gives checksum 0");
    let mut neg = b.clone();
    neg[6..8].copy_from_slice(&[0xff, 0xff]);
    let d = decode(&neg, src, dst).unwrap();
    assert_eq!(d.packet, p);
    assert_eq!(d.checksum_field, 0xffff);
    assert_eq!(d.reencode(src, dst).unwrap(), neg);
    assert_eq!(decode(&b, src, dst).unwrap().reencode(src, dst).unwrap(), b);
}
