//! `central-sync import`: import an event CSV into the event log.

use super::{print_json, Output};
use crate::{events, store};
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync import`.
#[derive(clap::Args)]
pub struct Args {
    /// Event CSV (user,item,ts[,id,type,value,lat,lon,geohash,device,tz_offset_min]).
    pub file: PathBuf,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { file } = args;
    let mut store = store::Store::open(&global.db)?;
    let bar = if global.quiet {
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
    if global.json {
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
            global.db.display()
        );
    }
    Ok(if errors.is_empty() { 0 } else { 2 })
}
