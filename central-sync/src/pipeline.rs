//! The training pipeline shared by `train`, `eval` and `sync`: fit tables and embeddings,
//! tune the per-session-length combination on a validation split, refit, and report.

use crate::dataset::Dataset;
use crate::eval::{self, Baselines, Clicks, Metrics, Split, Tuned};
use crate::model::{self, Manifest};
use crate::train::{self, Combination, Params, Tables, TrainConfig};
use anyhow::Result;
use edgerec::format::Dtype;
use edgerec::format::MAX_SHARD_BYTES;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// `cfg` with every setting it leaves to the data chosen: `neighbour_popularity`, when `None`,
/// by the neighbour table alone on the tuning split (`Split::tuning`: events before the tuning
/// hold-outs, never a test target), as the edge's neighbour boost scores it. A function of the
/// events and `cfg` only, so the tuning fit and the final fit agree.
pub fn resolve_config(d: &Dataset, cfg: &TrainConfig) -> TrainConfig {
    let mut cfg = cfg.clone();
    if cfg.neighbour_popularity.is_none() {
        let (train, queries) = Split::tuning(d, tuning_positions(d, &cfg));
        let n = d.item_count();
        let mut best: Option<(f64, f32)> = None;
        for e in train::NEIGHBOUR_POPULARITY_CHOICES {
            let table = train::sequence_neighbours(
                n,
                &train,
                cfg.neighbours,
                cfg.neighbour_decay,
                cfg.neighbour_reach,
                e,
            );
            let m = eval::evaluate(&queries, |q| eval::neighbour_boost_top10(&table, n, q));
            tracing::debug!(
                neighbour_popularity = e,
                ndcg = m.ndcg10,
                "neighbour table alone"
            );
            if best.is_none_or(|(b, _)| m.ndcg10 > b) {
                best = Some((m.ndcg10, e));
            }
        }
        let chosen = best.map_or(train::NEIGHBOUR_POPULARITY_CHOICES[0], |b| b.1);
        tracing::info!(neighbour_popularity = chosen, "chosen on the tuning split");
        cfg.neighbour_popularity = Some(chosen);
    }
    cfg
}

/// [`train::fit_tables`] with `cfg` resolved first ([`resolve_config`]).
pub fn fit_tables(
    d: &Dataset,
    sequences: &[Vec<crate::dataset::Step>],
    cfg: &TrainConfig,
) -> Tables {
    train::fit_tables(d.item_count(), sequences, &resolve_config(d, cfg))
}

/// Fits tables and embeddings on `sequences`, optionally warm-started (the session encoder
/// comes after, from the combination: [`fit_encoder`]).
pub fn fit(
    d: &Dataset,
    sequences: &[Vec<crate::dataset::Step>],
    cfg: &TrainConfig,
    warm: Option<&Params>,
    quiet: bool,
    label: &str,
) -> Result<(Params, Tables)> {
    let tables = fit_tables(d, sequences, cfg);
    let mut params = Params::init(d, cfg.dim, cfg.seed, warm);
    let b = bar(cfg.epochs as u64, label, quiet);
    train::fit_embeddings(
        &mut params,
        sequences,
        train::all_examples(sequences),
        cfg,
        |epoch, loss| {
            b.set_position(epoch as u64 + 1);
            tracing::debug!(epoch, loss, "epoch");
        },
    );
    b.finish_and_clear();
    Ok((params, tables))
}

/// Trains `params`' session encoder on `sequences` as a correction of the model served with
/// `combination` (warm-started from the encoder `params` carries), or removes it when
/// `cfg.encoder_epochs` is 0.
pub fn fit_encoder(
    d: &Dataset,
    sequences: &[Vec<crate::dataset::Step>],
    cfg: &TrainConfig,
    params: &mut Params,
    tables: &Tables,
    combination: &Combination,
) -> Result<Option<crate::encoder::EncoderRun>> {
    fit_encoder_on(d, sequences, &|_, _| true, cfg, params, tables, combination)
}

