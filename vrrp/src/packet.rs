//! VRRP advertisements on the wire: VRRPv3 (RFC 9568 §5) for IPv4 and
//! IPv6, and VRRPv2 (RFC 3768 §5) for IPv4.
//!
//! `decode` takes the IP payload with the IP source and destination (the
//! checksum depends on them) and refuses anything a receiver must discard,
//! each with its own [`DecodeError`]. Rules that need instance state
//! (VRID, configured interval, address list) live in `instance`; the TTL /
//! hop-limit check lives in the wire layer, which sees the IP header.
//!
//! A decoded [`Packet`] keeps every field, including reserved bits and v2
//! authentication data, so re-encoding reproduces the received bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::checksum;

/// VRRP header length before the address list (both versions).
pub const HEADER_LEN: usize = 8;
/// VRRPv2 authentication data after the addresses (RFC 3768 §5.3.10).
pub const V2_AUTH_DATA_LEN: usize = 8;
/// The only packet type, ADVERTISEMENT (RFC 9568 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// IPv4 multicast group of VRRP (RFC 9568 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP (RFC 9568 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in seconds, authentication fields.
    V2,
    /// RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl Version {
    /// The value of the version field.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The largest raw interval the field can hold (8 bits of seconds in
    /// v2, 12 bits of centiseconds in v3).
    pub fn max_raw_interval(self) -> u16 {
        match self {
            Version::V2 => 0xff,
            Version::V3 => 0x0fff,
        }
    }

    /// The duration of one unit of the interval field.
    pub fn interval_unit(self) -> Duration {
        match self {
            Version::V2 => Duration::from_secs(1),
            Version::V3 => Duration::from_millis(10),
        }
    }

    /// `interval` as the raw field value, or `None` when it is zero, is
    /// not a whole number of units, or does not fit in the field.
    pub fn raw_interval(self, interval: Duration) -> Option<u16> {
        let unit = self.interval_unit().as_nanos();
        let nanos = interval.as_nanos();
        if nanos == 0 || nanos % unit != 0 {
            return None;
        }
        let raw = u16::try_from(nanos / unit).ok()?;
        (raw <= self.max_raw_interval()).then_some(raw)
    }
}

/// Address family of an instance or packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `"IPv4"` or `"IPv6"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The VRRP multicast group adverts are sent to.
    pub fn multicast_group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(MULTICAST_V4),
            Family::V6 => IpAddr::V6(MULTICAST_V6),
        }
    }

    /// The longest prefix of an address of the family: 32 or 128.
    pub fn prefix_max(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn address_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which checksum form a VRRPv3 IPv4 packet uses (RFC 9568 §5.2.8).
/// VRRPv2 always uses the message alone and VRRPv3 over IPv6 always the
/// pseudo-header, whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// Including the IPv4 pseudo-header: keepalived and FRR.
    #[default]
    PseudoHeader,
    /// The VRRP message alone: Cisco and Juniper.
    MessageOnly,
}

/// A VRRP ADVERTISEMENT with every field kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Protocol version of the packet.
    pub version: Version,
    /// Virtual Router ID, 1..=255 on the wire (0 is refused on decode).
    pub vrid: u8,
    /// 255 address owner, 1..=254 backups, 0 master releasing.
    pub priority: u8,
    /// Raw interval field: centiseconds (v3, 12 bits) or seconds (v2,
    /// 8 bits). See [`Packet::interval`].
    pub max_advert_int: u16,
    /// The virtual addresses, all of the packet's family.
    pub addresses: Vec<IpAddr>,
    /// v3: the 4 reserved bits before the interval (sent as zero, ignored
    /// on receipt, kept for exact re-encoding). Always 0 for v2.
    pub reserved: u8,
    /// v2: authentication data, ignored with auth type 0 (RFC 3768
    /// §5.3.10) but kept for exact re-encoding. Unused in v3.
    pub auth_data: [u8; V2_AUTH_DATA_LEN],
}

