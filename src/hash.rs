//! Hashes with a fixed definition, shared by the writer, the reader and the session.
//!
//! Both are XXH3-64 (seed 0): fast in wasm (about 1 byte/cycle without SIMD) so checksumming a
//! 6.5 MB shard fits the model-load budget, and stable across platforms and versions because the
//! algorithm is specified. Changing either function is a shard format change.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The 64-bit key of an item id. Sessions store these instead of the ids, so a session token
/// stays small and can outlive the model version it was made under.
pub fn item_key(id: &str) -> u64 {
    item_key_of_bytes(id.as_bytes())
}

/// [`item_key`] of an id's UTF-8 bytes, for ids still in a shard's raw string table.
pub(crate) fn item_key_of_bytes(id: &[u8]) -> u64 {
    xxh3_64(id)
}

/// A 64-bit key of any other identifier (e.g. an event's idempotency key): the same hash as
/// [`item_key`], named for what it keys.
pub fn text_key(text: &str) -> u64 {
    xxh3_64(text.as_bytes())
}

/// The bucket of a geohash prefix in a context table of `buckets` rows.
pub fn geo_bucket(prefix: &str, buckets: u32) -> Option<u32> {
    if buckets == 0 || prefix.is_empty() {
        return None;
    }
    Some((xxh3_64(prefix.as_bytes()) % u64::from(buckets)) as u32)
}

/// The shard checksum: XXH3-64 over the whole shard except the 8 checksum bytes themselves.
/// `bytes` must be longer than `checksum_at + 8`.
pub fn shard_checksum(bytes: &[u8], checksum_at: usize) -> u64 {
    let mut h = Xxh3::new();
    h.update(&bytes[..checksum_at]);
    h.update(&bytes[checksum_at + 8..]);
    h.digest()
}
