//! `central-sync recommend`: batch recommendations through the edge scoring code.

use super::Output;
use crate::model;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// The arguments of `central-sync recommend`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub sessions: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
}

/// Writes one JSON line per input line, whatever `--json` says.
pub fn run(args: Args, _global: &Output) -> Result<i32> {
    let Args { model, sessions, k } = args;
    recommend(&model, &sessions, k)
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