/// A successfully decoded packet and how its checksum was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The advertisement.
    pub packet: Packet,
    /// The form that matched. VRRPv2 reports `MessageOnly` and VRRPv3 over
    /// IPv6 `PseudoHeader`; for VRRPv3 over IPv4 it is whichever matched
    /// (`PseudoHeader` when, by chance, both do).
    pub checksum: ChecksumMode,
    /// The checksum field as received. One's complement has two zeros, so
    /// a sender may write 0xffff where [`Packet::encode`] writes 0x0000;
    /// [`Decoded::reencode`] keeps the sender's choice.
    pub checksum_field: u16,
}

impl Decoded {
    /// The received bytes again: the packet encoded with the checksum form
    /// that matched and, when the sender used the other representation of
    /// a zero checksum, that representation.
    pub fn reencode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        let mut bytes = self.packet.encode(src, dst, self.checksum)?;
        let computed = u16::from_be_bytes([bytes[6], bytes[7]]);
        if matches!(
            (computed, self.checksum_field),
            (0x0000, 0xffff) | (0xffff, 0x0000)
        ) {
            bytes[6..8].copy_from_slice(&self.checksum_field.to_be_bytes());
        }
        Ok(bytes)
    }
}

/// Why a received packet must be discarded. [`DecodeError::reason`] is a
/// short stable label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header.
    #[error("truncated: {len} bytes, shorter than the 8-byte VRRP header")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// IPv4 source and IPv6 destination, or the reverse.
    #[error("source {src} and destination {dst} are of different address families")]
    FamilyMix {
        /// IP source.
        src: IpAddr,
        /// IP destination.
        dst: IpAddr,
    },
    /// A version field other than 2 or 3.
    #[error("unsupported VRRP version {0} (2 and 3 are supported)")]
    Version(u8),
    /// VRRPv2 over IPv6.
    #[error("VRRPv2 packet received over IPv6 (VRRPv2 is IPv4 only)")]
    V2OverIpv6,
    /// A type other than ADVERTISEMENT.
    #[error("packet type {0} is not ADVERTISEMENT (1)")]
    Type(u8),
    /// An address count of zero.
    #[error("address count is 0")]
    NoAddresses,
    /// A length that does not match the address count.
    #[error("length {actual} bytes does not match {count} addresses ({expected} bytes expected)")]
    Length {
        /// The address count field.
        count: u8,
        /// The length it implies.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A checksum that matches no allowed form.
    #[error("bad checksum {received:#06x}")]
    Checksum {
        /// The checksum field received.
        received: u16,
    },
    /// VRRPv2 authentication other than none.
    #[error("VRRPv2 authentication type {0} is not supported (only 0, no authentication)")]
    AuthType(u8),
    /// VRID 0.
    #[error("virtual router id 0 is not valid")]
    VridZero,
    /// An interval of 0.
    #[error("advertisement interval 0 is not valid")]
    IntervalZero,
}

impl DecodeError {
    /// Stable short label, for `vrrp_packets_discarded_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::FamilyMix { .. } => "family_mix",
            DecodeError::Version(_) => "version",
            DecodeError::V2OverIpv6 => "v2_ipv6",
            DecodeError::Type(_) => "type",
            DecodeError::NoAddresses => "count_zero",
            DecodeError::Length { .. } => "length",
            DecodeError::Checksum { .. } => "checksum",
            DecodeError::AuthType(_) => "auth_type",
            DecodeError::VridZero => "vrid_zero",
            DecodeError::IntervalZero => "interval_zero",
        }
    }
}

