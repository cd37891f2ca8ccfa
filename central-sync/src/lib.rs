//! `central-sync`, edgerec's central service, as a library: the event log, training,
//! evaluation, packing and publishing, and one module per command of the binary (`commands`).
//! `main.rs` parses the command line and calls `commands::<name>::run`.

pub mod ab;
pub mod commands;
pub mod dataset;
pub mod drift;
pub mod encoder;
pub mod eval;
pub mod event_log;
pub mod events;
pub mod exposure_log;
pub mod kafka;
pub mod kv;
pub mod model;
pub mod npy;
pub mod ope;
pub mod pipeline;
pub mod report;
pub mod serve;
pub mod store;
pub mod sync;
pub mod sync_state;
pub mod train;
