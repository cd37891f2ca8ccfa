//! `central-sync exposures`: the lists the edge served, joined with the clicks that name them,
//! written as the exposure CSV that `central-sync ope` reads.

use super::{print_json, Output};
use crate::{exposure_log, store::Store};
use anyhow::{Context as _, Result};
use std::path::PathBuf;

/// The arguments of `central-sync exposures`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the exposure CSV (one row per item shown: ts, user, session, item,
    /// position, reward, propensity, model, arm, exposure).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let store = Store::open(&global.db)?;
    let exposures = store.exposures()?;
    let events: Vec<_> = store.events_after(0)?.into_iter().map(|(_, e)| e).collect();
    let rows = exposure_log::join(&exposures, &events);
    let mut writer = csv::Writer::from_path(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    for row in &rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    let served = exposure_log::summarize(&rows);
    if global.json {
        print_json(&serde_json::json!({
            "exposures": exposures.len(), "rows": rows.len(), "out": args.out, "served": served,
        }))?;
    } else {
        println!(
            "{} lists served ({} items shown) written to {}",
            exposures.len(),
            rows.len(),
            args.out.display()
        );
        for s in &served {
            let arm = if s.arm.is_empty() { "-" } else { &s.arm };
            println!(
                "  model {} arm {arm}: {} lists, {} with a click ({:.2}%), {} clicks",
                s.model,
                s.lists,
                s.lists_clicked,
                100.0 * s.lists_clicked as f64 / s.lists.max(1) as f64,
                s.clicks
            );
        }
    }
    Ok(0)
}
