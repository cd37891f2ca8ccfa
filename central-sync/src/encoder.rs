//! Trains the session encoder the edge runs (`edgerec::encoder`), with candle on the CPU.
//!
//! The encoder is trained as a correction of the ranking the rest of the model already serves:
//! for every next-item target of the training sequences, the served (int8) model scores every
//! item for the session before it (`Engine::recommend` over the whole catalog, with the
//! profiles tuning chose: query, bias, neighbour, transition and trend boosts), and the encoder
//! learns `e` so that `score + e · row` ranks the target first, by a full softmax
//! cross-entropy over the catalog. The item rows are the served rows and stay fixed: they are
//! the encoder's input and its output layer, as at the edge. Its last norm starts at zero, so
//! training starts from the served model, and the per-length weight of `e` is chosen on
//! validation afterwards (`eval::tune`).
//!
//! Why candle: a measured choice for this machine. `tools/encoder-probe` trained a SASRec-style
//! encoder with candle 0.9 at 9 s per MovieLens-100k epoch on one core; candle builds from
//! crates.io with no system libraries, which keeps `make setup` to cargo.
//!
//! The forward pass is the one the module documentation of `edgerec::encoder` writes out, in
//! batches: one attention head read at the newest position, the key and value products taken
//! through the sums as the core takes them (the same function, another order of rounding).

use crate::dataset::{Dataset, Step};
use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use edgerec::encoder::{EncoderShape, TENSORS};
use edgerec::format::{EVENT_TYPES, PROFILE_BUCKETS};
use edgerec::math::SplitMix64;
use edgerec::{Engine, Session};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The layer norms' ε, as the core's.
const NORM_EPSILON: f64 = 1e-5;

/// A trained encoder: what the shard's `SeqEncoder` section carries (the weights in
/// `edgerec::encoder::TENSORS` order) and what a warm start continues from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderParams {
    pub positions: u32,
    pub hidden: u32,
    pub weights: Vec<f32>,
    /// Per profile bucket, the encoder weight its training matched: training learns a scale
    /// of the served scores per bucket (tuned profiles weigh the boosts up to 1,024, so the
    /// scores' spread differs by orders of magnitude between buckets), and ranking by
    /// `scale · score + e · row` is ranking by `score + e · row / scale`. Tuning tries
    /// multiples of it. Empty (state saved before it existed): 1.
    #[serde(default)]
    pub bucket_scales: Vec<f32>,
}

impl EncoderParams {
    /// The encoder weight bucket `b`'s training matched (see `bucket_scales`).
    pub fn bucket_scale(&self, b: usize) -> f32 {
        self.bucket_scales.get(b).copied().unwrap_or(1.0)
    }

    pub fn shape(&self, dim: usize) -> EncoderShape {
        EncoderShape {
            dim: dim as u32,
            positions: self.positions,
            hidden: self.hidden,
        }
    }

    /// The writer's form.
    pub fn spec(&self) -> edgerec::writer::EncoderSpec {
        edgerec::writer::EncoderSpec {
            positions: self.positions,
            hidden: self.hidden,
            weights: self.weights.clone(),
        }
    }
}

/// How to train it.
#[derive(Debug, Clone, Copy)]
pub struct EncoderTraining {
    pub positions: usize,
    pub hidden: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Most examples over all epochs (at least one epoch).
    pub example_budget: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// What a run did, for the log and the bench.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EncoderRun {
    pub examples: usize,
    pub epochs: usize,
    pub seconds: f64,
    pub examples_per_second: f64,
    /// Mean cross-entropy of the last epoch, and of the model without the encoder on the same
    /// examples (the loss at the start).
    pub loss: f64,
    pub loss_without: f64,
}

/// The training examples: per next-item target, where it is in the sequences, the session's
/// latest items (dataset indices, newest first, padded with the catalog size), their event
/// types and the padding mask.
struct Examples {
    /// (sequence, position of the target).
    at: Vec<(u32, u32)>,
    items: Vec<u32>,
    kinds: Vec<u32>,
    /// 0 for a session position, a large negative number for padding.
    mask: Vec<f32>,
    /// The profile bucket of the session's length.
    buckets: Vec<u32>,
    targets: Vec<u32>,
}

impl Examples {
    fn len(&self) -> usize {
        self.targets.len()
    }
}

