//! One module per command of the `central-sync` binary: each holds its clap arguments and
//! its `run`, and the binary's `main.rs` only parses and dispatches.

pub mod ab;
pub mod eval;
pub mod exposures;
pub mod forget;
pub mod import;
pub mod ope;
pub mod pack;
pub mod publish;
pub mod recommend;
pub mod report;
pub mod rollback;
pub mod serve;
pub mod sync;
pub mod train;

use crate::train::TrainConfig;
use anyhow::Result;
use std::path::PathBuf;

/// What every command needs from the global flags.
pub struct Output {
    /// Print machine-readable JSON instead of text.
    pub json: bool,
    /// No progress bars (with `--json`).
    pub quiet: bool,
    /// The local SQLite store: the event log itself, or with Kafka the copy `sync` trains from,
    /// and the sync state either way.
    pub db: PathBuf,
    /// Where events are appended and read from (`--event-log`; SQLite at `db` by default).
    pub event_log: crate::event_log::EventLog,
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Row type of the shards, as a flag.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DtypeArg {
    /// int8 rows; catalogs of 16,384 items or more also get 4-bit first-pass codes, so the edge
    /// scans them in two stages (codes for every item, int8 for the best few hundred).
    I8,
    /// int8 rows without first-pass codes: the edge scores every row exactly (one stage).
    I8Exact,
    F16,
    F32,
}

impl DtypeArg {
    /// Whether the shards skip the first-pass codes (`i8-exact`).
    pub fn one_stage(self) -> bool {
        matches!(self, DtypeArg::I8Exact)
    }

    pub fn core(self) -> edgerec::Dtype {
        match self {
            DtypeArg::I8 | DtypeArg::I8Exact => edgerec::Dtype::I8,
            DtypeArg::F16 => edgerec::Dtype::F16,
            DtypeArg::F32 => edgerec::Dtype::F32,
        }
    }
}

/// The training settings shared by `train`, `eval` and `sync`. Their defaults are
/// [`TrainConfig::default`]'s, so the library and the CLI cannot drift apart.
#[derive(clap::Args, Clone)]
pub struct TrainArgs {
    /// Embedding dimension.
    #[arg(long, default_value_t = TrainConfig::default().dim)]
    pub dim: usize,
    /// Training epochs.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Random seed (training is deterministic for a seed).
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// The trend window: anonymous and short sessions see what was popular this many days
    /// before the request.
    #[arg(long, default_value_t = TrainConfig::default().trend_window_days)]
    pub trend_window_days: u32,
    /// Width of one trend bucket in seconds (finer follows the last hours more closely; the
    /// shard grows with the number of buckets).
    #[arg(long, default_value_t = TrainConfig::default().trend_bucket_s)]
    pub trend_bucket_s: u32,
    /// Epochs of the session encoder's training (0: a model without the encoder, as format 7
    /// models were).
    #[arg(long, default_value_t = TrainConfig::default().encoder_epochs)]
    pub encoder_epochs: usize,
}

impl TrainArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            dim: self.dim,
            epochs: self.epochs,
            seed: self.seed,
            trend_window_days: self.trend_window_days,
            trend_bucket_s: self.trend_bucket_s,
            encoder_epochs: self.encoder_epochs,
            ..TrainConfig::default()
        }
    }
}
