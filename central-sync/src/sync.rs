//! `central-sync sync`, the cron entry point: new events → a candidate model → the quality gate
//! → publish.
//!
//! The gate judges exactly what is published. The hold-out is each user's latest interaction
//! when it arrived since the last sync, so neither the served model nor the candidate has
//! trained on it. The candidate is trained on everything else, written to its model directory,
//! read back from those files and scored on the hold-out; the served model (read back from the
//! target store) is scored on the same queries; the candidate directory is published only if it
//! is within the margin of the served model. The held-out events are trained on by the next
//! sync (`SyncState::pending_holdout`).
//!
//! Incremental: embeddings warm-start from the last model's parameters and take one pass over
//! the examples whose target is new (or was held out last time); the neighbour, transition and
//! trend tables are recounted from the whole log (cheap). Every `full_every` syncs, or with
//! `--full`, after a rollback, or when there is no previous model, everything is refitted and
//! the per-length profiles re-tuned.
//!
//! Exit status: 0 published or nothing to do, 3 held back (quality regressed), 1 error.

use crate::dataset::{Dataset, Step};
use crate::drift::{self, DriftLimits, ModelDrift};
use crate::eval::{self, Metrics};
use crate::events::Event;
use crate::kv::{self, Kv};
use crate::model;
use crate::pipeline;
use crate::store::Store;
use crate::sync_state::SyncState;
use crate::train::{self, Combination, Params, Tables, TrainConfig};
use anyhow::{Context as _, Result};
use edgerec::format::Dtype;
use edgerec::Engine;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

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

pub struct SyncOptions<'a> {
    pub target: &'a str,
    pub work_dir: &'a Path,
    pub margin: f64,
    pub full: bool,
    pub full_every: u32,
    pub keep: usize,
    /// Events older than this many days are deleted from the log first (0 keeps all).
    pub retention_days: u32,
    /// When the candidate counts as drifted from the served model, and whether that holds it.
    pub drift: DriftLimits,
    pub config: TrainConfig,
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub status: &'static str,
    /// Events deleted by the retention window before this sync read the log.
    pub expired_events: usize,
    pub new_events: usize,
    pub total_events: usize,
    pub mode: &'static str,
    pub train_seconds: f64,
    pub incremental_events_per_second: Option<f64>,
    /// The session encoder's training in this sync (none without an encoder): a full sync's
    /// from scratch, an incremental sync's one warm-started epoch over the new targets, which
    /// `train_seconds` includes and `incremental_events_per_second` does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<crate::encoder::EncoderRun>,
    /// The candidate's hold-out figures, scored from the files that are published.
    pub holdout: Option<Metrics>,
    /// The served model's figures on the same hold-out (none when nothing is served).
    pub served: Option<Metrics>,
    pub served_version: Option<String>,
    pub popularity_psi: f64,
    /// KS tests of the candidate's lists against the served model's on the hold-out.
    pub drift: Option<ModelDrift>,
    pub version: Option<String>,
    pub reason: String,
    /// With a Kafka event log: what this run read from the topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<crate::kafka::Consumed>,
}

impl SyncReport {
    fn start(log: &Log, state: &SyncState) -> SyncReport {
        SyncReport {
            status: "noop",
            expired_events: 0,
            new_events: log.new_events().len(),
            total_events: log.events.len(),
            mode: "none",
            train_seconds: 0.0,
            incremental_events_per_second: None,
            encoder: None,
            holdout: None,
            served: None,
            served_version: None,
            popularity_psi: popularity_psi(log.old(), log.new_events()),
            drift: None,
            version: state.model_version.clone(),
            reason: String::new(),
            kafka: None,
        }
    }
}

/// The event log as one sync sees it: one snapshot, split at the cursor by arrival seq (so
/// events ingested while the sync runs wait for the next one).
pub struct Log {
    pub events: Vec<Event>,
    pub seqs: Vec<i64>,
    /// Index of the first event after the cursor.
    pub first_new: usize,
}

impl Log {
    pub fn read(store: &Store, cursor: i64) -> Result<Log> {
        let (seqs, events): (Vec<i64>, Vec<Event>) = store.events_after(0)?.into_iter().unzip();
        let first_new = seqs.partition_point(|&s| s <= cursor);
        Ok(Log {
            events,
            seqs,
            first_new,
        })
    }

