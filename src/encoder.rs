//! The session encoder (format 8): an order-aware map from the session's latest items to a
//! vector added to the query, so that the same one scan over the item rows ranks with it.
//!
//! Architecture 1, the only one so far, is one pre-norm attention block in the SASRec family,
//! read at the newest position (the only output a ranking needs). With `x_j` the input of
//! session position `j` (0 = newest), for the latest `n ≤ positions` items the model knows:
//!
//! ```text
//! x_j = row(item_j) + position_j + type(kind_j)       rows as served (int8 dequantized)
//! h_j = norm1(x_j)
//! a   = softmax_j((query · h_0) · (key · h_j) / √dim)  one head, no mask (every j ≤ 0 in time)
//! y   = x_0 + output · value · Σ_j a_j h_j
//! z   = y + ffn2 · relu(ffn1 · norm2(y) + ffn1_bias) + ffn2_bias
//! e   = norm3(z)
//! ```
//!
//! and the ranker adds `profile.encoder × e` to the query. The item rows are the encoder's
//! input and, through the scan, its output layer: the encoder adds only these weights.
//!
//! Every floating-point step has one order of operations on every platform: matrix products
//! go through [`kernels::dot_f32`] (SIMD where there is some, bit-equal to its scalar
//! reference), the softmax through [`crate::math::exp`], the norms through [`sum`]; Rust never
//! fuses a multiply and an add. So native code, wasm and the worker rank the same.
//!
//! Wire form (section `SeqEncoder`, in shard 0, which is index shard 0 of a paged model): a
//! 64-byte header of little-endian u32 words, then every weight as f16 in [`TENSORS`] order,
//! each matrix row-major (`out × in`).
//!
//! ```text
//! word  0  architecture (1)           words 4–9  the encoder weight of each profile bucket (f32)
//! word  1  dim (the model's)          words 10–15  reserved, 0
//! word  2  positions (1..=64)
//! word  3  hidden width of the feed-forward layer (1..=4096)
//! ```

use crate::error::{Error, Result};
use crate::format::{EVENT_TYPES, PROFILE_BUCKETS};
use crate::kernels::dot_f32;
use crate::session::EventType;

/// Bytes before the weights.
pub const HEADER_BYTES: usize = 64;
/// The one architecture so far (see the module documentation).
pub const ARCHITECTURE: u32 = 1;
/// Most session positions an encoder reads.
pub const MAX_POSITIONS: u32 = 64;
/// Widest feed-forward layer accepted.
pub const MAX_HIDDEN: u32 = 4096;
/// The layer norms' ε.
const NORM_EPSILON: f32 = 1e-5;

/// The encoder's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderShape {
    pub dim: u32,
    pub positions: u32,
    pub hidden: u32,
}

/// The weight tensors, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tensor {
    /// `positions × dim`: added to the input at each position (0 = newest).
    Positions,
    /// `EVENT_TYPES × dim`: added to the input by event type.
    Types,
    Norm1Weight,
    Norm1Bias,
    /// `dim × dim` each.
    Query,
    Key,
    Value,
    Output,
    Norm2Weight,
    Norm2Bias,
    /// `hidden × dim`, then `hidden`.
    Ffn1,
    Ffn1Bias,
    /// `dim × hidden`, then `dim`.
    Ffn2,
    Ffn2Bias,
    Norm3Weight,
    Norm3Bias,
}

/// Every tensor, in wire order.
pub const TENSORS: [Tensor; 16] = [
    Tensor::Positions,
    Tensor::Types,
    Tensor::Norm1Weight,
    Tensor::Norm1Bias,
    Tensor::Query,
    Tensor::Key,
    Tensor::Value,
    Tensor::Output,
    Tensor::Norm2Weight,
    Tensor::Norm2Bias,
    Tensor::Ffn1,
    Tensor::Ffn1Bias,
    Tensor::Ffn2,
    Tensor::Ffn2Bias,
    Tensor::Norm3Weight,
    Tensor::Norm3Bias,
];

