//! The two-stage scan's first pass: items grouped by a coarse centroid, their residuals in 4-bit
//! product-quantized codes scanned with table lookups.
//!
//! The exact scan reads every item's `stride` int8 bytes per request: memory traffic on large
//! catalogs (64 MB per request at 1M × 64) and about 30 SIMD instructions per row. The first pass
//! instead works on a compact approximation of each item vector (as served: int8 row × scale):
//!
//! - **Coarse centroids.** k-means puts every item in one of `K` clusters (one per 128 items, at
//!   most 1,024). The shard stores each cluster's codes together, in blocks of [`BLOCK_ITEMS`],
//!   and says which item each slot holds ([`Members`]): since format 6 the writer numbers items
//!   cluster by cluster, so a cluster's items are one run of indices; formats 3 to 5 kept a slot
//!   table. Per request, the query is scored against the `K` int8 centroids with the same block
//!   kernel as item rows.
//! - **Residual codes.** What remains of an item after its centroid is cut into `stride / 4`
//!   subvectors of 4 dimensions, each replaced by the nearest of 16 centroids (a 4-bit code). The
//!   item's bias is one more column, quantized to 16 levels.
//! - **Tables.** Per request, each column gets 16 entries (the query's dot product with each
//!   residual centroid; the bias levels themselves), shifted so the smallest is 0 and divided by
//!   one step `Δ` shared by all columns and the coarse scores, so every entry fits a byte. An
//!   item's approximate score is then `Δ · (coarse[k] + Σ table[column][code])` plus a constant,
//!   and the integer sums order items the same way. A 16-entry lookup is one `u8x16_swizzle` on
//!   wasm (`pshufb` on x86) for 16 items at a time; codes are stored column by column, the low
//!   nibble of byte `j` for item `j` of the block and the high nibble for item `j + 16` (the
//!   layout of FAISS's "fast scan").
//! - **Pruning.** Clusters are visited best coarse score first. A cluster whose coarse score plus
//!   the largest possible residual sum is below the current bar cannot hold a candidate, and nor
//!   can any later one, so the pass stops there.
//!
//! The pass keeps the best few hundred items by approximate score (ties to the lower index;
//! integers, so every build keeps the same ones) and the ranker scores only those exactly, with
//! the int8 rows. Unlike the certified coarse pass (`crate::coarse`) this is an approximation: an
//! item the codes misjudge badly can be missed. `make bench` measures recall@10 against exact f32.

/// Dimensions per subvector (one 4-bit code each).
pub const SUB_DIM: usize = 4;
/// Centroids per column: one 4-bit code.
pub const CENTROIDS: usize = 16;
/// Items per block of codes: 16 bytes per column hold two codes per byte.
pub const BLOCK_ITEMS: usize = 32;
/// Bytes per column per block.
pub const COLUMN_BYTES: usize = 16;
/// A slot of a cluster's last block that holds no item.
pub const EMPTY_SLOT: u32 = u32::MAX;
/// The most coarse centroids a shard may declare.
pub const MAX_CLUSTERS: usize = 4096;
/// Catalogs below this size are scanned exactly even when their shards carry codes: the exact
/// scan of a few thousand rows takes microseconds and has no approximation.
pub const MIN_ITEMS: u32 = 16_384;
/// Items kept for exact scoring, at least (and 8 × the items the request asks for, if more).
pub const MIN_CANDIDATES: usize = 256;

/// Items kept for exact scoring by default in a catalog of `items`: [`MIN_CANDIDATES`], or one
/// per thousand items in larger catalogs. With more items per coarse cluster (their number is
/// capped) the codes tell fewer apart; on the bench's 1M model, 256 candidates kept 89% of the
/// exact top 10 and 1,000 kept 98% (docs/FIGURES.md).
pub fn default_keep(items: u32) -> usize {
    MIN_CANDIDATES.max(items as usize / 1000)
}
/// Coarse scores use at most this many units, so that with the residual columns (at most 257 ×
/// 255 = 65,535 when the stride is 1024) every sum fits `u16`. `Luts::new` widens the step
/// when needed: `coarse units + columns × 255 ≤ 65,535` always.
const fn coarse_units_max(columns: usize) -> u32 {
    65_535 - 255 * columns as u32
}