/// The events the edge's session holds before position `t` of `seq`.
fn history(seq: &[Step], t: usize) -> &[Step] {
    &seq[t.saturating_sub(edgerec::session::MAX_SESSION_EVENTS)..t]
}

/// Every next-item target of `sequences` after at least one event that `only` accepts (by
/// sequence and position), but targets already in the session before them (the edge never
/// ranks those).
fn examples(
    d: &Dataset,
    sequences: &[Vec<Step>],
    positions: usize,
    only: &dyn Fn(usize, usize) -> bool,
) -> Examples {
    let pad = d.item_count() as u32;
    let mut e = Examples {
        at: Vec::new(),
        items: Vec::new(),
        kinds: Vec::new(),
        mask: Vec::new(),
        buckets: Vec::new(),
        targets: Vec::new(),
    };
    for (u, seq) in sequences.iter().enumerate() {
        for t in 1..seq.len() {
            let history = history(seq, t);
            if !only(u, t) || history.iter().any(|s| s.item == seq[t].item) {
                continue;
            }
            // The session as the engine keeps it (time order, file order within a second),
            // newest first.
            let newest: Vec<&Step> = history.iter().rev().take(positions).collect();
            for j in 0..positions {
                match newest.get(j) {
                    Some(s) => {
                        e.items.push(s.item);
                        e.kinds.push(s.kind as u32);
                        e.mask.push(0.0);
                    }
                    None => {
                        e.items.push(pad);
                        e.kinds.push(0);
                        e.mask.push(-1e9);
                    }
                }
            }
            e.at.push((u as u32, t as u32));
            e.buckets
                .push(edgerec::format::profile_bucket(history.len()) as u32);
            e.targets.push(seq[t].item);
        }
    }
    e
}

/// The served model's score of every item (dataset order) for the session before each
/// example's target, at the target's time and context: a large negative number for the
/// session's own items, which the edge never returns.
fn served_scores(
    served: &Engine,
    d: &Dataset,
    sequences: &[Vec<Step>],
    at: &[(u32, u32)],
    dataset_index: &[u32],
) -> Vec<f32> {
    let n = d.item_count();
    let mut out = vec![-1e9f32; at.len() * n];
    for (&(u, t), scores) in at.iter().zip(out.chunks_exact_mut(n)) {
        let seq = &sequences[u as usize];
        let history = history(seq, t as usize);
        let mut session = Session::new();
        for s in history {
            session.observe(&d.items[s.item as usize], s.kind, s.ts.max(0) as u64);
        }
        let request = edgerec::Request {
            context: d.context(&seq[t as usize]),
            ..edgerec::Request::default()
        };
        for (index, score) in served.scores(&session, &request).into_iter().enumerate() {
            if let Some(&i) = dataset_index.get(index) {
                scores[i as usize] = score;
            }
        }
        for s in history {
            scores[s.item as usize] = -1e9;
        }
    }
    out
}

/// The encoder's weights as candle variables, in `TENSORS` order.
struct Weights {
    vars: Vec<Var>,
}

impl Weights {
    /// Fresh weights: small random matrices, the first two norms at 1 and the output norm at
    /// zero, so the encoder adds nothing until it learns to.
    fn init(shape: EncoderShape, rng: &mut SplitMix64, dev: &Device) -> Result<Weights> {
        use edgerec::encoder::Tensor as T;
        let (d, h) = (shape.dim as f32, shape.hidden as f32);
        let mut weights = Vec::with_capacity(shape.weight_count());
        for t in TENSORS {
            let n = shape.len(t);
            match t {
                T::Positions | T::Types => weights.extend(normal(n, 0.02, rng)),
                T::Query | T::Key | T::Value | T::Output | T::Ffn1 => {
                    weights.extend(normal(n, (1.0 / d).sqrt(), rng))
                }
                T::Ffn2 => weights.extend(normal(n, (1.0 / h).sqrt(), rng)),
                T::Norm1Weight | T::Norm2Weight => weights.extend(vec![1.0; n]),
                _ => weights.extend(vec![0.0; n]),
            }
        }
        Weights::from_flat(shape, &weights, dev)
    }

