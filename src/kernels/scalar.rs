//! The reference kernel: plain Rust, obviously correct, used to check the SIMD versions and as
//! the fallback where none applies.

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
