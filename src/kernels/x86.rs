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
