//! Scoring kernels: integer dot products of one quantized query with a block of int8 rows.
//!
//! [`scalar`] is the reference. [`dot_i8_block`] dispatches to a SIMD version where one exists
//! (wasm simd128 at compile time, x86-64 AVX2 at run time) and falls back to the reference
//! otherwise. All versions compute the same exact integers (no floating point inside), so the
//! property tests require equality, and rankings are identical across platforms.
//!
//! Rows are `stride` elements, a multiple of 16 (see `format::row_stride`), zero-padded, and the
//! query is padded with zeros to the same stride: no kernel needs a tail loop.

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub mod relaxed;
pub mod scalar;

use crate::coarse::CoarseQuery;
use crate::first_pass::BLOCK_ITEMS;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod wasm;
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// Writes `out[r] = Σ_d query[d] * rows[r * stride + d]` for each row `r` of the block.
///
/// `query.len()` must equal `stride`, a multiple of 16, and `rows.len()` must equal
/// `out.len() * stride`; violating that is a bug in the caller, and the kernel then computes
/// only the rows and dims that fit rather than reading out of bounds.
#[inline]
pub fn dot_i8_block(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::dot_i8_block(query, rows, stride, out)
    }
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx2_available() {
            x86::dot_i8_block(query, rows, stride, out);
        } else {
            scalar::dot_i8_block(query, rows, stride, out);
        }
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        scalar::dot_i8_block(query, rows, stride, out)
    }
}

/// Whether [`coarse_candidates`] has a kernel much faster than [`dot_i8_block`] in this build,
/// which is when the ranker runs the certified coarse pass (`crate::coarse`) before exact
/// scoring: wasm builds with relaxed SIMD. Elsewhere the coarse kernels are the scalar
/// reference, kept for tests and for checking the relaxed build.
pub const FAST_COARSE: bool = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));

/// A block of int8 rows with what the coarse pass's score bound needs per row: the rows
/// (`stride` elements each), their sums and L1 norms (`crate::coarse::RowBounds`), scales and
/// biases. Slices of unequal length are a caller bug; the kernels then use the rows all cover.
#[derive(Debug, Clone, Copy)]
pub struct CoarseRows<'a> {
    pub rows: &'a [i8],
    pub sum: &'a [i16],
    pub l1: &'a [u16],
    pub row_scales: &'a [f32],
    pub bias: &'a [f32],
}

impl CoarseRows<'_> {
    /// Rows every slice covers.
    #[inline]
    pub fn len(&self, stride: usize) -> usize {
        let rows = self.rows.len().checked_div(stride).unwrap_or(0);
        rows.min(self.sum.len())
            .min(self.l1.len())
            .min(self.row_scales.len())
            .min(self.bias.len())
    }
}

/// The coarse pass over one block, fused: calls `candidate(j)`, in row order, for every row
/// `j` whose score bound (`crate::coarse`) is not at or below the threshold, which starts at
/// `threshold` and is whatever `candidate` last returned. A NaN bound counts as a candidate.
/// Every build calls `candidate` for the same rows given the same returns.
#[inline]
pub fn coarse_candidates(
    query: &CoarseQuery,
    query_scale: f32,
    block: &CoarseRows<'_>,
    stride: usize,
    threshold: f32,
    candidate: &mut dyn FnMut(usize) -> f32,
) {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        relaxed::coarse_candidates(query, query_scale, block, stride, threshold, candidate)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    {
        scalar::coarse_candidates(query, query_scale, block, stride, threshold, candidate)
    }
}

/// `Σ_i a[i] * b[i]` over the shorter slice, in f32 with one fixed order of operations (four
/// lane sums, see [`scalar::dot_f32`]), so every build returns the same bits: the session
/// encoder's matrix products go through it, and its output decides rankings.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::dot_f32(a, b)
    }
    #[cfg(target_arch = "x86_64")]
    {
        x86::dot_f32(a, b)
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        scalar::dot_f32(a, b)
    }
}

