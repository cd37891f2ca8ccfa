//! `central-sync`: edgerec's central service. See `central-sync --help`.

mod dataset;
mod eval;
mod events;
mod kv;
mod model;
mod npy;
mod pipeline;
mod serve;
mod store;
mod sync;
mod train;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

const EXAMPLES: &str = "Examples:
  central-sync train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out models/ml100k
  central-sync eval --events data/ml-100k/events.csv
  central-sync recommend --model models/ml100k --sessions sessions.jsonl --k 10
  central-sync pack --embeddings vectors.npy --ids ids.txt --out models/external --dtype i8
  central-sync publish --model models/ml100k --to local
  central-sync publish --model models/ml100k --to dir:/tmp/kv
  central-sync rollback --to local";

#[derive(Parser)]
#[command(name = "central-sync", version, about = "edgerec's central service: events in, models out to the edge.", after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (error, warn, info, debug), also from RUST_LOG.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// The event log (SQLite).
    #[arg(
        long,
        global = true,
        env = "EDGEREC_DB",
        default_value = ".edgerec/events.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    I8,
    F16,
    F32,
}

impl DtypeArg {
    fn core(self) -> edgerec::Dtype {
        match self {
            DtypeArg::I8 => edgerec::Dtype::I8,
            DtypeArg::F16 => edgerec::Dtype::F16,
            DtypeArg::F32 => edgerec::Dtype::F32,
        }
    }
}

#[derive(clap::Args, Clone)]
struct TrainArgs {
    /// Embedding dimension.
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Random seed (training is deterministic for a seed).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The trend window: anonymous and short sessions see what was popular this many days
    /// before the request.
    #[arg(long, default_value_t = 30)]
    trend_window_days: u32,
    /// Width of one trend bucket in seconds (finer follows the last hours more closely; the
    /// shard grows with the number of buckets).
    #[arg(long, default_value_t = 21_600)]
    trend_bucket_s: u32,
}