    pub fn old(&self) -> &[Event] {
        &self.events[..self.first_new]
    }

    pub fn new_events(&self) -> &[Event] {
        &self.events[self.first_new..]
    }

    /// Whether the step's event arrived after the cursor.
    pub fn is_new(&self, step: &Step) -> bool {
        step.event as usize >= self.first_new
    }

    pub fn seq(&self, step: &Step) -> i64 {
        self.seqs[step.event as usize]
    }
}

/// The gate's hold-out and the training sequences without it.
pub struct Holdout {
    /// Users whose latest interaction is held out (those with at least 3 interactions).
    pub users: Vec<usize>,
    /// Every user's sequence minus the held-out interaction.
    pub train: Vec<Vec<Step>>,
}

impl Holdout {
    /// Per user, the latest interaction if it is new. When no user has one (new events only
    /// from short histories), every user's latest interaction: the served model may have
    /// trained on those, which only favours it, so the gate errs towards keeping it.
    pub fn choose(d: &Dataset, log: &Log) -> Holdout {
        let eligible: Vec<usize> = (0..d.sequences.len())
            .filter(|&u| d.sequences[u].len() >= 3)
            .collect();
        let mut users: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&u| d.sequences[u].last().is_some_and(|s| log.is_new(s)))
            .collect();
        if users.is_empty() {
            users = eligible;
        }
        let mut train = d.sequences.clone();
        for &u in &users {
            train[u].pop();
        }
        Holdout { users, train }
    }

    pub fn queries<'a>(&self, d: &'a Dataset) -> Vec<eval::Query<'a>> {
        eval::last_queries(d, &self.users)
    }

    /// Seqs of the held-out events.
    pub fn seqs(&self, d: &Dataset, log: &Log) -> Vec<i64> {
        let last = |u: usize| d.sequences[u].last().map(|s| log.seq(s));
        self.users.iter().filter_map(|&u| last(u)).collect()
    }
}

/// An engine's top-10 lists for the hold-out queries, ranked as the edge ranks (the full
/// history as the session).
pub fn rank(engine: &Engine, d: &Dataset, holdout: &Holdout) -> Vec<drift::List> {
    holdout
        .queries(d)
        .iter()
        .map(|q| eval::engine_list(engine, d, q, eval::Clicks::Full))
        .collect()
}

/// Per-query NDCG@10 of lists from [`rank`].
pub fn ndcg_of(lists: &[drift::List], d: &Dataset, holdout: &Holdout) -> Vec<f64> {
    let mut lists = lists.iter();
    eval::per_query_ndcg(&holdout.queries(d), |_| {
        lists
            .next()
            .map(|l| l.iter().map(|&(i, _)| i).collect())
            .unwrap_or_default()
    })
}

/// Per-query NDCG@10 of an engine on the hold-out.
pub fn score(engine: &Engine, d: &Dataset, holdout: &Holdout) -> Vec<f64> {
    ndcg_of(&rank(engine, d, holdout), d, holdout)
}

/// The model the target serves now, read back and validated as the edge loads it. A served
/// model that does not load is reported and treated as absent (the candidate replaces it).
/// With an A/B split, that is the primary arm.
fn served_model(target: &mut dyn Kv) -> Result<Option<(String, Engine)>> {
    let Some(version) = kv::pointer(target)?.map(|p| p.primary().to_string()) else {
        return Ok(None);
    };
    match kv::load_version(target, &version) {
        Ok(engine) => Ok(Some((version, engine))),
        Err(e) => {
            tracing::warn!("the served model {version} does not load ({e:#}); not gating on it");
            Ok(None)
        }
    }
}

/// The incremental pass's learning rate, as a fraction of the full fit's initial rate. A full
/// fit's rate decays to 5% of it over its epochs; a pass over the new targets alone at the
/// full initial rate pulled the warm-started rows towards them and scored below leaving the
/// rows as they were (docs/FIGURES.md, 2026-12-08: hold-outs of ML-100k without each user's
/// last event, 0.1441 against 0.1531 with no pass, 0.1558 at this scale).
const INCREMENTAL_LEARNING_RATE_SCALE: f32 = 0.25;