    /// From weights in `TENSORS` order (a warm start's, or fresh ones), each tensor in the
    /// shape the forward pass multiplies by.
    fn from_flat(shape: EncoderShape, weights: &[f32], dev: &Device) -> Result<Weights> {
        anyhow::ensure!(
            weights.len() == shape.weight_count(),
            "encoder weights of another shape"
        );
        let mut vars = Vec::with_capacity(TENSORS.len());
        let mut at = 0;
        for t in TENSORS {
            let n = shape.len(t);
            let dims = tensor_dims(shape, t);
            let values = weights[at..at + n].to_vec();
            at += n;
            vars.push(Var::from_tensor(&Tensor::from_vec(values, dims, dev)?)?);
        }
        Ok(Weights { vars })
    }

    fn get(&self, t: edgerec::encoder::Tensor) -> &Tensor {
        let i = TENSORS.iter().position(|&x| x == t).unwrap_or(0);
        self.vars[i].as_tensor()
    }

    fn to_params(&self, shape: EncoderShape) -> Result<EncoderParams> {
        let mut weights = Vec::with_capacity(shape.weight_count());
        for v in &self.vars {
            weights.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(EncoderParams {
            positions: shape.positions,
            hidden: shape.hidden,
            weights,
            bucket_scales: Vec::new(),
        })
    }
}

fn tensor_dims(shape: EncoderShape, t: edgerec::encoder::Tensor) -> Vec<usize> {
    use edgerec::encoder::Tensor as T;
    let (d, h) = (shape.dim as usize, shape.hidden as usize);
    match t {
        T::Positions => vec![shape.positions as usize, d],
        T::Types => vec![EVENT_TYPES, d],
        T::Query | T::Key | T::Value | T::Output => vec![d, d],
        T::Ffn1 => vec![h, d],
        T::Ffn2 => vec![d, h],
        _ => vec![shape.len(t)],
    }
}

fn normal(n: usize, scale: f32, rng: &mut SplitMix64) -> Vec<f32> {
    (0..n).map(|_| scale * rng.approx_normal()).collect()
}

/// `(x − mean) / √(variance + ε) · weight + bias` over the last dimension.
fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(variance + NORM_EPSILON)?.sqrt()?)?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}

/// The encoder's output `[B, dim]` for a batch of sessions: `items` and `kinds` `[B·P]`,
/// `mask` `[B, P]`; `rows` is the catalog's rows with a zero row for padding appended.
fn forward(
    w: &Weights,
    rows: &Tensor,
    items: &Tensor,
    kinds: &Tensor,
    mask: &Tensor,
    batch: usize,
    positions: usize,
) -> candle_core::Result<Tensor> {
    use edgerec::encoder::Tensor as T;
    let dim = rows.dim(1)?;
    let x = rows
        .index_select(items, 0)?
        .reshape((batch, positions, dim))?
        .broadcast_add(&w.get(T::Positions).unsqueeze(0)?)?
        .add(
            &w.get(T::Types)
                .index_select(kinds, 0)?
                .reshape((batch, positions, dim))?,
        )?;
    let h = layer_norm(&x, w.get(T::Norm1Weight), w.get(T::Norm1Bias))?;
    let h0 = h.narrow(1, 0, 1)?.squeeze(1)?;
    let q = h0.matmul(&w.get(T::Query).t()?)?;
    // (key · h_j) · q = h_j · (keyᵀ · q), as the core computes it.
    let kq = q.matmul(w.get(T::Key))?;
    let scores = h
        .broadcast_mul(&kq.unsqueeze(1)?)?
        .sum(D::Minus1)?
        .affine(1.0 / (dim as f64).sqrt(), 0.0)?
        .add(mask)?;
    let attention = candle_nn::ops::softmax_last_dim(&scores)?;
    let pooled = h.broadcast_mul(&attention.unsqueeze(2)?)?.sum(1)?;
    let value = pooled.matmul(&w.get(T::Value).t()?)?;
    let x0 = x.narrow(1, 0, 1)?.squeeze(1)?;
    let y = value.matmul(&w.get(T::Output).t()?)?.add(&x0)?;
    let u = layer_norm(&y, w.get(T::Norm2Weight), w.get(T::Norm2Bias))?;
    let hidden = u
        .matmul(&w.get(T::Ffn1).t()?)?
        .broadcast_add(w.get(T::Ffn1Bias))?
        .relu()?;
    let z = hidden
        .matmul(&w.get(T::Ffn2).t()?)?
        .broadcast_add(w.get(T::Ffn2Bias))?
        .add(&y)?;
    layer_norm(&z, w.get(T::Norm3Weight), w.get(T::Norm3Bias))
}

