//! `central-sync publish`: publish a model directory to edge KV.

use super::{print_json, Output};
use crate::kv;
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync publish`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub to: String,
    /// Versions to keep for rollback (at least 2).
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { model, to, keep } = args;
    let mut store = kv::open(&to)?;
    let p = kv::publish(store.as_mut(), &model, keep)?;
    if global.json {
        print_json(&p)?;
    } else {
        println!(
            "published {} to {to} ({} keys, {} bytes; pointer moved from {}){}",
            p.version,
            p.keys_written,
            p.bytes_written,
            p.previous.as_deref().unwrap_or("nothing"),
            if p.collected.is_empty() {
                String::new()
            } else {
                format!("; collected {}", p.collected.join(", "))
            }
        );
    }
    Ok(0)
}