/// Code columns for rows of `stride` elements: one per subvector, then the bias column.
pub const fn columns(stride: usize) -> usize {
    stride / SUB_DIM + 1
}

/// f32 values in a shard's residual codebook section: `stride / 4` columns × 16 centroids × 4
/// dims, then 16 bias levels.
pub const fn codebook_len(stride: usize) -> usize {
    (stride / SUB_DIM) * CENTROIDS * SUB_DIM + CENTROIDS
}

/// Bytes of codes in one block.
pub const fn block_bytes(stride: usize) -> usize {
    columns(stride) * COLUMN_BYTES
}

/// A shard's first pass, as validated by the shard reader: `k` coarse centroids (int8 rows of
/// `stride`, one scale each), the residual codebook, and per cluster its run of blocks
/// (`lists[2k]` first block, `lists[2k + 1]` block count), each block's codes and which local
/// item each of its slots holds ([`Members`]).
#[derive(Debug, Clone, Copy)]
pub struct FirstPassShard<'a> {
    pub centroids: &'a [i8],
    pub centroid_scales: &'a [f32],
    pub codebook: &'a [f32],
    pub lists: &'a [u32],
    pub codes: &'a [u8],
    pub members: Members<'a>,
}

/// Which local item each slot of a shard's blocks holds.
#[derive(Debug, Clone, Copy)]
pub enum Members<'a> {
    /// Formats 3 to 5 (and any shard whose clusters' items are not consecutive): the local item
    /// of every slot of every block, [`EMPTY_SLOT`] for padding.
    Slots(&'a [u32]),
    /// Format 6, items stored cluster by cluster: per cluster `k`, its items are the local
    /// indices `runs[2k]..runs[2k] + runs[2k + 1]`, filling its blocks in order (padding
    /// after the last one).
    Runs(&'a [u32]),
}

impl Members<'_> {
    /// The local item in slot `j` of block `r` of cluster `k`'s blocks (`r` counted from the
    /// cluster's first block, whose index is `first_block`); `None` for padding or a slot out
    /// of range.
    #[inline]
    pub fn item(&self, k: usize, first_block: usize, r: usize, j: usize) -> Option<u32> {
        match *self {
            Members::Slots(slots) => {
                let slot = *slots.get((first_block + r) * BLOCK_ITEMS + j)?;
                (slot != EMPTY_SLOT).then_some(slot)
            }
            Members::Runs(runs) => {
                let (start, count) = (*runs.get(2 * k)?, *runs.get(2 * k + 1)?);
                let at = (r * BLOCK_ITEMS + j) as u32;
                (at < count).then(|| start + at)
            }
        }
    }
}

/// The per-request tables: 16 bytes per column, and each cluster's coarse score in the same
/// units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luts {
    pub bytes: Vec<u8>,
    pub coarse: Vec<u16>,
    /// The largest sum the residual columns can reach.
    pub max_residual: u16,
}

