//! wasm simd128 kernel. Per 16 row bytes: one load, two sign extensions to i16x8, and two
//! `i32x4.dot_i16x8_s` against the query lanes. The query's i16 vectors are loaded once per
//! block and kept in locals for the common stride of 64.

use core::arch::wasm32::*;

/// See [`super::dot_i8_block`].
pub fn dot_i8_block(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    if stride == 0 || stride % 16 != 0 || query.len() < stride {
        return super::scalar::dot_i8_block(query, rows, stride, out);
    }
    let chunks = stride / 16;
    // Query as i16x8 vectors: two per 16 row bytes.
    let mut qv = [i16x8_splat(0); 128];
    let use_stack = chunks * 2 <= qv.len();
    if !use_stack {
        return super::scalar::dot_i8_block(query, rows, stride, out);
    }
    for (i, v) in qv.iter_mut().take(chunks * 2).enumerate() {
        let q = &query[i * 8..i * 8 + 8];
        *v = i16x8(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]);
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc0 = i32x4_splat(0);
        let mut acc1 = i32x4_splat(0);
        for (c, bytes) in row.chunks_exact(16).enumerate() {
            // SAFETY: `bytes` is exactly 16 bytes long (chunks_exact), and v128_load has no
            // alignment requirement.
            let r = unsafe { v128_load(bytes.as_ptr() as *const v128) };
            let lo = i16x8_extend_low_i8x16(r);
            let hi = i16x8_extend_high_i8x16(r);
            acc0 = i32x4_add(acc0, i32x4_dot_i16x8(lo, qv[2 * c]));
            acc1 = i32x4_add(acc1, i32x4_dot_i16x8(hi, qv[2 * c + 1]));
        }
        let acc = i32x4_add(acc0, acc1);
        let pair = i32x4_add(acc, i32x4_shuffle::<2, 3, 0, 1>(acc, acc));
        let sum = i32x4_add(pair, i32x4_shuffle::<1, 0, 3, 2>(pair, pair));
        *o = i32x4_extract_lane::<0>(sum);
    }
}
