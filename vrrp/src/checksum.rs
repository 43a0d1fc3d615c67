//! The Internet checksum (RFC 1071) over a VRRP message, with or without
//! the IP pseudo-header.
//!
//! VRRPv2 sums the message alone (RFC 3768 §5.3.8). VRRPv3 includes the
//! pseudo-header for IPv6 (RFC 8200 §8.1) and, for IPv4, implementations
//! disagree: keepalived and FRR include the IPv4 pseudo-header, while
//! Cisco and Juniper sum the message alone (RFC 9568 §5.2.8 allows the
//! receiver to accept both). So both forms are offered here.

use std::net::IpAddr;

/// IP protocol number of VRRP, used in the pseudo-header.
pub const IPPROTO_VRRP: u8 = 112;

/// One's-complement accumulator; words are big-endian, an odd trailing
/// byte is padded with zero.
#[derive(Debug, Default, Clone, Copy)]
struct Sum(u32);

impl Sum {
    fn add_bytes(mut self, bytes: &[u8]) -> Self {
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            self.0 += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            self = self.fold_once();
        }
        if let [last] = chunks.remainder() {
            self.0 += u32::from(*last) << 8;
            self = self.fold_once();
        }
        self
    }

    fn fold_once(self) -> Self {
        // Keeping the accumulator below 2^17 means no overflow whatever
        // the input length.
        Sum((self.0 & 0xffff) + (self.0 >> 16))
    }

    fn finish(self) -> u16 {
        let folded = self.fold_once().fold_once();
        !(folded.0 as u16)
    }
}

/// Checksum over `message` alone (v2, and v3/IPv4 message-only form).
pub fn message_only(message: &[u8]) -> u16 {
    Sum::default().add_bytes(message).finish()
}

/// Checksum over the IP pseudo-header of `src`/`dst` followed by
/// `message`. Returns `None` when `src` and `dst` are of different
/// families, since no pseudo-header exists for that.
pub fn with_pseudo_header(src: IpAddr, dst: IpAddr, message: &[u8]) -> Option<u16> {
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // RFC 791 style: src, dst, zero, protocol, length (16 bits).
            let len = u16::try_from(message.len()).ok()?;
            let mut header = [0u8; 12];
            header[0..4].copy_from_slice(&s.octets());
            header[4..8].copy_from_slice(&d.octets());
            header[9] = IPPROTO_VRRP;
            header[10..12].copy_from_slice(&len.to_be_bytes());
            Sum::default().add_bytes(&header)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // RFC 8200 §8.1: src, dst, upper-layer length (32 bits),
            // three zero bytes, next header.
            let len = u32::try_from(message.len()).ok()?;
            let mut header = [0u8; 40];
            header[0..16].copy_from_slice(&s.octets());
            header[16..32].copy_from_slice(&d.octets());
            header[32..36].copy_from_slice(&len.to_be_bytes());
            header[39] = IPPROTO_VRRP;
            Sum::default().add_bytes(&header)
        }
        _ => return None,
    };
    Some(sum.add_bytes(message).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3 worked example: the one's-complement sum of
    /// 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the checksum is its complement.
    #[test]
    fn rfc1071_section3_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(message_only(&data), !0xddf2);
    }

    /// A message carrying its own correct checksum sums to zero, which is
    /// how receivers verify it.
    #[test]
    fn message_with_its_checksum_verifies_to_zero() {
        let mut data = vec![0x31, 0x01, 0x64, 0x01, 0x00, 0x64, 0, 0, 10, 0, 0, 1];
        let c = message_only(&data);
        data[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(message_only(&data), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(message_only(&[0x12]), message_only(&[0x12, 0x00]));
    }

    #[test]
    fn pseudo_header_rejects_family_mix() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(with_pseudo_header(v4, v6, &[0; 8]), None);
        assert!(with_pseudo_header(v4, v4, &[0; 8]).is_some());
        assert!(with_pseudo_header(v6, v6, &[0; 8]).is_some());
    }

    /// The pseudo-header changes the result: the two IPv4 forms differ for
    /// ordinary addresses, which is what lets a receiver tell them apart.
    #[test]
    fn pseudo_header_form_differs_from_message_only() {
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let dst: IpAddr = "224.0.0.18".parse().unwrap();
        let msg = [0x31, 0x01, 0x64, 0x01, 0x00, 0x64, 0, 0, 192, 0, 2, 10];
        assert_ne!(with_pseudo_header(src, dst, &msg), Some(message_only(&msg)));
    }
}
