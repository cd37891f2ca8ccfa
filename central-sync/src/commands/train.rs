//! `central-sync train`: train a model directory from an event CSV.

use super::{print_json, DtypeArg, Output, TrainArgs};
use crate::event_log::EventLog;
use crate::kafka::GroupReader;
use crate::store::Store;
use crate::{dataset, events, pipeline, train};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The arguments of `central-sync train`.
#[derive(clap::Args)]
pub struct Args {
    /// Event CSV (user,item,ts[,type,value,lat,lon,geohash,device,tz_offset_min]). Without it,
    /// the events come from the event log (`--event-log`: SQLite, or the whole Kafka topic).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Output model directory (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Optional item metadata CSV (id,title,year,genres with genres joined by '|').
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Row type of the shards.
    #[arg(long, value_enum, default_value = "i8")]
    pub dtype: DtypeArg,
    /// Skip validation tuning and use --alpha/--beta as given.
    #[arg(long)]
    pub no_tune: bool,
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 1.0)]
    pub beta: f32,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args {
        events,
        out,
        items,
        dtype,
        no_tune,
        alpha,
        beta,
        train,
    } = args;
    let started = Instant::now();
    let events = match &events {
        Some(csv) => events::read_csv_strict(csv)?,
        None => read_log(global)?,
    };
    let d = dataset::Dataset::from_events(&events);
    let mut cfg = train.config();
    cfg.alpha = alpha;
    cfg.beta = beta;
    // Settings left to the data are chosen once, so the manifest's `info.config` shows them.
    let cfg = pipeline::resolve_config(&d, &cfg);
    let mut combination = train::Combination::untuned(&cfg);
    let mut tuned = None;
    if !no_tune {
        let t = pipeline::tune(&d, &cfg, global.quiet)?;
        combination = t.combination;
        tuned = Some(t);
    }
    let (mut params, tables) = pipeline::fit(
        &d,
        &d.sequences,
        &cfg,
        None,
        global.quiet,
        "fit (all events)",
    )?;
    let encoder =
        pipeline::fit_encoder(&d, &d.sequences, &cfg, &mut params, &tables, &combination)?;
    let categories = items.as_deref().map(read_items).transpose()?;
    let info = serde_json::json!({
        "events": events.len(), "users": d.users.len(), "config": cfg, "combination": combination,
        "tuned": tuned, "train_seconds": started.elapsed().as_secs_f64(), "encoder": encoder,
    });
    let trained = pipeline::Trained {
        params: &params,
        tables: &tables,
        combination: &combination,
        categories: categories.as_ref(),
        dtype: dtype.core(),
        one_stage: dtype.one_stage(),
    };
    let manifest = pipeline::write(&d, &trained, &cfg, &out, info)?;
    if global.json {
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

/// Every event of the event log, in arrival order. A Kafka topic is read whole, from its start,
/// into a temporary store (deduplicated by id) under a throwaway group that commits nothing.
fn read_log(global: &Output) -> Result<Vec<crate::events::Event>> {
    let (events, source) = match &global.event_log {
        EventLog::Sqlite(path) => {
            let store = Store::open(path)?;
            (store.events_after(0)?, path.display().to_string())
        }
        EventLog::Kafka { brokers, topic } => {
            let dir = tempfile::tempdir()?;
            let mut store = Store::open(&dir.path().join("events.db"))?;
            let group = format!("edgerec-train-{}", std::process::id());
            let mut reader = GroupReader::new(brokers, topic, &group, true)?;
            let idle = std::time::Duration::from_secs(2);
            let consumed =
                reader.catch_up(&mut store, idle, std::time::Duration::from_secs(3600))?;
            tracing::info!(?consumed, "kafka: read the topic");
            (store.events_after(0)?, format!("kafka://{brokers}/{topic}"))
        }
    };
    anyhow::ensure!(
        !events.is_empty(),
        "the event log {source} has no events: import some, or pass --events FILE.csv"
    );
    Ok(events.into_iter().map(|(_, e)| e).collect())
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
