//! `central-sync eval`: the evaluation protocol with its baselines.

use super::{print_json, Output, TrainArgs};
use crate::{dataset, events, pipeline};
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync eval`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub events: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { events, train } = args;
    let events = events::read_csv_strict(&events)?;
    let d = dataset::Dataset::from_events(&events);
    let report = pipeline::evaluate(&d, &train.config(), global.quiet)?;
    if global.json {
        print_json(&report)?;
    } else {
        print!("{}", report.table());
    }
    Ok(0)
}