impl EncoderShape {
    /// Elements of tensor `t`.
    pub fn len(&self, t: Tensor) -> usize {
        let (d, p, h) = (
            self.dim as usize,
            self.positions as usize,
            self.hidden as usize,
        );
        match t {
            Tensor::Positions => p * d,
            Tensor::Types => EVENT_TYPES * d,
            Tensor::Query | Tensor::Key | Tensor::Value | Tensor::Output => d * d,
            Tensor::Ffn1 | Tensor::Ffn2 => h * d,
            Tensor::Ffn1Bias => h,
            Tensor::Norm1Weight
            | Tensor::Norm1Bias
            | Tensor::Norm2Weight
            | Tensor::Norm2Bias
            | Tensor::Ffn2Bias
            | Tensor::Norm3Weight
            | Tensor::Norm3Bias => d,
        }
    }

    /// Elements of every tensor together.
    pub fn weight_count(&self) -> usize {
        TENSORS.iter().map(|&t| self.len(t)).sum()
    }

    /// The section's length in bytes.
    pub fn section_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + 2 * self.weight_count() as u64
    }
}

/// A validated `SeqEncoder` section, borrowed from its shard.
#[derive(Debug, Clone, Copy)]
pub struct EncoderView<'a> {
    pub shape: EncoderShape,
    /// The encoder weight of each profile bucket (finite, ≥ 0).
    pub bucket_weights: [f32; PROFILE_BUCKETS],
    /// Every weight as f16 bits, in [`TENSORS`] order.
    pub weights: &'a [u16],
}

impl<'a> EncoderView<'a> {
    /// Validates a `SeqEncoder` section of a model of `dim` dimensions: a known architecture,
    /// sizes in range, reserved words zero, the exact length, and every value finite.
    pub fn parse(bytes: &'a [u8], dim: u32) -> Result<EncoderView<'a>> {
        let bad = |why: String| Error::invalid(format!("session encoder: {why}"));
        if bytes.len() < HEADER_BYTES {
            return Err(bad(format!(
                "{} bytes, shorter than its header",
                bytes.len()
            )));
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[4 * i..4 * i + 4]);
            u32::from_le_bytes(b)
        };
        if word(0) != ARCHITECTURE {
            return Err(bad(format!("unknown architecture {}", word(0))));
        }
        if word(1) != dim {
            return Err(bad(format!("dim {} in a model of dim {dim}", word(1))));
        }
        let shape = EncoderShape {
            dim,
            positions: word(2),
            hidden: word(3),
        };
        if !(1..=MAX_POSITIONS).contains(&shape.positions) {
            return Err(bad(format!(
                "{} positions, expected 1..={MAX_POSITIONS}",
                shape.positions
            )));
        }
        if !(1..=MAX_HIDDEN).contains(&shape.hidden) {
            return Err(bad(format!(
                "hidden width {}, expected 1..={MAX_HIDDEN}",
                shape.hidden
            )));
        }
        let bucket_weights: [f32; PROFILE_BUCKETS] =
            core::array::from_fn(|b| f32::from_bits(word(4 + b)));
        if !bucket_weights.iter().all(|w| w.is_finite() && *w >= 0.0) {
            return Err(bad("bucket weights must be finite and non-negative".into()));
        }
        if (4 + PROFILE_BUCKETS..HEADER_BYTES / 4).any(|i| word(i) != 0) {
            return Err(bad("reserved header words are not zero".into()));
        }
        if bytes.len() as u64 != shape.section_bytes() {
            return Err(bad(format!(
                "{} bytes, the shape needs {}",
                bytes.len(),
                shape.section_bytes()
            )));
        }
        let weights: &[u16] = bytemuck::try_cast_slice(&bytes[HEADER_BYTES..])
            .map_err(|_| bad("weights are not 2-byte aligned".into()))?;
        if let Some(i) = weights
            .iter()
            .position(|&w| !half::f16::from_bits(w).is_finite())
        {
            return Err(bad(format!("weight {i} is not finite")));
        }
        Ok(EncoderView {
            shape,
            bucket_weights,
            weights,
        })
    }
}

/// The encoder, its weights widened to f32 once at load.
#[derive(Debug, Clone)]
pub struct Encoder {
    shape: EncoderShape,
    bucket_weights: [f32; PROFILE_BUCKETS],
    weights: Vec<f32>,
    /// Where each tensor starts in `weights`, in [`TENSORS`] order.
    starts: [usize; TENSORS.len()],
}

impl Encoder {
    /// The encoder of a validated section.
    pub fn new(view: &EncoderView<'_>) -> Encoder {
        let weights = view
            .weights
            .iter()
            .map(|&w| half::f16::from_bits(w).to_f32())
            .collect();
        let mut starts = [0; TENSORS.len()];
        let mut at = 0;
        for (s, &t) in starts.iter_mut().zip(&TENSORS) {
            *s = at;
            at += view.shape.len(t);
        }
        Encoder {
            shape: view.shape,
            bucket_weights: view.bucket_weights,
            weights,
            starts,
        }
    }

