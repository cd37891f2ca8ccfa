//! wasm simd128 kernel. Per 16 row bytes: two sign-extending 8-byte loads to i16x8
//! (`v128.load8x8_s`) and two `i32x4.dot_i16x8_s` against the query. Common strides (32, 64,
//! 128) are compiled with the query held in locals (const generic), four rows per iteration,
//! and one transposed horizontal sum for the four rows, which removes most of the per-row
//! reduction cost.

use core::arch::wasm32::*;

/// See [`super::dot_i8_block`].
pub fn dot_i8_block(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    if query.len() < stride || stride == 0 || stride % 16 != 0 {
        return super::scalar::dot_i8_block(query, rows, stride, out);
    }
    match stride {
        32 => fixed::<2>(query, rows, out),
        64 => fixed::<4>(query, rows, out),
        128 => fixed::<8>(query, rows, out),
        _ => generic(query, rows, stride, out),
    }
}

#[inline(always)]
fn query_lanes(q: &[i16]) -> v128 {
    i16x8(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7])
}

/// 8 row bytes sign-extended to i16x8 in one instruction (`v128.load8x8_s`), cheaper than a
/// 16-byte load plus `extend_low`/`extend_high` (the latter is two instructions in V8).
#[inline(always)]
fn load8_extend(bytes: &[i8]) -> v128 {
    debug_assert!(bytes.len() >= 8);
    // SAFETY: every caller passes a slice of at least 8 bytes (halves of 16-byte chunks of a
    // row), and the load has no alignment requirement.
    unsafe { i16x8_load_extend_i8x8(bytes.as_ptr()) }
}

/// Dot product of one row (`C` chunks of 16) with the query vectors, as 4 partial lanes.
#[inline(always)]
fn row_acc<const C: usize>(row: &[i8], qv: &[v128]) -> v128 {
    let mut acc = i32x4_splat(0);
    for c in 0..C {
        let lo = load8_extend(&row[c * 16..]);
        let hi = load8_extend(&row[c * 16 + 8..]);
        acc = i32x4_add(acc, i32x4_dot_i16x8(lo, qv[2 * c]));
        acc = i32x4_add(acc, i32x4_dot_i16x8(hi, qv[2 * c + 1]));
    }
    acc
}

/// Sums each of four accumulators across its lanes: returns [Σa, Σb, Σc, Σd].
#[inline(always)]
pub(super) fn reduce4(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(a, b),
        i32x4_shuffle::<2, 6, 3, 7>(a, b),
    );
    let cd = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(c, d),
        i32x4_shuffle::<2, 6, 3, 7>(c, d),
    );
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
        i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
    )
}

fn fixed<const C: usize>(query: &[i16], rows: &[i8], out: &mut [i32]) {
    let stride = C * 16;
    let mut qv = [i16x8_splat(0); 16];
    for (i, v) in qv.iter_mut().take(2 * C).enumerate() {
        *v = query_lanes(&query[i * 8..]);
    }
    let qv = &qv[..2 * C];
    let mut quads = rows.chunks_exact(4 * stride);
    let mut outs = out.chunks_exact_mut(4);
    for (block, o) in (&mut quads).zip(&mut outs) {
        let a = row_acc::<C>(&block[..stride], qv);
        let b = row_acc::<C>(&block[stride..2 * stride], qv);
        let c = row_acc::<C>(&block[2 * stride..3 * stride], qv);
        let d = row_acc::<C>(&block[3 * stride..], qv);
        let sums = reduce4(a, b, c, d);
        o[0] = i32x4_extract_lane::<0>(sums);
        o[1] = i32x4_extract_lane::<1>(sums);
        o[2] = i32x4_extract_lane::<2>(sums);
        o[3] = i32x4_extract_lane::<3>(sums);
    }
    for (row, o) in quads
        .remainder()
        .chunks_exact(stride)
        .zip(outs.into_remainder())
    {
        let acc = row_acc::<C>(row, qv);
        let sums = reduce4(acc, acc, acc, acc);
        *o = i32x4_extract_lane::<0>(sums);
    }
}

fn generic(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    let chunks = stride / 16;
    for (row, o) in rows.chunks_exact(stride).zip(out.iter_mut()) {
        let mut acc = i32x4_splat(0);
        for c in 0..chunks {
            let q_lo = query_lanes(&query[c * 16..]);
            let q_hi = query_lanes(&query[c * 16 + 8..]);
            acc = i32x4_add(acc, i32x4_dot_i16x8(load8_extend(&row[c * 16..]), q_lo));
            acc = i32x4_add(acc, i32x4_dot_i16x8(load8_extend(&row[c * 16 + 8..]), q_hi));
        }
        let sums = reduce4(acc, acc, acc, acc);
        *o = i32x4_extract_lane::<0>(sums);
    }
}

