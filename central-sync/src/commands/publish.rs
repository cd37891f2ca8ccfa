//! `central-sync publish`: publish a model directory to edge KV.

use super::{print_json, Output};
use crate::kv;
use anyhow::{bail, Result};
use edgerec_contract::pointer::Pointer;
use std::path::PathBuf;

/// The arguments of `central-sync publish`.
#[derive(clap::Args)]
pub struct Args {
    /// The model directory to publish (with `--split`: uploaded first; its version must be an
    /// arm).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub to: String,
    /// An A/B split of published versions with traffic weights, `V1=90,V2=10`: visitors are
    /// assigned stickily by their visitor id. One arm (`V2=100`) ends an experiment.
    #[arg(long, value_parser = parse_split)]
    pub split: Option<Pointer>,
    /// Versions to keep for rollback (at least 2).
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
}

fn parse_split(text: &str) -> Result<Pointer, String> {
    if !text.contains('=') {
        return Err("a split is VERSION=WEIGHT[,VERSION=WEIGHT...]".into());
    }
    Pointer::parse(text)
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args {
        model,
        to,
        keep,
        split,
    } = args;
    let mut store = kv::open(&to)?;
    let p = match (&split, &model) {
        (Some(split), model) => kv::publish_split(store.as_mut(), model.as_deref(), split, keep)?,
        (None, Some(model)) => kv::publish(store.as_mut(), model, keep)?,
        (None, None) => bail!("publish needs --model DIR, --split V1=W1,V2=W2, or both"),
    };
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