    pub fn shape(&self) -> EncoderShape {
        self.shape
    }

    /// The weight the model gives the encoder in profile bucket `bucket`.
    pub fn bucket_weight(&self, bucket: usize) -> f32 {
        self.bucket_weights.get(bucket).copied().unwrap_or(0.0)
    }

    fn tensor(&self, t: Tensor) -> &[f32] {
        let i = TENSORS.iter().position(|&x| x == t).unwrap_or(0);
        let start = self.starts[i];
        &self.weights[start..start + self.shape.len(t)]
    }

    /// The encoder's output for a session: `rows` holds the dequantized rows of its latest
    /// items, newest first, `dim` values each, and `kinds` their event types (items past
    /// `positions` are ignored). Writes `dim` values to `out`; zeros for an empty session.
    pub fn encode(&self, rows: &[f32], kinds: &[EventType], out: &mut [f32]) {
        let d = self.shape.dim as usize;
        out.iter_mut().for_each(|o| *o = 0.0);
        let n = (rows.len() / d.max(1))
            .min(kinds.len())
            .min(self.shape.positions as usize);
        if n == 0 || out.len() < d {
            return;
        }
        let positions = self.tensor(Tensor::Positions);
        let types = self.tensor(Tensor::Types);
        let mut x = vec![0.0f32; n * d];
        let mut h = vec![0.0f32; n * d];
        for j in 0..n {
            let kind = kinds[j] as usize;
            let xj = &mut x[j * d..(j + 1) * d];
            for (i, v) in xj.iter_mut().enumerate() {
                *v = (rows[j * d + i] + positions[j * d + i]) + types[kind * d + i];
            }
            layer_norm(
                xj,
                self.tensor(Tensor::Norm1Weight),
                self.tensor(Tensor::Norm1Bias),
                &mut h[j * d..(j + 1) * d],
            );
        }
        // (query · h_0) · (key · h_j) = (keyᵀ · query · h_0) · h_j: one transposed product
        // instead of a key vector per position.
        let mut q = vec![0.0f32; d];
        mat_vec(self.tensor(Tensor::Query), &h[..d], &mut q);
        let mut kq = vec![0.0f32; d];
        mat_t_vec(self.tensor(Tensor::Key), &q, &mut kq);
        let scale = 1.0 / (d as f32).sqrt();
        let mut attention: Vec<f32> = (0..n)
            .map(|j| dot_f32(&kq, &h[j * d..(j + 1) * d]) * scale)
            .collect();
        softmax(&mut attention);
        // value · Σ_j a_j h_j, again one product rather than one per position.
        let mut pooled = vec![0.0f32; d];
        for (j, &a) in attention.iter().enumerate() {
            for (p, &v) in pooled.iter_mut().zip(&h[j * d..(j + 1) * d]) {
                *p += a * v;
            }
        }
        let mut value = vec![0.0f32; d];
        mat_vec(self.tensor(Tensor::Value), &pooled, &mut value);
        let mut y = vec![0.0f32; d];
        mat_vec(self.tensor(Tensor::Output), &value, &mut y);
        for (o, &x0) in y.iter_mut().zip(&x[..d]) {
            *o += x0;
        }
        let mut normed = vec![0.0f32; d];
        layer_norm(
            &y,
            self.tensor(Tensor::Norm2Weight),
            self.tensor(Tensor::Norm2Bias),
            &mut normed,
        );
        let mut hidden = vec![0.0f32; self.shape.hidden as usize];
        mat_vec(self.tensor(Tensor::Ffn1), &normed, &mut hidden);
        for (v, &b) in hidden.iter_mut().zip(self.tensor(Tensor::Ffn1Bias)) {
            *v = (*v + b).max(0.0);
        }
        let mut z = vec![0.0f32; d];
        mat_vec(self.tensor(Tensor::Ffn2), &hidden, &mut z);
        for ((o, &b), &r) in z.iter_mut().zip(self.tensor(Tensor::Ffn2Bias)).zip(&y) {
            *o = (*o + b) + r;
        }
        layer_norm(
            &z,
            self.tensor(Tensor::Norm3Weight),
            self.tensor(Tensor::Norm3Bias),
            &mut out[..d],
        );
    }
}