/// A trained candidate before it is written.
struct Candidate {
    params: Params,
    tables: Tables,
    mode: &'static str,
    incremental_events_per_second: Option<f64>,
    encoder: Option<crate::encoder::EncoderRun>,
}

/// Trains the candidate on the hold-out's training sequences: one warm-started pass over the
/// new (and previously held-out) targets, or a full fit. A full fit trains the session encoder
/// for `combination`; an incremental one warm-starts the published encoder and trains it one
/// epoch on the same new targets.
fn train_candidate(
    d: &Dataset,
    log: &Log,
    holdout: &Holdout,
    pending: &[i64],
    warm: Option<&Params>,
    combination: &Combination,
    opts: &SyncOptions<'_>,
) -> Result<Candidate> {
    let cfg = &opts.config;
    let Some(w) = warm else {
        let (mut params, tables) = pipeline::fit(d, &holdout.train, cfg, None, opts.quiet, "fit")?;
        let encoder =
            pipeline::fit_encoder(d, &holdout.train, cfg, &mut params, &tables, combination)?;
        return Ok(Candidate {
            params,
            tables,
            mode: "full",
            incremental_events_per_second: None,
            encoder,
        });
    };
    let tables = pipeline::fit_tables(d, &holdout.train, cfg);
    let mut params = Params::init(d, cfg.dim, cfg.seed, Some(w));
    let pending: HashSet<i64> = pending.iter().copied().collect();
    let examples: Vec<(u32, u32)> = train::all_examples(&holdout.train)
        .into_iter()
        .filter(|&(u, t)| {
            let step = &holdout.train[u as usize][t as usize];
            log.is_new(step) || pending.contains(&log.seq(step))
        })
        .collect();
    // One lighter pass over the new targets only, with at most 32 sampled negatives and a
    // quarter of the initial learning rate (a warm start continues a trained model, see
    // `INCREMENTAL_LEARNING_RATE_SCALE`): an incremental sync has to keep up with the event
    // stream more than it needs the full fit's precision, and the next full retrain restores
    // it.
    let one_pass = TrainConfig {
        epochs: 1,
        negatives: (cfg.negatives / 2).clamp(8, 32),
        learning_rate: cfg.learning_rate * INCREMENTAL_LEARNING_RATE_SCALE,
        ..cfg.clone()
    };
    let started = Instant::now();
    let count = examples.len();
    let new_targets: HashSet<(u32, u32)> = examples.iter().copied().collect();
    train::fit_embeddings(&mut params, &holdout.train, examples, &one_pass, |_, _| {});
    let secs = started.elapsed().as_secs_f64();
    // The published encoder, warm-started, one epoch over the same new targets (against the
    // updated rows); a full sync trains it afresh.
    let mut encoder = None;
    if params.encoder.is_some() {
        let one_epoch = TrainConfig {
            encoder_epochs: cfg.encoder_epochs.min(1),
            ..cfg.clone()
        };
        let only = |u: usize, t: usize| new_targets.contains(&(u as u32, t as u32));
        encoder = pipeline::fit_encoder_on(
            d,
            &holdout.train,
            &only,
            &one_epoch,
            &mut params,
            &tables,
            combination,
        )?;
    }
    Ok(Candidate {
        params,
        tables,
        mode: "incremental",
        incremental_events_per_second: Some(count as f64 / secs.max(1e-9)),
        encoder,
    })
}

