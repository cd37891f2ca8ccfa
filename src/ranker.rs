//! The ranker: one request's pass over a model. It builds the query from the session and the
//! context, gathers the sparse boosts (sequence tables, trend), runs the fused scan over every
//! shard's rows, merges the boosted items exactly, and selects `k` (by score, or by diversity
//! and exploration). [`crate::Engine`] owns the model; a `Ranker` borrows it for one request.

use crate::coarse::CoarseQuery;
use crate::context::Context;
use crate::engine::{Engine, Exploration, MissingPages, Pages, Recommendation, Request, MAX_POOL};
use crate::first_pass;
use crate::format::{profile_bucket, Dtype, Meta, Profile, PROFILE_FIELDS};
use crate::hash::item_key;
use crate::kernels::{self, i8_score};
use crate::math::{exp, SplitMix64};
use crate::session::{EventType, Session};
use crate::shard::{GlobalTables, Rows, Shard, ShardView};
use crate::topk::TopK;

/// Rows per kernel call: the dot products of a block stay in L1 while selection reads them.
const BLOCK_ROWS: usize = 256;

/// The query in the form the kernels take.
enum Query {
    I8 { q: Vec<i16>, scale: f32 },
    Float { q: Vec<f32> },
}

/// Borrowed views of every shard of a model, for one request.
pub(crate) struct Ranker<'a> {
    engine: &'a Engine,
    /// The whole shards, or a paged model's index shards.
    views: Vec<ShardView<'a>>,
    /// A paged model's loaded pages, by page number (increasing): built when a request first
    /// reads item data, not for lookups.
    pages: core::cell::OnceCell<Vec<(u32, ShardView<'a>)>>,
    /// The pages this request wanted and the engine does not hold, as it found them.
    missing: core::cell::RefCell<Vec<u32>>,
}

/// A session item the model knows.
struct Known {
    index: u32,
    kind: EventType,
    ts: u64,
}

