//! `central-sync forget`: delete a visitor's events (an erasure request) or events older than a
//! retention window from the event log.

use super::{print_json, Output};
use crate::store::Store;
use crate::sync_state::SyncState;
use anyhow::{ensure, Result};

/// The arguments of `central-sync forget`.
#[derive(clap::Args)]
pub struct Args {
    /// Delete every event of this user id (repeatable). Edge visitors are `v` + 16 hex digits.
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// Delete events that happened more than this many days ago.
    #[arg(long)]
    pub older_than_days: Option<u32>,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    ensure!(
        !args.users.is_empty() || args.older_than_days.is_some(),
        "say what to forget: --user ID and/or --older-than-days N"
    );
    let mut store = Store::open(&global.db)?;
    let mut by_user = 0;
    for user in &args.users {
        by_user += store.forget_user(user)?;
    }
    let mut expired = 0;
    if let Some(days) = args.older_than_days {
        expired = store.forget_before(crate::sync::now() - i64::from(days) * 86_400)?;
    }
    if by_user > 0 {
        // The warm-start parameters were trained on the visitor's events: the next sync refits
        // from scratch, so the published model stops carrying them. (Expired events age out of
        // the model with the regular full refits.)
        let mut state = SyncState::load(&store)?;
        state.force_full = true;
        state.save(&store)?;
    }
    if global.json {
        print_json(&serde_json::json!({"deleted_by_user": by_user, "deleted_expired": expired}))?;
    } else {
        println!(
            "deleted {by_user} events of {} user(s) and {expired} expired events{}",
            args.users.len(),
            if by_user > 0 {
                "; the next sync refits from scratch"
            } else {
                ""
            }
        );
    }
    Ok(0)
}
