//! `central-sync sync`, the cron entry point: new events → incremental training → evaluation
//! on a recent hold-out → publish only if quality did not regress beyond the margin.
//!
//! Incremental: embeddings warm-start from the last model's parameters and take one pass over
//! the examples whose target arrived since the last sync; the neighbour and transition tables
//! are recounted from the whole log (cheap). Every `full_every` syncs, or with `--full`, or when
//! there is no previous model, everything is refitted and α/β re-tuned.
//!
//! Exit status: 0 published or nothing to do, 3 held back (quality regressed), 1 error.

use crate::dataset::Dataset;
use crate::eval::{self, Split};
use crate::events::Event;
use crate::kv;
use crate::model;
use crate::pipeline;
use crate::store::Store;
use crate::sync_state::SyncState;
use crate::train::{self, Params, TrainConfig};
use anyhow::{Context as _, Result};
use edgerec::format::Dtype;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

pub struct SyncOptions<'a> {
    pub target: &'a str,
    pub work_dir: &'a Path,
    pub margin: f64,
    pub full: bool,
    pub full_every: u32,
    pub keep: usize,
    pub config: TrainConfig,
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub status: &'static str,
    pub new_events: usize,
    pub total_events: usize,
    pub mode: &'static str,
    pub train_seconds: f64,
    pub incremental_events_per_second: Option<f64>,
    pub holdout: Option<eval::Metrics>,
    pub previous_ndcg10: Option<f64>,
    pub popularity_psi: f64,
    pub version: Option<String>,
    pub reason: String,
}

/// Population stability index of item popularity: new events against earlier ones, over the
/// items seen in either, with add-one smoothing.
pub fn popularity_psi(old: &[Event], new: &[Event]) -> f64 {
    if old.is_empty() || new.is_empty() {
        return 0.0; // nothing to compare against
    }
    let mut counts: HashMap<&str, (f64, f64)> = HashMap::new();
    for e in old {
        counts.entry(&e.item).or_default().0 += 1.0;
    }
    for e in new {
        counts.entry(&e.item).or_default().1 += 1.0;
    }
    let k = counts.len() as f64;
    let (n_old, n_new) = (old.len() as f64 + k, new.len() as f64 + k);
    counts
        .values()
        .map(|&(o, n)| {
            let (p, q) = ((n + 1.0) / n_new, (o + 1.0) / n_old);
            (p - q) * (p / q).ln()
        })
        .sum()
}

