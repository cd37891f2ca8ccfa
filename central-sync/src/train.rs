//! Training: a sequence-aware model that the edge can score from a short session in
//! microseconds.
//!
//! Four signals, all fitted on the same sequences:
//! - item neighbours: co-occurrence of items within users' sequences, each pair weighted by
//!   `decay^(distance - 1)` of its distance in the sequence and normalised like a cosine
//!   (`/ sqrt(users_i · users_j)`), top-M per item. With `decay = 1` and an unbounded reach this
//!   is plain item-kNN cosine; on MovieLens-100k validation, `decay = 0.97` scored 0.1335 NDCG@10
//!   alone against 0.1164 for the plain cosine, since items watched close together in a
//!   sequence predict each other better than items that merely share a user;
//! - transitions: first-order next-item probabilities P(j | i), top-M per item;
//! - embeddings: item vectors and biases trained for next-item prediction with sampled softmax,
//!   where the "user" is exactly the edge's session vector (the normalised, type- and
//!   position-weighted mean of the latest items' vectors), plus learned time-bin, device and geo
//!   context vectors added to it;
//! - the trend: interaction counts per item and time bucket, so the edge can rank by what was
//!   popular in the window before the request.
//!
//! The edge's score is
//! `(w_e s + w_c ctx)·e_j + b_j + α Σ_k 0.7^k nb(last_k, j) + β P(j | last) + τ trend_j(t)`,
//! where `trend_j(t)` is item j's count in the window before the request time t over the
//! window's largest count. The weights (w_e, w_c, α, β, τ) are chosen on the validation split
//! per session length (see eval.rs), so anonymous and one-click visitors get their own mix.
//! Training is deterministic for a seed and can warm-start embeddings from a previous model's
//! trainer state.

use crate::dataset::{Dataset, Step, GEO_BUCKETS};
use edgerec::format::{
    Dtype, Meta, Profile, DEVICE_CLASSES, PROFILE_BUCKETS, PROFILE_FIELDS, TIME_BINS,
};
use edgerec::math::SplitMix64;
use edgerec::writer::{ModelSpec, TrendSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Tuning targets a log needs before it stops adding hold-out positions
/// (`TrainConfig::tuning_holdouts`): about three per user on MovieLens-100k (943 users).
pub const TUNING_TARGETS: usize = 2_500;

/// The values `neighbour_popularity` is chosen among, the cosine first (kept on ties).
pub const NEIGHBOUR_POPULARITY_CHOICES: [f32; 3] = [0.5, 0.25, 0.0];

/// Hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub dim: usize,
    pub epochs: usize,
    pub negatives: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// Session events folded into the session vector (the session holds at most 24).
    pub window: usize,
    pub position_decay: f32,
    pub neighbours: usize,
    /// Weight of a co-occurrence per step of distance in the sequence (1: plain item-kNN).
    pub neighbour_decay: f32,
    /// Largest distance in the sequence at which two items still count as co-occurring.
    pub neighbour_reach: usize,
    /// How much a neighbour's own popularity discounts it: a pair's co-occurrence is divided
    /// by `users_i^(1 - e) · users_j^e` for neighbour j of item i. 0.5 is the cosine; 0 is the
    /// conditional probability P(j | i), which favours popular neighbours. `None` (the
    /// default): chosen on the tuning split among [`NEIGHBOUR_POPULARITY_CHOICES`]
    /// (`pipeline::resolve_config`).
    pub neighbour_popularity: Option<f32>,
    pub transitions: usize,
    /// Session positions feeding the neighbour boost.
    pub seq_len: usize,
    /// Neighbour boost weight α of an untuned model (`train --no-tune`).
    pub alpha: f32,
    /// Transition boost weight β of an untuned model.
    pub beta: f32,
    pub seed: u64,
    /// The edge's trend window: popularity over this many days before the request.
    pub trend_window_days: u32,
    /// Width of one trend bucket in seconds.
    pub trend_bucket_s: u32,
    /// Items kept per trend bucket (the most interacted with), bounding the edge's work.
    pub trend_items_per_bucket: usize,
    /// Days of trend buckets kept (the most recent), bounding the shard's size.
    pub trend_max_days: u32,
    /// Learning-rate factor of the session-to-query map (0: no map, the query is the folded
    /// session itself). The map is shared by every example, so it learns much more slowly
    /// than an item's row.
    pub transform_lr_scale: f32,
    /// Most hold-out positions per user that choose the per-length profiles: the weights are
    /// tuned on each user's 2nd-, 3rd-, … to-last events together, with the model fitted on
    /// the events before the earliest of them. More positions give the tuner more targets, so
    /// its choice follows the noise of one hold-out less. A log uses only as many positions as
    /// it takes to reach `TUNING_TARGETS` targets, so large logs keep one (and their tuning
    /// time).
    pub tuning_holdouts: usize,
    /// Most epochs of the session encoder's training (`crate::encoder`); 0: no encoder.
    pub encoder_epochs: usize,
    /// Most examples the encoder's training goes through, over all its epochs (at least one
    /// epoch): its time grows with the log up to this many, then stays at one epoch's.
    pub encoder_example_budget: usize,
    /// Session positions the encoder reads (newest first; the session holds 24).
    pub encoder_positions: usize,
    /// Width of the encoder's feed-forward layer.
    pub encoder_hidden: usize,
    pub encoder_learning_rate: f32,
    pub encoder_batch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dim: 32,
            // 24 epochs with 256 negatives scored above 12 with 64 at every session length on
            // MovieLens-100k validation (full history 0.1424 vs 0.1396), for 2.4x the time.
            epochs: 24,
            negatives: 256,
            learning_rate: 0.05,
            l2: 1e-5,
            window: edgerec::session::MAX_SESSION_EVENTS,
            position_decay: 0.7,
            neighbours: 100,
            neighbour_decay: 0.97,
            neighbour_reach: 100,
            // MovieLens-100k's tuning split takes 0.5 (the cosine; neighbour table alone,
            // validation NDCG@10 0.1338 against 0.1313 at 0.4 and 0.1135 at 0); a log of
            // topical 4-event users takes 0 (0.1260 against 0.1118). See docs/FIGURES.md.
            neighbour_popularity: None,
            transitions: 50,
            seq_len: 5,
            alpha: 1.0,
            beta: 1.0,
            seed: 7,
            trend_window_days: 30,
            trend_bucket_s: 21_600,
            trend_items_per_bucket: 512,
            trend_max_days: 400,
            // MovieLens-100k validation, full history: 0 (no map) 0.1424; 0.005 0.1458; 0.01
            // 0.1456; 0.02 0.1464; 0.04 0.1431; 0.1 0.1418. The middle of the plateau; with
            // seed 11, 0.1406 without the map and 0.1436 with it.
            transform_lr_scale: 0.01,
            // MovieLens-100k, scored out of sample (`sweep --refit`, three hold-outs x three
            // seeds): 3 positions against 1 gained at 0 / 1 / 2 / 3 / 5 clicks (0.0225 vs
            // 0.0215, 0.0703 vs 0.0673, 0.0788 vs 0.0765, 0.0856 vs 0.0846, 0.0967 vs 0.0947)
            // and lost on full histories (0.1386 vs 0.1398). See docs/FIGURES.md.
            tuning_holdouts: 3,
            encoder_epochs: 4,
            encoder_example_budget: 200_000,
            encoder_positions: 16,
            encoder_hidden: 64,
            encoder_learning_rate: 0.003,
            encoder_batch: 256,
        }
    }
}

