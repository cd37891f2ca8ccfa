//! wasm relaxed-SIMD kernel of the certified coarse pass (see `crate::coarse`).
//!
//! `i16x8.relaxed_dot_i8x16_i7x16_s` multiplies 16 signed row bytes by 16 digits and adds
//! adjacent pairs into 8 16-bit lanes: one instruction (`pmaddubsw` on x86, `sdot`-class on
//! ARM) where the simd128 kernel needs two sign-extending loads and two `i32x4.dot_i16x8_s`
//! per 16 bytes. Its result is deterministic only when the second operand is in `[0, 127]`;
//! digits are in `[1, 63]`, so it is, and two chunks' lanes (each at most `2 · 128 · 63`) are
//! summed in 16 bits before one widening add, which is exact below `2^15`.

use super::wasm::reduce4;
use super::{may_beat, CoarseRows};
use crate::coarse::{CoarseQuery, DIGIT_OFFSET};
use core::arch::wasm32::*;

fn digit_vectors(digits: &[i8], stride: usize) -> Vec<v128> {
    digits[..stride].chunks_exact(16).map(load16).collect()
}

/// See [`super::coarse_candidates`]. Four rows at a time: their coarse sums, the integer
/// bound and the float bound in lanes, one comparison with the threshold, and `candidate` only
/// for the lanes that pass (a few hundred rows of 100,000 on the bench model). The lane
/// operations are the scalar reference's, in the same order, so the bounds are bit-identical.
pub fn coarse_candidates(
    query: &CoarseQuery,
    query_scale: f32,
    block: &CoarseRows<'_>,
    stride: usize,
    threshold: f32,
    candidate: &mut dyn FnMut(usize) -> f32,
) {
    if query.digits.len() < stride || stride == 0 || stride % 16 != 0 {
        return super::scalar::coarse_candidates(
            query,
            query_scale,
            block,
            stride,
            threshold,
            candidate,
        );
    }
    let hv = digit_vectors(&query.digits, stride);
    // The common strides get a loop specialised for their chunk count (digits in registers).
    let args = (query, query_scale, block, threshold);
    match stride {
        32 => fused(&hv, 2, args, candidate),
        64 => fused(&hv, 4, args, candidate),
        128 => fused(&hv, 8, args, candidate),
        _ => fused(&hv, stride / 16, args, candidate),
    }
}