/// `out = m · v` for a row-major `out.len() × v.len()` matrix.
fn mat_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(m.chunks_exact(v.len().max(1))) {
        *o = dot_f32(row, v);
    }
}

/// `out = mᵀ · v` for a row-major `v.len() × out.len()` matrix: rows scaled and added in
/// order (element-wise, so every build rounds alike).
fn mat_t_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (&s, row) in v.iter().zip(m.chunks_exact(out.len().max(1))) {
        for (o, &w) in out.iter_mut().zip(row) {
            *o += s * w;
        }
    }
}

/// The sum of `v` in the order [`dot_f32`] adds (four lane sums, then the tail).
pub fn sum(v: &[f32]) -> f32 {
    let body = v.len() / 4 * 4;
    let mut lanes = [0.0f32; 4];
    for c in v[..body].chunks_exact(4) {
        for l in 0..4 {
            lanes[l] += c[l];
        }
    }
    let mut s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for &x in &v[body..] {
        s += x;
    }
    s
}

/// `out = (x − mean) / √(variance + ε) · weight + bias`.
fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = x.len().max(1) as f32;
    let mean = sum(x) / n;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v - mean;
    }
    let variance = dot_f32(out, out) / n;
    let inverse = 1.0 / (variance + NORM_EPSILON).sqrt();
    for ((o, &w), &b) in out.iter_mut().zip(weight).zip(bias) {
        *o = (*o * inverse) * w + b;
    }
}

/// In place, with the maximum subtracted first.
fn softmax(v: &mut [f32]) {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    v.iter_mut().for_each(|x| *x = crate::math::exp(*x - max));
    let total = sum(v);
    if total > 0.0 {
        v.iter_mut().for_each(|x| *x /= total);
    }
}