/// A 16-byte load from the start of `bytes`, which must hold at least 16.
#[inline(always)]
fn load16<T>(bytes: &[T]) -> v128 {
    assert!(core::mem::size_of_val(bytes) >= 16);
    // SAFETY: the slice holds at least 16 bytes (checked above), and `v128.load` has no
    // alignment requirement.
    unsafe { v128_load(bytes.as_ptr().cast()) }
}

/// See [`super::is_ascii`]: 64 bytes per step, any high bit found with one `i8x16.bitmask`.
pub fn is_ascii(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    for c in &mut chunks {
        let v = v128_or(
            v128_or(load16(c), load16(&c[16..])),
            v128_or(load16(&c[32..]), load16(&c[48..])),
        );
        if i8x16_bitmask(v) != 0 {
            return false;
        }
    }
    super::scalar::is_ascii(chunks.remainder())
}

/// See [`super::contains_i8_min`]. A running lane-wise minimum over 64 bytes per step, no
/// branch inside the loop; the minimum is −128 exactly when some byte is.
pub fn contains_i8_min(values: &[i8]) -> bool {
    let mut chunks = values.chunks_exact(64);
    let mut low = i8x16_splat(0);
    for c in &mut chunks {
        let a = i8x16_min(load16(c), load16(&c[16..]));
        let b = i8x16_min(load16(&c[32..]), load16(&c[48..]));
        low = i8x16_min(low, i8x16_min(a, b));
    }
    v128_any_true(i8x16_eq(low, i8x16_splat(i8::MIN)))
        || super::scalar::contains_i8_min(chunks.remainder())
}

/// See [`super::strictly_increasing`]. Each step compares 16 values with their successors
/// (two overlapping loads per 4 lanes) and folds the results into one mask, tested at the end.
pub fn strictly_increasing(values: &[u32]) -> bool {
    let steps = values.len().saturating_sub(1) / 16;
    let mut all = u32x4_splat(u32::MAX);
    for s in 0..steps {
        let c = &values[s * 16..s * 16 + 17];
        let gt = |k: usize| u32x4_gt(load16(&c[k + 1..]), load16(&c[k..]));
        all = v128_and(
            all,
            v128_and(v128_and(gt(0), gt(4)), v128_and(gt(8), gt(12))),
        );
    }
    u32x4_all_true(all) && super::scalar::strictly_increasing(&values[steps * 16..])
}

/// See [`super::strictly_increasing_u64`]. wasm has only a signed `i64x2.gt`, so both sides
/// have their sign bit flipped first, which orders them as unsigned values; 8 values per step.
pub fn strictly_increasing_u64(values: &[u64]) -> bool {
    let steps = values.len().saturating_sub(1) / 8;
    let flip = u64x2_splat(1 << 63);
    let mut all = u64x2_splat(u64::MAX);
    for s in 0..steps {
        let c = &values[s * 8..s * 8 + 9];
        let gt = |k: usize| {
            i64x2_gt(
                v128_xor(load16(&c[k + 1..]), flip),
                v128_xor(load16(&c[k..]), flip),
            )
        };
        all = v128_and(
            all,
            v128_and(v128_and(gt(0), gt(2)), v128_and(gt(4), gt(6))),
        );
    }
    i64x2_all_true(all) && super::scalar::strictly_increasing_u64(&values[steps * 8..])
}

/// See [`super::row_sums`]. Per 16 bytes: one pairwise widening add for the sum, and `abs`
/// then an unsigned pairwise widening add for the norm (`i8x16.abs` of −128 is 0x80, which read
/// unsigned is 128, the right magnitude). A 16-bit lane gathers at most 2·128 per 16 bytes, so
/// lanes cannot overflow for the strides the caller allows (≤ 256).
pub fn row_sums(rows: &[i8], stride: usize, sum: &mut [i16], l1: &mut [u16]) {
    if stride == 0 || stride % 16 != 0 || stride > 256 {
        return super::scalar::row_sums(rows, stride, sum, l1);
    }
    for ((row, s), a) in rows.chunks_exact(stride).zip(sum).zip(l1) {
        let (mut total, mut norm) = (i16x8_splat(0), u16x8_splat(0));
        for chunk in row.chunks_exact(16) {
            let v = load16(chunk);
            total = i16x8_add(total, i16x8_extadd_pairwise_i8x16(v));
            norm = i16x8_add(norm, u16x8_extadd_pairwise_u8x16(i8x16_abs(v)));
        }
        let total = i32x4_extadd_pairwise_i16x8(total);
        let norm = u32x4_extadd_pairwise_u16x8(norm);
        let lanes = |v: v128| {
            i32x4_extract_lane::<0>(v)
                + i32x4_extract_lane::<1>(v)
                + i32x4_extract_lane::<2>(v)
                + i32x4_extract_lane::<3>(v)
        };
        // In range by the stride bound (see `super::row_sums`).
        *s = lanes(total) as i16;
        *a = lanes(norm) as u16;
    }
}

