//! `central-sync`: edgerec's central service. See `central-sync --help`.

mod dataset;
mod eval;
mod events;
mod model;
mod pipeline;
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
}

impl TrainArgs {
    fn config(&self) -> train::TrainConfig {
        train::TrainConfig {
            dim: self.dim,
            epochs: self.epochs,
            seed: self.seed,
            ..train::TrainConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
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
            let mut embed_weight = 1.0;
            let mut tuned = None;
            if !no_tune {
                let t = pipeline::tune(&d, &cfg, quiet)?;
                tracing::info!(
                    alpha = t.alpha,
                    beta = t.beta,
                    embed_weight = t.embed_weight,
                    validation_ndcg10 = t.validation.ndcg10,
                    "tuned on validation"
                );
                cfg.alpha = t.alpha;
                cfg.beta = t.beta;
                embed_weight = t.embed_weight;
                tuned = Some(t);
            }
            let (params, tables) =
                pipeline::fit(&d, &d.sequences, &cfg, None, quiet, "fit (all events)");
            let categories = items.as_deref().map(read_items).transpose()?;
            let mut spec =
                train::model_spec(&params, &tables, &cfg, dtype.core(), categories.as_ref());
            if let Some(m) = spec.meta.as_mut() {
                m.embed_weight = embed_weight;
            }
            let pop = d.popularity(&d.sequences);
            let mut order: Vec<usize> = (0..pop.len()).collect();
            order.sort_by(|&a, &b| pop[b].total_cmp(&pop[a]).then(a.cmp(&b)));
            let popular = order.iter().take(50).map(|&i| d.items[i].clone()).collect();
            let info = serde_json::json!({
                "events": events.len(), "users": d.users.len(), "config": cfg, "embed_weight": embed_weight,
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
