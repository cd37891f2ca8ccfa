//! Validation NDCG@10 by session length for several learning-rate factors of the query map
//! (`TrainConfig::transform_lr_scale`; 0 trains no map), everything else at its default. Each
//! setting is fitted on the validation split's training part and tuned on validation, as
//! `central-sync eval` does before it refits for the test split; the test split is not used.
//! This is how the default was chosen (docs/FIGURES.md).
//!
//! ```text
//! cargo run --release -p central-sync --example query_map -- data/ml-100k/events.csv \
//!     0 0.005 0.01 0.02 0.04 0.1 0.5 0:11 0.01:11
//! ```
//! Each argument is `SCALE` or `SCALE:SEED` (the training seed, 7 by default).

use anyhow::{Context, Result};
use central_sync::{dataset, eval::Clicks, events, pipeline, train::TrainConfig};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: query_map EVENTS.csv SCALE[:SEED]...")?;
    let events = events::read_csv_strict(std::path::Path::new(&path))?;
    let d = dataset::Dataset::from_events(&events);
    let lengths: Vec<String> = Clicks::TABLE.iter().map(|c| c.label()).collect();
    println!("validation NDCG@10 by clicks: {}", lengths.join(" / "));
    for spec in args {
        let (scale, seed) = spec.split_once(':').unwrap_or((&spec, "7"));
        let cfg = TrainConfig {
            transform_lr_scale: scale.parse().context("scale")?,
            seed: seed.parse().context("seed")?,
            ..TrainConfig::default()
        };
        let started = std::time::Instant::now();
        let tuned = pipeline::tune(&d, &cfg, true)?;
        let ndcg: Vec<String> = tuned
            .validation
            .iter()
            .map(|m| format!("{:.4}", m.ndcg10))
            .collect();
        println!(
            "scale {scale}, seed {seed}: {} ({:.1} s)",
            ndcg.join(" / "),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