impl TrainConfig {
    /// The encoder's training settings.
    pub fn encoder_training(&self) -> crate::encoder::EncoderTraining {
        crate::encoder::EncoderTraining {
            positions: self
                .encoder_positions
                .clamp(1, edgerec::encoder::MAX_POSITIONS as usize),
            hidden: self
                .encoder_hidden
                .clamp(1, edgerec::encoder::MAX_HIDDEN as usize),
            epochs: self.encoder_epochs,
            example_budget: self.encoder_example_budget,
            batch: self.encoder_batch.max(1),
            learning_rate: f64::from(self.encoder_learning_rate),
            weight_decay: 0.01,
            seed: self.seed,
        }
    }
}

/// The float parameters of a trained model (kept as trainer state for warm starts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub items: Vec<String>,
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub bias: Vec<f32>,
    pub ctx_time: Vec<f32>,
    pub ctx_device: Vec<f32>,
    pub ctx_geo: Vec<f32>,
    pub has_device: bool,
    pub has_geo: bool,
    /// The session-to-query map, `dim × dim` row-major (`q_i = Σ_j m[i·dim + j]·s_j`), applied
    /// to the folded session before the context rows are added, as the edge applies the shard's
    /// query transform. Empty: no map (also trainer state saved before the map existed).
    #[serde(default)]
    pub transform: Vec<f32>,
    /// The session encoder (`crate::encoder`), trained on the served rows; `None` when
    /// `TrainConfig::encoder_epochs` is 0 (also trainer state saved before it existed).
    #[serde(default)]
    pub encoder: Option<crate::encoder::EncoderParams>,
}

/// Sparse item-to-item lists.
pub type Sparse = Vec<Vec<(u32, f32)>>;

