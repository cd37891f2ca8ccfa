//! `central-sync sync`: the cron entry point.

use super::{print_json, Output, TrainArgs};
use crate::drift::DriftLimits;
use crate::event_log::EventLog;
use crate::kafka::GroupReader;
use crate::{store, sync};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

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
    /// With a Kafka event log: the consumer group `sync` reads the topic as.
    #[arg(long, default_value = "edgerec-sync")]
    pub group: String,
    /// With a Kafka event log: stop reading once the topic was quiet this long (ms).
    #[arg(long, default_value_t = 2000)]
    pub kafka_idle_ms: u64,
    /// Delete events older than this many days from the log before training (0 keeps all).
    #[arg(long, default_value_t = 0)]
    pub retention_days: u32,
    /// Drift: KS statistic (of the top-10 scores or of the listed items' popularity, candidate
    /// against served model) above which the candidate counts as drifted.
    #[arg(long, default_value_t = DriftLimits::default().max_statistic)]
    pub drift_max_ks: f64,
    /// Drift: ... provided the KS p-value is below this.
    #[arg(long, default_value_t = DriftLimits::default().alpha)]
    pub drift_alpha: f64,
    /// Hold the publish back (exit 3) when the candidate drifted; otherwise drift is reported only.
    #[arg(long)]
    pub hold_on_drift: bool,
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
        drift_max_ks,
        drift_alpha,
        hold_on_drift,
        group,
        kafka_idle_ms,
        train,
    } = args;
    let mut store = store::Store::open(&global.db)?;
    // With Kafka: copy what arrived since the group's offsets into the local store first. A new
    // (empty) store reads the whole topic.
    let reader = match &global.event_log {
        EventLog::Sqlite(_) => None,
        EventLog::Kafka { brokers, topic } => {
            let from_start = store.count()? == 0;
            let mut reader = GroupReader::new(brokers, topic, &group, from_start)?;
            let idle = Duration::from_millis(kafka_idle_ms);
            let consumed = reader.catch_up(&mut store, idle, Duration::from_secs(600))?;
            tracing::info!(?consumed, "kafka: read");
            crash_point("after-consume");
            Some((reader, consumed))
        }
    };
    let opts = sync::SyncOptions {
        target: &to,
        work_dir: &work_dir,
        margin,
        full,
        full_every,
        keep,
        retention_days,
        drift: DriftLimits {
            max_statistic: drift_max_ks,
            alpha: drift_alpha,
            hold: hold_on_drift,
        },
        config: train.config(),
        quiet: global.quiet,
    };
    // On an error nothing is committed: the next run reads these messages again.
    let (code, mut report) = sync::run(&mut store, &opts)?;
    if let Some((reader, consumed)) = reader {
        report.kafka = Some(consumed);
        // Offsets move only once the events are in a published model, or deliberately held
        // back: a crash before this line re-reads them, and the store drops the duplicates.
        crash_point("before-commit");
        reader.commit()?;
    }
    if global.json {
        print_json(&report)?;
    } else {
        println!(
            "sync {}: {} new of {} events, {} training in {:.1} s{}{}, hold-out NDCG@10 {} (served model {}), PSI {:.4}{}; {}",
            report.status,
            report.new_events,
            report.total_events,
            report.mode,
            report.train_seconds,
            report.incremental_events_per_second.map(|r| format!(" ({r:.0} events/s)")).unwrap_or_default(),
            report.encoder.map(|e| format!(", session encoder {} examples x {} epochs in {:.1} s", e.examples, e.epochs, e.seconds)).unwrap_or_default(),
            report.holdout.map(|m| format!("{:.4}", m.ndcg10)).unwrap_or_else(|| "-".into()),
            report.served.map(|m| format!("{:.4}", m.ndcg10)).unwrap_or_else(|| "-".into()),
            report.popularity_psi,
            report.drift.as_ref().map(|d| format!(", {}", d.describe())).unwrap_or_default(),
            report.reason
        );
    }
    Ok(code)
}

/// Failure injection for the crash tests: `EDGEREC_CRASH_AT=<point>` ends the process there,
/// as a kill would. Points: `after-consume`, `before-commit`.
fn crash_point(point: &str) {
    if std::env::var("EDGEREC_CRASH_AT").as_deref() == Ok(point) {
        eprintln!("crashing at {point} (EDGEREC_CRASH_AT)");
        std::process::exit(9);
    }
}
