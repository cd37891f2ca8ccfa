//! The reference kernel: plain Rust, obviously correct, used to check the SIMD versions and as
//! the fallback where none applies.

use super::{i8_score, may_beat, CoarseRows};
use crate::coarse::CoarseQuery;
use crate::first_pass::{BLOCK_ITEMS, CENTROIDS, COLUMN_BYTES};

/// See [`super::dot_i8_block`]. Wrapping arithmetic matches the SIMD lanes exactly in the
/// (engine-excluded) overflow case, so the two never disagree.
pub fn dot_i8_block(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    if stride == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc = 0i32;
        for (&q, &r) in query.iter().zip(row) {
            acc = acc.wrapping_add(i32::from(q) * i32::from(r));
        }
        *o = acc;
    }
}

/// See [`super::dot_f32`]: four lane sums over the whole groups of four, added as
/// `(l0 + l1) + (l2 + l3)`, then the tail in order. Rust never fuses `a * b + c` into one
/// rounding, so this is the exact sequence of IEEE operations the SIMD versions perform.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 4 * 4;
    let mut lanes = [0.0f32; 4];
    for (x, y) in a[..body].chunks_exact(4).zip(b[..body].chunks_exact(4)) {
        for l in 0..4 {
            lanes[l] += x[l] * y[l];
        }
    }
    finish_dot_f32(lanes, &a[body..n], &b[body..n])
}

/// The end of every [`dot_f32`] version, so they cannot differ there: the four lane sums
/// added as `(l0 + l1) + (l2 + l3)`, then the tail's products in order.
#[inline]
pub fn finish_dot_f32(lanes: [f32; 4], a_tail: &[f32], b_tail: &[f32]) -> f32 {
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `out[r] = Σ_d digits[d] * rows[r * stride + d]`: the coarse pass's 8-bit × 6-bit dot
/// products (digits in `[0, 63]`, see `crate::coarse`), lengths as for [`dot_i8_block`].
pub fn coarse_dot_block(digits: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    if stride == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc = 0i32;
        for (&h, &r) in digits.iter().zip(row) {
            acc += i32::from(h) * i32::from(r);
        }
        *o = acc;
    }
}

/// See [`super::coarse_candidates`]; row by row, the bound exactly as `crate::coarse` states it.
pub fn coarse_candidates(
    query: &CoarseQuery,
    query_scale: f32,
    block: &CoarseRows<'_>,
    stride: usize,
    threshold: f32,
    candidate: &mut dyn FnMut(usize) -> f32,
) {
    let mut threshold = threshold;
    let mut dot = [0i32; 1];
    for j in 0..block.len(stride) {
        let row = &block.rows[j * stride..(j + 1) * stride];
        coarse_dot_block(&query.digits, row, stride, &mut dot);
        let hi = query.upper_bound(dot[0], block.sum[j], block.l1[j]);
        let bound = i8_score(hi, query_scale, block.row_scales[j], block.bias[j]);
        if may_beat(bound, threshold) {
            threshold = candidate(j);
        }
    }
}

/// See [`super::contains_i8_min`].
pub fn contains_i8_min(values: &[i8]) -> bool {
    values.contains(&i8::MIN)
}

/// See [`super::strictly_increasing`].
pub fn strictly_increasing(values: &[u32]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

/// See [`super::strictly_increasing_u64`].
pub fn strictly_increasing_u64(values: &[u64]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

/// See [`super::is_ascii`].
pub fn is_ascii(bytes: &[u8]) -> bool {
    bytes.is_ascii()
}

/// See [`super::row_sums`].
pub fn row_sums(rows: &[i8], stride: usize, sum: &mut [i16], l1: &mut [u16]) {
    if stride == 0 {
        return;
    }
    for ((row, s), a) in rows.chunks_exact(stride).zip(sum).zip(l1) {
        let (mut total, mut norm) = (0i32, 0i32);
        for &x in row {
            total += i32::from(x);
            norm += i32::from(x).abs();
        }
        // In range by the caller's stride bound (see `super::row_sums`).
        *s = total as i16;
        *a = norm as u16;
    }
}

/// See [`super::fast_scan_block`]: per item, the sum of its column tables' entries at its codes.
pub fn fast_scan_block(
    luts: &[u8],
    codes: &[u8],
    base: u16,
    bar: u16,
    out: &mut [u16; BLOCK_ITEMS],
) -> bool {
    out.fill(base);
    for (table, column) in luts
        .chunks_exact(CENTROIDS)
        .zip(codes.chunks_exact(COLUMN_BYTES))
    {
        for (j, &byte) in column.iter().enumerate() {
            let (lo, hi) = (usize::from(byte & 15), usize::from(byte >> 4));
            out[j] = out[j].wrapping_add(u16::from(table[lo]));
            out[j + COLUMN_BYTES] = out[j + COLUMN_BYTES].wrapping_add(u16::from(table[hi]));
        }
    }
    out.iter().any(|&s| s >= bar)
}