/// [`fit_encoder`] on the targets `only` accepts (by sequence and position): an incremental
/// sync's new events.
pub fn fit_encoder_on(
    d: &Dataset,
    sequences: &[Vec<crate::dataset::Step>],
    only: &dyn Fn(usize, usize) -> bool,
    cfg: &TrainConfig,
    params: &mut Params,
    tables: &Tables,
    combination: &Combination,
) -> Result<Option<crate::encoder::EncoderRun>> {
    let warm = params.encoder.take();
    if cfg.encoder_epochs == 0 {
        return Ok(None);
    }
    let served = eval::build_engine(params, tables, cfg, Dtype::I8, combination)?;
    let (encoder, run) = crate::encoder::train(
        &served,
        d,
        sequences,
        only,
        &cfg.encoder_training(),
        warm.as_ref(),
    )?;
    params.encoder = Some(encoder);
    Ok(Some(run))
}

/// A trained model, as `write` takes it.
pub struct Trained<'a> {
    pub params: &'a Params,
    pub tables: &'a Tables,
    pub combination: &'a Combination,
    pub categories: Option<&'a train::Categories>,
    pub dtype: Dtype,
    /// Leave out the first-pass codes even where the catalog is large (`--dtype i8-exact`).
    pub one_stage: bool,
}

/// Writes a trained model directory: the shards (the core's writer, through `model_spec`), the
/// manifest with the fallback list and `info`, and the parameters an incremental sync
/// warm-starts from. `train` and `sync` both write through here.
pub fn write(
    d: &Dataset,
    t: &Trained<'_>,
    cfg: &TrainConfig,
    out: &Path,
    info: serde_json::Value,
) -> Result<Manifest> {
    let mut spec = train::model_spec(
        t.params,
        t.tables,
        cfg,
        t.dtype,
        t.combination,
        t.categories,
    );
    spec.first_pass &= !t.one_stage;
    let manifest = model::write_dir(&mut spec, out, d.most_popular(50), info, MAX_SHARD_BYTES)?;
    std::fs::write(out.join("params.json"), serde_json::to_vec(t.params)?)?;
    Ok(manifest)
}

/// Tunes the per-length profiles: fit on the events before the tuning hold-outs, choose on
/// them (`TrainConfig::tuning_holdouts` positions per user; one is the validation split).
pub fn tune(d: &Dataset, cfg: &TrainConfig, quiet: bool) -> Result<Tuned> {
    let cfg = &resolve_config(d, cfg);
    let (train, queries) = Split::tuning(d, tuning_positions(d, cfg));
    if queries.is_empty() {
        // Every profile would score 0 on no targets, so the ascent would keep its start, which
        // ranks anonymous visitors without the trend. The untuned combination is the better
        // guess, and the operator should know nothing was chosen.
        tracing::warn!(
            users = d.sequences.len(),
            "no user has the 3 events tuning needs (a validation target and one event before \
             it, besides the last): the profiles are the untuned defaults"
        );
        return Ok(Tuned {
            combination: Combination::untuned(cfg),
            validation: vec![Metrics::of(&[]); Clicks::TABLE.len()],
        });
    }
    let (mut p, t) = fit(d, &train, cfg, None, quiet, "fit (validation)")?;
    eval::tune(&mut p, &t, cfg, d, &train, &queries)
}

/// The hold-out positions tuning uses: as many as it takes to reach `TUNING_TARGETS` targets
/// (one per evaluated user and position), at most `cfg.tuning_holdouts`, at least one.
pub fn tuning_positions(d: &Dataset, cfg: &TrainConfig) -> usize {
    // Users with a validation target, as `Split::new` counts them.
    let users = d.sequences.iter().filter(|s| Split::evaluated(s));
    let users = users.count().max(1);
    train::TUNING_TARGETS
        .div_ceil(users)
        .clamp(1, cfg.tuning_holdouts.max(1))
}

/// One row of the by-session-length table: every method given the same clicks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LengthRow {
    /// "0", "1", "2", "3", "5" or "full".
    pub clicks: String,
    pub edgerec_int8: Metrics,
    pub popularity: Metrics,
    pub trending_30d: Metrics,
    pub markov_last_item: Metrics,
    pub knn_last5: Metrics,
}

impl LengthRow {
    /// The best baseline's NDCG@10 and its name.
    pub fn best_baseline(&self) -> (f64, &'static str) {
        [
            (self.popularity.ndcg10, "popularity"),
            (self.trending_30d.ndcg10, "trending"),
            (self.markov_last_item.ndcg10, "Markov"),
            (self.knn_last5.ndcg10, "item-kNN"),
        ]
        .into_iter()
        .fold(
            (f64::NEG_INFINITY, ""),
            |a, b| if b.0 > a.0 { b } else { a },
        )
    }
}

