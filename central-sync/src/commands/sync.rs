//! `central-sync sync`: the cron entry point.

use super::{print_json, Output, TrainArgs};
use crate::{store, sync};
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync sync`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub to: String,
    /// Working directory for the current and candidate models.
    #[arg(long, default_value = ".edgerec/models")]
    pub work_dir: PathBuf,
    /// Largest tolerated relative drop of hold-out NDCG@10 (0.02 = 2%).
    #[arg(long, default_value_t = 0.02)]
    pub margin: f64,
    /// Refit everything now instead of an incremental update.
    #[arg(long)]
    pub full: bool,
    /// Do a full refit every N syncs.
    #[arg(long, default_value_t = 10)]
    pub full_every: u32,
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Delete events older than this many days from the log before training (0 keeps all).
    #[arg(long, default_value_t = 0)]
    pub retention_days: u32,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args {
        to,
        work_dir,
        margin,
        full,
        full_every,
        keep,
        retention_days,
        train,
    } = args;
    let mut store = store::Store::open(&global.db)?;
    let opts = sync::SyncOptions {
        target: &to,
        work_dir: &work_dir,
        margin,
        full,
        full_every,
        keep,
        retention_days,
        config: train.config(),
        quiet: global.quiet,
    };
    let (code, report) = sync::run(&mut store, &opts)?;
    if global.json {
        print_json(&report)?;
    } else {
        println!(
            "sync {}: {} new of {} events, {} training in {:.1} s{}, hold-out NDCG@10 {} (served model {}), PSI {:.4}; {}",
            report.status,
            report.new_events,
            report.total_events,
            report.mode,
            report.train_seconds,
            report.incremental_events_per_second.map(|r| format!(" ({r:.0} events/s)")).unwrap_or_default(),
            report.holdout.map(|m| format!("{:.4}", m.ndcg10)).unwrap_or_else(|| "-".into()),
            report.served.map(|m| format!("{:.4}", m.ndcg10)).unwrap_or_else(|| "-".into()),
            report.popularity_psi,
            report.reason
        );
    }
    Ok(code)
}