pub fn run(store: &mut Store, opts: &SyncOptions<'_>) -> Result<(i32, SyncReport)> {
    let mut state = SyncState::load(store)?;
    let last_seq = state.last_seq;
    // One read of the log; events arrive in seq order, so the new ones are its tail.
    let (all, max_seq) = store.events_after(0)?;
    let new_count = store.count_after(last_seq)?.min(all.len());
    let (old, new) = all.split_at(all.len() - new_count);
    let prev_params_path = opts.work_dir.join("current").join("params.json");
    let have_model = prev_params_path.exists();
    let mut report = SyncReport {
        status: "noop",
        new_events: new.len(),
        total_events: old.len() + new.len(),
        mode: "none",
        train_seconds: 0.0,
        incremental_events_per_second: None,
        holdout: None,
        previous_ndcg10: state.published_ndcg10,
        popularity_psi: popularity_psi(old, new),
        version: state.model_version.clone(),
        reason: String::new(),
    };
    state.popularity_psi = Some(report.popularity_psi);
    state.last_sync_ts = Some(now());
    state.save(store)?;
    tracing::info!(
        new = new.len(),
        total = report.total_events,
        psi = report.popularity_psi,
        "sync: events"
    );
    if new.is_empty() && have_model {
        report.reason = "no new events since the last sync".into();
        return Ok((0, report));
    }
    anyhow::ensure!(
        report.total_events > 0,
        "the event log is empty: import or ingest events first"
    );

    let d = Dataset::from_events(&all);
    let syncs = state.syncs_since_full;
    // A rollback leaves `force_full`: the saved parameters belong to another version.
    let forced = state.force_full;
    let warm: Option<Params> = if opts.full || forced || !have_model || syncs + 1 >= opts.full_every
    {
        None
    } else {
        serde_json::from_slice(&std::fs::read(&prev_params_path)?).ok()
    };
    let cfg = opts.config.clone();
    // A combination saved by an older release (another shape) does not load: re-tune then.
    let combination = match (&warm, state.combination) {
        (Some(_), Some(c)) => c,
        _ => {
            let t = pipeline::tune(&d, &cfg, opts.quiet)?;
            state.combination = Some(t.combination);
            state.save(store)?;
            t.combination
        }
    };

    // Hold-out: each user's latest event, a model fitted from scratch on everything before it
    // (never warm-started: the previous parameters may have seen the hold-out targets).
    let split = Split::new(&d);
    let (hp, ht) = pipeline::fit(
        &d,
        &split.train_val,
        &cfg,
        None,
        opts.quiet,
        "fit (hold-out)",
    );
    let engine = eval::build_engine(&hp, &ht, &cfg, Dtype::I8, &combination)?;
    let holdout = eval::evaluate(&split.test(&d), |q| {
        eval::engine_top10(&engine, &d, q, eval::Clicks::Full)
    });
    report.holdout = Some(holdout);
    // The candidate's score; it becomes the gate's reference only if the candidate is published.
    state.candidate_ndcg10 = Some(holdout.ndcg10);
    state.candidate_hr10 = Some(holdout.hr10);
    state.save(store)?;

    // The model to publish: incremental (warm start, one pass over new targets) or full.
    let started = Instant::now();
    let tables = train::fit_tables(d.item_count(), &d.sequences, &cfg);
    let params = match &warm {
        Some(w) => {
            report.mode = "incremental";
            let mut p = Params::init(&d, cfg.dim, cfg.seed, Some(w));
            let new_keys: std::collections::HashSet<(String, String, i64)> = new
                .iter()
                .map(|e| (e.user.clone(), e.item.clone(), e.ts))
                .collect();
            let examples: Vec<(u32, u32)> = train::all_examples(&d.sequences)
                .into_iter()
                .filter(|&(u, t)| {
                    let s = d.sequences[u as usize][t as usize];
                    new_keys.contains(&(
                        d.users[u as usize].clone(),
                        d.items[s.item as usize].clone(),
                        s.ts,
                    ))
                })
                .collect();
            let t0 = Instant::now();
            // One lighter pass (half the sampled negatives) over the new targets only.
            let one_pass = TrainConfig {
                epochs: 1,
                negatives: (cfg.negatives / 2).max(8),
                ..cfg.clone()
            };
            train::fit_embeddings(&mut p, &d.sequences, examples.clone(), &one_pass, |_, _| {});
            let secs = t0.elapsed().as_secs_f64();
            report.incremental_events_per_second = Some(examples.len() as f64 / secs.max(1e-9));
            p
        }
        None => {
            report.mode = "full";
            pipeline::fit(&d, &d.sequences, &cfg, None, opts.quiet, "fit (full)").0
        }
    };
    report.train_seconds = started.elapsed().as_secs_f64();
    state.train_seconds = Some(report.train_seconds);
    state.save(store)?;

    if let Some(prev) = report.previous_ndcg10 {
        if holdout.ndcg10 < prev * (1.0 - opts.margin) {
            report.status = "held_back";
            report.reason = format!(
                "hold-out NDCG@10 {:.4} fell more than {:.1}% below the last {:.4}",
                holdout.ndcg10,
                100.0 * opts.margin,
                prev
            );
            state.published = Some(false);
            state.save(store)?;
            tracing::warn!("{}", report.reason);
            return Ok((3, report));
        }
    }
    let spec = train::model_spec(&params, &tables, &cfg, Dtype::I8, &combination, None);
    let popular = d.most_popular(50);
    let info =
        serde_json::json!({"mode": report.mode, "holdout": holdout, "psi": report.popularity_psi});
    let candidate = opts.work_dir.join("candidate");
    model::write_dir(
        &spec,
        &candidate,
        popular,
        info,
        edgerec::format::MAX_SHARD_BYTES,
    )?;
    std::fs::write(candidate.join("params.json"), serde_json::to_vec(&params)?)?;
    let mut target = kv::open(opts.target)?;
    let published =
        kv::publish(target.as_mut(), &candidate, opts.keep).context("publishing the new model")?;
    let current = opts.work_dir.join("current");
    if current.exists() {
        std::fs::remove_dir_all(&current)?;
    }
    std::fs::rename(&candidate, &current)?;
    state.last_seq = max_seq;
    state.model_version = Some(published.version.clone());
    state.published = Some(true);
    state.force_full = false;
    state.syncs_since_full = if warm.is_some() { syncs + 1 } else { 0 };
    state.published_ndcg10 = Some(holdout.ndcg10);
    state.published_hr10 = Some(holdout.hr10);
    state.save(store)?;
    report.status = "published";
    report.version = Some(published.version);
    report.reason = format!("hold-out NDCG@10 {:.4}", holdout.ndcg10);
    Ok((0, report))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
