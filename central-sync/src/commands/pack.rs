//! `central-sync pack`: pack external embeddings into a model.

use super::{print_json, DtypeArg, Output};
use crate::{model, npy};
use anyhow::{Context as _, Result};
use std::path::PathBuf;

/// The arguments of `central-sync pack`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub embeddings: PathBuf,
    #[arg(long)]
    pub ids: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "i8")]
    pub dtype: DtypeArg,
    /// Write the model paged (shard format 7): index shards the edge loads whole, and pages of
    /// at most this many items that it reads as requests need them. For catalogs whose rows do
    /// not fit an isolate (about 1M items and up); needs `--dtype i8`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_items: Option<u32>,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args {
        embeddings,
        ids,
        out,
        dtype,
        page_items,
    } = args;
    anyhow::ensure!(
        page_items.is_none() || (dtype.core() == edgerec::Dtype::I8 && !dtype.one_stage()),
        "--page-items needs --dtype i8: pages are found through the first pass's int8 codes"
    );
    let (n, d, vectors) = npy::read_f32_matrix(&embeddings)?;
    let text =
        std::fs::read_to_string(&ids).with_context(|| format!("cannot read {}", ids.display()))?;
    let id_list: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    anyhow::ensure!(
        id_list.len() == n,
        "{} has {} ids but {} has {n} rows",
        ids.display(),
        id_list.len(),
        embeddings.display()
    );
    let mut spec = edgerec::writer::ModelSpec {
        meta: Some(edgerec::Meta::new(d as u32, dtype.core(), n as u32)),
        ids: id_list.clone(),
        vectors,
        first_pass: !dtype.one_stage()
            && dtype.core() == edgerec::Dtype::I8
            && n >= edgerec::first_pass::MIN_ITEMS as usize,
        ..Default::default()
    };
    let info = serde_json::json!({"packed_from": embeddings.display().to_string()});
    let manifest = model::write_dir_paged(
        &mut spec,
        &out,
        id_list.into_iter().take(50).collect(),
        info,
        edgerec::format::MAX_SHARD_BYTES,
        page_items.map(|n| n as usize),
    )?;
    if global.json {
        print_json(&manifest)?;
    } else {
        println!(
            "packed {n} x {d} embeddings into {} ({}, {} shard(s){})",
            out.display(),
            manifest.version,
            manifest.shards.len(),
            if manifest.is_paged() {
                format!(", {} pages", manifest.pages.len())
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}
