//! The certified coarse pass: a cheaper first pass over int8 rows that never changes a ranking.
//!
//! The exact scan multiplies every int8 row by the 16-bit query. Where the engine has a fast
//! 8-bit × 7-bit dot product (wasm relaxed SIMD's `i16x8.relaxed_dot_i8x16_i7x16_s`, x86's
//! `pmaddubsw`), a query rounded to 6-bit digits costs about a third as much per row. Alone
//! that would rank differently, so it only serves as a bound:
//!
//! - each query element is written `q = step·(h − 32) + r` with a digit `h` in `[1, 63]` and a
//!   residual `|r| ≤ step/2`;
//! - the coarse kernel computes `D = Σ x·h` for a row `x`;
//! - then `Σ x·q = step·(D − 32·Σx) + Σ x·r ≤ step·(D − 32·Σx) + L1(x)·max|r|`, with the row's
//!   sum `Σx` and L1 norm precomputed once per model ([`RowBounds`]).
//!
//! The ranker turns that integer bound into a score bound with the same float operations it
//! uses for scores (monotone, because row scales are validated non-negative) and computes the
//! exact dot product only for rows whose bound beats the current top-K threshold. Every row it
//! skips would have been rejected by the exact scan too, so the results are identical: same
//! items, same scores, same order. All integer arithmetic stays inside `i32` by construction
//! ([`CoarseQuery::new`] declines queries and strides where it might not).

/// The offset that makes a signed digit non-negative (the kernel's second operand must be).
pub const DIGIT_OFFSET: i32 = 32;
/// The largest |signed digit|: digits `h = round(q/step) + 32` lie in `[1, 63]`, which keeps
/// two row-pair products per 16-bit lane below `2^15` (`2 · 2 · 128 · 63 = 32256`).
pub const DIGIT_MAX: i32 = 31;

/// Per-row sums and L1 norms of a shard's int8 rows, stored narrow (they are read once per row
/// per request, beside the row itself). `None` when the stride is too long for 16-bit sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowBounds {
    /// `Σ x` per row.
    pub sum: Vec<i16>,
    /// `Σ |x|` per row.
    pub l1: Vec<u16>,
}

impl RowBounds {
    /// The bounds of `rows` (`stride` elements each). `None` when a sum or norm might not fit
    /// in 16 bits: `|Σx| ≤ 128 · stride` (a forged shard may hold −128s) must stay within
    /// `i16` (−32768 is reachable, +32768 is not) and `Σ|x|` within `u16`.
    pub fn of(rows: &[i8], stride: usize) -> Option<RowBounds> {
        if stride == 0 || 128 * stride > 32768 {
            return None;
        }
        let n = rows.len() / stride;
        let (mut sum, mut l1) = (vec![0; n], vec![0; n]);
        crate::kernels::row_sums(rows, stride, &mut sum, &mut l1);
        Some(RowBounds { sum, l1 })
    }
}

/// A 16-bit query in the coarse form: digits for the kernel and the constants of the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoarseQuery {
    /// `h` per element, in `[1, 63]` (padding elements are 32, the digit of zero).
    pub digits: Vec<i8>,
    /// The digit's weight.
    pub step: i32,
    /// `max |r|` over the elements.
    pub max_residual: i32,
}

impl CoarseQuery {
    /// The coarse form of `query`, or `None` when a bound computed from it might leave `i32`
    /// for rows of this `stride` (the exact scan then runs alone).
    pub fn new(query: &[i16], stride: usize) -> Option<CoarseQuery> {
        let max_abs = query.iter().map(|&q| i32::from(q).abs()).max().unwrap_or(0);
        let step = (max_abs + DIGIT_MAX - 1) / DIGIT_MAX;
        let step = step.max(1);
        // |step·(D − 32·S)| ≤ step · 31 · 128 · stride and L1 · max|r| ≤ 128 · stride · step:
        // the bound and every partial sum stay below step · 32 · 128 · stride.
        let limit = i64::from(step) * 32 * 128 * stride as i64;
        if limit >= i64::from(i32::MAX) {
            return None;
        }
        let mut max_residual = 0;
        let digits = query
            .iter()
            .map(|&q| {
                let q = i32::from(q);
                // Nearest digit, ties away from zero; |q| ≤ 31·step keeps it in [−31, 31].
                let signed = (2 * q + step * q.signum()) / (2 * step);
                max_residual = max_residual.max((q - step * signed).abs());
                (signed + DIGIT_OFFSET) as i8
            })
            .collect();
        Some(CoarseQuery {
            digits,
            step,
            max_residual,
        })
    }

    /// An upper bound of the exact dot product of a row with the query, from the row's coarse
    /// dot product `coarse` and its [`RowBounds`] entries. Exact in `i32` (see [`Self::new`]).
    #[inline(always)]
    pub fn upper_bound(&self, coarse: i32, sum: i16, l1: u16) -> i32 {
        self.step * (coarse - DIGIT_OFFSET * i32::from(sum)) + self.max_residual * i32::from(l1)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::kernels;
    use proptest::prelude::*;

    fn exact(q: &[i16], row: &[i8]) -> i64 {
        q.iter()
            .zip(row)
            .map(|(&a, &b)| i64::from(a) * i64::from(b))
            .sum()
    }

    proptest! {
        /// The bound is never below the exact dot product, and digits stay in the kernel's range.
        #[test]
        fn bound_holds(
            (stride, query, rows) in (1usize..9).prop_flat_map(|blocks| {
                let stride = blocks * 16;
                (
                    Just(stride),
                    proptest::collection::vec(any::<i16>(), stride),
                    proptest::collection::vec(any::<i8>(), stride * 6),
                )
            })
        ) {
            // Strides up to 128 never come near the i32 limit, so the query is never declined.
            let cq = CoarseQuery::new(&query, stride).unwrap();
            prop_assert!(cq.digits.iter().all(|&h| (1..=63).contains(&h)));
            prop_assert!(2 * cq.max_residual <= cq.step);
            let bounds = RowBounds::of(&rows, stride).unwrap();
            let mut coarse = vec![0; 6];
            kernels::scalar::coarse_dot_block(&cq.digits, &rows, stride, &mut coarse);
            for (r, row) in rows.chunks_exact(stride).enumerate() {
                let ub = cq.upper_bound(coarse[r], bounds.sum[r], bounds.l1[r]);
                prop_assert!(i64::from(ub) >= exact(&query, row));
            }
        }
    }

    #[test]
    fn extremes() {
        let stride = 64;
        let rows = vec![i8::MIN; stride];
        for q in [i16::MIN + 1, i16::MAX, 0, 1, -1] {
            let query = vec![q; stride];
            let cq = CoarseQuery::new(&query, stride).unwrap();
            let b = RowBounds::of(&rows, stride).unwrap();
            let mut coarse = [0];
            kernels::scalar::coarse_dot_block(&cq.digits, &rows, stride, &mut coarse);
            let ub = cq.upper_bound(coarse[0], b.sum[0], b.l1[0]);
            assert!(i64::from(ub) >= exact(&query, &rows), "q = {q}");
        }
        let sums = RowBounds::of(&[i8::MIN; 256], 256).unwrap();
        assert_eq!((sums.sum[0], sums.l1[0]), (i16::MIN, 32768));
        assert_eq!(RowBounds::of(&[0; 272], 272), None);
        // A stride whose bound could leave i32 for the largest queries is declined.
        assert_eq!(CoarseQuery::new(&[i16::MAX; 16], 16 * 1024), None);
    }
}