/// Top-`m` cosine neighbours of every item over the users' item sets.
pub fn item_neighbours(n_items: usize, sequences: &[Vec<Step>], m: usize) -> Sparse {
    let mut users_of: Vec<Vec<u32>> = vec![Vec::new(); n_items];
    for (u, s) in sequences.iter().enumerate() {
        let mut items: Vec<u32> = s.iter().map(|x| x.item).collect();
        items.sort_unstable();
        items.dedup();
        for i in items {
            users_of[i as usize].push(u as u32);
        }
    }
    let user_items: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| {
            let mut v: Vec<u32> = s.iter().map(|x| x.item).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let norm: Vec<f32> = users_of.iter().map(|u| (u.len() as f32).sqrt()).collect();
    let mut co = vec![0u32; n_items];
    let mut touched = Vec::new();
    (0..n_items)
        .map(|i| {
            for &u in &users_of[i] {
                for &j in &user_items[u as usize] {
                    if j as usize != i {
                        if co[j as usize] == 0 {
                            touched.push(j);
                        }
                        co[j as usize] += 1;
                    }
                }
            }
            let mut list: Vec<(u32, f32)> = touched
                .iter()
                .map(|&j| (j, co[j as usize] as f32 / (norm[i] * norm[j as usize])))
                .collect();
            for &j in &touched {
                co[j as usize] = 0;
            }
            touched.clear();
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(m);
            list
        })
        .collect()
}

/// Top-`m` neighbours of every item by co-occurrence within `reach` steps of the users'
/// sequences, a pair at distance `d` weighted `decay^(d - 1)`, the sum divided by
/// `sqrt(users_i · users_j)` (the users with each item, as in the cosine). Both directions
/// count, so the table is symmetric before the top-`m` cut. Deterministic: sums run in a fixed
/// order.
pub fn sequence_neighbours(
    n_items: usize,
    sequences: &[Vec<Step>],
    m: usize,
    decay: f32,
    reach: usize,
    popularity: f32,
) -> Sparse {
    // Where each item occurs: (user, position), users in order.
    let mut occurrences: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n_items];
    let mut users_of = vec![0u32; n_items];
    let mut seen = vec![u32::MAX; n_items];
    for (u, s) in sequences.iter().enumerate() {
        for (pos, x) in s.iter().enumerate() {
            occurrences[x.item as usize].push((u as u32, pos as u32));
            if seen[x.item as usize] != u as u32 {
                seen[x.item as usize] = u as u32;
                users_of[x.item as usize] += 1;
            }
        }
    }
    let power = |e: f32| -> Vec<f32> {
        users_of
            .iter()
            .map(|&n| {
                if e == 0.5 {
                    (n as f32).sqrt()
                } else {
                    (n as f32).powf(e)
                }
            })
            .collect()
    };
    let (source_norm, target_norm) = (power(1.0 - popularity), power(popularity));
    // No pair is further apart than the longest sequence.
    let reach = reach.min(sequences.iter().map(Vec::len).max().unwrap_or(0));
    // decay^(d - 1) for d in 1..=reach.
    let weights: Vec<f32> = (0..reach)
        .scan(1.0f32, |w, _| {
            let this = *w;
            *w *= decay;
            Some(this)
        })
        .collect();
    let mut co = vec![0f32; n_items];
    let mut is_touched = vec![false; n_items];
    let mut touched: Vec<u32> = Vec::new();
    (0..n_items)
        .map(|i| {
            for &(u, pos) in &occurrences[i] {
                let s = &sequences[u as usize];
                let pos = pos as usize;
                let lo = pos.saturating_sub(reach);
                let hi = (pos + reach + 1).min(s.len());
                for (b, x) in s.iter().enumerate().take(hi).skip(lo) {
                    let j = x.item as usize;
                    if j == i {
                        continue;
                    }
                    if !is_touched[j] {
                        is_touched[j] = true;
                        touched.push(j as u32);
                    }
                    co[j] += weights[b.abs_diff(pos) - 1];
                }
            }
            let mut list: Vec<(u32, f32)> = touched
                .iter()
                .map(|&j| {
                    (
                        j,
                        co[j as usize] / (source_norm[i] * target_norm[j as usize]),
                    )
                })
                .collect();
            for &j in &touched {
                co[j as usize] = 0.0;
                is_touched[j as usize] = false;
            }
            touched.clear();
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(m);
            list
        })
        .collect()
}

/// Top-`m` next-item probabilities P(j | i) from consecutive interactions.
pub fn transitions(n_items: usize, sequences: &[Vec<Step>], m: usize) -> Sparse {
    let mut counts: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n_items];
    for s in sequences {
        for w in s.windows(2) {
            *counts[w[0].item as usize].entry(w[1].item).or_insert(0.0) += 1.0;
        }
    }
    counts
        .into_iter()
        .map(|c| {
            let total: f32 = c.values().sum();
            let mut list: Vec<(u32, f32)> = c.into_iter().map(|(j, n)| (j, n / total)).collect();
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(m);
            list
        })
        .collect()
}

impl Params {
    /// Fresh parameters, or `warm` ones carried over by item id (new items start small).
    pub fn init(d: &Dataset, dim: usize, seed: u64, warm: Option<&Params>) -> Params {
        let mut rng = SplitMix64::new(seed);
        let n = d.item_count();
        let mut p = Params {
            items: d.items.clone(),
            dim,
            vectors: (0..n * dim).map(|_| 0.1 * rng.approx_normal()).collect(),
            bias: vec![0.0; n],
            ctx_time: vec![0.0; TIME_BINS * dim],
            ctx_device: vec![0.0; DEVICE_CLASSES * dim],
            ctx_geo: vec![0.0; GEO_BUCKETS as usize * dim],
            has_device: d.sequences.iter().flatten().any(|s| s.ctx.device.is_some()),
            has_geo: d.sequences.iter().flatten().any(|s| s.ctx.geo.is_some()),
            transform: Vec::new(),
            encoder: None,
        };
        if let Some(w) = warm.filter(|w| w.dim == dim) {
            let old: HashMap<&str, usize> = w
                .items
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            for (i, id) in d.items.iter().enumerate() {
                if let Some(&o) = old.get(id.as_str()) {
                    p.vectors[i * dim..(i + 1) * dim]
                        .copy_from_slice(&w.vectors[o * dim..(o + 1) * dim]);
                    p.bias[i] = w.bias[o];
                }
            }
            p.ctx_time.copy_from_slice(&w.ctx_time);
            p.ctx_device.copy_from_slice(&w.ctx_device);
            p.ctx_geo.copy_from_slice(&w.ctx_geo);
            p.transform.clone_from(&w.transform);
            p.encoder.clone_from(&w.encoder);
        }
        p
    }

    /// Whether the model has a session-to-query map (see [`Params::transform`]).
    fn has_map(&self) -> bool {
        self.transform.len() == self.dim * self.dim
    }
}