/// The section bytes of an encoder (for the writer and tests).
#[cfg(any(feature = "writer", test))]
pub fn encode_section(
    shape: EncoderShape,
    bucket_weights: &[f32; PROFILE_BUCKETS],
    weights: &[f32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(shape.section_bytes() as usize);
    let mut words = [0u32; HEADER_BYTES / 4];
    words[0] = ARCHITECTURE;
    words[1] = shape.dim;
    words[2] = shape.positions;
    words[3] = shape.hidden;
    for (w, b) in words[4..].iter_mut().zip(bucket_weights) {
        *w = b.to_bits();
    }
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for &w in weights {
        out.extend_from_slice(&half::f16::from_f32(w).to_bits().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::SplitMix64;

    fn shape() -> EncoderShape {
        EncoderShape {
            dim: 6,
            positions: 4,
            hidden: 5,
        }
    }

    fn random_weights(shape: EncoderShape, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..shape.weight_count())
            .map(|_| 0.5 * rng.approx_normal())
            .collect()
    }

    fn encoder(shape: EncoderShape, weights: &[f32]) -> Encoder {
        let bytes = encode_section(shape, &[1.0; PROFILE_BUCKETS], weights);
        Encoder::new(&EncoderView::parse(&bytes, shape.dim).unwrap())
    }

    /// The forward pass written out directly from the module documentation's equations, one
    /// key and value vector per position, in f64: what `encode` must approximate.
    fn reference(e: &Encoder, rows: &[f32], kinds: &[EventType]) -> Vec<f64> {
        let d = e.shape.dim as usize;
        let t = |x: Tensor| {
            e.tensor(x)
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<_>>()
        };
        let mv = |m: &[f64], v: &[f64]| -> Vec<f64> {
            m.chunks(v.len())
                .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
                .collect()
        };
        let norm = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
            let inv = 1.0 / (var + f64::from(NORM_EPSILON)).sqrt();
            x.iter()
                .zip(w)
                .zip(b)
                .map(|((v, w), b)| (v - mean) * inv * w + b)
                .collect()
        };
        let n = kinds.len().min(e.shape.positions as usize);
        let (pos, types) = (t(Tensor::Positions), t(Tensor::Types));
        let x: Vec<Vec<f64>> = (0..n)
            .map(|j| {
                (0..d)
                    .map(|i| {
                        f64::from(rows[j * d + i])
                            + pos[j * d + i]
                            + types[kinds[j] as usize * d + i]
                    })
                    .collect()
            })
            .collect();
        let h: Vec<Vec<f64>> = x
            .iter()
            .map(|x| norm(x, &t(Tensor::Norm1Weight), &t(Tensor::Norm1Bias)))
            .collect();
        let q = mv(&t(Tensor::Query), &h[0]);
        let keys: Vec<Vec<f64>> = h.iter().map(|h| mv(&t(Tensor::Key), h)).collect();
        let values: Vec<Vec<f64>> = h.iter().map(|h| mv(&t(Tensor::Value), h)).collect();
        let logits: Vec<f64> = keys
            .iter()
            .map(|k| k.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt())
            .collect();
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let ex: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = ex.iter().sum();
        let mut attended = vec![0.0; d];
        for (a, v) in ex.iter().zip(&values) {
            for (o, x) in attended.iter_mut().zip(v) {
                *o += a / total * x;
            }
        }
        let y: Vec<f64> = mv(&t(Tensor::Output), &attended)
            .iter()
            .zip(&x[0])
            .map(|(a, b)| a + b)
            .collect();
        let u = norm(&y, &t(Tensor::Norm2Weight), &t(Tensor::Norm2Bias));
        let hidden: Vec<f64> = mv(&t(Tensor::Ffn1), &u)
            .iter()
            .zip(t(Tensor::Ffn1Bias))
            .map(|(a, b)| (a + b).max(0.0))
            .collect();
        let z: Vec<f64> = mv(&t(Tensor::Ffn2), &hidden)
            .iter()
            .zip(t(Tensor::Ffn2Bias))
            .zip(&y)
            .map(|((a, b), r)| a + b + r)
            .collect();
        norm(&z, &t(Tensor::Norm3Weight), &t(Tensor::Norm3Bias))
    }

    #[test]
    fn encode_follows_the_documented_equations() {
        let shape = shape();
        let e = encoder(shape, &random_weights(shape, 3));
        let mut rng = SplitMix64::new(9);
        for n in 1..=6 {
            let rows: Vec<f32> = (0..n * 6).map(|_| rng.approx_normal()).collect();
            let kinds: Vec<EventType> = (0..n).map(|j| EventType::ALL[j % 6]).collect();
            let mut out = vec![0.0; 6];
            e.encode(&rows, &kinds, &mut out);
            let want = reference(&e, &rows, &kinds);
            for (g, w) in out.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-4,
                    "{n} items: {out:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn order_matters_and_empty_sessions_add_nothing() {
        let shape = shape();
        let e = encoder(shape, &random_weights(shape, 5));
        let a: Vec<f32> = (0..6).map(|i| i as f32 * 0.3).collect();
        let b: Vec<f32> = (0..6).map(|i| 1.0 - i as f32 * 0.2).collect();
        let kinds = [EventType::Click; 2];
        let (mut ab, mut ba) = (vec![0.0; 6], vec![0.0; 6]);
        e.encode(&[a.clone(), b.clone()].concat(), &kinds, &mut ab);
        e.encode(&[b, a].concat(), &kinds, &mut ba);
        assert_ne!(ab, ba);
        let mut none = vec![7.0; 6];
        e.encode(&[], &[], &mut none);
        assert_eq!(none, vec![0.0; 6]);
    }

    #[test]
    fn parse_refuses_what_it_cannot_run() {
        let shape = shape();
        let weights = random_weights(shape, 1);
        let good = encode_section(shape, &[1.0; PROFILE_BUCKETS], &weights);
        assert!(EncoderView::parse(&good, 6).is_ok());
        let refused = |bytes: &[u8], dim: u32, why: &str| {
            let e = EncoderView::parse(bytes, dim).unwrap_err().to_string();
            assert!(e.contains(why), "{e} lacks {why}");
        };
        refused(&good, 8, "dim 6 in a model of dim 8");
        refused(&good[..good.len() - 2], 6, "the shape needs");
        refused(&good[..10], 6, "shorter than its header");
        let mut b = good.clone();
        b[0] = 2;
        refused(&b, 6, "unknown architecture 2");
        let mut b = good.clone();
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        refused(&b, 6, "0 positions");
        let mut b = good.clone();
        b[16..20].copy_from_slice(&(-1.0f32).to_bits().to_le_bytes());
        refused(&b, 6, "finite and non-negative");
        let mut b = good.clone();
        b[60] = 1;
        refused(&b, 6, "reserved");
        let mut b = good.clone();
        b[HEADER_BYTES..HEADER_BYTES + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
        refused(&b, 6, "weight 0 is not finite");
    }
}
