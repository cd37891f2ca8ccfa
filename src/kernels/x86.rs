//! x86-64 AVX2 kernel, chosen at run time. Per 16 row bytes: one sign-extending load to 16 x i16
//! and one `vpmaddwd` against the query, accumulated in 8 x i32.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Whether the CPU has AVX2 (cached by std after the first call).
#[inline]
pub fn avx2_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// See [`super::dot_i8_block`]. Falls back to the reference if called without AVX2.
pub fn dot_i8_block(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    if !avx2_available() || stride == 0 || stride % 16 != 0 || query.len() < stride {
        return super::scalar::dot_i8_block(query, rows, stride, out);
    }
    // SAFETY: AVX2 is present (checked above), and the inner function reads only within the
    // slices it is given (16-element chunks of `query[..stride]` and of each row).
    unsafe { dot_i8_block_avx2(query, rows, stride, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn dot_i8_block_avx2(query: &[i16], rows: &[i8], stride: usize, out: &mut [i32]) {
    let chunks = stride / 16;
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
        let mut acc = _mm256_setzero_si256();
        for c in 0..chunks {
            // SAFETY: c * 16 + 16 <= stride = row.len() = query.len() (checked by the caller),
            // and the unaligned load/loadu intrinsics have no alignment requirement.
            let r = _mm_loadu_si128(row.as_ptr().add(c * 16) as *const __m128i);
            let r16 = _mm256_cvtepi8_epi16(r);
            let q = _mm256_loadu_si256(query.as_ptr().add(c * 16) as *const __m256i);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(r16, q));
        }
        let lo = _mm256_castsi256_si128(acc);
        let hi = _mm256_extracti128_si256::<1>(acc);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        *o = _mm_cvtsi128_si32(s);
    }
}

/// See [`super::fast_scan_block`]; the wasm kernel's steps with `pshufb` as the lookup. Falls
/// back to the reference without AVX2 (which implies the SSSE3 it uses).
pub fn fast_scan_block(
    luts: &[u8],
    codes: &[u8],
    base: u16,
    bar: u16,
    out: &mut [u16; crate::first_pass::BLOCK_ITEMS],
) -> bool {
    if !avx2_available() {
        return super::scalar::fast_scan_block(luts, codes, base, bar, out);
    }
    // SAFETY: AVX2 (and so SSSE3) is present, checked above; the function reads only whole
    // 16-byte chunks of the slices it is given and writes within `out`.
    unsafe { fast_scan_block_ssse3(luts, codes, base, out) };
    out.iter().any(|&s| s >= bar)
}

#[target_feature(enable = "avx2")]
unsafe fn fast_scan_block_ssse3(
    luts: &[u8],
    codes: &[u8],
    base: u16,
    out: &mut [u16; crate::first_pass::BLOCK_ITEMS],
) {
    let nibble = _mm_set1_epi8(15);
    let zero = _mm_setzero_si128();
    let mut acc = [_mm_set1_epi16(base as i16); 4];
    for (table, column) in luts.chunks_exact(16).zip(codes.chunks_exact(16)) {
        // SAFETY: both chunks are exactly 16 bytes; loadu has no alignment requirement.
        let t = _mm_loadu_si128(table.as_ptr() as *const __m128i);
        let c = _mm_loadu_si128(column.as_ptr() as *const __m128i);
        // Nibbles are at most 15, so pshufb's "zero when the top bit is set" never applies.
        let lo = _mm_shuffle_epi8(t, _mm_and_si128(c, nibble));
        let hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16::<4>(c), nibble));
        acc[0] = _mm_add_epi16(acc[0], _mm_unpacklo_epi8(lo, zero));
        acc[1] = _mm_add_epi16(acc[1], _mm_unpackhi_epi8(lo, zero));
        acc[2] = _mm_add_epi16(acc[2], _mm_unpacklo_epi8(hi, zero));
        acc[3] = _mm_add_epi16(acc[3], _mm_unpackhi_epi8(hi, zero));
    }
    for (a, chunk) in acc.iter().zip(out.chunks_exact_mut(8)) {
        // SAFETY: each chunk is 8 u16 = 16 bytes; storeu has no alignment requirement.
        _mm_storeu_si128(chunk.as_mut_ptr() as *mut __m128i, *a);
    }
}

/// See [`super::dot_f32`]: the reference's four lane sums in one SSE register (SSE is part of
/// x86-64, so no run-time check), reduced and finished in the reference's order.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n / 4 * 4;
    // SAFETY: SSE is always present on x86-64, and every load reads `[c, c + 4)` with
    // `c + 4 <= body <= n`, within both slices; `loadu` has no alignment requirement.
    let lanes = unsafe {
        let mut acc = _mm_setzero_ps();
        for c in (0..body).step_by(4) {
            let x = _mm_loadu_ps(a.as_ptr().add(c));
            let y = _mm_loadu_ps(b.as_ptr().add(c));
            acc = _mm_add_ps(acc, _mm_mul_ps(x, y));
        }
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), acc);
        out
    };
    super::scalar::finish_dot_f32(lanes, &a[body..n], &b[body..n])
}