#[inline(always)]
fn fused(
    hv: &[v128],
    chunks: usize,
    (query, query_scale, block, threshold): (&CoarseQuery, f32, &CoarseRows<'_>, f32),
    candidate: &mut dyn FnMut(usize) -> f32,
) {
    let stride = chunks * 16;
    let hv = &hv[..chunks];
    let m = block.len(stride);
    let (rows, sum, l1) = (&block.rows[..m * stride], &block.sum[..m], &block.l1[..m]);
    let (scales, bias) = (&block.row_scales[..m], &block.bias[..m]);
    let constants = BoundConstants {
        step: i32x4_splat(query.step),
        max_residual: i32x4_splat(query.max_residual),
        query_scale: f32x4_splat(query_scale),
    };
    let mut threshold = threshold;
    let mut threshold_v = f32x4_splat(threshold);
    // Eight rows per step (two quads), one branch for the eight: the zipped exact chunks have
    // known lengths, so the loop carries no bounds checks.
    let groups = rows
        .chunks_exact(8 * stride)
        .zip(sum.chunks_exact(8))
        .zip(l1.chunks_exact(8))
        .zip(scales.chunks_exact(8))
        .zip(bias.chunks_exact(8));
    for (g, ((((rows8, sum8), l1_8), scales8), bias8)) in groups.enumerate() {
        let mut bounds = [f32x4_splat(0.0); 2];
        for (h, bound) in bounds.iter_mut().enumerate() {
            let quad = &rows8[4 * h * stride..4 * (h + 1) * stride];
            let coarse = reduce4(
                row_acc(&quad[..stride], hv),
                row_acc(&quad[stride..2 * stride], hv),
                row_acc(&quad[2 * stride..3 * stride], hv),
                row_acc(&quad[3 * stride..], hv),
            );
            *bound = constants.bound(
                coarse,
                &sum8[4 * h..4 * h + 4],
                &l1_8[4 * h..4 * h + 4],
                &scales8[4 * h..4 * h + 4],
                &bias8[4 * h..4 * h + 4],
            );
        }
        // Not (bound <= threshold): NaN bounds pass, as in the reference.
        let pass = v128_or(
            v128_not(f32x4_le(bounds[0], threshold_v)),
            v128_not(f32x4_le(bounds[1], threshold_v)),
        );
        if v128_any_true(pass) {
            // Rare: row by row against the threshold as each candidate leaves it, exactly as
            // the reference does.
            let [a, b] = bounds;
            let lanes = [
                f32x4_extract_lane::<0>(a),
                f32x4_extract_lane::<1>(a),
                f32x4_extract_lane::<2>(a),
                f32x4_extract_lane::<3>(a),
                f32x4_extract_lane::<0>(b),
                f32x4_extract_lane::<1>(b),
                f32x4_extract_lane::<2>(b),
                f32x4_extract_lane::<3>(b),
            ];
            for (k, &bound) in lanes.iter().enumerate() {
                if may_beat(bound, threshold) {
                    threshold = candidate(8 * g + k);
                }
            }
            threshold_v = f32x4_splat(threshold);
        }
    }
    let done = m / 8 * 8;
    if done < m {
        let rest = CoarseRows {
            rows: &rows[done * stride..],
            sum: &sum[done..],
            l1: &l1[done..],
            row_scales: &scales[done..],
            bias: &bias[done..],
        };
        super::scalar::coarse_candidates(query, query_scale, &rest, stride, threshold, &mut |j| {
            candidate(done + j)
        });
    }
}

/// The query's constants of the bound, in lanes.
struct BoundConstants {
    step: v128,
    max_residual: v128,
    query_scale: v128,
}

impl BoundConstants {
    /// The score bounds of four rows from their coarse sums, as the scalar reference computes
    /// them: `hi = step · (coarse − 32 · sum) + max_residual · l1` (`CoarseQuery::upper_bound`),
    /// then `hi as f32 · query_scale · row_scale + bias` (`i8_score`). Each slice holds 4.
    #[inline(always)]
    fn bound(&self, coarse: v128, sum: &[i16], l1: &[u16], scales: &[f32], bias: &[f32]) -> v128 {
        const { assert!(DIGIT_OFFSET == 1 << 5) };
        assert!(sum.len() >= 4 && l1.len() >= 4 && scales.len() >= 4 && bias.len() >= 4);
        // SAFETY: the assertion above (which the callers' fixed-size slices let the compiler
        // drop) guarantees four elements behind each pointer; the loads need no alignment.
        let (s, a, rs, b) = unsafe {
            (
                i32x4_load_extend_i16x4(sum.as_ptr()),
                u32x4_load_extend_u16x4(l1.as_ptr()),
                v128_load(scales.as_ptr().cast()),
                v128_load(bias.as_ptr().cast()),
            )
        };
        let hi = i32x4_add(
            i32x4_mul(self.step, i32x4_sub(coarse, i32x4_shl(s, 5))),
            i32x4_mul(self.max_residual, a),
        );
        f32x4_add(
            f32x4_mul(f32x4_mul(f32x4_convert_i32x4(hi), self.query_scale), rs),
            b,
        )
    }
}

#[inline(always)]
fn load16(bytes: &[i8]) -> v128 {
    debug_assert!(bytes.len() >= 16);
    // SAFETY: every caller passes a slice of at least 16 bytes (a 16-byte chunk of a row or of
    // the digits, whose lengths are multiples of 16), and the load has no alignment requirement.
    unsafe { v128_load(bytes.as_ptr().cast()) }
}

/// A row's dot product with the digits `hv` (one vector per 16 bytes), as 4 partial lanes.
#[inline(always)]
fn row_acc(row: &[i8], hv: &[v128]) -> v128 {
    let mut acc = i32x4_splat(0);
    let mut pairs = hv.chunks_exact(2);
    let mut c = 0;
    for pair in &mut pairs {
        let a = i16x8_relaxed_dot_i8x16_i7x16(load16(&row[c * 16..]), pair[0]);
        let b = i16x8_relaxed_dot_i8x16_i7x16(load16(&row[c * 16 + 16..]), pair[1]);
        acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(i16x8_add(a, b)));
        c += 2;
    }
    if let [last] = pairs.remainder() {
        let a = i16x8_relaxed_dot_i8x16_i7x16(load16(&row[c * 16..]), *last);
        acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(a));
    }
    acc
}
