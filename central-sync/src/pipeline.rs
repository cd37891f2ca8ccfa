//! The training pipeline shared by `train`, `eval` and `sync`: fit tables and embeddings,
//! tune the combination on a validation split, refit, and report.

use crate::dataset::Dataset;
use crate::eval::{self, Baselines, Metrics, Split, Tuned};
use crate::train::{self, Params, Tables, TrainConfig};
use anyhow::Result;
use edgerec::format::Dtype;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
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

/// Fits tables and embeddings on `sequences`, optionally warm-started.
pub fn fit(
    d: &Dataset,
    sequences: &[Vec<crate::dataset::Step>],
    cfg: &TrainConfig,
    warm: Option<&Params>,
    quiet: bool,
    label: &str,
) -> (Params, Tables) {
    let tables = train::fit_tables(d.item_count(), sequences, cfg);
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
    (params, tables)
}

/// Tunes α/β/embedding weight: fit on the validation split's training part, grid on validation.
pub fn tune(d: &Dataset, cfg: &TrainConfig, quiet: bool) -> Result<Tuned> {
    let split = Split::new(d);
    let (p, t) = fit(d, &split.train, cfg, None, quiet, "fit (validation)");
    eval::tune(&p, &t, cfg, d, &split.validation(d))
}

/// The full evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub edgerec_int8: Metrics,
    pub edgerec_f32: Metrics,
    pub edgerec_int8_last10: Metrics,
    pub popularity: Metrics,
    pub markov_last_item: Metrics,
    pub knn_last5: Metrics,
    pub tuned: Tuned,
    pub quantization_cost_rel_ndcg: f64,
    pub train_seconds: f64,
    pub config: TrainConfig,
}

/// The protocol of DATA.md end to end: tune on validation, refit on train+validation, test.
pub fn evaluate(d: &Dataset, cfg: &TrainConfig, quiet: bool) -> Result<Report> {
    let split = Split::new(d);
    let tuned = tune(d, cfg, quiet)?;
    let cfg = TrainConfig {
        alpha: tuned.alpha,
        beta: tuned.beta,
        ..cfg.clone()
    };
    let started = Instant::now();
    let (p, t) = fit(d, &split.train_val, &cfg, None, quiet, "fit (test)");
    let train_seconds = started.elapsed().as_secs_f64();
    let test = split.test(d);
    let int8 = eval::build_engine(&p, &t, &cfg, Dtype::I8, tuned.embed_weight)?;
    let f32e = eval::build_engine(&p, &t, &cfg, Dtype::F32, tuned.embed_weight)?;
    let cap = edgerec::session::MAX_SESSION_EVENTS;
    let edgerec_int8 = eval::evaluate(&test, |q| eval::engine_top10(&int8, d, q, cap));
    let edgerec_f32 = eval::evaluate(&test, |q| eval::engine_top10(&f32e, d, q, cap));
    let edgerec_int8_last10 = eval::evaluate(&test, |q| eval::engine_top10(&int8, d, q, 10));
    let base = Baselines::fit(d.item_count(), &split.train_val);
    Ok(Report {
        quantization_cost_rel_ndcg: (edgerec_f32.ndcg10 - edgerec_int8.ndcg10)
            / edgerec_f32.ndcg10.max(1e-12),
        edgerec_int8,
        edgerec_f32,
        edgerec_int8_last10,
        popularity: eval::evaluate(&test, |q| base.popularity(q)),
        markov_last_item: eval::evaluate(&test, |q| base.markov(q)),
        knn_last5: eval::evaluate(&test, |q| base.knn(q)),
        tuned,
        train_seconds,
        config: cfg,
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
            "edgerec (int8, session = last 10)",
            &self.edgerec_int8_last10,
        );
        s += &row("popularity", &self.popularity);
        s += &row("last-item Markov", &self.markov_last_item);
        s += &row("item-kNN cosine, last 5, 0.7^k", &self.knn_last5);
        let best = self
            .knn_last5
            .ndcg10
            .max(self.markov_last_item.ndcg10)
            .max(self.popularity.ndcg10);
        s += &format!(
            "edgerec int8 vs best baseline NDCG@10: {:+.1}%; quantization cost: {:.2}% relative NDCG\n",
            100.0 * (self.edgerec_int8.ndcg10 / best - 1.0),
            100.0 * self.quantization_cost_rel_ndcg
        );
        s += &format!(
            "tuned on validation: alpha {} beta {} embed_weight {} (validation NDCG@10 {:.4}); test fit {:.1} s\n",
            self.tuned.alpha, self.tuned.beta, self.tuned.embed_weight, self.tuned.validation.ndcg10, self.train_seconds
        );
        s
    }
}