impl<'a> Ranker<'a> {
    pub(crate) fn new(engine: &'a Engine) -> Ranker<'a> {
        Ranker {
            engine,
            views: engine.shards.iter().map(Shard::view).collect(),
            pages: core::cell::OnceCell::new(),
            missing: core::cell::RefCell::new(Vec::new()),
        }
    }

    /// The view holding item `index`'s ids, rows, bias and sequence tables, and the item's
    /// place in it. An item of a page not loaded has none: its page is noted as missing.
    fn item(&self, index: u32) -> Option<(&ShardView<'a>, usize)> {
        let Some(pages) = &self.engine.pages else {
            let (s, local) = self.engine.locate(index)?;
            return Some((&self.views[s], local));
        };
        if index >= self.meta().total_items {
            return None;
        }
        self.paged_item(pages, index)
            .map_err(|p| self.missing.borrow_mut().push(p))
            .ok()
    }

    /// A paged model's item (below the item count): the view of its loaded page and its place
    /// there, or the number of its page when that is not loaded.
    fn paged_item(&self, pages: &Pages, index: u32) -> Result<(&ShardView<'a>, usize), u32> {
        let (p, local) = pages.locate(index);
        let loaded = self.loaded_pages();
        match loaded.binary_search_by_key(&p, |e| e.0) {
            Ok(at) => Ok((&loaded[at].1, local)),
            Err(_) => Err(p),
        }
    }

    /// Views of a paged model's loaded pages, by page number.
    fn loaded_pages(&self) -> &[(u32, ShardView<'a>)] {
        let engine = self.engine;
        self.pages.get_or_init(|| {
            engine.pages.as_ref().map_or(Vec::new(), |p| {
                p.loaded.iter().map(|(&n, page)| (n, page.view())).collect()
            })
        })
    }

    /// Ranks, or names the pages the request needs that the engine does not hold (see
    /// [`Engine::try_recommend`]).
    pub(crate) fn try_recommend(
        &self,
        session: &Session,
        request: &Request,
    ) -> Result<Vec<Recommendation>, MissingPages> {
        let Some(pages) = &self.engine.pages else {
            return Ok(self.recommend(session, request));
        };
        // The session's items first: until their rows are in, the query (and so which items
        // the first pass keeps) is not the request's.
        let mut missing: Vec<u32> = self
            .known_items(session)
            .iter()
            .filter_map(|k| self.paged_item(pages, k.index).err())
            .collect();
        if missing.is_empty() {
            let ranked = self.recommend(session, request);
            missing = self.missing.take();
            if missing.is_empty() {
                return Ok(ranked);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        Err(MissingPages(missing))
    }

    /// The query vector for this session and context (see [`Engine::query_vector`]).
    pub(crate) fn query_vector(&self, session: &Session, context: &Context) -> Vec<f32> {
        let known = self.known_items(session);
        self.query(&known, context, &self.profile(known.len()))
    }

    /// What a request ranks with: the session's items the model knows, the quantized query of
    /// their profile, and the sparse boosts (sorted by item).
    fn query_and_boosts(
        &self,
        session: &Session,
        request: &Request,
    ) -> (Vec<Known>, Query, Vec<(u32, f32)>) {
        let known = self.known_items(session);
        let profile = self.profile(known.len());
        let query = self.quantize(&self.query(&known, &request.context, &profile));
        let boosts = self.boosts(&known, &profile, request.context.ts);
        (known, query, boosts)
    }

    /// What a request's exact scoring reads beside the first pass: the items the first pass
    /// keeps (`None` when the scan is exact) and the boosted items scored one by one. No
    /// exclusions or filters are applied to either; for measuring (`Engine::first_pass_reads`).
    pub(crate) fn first_pass_reads(
        &self,
        session: &Session,
        request: &Request,
    ) -> Option<(Vec<u32>, Vec<u32>)> {
        let (_, query, boosts) = self.query_and_boosts(session, request);
        let candidates = self.first_pass(&query, &[], &|_| true, request.k)?;
        Some((candidates, boosts.iter().map(|b| b.0).collect()))
    }

    /// Ranks items for a session and request (see [`Engine::recommend`]).
    pub(crate) fn recommend(&self, session: &Session, request: &Request) -> Vec<Recommendation> {
        let (known, query, boosts) = self.query_and_boosts(session, request);

        let mut excluded: Vec<u32> = known.iter().map(|k| k.index).collect();
        excluded.extend(
            request
                .exclude
                .iter()
                .filter_map(|id| self.find_key(item_key(id))),
        );
        excluded.sort_unstable();
        excluded.dedup();
        // Boosted items are scored with their boost: added in the scan's blocks where it scores
        // every row exactly, or else skipped there and scored one by one afterwards (a pass
        // that bounds or codes rows without the boost could drop them). The trend can boost
        // most of a catalog, and then the one-by-one scoring costs more than the scan.
        let fused = self.scans_every_row(&query);
        // The boosts are sorted by item, one entry each (and may be thousands with the trend
        // on), so the scan's skip list is a merge of two sorted lists, not another sort.
        let union;
        let skip: &[u32] = if fused {
            &excluded
        } else {
            union = sorted_union(&excluded, boosts.iter().map(|b| b.0));
            &union
        };

        let k = request.k.min(self.meta().total_items as usize);
        let selecting = request.diversity > 0.0 || request.exploration != Exploration::Off;
        let pool = if selecting {
            let wanted = if request.pool > 0 {
                request.pool
            } else {
                (4 * k).max(k + 20)
            };
            wanted.min(MAX_POOL).max(k)
        } else {
            k
        };
        let (allow, deny) = (request.allow_categories, request.deny_categories);
        let filter = |index: u32| {
            if allow == 0 && deny == 0 {
                return true;
            }
            let cats = self.categories(index);
            (allow == 0 || cats & allow != 0) && cats & deny == 0
        };
        let mut top = TopK::new(pool);
        if fused {
            self.scan(&query, skip, &boosts, &filter, &mut top);
        } else {
            self.scan(&query, skip, &[], &filter, &mut top);
            for &(index, boost) in &boosts {
                if excluded.binary_search(&index).is_err() && filter(index) {
                    top.push(self.dense_score(&query, index) + boost, index);
                }
            }
        }
        let candidates = top.into_sorted();
        if !selecting {
            return candidates
                .into_iter()
                .take(k)
                .map(|(score, index)| Recommendation {
                    index,
                    score,
                    propensity: None,
                })
                .collect();
        }
        self.select(candidates, k, request)
    }

    fn meta(&self) -> &Meta {
        &self.engine.meta
    }

    fn global(&self) -> &GlobalTables<'a> {
        &self.views[0].global
    }

    pub(crate) fn find_key(&self, key: u64) -> Option<u32> {
        let Some(pages) = &self.engine.pages else {
            return self
                .views
                .iter()
                .zip(&self.engine.starts)
                .find_map(|(v, &start)| v.find_key(key).map(|local| start + local));
        };
        // A paged index holds keys without ids: an item whose page is loaded is checked against
        // its id, as whole shards check theirs; one whose page is not is taken at the index's
        // word until its page comes (`Engine::try_recommend` asks for the session's pages
        // before it ranks, so every item a ranking uses has been checked).
        let index = self.index_key_lookup(key)?;
        let (p, local) = pages.locate(index);
        match pages.loaded.get(&p) {
            Some(page) => {
                let id = page.view().ids.bytes(local);
                (crate::hash::item_key_of_bytes(id) == key).then_some(index)
            }
            None => Some(index),
        }
    }

    /// The item the index shards give `key`, without checking it against an id.
    pub(crate) fn index_key_lookup(&self, key: u64) -> Option<u32> {
        self.views
            .iter()
            .zip(&self.engine.starts)
            .find_map(|(v, &start)| {
                let pos = v.keys_sorted.binary_search(&key).ok()?;
                let local = v.keys_order.get(pos)?;
                (local < v.header.item_count).then_some(start + local)
            })
    }

    pub(crate) fn categories(&self, index: u32) -> u64 {
        self.engine
            .locate(index)
            .and_then(|(s, local)| self.views[s].categories.and_then(|c| c.get(local).copied()))
            .unwrap_or(0)
    }

    pub(crate) fn dequantize(&self, index: u32, out: &mut [f32]) {
        out.iter_mut().for_each(|x| *x = 0.0);
        let Some((view, local)) = self.item(index) else {
            return;
        };
        let dim = self.meta().dim as usize;
        let stride = self.meta().row_stride() as usize;
        let base = local * stride;
        match view.rows {
            Rows::I8 { rows, scales } => {
                let scale = scales.get(local).copied().unwrap_or(0.0);
                for (o, &r) in out
                    .iter_mut()
                    .zip(rows.get(base..base + dim).unwrap_or(&[]))
                {
                    *o = f32::from(r) * scale;
                }
            }
            Rows::F32 { rows } => {
                for (o, &r) in out
                    .iter_mut()
                    .zip(rows.get(base..base + dim).unwrap_or(&[]))
                {
                    *o = r;
                }
            }
            Rows::F16 { rows } => {
                for (o, &r) in out
                    .iter_mut()
                    .zip(rows.get(base..base + dim).unwrap_or(&[]))
                {
                    *o = half::f16::from_bits(r).to_f32();
                }
            }
        }
    }

    /// The session's items present in the model, newest first.
    fn known_items(&self, session: &Session) -> Vec<Known> {
        session
            .events()
            .iter()
            .rev()
            .filter_map(|e| {
                self.find_key(e.key).map(|index| Known {
                    index,
                    kind: e.kind,
                    ts: e.ts,
                })
            })
            .collect()
    }

    pub(crate) fn profile(&self, known_clicks: usize) -> Profile {
        let bucket = profile_bucket(known_clicks);
        if let Some(profiles) = &self.engine.profiles {
            return profiles[bucket];
        }
        let at = bucket * PROFILE_FIELDS;
        let mut profile = self
            .global()
            .profiles
            .and_then(|p| p.get(at..at + PROFILE_FIELDS))
            .map_or(Profile::NEUTRAL, Profile::from_slice);
        profile.encoder = self
            .engine
            .encoder
            .as_ref()
            .map_or(0.0, |e| e.bucket_weight(bucket));
        profile
    }

    fn query(&self, known: &[Known], context: &Context, profile: &Profile) -> Vec<f32> {
        let meta = self.meta();
        let dim = meta.dim as usize;
        let now = context
            .ts
            .map(|t| t.max(0) as u64)
            .or_else(|| known.first().map(|k| k.ts));
        let mut s = vec![0.0f32; dim];
        let mut row = vec![0.0f32; dim];
        let mut weight_sum = 0.0f32;
        let weights = meta.session_weights(known.iter().map(|k| (k.kind, k.ts)), now);
        for (item, w) in known.iter().zip(weights) {
            if w <= 0.0 {
                continue;
            }
            self.dequantize(item.index, &mut row);
            for (a, &x) in s.iter_mut().zip(&row) {
                *a += w * x;
            }
            weight_sum += w;
        }
        if weight_sum > 0.0 {
            s.iter_mut().for_each(|x| *x /= weight_sum);
        }
        let g = self.global();
        let mut q = match g.query_transform {
            Some(m) => (0..dim)
                .map(|i| {
                    let mut acc = 0.0f32;
                    for (&a, &b) in m[i * dim..(i + 1) * dim].iter().zip(&s) {
                        acc += a * b;
                    }
                    acc
                })
                .collect(),
            None => s,
        };
        let embed = meta.embed_weight * profile.embed;
        q.iter_mut().for_each(|x| *x *= embed);
        self.add_encoded(known, profile.encoder, &mut q);
        let context_weight = profile.context;
        let mut add = |table: Option<&[f32]>, row: Option<usize>| {
            if context_weight <= 0.0 {
                return;
            }
            if let (Some(t), Some(r)) = (table, row) {
                if let Some(v) = t.get(r * dim..(r + 1) * dim) {
                    q.iter_mut()
                        .zip(v)
                        .for_each(|(a, b)| *a += context_weight * b);
                }
            }
        };
        let rows = meta.context_rows(context);
        add(g.query_bias, Some(0));
        add(g.ctx_time, rows.time.map(usize::from));
        add(g.ctx_device, rows.device.map(usize::from));
        add(g.ctx_geo, rows.geo.map(|b| b as usize));
        q
    }

    /// Adds `weight ×` the session encoder's output for the latest known items to `q`.
    fn add_encoded(&self, known: &[Known], weight: f32, q: &mut [f32]) {
        let Some(encoder) = &self.engine.encoder else {
            return;
        };
        if weight <= 0.0 || known.is_empty() {
            return;
        }
        let dim = self.meta().dim as usize;
        let n = known.len().min(encoder.shape().positions as usize);
        let mut rows = vec![0.0f32; n * dim];
        for (item, row) in known.iter().zip(rows.chunks_exact_mut(dim)) {
            self.dequantize(item.index, row);
        }
        let kinds: Vec<EventType> = known[..n].iter().map(|k| k.kind).collect();
        let mut encoded = vec![0.0f32; dim];
        encoder.encode(&rows, &kinds, &mut encoded);
        for (a, &e) in q.iter_mut().zip(&encoded) {
            *a += weight * e;
        }
    }

    fn quantize(&self, q: &[f32]) -> Query {
        let stride = self.meta().row_stride() as usize;
        match self.meta().dtype {
            Dtype::F16 | Dtype::F32 => {
                let mut v = q.to_vec();
                v.resize(stride, 0.0);
                Query::Float { q: v }
            }
            Dtype::I8 => {
                // Largest |q| such that 127 · qmax · stride stays below 2^31: no i32 overflow.
                let qmax = (i32::MAX as f32 / (127.0 * stride as f32))
                    .floor()
                    .min(32767.0);
                let max_abs = q.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let scale = if max_abs > 0.0 && max_abs.is_finite() {
                    max_abs / qmax
                } else {
                    0.0
                };
                let mut v: Vec<i16> = q
                    .iter()
                    .map(|&x| {
                        if scale > 0.0 {
                            (x / scale).round().clamp(-qmax, qmax) as i16
                        } else {
                            0
                        }
                    })
                    .collect();
                v.resize(stride, 0);
                Query::I8 { q: v, scale }
            }
        }
    }

    /// Non-negative sparse boosts: the sequence tables of the latest session items and the
    /// trend of the window before `ts`, merged per item.
    fn boosts(&self, known: &[Known], profile: &Profile, ts: Option<i64>) -> Vec<(u32, f32)> {
        let meta = self.meta();
        let mut out: Vec<(u32, f32)> = Vec::new();
        let table_weight = [profile.neighbours, profile.transitions];
        for (position, item) in known.iter().take(meta.seq_len as usize).enumerate() {
            let Some((view, local)) = self.item(item.index) else {
                continue;
            };
            let tables = view.seq.iter().zip(&meta.seq_weights);
            for ((table, position_weights), scale) in tables.zip(table_weight) {
                let w = position_weights[position] * scale;
                let Some(table) = table else {
                    continue;
                };
                if w <= 0.0 {
                    continue;
                }
                table.extend_scaled(local, w, &mut out);
            }
        }
        let mut merged = self.with_trend(ts, profile.trend, sum_by_item(out));
        merged.retain(|e| e.1 > 0.0);
        merged
    }

    /// Adds `weight × count / max count` to the summed sequence boosts `seq` (sorted by item,
    /// one entry each) for every item counted in the trend window before `ts` (the end of the
    /// model's data when `ts` is absent or later). The trend shares are already sorted by item,
    /// so this is a linear merge rather than a sort of the (often thousand-entry) trend, and each
    /// item's trend is added after its sequence boosts, the order the sums always had.
    fn with_trend(&self, ts: Option<i64>, weight: f32, seq: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
        let window = trend_window(self.meta(), ts);
        if weight <= 0.0 || window.is_empty() {
            return seq;
        }
        let (latest_window, latest) = &self.engine.latest_trend;
        let computed;
        let shares = if *latest_window == window {
            latest
        } else if let Some(memo) = self.engine.trend_memo.get(&(window.start, window.end)) {
            memo
        } else {
            computed = self.trend_shares(window);
            &computed
        };
        merge_trend(&seq, shares, weight)
    }

    /// Each item's count over the trend buckets `window`, divided by the largest such count.
    pub(crate) fn trend_shares(&self, window: core::ops::Range<usize>) -> Vec<(u32, f32)> {
        let Some(table) = self.global().trend else {
            return Vec::new();
        };
        let (items, counts) = table.buckets(window.start, window.end);
        let mut merged = sum_counts(items, counts, self.meta().total_items as usize);
        let max = merged.iter().fold(0.0f32, |m, e| m.max(e.1));
        if max <= 0.0 {
            return Vec::new();
        }
        merged.iter_mut().for_each(|e| e.1 /= max);
        merged.retain(|e| e.1 > 0.0);
        merged
    }

    /// Every item's score (see [`Engine::scores`]), by global index.
    pub(crate) fn scores(&self, session: &Session, request: &Request) -> Vec<f32> {
        let (_, query, boosts) = self.query_and_boosts(session, request);
        let mut out: Vec<f32> = (0..self.meta().total_items)
            .map(|i| self.dense_score(&query, i))
            .collect();
        for (index, boost) in boosts {
            if let Some(s) = out.get_mut(index as usize) {
                *s += boost;
            }
        }
        out
    }

    fn dense_score(&self, query: &Query, index: u32) -> f32 {
        let Some((view, local)) = self.item(index) else {
            return f32::NEG_INFINITY;
        };
        let stride = self.meta().row_stride() as usize;
        let bias = view.bias.get(local).copied().unwrap_or(0.0);
        let range = local * stride..(local + 1) * stride;
        match (query, view.rows) {
            (Query::I8 { q, scale }, Rows::I8 { rows, scales }) => {
                let mut dot = [0i32; 1];
                kernels::dot_i8_block(q, rows.get(range).unwrap_or(&[]), stride, &mut dot);
                i8_score(
                    dot[0],
                    *scale,
                    scales.get(local).copied().unwrap_or(0.0),
                    bias,
                )
            }
            (Query::Float { q }, rows @ (Rows::F16 { .. } | Rows::F32 { .. })) => {
                let mut dot = [0f32; 1];
                float_dots(q, rows, range, stride, &mut dot);
                dot[0] + bias
            }
            _ => f32::NEG_INFINITY,
        }
    }

    /// The fused scan: per block of rows, the kernel's dot products become scores in a
    /// branch-free (vectorisable) loop, then a plain comparison against the cached heap
    /// threshold lets the rare winners through to the exclusion test, the filter and the heap.
    /// Where the engine keeps row bounds (`crate::coarse`), int8 blocks first go through the
    /// coarse kernel, and only rows whose score bound beats the threshold are scored exactly.
    ///
    /// `boosts` (sorted by item) are added to their rows' scores in the blocks; only a scan
    /// that scores every row exactly may be given any ([`Self::scans_every_row`]).
    fn scan(
        &self,
        query: &Query,
        skip: &[u32],
        boosts: &[(u32, f32)],
        filter: &dyn Fn(u32) -> bool,
        top: &mut TopK,
    ) {
        debug_assert!(boosts.is_empty() || self.scans_every_row(query));
        let mut boosts = boosts;
        let stride = self.meta().row_stride() as usize;
        let mut offer = Offer {
            threshold: top.threshold(),
            skip,
            filter,
        };
        if let Some(candidates) = self.first_pass(query, skip, filter, top.capacity()) {
            // Scored as single items are: the row kernel and `i8_score`, as in every scan.
            for index in candidates {
                offer.one(self.dense_score(query, index), index, top);
            }
            return;
        }
        let mut scores = [0f32; BLOCK_ROWS];
        let coarse_query = match query {
            Query::I8 { q, .. } if !self.engine.row_bounds.is_empty() => {
                CoarseQuery::new(q, stride)
            }
            _ => None,
        };
        for (s, view, start) in self.row_sources() {
            let n = view.header.item_count as usize;
            match (query, view.rows) {
                (Query::I8 { q, scale }, Rows::I8 { rows, scales }) => {
                    let bounds = s
                        .and_then(|s| self.engine.row_bounds.get(s))
                        .and_then(Option::as_ref);
                    if let Some((bounds, cq)) = bounds.zip(coarse_query.as_ref()) {
                        // The fused coarse kernel needs no score buffer: one call per shard.
                        let shard_rows = kernels::CoarseRows {
                            rows,
                            sum: &bounds.sum,
                            l1: &bounds.l1,
                            row_scales: scales,
                            bias: view.bias,
                        };
                        let threshold = offer.threshold;
                        // The rows whose bound passes are scored as single items are.
                        let mut exact = |j: usize| {
                            let index = start + j as u32;
                            offer.one(self.dense_score(query, index), index, top);
                            offer.threshold
                        };
                        kernels::coarse_candidates(
                            cq,
                            *scale,
                            &shard_rows,
                            stride,
                            threshold,
                            &mut exact,
                        );
                        continue;
                    }
                    let mut dots = [0i32; BLOCK_ROWS];
                    for b in (0..n).step_by(BLOCK_ROWS) {
                        let m = BLOCK_ROWS.min(n - b);
                        let block = rows.get(b * stride..(b + m) * stride).unwrap_or(&[]);
                        let (Some(row_scales), Some(row_bias)) =
                            (scales.get(b..b + m), view.bias.get(b..b + m))
                        else {
                            continue;
                        };
                        kernels::dot_i8_block(q, block, stride, &mut dots[..m]);
                        // Equal-length slices and an index loop: no bounds checks, so the
                        // compiler vectorises the conversion (same IEEE operations per lane).
                        let (out, dots) = (&mut scores[..m], &dots[..m]);
                        for j in 0..m {
                            out[j] = i8_score(dots[j], *scale, row_scales[j], row_bias[j]);
                        }
                        add_boosts(out, start + b as u32, &mut boosts);
                        offer.block(out, start + b as u32, top);
                    }
                }
                (Query::Float { q }, rows @ (Rows::F16 { .. } | Rows::F32 { .. })) => {
                    let mut dots = [0f32; BLOCK_ROWS];
                    for b in (0..n).step_by(BLOCK_ROWS) {
                        let m = BLOCK_ROWS.min(n - b);
                        float_dots(
                            q,
                            rows,
                            b * stride..(b + m) * stride,
                            stride,
                            &mut dots[..m],
                        );
                        let row_bias = view.bias.get(b..b + m).unwrap_or(&[]);
                        for ((s, &dot), &bias) in scores.iter_mut().zip(&dots[..m]).zip(row_bias) {
                            *s = dot + bias;
                        }
                        add_boosts(&mut scores[..m], start + b as u32, &mut boosts);
                        offer.block(&scores[..m], start + b as u32, top);
                    }
                }
                _ => {}
            }
        }
    }

    /// What the exact scan reads, in item order: every whole shard (with its position, for its
    /// row bounds), or a paged model's loaded pages, noting every other page as missing.
    fn row_sources(&self) -> Vec<(Option<usize>, &ShardView<'a>, u32)> {
        let Some(pages) = &self.engine.pages else {
            return self
                .views
                .iter()
                .zip(&self.engine.starts)
                .enumerate()
                .map(|(s, (v, &start))| (Some(s), v, start))
                .collect();
        };
        let count = self.engine.page_count() as u32;
        self.missing
            .borrow_mut()
            .extend((0..count).filter(|p| !pages.loaded.contains_key(p)));
        self.loaded_pages()
            .iter()
            .map(|(p, v)| (None, v, pages.starts[*p as usize]))
            .collect()
    }

    /// Whether [`Self::scan`] scores every row exactly, block by block, for this query: no
    /// first pass and no coarse bounds (int8), or a float query (neither applies).
    fn scans_every_row(&self, query: &Query) -> bool {
        match query {
            Query::I8 { .. } => {
                self.engine.first_pass.is_none() && self.engine.row_bounds.is_empty()
            }
            Query::Float { .. } => true,
        }
    }

    /// The two-stage scan's first pass (`crate::first_pass`): the items to score exactly, in
    /// index order, or `None` when the engine scans exactly (pass off, a float query, or tables
    /// that cannot tell items apart). Items the request skips or filters out are left out
    /// here, so a narrow filter still gets its best items scored.
    fn first_pass(
        &self,
        query: &Query,
        skip: &[u32],
        filter: &dyn Fn(u32) -> bool,
        wanted: usize,
    ) -> Option<Vec<u32>> {
        let keep = self.engine.first_pass?;
        let Query::I8 { q, scale } = query else {
            return None;
        };
        let stride = self.meta().row_stride() as usize;
        // Every shard carries the same centroids and codebook (checked at load).
        let model = self.views.first()?.first_pass?;
        let clusters = model.centroid_scales.len();
        let mut dots = vec![0i32; clusters];
        kernels::dot_i8_block(q, model.centroids, stride, &mut dots);
        let coarse: Vec<f32> = dots
            .iter()
            .zip(model.centroid_scales)
            .map(|(&d, &s)| i8_score(d, *scale, s, 0.0))
            .collect();
        let query: Vec<f32> = q.iter().map(|&x| f32::from(x) * scale).collect();
        let luts = first_pass::Luts::new(&query, model.codebook, &coarse, stride)?;
        // Best coarse score first (ties to the lower cluster), so the bar rises early and the
        // clusters that cannot reach it end the pass. The keys are distinct, so an unstable
        // sort gives that one order (and is the cheaper sort: 2.6% of a 1M ranking stably).
        let mut order: Vec<u32> = (0..clusters as u32).collect();
        order.sort_unstable_by_key(|&k| (core::cmp::Reverse(luts.coarse[k as usize]), k));
        let block_bytes = first_pass::block_bytes(stride);
        let mut candidates = first_pass::Candidates::new(keep.max(8 * wanted));
        let mut sums = [0u16; first_pass::BLOCK_ITEMS];
        for k in order {
            let base = luts.coarse[k as usize];
            if u32::from(base) + u32::from(luts.max_residual) < u32::from(candidates.bar) {
                break;
            }
            for (view, &start) in self.views.iter().zip(&self.engine.starts) {
                let shard = view.first_pass?;
                let list = shard.lists.get(2 * k as usize..2 * k as usize + 2)?;
                let first = list[0] as usize;
                for r in 0..list[1] as usize {
                    let b = first + r;
                    let codes = shard.codes.get(b * block_bytes..(b + 1) * block_bytes)?;
                    if !kernels::fast_scan_block(
                        &luts.bytes,
                        codes,
                        base,
                        candidates.bar,
                        &mut sums,
                    ) {
                        continue;
                    }
                    for (j, &sum) in sums.iter().enumerate() {
                        if sum < candidates.bar {
                            continue;
                        }
                        let Some(local) = shard.members.item(k as usize, first, r, j) else {
                            continue;
                        };
                        let index = start + local;
                        if skip.binary_search(&index).is_err() && filter(index) {
                            candidates.push(sum, index);
                        }
                    }
                }
            }
        }
        Some(candidates.into_indices())
    }

    /// Picks `k` of the candidates (best first) by MMR and/or exploration.
    /// The candidates' vectors scaled to unit length (for MMR's cosine similarities).
    fn unit_vectors(&self, candidates: &[(f32, u32)]) -> Vec<Vec<f32>> {
        let dim = self.meta().dim as usize;
        candidates
            .iter()
            .map(|c| {
                let mut v = vec![0.0; dim];
                self.dequantize(c.1, &mut v);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect()
    }

    fn select(
        &self,
        candidates: Vec<(f32, u32)>,
        k: usize,
        request: &Request,
    ) -> Vec<Recommendation> {
        let k = k.min(candidates.len());
        let n = candidates.len();
        if n == 0 {
            return Vec::new();
        }
        let (hi, lo) = (candidates[0].0, candidates[n - 1].0);
        let relevance: Vec<f32> = candidates
            .iter()
            .map(|c| if hi > lo { (c.0 - lo) / (hi - lo) } else { 1.0 })
            .collect();
        let lambda = request.diversity.clamp(0.0, 1.0);
        let unit = if lambda > 0.0 {
            self.unit_vectors(&candidates)
        } else {
            Vec::new()
        };
        let mut max_sim = vec![0.0f32; n];
        let mut remaining: Vec<usize> = (0..n).collect();
        let mut rng = match request.exploration {
            Exploration::Epsilon { seed, .. } | Exploration::Softmax { seed, .. } => {
                SplitMix64::new(seed)
            }
            Exploration::Off => SplitMix64::new(0),
        };
        let mut out = Vec::with_capacity(k);
        while out.len() < k && !remaining.is_empty() {
            let objectives: Vec<f32> = remaining
                .iter()
                .map(|&i| (1.0 - lambda) * relevance[i] - lambda * max_sim[i])
                .collect();
            let (pos, propensity) = draw(request.exploration, &objectives, &mut rng);
            let chosen = remaining.remove(pos);
            if lambda > 0.0 {
                for &i in &remaining {
                    let sim: f32 = unit[i].iter().zip(&unit[chosen]).map(|(a, b)| a * b).sum();
                    max_sim[i] = if out.is_empty() {
                        sim
                    } else {
                        max_sim[i].max(sim)
                    };
                }
            }
            out.push(Recommendation {
                index: candidates[chosen].1,
                score: candidates[chosen].0,
                propensity,
            });
        }
        out
    }
}

/// Picks one of the remaining candidates by their objectives: the best (the first of equals),
/// or under exploration a draw, reported with the probability it had.
fn draw(
    exploration: Exploration,
    objectives: &[f32],
    rng: &mut SplitMix64,
) -> (usize, Option<f32>) {
    let mut best = 0;
    for (pos, &o) in objectives.iter().enumerate() {
        if o > objectives[best] {
            best = pos;
        }
    }
    let r = objectives.len();
    match exploration {
        Exploration::Off => (best, None),
        Exploration::Epsilon { epsilon, .. } => {
            let eps = epsilon.clamp(0.0, 1.0);
            let pos = if rng.next_f32() < eps {
                rng.below(r)
            } else {
                best
            };
            let p = eps / r as f32 + if pos == best { 1.0 - eps } else { 0.0 };
            (pos, Some(p))
        }
        Exploration::Softmax { temperature, .. } => {
            let t = if temperature > 0.0 && temperature.is_finite() {
                temperature
            } else {
                1e-3
            };
            let top = objectives[best];
            let weights: Vec<f32> = objectives.iter().map(|&o| exp((o - top) / t)).collect();
            let total: f32 = weights.iter().sum();
            let mut u = rng.next_f32() * total;
            let mut pos = r - 1;
            for (p, w) in weights.iter().enumerate() {
                if u < *w {
                    pos = p;
                    break;
                }
                u -= w;
            }
            (pos, Some(weights[pos] / total))
        }
    }
}

/// Float dot products of `q` with the float rows in element range `range` (f16 or f32).
fn float_dots(
    q: &[f32],
    rows: Rows<'_>,
    range: core::ops::Range<usize>,
    stride: usize,
    out: &mut [f32],
) {
    match rows {
        Rows::F16 { rows } => {
            kernels::dot_f16_block(q, rows.get(range).unwrap_or(&[]), stride, out)
        }
        Rows::F32 { rows } => {
            kernels::dot_f32_block(q, rows.get(range).unwrap_or(&[]), stride, out)
        }
        Rows::I8 { .. } => out.fill(f32::NEG_INFINITY),
    }
}

/// The scan's gate to the heap: the cached threshold (scores at or below it cannot enter), the
/// items never to offer (sorted) and the request's filter.
struct Offer<'r> {
    threshold: f32,
    skip: &'r [u32],
    filter: &'r dyn Fn(u32) -> bool,
}

impl Offer<'_> {
    /// Offers item `index` with `score` if it beats the threshold.
    #[inline]
    fn one(&mut self, score: f32, index: u32, top: &mut TopK) {
        if score > self.threshold
            && self.skip.binary_search(&index).is_err()
            && (self.filter)(index)
        {
            top.push(score, index);
            self.threshold = top.threshold();
        }
    }

    /// Offers a block of consecutive items starting at `first`.
    #[inline]
    fn block(&mut self, scores: &[f32], first: u32, top: &mut TopK) {
        // Once the heap is full, almost no block holds a winner: a lane-wise maximum (which
        // the compiler vectorises) rules the whole block out in a few instructions.
        if block_max(scores) <= self.threshold {
            return;
        }
        for (j, &score) in scores.iter().enumerate() {
            self.one(score, first + j as u32, top);
        }
    }
}

/// The maximum of `scores` (−∞ when empty), over 8 independent lanes so it vectorises without
/// reassociating floating-point operations. NaN never wins, so a NaN score is never offered,
/// which matches `score > threshold` being false for NaN.
#[inline]
fn block_max(scores: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = scores.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    for &s in chunks.remainder() {
        lanes[0] = if s > lanes[0] { s } else { lanes[0] };
    }
    lanes
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `seq` (sorted by item, one entry each) plus `weight × share` of each trend entry (sorted by
/// item, one entry each): the sums `sum_by_item` gives for the two lists appended, in one pass.
fn merge_trend(seq: &[(u32, f32)], shares: &[(u32, f32)], weight: f32) -> Vec<(u32, f32)> {
    let mut out = Vec::with_capacity(seq.len() + shares.len());
    let (mut seq, mut shares) = (seq.iter().peekable(), shares.iter().peekable());
    loop {
        let next = match (seq.peek(), shares.peek()) {
            (Some(&&(a, x)), Some(&&(b, share))) if a == b => {
                seq.next();
                shares.next();
                (a, x + weight * share)
            }
            (Some(&&(a, x)), Some(&&(b, _))) if a < b => {
                seq.next();
                (a, x)
            }
            (_, Some(&&(b, share))) => {
                shares.next();
                (b, weight * share)
            }
            (Some(&&e), None) => {
                seq.next();
                e
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

/// [`sum_by_item`] of `items` zipped with `counts`, by dense accumulation when the items are
/// few enough for a table of all of them to cost less than sorting the entries (eval and
/// requests about a past time sum a month of buckets per request). Each item's counts are added
/// in their original order from 0, exactly as the stable sort adds them, so both paths give the
/// same bits.
fn sum_counts(items: &[u32], counts: &[f32], total_items: usize) -> Vec<(u32, f32)> {
    if total_items > DENSE_SUM_PER_ENTRY * items.len() {
        return sum_by_item(items.iter().copied().zip(counts.iter().copied()).collect());
    }
    let mut sums: Vec<Option<f32>> = vec![None; total_items];
    let mut touched: Vec<u32> = Vec::new();
    for (&g, &c) in items.iter().zip(counts) {
        match sums.get_mut(g as usize) {
            Some(Some(sum)) => *sum += c,
            Some(slot) => {
                *slot = Some(c);
                touched.push(g);
            }
            None => {}
        }
    }
    if touched.len() * TOUCHED_SORT_FRACTION < total_items {
        touched.sort_unstable();
        touched
            .into_iter()
            .filter_map(|g| Some((g, sums[g as usize]?)))
            .collect()
    } else {
        // Most items were touched: reading the table in order costs less than sorting them.
        (0u32..)
            .zip(sums)
            .filter_map(|(g, sum)| Some((g, sum?)))
            .collect()
    }
}

/// [`sum_counts`] sorts the touched items when fewer than one in this many were touched, and
/// otherwise reads its whole table in item order (the same list either way).
const TOUCHED_SORT_FRACTION: usize = 8;

/// The sorted, duplicate-free union of `a` (sorted, no duplicates) and `b` (the same).
fn sorted_union(a: &[u32], b: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.size_hint().0);
    let mut a = a.iter().copied().peekable();
    for y in b {
        while let Some(x) = a.next_if(|&x| x < y) {
            out.push(x);
        }
        a.next_if_eq(&y);
        out.push(y);
    }
    out.extend(a);
    out
}

/// Items per trend entry up to which [`sum_counts`] accumulates densely.
const DENSE_SUM_PER_ENTRY: usize = 16;

/// One entry per item with the sum of its values. The sort is stable, so each item's values are
/// added in their original order and the sums are the same on every platform.
fn sum_by_item(mut entries: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    entries.sort_by_key(|e| e.0);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(entries.len());
    for (g, v) in entries {
        match merged.last_mut() {
            Some(last) if last.0 == g => last.1 += v,
            _ => merged.push((g, v)),
        }
    }
    merged
}

/// Adds to `scores` (the rows from item `first` on) the boosts of those rows, taken from the
/// front of `boosts` (sorted by item); boosts of items before `first` are dropped (no row).
/// The sum is the one the boosted items' one-by-one scoring makes: the row's score plus its
/// boost.
fn add_boosts(scores: &mut [f32], first: u32, boosts: &mut &[(u32, f32)]) {
    let end = u64::from(first) + scores.len() as u64;
    while let Some((&(index, boost), rest)) = boosts.split_first() {
        if u64::from(index) >= end {
            break;
        }
        if let Some(score) = index
            .checked_sub(first)
            .and_then(|j| scores.get_mut(j as usize))
        {
            *score += boost;
        }
        *boosts = rest;
    }
}

/// The trend buckets of the window before `ts`: the last `⌈window / bucket⌉` buckets that ended
/// by `ts`, so no bucket reaches past the request's time (no look-ahead). A request after the
/// model's last bucket (or without a time) sees the window that ends with the model's data.
/// Empty without a trend table.
pub fn trend_window(meta: &Meta, ts: Option<i64>) -> core::ops::Range<usize> {
    if !meta.has_trend() {
        return 0..0;
    }
    // i128: `ts` comes from outside and may be anything; the meta was checked at load.
    let start = i128::from(meta.trend_start);
    let width = i128::from(meta.trend_bucket_s);
    let n = i128::from(meta.trend_buckets);
    let end = start + n * width;
    let now = ts.map_or(end, |t| i128::from(t).min(end));
    let hi = (now - start).div_euclid(width).clamp(0, n);
    let span = (i128::from(meta.trend_window_s) + width - 1) / width;
    let lo = (hi - span).clamp(0, n);
    lo as usize..hi as usize
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The dense path of `sum_counts` gives the stable sort's sums bit for bit.
        #[test]
        fn dense_and_sorted_sums_agree(
            total in 1u32..600,
            entries in prop::collection::vec((0u32..600, 0.0f32..1000.0), 0..400)
        ) {
            // Catalogs from much larger than the entries (the sort) to much smaller (the dense
            // table, its touched items sorted or read in order).
            let entries: Vec<(u32, f32)> = entries.into_iter().map(|(g, c)| (g % total, c)).collect();
            let (items, counts): (Vec<u32>, Vec<f32>) = entries.iter().copied().unzip();
            let sorted = sum_by_item(entries.clone());
            let dense = sum_counts(&items, &counts, total as usize);
            prop_assert_eq!(sorted.len(), dense.len());
            for (a, b) in sorted.iter().zip(&dense) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }

        /// The skip list's merge is the sorted set union.
        #[test]
        fn sorted_union_is_the_set_union(
            a in prop::collection::btree_set(0u32..300, 0..60),
            b in prop::collection::btree_set(0u32..300, 0..300),
        ) {
            let a_list: Vec<u32> = a.iter().copied().collect();
            let expected: Vec<u32> = a.union(&b).copied().collect();
            prop_assert_eq!(sorted_union(&a_list, b.iter().copied()), expected);
        }

        /// Merging the trend into the summed sequence boosts gives the sums of one stable sort
        /// of both lists appended, bit for bit.
        #[test]
        fn merged_trend_equals_one_sort_of_both(
            seq in prop::collection::vec((0u32..60, 0.0f32..10.0), 0..200),
            trend in prop::collection::vec((0u32..60, 0.0f32..1.0), 0..200),
            weight in 0.0f32..300.0,
        ) {
            let shares = sum_by_item(trend);
            let mut appended = seq.clone();
            appended.extend(shares.iter().map(|&(g, x)| (g, weight * x)));
            let expected = sum_by_item(appended);
            let merged = merge_trend(&sum_by_item(seq), &shares, weight);
            prop_assert_eq!(expected.len(), merged.len());
            for (a, b) in expected.iter().zip(&merged) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
    }
}
