//! Byte-level helpers the shard tests share: forge a section, then reseal the checksum so the
//! forgery reaches the validation behind it.
#![allow(dead_code)] // each test binary uses its own part

/// Recomputes a shard's checksum (XXH3-64 of every byte but its own 8) after an edit.
pub fn reseal(bytes: &mut [u8]) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[..32]);
    h.update(&bytes[40..]);
    let sum = h.digest();
    bytes[32..40].copy_from_slice(&sum.to_le_bytes());
}

pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The section table entry (its byte offset) and the byte range of the section of `kind`.
pub fn section(bytes: &[u8], kind: u32) -> (usize, std::ops::Range<usize>) {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    (0..u32_at(bytes, 16) as usize)
        .map(|i| 64 + 24 * i)
        .find(|&e| u32_at(bytes, e) == kind)
        .map(|e| (e, u64_at(e + 8)..u64_at(e + 8) + u64_at(e + 16)))
        .expect("section present")
}