impl Luts {
    /// The tables of `query` (`stride` elements, already multiplied by its scale) for the
    /// residual `codebook` (validated length) and the clusters' coarse scores `coarse`. `None`
    /// when the tables cannot tell items apart (all entries equal) or a value is not finite:
    /// the ranker then scans exactly.
    pub fn new(query: &[f32], codebook: &[f32], coarse: &[f32], stride: usize) -> Option<Luts> {
        if query.len() != stride || codebook.len() != codebook_len(stride) {
            return None;
        }
        let (centroids, bias_levels) = codebook.split_at(codebook.len() - CENTROIDS);
        let mut tables = vec![[0f32; CENTROIDS]; columns(stride)];
        for ((table, sub_query), centroids) in tables
            .iter_mut()
            .zip(query.chunks_exact(SUB_DIM))
            .zip(centroids.chunks_exact(CENTROIDS * SUB_DIM))
        {
            for (t, centroid) in table.iter_mut().zip(centroids.chunks_exact(SUB_DIM)) {
                // Sequential sums: the same IEEE operations on every build.
                let mut acc = 0.0f32;
                for (q, c) in sub_query.iter().zip(centroid) {
                    acc += q * c;
                }
                *t = acc;
            }
        }
        if let Some(last) = tables.last_mut() {
            last.copy_from_slice(bias_levels);
        }
        // (min, max), or NaN bounds when a value is not finite (`f32::min` would skip a NaN).
        let range = |values: &[f32]| {
            if values.iter().all(|x| x.is_finite()) {
                values
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    })
            } else {
                (f32::NAN, f32::NAN)
            }
        };
        let mut step = 0.0f32;
        let mut minima = Vec::with_capacity(tables.len());
        for t in &tables {
            let (lo, hi) = range(t);
            if !(lo.is_finite() && hi.is_finite()) {
                return None;
            }
            minima.push(lo);
            step = step.max((hi - lo) / 255.0);
        }
        let (coarse_lo, coarse_hi) = range(coarse);
        if !(coarse_lo.is_finite() && coarse_hi.is_finite()) {
            return None;
        }
        let units_max = coarse_units_max(tables.len());
        step = step.max((coarse_hi - coarse_lo) / units_max as f32);
        if !(step.is_finite() && step > 0.0) {
            return None;
        }
        let bytes: Vec<u8> = tables
            .iter()
            .zip(&minima)
            .flat_map(|(t, &lo)| t.map(|x| ((x - lo) / step).round().clamp(0.0, 255.0) as u8))
            .collect();
        let max_residual = bytes
            .chunks_exact(CENTROIDS)
            .map(|t| u16::from(t.iter().copied().max().unwrap_or(0)))
            .sum();
        let coarse = coarse
            .iter()
            .map(|&x| {
                ((x - coarse_lo) / step)
                    .round()
                    .clamp(0.0, units_max as f32) as u16
            })
            .collect();
        Some(Luts {
            bytes,
            coarse,
            max_residual,
        })
    }
}

/// The best items by approximate score, at least `keep` of them once that many were offered:
/// a buffer of up to `2 · keep` that, when full, drops to the best `keep` and raises the bar to
/// just above the worst kept. Every build offers the same sums in the same order and sorts by
/// (sum, index), so every build keeps the same items.
#[derive(Debug)]
pub struct Candidates {
    keep: usize,
    /// Sums below this cannot enter.
    pub bar: u16,
    entries: Vec<(u16, u32)>,
}

impl Candidates {
    /// An empty selection keeping at least `keep` items (at least 1).
    pub fn new(keep: usize) -> Candidates {
        let keep = keep.max(1);
        Candidates {
            keep,
            bar: 0,
            entries: Vec::with_capacity(2 * keep),
        }
    }