/// The first pass's sums for one block of codes (`crate::first_pass`): `out[j]` is `base` plus
/// the sum, over the columns, of column `c`'s 16-entry table `luts[16c..16c + 16]` at item `j`'s code in
/// `codes[16c..16c + 16]` (low nibbles items 0–15, high nibbles items 16–31). Sums wrap at
/// `u16`, which valid tables (`Luts` keeps base + columns × 255 within it) never reach. Columns beyond the
/// shorter of the two slices are ignored. Returns whether any sum is at least `bar`, so the
/// caller can pass over a block with no candidate without reading its sums.
#[inline]
pub fn fast_scan_block(
    luts: &[u8],
    codes: &[u8],
    base: u16,
    bar: u16,
    out: &mut [u16; BLOCK_ITEMS],
) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::fast_scan_block(luts, codes, base, bar, out)
    }
    #[cfg(target_arch = "x86_64")]
    {
        x86::fast_scan_block(luts, codes, base, bar, out)
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        scalar::fast_scan_block(luts, codes, base, bar, out)
    }
}

/// Whether any element is `i8::MIN` (−128), which int8 rows must not hold. Shard validation asks
/// this of every row byte at model load. On a cold start that runs in V8's baseline compiler
/// (Liftoff), where a plain loop costs several instructions per byte, so the wasm kernel
/// handles 64 bytes per step with a running minimum and tests it once at the end.
#[inline]
pub fn contains_i8_min(values: &[i8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::contains_i8_min(values)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::contains_i8_min(values)
    }
}

/// Whether each value is greater than the one before (unsigned). Shard validation asks this of
/// string offsets at model load (one per item); 16 per step in the wasm kernel, for the same
/// cold-start reason as [`contains_i8_min`].
#[inline]
pub fn strictly_increasing(values: &[u32]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::strictly_increasing(values)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::strictly_increasing(values)
    }
}

/// [`strictly_increasing`] for u64 values (item keys, one per item).
#[inline]
pub fn strictly_increasing_u64(values: &[u64]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::strictly_increasing_u64(values)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::strictly_increasing_u64(values)
    }
}

/// Whether every byte is ASCII. Shard validation asks this of the item-id text first: ASCII
/// text (the ids of almost every catalog) is valid UTF-8 with a character boundary at every
/// offset, so the general UTF-8 check can be skipped. In a cold-start profile of the worker,
/// that check took 6% of the first request.
#[inline]
pub fn is_ascii(bytes: &[u8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::is_ascii(bytes)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::is_ascii(bytes)
    }
}

/// Writes each row's sum `Σx` and L1 norm `Σ|x|` (`stride` elements per row) for the coarse
/// pass's bounds (`crate::coarse::RowBounds`), computed once per model load. The caller keeps
/// `128 · stride ≤ 32768`, so both fit their 16-bit types. Rows beyond the shorter of `sum` and
/// `l1` are not computed.
#[inline]
pub fn row_sums(rows: &[i8], stride: usize, sum: &mut [i16], l1: &mut [u16]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm::row_sums(rows, stride, sum, l1)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::row_sums(rows, stride, sum, l1)
    }
}

/// Whether a row with score bound `bound` must be scored exactly: its bound is not at or below
/// `threshold` (so a NaN bound is scored, and the exact score decides).
#[inline(always)]
pub fn may_beat(bound: f32, threshold: f32) -> bool {
    !matches!(
        bound.partial_cmp(&threshold),
        Some(core::cmp::Ordering::Less | core::cmp::Ordering::Equal)
    )
}

/// The score of an int8 row from its integer dot product: one definition for the scan, single
/// items and the coarse bound, so all of them perform the same IEEE operations in the same order.
#[inline(always)]
pub fn i8_score(dot: i32, query_scale: f32, row_scale: f32, bias: f32) -> f32 {
    dot as f32 * query_scale * row_scale + bias
}