/// Why a [`Packet`] cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// IPv4 source and IPv6 destination, or the reverse.
    #[error("source {src} and destination {dst} are of different address families")]
    FamilyMix {
        /// IP source.
        src: IpAddr,
        /// IP destination.
        dst: IpAddr,
    },
    /// VRRPv2 over IPv6.
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    /// No address to list.
    #[error("an advertisement needs at least one address")]
    NoAddresses,
    /// More addresses than the count field holds.
    #[error("{0} addresses do not fit the 8-bit count")]
    TooManyAddresses(usize),
    /// An address of the other family.
    #[error("address {addr} is not of the packet's family ({family:?})")]
    AddressFamily {
        /// The address at fault.
        addr: IpAddr,
        /// The packet's family.
        family: Family,
    },
    /// A raw interval the version's field cannot hold.
    #[error("interval field {raw} exceeds the {version:?} maximum {max}")]
    IntervalRange {
        /// The raw interval.
        raw: u16,
        /// The field's maximum.
        max: u16,
        /// The packet's version.
        version: Version,
    },
    /// An interval the field cannot express.
    #[error("interval {0:?} is zero, not a whole number of field units, or too large")]
    Interval(Duration),
    /// Reserved bits beyond their 4-bit field.
    #[error("reserved bits {0:#x} exceed 4 bits")]
    Reserved(u8),
}

impl Packet {
    /// A fresh advertisement with reserved and authentication fields zero.
    /// `interval` must be a whole number of field units (10 ms in v3,
    /// 1 s in v2) and fit the field.
    pub fn advert(
        version: Version,
        vrid: u8,
        priority: u8,
        interval: Duration,
        addresses: Vec<IpAddr>,
    ) -> Result<Packet, EncodeError> {
        let max_advert_int = version
            .raw_interval(interval)
            .ok_or(EncodeError::Interval(interval))?;
        Ok(Packet {
            version,
            vrid,
            priority,
            max_advert_int,
            addresses,
            reserved: 0,
            auth_data: [0; V2_AUTH_DATA_LEN],
        })
    }

    /// The advertised interval as a duration.
    pub fn interval(&self) -> Duration {
        self.version.interval_unit() * u32::from(self.max_advert_int)
    }

    /// Family of the addresses (IPv4 when the list is empty).
    pub fn family(&self) -> Family {
        self.addresses
            .first()
            .map_or(Family::V4, |a| Family::of(*a))
    }

