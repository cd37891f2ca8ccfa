//! The contract between edgerec's edge worker and central-sync: everything both sides read or
//! write, defined once so the two cannot drift apart.
//!
//! - [`manifest`]: the model manifest (`manifest.json`) and its shard entries;
//! - [`keys`]: where a model lives in KV, and the pointer that is written last;
//! - [`pointer`]: what the pointer says: one version, or an A/B split with sticky assignment;
//! - [`events`]: interaction events, their one validation (used by the edge's
//!   `POST /v1/events`, the ingest endpoint and the CSV import) and the batch envelope;
//! - [`exposures`]: what a visitor was shown (model, arm, items with positions, scores and
//!   propensities), which clicks name;
//! - [`edge_metrics`]: per-request counts and latencies an isolate reports to central-sync;
//! - [`error`]: the JSON error body `{"error": {"code": ..., "message": ...}}`.
//!
//! Serde-based and free of platform types: it builds natively and for wasm32. The scoring core
//! (`edgerec`) stays serde-free; this crate stands on it, never the other way round.

pub mod edge_metrics;
pub mod error;
pub mod events;
pub mod exposures;
pub mod keys;
pub mod manifest;
pub mod pointer;

pub use error::ApiError;
pub use events::{Event, EventError, EventKind, RawEvent};
pub use exposures::{Exposure, Shown};
pub use manifest::{Manifest, ShardEntry};
