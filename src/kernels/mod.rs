//! Scoring kernels: integer dot products of one quantized query with a block of int8 rows.
//!
//! [`scalar`] is the reference. [`dot_i8_block`] dispatches to a SIMD version where one exists
//! (wasm simd128 at compile time, x86-64 AVX2 at run time) and falls back to the reference
//! otherwise. All versions compute the same exact integers (no floating point inside), so the
//! property tests require equality, and rankings are identical across platforms.
//!
//! Rows are `stride` elements, a multiple of 16 (see `format::row_stride`), zero-padded, and the
//! query is padded with zeros to the same stride: no kernel needs a tail loop.

pub mod scalar;
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
