//! The KV key layout of published models. Versions are immutable: a version's manifest and
//! shards never change once written, so they can be cached forever; `models/current` is the
//! only mutable key and is written last, which makes a publish atomic for readers.

/// Names the version the edge serves (plain text).
pub const CURRENT: &str = "models/current";
/// The most popular items ([`crate::manifest::Fallback`] as JSON): what the edge serves before
/// any model loaded.
pub const FALLBACK: &str = "models/fallback";
/// The versions that were served, oldest first (JSON array): rollback goes back along it and
/// garbage collection keeps what it lists last. Only central-sync reads it.
pub const HISTORY: &str = "models/history";
/// Prefix of every model key.
pub const MODELS_PREFIX: &str = "models/";
/// File name of a version's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Prefix of the edge's event spool: batches the ingest did not accept in time wait here (same
/// KV namespace, outside `models/`) until the worker's cron delivers them.
pub const SPOOL_PREFIX: &str = "spool/";

/// The spool key of one batch; `stamp` orders keys by time (KV lists keys in byte order).
pub fn spool(stamp: u64, nonce: u64) -> String {
    format!("{SPOOL_PREFIX}{stamp:013}-{nonce:016x}")
}

/// Prefix of the edge's exposure spool: as [`SPOOL_PREFIX`], for the lists it served.
pub const EXPOSURE_SPOOL_PREFIX: &str = "spool-exposures/";

/// The spool key of one batch of exposures.
pub fn exposure_spool(stamp: u64, nonce: u64) -> String {
    format!("{EXPOSURE_SPOOL_PREFIX}{stamp:013}-{nonce:016x}")
}

/// Every key of `version` starts with this.
pub fn version_prefix(version: &str) -> String {
    format!("{MODELS_PREFIX}{version}/")
}

/// The manifest of `version`.
pub fn manifest(version: &str) -> String {
    format!("{}{MANIFEST_FILE}", version_prefix(version))
}

/// The file name central-sync gives shard `index` of a model. The manifest lists each shard's
/// file, and readers go by the manifest; the edge also reads the first shard under this name
/// while the manifest is on its way, and uses that read only if the manifest names the same file
/// (one round trip less on a cold isolate).
pub fn shard_file(index: usize) -> String {
    format!("shard-{index}.bin")
}

/// The file name central-sync gives page `index` of a paged model (the manifest's `pages`).
pub fn page_file(index: usize) -> String {
    format!("page-{index}.bin")
}

/// Shard `file` (as the manifest names it) of `version`.
pub fn shard(version: &str, file: &str) -> String {
    format!("{}{file}", version_prefix(version))
}

/// The version a key belongs to, for keys under [`MODELS_PREFIX`] other than the pointer and
/// the fallback.
pub fn version_of(key: &str) -> Option<&str> {
    if key == CURRENT || key == FALLBACK || key == HISTORY {
        return None;
    }
    let rest = key.strip_prefix(MODELS_PREFIX)?;
    let (version, file) = rest.split_once('/')?;
    (!version.is_empty() && !file.is_empty()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(manifest("v1"), "models/v1/manifest.json");
        assert_eq!(shard("v1", "shard-0.bin"), "models/v1/shard-0.bin");
        assert_eq!(shard_file(0), "shard-0.bin");
        assert_eq!(shard_file(12), "shard-12.bin");
        assert_eq!(page_file(3), "page-3.bin");
        assert_eq!(version_of("models/v1/shard-0.bin"), Some("v1"));
        assert_eq!(version_of(CURRENT), None);
        assert_eq!(version_of(FALLBACK), None);
        assert_eq!(version_of(HISTORY), None);
        assert_eq!(version_of("other/v1/x"), None);
        assert_eq!(
            spool(1_700_000_000_000, 255),
            "spool/1700000000000-00000000000000ff"
        );
        assert_eq!(version_of(&spool(1, 2)), None);
        assert!(spool(999, 0) < spool(1_000, 0));
        // Listing one spool never returns the other's keys.
        assert!(!exposure_spool(1, 2).starts_with(SPOOL_PREFIX));
        assert!(!spool(1, 2).starts_with(EXPOSURE_SPOOL_PREFIX));
    }
}