    /// Offers an item whose sum is at or above [`Self::bar`].
    #[inline]
    pub fn push(&mut self, sum: u16, index: u32) {
        self.entries.push((sum, index));
        if self.entries.len() == 2 * self.keep {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let by_rank = |a: &(u16, u32), b: &(u16, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        self.entries.select_nth_unstable_by(self.keep - 1, by_rank);
        self.entries.truncate(self.keep);
        let worst = self.entries.iter().map(|e| e.0).min().unwrap_or(0);
        // Equal sums arriving later would rank below the kept ones (higher index): skip them.
        self.bar = worst.saturating_add(1);
    }

    /// The kept items' indices, ascending (the order the exact scan would offer them in).
    pub fn into_indices(self) -> Vec<u32> {
        let mut out: Vec<u32> = self.entries.into_iter().map(|e| e.1).collect();
        out.sort_unstable();
        out
    }
}

/// Training and encoding, for the writer.
#[cfg(any(feature = "writer", test))]
pub mod train {
    use super::*;

    /// Rows sampled for the residual codebooks.
    const SAMPLE: usize = 65_536;
    /// Rows sampled for the coarse centroids (each iteration compares every row with every
    /// centroid in full dimension).
    const COARSE_SAMPLE: usize = 16_384;
    const ITERATIONS: usize = 12;

    /// The coarse centroids, as int8 rows with one scale each, and the residual codebook.
    #[derive(Debug, Clone)]
    pub struct Model {
        pub centroids: Vec<i8>,
        pub centroid_scales: Vec<f32>,
        pub codebook: Vec<f32>,
        /// The centroids as served (int8 × scale), for assignment and residuals.
        served: Vec<f32>,
        norms: Vec<f32>,
    }

    /// One shard's lists, codes and slots (see [`FirstPassShard`]), and the same slots as runs
    /// when every cluster's items are consecutive local indices (format 6).
    #[derive(Debug, Clone, Default)]
    pub struct Encoded {
        pub lists: Vec<u32>,
        pub codes: Vec<u8>,
        pub slots: Vec<u32>,
        pub runs: Option<Vec<u32>>,
    }

    /// Coarse centroids for `n` items: one per 128 items, at most 1,024.
    pub fn clusters(n: usize) -> usize {
        (n / 128).clamp(1, 1024)
    }

    /// `count` of `n` indices, evenly spaced (all of them when `n ≤ count`): deterministic.
    pub fn sample(n: usize, count: usize) -> Vec<usize> {
        if n <= count {
            (0..n).collect()
        } else {
            (0..count).map(|i| i * n / count).collect()
        }
    }

    /// The rows the writer should pass to [`Model::train`] for a catalog of `n` items.
    pub fn training_items(n: usize) -> Vec<usize> {
        sample(n, SAMPLE)
    }

    /// Dot product in 8 independent lanes (vectorises).
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                lanes[l] += x[l] * y[l];
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    /// The nearest of `centroids` (`dim` wide, squared norms `norms`) to `point` in L2.
    fn nearest(point: &[f32], centroids: &[f32], norms: &[f32], dim: usize) -> usize {
        let mut best = (f32::INFINITY, 0);
        for (c, (centroid, &norm)) in centroids.chunks_exact(dim).zip(norms).enumerate() {
            let d = norm - 2.0 * dot(point, centroid);
            if d < best.0 {
                best = (d, c);
            }
        }
        best.1
    }

    fn norms(centroids: &[f32], dim: usize) -> Vec<f32> {
        centroids.chunks_exact(dim).map(|c| dot(c, c)).collect()
    }

    /// Lloyd's k-means with `k` centroids over `points` (`dim` wide), started from points at
    /// evenly spaced positions so that the result is deterministic. An empty cluster keeps its
    /// centroid.
    fn kmeans(points: &[f32], dim: usize, k: usize) -> Vec<f32> {
        let n = points.len() / dim;
        let mut centroids = vec![0f32; k * dim];
        if n == 0 {
            return centroids;
        }
        for (c, centroid) in centroids.chunks_exact_mut(dim).enumerate() {
            let p = (2 * c + 1) * n / (2 * k);
            centroid.copy_from_slice(&points[p * dim..(p + 1) * dim]);
        }
        let mut assignment = vec![0usize; n];
        for _ in 0..ITERATIONS {
            let norms = norms(&centroids, dim);
            for (a, point) in assignment.iter_mut().zip(points.chunks_exact(dim)) {
                *a = nearest(point, &centroids, &norms, dim);
            }
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0usize; k];
            for (&a, point) in assignment.iter().zip(points.chunks_exact(dim)) {
                counts[a] += 1;
                for (s, &x) in sums[a * dim..(a + 1) * dim].iter_mut().zip(point) {
                    *s += f64::from(x);
                }
            }
            for (c, centroid) in centroids.chunks_exact_mut(dim).enumerate() {
                if counts[c] > 0 {
                    for (x, s) in centroid.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                        *x = (s / counts[c] as f64) as f32;
                    }
                }
            }
        }
        centroids
    }