/// What the report says for a ratio to the best baseline when no baseline ranked a single
/// target in its top 10 (every target was already in its user's history, say): a ratio to
/// zero has no meaning.
const NO_BASELINE_HIT: &str = "no baseline hit";

/// The full evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub edgerec_int8: Metrics,
    pub edgerec_f32: Metrics,
    pub edgerec_int8_last10: Metrics,
    pub popularity: Metrics,
    pub trending_30d: Metrics,
    pub markov_last_item: Metrics,
    pub knn_last5: Metrics,
    /// Every method given the same clicks: 0, 1, 2, 3, 5 and the full history.
    pub by_session_length: Vec<LengthRow>,
    pub tuned: Tuned,
    pub quantization_cost_rel_ndcg: f64,
    pub train_seconds: f64,
    pub config: TrainConfig,
}

/// The protocol of DATA.md end to end: tune on validation, refit on train+validation, test.
pub fn evaluate(d: &Dataset, cfg: &TrainConfig, quiet: bool) -> Result<Report> {
    let cfg = &resolve_config(d, cfg);
    let split = Split::new(d);
    if split.users.is_empty() {
        anyhow::bail!(
            "nothing to evaluate: none of the {} users has the 3 events the protocol needs \
             (a test target, a validation target and one event before them)",
            d.sequences.len()
        );
    }
    let tuned = tune(d, cfg, quiet)?;
    let started = Instant::now();
    let (mut p, t) = fit(d, &split.train_val, cfg, None, quiet, "fit (test)")?;
    fit_encoder(d, &split.train_val, cfg, &mut p, &t, &tuned.combination)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let test = split.test(d);
    let combination = &tuned.combination;
    let int8 = eval::build_engine(&p, &t, cfg, Dtype::I8, combination)?;
    let f32e = eval::build_engine(&p, &t, cfg, Dtype::F32, combination)?;
    let base = Baselines::fit(d.item_count(), &split.train_val);
    let by_session_length: Vec<LengthRow> = Clicks::TABLE
        .into_iter()
        .map(|clicks| LengthRow {
            clicks: clicks.label(),
            edgerec_int8: eval::evaluate(&test, |q| eval::engine_top10(&int8, d, q, clicks)),
            popularity: eval::evaluate(&test, |q| base.popularity(q, clicks)),
            trending_30d: eval::evaluate(&test, |q| base.trending(q, clicks)),
            markov_last_item: eval::evaluate(&test, |q| base.markov(q, clicks)),
            knn_last5: eval::evaluate(&test, |q| base.knn(q, clicks)),
        })
        .collect();
    let full = by_session_length
        .last()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty session-length table"))?;
    let edgerec_f32 = eval::evaluate(&test, |q| eval::engine_top10(&f32e, d, q, Clicks::Full));
    Ok(Report {
        quantization_cost_rel_ndcg: (edgerec_f32.ndcg10 - full.edgerec_int8.ndcg10)
            / edgerec_f32.ndcg10.max(1e-12),
        edgerec_int8: full.edgerec_int8,
        edgerec_f32,
        edgerec_int8_last10: eval::evaluate(&test, |q| {
            eval::engine_top10(&int8, d, q, Clicks::Last(10))
        }),
        popularity: full.popularity,
        trending_30d: full.trending_30d,
        markov_last_item: full.markov_last_item,
        knn_last5: full.knn_last5,
        by_session_length,
        tuned,
        train_seconds,
        config: cfg.clone(),
    })
}

