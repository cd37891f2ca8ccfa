//! `central-sync`: edgerec's central service. See `central-sync --help`; the commands live in
//! the library (`central_sync::commands`).

use anyhow::Result;
use central_sync::commands;
use central_sync::event_log::EventLog;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:
  central-sync train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out models/ml100k
  central-sync eval --events data/ml-100k/events.csv
  central-sync recommend --model models/ml100k --sessions sessions.jsonl --k 10
  central-sync pack --embeddings vectors.npy --ids ids.txt --out models/external --dtype i8
  central-sync publish --model models/ml100k --to local
  central-sync publish --model models/ml100k --to dir:/tmp/kv
  central-sync rollback --to local
  central-sync ope --exposures data/obd/bts.csv --policy uniform --on-policy-exposures data/obd/random.csv";

#[derive(Parser)]
#[command(name = "central-sync", version, about = "edgerec's central service: events in, models out to the edge.", after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (error, warn, info, debug), also from RUST_LOG.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// The local SQLite store: the event log itself, or with a Kafka event log the copy `sync`
    /// trains from. Same as `--event-log sqlite:PATH`.
    #[arg(
        long,
        global = true,
        env = "EDGEREC_DB",
        default_value = ".edgerec/events.db"
    )]
    db: PathBuf,
    /// Where events are appended and read: sqlite:PATH (the default, at --db) or
    /// kafka://HOST:PORT[,HOST:PORT...]/TOPIC.
    #[arg(long, global = true, env = "EDGEREC_EVENT_LOG")]
    event_log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import an event CSV into the event log (bad rows are reported by line and skipped).
    #[command(after_help = "Example:\n  central-sync import data/ml-100k/events.csv")]
    Import(commands::import::Args),
    /// Run the ingest endpoint (POST /v1/events), /healthz and Prometheus /metrics.
    #[command(
        after_help = "Example:\n  EDGEREC_INGEST_TOKEN=secret central-sync serve --addr 127.0.0.1:8788"
    )]
    Serve(commands::serve::Args),
    /// The cron entry point: incremental training, hold-out evaluation, publish if no regression.
    #[command(
        after_help = "Exit status: 0 published or nothing new, 3 held back (regression), 1 error.\nExample:\n  central-sync sync --to local --margin 0.02"
    )]
    Sync(commands::sync::Args),
    /// Train a model from an event CSV into a model directory (manifest.json + shards).
    #[command(
        after_help = "Examples:\n  central-sync train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out models/ml100k\n  central-sync train --event-log kafka://127.0.0.1:9092/edgerec.events --out models/latest"
    )]
    Train(commands::train::Args),
    /// Evaluate on an event CSV with the leave-last-out protocol, baselines in the same run.
    #[command(
        after_help = "Example:\n  central-sync eval --events data/ml-100k/events.csv --json"
    )]
    Eval(commands::eval::Args),
    /// Batch recommendations through the edge's scoring code on a model's shards.
    #[command(
        after_help = "Input lines: {\"id\": \"u1\", \"items\": [\"i1\", \"i2\"], \"ts\": 978300760, \"context\": {\"geohash\": \"9q8yy\", \"device\": \"mobile\", \"tz_offset_min\": -480}}\nExample:\n  central-sync recommend --model models/ml100k --sessions sessions.jsonl --k 10"
    )]
    Recommend(commands::recommend::Args),
    /// Pack externally trained item embeddings (an N x D float32 .npy, one id per line) into a model.
    #[command(
        after_help = "Example:\n  central-sync pack --embeddings vectors.npy --ids ids.txt --out models/external --dtype i8"
    )]
    Pack(commands::pack::Args),
    /// Publish a model directory to edge KV: shards and manifest first, the pointer last; or an
    /// A/B split of published versions (`--split V1=90,V2=10`).
    #[command(
        after_help = "Targets: local (wrangler's local KV, served by `wrangler dev`), cloudflare (KV REST API;\nCLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID, EDGEREC_KV_NAMESPACE_ID), dir:PATH (one file per key).\nExample:\n  central-sync publish --model models/ml100k --to local"
    )]
    Publish(commands::publish::Args),
    /// Point models/current back at an earlier version (default: the one before current).
    #[command(
        after_help = "Example:\n  central-sync rollback --to local\n  central-sync rollback --to dir:/tmp/kv --version v1763860000-1a2b3c4d"
    )]
    Rollback(commands::rollback::Args),
    /// Off-policy evaluation: a policy's reward estimated from exposures logged under another
    /// policy (IPS, SNIPS, doubly robust, with bootstrap intervals).
    #[command(
        after_help = "Example (the Open Bandit sample, fetched by setup):\n  central-sync ope --exposures data/obd/bts.csv --policy uniform --on-policy-exposures data/obd/random.csv"
    )]
    Ope(commands::ope::Args),
    /// Write the lists the edge served (exposures), joined with the clicks that name them, as
    /// the exposure CSV `ope` reads.
    #[command(
        after_help = "Example:\n  central-sync exposures --out exposures.csv\n  central-sync ope --exposures exposures.csv --policy model --model models/candidate"
    )]
    Exposures(commands::exposures::Args),
    /// A/B splits: compare the arms on the exposure log (`ab report`).
    #[command(
        after_help = "Example:\n  central-sync publish --model models/candidate --to local --split v1764000000000-aa=50,v1764100000000-bb=50\n  central-sync ab report --from local"
    )]
    Ab(commands::ab::Args),
    /// A self-contained HTML page: quality by session length, off-policy estimates, the last
    /// sync's gate and drift.
    #[command(
        after_help = "Example:\n  central-sync eval --events data/ml-100k/events.csv --json > eval.json\n  central-sync ope --exposures data/obd/bts.csv --on-policy-exposures data/obd/random.csv --json > ope.json\n  central-sync report --eval eval.json --ope ope.json --out report.html"
    )]
    Report(commands::report::Args),
    /// Delete a visitor's events (erasure) or events older than a retention window.
    #[command(
        after_help = "After a user's events are deleted the next sync refits from scratch, so the published model stops carrying them.\nExamples:\n  central-sync forget --user v0123456789abcdef\n  central-sync forget --older-than-days 400"
    )]
    Forget(commands::forget::Args),
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let event_log = match cli.event_log.as_deref() {
        Some(url) => EventLog::parse(url)?,
        None => EventLog::Sqlite(cli.db.clone()),
    };
    let db = match &event_log {
        EventLog::Sqlite(path) => path.clone(),
        EventLog::Kafka { .. } => cli.db,
    };
    let out = commands::Output {
        json: cli.json,
        quiet: cli.json,
        db,
        event_log,
    };
    match cli.command {
        Command::Import(args) => commands::import::run(args, &out),
        Command::Serve(args) => commands::serve::run(args, &out),
        Command::Sync(args) => commands::sync::run(args, &out),
        Command::Train(args) => commands::train::run(args, &out),
        Command::Eval(args) => commands::eval::run(args, &out),
        Command::Recommend(args) => commands::recommend::run(args, &out),
        Command::Pack(args) => commands::pack::run(args, &out),
        Command::Publish(args) => commands::publish::run(args, &out),
        Command::Rollback(args) => commands::rollback::run(args, &out),
        Command::Forget(args) => commands::forget::run(args, &out),
        Command::Ope(args) => commands::ope::run(args, &out),
        Command::Exposures(args) => commands::exposures::run(args, &out),
        Command::Ab(args) => commands::ab::run(args, &out),
        Command::Report(args) => commands::report::run(args, &out),
    }
}