    impl Model {
        /// Trains on `rows` (`stride` wide, as served) and their `bias`, for a catalog of
        /// `total` items (which sets the number of clusters).
        pub fn train(rows: &[f32], bias: &[f32], stride: usize, total: usize) -> Model {
            let n = bias.len();
            let k = clusters(total).min(n.max(1));
            let mut picked = Vec::with_capacity(COARSE_SAMPLE.min(n) * stride);
            for i in sample(n, COARSE_SAMPLE) {
                picked.extend_from_slice(&rows[i * stride..(i + 1) * stride]);
            }
            let coarse = kmeans(&picked, stride, k);
            let mut centroids = vec![0i8; k * stride];
            let mut centroid_scales = Vec::with_capacity(k);
            let mut served = vec![0f32; k * stride];
            for ((c, out), s) in coarse
                .chunks_exact(stride)
                .zip(centroids.chunks_exact_mut(stride))
                .zip(served.chunks_exact_mut(stride))
            {
                let scale = crate::writer::quantize_row_i8(c, out);
                centroid_scales.push(scale);
                for (v, &x) in s.iter_mut().zip(out.iter()) {
                    *v = f32::from(x) * scale;
                }
            }
            let norms = norms(&served, stride);
            let mut model = Model {
                centroids,
                centroid_scales,
                codebook: Vec::new(),
                served,
                norms,
            };
            let mut residuals = vec![0f32; rows.len()];
            for (row, out) in rows
                .chunks_exact(stride)
                .zip(residuals.chunks_exact_mut(stride))
            {
                model.residual(row, out);
            }
            let mut codebook = Vec::with_capacity(codebook_len(stride));
            let mut points = Vec::with_capacity(n * SUB_DIM);
            for column in 0..stride / SUB_DIM {
                points.clear();
                for row in residuals.chunks_exact(stride) {
                    points.extend_from_slice(&row[column * SUB_DIM..(column + 1) * SUB_DIM]);
                }
                codebook.extend(kmeans(&points, SUB_DIM, CENTROIDS));
            }
            let mut levels = kmeans(bias, 1, CENTROIDS);
            levels.sort_by(f32::total_cmp);
            codebook.extend(levels);
            model.codebook = codebook;
            model
        }

        fn stride(&self) -> usize {
            self.centroids.len() / self.centroid_scales.len().max(1)
        }

        /// The coarse cluster of `row` (`stride` wide, as served): its nearest centroid.
        pub fn assign(&self, row: &[f32]) -> usize {
            nearest(row, &self.served, &self.norms, self.stride())
        }

        /// Writes `row` minus its nearest centroid into `out`; returns the centroid.
        fn residual(&self, row: &[f32], out: &mut [f32]) -> usize {
            let k = self.assign(row);
            self.residual_from(row, k, out);
            k
        }

        /// Writes `row` minus centroid `k` into `out`.
        fn residual_from(&self, row: &[f32], k: usize, out: &mut [f32]) {
            let stride = self.stride();
            let centroid = &self.served[k * stride..(k + 1) * stride];
            for ((o, &x), &c) in out.iter_mut().zip(row).zip(centroid) {
                *o = x - c;
            }
        }

        /// Encodes one shard's items: `rows` (`stride` wide, as served) and `bias`.
        pub fn encode(&self, rows: &[f32], bias: &[f32]) -> Encoded {
            let clusters: Vec<u32> = rows
                .chunks_exact(self.stride())
                .map(|row| self.assign(row) as u32)
                .collect();
            self.encode_assigned(rows, bias, &clusters)
        }