impl Report {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let row = |name: &str, m: &Metrics| {
            format!(
                "{name:<38} {:>8.4} {:>9.4} {:>6}\n",
                m.hr10, m.ndcg10, m.users
            )
        };
        let mut s = format!(
            "{:<38} {:>8} {:>9} {:>6}\n",
            "model (leave-last-out, full ranking)", "HR@10", "NDCG@10", "users"
        );
        s += &row("edgerec (int8 shards, as served)", &self.edgerec_int8);
        s += &row("edgerec (f32 shards, same model)", &self.edgerec_f32);
        s += &row(
            "edgerec (int8, knows the last 10)",
            &self.edgerec_int8_last10,
        );
        s += &row("popularity", &self.popularity);
        s += &row("trending (30 days before the request)", &self.trending_30d);
        s += &row("last-item Markov", &self.markov_last_item);
        s += &row("item-kNN cosine, last 5, 0.7^k", &self.knn_last5);
        let full = self.by_session_length.last();
        let (best, _) = full.map_or((0.0, ""), LengthRow::best_baseline);
        let gain = if best > 0.0 {
            format!("{:+.1}%", 100.0 * (self.edgerec_int8.ndcg10 / best - 1.0))
        } else {
            NO_BASELINE_HIT.to_string()
        };
        s += &format!(
            "edgerec int8 vs best baseline NDCG@10: {gain}; quantization cost: {:.2}% relative NDCG\n",
            100.0 * self.quantization_cost_rel_ndcg
        );
        s += "\nNDCG@10 by the clicks the edge knows (each method given the same clicks; they are excluded)\n";
        s += &format!(
            "{:<7} {:>9} {:>10} {:>9} {:>9} {:>9}  {:>17}\n",
            "clicks", "edgerec", "popularity", "trending", "Markov", "item-kNN", "vs best baseline"
        );
        for r in &self.by_session_length {
            let (best, name) = r.best_baseline();
            let versus = if best > 0.0 {
                format!("{:>7.3}x {name:<9}", r.edgerec_int8.ndcg10 / best)
            } else {
                NO_BASELINE_HIT.to_string()
            };
            s += &format!(
                "{:<7} {:>9.4} {:>10.4} {:>9.4} {:>9.4} {:>9.4}  {versus}\n",
                r.clicks,
                r.edgerec_int8.ndcg10,
                r.popularity.ndcg10,
                r.trending_30d.ndcg10,
                r.markov_last_item.ndcg10,
                r.knn_last5.ndcg10,
            );
        }
        s += "\nprofiles chosen on validation (embed, context, neighbours, transitions, trend, \
              encoder as a multiple of its matched weight):\n";
        for (clicks, (p, m)) in Clicks::TABLE.iter().zip(
            self.tuned
                .combination
                .profiles
                .iter()
                .zip(&self.tuned.validation),
        ) {
            s += &format!(
                "  {:<5} {:?}  validation NDCG@10 {:.4}\n",
                clicks.label(),
                crate::train::profile_row(p),
                m.ndcg10
            );
        }
        s += &format!("test fit {:.1} s\n", self.train_seconds);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `users` users with `clicks` clicks each.
    fn log(users: usize, clicks: usize) -> Dataset {
        eval::tests::uniform_log(users, clicks, 7)
    }

    /// A model small and quick enough to fit many times in a unit test.
    fn tiny_config() -> TrainConfig {
        TrainConfig {
            dim: 8,
            epochs: 2,
            negatives: 4,
            ..TrainConfig::default()
        }
    }

    /// A log in which every user's last event repeats an earlier one: the protocol excludes
    /// the history, so no method can rank the full-history target and every NDCG@10 there is 0.
    /// The table says so instead of printing a ratio of 0 to 0.
    #[test]
    fn a_table_without_baseline_hits_prints_no_ratio() {
        let mut d = log(40, 6);
        for s in &mut d.sequences {
            let first = s[0];
            let last = s.last_mut().expect("six clicks");
            last.item = first.item;
        }
        let cfg = tiny_config();
        let report = evaluate(&d, &cfg, true).expect("evaluates");
        let full = report.by_session_length.last().expect("a full row");
        assert_eq!(full.best_baseline().0, 0.0);
        assert_eq!(full.edgerec_int8.ndcg10, 0.0);
        let table = report.table();
        assert!(!table.contains("NaN") && !table.contains("inf"), "{table}");
        assert!(table.contains(NO_BASELINE_HIT), "{table}");
    }

    /// Users with two events each: no validation or test target. `eval` refuses with a clear
    /// error; tuning (as `train` runs it) keeps the untuned combination instead of the
    /// ascent's start, whose anonymous list ignores the trend.
    #[test]
    fn a_log_without_targets_is_not_evaluated_and_keeps_the_untuned_profiles() {
        let d = log(30, 2);
        let cfg = tiny_config();
        let err = evaluate(&d, &cfg, true).expect_err("refused");
        assert!(err.to_string().contains("nothing to evaluate"), "{err}");
        let tuned = tune(&d, &cfg, true).expect("tunes");
        let resolved = resolve_config(&d, &cfg);
        assert_eq!(tuned.combination, Combination::untuned(&resolved));
        assert!(tuned.validation.iter().all(|m| m.users == 0));
        // Metrics of no targets print as 0, not -0.
        assert!(tuned.validation.iter().all(|m| m.ndcg10.is_sign_positive()));
    }