/// See [`super::fast_scan_block`]. Per column: one load of 16 code bytes, and the low and high
/// nibbles (items 0–15 and 16–31) looked up in the column's table, 16 items per lookup. The
/// looked-up bytes are added as u16 lanes without widening (FAISS's trick): a lane then
/// accumulates its even byte plus 256 × its odd byte, and a second accumulator the odd bytes
/// alone (the lanes shifted right by 8), so the even items' sums are the difference at the end.
/// The first accumulator wraps, but the difference is exact because the true sums fit in u16.
pub fn fast_scan_block(
    luts: &[u8],
    codes: &[u8],
    base: u16,
    bar: u16,
    out: &mut [u16; crate::first_pass::BLOCK_ITEMS],
) -> bool {
    let nibble = u8x16_splat(15);
    let zero = u16x8_splat(0);
    let (mut lo_mixed, mut lo_odd, mut hi_mixed, mut hi_odd) = (zero, zero, zero, zero);
    for (table, column) in luts.chunks_exact(16).zip(codes.chunks_exact(16)) {
        // SAFETY: both chunks are exactly 16 bytes; the loads have no alignment requirement.
        let (t, c) = unsafe {
            (
                v128_load(table.as_ptr() as *const v128),
                v128_load(column.as_ptr() as *const v128),
            )
        };
        let lo = lookup(t, v128_and(c, nibble));
        let hi = lookup(t, u8x16_shr(c, 4));
        lo_mixed = u16x8_add(lo_mixed, lo);
        lo_odd = u16x8_add(lo_odd, u16x8_shr(lo, 8));
        hi_mixed = u16x8_add(hi_mixed, hi);
        hi_odd = u16x8_add(hi_odd, u16x8_shr(hi, 8));
    }
    let lo_even = u16x8_sub(lo_mixed, u16x8_shl(lo_odd, 8));
    let hi_even = u16x8_sub(hi_mixed, u16x8_shl(hi_odd, 8));
    let base = u16x8_splat(base);
    let sums = [
        u16x8_add(
            base,
            u16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(lo_even, lo_odd),
        ),
        u16x8_add(
            base,
            u16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(lo_even, lo_odd),
        ),
        u16x8_add(
            base,
            u16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(hi_even, hi_odd),
        ),
        u16x8_add(
            base,
            u16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(hi_even, hi_odd),
        ),
    ];
    for (v, chunk) in sums.iter().zip(out.chunks_exact_mut(8)) {
        // SAFETY: each chunk is 8 u16 = 16 bytes; the store has no alignment requirement.
        unsafe { v128_store(chunk.as_mut_ptr() as *mut v128, *v) };
    }
    let bar = u16x8_splat(bar);
    let at_least = v128_or(
        v128_or(u16x8_ge(sums[0], bar), u16x8_ge(sums[1], bar)),
        v128_or(u16x8_ge(sums[2], bar), u16x8_ge(sums[3], bar)),
    );
    v128_any_true(at_least)
}

/// A 16-entry table lookup with indices below 16. The relaxed build uses
/// `i8x16.relaxed_swizzle`, which is one instruction where the strict swizzle is two (its result
/// differs only for indices of 16 and above, which nibbles never are).
#[inline(always)]
fn lookup(table: v128, indices: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i8x16_relaxed_swizzle(table, indices)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        u8x16_swizzle(table, indices)
    }
}

/// See [`super::dot_f32`]: the reference's four lane sums in one `f32x4`, reduced and finished
/// in the reference's order (separate `f32x4.mul` and `f32x4.add`, as the reference rounds).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 4 * 4;
    let mut acc = f32x4_splat(0.0);
    for (x, y) in a[..body].chunks_exact(4).zip(b[..body].chunks_exact(4)) {
        let x = f32x4(x[0], x[1], x[2], x[3]);
        let y = f32x4(y[0], y[1], y[2], y[3]);
        acc = f32x4_add(acc, f32x4_mul(x, y));
    }
    let lanes = [
        f32x4_extract_lane::<0>(acc),
        f32x4_extract_lane::<1>(acc),
        f32x4_extract_lane::<2>(acc),
        f32x4_extract_lane::<3>(acc),
    ];
    super::scalar::finish_dot_f32(lanes, &a[body..n], &b[body..n])
}
