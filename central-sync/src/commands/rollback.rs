//! `central-sync rollback`: point models/current back at an earlier version.

use super::{print_json, Output};
use crate::{kv, store};
use anyhow::Result;

/// The arguments of `central-sync rollback`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub version: Option<String>,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { to, version } = args;
    let mut store = kv::open(&to)?;
    let (from, target) = kv::rollback(store.as_mut(), version.as_deref())?;
    // The sync's warm-start state belongs to the version rolled back from: the next
    // sync fits from scratch.
    if global.db.exists() {
        let events = store::Store::open(&global.db)?;
        let mut state = crate::sync_state::SyncState::load(&events)?;
        state.force_full = true;
        state.model_version = Some(target.clone());
        state.save(&events)?;
    }
    if global.json {
        print_json(&serde_json::json!({"from": from, "to": target}))?;
    } else {
        println!(
            "models/current: {} -> {target}",
            from.as_deref().unwrap_or("nothing")
        );
    }
    Ok(0)
}
