//! `central-sync report`: a self-contained HTML page of quality, A/B arms, off-policy estimates
//! and the last sync's gate and drift.

use super::Output;
use crate::report::{self, EvalSummary, Inputs};
use crate::{ope, store, sync_state::SyncState};
use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The arguments of `central-sync report`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the page.
    #[arg(long)]
    pub out: PathBuf,
    /// The output of `central-sync eval --json` (quality by session length).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// The output of `central-sync ope --json` (off-policy estimates).
    #[arg(long)]
    pub ope: Option<PathBuf>,
    /// The output of `central-sync ab report --json` (A/B arms).
    #[arg(long)]
    pub ab: Option<PathBuf>,
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not the JSON of {what}", path.display()))
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let eval: Option<EvalSummary> = args
        .eval
        .as_deref()
        .map(|p| read_json(p, "`central-sync eval --json`"))
        .transpose()?;
    let ope: Option<ope::Report> = args
        .ope
        .as_deref()
        .map(|p| read_json(p, "`central-sync ope --json`"))
        .transpose()?;
    let ab = args
        .ab
        .as_deref()
        .map(|p| read_json(p, "`central-sync ab report --json`"))
        .transpose()?;
    // The sync section only when the event log exists and a sync has run (opening would create
    // an empty log).
    let sync = if global.db.exists() {
        let state = SyncState::load(&store::Store::open(&global.db)?)?;
        state.last_sync_ts.is_some().then_some(state)
    } else {
        None
    };
    let html = report::render(&Inputs {
        eval,
        ope,
        ab,
        sync,
        generated_at: crate::sync::now(),
    });
    std::fs::write(&args.out, html)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if !global.quiet {
        println!("wrote {}", args.out.display());
    }
    Ok(0)
}