/// The session fold of a model trained with `cfg` (type weights, position decay, no time
/// decay): what the engine will fold a session with, so training folds through the same
/// [`Meta::session_weights`].
pub fn fold_meta(cfg: &TrainConfig) -> Meta {
    let mut meta = Meta::new(1, Dtype::I8, 0);
    meta.position_decay = cfg.position_decay;
    meta
}

/// One pass of sampled-softmax SGD over next-item examples. `examples` are (user, position)
/// pairs; the history is the window before the position, folded exactly as the edge folds it.
/// Returns the mean loss.
pub fn sgd_epoch(
    p: &mut Params,
    sequences: &[Vec<Step>],
    examples: &[(u32, u32)],
    cfg: &TrainConfig,
    rng: &mut SplitMix64,
    lr: f32,
) -> f32 {
    let fold = fold_meta(cfg);
    if cfg.transform_lr_scale > 0.0 && !p.has_map() {
        p.transform = identity(p.dim);
    }
    let mut step = SgdStep::new(p.dim, cfg);
    let mut loss = 0.0f64;
    for &(u, t) in examples {
        let seq = &sequences[u as usize];
        let t = t as usize;
        let rows = step.query(p, seq, t, cfg, &fold);
        step.sample(seq[t].item, p.items.len(), cfg.negatives, rng);
        loss += f64::from(step.update(p, rows, cfg.l2, lr));
    }
    (loss / examples.len().max(1) as f64) as f32
}

/// Dot product of two equally long vectors, summed in 8 interleaved partial sums. Training
/// spends most of its time here (the target's and every negative's logit). One running sum
/// makes each addition wait for the one before; eight independent ones let the compiler use
/// SIMD lanes.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `dim × dim` identity, row-major.
fn identity(dim: usize) -> Vec<f32> {
    (0..dim * dim)
        .map(|k| if k / dim == k % dim { 1.0 } else { 0.0 })
        .collect()
}

/// The context-table rows one example uses (`None`: no row, or the model has no such table).
type CtxRows = [Option<usize>; 3];

/// Buffers for one SGD example, reused across examples.
struct SgdStep {
    dim: usize,
    /// The query vector and its gradient.
    s: Vec<f32>,
    grad_s: Vec<f32>,
    /// The folded session before the query map, and its gradient (used with a map only).
    pooled: Vec<f32>,
    grad_pooled: Vec<f32>,
    transform_lr_scale: f32,
    /// The target first, then the sampled negatives, and their logits (in `update`, replaced
    /// by their exponentials once the maximum is known).
    cands: Vec<u32>,
    logits: Vec<f32>,
    /// The history's items with their normalised fold weights.
    hist: Vec<(usize, f32)>,
    wsum: f32,
}

impl SgdStep {
    fn new(dim: usize, cfg: &TrainConfig) -> SgdStep {
        SgdStep {
            dim,
            s: vec![0f32; dim],
            grad_s: vec![0f32; dim],
            pooled: vec![0f32; dim],
            grad_pooled: vec![0f32; dim],
            transform_lr_scale: cfg.transform_lr_scale,
            cands: Vec::with_capacity(cfg.negatives + 1),
            logits: Vec::with_capacity(cfg.negatives + 1),
            hist: Vec::with_capacity(cfg.window),
            wsum: 0.0,
        }
    }

    /// The query for position `t`: the session vector (newest first, weights type × decay^k,
    /// normalised by their sum) plus the context rows of the target's request.
    fn query(
        &mut self,
        p: &Params,
        seq: &[Step],
        t: usize,
        cfg: &TrainConfig,
        fold: &Meta,
    ) -> CtxRows {
        let dim = self.dim;
        self.hist.clear();
        self.wsum = 0.0;
        let window = seq[t.saturating_sub(cfg.window)..t].iter().rev();
        let weights =
            fold.session_weights(window.clone().map(|s| (s.kind, s.ts.max(0) as u64)), None);
        for (step, w) in window.zip(weights) {
            self.hist.push((step.item as usize, w));
            self.wsum += w;
        }
        self.pooled.iter_mut().for_each(|x| *x = 0.0);
        for &(i, w) in &self.hist {
            for (a, &v) in self
                .pooled
                .iter_mut()
                .zip(&p.vectors[i * dim..(i + 1) * dim])
            {
                *a += w / self.wsum * v;
            }
        }
        if p.has_map() {
            for (q, m) in self.s.iter_mut().zip(p.transform.chunks_exact(dim)) {
                *q = dot(m, &self.pooled);
            }
        } else {
            self.s.copy_from_slice(&self.pooled);
        }
        let ctx = seq[t].ctx;
        let rows = [
            ctx.time.map(usize::from),
            ctx.device.map(usize::from).filter(|_| p.has_device),
            ctx.geo.map(|g| g as usize).filter(|_| p.has_geo),
        ];
        for (table, row) in [&p.ctx_time, &p.ctx_device, &p.ctx_geo]
            .into_iter()
            .zip(rows)
        {
            if let Some(r) = row {
                self.s
                    .iter_mut()
                    .zip(&table[r * dim..(r + 1) * dim])
                    .for_each(|(a, b)| *a += b);
            }
        }
        rows
    }

    /// The target and `negatives` uniform negatives (no log-Q correction needed).
    fn sample(&mut self, target: u32, n: usize, negatives: usize, rng: &mut SplitMix64) {
        self.cands.clear();
        self.cands.push(target);
        while self.cands.len() <= negatives {
            let c = rng.below(n) as u32;
            if c != target {
                self.cands.push(c);
            }
        }
    }