/// The warm-start parameters, unless this sync fits from scratch.
fn warm_start(opts: &SyncOptions<'_>, state: &SyncState) -> Option<Params> {
    let path = opts.work_dir.join("current").join("params.json");
    // A rollback leaves `force_full`: the saved parameters belong to another version.
    let full = opts.full || state.force_full || state.syncs_since_full + 1 >= opts.full_every;
    if full {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The config this run trains with. An incremental sync that reuses the saved profiles keeps
/// the neighbour table they were tuned with, since they weigh that table (choosing again on
/// the grown log could change the table under them); every other run chooses what the config
/// leaves to the data ([`pipeline::resolve_config`]).
fn run_config(d: &Dataset, state: &SyncState, warm: bool, cfg: &TrainConfig) -> TrainConfig {
    match (warm, state.combination, cfg.neighbour_popularity) {
        (true, Some(_), None) => TrainConfig {
            neighbour_popularity: Some(tuned_neighbour_popularity(state)),
            ..cfg.clone()
        },
        _ => pipeline::resolve_config(d, cfg),
    }
}

/// The neighbour popularity the saved profiles were tuned with.
fn tuned_neighbour_popularity(state: &SyncState) -> f32 {
    // Profiles saved before the choice existed were tuned on the cosine table.
    state
        .neighbour_popularity
        .unwrap_or(train::NEIGHBOUR_POPULARITY_CHOICES[0])
}

/// The per-length profiles: reused by incremental syncs whose neighbour table is the one they
/// were tuned with, re-tuned on validation otherwise (and when the saved ones come from an
/// older release). `opts.config` is resolved ([`run_config`]).
fn combination(
    d: &Dataset,
    state: &mut SyncState,
    warm: bool,
    opts: &SyncOptions<'_>,
) -> Result<Combination> {
    let same_table = opts.config.neighbour_popularity == Some(tuned_neighbour_popularity(state));
    match (warm && same_table, state.combination) {
        (true, Some(c)) => Ok(c),
        _ => {
            let tuned = pipeline::tune(d, &opts.config, opts.quiet)?;
            state.combination = Some(tuned.combination);
            state.neighbour_popularity = opts.config.neighbour_popularity;
            Ok(tuned.combination)
        }
    }
}

/// Writes the candidate's model directory and reads it back: the engine is built from the
/// very files that would be published.
fn write_candidate(
    d: &Dataset,
    candidate: &Candidate,
    combination: &Combination,
    info: serde_json::Value,
    opts: &SyncOptions<'_>,
) -> Result<(std::path::PathBuf, Engine)> {
    let dir = opts.work_dir.join("candidate");
    let trained = pipeline::Trained {
        params: &candidate.params,
        tables: &candidate.tables,
        combination,
        categories: None,
        dtype: Dtype::I8,
        one_stage: false,
    };
    pipeline::write(d, &trained, &opts.config, &dir, info)?;
    let (_, engine) = model::load_engine(&dir)?;
    Ok((dir, engine))
}

/// One-sided 95% quantile of the normal distribution.
const GATE_Z: f64 = 1.645;

/// `Err(reason)` when the candidate is, with 95% confidence, more than `margin` below the served
/// model. The test is paired over the same hold-out queries (per query, candidate − (1 − margin)
/// × served), so a small hold-out holds back clear regressions rather than noise.
pub fn gate(candidate: &[f64], served: Option<&[f64]>, margin: f64) -> Result<(), String> {
    let Some(served) = served else {
        return Ok(());
    };
    let diffs: Vec<f64> = candidate
        .iter()
        .zip(served)
        .map(|(c, s)| c - (1.0 - margin) * s)
        .collect();
    if diffs.is_empty() {
        return Ok(());
    }
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    if mean + GATE_Z * (var / n).sqrt() >= 0.0 {
        return Ok(());
    }
    let (c, s) = (Metrics::of(candidate), Metrics::of(served));
    Err(format!(
        "hold-out NDCG@10 {:.4} is more than {:.1}% below the served model's {:.4} \
         (paired one-sided test over {} users, 95%)",
        c.ndcg10,
        100.0 * margin,
        s.ndcg10,
        diffs.len()
    ))
}

/// `Err(reason)` when the operator asked to hold drifted candidates and this one drifted.
fn drift_gate(drift: Option<&ModelDrift>, limits: &DriftLimits) -> Result<(), String> {
    match drift {
        Some(d) if limits.hold && d.drifted => Err(format!(
            "the candidate's lists drifted from the served model's ({}; limits D > {} with p < {})",
            d.describe(),
            limits.max_statistic,
            limits.alpha
        )),
        _ => Ok(()),
    }
}

/// Applies the retention window, reads the log and records the run's start.
fn begin(store: &mut Store, opts: &SyncOptions<'_>) -> Result<(SyncState, Log, SyncReport)> {
    let mut state = SyncState::load(store)?;
    let expired = match opts.retention_days {
        0 => 0,
        days => store.forget_before(now() - i64::from(days) * 86_400)?,
    };
    let log = Log::read(store, state.last_seq)?;
    let mut report = SyncReport::start(&log, &state);
    report.expired_events = expired;
    // A run with nothing new keeps the last PSI: "no new events" is not "no shift".
    if report.new_events > 0 {
        state.popularity_psi = Some(report.popularity_psi);
    }
    state.last_sync_ts = Some(now());
    state.save(store)?;
    tracing::info!(
        new = report.new_events,
        total = report.total_events,
        expired,
        "sync: events"
    );
    Ok((state, log, report))
}

pub fn run(store: &mut Store, opts: &SyncOptions<'_>) -> Result<(i32, SyncReport)> {
    let (mut state, log, mut report) = begin(store, opts)?;
    let have_model = opts.work_dir.join("current/params.json").exists();
    if report.new_events == 0 && have_model {
        report.reason = "no new events since the last sync".into();
        return Ok((0, report));
    }
    anyhow::ensure!(
        report.total_events > 0,
        "the event log is empty: import or ingest events first"
    );
    let d = Dataset::from_events(&log.events);
    let warm = if have_model {
        warm_start(opts, &state)
    } else {
        None
    };
    // What the config leaves to the data is chosen once per run, so tuning, the fit and the
    // config written with the model agree (and the choice is not made again for each).
    let resolved = SyncOptions {
        config: run_config(&d, &state, warm.is_some(), &opts.config),
        ..*opts
    };
    let opts = &resolved;
    let mut target = kv::open(opts.target)?;
    let served = served_model(target.as_mut())?;
    let holdout = Holdout::choose(&d, &log);
    let combination = combination(&d, &mut state, warm.is_some(), opts)?;

    let started = Instant::now();
    let candidate = train_candidate(
        &d,
        &log,
        &holdout,
        &state.pending_holdout,
        warm.as_ref(),
        &combination,
        opts,
    )?;
    (
        report.mode,
        report.incremental_events_per_second,
        report.encoder,
    ) = (
        candidate.mode,
        candidate.incremental_events_per_second,
        candidate.encoder,
    );
    report.train_seconds = started.elapsed().as_secs_f64();
    let info = serde_json::json!({"mode": report.mode, "psi": report.popularity_psi});
    let (dir, engine) = write_candidate(&d, &candidate, &combination, info, opts)?;
    let lists = rank(&engine, &d, &holdout);
    let per_query = ndcg_of(&lists, &d, &holdout);
    let served_lists = served.as_ref().map(|(_, e)| rank(e, &d, &holdout));
    let served_per_query = served_lists.as_deref().map(|l| ndcg_of(l, &d, &holdout));
    let scored = Metrics::of(&per_query);
    report.holdout = Some(scored);
    report.served = served_per_query.as_deref().map(Metrics::of);
    report.served_version = served.map(|(v, _)| v);
    report.drift = served_lists.as_deref().map(|s| {
        let popularity: Vec<f64> = d
            .popularity(&holdout.train)
            .into_iter()
            .map(f64::from)
            .collect();
        drift::compare(s, &lists, &popularity, &opts.drift)
    });
    state.record_candidate(&scored, report.served.as_ref(), report.train_seconds);
    state.record_drift(report.drift.as_ref());

    if let Err(reason) = gate(&per_query, served_per_query.as_deref(), opts.margin)
        .and_then(|()| drift_gate(report.drift.as_ref(), &opts.drift))
        .and_then(|()| split_gate(target.as_mut()))
    {
        tracing::warn!("{reason}");
        report.status = "held_back";
        report.reason = reason;
        state.published = Some(false);
        state.save(store)?;
        return Ok((3, report));
    }
    let published =
        kv::publish(target.as_mut(), &dir, opts.keep).context("publishing the new model")?;
    let current = opts.work_dir.join("current");
    if current.exists() {
        std::fs::remove_dir_all(&current)?;
    }
    std::fs::rename(&dir, &current)?;
    state.record_published(
        &published.version,
        &scored,
        log.seqs.last().copied(),
        holdout.seqs(&d, &log),
        warm.is_some(),
    );
    state.save(store)?;
    report.status = "published";
    report.version = Some(published.version);
    report.reason = format!("hold-out NDCG@10 {:.4}", scored.ndcg10);
    Ok((0, report))
}

/// A running A/B split is the experimenter's: `sync` does not end it by publishing over it.
fn split_gate(target: &mut dyn Kv) -> Result<(), String> {
    match kv::pointer(target) {
        Ok(Some(p)) if p.is_split() => Err(format!(
            "an A/B split is live ({p}); sync does not publish over it (change or end it with \
             `central-sync publish --split`, then sync publishes again)"
        )),
        _ => Ok(()),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users who walk a ring of 40 items in steps of 4 (mostly), from a start of their genre.
    fn events(users: std::ops::Range<usize>, per_user: usize, ts0: i64) -> Vec<Event> {
        let mut rng = edgerec::math::SplitMix64::new(users.start as u64 + 7);
        let mut out = Vec::new();
        for u in users {
            let mut item = u % 4 + 4 * rng.below(10);
            for t in 0..per_user {
                out.push(Event::click(
                    format!("u{u}"),
                    format!("m{item}"),
                    ts0 + (u * 10_000 + t * 60) as i64,
                ));
                item = if rng.below(10) < 8 {
                    (item + 4) % 40
                } else {
                    rng.below(40)
                };
            }
        }
        out
    }

    fn options<'a>(target: &'a str, work: &'a Path, margin: f64) -> SyncOptions<'a> {
        SyncOptions {
            target,
            work_dir: work,
            margin,
            full: false,
            full_every: 10,
            keep: 3,
            retention_days: 0,
            drift: DriftLimits::default(),
            config: TrainConfig {
                dim: 8,
                epochs: 2,
                ..TrainConfig::default()
            },
            quiet: true,
        }
    }

    /// A log with 40 users' first 12 clicks, and a directory KV target.
    fn fixture() -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("events.db")).unwrap();
        let target = format!("dir:{}", dir.path().join("kv").display());
        store.insert(&events(0..40, 12, 978_300_000)).unwrap();
        (dir, store, target)
    }

    use edgerec_contract::pointer::Pointer;

    #[test]
    fn the_gate_scores_exactly_the_published_model_on_events_neither_model_saw() {
        let (dir, mut store, target) = fixture();
        let work = dir.path().join("work");
        let (code, first) = run(&mut store, &options(&target, &work, 0.02)).unwrap();
        assert_eq!((code, first.status, first.mode), (0, "published", "full"));

        // Later events: the same users' next clicks (the sessions go on) and new users.
        let mut later = events(0..40, 16, 978_300_000);
        let stored: std::collections::HashSet<(String, i64)> = store
            .events_after(0)
            .unwrap()
            .into_iter()
            .map(|(_, e)| (e.user, e.ts))
            .collect();
        later.retain(|e| !stored.contains(&(e.user.clone(), e.ts)));
        later.extend(events(40..50, 12, 978_900_000));
        store.insert(&later).unwrap();
        let cursor = SyncState::load(&store).unwrap().last_seq;
        // Any candidate passes a margin of 100%: this checks what is scored, not the decision.
        let (code, second) = run(&mut store, &options(&target, &work, 1.0)).unwrap();
        assert_eq!(
            (code, second.status, second.mode),
            (0, "published", "incremental")
        );

        // The same hold-out, rebuilt from the log as the sync saw it.
        let log = Log::read(&store, cursor).unwrap();
        let d = Dataset::from_events(&log.events);
        let holdout = Holdout::choose(&d, &log);
        assert_eq!(holdout.users.len(), 50, "every user's latest click is new");
        let mut kv = kv::open(&target).unwrap();
        let published = kv::load_version(kv.as_mut(), second.version.as_deref().unwrap()).unwrap();
        assert_eq!(
            Some(Metrics::of(&score(&published, &d, &holdout))),
            second.holdout,
            "the gate's figures are the published model's"
        );
        let served = kv::load_version(kv.as_mut(), first.version.as_deref().unwrap()).unwrap();
        assert_eq!(
            Some(Metrics::of(&score(&served, &d, &holdout))),
            second.served
        );
        // The drift tests compare exactly these two models' lists.
        let popularity: Vec<f64> = d
            .popularity(&holdout.train)
            .into_iter()
            .map(f64::from)
            .collect();
        let drift = drift::compare(
            &rank(&served, &d, &holdout),
            &rank(&published, &d, &holdout),
            &popularity,
            &DriftLimits::default(),
        );
        let reported = second.drift.unwrap();
        assert_eq!(
            (reported.score, reported.popularity),
            (drift.score, drift.popularity)
        );
        assert_eq!(reported.score.n_a, 10 * holdout.users.len());
        // The held-out events were not trained on; the next sync trains on them.
        let state = SyncState::load(&store).unwrap();
        assert_eq!(state.pending_holdout, holdout.seqs(&d, &log));
        assert!(state.pending_holdout.iter().all(|&s| s > cursor));
    }

    #[test]
    fn an_incremental_sync_keeps_the_neighbour_table_its_profiles_were_tuned_with() {
        let d = Dataset::from_events(&events(0..40, 12, 978_300_000));
        let dir = tempfile::tempdir().unwrap();
        let open = options("dir:unused", dir.path(), 0.02);
        // Profiles no tuner would reach, so reuse is visible.
        let mut saved = Combination::untuned(&open.config);
        saved.profiles[3].embed = 0.123;
        let mut state = SyncState {
            combination: Some(saved),
            neighbour_popularity: Some(0.0),
            ..SyncState::default()
        };
        // Warm with saved profiles: their table, whatever the grown log would choose now.
        let warm = run_config(&d, &state, true, &open.config);
        assert_eq!(warm.neighbour_popularity, Some(0.0));
        // Profiles from before the choice existed were tuned on the cosine table.
        let older = SyncState {
            neighbour_popularity: None,
            ..state.clone()
        };
        assert_eq!(
            run_config(&d, &older, true, &open.config).neighbour_popularity,
            Some(0.5)
        );
        // A full fit chooses on its data; a value set in the config is kept.
        let full = pipeline::resolve_config(&d, &open.config);
        assert_eq!(
            run_config(&d, &state, false, &open.config).neighbour_popularity,
            full.neighbour_popularity
        );
        let set = TrainConfig {
            neighbour_popularity: Some(0.25),
            ..open.config.clone()
        };
        assert_eq!(
            run_config(&d, &state, true, &set).neighbour_popularity,
            Some(0.25)
        );

        // The saved profiles are reused with their own table only; another table re-tunes them
        // and records the table they now belong to.
        let same = SyncOptions {
            config: warm,
            ..open
        };
        assert_eq!(combination(&d, &mut state, true, &same).unwrap(), saved);
        let other = SyncOptions {
            config: set,
            ..open
        };
        let retuned = combination(&d, &mut state, true, &other).unwrap();
        assert_ne!(retuned, saved);
        assert_eq!(state.combination, Some(retuned));
        assert_eq!(state.neighbour_popularity, Some(0.25));
    }

    #[test]
    fn the_gate_holds_back_clear_regressions_not_noise() {
        let served = [1.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.63, 0.0];
        // One query lost out of eight: within noise.
        let one_lost = [1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.63, 0.0];
        assert!(gate(&one_lost, Some(&served), 0.02).is_ok());
        // Every hit lost: a regression.
        let all_lost = [0.0; 8];
        let reason = gate(&all_lost, Some(&served), 0.02).unwrap_err();
        assert!(reason.contains("8 users"), "{reason}");
        // The same figures pass or fail with the margin.
        let lower: Vec<f64> = served.iter().map(|s| s * 0.9).collect();
        assert!(gate(&lower, Some(&served), 0.2).is_ok());
        assert!(gate(&lower, Some(&served), 0.02).is_err());
        // Nothing served, or nothing to compare: publish.
        assert!(gate(&all_lost, None, 0.02).is_ok());
        assert!(gate(&[], Some(&[]), 0.02).is_ok());
    }

    #[test]
    fn drift_is_reported_and_holds_a_publish_only_when_asked() {
        let (dir, mut store, target) = fixture();
        let work = dir.path().join("work");
        let (_, first) = run(&mut store, &options(&target, &work, 0.02)).unwrap();
        assert!(first.drift.is_none(), "nothing served, nothing to compare");
        store.insert(&events(40..60, 12, 978_900_000)).unwrap();
        // Limits every difference exceeds (D > 0 with p < 1), and a margin every candidate passes.
        let strict = DriftLimits {
            max_statistic: 0.0,
            alpha: 1.0,
            hold: true,
        };
        let with = |drift| SyncOptions {
            drift,
            ..options(&target, &work, 1.0)
        };
        let (code, held) = run(&mut store, &with(strict)).unwrap();
        let d = held.drift.unwrap();
        assert!(d.drifted && d.score.statistic > 0.0, "{d:?}");
        assert_eq!((code, held.status), (3, "held_back"));
        assert!(held.reason.contains("drifted"), "{}", held.reason);
        // The same drift, reported only: published, and the statistics kept for /metrics.
        let report_only = DriftLimits {
            hold: false,
            ..strict
        };
        let (code, published) = run(&mut store, &with(report_only)).unwrap();
        assert_eq!((code, published.status), (0, "published"));
        let d = published.drift.unwrap();
        assert!(d.drifted);
        let state = SyncState::load(&store).unwrap();
        assert!((state.score_ks.unwrap() - d.score.statistic).abs() < 1e-6);
        assert!((state.popularity_ks.unwrap() - d.popularity.statistic).abs() < 1e-6);
    }

    #[test]
    fn a_regression_against_the_served_model_is_held_back() {
        let (dir, mut store, target) = fixture();
        let work = dir.path().join("work");
        let (_, first) = run(&mut store, &options(&target, &work, 0.02)).unwrap();
        store.insert(&events(40..60, 12, 978_900_000)).unwrap();
        let cursor = SyncState::load(&store).unwrap().last_seq;
        // A margin of -100% asks for twice the served model's figure.
        let (code, held) = run(&mut store, &options(&target, &work, -1.0)).unwrap();
        assert_eq!((code, held.status), (3, "held_back"));
        assert!(held.served.unwrap().ndcg10 > 0.0);
        let mut kv = kv::open(&target).unwrap();
        assert_eq!(kv::current(kv.as_mut()).unwrap(), first.version);
        let state = SyncState::load(&store).unwrap();
        assert_eq!(state.last_seq, cursor, "held-back events stay new");
        assert_eq!(state.published, Some(false));
    }

    #[test]
    fn a_live_split_is_compared_with_its_primary_and_never_published_over() {
        let (dir, mut store, target) = fixture();
        let work = dir.path().join("work");
        let (_, a) = run(&mut store, &options(&target, &work, 1.0)).unwrap();
        store.insert(&events(40..50, 12, 978_900_000)).unwrap();
        let (_, b) = run(&mut store, &options(&target, &work, 1.0)).unwrap();
        let (a, b) = (a.version.unwrap(), b.version.unwrap());
        let mut kv = kv::open(&target).unwrap();
        let split = Pointer::parse(&format!("{a}=50,{b}=50")).unwrap();
        kv::publish_split(kv.as_mut(), None, &split, 3).unwrap();
        store.insert(&events(50..60, 12, 979_500_000)).unwrap();
        let (code, held) = run(&mut store, &options(&target, &work, 1.0)).unwrap();
        assert_eq!((code, held.status), (3, "held_back"));
        assert!(held.reason.contains("A/B split is live"), "{}", held.reason);
        assert_eq!(held.served_version.as_deref(), Some(a.as_str()));
        assert_eq!(kv::pointer(kv.as_mut()).unwrap(), Some(split));
        // Ended (one arm): the next sync publishes again.
        let end = Pointer::parse(&format!("{b}=100")).unwrap();
        kv::publish_split(kv.as_mut(), None, &end, 3).unwrap();
        let (code, published) = run(&mut store, &options(&target, &work, 1.0)).unwrap();
        assert_eq!((code, published.status), (0, "published"));
    }
}