    #[test]
    fn tuning_adds_positions_only_until_it_has_enough_targets() {
        let cfg = TrainConfig::default();
        assert_eq!(cfg.tuning_holdouts, 3);
        // 943 users (MovieLens-100k): 2,500 targets take three positions.
        assert_eq!(tuning_positions(&log(943, 5), &cfg), 3);
        // 1,000 users: three positions still; 2,500 users: one is enough.
        assert_eq!(tuning_positions(&log(1_000, 5), &cfg), 3);
        assert_eq!(tuning_positions(&log(2_500, 4), &cfg), 1);
        // A small log is capped by the setting, and a setting of 0 still tunes on one.
        assert_eq!(tuning_positions(&log(10, 5), &cfg), 3);
        let none = TrainConfig {
            tuning_holdouts: 0,
            ..cfg
        };
        assert_eq!(tuning_positions(&log(10, 5), &none), 1);
    }

    #[test]
    fn tuning_reports_the_figures_of_the_profiles_it_chose() {
        // Walks over 30 items: most steps go to the next item, some skip ahead, so no one
        // signal ranks every target first and the profiles have something to choose.
        let mut rng = edgerec::math::SplitMix64::new(3);
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        for u in 0..60 {
            let mut item = (u * 7) % 30;
            for k in 0..10 {
                rows.push((format!("u{u}"), format!("i{item}"), (u * 10 + k) as i64));
                item = (item + [1, 1, 2, 5, 11][rng.below(5)]) % 30;
            }
        }
        let d = eval::tests::owned_dataset(&rows);
        let cfg = tiny_config();
        let tuned = tune(&d, &cfg, true).unwrap();
        // The same fit (its session encoder trained against the profiles chosen before the
        // encoder's weight) and queries the tuner used, scored afresh.
        let (train, queries) = Split::tuning(&d, tuning_positions(&d, &cfg));
        let (mut p, t) = fit(&d, &train, &cfg, None, true, "refit").unwrap();
        fit_encoder(&d, &train, &cfg, &mut p, &t, &tuned.combination).unwrap();
        assert!(p.encoder.is_some());
        let chosen = eval::build_engine(&p, &t, &cfg, Dtype::I8, &tuned.combination).unwrap();
        let start = eval::build_engine(&p, &t, &cfg, Dtype::I8, &eval::TUNING_START).unwrap();
        let mut moved = 0;
        for (bucket, clicks) in eval::Clicks::TABLE.into_iter().enumerate() {
            let score = |engine: &edgerec::Engine| {
                eval::evaluate(&queries, |q| eval::engine_top10(engine, &d, q, clicks))
            };
            let m = score(&chosen);
            assert_eq!(tuned.validation[bucket], m, "bucket {bucket}");
            // Coordinate ascent never ends below where it started.
            let from = score(&start);
            assert!(m.ndcg10 >= from.ndcg10, "bucket {bucket}");
            moved += usize::from(m.ndcg10 > from.ndcg10);
        }
        // The tuner did move: otherwise this would check nothing but the start.
        assert!(moved >= 3, "{moved} buckets moved: {:?}", tuned.combination);
        // The encoder's weight is the ascent's last coordinate, from the profiles tuned
        // without it: no bucket scores below the same tuning without an encoder.
        let without = TrainConfig {
            encoder_epochs: 0,
            ..cfg.clone()
        };
        let plain = tune(&d, &without, true).unwrap();
        for (bucket, (with, plain)) in tuned.validation.iter().zip(&plain.validation).enumerate() {
            assert!(with.ndcg10 >= plain.ndcg10, "bucket {bucket}");
        }
        assert!(plain.combination.profiles.iter().all(|p| p.encoder == 0.0));
    }