    /// Softmax over the candidates, one gradient step on their rows and biases, the history's
    /// rows and the context rows. Returns the example's loss.
    fn update(&mut self, p: &mut Params, rows: CtxRows, l2: f32, lr: f32) -> f32 {
        let dim = self.dim;
        self.logits.clear();
        for &c in &self.cands {
            let e = &p.vectors[c as usize * dim..(c as usize + 1) * dim];
            self.logits.push(dot(&self.s, e) + p.bias[c as usize]);
        }
        let max = self.logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let target_logit = self.logits[0];
        // Each logit becomes its exponential once (the softmax needs it twice).
        self.logits.iter_mut().for_each(|l| *l = (*l - max).exp());
        let z: f32 = self.logits.iter().sum();
        let loss = z.ln() + max - target_logit;
        self.grad_s.iter_mut().for_each(|x| *x = 0.0);
        for (ci, &c) in self.cands.iter().enumerate() {
            let g = self.logits[ci] / z - if ci == 0 { 1.0 } else { 0.0 };
            // Zipped slices rather than indices: no bounds checks, so the loop vectorises
            // (it was the trainer's hottest loop, compiled scalar).
            let row = &mut p.vectors[c as usize * dim..(c as usize + 1) * dim];
            for ((gs, v), &sd) in self.grad_s.iter_mut().zip(row).zip(&self.s) {
                *gs += g * *v;
                *v -= lr * (g * sd + l2 * *v);
            }
            p.bias[c as usize] -= lr * g;
        }
        // Through the map, if any: the gradient reaching the folded session is Mᵀ·grad_s,
        // and the map's own gradient is grad_s ⊗ pooled.
        let grad_pooled = if p.has_map() {
            self.grad_pooled.iter_mut().for_each(|x| *x = 0.0);
            let m_lr = lr * self.transform_lr_scale;
            for (m, &g) in p.transform.chunks_exact_mut(dim).zip(&self.grad_s) {
                for ((gp, mij), &sj) in self.grad_pooled.iter_mut().zip(m).zip(&self.pooled) {
                    *gp += *mij * g;
                    *mij -= m_lr * g * sj;
                }
            }
            &self.grad_pooled
        } else {
            &self.grad_s
        };
        for &(i, w) in &self.hist {
            let f = lr * w / self.wsum;
            for (v, &g) in p.vectors[i * dim..(i + 1) * dim]
                .iter_mut()
                .zip(grad_pooled)
            {
                *v -= f * g;
            }
        }
        let ctx_lr = lr * 0.5;
        let tables = [&mut p.ctx_time, &mut p.ctx_device, &mut p.ctx_geo];
        for (table, row) in tables.into_iter().zip(rows) {
            if let Some(r) = row {
                for (v, &g) in table[r * dim..(r + 1) * dim].iter_mut().zip(&self.grad_s) {
                    *v -= ctx_lr * g;
                }
            }
        }
        loss
    }
}

/// All (user, position) next-item examples with a non-empty history.
pub fn all_examples(sequences: &[Vec<Step>]) -> Vec<(u32, u32)> {
    sequences
        .iter()
        .enumerate()
        .flat_map(|(u, s)| (1..s.len()).map(move |t| (u as u32, t as u32)))
        .collect()
}

/// Trains embeddings for `cfg.epochs` epochs over `examples`, shuffled per epoch, with a
/// linearly decaying learning rate. Returns the last epoch's loss.
pub fn fit_embeddings(
    p: &mut Params,
    sequences: &[Vec<Step>],
    mut examples: Vec<(u32, u32)>,
    cfg: &TrainConfig,
    mut progress: impl FnMut(usize, f32),
) -> f32 {
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5eed);
    let mut loss = 0.0;
    for epoch in 0..cfg.epochs {
        for i in (1..examples.len()).rev() {
            examples.swap(i, rng.below(i + 1));
        }
        let lr = cfg.learning_rate * (1.0 - epoch as f32 / cfg.epochs.max(1) as f32).max(0.05);
        loss = sgd_epoch(p, sequences, &examples, cfg, &mut rng, lr);
        progress(epoch, loss);
    }
    loss
}

/// Everything the model needs besides the embeddings.
pub struct Tables {
    pub neighbours: Sparse,
    pub transitions: Sparse,
    pub trend: Option<TrendSpec>,
}

pub fn fit_tables(n_items: usize, sequences: &[Vec<Step>], cfg: &TrainConfig) -> Tables {
    Tables {
        neighbours: sequence_neighbours(
            n_items,
            sequences,
            cfg.neighbours,
            cfg.neighbour_decay,
            cfg.neighbour_reach,
            cfg.neighbour_popularity
                .unwrap_or(NEIGHBOUR_POPULARITY_CHOICES[0]),
        ),
        transitions: transitions(n_items, sequences, cfg.transitions),
        trend: fit_trend(sequences, cfg),
    }
}

