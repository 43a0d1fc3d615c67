//! A deterministic byte stream, so a receiver can verify every byte
//! without keeping a copy of what was sent.

/// Fills `buf` with the bytes at `offset..offset + buf.len()` of the
/// stream named `seed`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = at(seed, offset + i as u64);
    }
}

/// The byte at `position` of stream `seed`.
pub fn at(seed: u64, position: u64) -> u8 {
    // splitmix64's finaliser over (seed, position): every input bit reaches
    // the low byte, so shifted, repeated or foreign chunks fail.
    let mut x = position ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u8
}

/// Index of the first byte of `buf` that is not the stream at `offset`.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    buf.iter()
        .enumerate()
        .find(|(i, b)| **b != at(seed, offset + *i as u64))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_chunk_is_detected() {
        let mut buf = vec![0; 4096];
        fill(7, 100, &mut buf);
        assert_eq!(first_mismatch(7, 100, &buf), None);
        assert!(first_mismatch(7, 101, &buf).is_some());
        assert!(first_mismatch(8, 100, &buf).is_some());
    }
}