        /// [`Model::encode`] with each item's cluster given (from [`Model::assign`]), so a
        /// writer that has assigned every item already does not search the centroids again.
        pub fn encode_assigned(&self, rows: &[f32], bias: &[f32], clusters: &[u32]) -> Encoded {
            let stride = self.stride();
            let cols = columns(stride);
            let k = self.centroid_scales.len();
            let (centroids, levels) = self.codebook.split_at(self.codebook.len() - CENTROIDS);
            let level_norms = norms(levels, 1);
            let tables: Vec<&[f32]> = centroids.chunks_exact(CENTROIDS * SUB_DIM).collect();
            let table_norms: Vec<Vec<f32>> = tables.iter().map(|t| norms(t, SUB_DIM)).collect();
            let mut members: Vec<Vec<(u32, Vec<u8>)>> = vec![Vec::new(); k];
            let mut residual = vec![0f32; stride];
            for (i, (row, &cluster)) in rows.chunks_exact(stride).zip(clusters).enumerate() {
                let cluster = cluster as usize;
                self.residual_from(row, cluster, &mut residual);
                let mut codes = Vec::with_capacity(cols);
                for ((table, table_norms), sub) in tables
                    .iter()
                    .zip(&table_norms)
                    .zip(residual.chunks_exact(SUB_DIM))
                {
                    codes.push(nearest(sub, table, table_norms, SUB_DIM) as u8);
                }
                codes.push(nearest(&bias[i..i + 1], levels, &level_norms, 1) as u8);
                members[cluster].push((i as u32, codes));
            }
            let mut out = Encoded::default();
            // Runs when cluster after cluster takes the next local items, in order.
            let mut next = 0u32;
            let mut runs = Vec::with_capacity(2 * k);
            for list in &members {
                let consecutive = list.iter().zip(next..).all(|(m, want)| m.0 == want);
                if !consecutive {
                    runs.clear();
                    break;
                }
                runs.extend([next, list.len() as u32]);
                next += list.len() as u32;
            }
            out.runs = (runs.len() == 2 * k).then_some(runs);
            for list in &members {
                let first = out.slots.len() / BLOCK_ITEMS;
                let blocks = list.len().div_ceil(BLOCK_ITEMS);
                out.lists.extend([first as u32, blocks as u32]);
                for chunk in list.chunks(BLOCK_ITEMS) {
                    let mut block = vec![0u8; cols * COLUMN_BYTES];
                    for (j, (_, codes)) in chunk.iter().enumerate() {
                        let (byte, shift) = (j % COLUMN_BYTES, 4 * (j / COLUMN_BYTES));
                        for (column, &code) in codes.iter().enumerate() {
                            block[column * COLUMN_BYTES + byte] |= code << shift;
                        }
                    }
                    out.codes.extend(block);
                    out.slots.extend(chunk.iter().map(|m| m.0));
                    out.slots
                        .extend(std::iter::repeat_n(EMPTY_SLOT, BLOCK_ITEMS - chunk.len()));
                }
            }
            out
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::kernels;
    use proptest::prelude::*;

    /// The sums spelled out per item from the layout's definition.
    fn sums_by_definition(luts: &[u8], codes: &[u8], cols: usize, base: u16) -> Vec<u16> {
        (0..BLOCK_ITEMS)
            .map(|j| {
                (0..cols)
                    .map(|c| {
                        let byte = codes[c * COLUMN_BYTES + j % COLUMN_BYTES];
                        let code = if j < COLUMN_BYTES {
                            byte & 15
                        } else {
                            byte >> 4
                        };
                        u16::from(luts[c * CENTROIDS + code as usize])
                    })
                    .fold(base, u16::wrapping_add)
            })
            .collect()
    }

    proptest! {
        /// Every build's block kernel computes the sums the layout defines, up to 257 columns of
        /// 255s (the largest tables a valid stride allows), and says whether one reaches the bar.
        #[test]
        fn block_sums_match_the_definition(
            (cols, luts, codes, base, bar) in (1usize..=257).prop_flat_map(|cols| (
                Just(cols),
                proptest::collection::vec(any::<u8>(), cols * CENTROIDS),
                proptest::collection::vec(any::<u8>(), cols * COLUMN_BYTES),
                0..=coarse_units_max(cols) as u16,
                any::<u16>(),
            ))
        ) {
            let want = sums_by_definition(&luts, &codes, cols, base);
            let any = want.iter().any(|&s| s >= bar);
            let mut reference = [0u16; BLOCK_ITEMS];
            prop_assert_eq!(kernels::scalar::fast_scan_block(&luts, &codes, base, bar, &mut reference), any);
            prop_assert_eq!(&reference[..], &want[..]);
            let mut got = [0u16; BLOCK_ITEMS];
            prop_assert_eq!(kernels::fast_scan_block(&luts, &codes, base, bar, &mut got), any);
            prop_assert_eq!(&got[..], &want[..]);
        }

        /// The candidates are the best `keep` of everything offered by (sum, lower index), or a
        /// superset of them: nothing the bar turns away could have been among them.
        #[test]
        fn candidates_hold_the_best(sums in proptest::collection::vec(any::<u16>(), 0..400), keep in 1usize..40) {
            let mut c = Candidates::new(keep);
            for (i, &s) in sums.iter().enumerate() {
                if s >= c.bar {
                    c.push(s, i as u32);
                }
            }
            let kept = c.into_indices();
            let mut ranked: Vec<(u16, u32)> =
                sums.iter().enumerate().map(|(i, &s)| (s, i as u32)).collect();
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i) in ranked.iter().take(keep) {
                prop_assert!(kept.binary_search(&i).is_ok());
            }
            prop_assert!(kept.len() < 2 * keep);
        }
    }