/// Float dot products of a query with f16 rows (the optional f16 dtype). Scalar on every
/// platform: the f16 path trades speed for precision and is not the one we optimise.
pub fn dot_f16_block(query: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    if stride == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc = 0.0f32;
        for (q, &r) in query.iter().zip(row) {
            acc += q * half::f16::from_bits(r).to_f32();
        }
        *o = acc;
    }
}

/// Float dot products of a query with f32 rows (the unquantized reference dtype). Sequential
/// sums in dimension order, so native and wasm agree bit for bit.
pub fn dot_f32_block(query: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    if stride == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc = 0.0f32;
        for (q, r) in query.iter().zip(row) {
            acc += q * r;
        }
        *o = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs() -> impl Strategy<Value = (usize, Vec<i16>, Vec<i8>)> {
        (1usize..5, 0usize..40).prop_flat_map(|(blocks, n)| {
            let stride = blocks * 16;
            (
                Just(stride),
                proptest::collection::vec(any::<i16>(), stride),
                proptest::collection::vec(any::<i8>(), n * stride),
            )
        })
    }

    proptest! {
        // The dispatching kernel (SIMD where available) computes exactly the reference integers,
        // including at the extremes of both input ranges.
        #[test]
        fn simd_matches_scalar((stride, query, rows) in inputs()) {
            let n = rows.len() / stride;
            let mut expected = vec![0; n];
            let mut got = vec![0; n];
            scalar::dot_i8_block(&query, &rows, stride, &mut expected);
            dot_i8_block(&query, &rows, stride, &mut got);
            prop_assert_eq!(expected, got);
        }
    }

    proptest! {
        // The f32 dot product returns the reference's bits for any lengths (tails included)
        // and any finite values, large and small.
        #[test]
        fn f32_dot_matches_scalar_bits(
            pairs in proptest::collection::vec(
                (-1e6f32..1e6, prop_oneof![-1e-3f32..1e-3, -1e3f32..1e3]),
                0..80,
            )
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            prop_assert_eq!(dot_f32(&a, &b).to_bits(), scalar::dot_f32(&a, &b).to_bits());
        }
    }

    #[test]
    fn f32_dot_order_is_lane_sums_then_tail() {
        // 1e8 swallows a 1 added to it directly; the four lanes keep the 1s apart until the
        // tail, so the fixed order is observable (and any reordering would show).
        let a = [1e8, 1.0, -1e8, 1.0, 1.0];
        let b = [1.0; 5];
        assert_eq!(
            scalar::dot_f32(&a, &b),
            ((1e8f32 + 1.0) + (-1e8 + 1.0)) + 1.0
        );
        assert_eq!(dot_f32(&a, &b), scalar::dot_f32(&a, &b));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let stride = 1024;
        let query = vec![i16::MIN; stride];
        let rows = vec![i8::MIN; stride * 3];
        let mut out = vec![0; 3];
        dot_i8_block(&query, &rows, stride, &mut out);
        // 1024 * 32768 * 128 = 2^32 would overflow, which is why the engine caps |query| so
        // that 127 * qmax * stride < 2^31; here we only check SIMD == scalar at the edge.
        let mut reference = vec![0; 3];
        scalar::dot_i8_block(&query, &rows, stride, &mut reference);
        assert_eq!(out, reference);
    }

    #[test]
    fn f16_dot_is_exact_on_small_integers() {
        let stride = 16;
        let query: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let rows: Vec<u16> = (0..32)
            .map(|i| half::f16::from_f32((i % 3) as f32).to_bits())
            .collect();
        let mut out = vec![0.0; 2];
        dot_f16_block(&query, &rows, stride, &mut out);
        let expect = |r: usize| {
            (0..16)
                .map(|d| d as f32 * ((r * 16 + d) % 3) as f32)
                .sum::<f32>()
        };
        assert_eq!(out, vec![expect(0), expect(1)]);
    }
}
