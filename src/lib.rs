//! edgerec: the scoring core of an edge/WebAssembly personalization runtime.
//!
//! A model is a set of checksummed shards ([`format`]) holding quantized item vectors, biases,
//! context tables and item-to-item sequence tables. [`Engine`] validates and assembles them once;
//! after that, [`Engine::recommend`] ranks every item for a visitor's [`Session`] and the
//! request's [`Context`] in one fused SIMD scan, and cannot fail.
//!
//! The crate is pure: no I/O, no JS, no worker types. Its wasm-bindgen API lives in `wasm_api`,
//! compiled only for wasm32; the edge worker and central-sync adapt it to their platforms.
//!
//! ```
//! use edgerec::{Engine, Request, Session, EventType};
//! # fn model() -> Vec<Vec<u8>> { edgerec::testing::tiny_model_shards() }
//! let shards: Vec<Vec<u8>> = model();
//! let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice()))?;
//! let mut session = Session::new();
//! session.observe("item-3", EventType::Click, 1_700_000_000);
//! let top = engine.recommend(&session, &Request { k: 5, ..Request::default() });
//! assert!(top.iter().all(|r| engine.item_id(r.index) != Some("item-3")));
//! # Ok::<(), edgerec::Error>(())
//! ```

pub mod coarse;
pub mod context;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod first_pass;
pub mod format;
pub mod hash;
pub mod kernels;
pub mod math;
mod ranker;
pub mod session;
pub mod shard;
#[doc(hidden)]
#[cfg(any(feature = "writer", test))]
pub mod testing;
pub mod topk;
#[cfg(target_arch = "wasm32")]
mod wasm_api;
#[cfg(any(feature = "writer", test))]
pub mod writer;

pub use context::{Context, Device};
pub use engine::{Engine, Exploration, Recommendation, Request};
pub use error::{Error, ErrorKind, Result};
pub use format::{Dtype, Meta};
pub use session::{Event, EventType, Session};
pub use shard::{Shard, ShardView};