impl TrainArgs {
    fn config(&self) -> train::TrainConfig {
        train::TrainConfig {
            dim: self.dim,
            epochs: self.epochs,
            seed: self.seed,
            trend_window_days: self.trend_window_days,
            trend_bucket_s: self.trend_bucket_s,
            ..train::TrainConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Import an event CSV into the event log (bad rows are reported by line and skipped).
    #[command(after_help = "Example:\n  central-sync import data/ml-100k/events.csv")]
    Import {
        /// Event CSV (user,item,ts[,id,type,value,lat,lon,geohash,device,tz_offset_min]).
        file: PathBuf,
    },
    /// Run the ingest endpoint (POST /v1/events), /healthz and Prometheus /metrics.
    #[command(
        after_help = "Example:\n  EDGEREC_INGEST_TOKEN=secret central-sync serve --addr 127.0.0.1:8788"
    )]
    Serve {
        #[arg(long, default_value = "127.0.0.1:8788")]
        addr: String,
        /// Bearer token clients must send.
        #[arg(long, env = "EDGEREC_INGEST_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// The cron entry point: incremental training, hold-out evaluation, publish if no regression.
    #[command(
        after_help = "Exit status: 0 published or nothing new, 3 held back (regression), 1 error.\nExample:\n  central-sync sync --to local --margin 0.02"
    )]
    Sync {
        #[arg(long)]
        to: String,
        /// Working directory for the current and candidate models.
        #[arg(long, default_value = ".edgerec/models")]
        work_dir: PathBuf,
        /// Largest tolerated relative drop of hold-out NDCG@10 (0.02 = 2%).
        #[arg(long, default_value_t = 0.02)]
        margin: f64,
        /// Refit everything now instead of an incremental update.
        #[arg(long)]
        full: bool,
        /// Do a full refit every N syncs.
        #[arg(long, default_value_t = 10)]
        full_every: u32,
        #[arg(long, default_value_t = 3)]
        keep: usize,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Train a model from an event CSV into a model directory (manifest.json + shards).
    #[command(
        after_help = "Example:\n  central-sync train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out models/ml100k"
    )]
    Train {
        /// Event CSV (user,item,ts[,type,value,lat,lon,geohash,device,tz_offset_min]).
        #[arg(long)]
        events: PathBuf,
        /// Output model directory (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Optional item metadata CSV (id,title,year,genres with genres joined by '|').
        #[arg(long)]
        items: Option<PathBuf>,
        /// Row type of the shards.
        #[arg(long, value_enum, default_value = "i8")]
        dtype: DtypeArg,
        /// Skip validation tuning and use --alpha/--beta as given.
        #[arg(long)]
        no_tune: bool,
        #[arg(long, default_value_t = 1.0)]
        alpha: f32,
        #[arg(long, default_value_t = 1.0)]
        beta: f32,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Evaluate on an event CSV with the leave-last-out protocol, baselines in the same run.
    #[command(
        after_help = "Example:\n  central-sync eval --events data/ml-100k/events.csv --json"
    )]
    Eval {
        #[arg(long)]
        events: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Batch recommendations through the edge's scoring code on a model's shards.
    #[command(
        after_help = "Input lines: {\"id\": \"u1\", \"items\": [\"i1\", \"i2\"], \"ts\": 978300760, \"context\": {\"geohash\": \"9q8yy\", \"device\": \"mobile\", \"tz_offset_min\": -480}}\nExample:\n  central-sync recommend --model models/ml100k --sessions sessions.jsonl --k 10"
    )]
    Recommend {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        sessions: PathBuf,
        #[arg(long, default_value_t = 10)]
        k: usize,
    },
    /// Pack externally trained item embeddings (an N x D float32 .npy, one id per line) into a model.
    #[command(
        after_help = "Example:\n  central-sync pack --embeddings vectors.npy --ids ids.txt --out models/external --dtype i8"
    )]
    Pack {
        #[arg(long)]
        embeddings: PathBuf,
        #[arg(long)]
        ids: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "i8")]
        dtype: DtypeArg,
    },
    /// Publish a model directory to edge KV: shards and manifest first, the pointer last.
    #[command(
        after_help = "Targets: local (wrangler's local KV, served by `wrangler dev`), cloudflare (KV REST API;\nCLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID, EDGEREC_KV_NAMESPACE_ID), dir:PATH (one file per key).\nExample:\n  central-sync publish --model models/ml100k --to local"
    )]
    Publish {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        to: String,
        /// Versions to keep for rollback (at least 2).
        #[arg(long, default_value_t = 3)]
        keep: usize,
    },
    /// Point models/current back at an earlier version (default: the one before current).
    #[command(
        after_help = "Example:\n  central-sync rollback --to local\n  central-sync rollback --to dir:/tmp/kv --version v1763860000-1a2b3c4d"
    )]
    Rollback {
        #[arg(long)]
        to: String,
        #[arg(long)]
        version: Option<String>,
    },
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

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<i32> {
    let quiet = cli.json;
    match cli.command {
        Command::Import { file } => {
            let mut store = store::Store::open(&cli.db)?;
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new_spinner()
            };
            let (mut events, errors) = events::read_csv(&file, |n| {
                if n % 10_000 == 0 {
                    bar.set_message(format!("read {n} rows"));
                    bar.tick();
                }
            })?;
            bar.finish_and_clear();
            for e in &mut events {
                if e.id.is_none() {
                    e.id = Some(store::synthetic_id(e));
                }
            }
            let inserted = store.insert(&events)?;
            for e in errors.iter().take(20) {
                tracing::warn!("{}:{}: {}", file.display(), e.line, e.message);
            }
            if cli.json {
                print_json(
                    &serde_json::json!({"stored": inserted.stored, "duplicates": inserted.duplicates, "rejected": errors}),
                )?;
            } else {
                println!(
                    "imported {}: {} stored, {} duplicates, {} rejected rows{} -> {}",
                    file.display(),
                    inserted.stored,
                    inserted.duplicates,
                    errors.len(),
                    if errors.len() > 20 {
                        " (first 20 shown above)"
                    } else {
                        ""
                    },
                    cli.db.display()
                );
            }
            Ok(if errors.is_empty() { 0 } else { 2 })
        }
        Command::Serve { addr, token } => {
            anyhow::ensure!(
                token.len() >= 8,
                "the ingest token must be at least 8 characters"
            );
            let store = store::Store::open(&cli.db)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve::run(store, &addr, token))?;
            Ok(0)
        }
        Command::Sync {
            to,
            work_dir,
            margin,
            full,
            full_every,
            keep,
            train,
        } => {
            let mut store = store::Store::open(&cli.db)?;
            let opts = sync::SyncOptions {
                target: &to,
                work_dir: &work_dir,
                margin,
                full,
                full_every,
                keep,
                config: train.config(),
                quiet,
            };
            let (code, report) = sync::run(&mut store, &opts)?;
            if cli.json {
                print_json(&report)?;
            } else {
                println!(
                    "sync {}: {} new of {} events, {} training in {:.1} s{}, hold-out NDCG@10 {}, PSI {:.4}; {}",
                    report.status,
                    report.new_events,
                    report.total_events,
                    report.mode,
                    report.train_seconds,
                    report.incremental_events_per_second.map(|r| format!(" ({r:.0} events/s)")).unwrap_or_default(),
                    report.holdout.map(|m| format!("{:.4}", m.ndcg10)).unwrap_or_else(|| "-".into()),
                    report.popularity_psi,
                    report.reason
                );
            }
            Ok(code)
        }
        Command::Train {
            events,
            out,
            items,
            dtype,
            no_tune,
            alpha,
            beta,
            train,
        } => {
            let started = Instant::now();
            let events = events::read_csv_strict(&events)?;
            let d = dataset::Dataset::from_events(&events);
            let mut cfg = train.config();
            cfg.alpha = alpha;
            cfg.beta = beta;
            let mut combination = train::Combination::untuned(&cfg);
            let mut tuned = None;
            if !no_tune {
                let t = pipeline::tune(&d, &cfg, quiet)?;
                combination = t.combination;
                tuned = Some(t);
            }
            let (params, tables) =
                pipeline::fit(&d, &d.sequences, &cfg, None, quiet, "fit (all events)");
            let categories = items.as_deref().map(read_items).transpose()?;
            let spec = train::model_spec(
                &params,
                &tables,
                &cfg,
                dtype.core(),
                &combination,
                categories.as_ref(),
            );
            let popular = d.most_popular(50);
            let info = serde_json::json!({
                "events": events.len(), "users": d.users.len(), "config": cfg, "combination": combination,
                "tuned": tuned, "train_seconds": started.elapsed().as_secs_f64(),
            });
            let manifest =
                model::write_dir(&spec, &out, popular, info, edgerec::format::MAX_SHARD_BYTES)?;
            std::fs::write(out.join("params.json"), serde_json::to_vec(&params)?)?;
            if cli.json {
                print_json(&manifest)?;
            } else {
                println!(
                    "trained {} on {} events ({} users, {} items) in {:.1} s -> {} ({} shard(s), {} bytes)",
                    manifest.version,
                    events.len(),
                    d.users.len(),
                    d.items.len(),
                    started.elapsed().as_secs_f64(),
                    out.display(),
                    manifest.shards.len(),
                    manifest.shards.iter().map(|s| s.bytes).sum::<u64>()
                );
            }
            Ok(0)
        }
        Command::Eval { events, train } => {
            let events = events::read_csv_strict(&events)?;
            let d = dataset::Dataset::from_events(&events);
            let report = pipeline::evaluate(&d, &train.config(), quiet)?;
            if cli.json {
                print_json(&report)?;
            } else {
                print!("{}", report.table());
            }
            Ok(0)
        }
        Command::Recommend { model, sessions, k } => recommend(&model, &sessions, k),
        Command::Pack {
            embeddings,
            ids,
            out,
            dtype,
        } => {
            let (n, d, vectors) = npy::read_f32_matrix(&embeddings)?;
            let text = std::fs::read_to_string(&ids)
                .with_context(|| format!("cannot read {}", ids.display()))?;
            let id_list: Vec<String> = text
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            anyhow::ensure!(
                id_list.len() == n,
                "{} has {} ids but {} has {n} rows",
                ids.display(),
                id_list.len(),
                embeddings.display()
            );
            let spec = edgerec::writer::ModelSpec {
                meta: Some(edgerec::Meta::new(d as u32, dtype.core(), n as u32)),
                ids: id_list.clone(),
                vectors,
                ..Default::default()
            };
            let info = serde_json::json!({"packed_from": embeddings.display().to_string()});
            let manifest = model::write_dir(
                &spec,
                &out,
                id_list.into_iter().take(50).collect(),
                info,
                edgerec::format::MAX_SHARD_BYTES,
            )?;
            if cli.json {
                print_json(&manifest)?;
            } else {
                println!(
                    "packed {n} x {d} embeddings into {} ({}, {} shard(s))",
                    out.display(),
                    manifest.version,
                    manifest.shards.len()
                );
            }
            Ok(0)
        }
        Command::Publish { model, to, keep } => {
            let mut store = kv::open(&to)?;
            let p = kv::publish(store.as_mut(), &model, keep)?;
            if cli.json {
                print_json(&p)?;
            } else {
                println!(
                    "published {} to {to} ({} keys, {} bytes; pointer moved from {}){}",
                    p.version,
                    p.keys_written,
                    p.bytes_written,
                    p.previous.as_deref().unwrap_or("nothing"),
                    if p.collected.is_empty() {
                        String::new()
                    } else {
                        format!("; collected {}", p.collected.join(", "))
                    }
                );
            }
            Ok(0)
        }
        Command::Rollback { to, version } => {
            let mut store = kv::open(&to)?;
            let (from, target) = kv::rollback(store.as_mut(), version.as_deref())?;
            // The sync's warm-start state belongs to the version rolled back from: the next
            // sync fits from scratch.
            if cli.db.exists() {
                let events = store::Store::open(&cli.db)?;
                events.set_state("force_full", "1")?;
                events.set_state("model_version", &target)?;
            }
            if cli.json {
                print_json(&serde_json::json!({"from": from, "to": target}))?;
            } else {
                println!(
                    "models/current: {} -> {target}",
                    from.as_deref().unwrap_or("nothing")
                );
            }
            Ok(0)
        }
    }
}