/// Trains the encoder on the targets of `sequences` that `only` accepts (by sequence and
/// position) as a correction of `served`'s rankings (the model as it will be served, without
/// an encoder), warm-started from `warm` when its shape matches.
pub fn train(
    served: &Engine,
    d: &Dataset,
    sequences: &[Vec<Step>],
    only: &dyn Fn(usize, usize) -> bool,
    cfg: &EncoderTraining,
    warm: Option<&EncoderParams>,
) -> Result<(EncoderParams, EncoderRun)> {
    let started = Instant::now();
    let dev = Device::Cpu;
    let dim = served.meta().dim as usize;
    let n = d.item_count();
    let shape = EncoderShape {
        dim: dim as u32,
        positions: cfg.positions as u32,
        hidden: cfg.hidden as u32,
    };
    // The served rows in dataset order, and a zero row for padding; the engine's item order
    // mapped to the dataset's.
    let mut rows = vec![0.0f32; (n + 1) * dim];
    let mut dataset_index = vec![u32::MAX; served.item_count() as usize];
    for (i, id) in d.items.iter().enumerate() {
        let index = served
            .find(id)
            .with_context(|| format!("item {id} is not in the model"))?;
        served.item_vector(index, &mut rows[i * dim..(i + 1) * dim]);
        dataset_index[index as usize] = i as u32;
    }
    let rows = Tensor::from_vec(rows, (n + 1, dim), &dev)?;
    let output_rows = rows.narrow(0, 0, n)?.t()?.contiguous()?;
    let ex = examples(d, sequences, cfg.positions, only);
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5e55_10e5);
    let weights = match warm {
        Some(p) if p.shape(dim) == shape => Weights::from_flat(shape, &p.weights, &dev)?,
        _ => Weights::init(shape, &mut rng, &dev)?,
    };
    // The log of each bucket's scale of the served scores (see `EncoderParams::bucket_scales`).
    let start: Vec<f32> = (0..PROFILE_BUCKETS)
        .map(|b| -warm.map_or(1.0, |w| w.bucket_scale(b)).max(1e-6).ln())
        .collect();
    let log_scales = Var::from_tensor(&Tensor::from_vec(start, PROFILE_BUCKETS, &dev)?)?;
    // The scales move by orders of magnitude where tuning weighs boosts up to 1,024, so they
    // take their own, larger steps.
    let mut scale_opt = AdamW::new(
        vec![log_scales.clone()],
        ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut opt = AdamW::new(
        weights.vars.clone(),
        ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let p = cfg.positions;
    let batch_of = |idx: &[usize]| -> candle_core::Result<_> {
        let b = idx.len();
        let gather = |v: &[u32], per: usize| -> Vec<u32> {
            idx.iter()
                .flat_map(|&i| v[i * per..(i + 1) * per].iter().copied())
                .collect()
        };
        let mask: Vec<f32> = idx
            .iter()
            .flat_map(|&i| ex.mask[i * p..(i + 1) * p].iter().copied())
            .collect();
        let at: Vec<(u32, u32)> = idx.iter().map(|&i| ex.at[i]).collect();
        let base = served_scores(served, d, sequences, &at, &dataset_index);
        Ok((
            b,
            Tensor::from_vec(gather(&ex.items, p), b * p, &dev)?,
            Tensor::from_vec(gather(&ex.kinds, p), b * p, &dev)?,
            Tensor::from_vec(mask, (b, p), &dev)?,
            Tensor::from_vec(base, (b, n), &dev)?,
            Tensor::from_vec(gather(&ex.buckets, 1), b, &dev)?,
            Tensor::from_vec(gather(&ex.targets, 1), b, &dev)?,
        ))
    };
    let mut order: Vec<usize> = (0..ex.len()).collect();
    // The served scores alone, measured on the first epoch's batches (each batch's scores
    // cost a ranking per example, so not in a pass of their own).
    let mut loss_without = 0.0;
    let mut loss = 0.0;
    let epochs = cfg
        .epochs
        .min((cfg.example_budget / ex.len().max(1)).max(1));
    for epoch in 0..epochs {
        shuffle(&mut order, &mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(cfg.batch.max(1)) {
            let (b, items, kinds, mask, base, buckets, targets) = batch_of(chunk)?;
            if epoch == 0 {
                let l = candle_nn::loss::cross_entropy(&base, &targets)?;
                loss_without += f64::from(l.to_scalar::<f32>()?) * b as f64;
            }
            let e = forward(&weights, &rows, &items, &kinds, &mask, b, p)?;
            let scale = log_scales.as_tensor().exp()?.index_select(&buckets, 0)?;
            let logits = base
                .broadcast_mul(&scale.unsqueeze(1)?)?
                .add(&e.matmul(&output_rows)?)?;
            let l = candle_nn::loss::cross_entropy(&logits, &targets)?;
            let grads = l.backward()?;
            opt.step(&grads)?;
            scale_opt.step(&grads)?;
            total += f64::from(l.to_scalar::<f32>()?) * b as f64;
        }
        loss = total / ex.len().max(1) as f64;
        tracing::debug!(epoch, loss, "encoder epoch");
    }
    loss_without /= ex.len().max(1) as f64;
    let seconds = started.elapsed().as_secs_f64();
    let run = EncoderRun {
        examples: ex.len(),
        epochs,
        seconds,
        examples_per_second: (ex.len() * epochs) as f64 / seconds.max(1e-9),
        loss,
        loss_without,
    };
    let mut params = weights.to_params(shape)?;
    params.bucket_scales = log_scales.as_tensor().neg()?.exp()?.to_vec1::<f32>()?;
    tracing::info!(?run, scales = ?params.bucket_scales, "session encoder trained");
    Ok((params, run))
}

fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::encoder::{Encoder, EncoderView};
    use edgerec::EventType;

    /// The candle forward pass and the core's agree (to f32 rounding) on random weights: the
    /// encoder trained here is the one the edge runs.
    #[test]
    fn training_forward_pass_is_the_cores() {
        let dev = Device::Cpu;
        let shape = EncoderShape {
            dim: 8,
            positions: 5,
            hidden: 12,
        };
        let mut rng = SplitMix64::new(4);
        let mut weights = Weights::init(shape, &mut rng, &dev).unwrap();
        // A non-zero output norm, so the comparison sees every layer.
        let mut params = weights.to_params(shape).unwrap();
        let mut r = SplitMix64::new(8);
        params
            .weights
            .iter_mut()
            .for_each(|w| *w += 0.3 * r.approx_normal());
        // Round to f16 first: the core reads the weights as the shard stores them.
        params
            .weights
            .iter_mut()
            .for_each(|w| *w = half::f16::from_f32(*w).to_f32());
        weights = Weights::from_flat(shape, &params.weights, &dev).unwrap();
        let bytes = edgerec::encoder::encode_section(shape, &[1.0; 6], &params.weights);
        let core = Encoder::new(&EncoderView::parse(&bytes, 8).unwrap());

        let n_items = 10;
        let mut rows: Vec<f32> = (0..n_items * 8).map(|_| r.approx_normal()).collect();
        rows.extend([0.0; 8]);
        let sessions: [&[u32]; 3] = [&[3], &[1, 4, 9], &[2, 2, 7, 0, 5]];
        let kinds = [EventType::Click, EventType::Purchase, EventType::View];
        let (mut items, mut kind_ids, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for s in sessions {
            for j in 0..5 {
                items.push(s.get(j).copied().unwrap_or(n_items as u32));
                kind_ids.push(s.get(j).map_or(0, |_| kinds[j % 3] as u32));
                mask.push(if j < s.len() { 0.0f32 } else { -1e9 });
            }
        }
        let rows_t = Tensor::from_vec(rows.clone(), (n_items + 1, 8), &dev).unwrap();
        let out = forward(
            &weights,
            &rows_t,
            &Tensor::from_vec(items, 15, &dev).unwrap(),
            &Tensor::from_vec(kind_ids, 15, &dev).unwrap(),
            &Tensor::from_vec(mask, (3, 5), &dev).unwrap(),
            3,
            5,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        for (s, got) in sessions.iter().zip(&out) {
            let input: Vec<f32> = s
                .iter()
                .flat_map(|&i| rows[i as usize * 8..(i as usize + 1) * 8].to_vec())
                .collect();
            let k: Vec<EventType> = (0..s.len()).map(|j| kinds[j % 3]).collect();
            let mut want = vec![0.0; 8];
            core.encode(&input, &k, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
            }
        }
    }
}