    /// Short topical users: each of 500 users clicks 8 items of one of 20 topics (10 items
    /// each, steeply Zipf within the topic). P(j | i) ranks a topic's popular items first, as
    /// the targets are drawn; the cosine discounts them. So the tuning split must move the
    /// neighbour popularity off the cosine's 0.5, to the value the table alone scores best at.
    #[test]
    fn the_neighbour_popularity_is_chosen_on_the_tuning_split() {
        let mut rng = edgerec::math::SplitMix64::new(5);
        let weights: Vec<f32> = (0..10).map(|r| 1.0 / ((r + 1) as f32).powf(1.5)).collect();
        let total: f32 = weights.iter().sum();
        let draw = |rng: &mut edgerec::math::SplitMix64| {
            let mut x = rng.next_f32() * total;
            weights
                .iter()
                .position(|&w| {
                    x -= w;
                    x < 0.0
                })
                .unwrap_or(9)
        };
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        for u in 0..500 {
            let topic = rng.below(20);
            for k in 0..8 {
                let item = topic * 10 + draw(&mut rng);
                rows.push((format!("u{u}"), format!("i{item}"), (u * 10 + k) as i64));
            }
        }
        let d = eval::tests::owned_dataset(&rows);
        let cfg = TrainConfig::default();
        let chosen = resolve_config(&d, &cfg).neighbour_popularity.unwrap();
        // What each choice scores alone on the same queries.
        let (train, queries) = Split::tuning(&d, tuning_positions(&d, &cfg));
        let scores: Vec<f64> = train::NEIGHBOUR_POPULARITY_CHOICES
            .iter()
            .map(|&e| {
                let n = d.item_count();
                let table = train::sequence_neighbours(n, &train, 100, 0.97, 100, e);
                eval::evaluate(&queries, |q| eval::neighbour_boost_top10(&table, n, q)).ndcg10
            })
            .collect();
        let best = scores.iter().copied().fold(f64::MIN, f64::max);
        let first_best = scores.iter().position(|&s| s == best).unwrap();
        assert_eq!(
            chosen,
            train::NEIGHBOUR_POPULARITY_CHOICES[first_best],
            "{scores:?}"
        );
        assert_ne!(chosen, 0.5, "{scores:?}");
        // A value set explicitly is kept, and the final fit uses the chosen one.
        let fixed = TrainConfig {
            neighbour_popularity: Some(0.5),
            ..cfg.clone()
        };
        assert_eq!(resolve_config(&d, &fixed).neighbour_popularity, Some(0.5));
        let resolved = TrainConfig {
            neighbour_popularity: Some(chosen),
            ..cfg.clone()
        };
        let fitted = fit_tables(&d, &d.sequences, &cfg).neighbours;
        assert_eq!(
            fitted,
            train::fit_tables(d.item_count(), &d.sequences, &resolved).neighbours
        );
        assert_ne!(
            fitted,
            train::fit_tables(d.item_count(), &d.sequences, &fixed).neighbours
        );
    }

    /// A log drawn from a first-order Markov chain: each item has three successors taken with
    /// probabilities 0.6 / 0.25 / 0.15, and a third of the steps jump to a popular item
    /// instead. The last-item Markov baseline is close to the best possible list here, so the
    /// tuned model must at least match it; a tuner whose weights cannot let the transition
    /// table dominate the embedding scores (the grid once ended at 8) stays well below it.
    #[test]
    fn a_markov_log_is_ranked_at_least_as_well_as_the_markov_chain() {
        let (items, users) = (150usize, 400usize);
        let mut rng = edgerec::math::SplitMix64::new(19);
        let successors: Vec<[usize; 3]> = (0..items)
            .map(|_| [rng.below(items), rng.below(items), rng.below(items)])
            .collect();
        // Popular items: the square of a uniform draw favours low indices.
        let popular = |rng: &mut edgerec::math::SplitMix64| {
            let u = rng.next_f32();
            ((u * u * items as f32) as usize).min(items - 1)
        };
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        for u in 0..users {
            let mut item = popular(&mut rng);
            let mut ts = (u as i64) * 86_400 / 4;
            for _ in 0..15 + rng.below(15) {
                rows.push((format!("u{u}"), format!("i{item}"), ts));
                ts += 60 + rng.below(3_600) as i64;
                item = if rng.next_f32() < 1.0 / 3.0 {
                    popular(&mut rng)
                } else {
                    let r = rng.next_f32();
                    successors[item][usize::from(r >= 0.6) + usize::from(r >= 0.85)]
                };
            }
        }
        let d = eval::tests::owned_dataset(&rows);
        let cfg = TrainConfig {
            dim: 16,
            epochs: 4,
            negatives: 32,
            ..TrainConfig::default()
        };
        let report = evaluate(&d, &cfg, true).unwrap();
        for row in &report.by_session_length[1..] {
            let (markov, ours) = (row.markov_last_item.ndcg10, row.edgerec_int8.ndcg10);
            assert!(
                ours >= 0.97 * markov,
                "{} clicks: edgerec {ours:.4} against Markov {markov:.4}; profiles {:?}",
                row.clicks,
                report.tuned.combination
            );
        }
    }
}