    #[test]
    fn the_largest_sums_fit() {
        let cols = columns(1024);
        let luts = vec![255u8; cols * CENTROIDS];
        let codes = vec![0xA5u8; cols * COLUMN_BYTES];
        let mut got = [0u16; BLOCK_ITEMS];
        let base = coarse_units_max(cols) as u16;
        assert!(kernels::fast_scan_block(
            &luts,
            &codes,
            base,
            u16::MAX,
            &mut got
        ));
        assert!(got.iter().all(|&s| s == u16::MAX));
    }

    /// Two well-separated groups of items: each cluster's run of blocks holds exactly its
    /// items, every item has one slot, and the approximate scores find the exact best item.
    #[test]
    fn encoding_groups_items_and_ranks_like_the_rows() {
        let stride = 16;
        let n = 300;
        let mut rng = crate::math::SplitMix64::new(5);
        let rows: Vec<f32> = (0..n * stride)
            .map(|x| if (x / stride) % 2 == 0 { 3.0 } else { -3.0 } + 0.3 * rng.approx_normal())
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| 0.01 * (i % 7) as f32).collect();
        let model = train::Model::train(&rows, &bias, stride, n);
        assert_eq!(model.codebook.len(), codebook_len(stride));
        let k = model.centroid_scales.len();
        assert_eq!(k, train::clusters(n));
        let enc = model.encode(&rows, &bias);
        assert_eq!(enc.lists.len(), 2 * k);
        let blocks = enc.slots.len() / BLOCK_ITEMS;
        assert_eq!(enc.codes.len(), blocks * block_bytes(stride));
        let mut seen = vec![0; n];
        for &slot in enc.slots.iter().filter(|&&s| s != EMPTY_SLOT) {
            seen[slot as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1));
        let mut next = 0;
        for list in enc.lists.chunks_exact(2) {
            assert_eq!(list[0], next);
            next += list[1];
        }
        assert_eq!(next as usize, blocks);

        let query: Vec<f32> = (0..stride).map(|d| 1.0 + 0.1 * d as f32).collect();
        let coarse: Vec<f32> = model
            .centroids
            .chunks_exact(stride)
            .zip(&model.centroid_scales)
            .map(|(c, s)| {
                c.iter()
                    .zip(&query)
                    .map(|(&x, q)| f32::from(x) * s * q)
                    .sum()
            })
            .collect();
        let luts = Luts::new(&query, &model.codebook, &coarse, stride).unwrap();
        let mut best = (0u16, 0u32);
        for (cluster, list) in enc.lists.chunks_exact(2).enumerate() {
            for b in list[0]..list[0] + list[1] {
                let b = b as usize;
                let mut sums = [0u16; BLOCK_ITEMS];
                let codes = &enc.codes[b * block_bytes(stride)..(b + 1) * block_bytes(stride)];
                kernels::fast_scan_block(&luts.bytes, codes, luts.coarse[cluster], 0, &mut sums);
                for (j, &s) in sums.iter().enumerate() {
                    let slot = enc.slots[b * BLOCK_ITEMS + j];
                    if slot != EMPTY_SLOT && s > best.0 {
                        best = (s, slot);
                    }
                }
            }
        }
        let exact = |i: usize| -> f32 {
            rows[i * stride..(i + 1) * stride]
                .iter()
                .zip(&query)
                .map(|(a, b)| a * b)
                .sum::<f32>()
                + bias[i]
        };
        let best_exact = (0..n)
            .max_by(|&a, &b| exact(a).total_cmp(&exact(b)))
            .unwrap();
        // The approximate winner is in the right group, and close to the best exact score.
        assert_eq!(best.1 % 2, 0);
        assert!(exact(best.1 as usize) > 0.9 * exact(best_exact));
    }

    #[test]
    fn flat_tables_decline() {
        let stride = 16;
        let codebook = vec![0.0; codebook_len(stride)];
        assert_eq!(Luts::new(&[1.0; 16], &codebook, &[0.0; 4], stride), None);
        let mut nan = vec![1.0; codebook_len(stride)];
        nan[3] = f32::NAN;
        assert_eq!(Luts::new(&[1.0; 16], &nan, &[0.0, 1.0], stride), None);
        assert_eq!(Luts::new(&[1.0; 16], &nan, &[f32::NAN], stride), None);
    }
}
