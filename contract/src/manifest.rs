//! `manifest.json`: what a published model version holds. central-sync writes it beside the
//! shards; the edge reads it to fetch and check the shards, and serves it at `/v1/model`.

use serde::{Deserialize, Serialize};

/// One shard file in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardEntry {
    /// File name within the version (also the last part of its KV key).
    pub file: String,
    pub bytes: u64,
    /// XXH3-64 of the file, hex (the same checksum the shard header carries).
    pub checksum: String,
    /// Global item range [start, end).
    pub items: [u32; 2],
}

impl ShardEntry {
    /// A shard header's checksum as the manifest writes it (16 hex digits).
    pub fn checksum_hex(checksum: u64) -> String {
        format!("{checksum:016x}")
    }

    /// Whether a shard header's checksum is the one this entry names.
    pub fn names_checksum(&self, checksum: u64) -> bool {
        self.checksum == ShardEntry::checksum_hex(checksum)
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The shard format version of the shards.
    pub format_version: u32,
    pub version: String,
    /// The model id in every shard header, hex.
    pub model_id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub items: u32,
    pub dim: u32,
    /// `i8`, `f16` or `f32`.
    pub dtype: String,
    pub shards: Vec<ShardEntry>,
    /// A paged model's pages (shard format 7): `shards` are then its index, loaded whole, and
    /// these are read as requests need them. Empty (and left out of the JSON) for a model of
    /// whole shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<ShardEntry>,
    /// The most popular items, best first: the edge's fallback when it has no model.
    pub popular: Vec<String>,
    /// Free-form training and evaluation facts.
    #[serde(default)]
    pub info: serde_json::Value,
}

/// The most shard bytes a model may have to be served by an edge worker: a Workers isolate has
/// 128 MB; the loaded model takes its shard bytes once (plus small per-request buffers), and the
/// rest is left to the runtime, the request path and a second model while one replaces another
/// (the old one is dropped only after the new one validated). `central-sync publish` refuses a
/// larger model; the worker refuses to load one.
pub const EDGE_MODEL_BUDGET_BYTES: u64 = 48 * 1024 * 1024;

/// The bytes of pages an edge worker keeps for a paged model by default (its `PAGE_CACHE_BYTES`),
/// beside the index: a paged model's index and this together must fit
/// [`EDGE_MODEL_BUDGET_BYTES`].
pub const EDGE_PAGE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The `format` field of every manifest.
pub const FORMAT: &str = "edgerec-model";

impl Manifest {
    /// Total bytes of the shards (a paged model's index).
    pub fn shard_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// Whether the model is paged: its shards are an index and its pages are read as needed.
    pub fn is_paged(&self) -> bool {
        !self.pages.is_empty()
    }

    /// What an edge worker holds of the model with the default page cache: its shards, and for
    /// a paged model [`EDGE_PAGE_CACHE_BYTES`] of pages.
    pub fn edge_bytes(&self) -> u64 {
        self.shard_bytes()
            + if self.is_paged() {
                EDGE_PAGE_CACHE_BYTES
            } else {
                0
            }
    }
}

/// `models/fallback`: the popular items of the last published version, for an edge that has
/// not loaded any model yet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fallback {
    pub version: String,
    pub items: Vec<String>,
}