/// Interaction counts per item and time bucket (`cfg.trend_bucket_s` wide, aligned to the
/// epoch), the buckets of the last `cfg.trend_max_days` days up to the latest event, each cut to its
/// `cfg.trend_items_per_bucket` most frequent items. `None` without events.
pub fn fit_trend(sequences: &[Vec<Step>], cfg: &TrainConfig) -> Option<TrendSpec> {
    let width = i64::from(cfg.trend_bucket_s.max(1));
    let last = sequences.iter().flatten().map(|s| s.ts).max()?;
    let end_bucket = last.div_euclid(width) + 1;
    let kept = (i64::from(cfg.trend_max_days.max(1)) * 86_400 + width - 1) / width;
    let first_bucket = end_bucket - kept;
    let first_bucket = first_bucket.max(
        sequences
            .iter()
            .flatten()
            .map(|s| s.ts.div_euclid(width))
            .min()?,
    );
    let n = (end_bucket - first_bucket) as usize;
    let mut counts: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n];
    for s in sequences.iter().flatten() {
        let b = s.ts.div_euclid(width) - first_bucket;
        if b >= 0 {
            *counts[b as usize].entry(s.item).or_insert(0.0) += 1.0;
        }
    }
    let buckets = counts
        .into_iter()
        .map(|c| {
            let mut v: Vec<(u32, f32)> = c.into_iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(cfg.trend_items_per_bucket);
            v.sort_by_key(|e| e.0);
            v
        })
        .collect();
    Some(TrendSpec {
        start: first_bucket * width,
        bucket_s: width as u32,
        window_s: cfg.trend_window_days.max(1) * 86_400,
        buckets,
    })
}

/// How the signals are combined: one [`Profile`] per session-length bucket gives the weight of
/// the session embedding, the context, the neighbour (α) and transition (β) tables and the
/// trend for sessions of that length. Chosen on validation data (see `eval::tune`). The session
/// encoder's weight is a multiple of the weight its training matched in the bucket, applied
/// where the model is served ([`served_profiles`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Combination {
    #[serde(with = "profiles_serde")]
    pub profiles: [Profile; PROFILE_BUCKETS],
}

impl Combination {
    /// The combination of an untuned model: α and β from the config, every other signal as
    /// trained, and anonymous visitors ranked by the trend.
    pub fn untuned(cfg: &TrainConfig) -> Combination {
        let mut profiles = [Profile {
            neighbours: cfg.alpha,
            transitions: cfg.beta,
            ..Profile::NEUTRAL
        }; PROFILE_BUCKETS];
        profiles[0].trend = 8.0;
        Combination { profiles }
    }
}

/// The profiles as served: a combination weighs the session encoder in multiples of the
/// weight its training matched in each bucket (see `EncoderParams::bucket_scales`), a unitless
/// choice that stays right when a sync retrains the encoder and its scales move; the model
/// carries the product.
pub fn served_profiles(p: &Params, c: &Combination) -> [Profile; PROFILE_BUCKETS] {
    let mut profiles = c.profiles;
    if let Some(e) = &p.encoder {
        for (b, profile) in profiles.iter_mut().enumerate() {
            profile.encoder *= e.bucket_scale(b);
        }
    }
    profiles
}

/// Values in a profile row as the tuner moves them and trainer state keeps them: the profile
/// table's fields, then the encoder's weight.
pub const PROFILE_ROW: usize = PROFILE_FIELDS + 1;

/// A profile as a row (see [`PROFILE_ROW`]).
pub fn profile_row(p: &Profile) -> [f32; PROFILE_ROW] {
    let mut row = [0.0; PROFILE_ROW];
    row[..PROFILE_FIELDS].copy_from_slice(&p.to_array());
    row[PROFILE_FIELDS] = p.encoder;
    row
}

/// A row back as a profile; a row without the encoder's weight (saved before it existed)
/// leaves it neutral.
pub fn profile_from_row(row: &[f32]) -> Profile {
    let table = Profile::from_slice(&row[..row.len().min(PROFILE_FIELDS)]);
    Profile {
        encoder: row.get(PROFILE_FIELDS).copied().unwrap_or(table.encoder),
        ..table
    }
}

/// Profiles as rows of `[embed, context, neighbours, transitions, trend, encoder]`, one per
/// bucket (rows saved before the encoder existed have five values; their encoder weight is
/// neutral, and their models have no encoder).
mod profiles_serde {
    use edgerec::format::{Profile, PROFILE_BUCKETS, PROFILE_FIELDS};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        p: &[Profile; PROFILE_BUCKETS],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let rows: Vec<[f32; super::PROFILE_ROW]> = p.iter().map(super::profile_row).collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[Profile; PROFILE_BUCKETS], D::Error> {
        let rows = Vec::<Vec<f32>>::deserialize(d)?;
        if rows.len() != PROFILE_BUCKETS {
            return Err(serde::de::Error::custom(format!(
                "{} profiles, expected {PROFILE_BUCKETS}",
                rows.len()
            )));
        }
        if let Some(r) = rows
            .iter()
            .find(|r| !(PROFILE_FIELDS..=super::PROFILE_ROW).contains(&r.len()))
        {
            return Err(serde::de::Error::custom(format!(
                "a profile of {} values, expected {PROFILE_FIELDS} or {}",
                r.len(),
                super::PROFILE_ROW
            )));
        }
        Ok(core::array::from_fn(|i| super::profile_from_row(&rows[i])))
    }
}

/// Item metadata for categories (id → genre names).
pub type Categories = HashMap<String, Vec<String>>;