    /// Exact wire bytes with the checksum filled in. `mode` matters only
    /// for VRRPv3 over IPv4 (see [`ChecksumMode`]).
    pub fn encode(
        &self,
        src: IpAddr,
        dst: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        let family = Family::of(src);
        if family != Family::of(dst) {
            return Err(EncodeError::FamilyMix { src, dst });
        }
        if self.version == Version::V2 && family == Family::V6 {
            return Err(EncodeError::V2OverIpv6);
        }
        let count = match self.addresses.len() {
            0 => return Err(EncodeError::NoAddresses),
            n => u8::try_from(n).map_err(|_| EncodeError::TooManyAddresses(n))?,
        };
        if let Some(addr) = self.addresses.iter().find(|a| Family::of(**a) != family) {
            return Err(EncodeError::AddressFamily {
                addr: *addr,
                family,
            });
        }
        let max = self.version.max_raw_interval();
        if self.max_advert_int > max {
            return Err(EncodeError::IntervalRange {
                raw: self.max_advert_int,
                max,
                version: self.version,
            });
        }
        let mut out = Vec::with_capacity(expected_len(self.version, family, count));
        out.push(self.version.number() << 4 | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        match self.version {
            Version::V2 => {
                // Auth type 0; the interval is one byte of seconds.
                out.push(0);
                out.push(self.max_advert_int as u8);
            }
            Version::V3 => {
                if self.reserved > 0x0f {
                    return Err(EncodeError::Reserved(self.reserved));
                }
                let word = u16::from(self.reserved) << 12 | self.max_advert_int;
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.auth_data);
        }
        let sum = match effective_mode(self.version, family, mode) {
            ChecksumMode::MessageOnly => checksum::message_only(&out),
            ChecksumMode::PseudoHeader => checksum::with_pseudo_header(src, dst, &out)
                .expect("families were checked equal above"),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }
}

/// The form actually used: only v3/IPv4 has a choice.
fn effective_mode(version: Version, family: Family, asked: ChecksumMode) -> ChecksumMode {
    match (version, family) {
        (Version::V2, _) => ChecksumMode::MessageOnly,
        (Version::V3, Family::V6) => ChecksumMode::PseudoHeader,
        (Version::V3, Family::V4) => asked,
    }
}

fn expected_len(version: Version, family: Family, count: u8) -> usize {
    let auth = match version {
        Version::V2 => V2_AUTH_DATA_LEN,
        Version::V3 => 0,
    };
    HEADER_LEN + usize::from(count) * family.address_len() + auth
}

/// Decode the IP payload `bytes` of a packet sent from `src` to `dst`.
///
/// The checks, in order: header present, same family for `src` and `dst`,
/// version 2 or 3 (2 only over IPv4), type ADVERTISEMENT, address count not
/// zero, length exactly matching the count, checksum (either form for
/// v3/IPv4), v2 auth type 0, VRID not 0, interval not 0.
pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Decoded, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let family = Family::of(src);
    if family != Family::of(dst) {
        return Err(DecodeError::FamilyMix { src, dst });
    }
    let version = match bytes[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        other => return Err(DecodeError::Version(other)),
    };
    if version == Version::V2 && family == Family::V6 {
        return Err(DecodeError::V2OverIpv6);
    }
    let kind = bytes[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(kind));
    }
    let count = bytes[3];
    if count == 0 {
        return Err(DecodeError::NoAddresses);
    }
    let expected = expected_len(version, family, count);
    if bytes.len() != expected {
        return Err(DecodeError::Length {
            count,
            expected,
            actual: bytes.len(),
        });
    }
    let checksum = verify_checksum(bytes, version, family, src, dst)?;
    let (reserved, max_advert_int) = match version {
        Version::V2 => {
            if bytes[4] != 0 {
                return Err(DecodeError::AuthType(bytes[4]));
            }
            (0, u16::from(bytes[5]))
        }
        Version::V3 => {
            let word = u16::from_be_bytes([bytes[4], bytes[5]]);
            ((word >> 12) as u8, word & 0x0fff)
        }
    };
    let vrid = bytes[1];
    if vrid == 0 {
        return Err(DecodeError::VridZero);
    }
    if max_advert_int == 0 {
        return Err(DecodeError::IntervalZero);
    }
    let width = family.address_len();
    let list = &bytes[HEADER_LEN..HEADER_LEN + usize::from(count) * width];
    let addresses = list
        .chunks_exact(width)
        .map(|chunk| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3])),
            Family::V6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(chunk);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        })
        .collect();
    let mut auth_data = [0u8; V2_AUTH_DATA_LEN];
    if version == Version::V2 {
        auth_data.copy_from_slice(&bytes[expected - V2_AUTH_DATA_LEN..]);
    }
    Ok(Decoded {
        packet: Packet {
            version,
            vrid,
            priority: bytes[2],
            max_advert_int,
            addresses,
            reserved,
            auth_data,
        },
        checksum,
        checksum_field: u16::from_be_bytes([bytes[6], bytes[7]]),
    })
}

fn verify_checksum(
    bytes: &[u8],
    version: Version,
    family: Family,
    src: IpAddr,
    dst: IpAddr,
) -> Result<ChecksumMode, DecodeError> {
    // A correct checksum makes the complemented sum over the covered
    // bytes zero.
    let pseudo_ok = || checksum::with_pseudo_header(src, dst, bytes) == Some(0);
    let message_ok = || checksum::message_only(bytes) == 0;
    let matched = match (version, family) {
        (Version::V2, _) => message_ok().then_some(ChecksumMode::MessageOnly),
        (Version::V3, Family::V6) => pseudo_ok().then_some(ChecksumMode::PseudoHeader),
        (Version::V3, Family::V4) => {
            if pseudo_ok() {
                Some(ChecksumMode::PseudoHeader)
            } else if message_ok() {
                Some(ChecksumMode::MessageOnly)
            } else {
                None
            }
        }
    };
    matched.ok_or(DecodeError::Checksum {
        received: u16::from_be_bytes([bytes[6], bytes[7]]),
    })
}

#[cfg(test)]
mod tests;