/// Reads items.csv (id,title,year,genres) into id → genre names.
fn read_items(path: &Path) -> Result<train::Categories> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let id_col = headers
        .iter()
        .position(|h| h == "id")
        .with_context(|| format!("{}: no `id` column", path.display()))?;
    let genre_col = headers
        .iter()
        .position(|h| h == "genres")
        .with_context(|| format!("{}: no `genres` column", path.display()))?;
    let mut out = train::Categories::new();
    for (n, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}:{}", path.display(), n + 2))?;
        let genres = r
            .get(genre_col)
            .unwrap_or("")
            .split('|')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        out.insert(r.get(id_col).unwrap_or("").to_string(), genres);
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct SessionLine {
    id: serde_json::Value,
    #[serde(default)]
    items: Vec<String>,
    ts: Option<i64>,
    #[serde(default)]
    context: SessionContext,
}

#[derive(serde::Deserialize, Default)]
struct SessionContext {
    geohash: Option<String>,
    device: Option<String>,
    tz_offset_min: Option<i32>,
}

fn recommend(model_dir: &Path, sessions: &Path, k: usize) -> Result<i32> {
    use std::io::{BufRead, Write};
    let (_, engine) = model::load_engine(model_dir)?;
    let file = std::fs::File::open(sessions)
        .with_context(|| format!("cannot open {}", sessions.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", sessions.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: SessionLine = match serde_json::from_str(&line) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}:{}: {e}", sessions.display(), n + 1);
                bad += 1;
                continue;
            }
        };
        let device = match parsed
            .context
            .device
            .as_deref()
            .map(edgerec::Device::from_name)
            .transpose()
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}:{}: {e}", sessions.display(), n + 1);
                bad += 1;
                continue;
            }
        };
        // Items in time order; without timestamps they are spaced a second apart, ending at ts.
        let end = parsed.ts.unwrap_or(0).max(parsed.items.len() as i64);
        let mut session = edgerec::Session::new();
        for (i, item) in parsed.items.iter().enumerate() {
            let t = end - (parsed.items.len() - 1 - i) as i64;
            session.observe(item, edgerec::EventType::View, t.max(0) as u64);
        }
        let request = edgerec::Request {
            k,
            context: edgerec::Context {
                geohash: parsed.context.geohash,
                device,
                ts: parsed.ts,
                tz_offset_min: parsed.context.tz_offset_min.unwrap_or(0),
            },
            exclude: parsed.items.clone(),
            ..edgerec::Request::default()
        };
        let recs = engine.recommend(&session, &request);
        let ids: Vec<&str> = recs
            .iter()
            .filter_map(|r| engine.item_id(r.index))
            .collect();
        let scores: Vec<f32> = recs.iter().map(|r| r.score).collect();
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"id": parsed.id, "items": ids, "scores": scores}),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(if bad > 0 { 2 } else { 0 })
}
