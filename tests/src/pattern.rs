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
    // A cheap mix whose period is far beyond test sizes and which differs
    // between neighbouring positions, so shifted or repeated chunks fail.
    let x = position.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.rotate_left(17);
    (x ^ (x >> 29) ^ (x >> 47)) as u8
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