/// The model spec the writer packs: the combination's α, β and embedding weight and the
/// session fold in its `Meta`, its profiles and the trend table beside them.
pub fn model_spec(
    p: &Params,
    tables: &Tables,
    cfg: &TrainConfig,
    dtype: Dtype,
    combination: &Combination,
    categories: Option<&Categories>,
) -> ModelSpec {
    let n = p.items.len();
    let mut meta = Meta {
        dim: p.dim as u32,
        dtype,
        total_items: n as u32,
        ..fold_meta(cfg)
    };
    // Unit weights here: the per-length profiles carry the tuned α, β and embedding weight.
    meta.embed_weight = 1.0;
    meta.seq_len = cfg.seq_len.min(edgerec::format::MAX_SEQ_LEN) as u32;
    let mut w = 1.0;
    for k in 0..meta.seq_len as usize {
        meta.seq_weights[0][k] = w;
        w *= cfg.position_decay;
    }
    meta.seq_weights[1][0] = 1.0;
    meta.geo_precision = crate::dataset::GEO_PRECISION as u32;
    meta.geo_buckets = if p.has_geo { GEO_BUCKETS } else { 0 };
    let (mut names, mut cats) = (Vec::<String>::new(), Vec::new());
    if let Some(c) = categories {
        let mut all: Vec<&String> = c.values().flatten().collect();
        all.sort();
        all.dedup();
        names = all.into_iter().take(64).cloned().collect();
        cats = p
            .items
            .iter()
            .map(|id| {
                c.get(id).map_or(0u64, |g| {
                    g.iter()
                        .filter_map(|x| names.iter().position(|n| n == x))
                        .fold(0, |m, b| m | 1 << b)
                })
            })
            .collect();
    }
    ModelSpec {
        meta: Some(meta),
        ids: p.items.clone(),
        vectors: p.vectors.clone(),
        bias: p.bias.clone(),
        categories: cats,
        category_names: names,
        seq: [tables.neighbours.clone(), tables.transitions.clone()],
        query_transform: p.has_map().then(|| p.transform.clone()),
        query_bias: None,
        ctx_time: Some(p.ctx_time.clone()),
        ctx_device: p.has_device.then(|| p.ctx_device.clone()),
        ctx_geo: p.has_geo.then(|| p.ctx_geo.clone()),
        profiles: Some(served_profiles(p, combination)),
        trend: tables.trend.clone(),
        // Large catalogs get the two-stage scan; small ones are scanned exactly anyway.
        first_pass: dtype == Dtype::I8 && n >= edgerec::first_pass::MIN_ITEMS as usize,
        seq_target_bytes: None,
        encoder: p.encoder.as_ref().map(crate::encoder::EncoderParams::spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::context::ContextRows;

    /// Users' sequences of item indices as steps (time and context do not matter here).
    fn sequences(users: &[&[u32]]) -> Vec<Vec<Step>> {
        users
            .iter()
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(t, &item)| Step {
                        item,
                        ts: t as i64,
                        kind: edgerec::EventType::Click,
                        ctx: ContextRows::default(),
                        geohash: None,
                        tz_offset_min: 0,
                        event: 0,
                    })
                    .collect()
            })
            .collect()
    }

    fn weight(list: &[(u32, f32)], j: u32) -> Option<f32> {
        list.iter().find(|e| e.0 == j).map(|e| e.1)
    }

    #[test]
    fn without_decay_or_reach_sequence_neighbours_are_the_item_knn_cosine() {
        // No item repeats within a user, so co-occurring pairs are counted once per user, as
        // the cosine over users' item sets counts them.
        let s = sequences(&[
            &[0, 1, 2, 3],
            &[1, 3, 4],
            &[4, 0, 2],
            &[2, 1],
            &[3, 0, 4, 1, 5],
        ]);
        let cosine = item_neighbours(6, &s, usize::MAX);
        let seq = sequence_neighbours(6, &s, usize::MAX, 1.0, usize::MAX / 2, 0.5);
        for (a, b) in cosine.iter().zip(&seq) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.0, y.0);
                assert!((x.1 - y.1).abs() < 1e-6, "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn closer_pairs_weigh_more_and_reach_cuts_far_ones() {
        // One user a b c d, another a c: users(a) = users(c) = 2, users(b) = users(d) = 1.
        let s = sequences(&[&[0, 1, 2, 3], &[0, 2]]);
        let nb = sequence_neighbours(4, &s, usize::MAX, 0.5, 100, 0.5);
        // a: b at distance 1 (weight 1 / sqrt(2·1)), c at 2 and at 1 ((0.5 + 1) / sqrt(2·2)),
        // d at 3 (0.25 / sqrt(2·1)).
        let a = &nb[0];
        assert!((weight(a, 1).unwrap() - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        assert!((weight(a, 2).unwrap() - 1.5 / 2.0).abs() < 1e-6);
        assert!((weight(a, 3).unwrap() - 0.25 / 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(a.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 1, 3]);
        // Symmetric: d sees a with the same weight.
        assert_eq!(weight(&nb[3], 0), weight(a, 3));
        // Reach 1: only adjacent pairs.
        let near = sequence_neighbours(4, &s, usize::MAX, 0.5, 1, 0.5);
        assert_eq!(weight(&near[0], 3), None);
        assert!((weight(&near[0], 2).unwrap() - 1.0 / 2.0).abs() < 1e-6);
        // The top-m cut keeps the strongest.
        let top1 = sequence_neighbours(4, &s, 1, 0.5, 100, 0.5);
        assert_eq!(top1[0].len(), 1);
        assert_eq!(top1[0][0].0, 2);
    }

    /// Parameters for `n` items of dimension `dim`, filled from a seed, with a query map.
    fn small_params(n: usize, dim: usize, seed: u64) -> Params {
        let mut rng = SplitMix64::new(seed);
        let mut normal = |k: usize, scale: f32| -> Vec<f32> {
            (0..k).map(|_| scale * rng.approx_normal()).collect()
        };
        Params {
            items: (0..n).map(|i| format!("i{i}")).collect(),
            dim,
            vectors: normal(n * dim, 0.5),
            bias: normal(n, 0.1),
            ctx_time: vec![0.0; TIME_BINS * dim],
            ctx_device: vec![0.0; DEVICE_CLASSES * dim],
            ctx_geo: vec![0.0; GEO_BUCKETS as usize * dim],
            has_device: false,
            has_geo: false,
            transform: normal(dim * dim, 0.5),
            encoder: None,
        }
    }

    /// A combination weighs the encoder in multiples of each bucket's matched weight, so the
    /// same combination serves the product with the encoder of the day: an incremental sync
    /// that retrains the encoder (and moves its scales) keeps the tuned choice's meaning.
    #[test]
    fn served_profiles_scale_the_encoder_multiples() {
        let mut p = small_params(4, 2, 1);
        let mut c = Combination::untuned(&TrainConfig::default());
        c.profiles[2].encoder = 1.5;
        c.profiles[3].encoder = 0.0;
        // No encoder: the combination as it is.
        assert_eq!(served_profiles(&p, &c), c.profiles);
        let mut scales = vec![0.25; PROFILE_BUCKETS];
        scales[2] = 4.0;
        p.encoder = Some(crate::encoder::EncoderParams {
            positions: 1,
            hidden: 1,
            weights: Vec::new(),
            bucket_scales: scales.clone(),
        });
        let served = served_profiles(&p, &c);
        assert_eq!(served[2].encoder, 6.0);
        assert_eq!(served[3].encoder, 0.0);
        // An untuned bucket (multiple 1) gets the matched weight itself.
        assert_eq!(served[1].encoder, 0.25);
        // The other fields are untouched.
        assert_eq!(served[2].to_array(), c.profiles[2].to_array());
        // A retrained encoder with other scales: the same multiples, the new products.
        scales[2] = 8.0;
        p.encoder.as_mut().unwrap().bucket_scales = scales;
        assert_eq!(served_profiles(&p, &c)[2].encoder, 12.0);
    }

    #[test]
    fn query_map_gradients_match_finite_differences() {
        // One example: history items 0, 1, 2 (newest last), target 3, negatives 4 and 5, so
        // no history item is also a candidate. With learning rate 1, the step moves the map
        // and the history rows by minus their gradients, which must match central differences
        // of the loss: to 1e-4 + 1% (f32 arithmetic, step 0.01), where the gradients are
        // about 0.01, so a gradient off by a few percent fails.
        let (n, dim) = (6, 4);
        let seq = &sequences(&[&[0, 1, 2, 3]])[0];
        let cfg = TrainConfig {
            dim,
            l2: 0.0,
            transform_lr_scale: 1.0,
            ..TrainConfig::default()
        };
        let fold = fold_meta(&cfg);
        let loss = |p: &Params| {
            let mut step = SgdStep::new(dim, &cfg);
            let rows = step.query(p, seq, 3, &cfg, &fold);
            step.cands = vec![3, 4, 5];
            let mut q = p.clone();
            step.update(&mut q, rows, 0.0, 0.0)
        };
        let before = small_params(n, dim, 3);
        let mut after = before.clone();
        let mut step = SgdStep::new(dim, &cfg);
        let rows = step.query(&after, seq, 3, &cfg, &fold);
        step.cands = vec![3, 4, 5];
        step.update(&mut after, rows, 0.0, 1.0);
        let eps = 1e-2f32;
        let numeric = |edit: &dyn Fn(&mut Params, f32)| {
            let (mut hi, mut lo) = (before.clone(), before.clone());
            edit(&mut hi, eps);
            edit(&mut lo, -eps);
            (loss(&hi) - loss(&lo)) / (2.0 * eps)
        };
        for k in 0..dim * dim {
            let analytic = before.transform[k] - after.transform[k];
            let fd = numeric(&|p: &mut Params, e| p.transform[k] += e);
            assert!(
                (analytic - fd).abs() < 1e-4 + 0.01 * fd.abs(),
                "map entry {k}: {analytic} vs {fd}"
            );
        }
        for k in 0..3 * dim {
            let analytic = before.vectors[k] - after.vectors[k];
            let fd = numeric(&|p: &mut Params, e| p.vectors[k] += e);
            assert!(
                (analytic - fd).abs() < 1e-4 + 0.01 * fd.abs(),
                "history row value {k}: {analytic} vs {fd}"
            );
        }
        // The map changed something, and the model spec carries it for the edge.
        assert_ne!(before.transform, after.transform);
    }

    #[test]
    fn trainer_state_without_a_map_still_loads() {
        let mut p = small_params(3, 2, 1);
        p.transform.clear();
        let mut json: serde_json::Value = serde_json::to_value(&p).unwrap();
        json.as_object_mut().unwrap().remove("transform");
        let back: Params = serde_json::from_value(json).unwrap();
        assert!(back.transform.is_empty());
        assert_eq!(back.vectors, p.vectors);
    }
}
