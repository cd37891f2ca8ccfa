//! The engine: a validated model (one or more shards) and its public API, including the
//! ranking of its items for a session and a context (carried out by `ranker.rs`).
//!
//! Ranking, per request:
//! 1. the session's items that the model knows, newest first; their number picks the
//!    [`Profile`] (the weight of each signal for sessions of that length, chosen on validation
//!    data centrally; neutral for models without a profile table);
//! 2. the query `q = p.embed · embed_weight · T·s + p.context · (query_bias + ctx_time +
//!    ctx_device + ctx_geo)`, where `s` is the weighted mean of the session items' vectors
//!    (weights: event type × position decay^k × time decay);
//! 3. sparse boosts: for the latest `seq_len` items, their neighbour and transition lists,
//!    weighted per position (× `p.neighbours`, `p.transitions`), and the trend: each item's
//!    share of the interactions in the window before the request's time (× `p.trend`);
//! 4. one fused pass over all rows computing `q·row + bias (+ boost)` and keeping the best
//!    candidates. Where the pass scores every row exactly, boosts are added in its blocks;
//!    where a first pass or coarse bounds judge rows without their boosts, items with a boost
//!    are skipped there and scored exactly afterwards. Both yield the exact top-K of
//!    `q·row + bias + boost`;
//! 5. selection of `k` from the candidates: by score, or by maximal marginal relevance when
//!    `diversity > 0`, optionally with ε-greedy or softmax exploration that reports each item's
//!    propensity.
//!
//! Session items and the request's exclude list are never returned.

use crate::coarse::RowBounds;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::first_pass;
use crate::format::{Dtype, Meta, Profile, ShardRole, PROFILE_BUCKETS};
use crate::hash::item_key;
use crate::kernels;
use crate::ranker::Ranker;
use crate::session::Session;
use crate::shard::{Rows, Shard};
use std::collections::BTreeMap;

/// Most candidates diversity and exploration consider: their work grows with pool × k, so a
/// caller's pool (from JS, from a query string) is clamped here rather than trusted.
pub const MAX_POOL: usize = 1_000;

/// How to explore.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Exploration {
    /// Always the best remaining item.
    #[default]
    Off,
    /// With probability `epsilon`, a uniformly random remaining candidate.
    Epsilon { epsilon: f32, seed: u64 },
    /// A draw with probability ∝ exp(objective / temperature).
    Softmax { temperature: f32, seed: u64 },
}

/// What to rank, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// How many items to return.
    pub k: usize,
    /// Where, when and on what.
    pub context: Context,
    /// Item ids never to return (in addition to the session's items).
    pub exclude: Vec<String>,
    /// Return only items in at least one of these categories (bit set; 0 = no restriction).
    pub allow_categories: u64,
    /// Never return items in any of these categories (bit set).
    pub deny_categories: u64,
    /// Maximal-marginal-relevance weight in [0, 1]: 0 ranks by score alone.
    pub diversity: f32,
    /// Exploration policy.
    pub exploration: Exploration,
    /// Candidates considered by diversity and exploration (0 = automatic: max(4k, k + 20));
    /// at most [`MAX_POOL`] (or `k`, if larger).
    pub pool: usize,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            k: 10,
            context: Context::default(),
            exclude: Vec::new(),
            allow_categories: 0,
            deny_categories: 0,
            diversity: 0.0,
            exploration: Exploration::Off,
            pool: 0,
        }
    }
}

/// One ranked item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Global item index (see [`Engine::item_id`]).
    pub index: u32,
    /// The item's score (`q·row + bias + boost`).
    pub score: f32,
    /// Probability that the policy put this item in this slot (exploration only).
    pub propensity: Option<f32>,
}

/// A loaded model, ready to rank.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shards: Vec<Shard>,
    pub(crate) starts: Vec<u32>,
    pub(crate) meta: Meta,
    pub(crate) model_id: u64,
    /// The trend shares of the window that ends with the model's data, which is the window of
    /// every request made after the model was built: computed once at load, so the request path
    /// only copies them.
    pub(crate) latest_trend: (core::ops::Range<usize>, Vec<(u32, f32)>),
    /// Trend shares of earlier windows, by (first, end) bucket, kept by
    /// `memoize_trend_windows` for a tuner that ranks the same past requests many times.
    pub(crate) trend_memo: BTreeMap<(usize, usize), Vec<(u32, f32)>>,
    /// Per shard, the row sums and norms of the certified coarse pass (`crate::coarse`); empty
    /// when the pass is off (by default, builds without a fast coarse kernel).
    pub(crate) row_bounds: Vec<Option<RowBounds>>,
    /// How many items the two-stage scan's first pass (`crate::first_pass`) keeps for exact
    /// scoring, at least; `None` when the scan is exact (one stage).
    pub(crate) first_pass: Option<usize>,
    /// Per-length profiles that replace the shards' own (`set_profiles`); `None` reads the
    /// shards'.
    pub(crate) profiles: Option<[Profile; PROFILE_BUCKETS]>,
    /// A paged model's page table and the pages loaded so far; `None` for a model of whole
    /// shards (`shards` are then whole, else they are the model's index).
    pub(crate) pages: Option<Pages>,
    /// The session encoder (format 8), its weights widened once at load.
    pub(crate) encoder: Option<crate::encoder::Encoder>,
}

/// The pages of a paged model (`format::ShardRole`).
#[derive(Clone)]
pub(crate) struct Pages {
    /// The first item of each page, and the item count at the end.
    pub(crate) starts: Vec<u32>,
    pub(crate) loaded: BTreeMap<u32, Shard>,
}

impl Pages {
    /// The page holding item `index` (which must be below the item count).
    pub(crate) fn of(&self, index: u32) -> u32 {
        (self.starts.partition_point(|&s| s <= index) - 1) as u32
    }

    /// The page holding item `index` (below the item count) and the item's place in it.
    pub(crate) fn locate(&self, index: u32) -> (u32, usize) {
        let p = self.of(index);
        (p, (index - self.starts[p as usize]) as usize)
    }
}

/// The pages a request needs that the engine does not hold (`Engine::try_recommend`), in
/// increasing order: load them with [`Engine::add_page`] and ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPages(pub Vec<u32>);

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("model_id", &format_args!("{:016x}", self.model_id))
            .field("items", &self.meta.total_items)
            .field("dim", &self.meta.dim)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Engine {
    /// Assembles a model from validated shards, in any order.
    ///
    /// # Errors
    /// [`ErrorKind::BadShardSet`] when the shards are not exactly the shards of one model.
    pub fn from_shards(mut shards: Vec<Shard>) -> Result<Engine> {
        if shards.is_empty() {
            return Err(Error::shard_set("no shards given"));
        }
        shards.sort_by_key(|s| s.header().shard_index);
        let first = *shards[0].header();
        let meta = shards[0].meta().clone();
        if let Some(s) = shards.iter().find(|s| s.header().role != first.role) {
            return Err(Error::shard_set(format!(
                "shard {} is a {:?} shard and shard {} a {:?} one",
                s.header().shard_index,
                s.header().role,
                first.shard_index,
                first.role
            )));
        }
        if first.role == ShardRole::Page {
            return Err(Error::shard_set(
                "these are pages: a paged model loads from its index shards, and its pages are \
                 added with Engine::add_page",
            ));
        }
        if shards.len() != first.shard_count as usize {
            return Err(Error::shard_set(format!(
                "got {} shards, the model has {}",
                shards.len(),
                first.shard_count
            )));
        }
        let mut starts = Vec::with_capacity(shards.len());
        let mut next = 0u64;
        for (i, s) in shards.iter().enumerate() {
            let h = s.header();
            if h.model_id != first.model_id {
                return Err(Error::shard_set(format!(
                    "shard {} belongs to model {:016x}, not {:016x}",
                    h.shard_index, h.model_id, first.model_id
                )));
            }
            if h.shard_index as usize != i || h.shard_count != first.shard_count {
                return Err(Error::shard_set(format!(
                    "shard index {} repeated or missing",
                    i
                )));
            }
            if s.meta() != &meta {
                return Err(Error::shard_set(format!(
                    "shard {i} has different metadata"
                )));
            }
            if u64::from(h.item_start) != next {
                return Err(Error::shard_set(format!(
                    "shard {i} starts at item {}, expected {next}",
                    h.item_start
                )));
            }
            starts.push(h.item_start);
            next += u64::from(h.item_count);
        }
        if next != u64::from(meta.total_items) {
            return Err(Error::shard_set(format!(
                "shards hold {next} items, the model has {}",
                meta.total_items
            )));
        }
        let pages = (first.role == ShardRole::Index).then(|| Pages {
            starts: shards[0]
                .view()
                .global
                .page_starts
                .unwrap_or_default()
                .to_vec(),
            loaded: BTreeMap::new(),
        });
        // Validated with the shard; parsed again here to widen its weights once.
        let encoder = match shards[0].view().global.encoder {
            Some(bytes) => Some(crate::encoder::Encoder::new(
                &crate::encoder::EncoderView::parse(bytes, meta.dim)?,
            )),
            None => None,
        };
        let mut engine = Engine {
            model_id: first.model_id,
            encoder,
            pages,
            shards,
            starts,
            meta,
            latest_trend: (0..0, Vec::new()),
            trend_memo: BTreeMap::new(),
            row_bounds: Vec::new(),
            first_pass: None,
            profiles: None,
        };
        let window = trend_window(&engine.meta, None);
        let shares = engine.ranker().trend_shares(window.clone());
        engine.latest_trend = (window, shares);
        engine.set_coarse_pass(kernels::FAST_COARSE);
        // A paged model ranks through the first pass at any size: the exact scan would need
        // every page.
        if engine.meta.total_items >= first_pass::MIN_ITEMS || engine.pages.is_some() {
            engine.set_first_pass(Some(first_pass::default_keep(engine.meta.total_items)));
        }
        Ok(engine)
    }

    /// Ranks with these per-length profiles (by [`crate::format::profile_bucket`]) instead of
    /// the ones the shards carry, or with the shards' own again (`None`). A profile only
    /// weighs signals the model already has, so this is what a tuner needs to try many
    /// profiles on one loaded model: the rankings equal those of shards written with the
    /// same profiles.
    #[doc(hidden)]
    pub fn set_profiles(&mut self, profiles: Option<[Profile; PROFILE_BUCKETS]>) {
        self.profiles = profiles;
    }

    /// Sums the trend windows of requests at these times once and keeps them, so ranking at
    /// any of those times copies the window's shares instead of summing its buckets again. A
    /// tuner ranks the same past requests under hundreds of profiles, and each window's sum
    /// grows with the events in it: without this, tuning time grows with users × events.
    /// (Requests after the model's data need nothing: their window is summed at load.) Keeps
    /// windows in the order their times come until they hold `max_entries` entries in all;
    /// returns how many windows are kept. The rankings are the same either way.
    #[doc(hidden)]
    pub fn memoize_trend_windows(
        &mut self,
        times: impl IntoIterator<Item = i64>,
        max_entries: usize,
    ) -> usize {
        let mut held: usize = self.trend_memo.values().map(Vec::len).sum();
        for ts in times {
            let window = trend_window(&self.meta, Some(ts));
            let key = (window.start, window.end);
            if window.is_empty()
                || window == self.latest_trend.0
                || self.trend_memo.contains_key(&key)
            {
                continue;
            }
            let shares = self.ranker().trend_shares(window);
            if held + shares.len() > max_entries {
                break;
            }
            held += shares.len();
            self.trend_memo.insert(key, shares);
        }
        self.trend_memo.len()
    }

    /// How many items the two-stage scan (`crate::first_pass`) keeps for exact scoring, at
    /// least; `None` when it is off.
    #[doc(hidden)]
    pub fn first_pass_keep(&self) -> Option<usize> {
        self.first_pass
    }

    /// Turns the two-stage scan on, keeping at least `keep` items for exact scoring, or off
    /// (`None`: every row is scored exactly). It is on by default for int8 models of at least
    /// [`first_pass::MIN_ITEMS`] items whose shards carry codes. It stays off when they do not,
    /// or when the shards' centroids or codebooks differ (then their sums are not comparable).
    /// Returns whether it is on.
    #[doc(hidden)]
    pub fn set_first_pass(&mut self, keep: Option<usize>) -> bool {
        // The parts every shard must share for sums to be comparable across shards.
        let shared: Vec<_> = self
            .shards
            .iter()
            .map(|s| {
                s.view()
                    .first_pass
                    .map(|f| (f.codebook, f.centroids, f.centroid_scales))
            })
            .collect();
        let usable =
            self.meta.dtype == Dtype::I8 && shared.iter().all(|b| b.is_some() && *b == shared[0]);
        self.first_pass = keep.filter(|_| usable);
        self.first_pass.is_some()
    }

    /// Turns the certified coarse pass of int8 models on or off. It is on by default where the
    /// build has a fast coarse kernel (wasm with relaxed SIMD). Rankings are identical either
    /// way (that is what the tests check, on every build); only the time differs. On, it keeps
    /// 4 bytes per item.
    #[doc(hidden)]
    pub fn set_coarse_pass(&mut self, on: bool) {
        // The pass bounds every row of a shard; a paged model holds no rows in its shards.
        self.row_bounds = if on && self.meta.dtype == Dtype::I8 && self.pages.is_none() {
            let stride = self.meta.row_stride() as usize;
            self.shards
                .iter()
                .map(|s| match s.view().rows {
                    Rows::I8 { rows, .. } => RowBounds::of(rows, stride),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
    }

    /// Validates shard bytes (any order) and assembles the model.
    ///
    /// # Errors
    /// The first shard's validation error (with its position), or a shard-set error.
    pub fn from_bytes<'a, I: IntoIterator<Item = &'a [u8]>>(buffers: I) -> Result<Engine> {
        let shards = buffers
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                Shard::from_bytes(b).map_err(|e| {
                    Error::new(ErrorKind::InShard {
                        position: i,
                        error: Box::new(e.kind().clone()),
                    })
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Engine::from_shards(shards)
    }

    /// The model's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The model id shared by its shards.
    pub fn model_id(&self) -> u64 {
        self.model_id
    }

    /// Number of items.
    pub fn item_count(&self) -> u32 {
        self.meta.total_items
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The bytes of shard `i` (in shard-index order), e.g. to hand the model to a browser.
    pub fn shard_bytes(&self, i: usize) -> Option<&[u8]> {
        self.shards.get(i).map(Shard::as_bytes)
    }

    pub(crate) fn locate(&self, index: u32) -> Option<(usize, usize)> {
        if index >= self.meta.total_items {
            return None;
        }
        let s = self
            .starts
            .partition_point(|&start| start <= index)
            .checked_sub(1)?;
        Some((s, (index - self.starts[s]) as usize))
    }

    /// The id of a global item index (`None` past the end, or in a page not loaded).
    pub fn item_id(&self, index: u32) -> Option<&str> {
        let (shard, local) = self.item_data(index)?;
        Some(shard.view().ids.get(local))
    }

    /// The shard holding item `index`'s ids, rows, bias and sequence tables (a whole shard, or
    /// a loaded page of a paged model) and the item's place in it.
    pub(crate) fn item_data(&self, index: u32) -> Option<(&Shard, usize)> {
        match &self.pages {
            None => {
                let (s, local) = self.locate(index)?;
                Some((&self.shards[s], local))
            }
            Some(pages) => {
                if index >= self.meta.total_items {
                    return None;
                }
                let (p, local) = pages.locate(index);
                Some((pages.loaded.get(&p)?, local))
            }
        }
    }

    /// Whether the model is paged (`format::ShardRole`): its shards are an index, and the
    /// items' data come in pages that [`Engine::add_page`] loads as requests need them.
    pub fn is_paged(&self) -> bool {
        self.pages.is_some()
    }

    /// A paged model's page count (0 for a model of whole shards).
    pub fn page_count(&self) -> usize {
        self.pages.as_ref().map_or(0, |p| p.starts.len() - 1)
    }

    /// The page of a paged model holding item `index` (`None` past the end, or for a model
    /// of whole shards).
    pub fn page_of(&self, index: u32) -> Option<u32> {
        let pages = self.pages.as_ref()?;
        (index < self.meta.total_items).then(|| pages.of(index))
    }

    /// The pages loaded, in increasing order.
    pub fn loaded_pages(&self) -> Vec<u32> {
        self.pages
            .as_ref()
            .map(|p| p.loaded.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Bytes of the pages loaded.
    pub fn loaded_page_bytes(&self) -> usize {
        self.pages
            .as_ref()
            .map_or(0, |p| p.loaded.values().map(|s| s.as_bytes().len()).sum())
    }

    /// Validates a page of this paged model and keeps it (replacing the page of the same
    /// number, if loaded). Besides the page's own validation, it must belong to this model
    /// (model id and metadata), hold exactly the items the page table gives its number, and
    /// its ids must hash to the keys the index holds for its items (a sample of them here;
    /// lookups check the rest as they resolve them).
    ///
    /// # Errors
    /// [`ErrorKind::BadShardSet`] naming the mismatch; the engine is unchanged.
    pub fn add_page(&mut self, page: Shard) -> Result<()> {
        let Some(pages) = &self.pages else {
            return Err(Error::shard_set("this model is not paged"));
        };
        let h = *page.header();
        if h.role != ShardRole::Page {
            return Err(Error::shard_set(format!(
                "a {:?} shard is not a page",
                h.role
            )));
        }
        if h.model_id != self.model_id {
            return Err(Error::shard_set(format!(
                "page {} belongs to model {:016x}, not {:016x}",
                h.shard_index, h.model_id, self.model_id
            )));
        }
        if page.meta() != &self.meta {
            return Err(Error::shard_set(format!(
                "page {} has different metadata",
                h.shard_index
            )));
        }
        let p = h.shard_index as usize;
        let count = pages.starts.len() - 1;
        let range = pages.starts.get(p).zip(pages.starts.get(p + 1));
        match range {
            Some((&start, &end))
                if h.shard_count as usize == count
                    && h.item_start == start
                    && h.item_count == end - start => {}
            _ => {
                return Err(Error::shard_set(format!(
                    "page {} of {} holds items {}..{}, which the page table does not name",
                    h.shard_index,
                    h.shard_count,
                    h.item_start,
                    u64::from(h.item_start) + u64::from(h.item_count)
                )))
            }
        }
        let view = page.view();
        let ranker = self.ranker();
        // A sample, as whole shards check their keys (`shard::KEY_SAMPLE_STRIDE`): a writer
        // that gets the pairing wrong gets most of it wrong, and lookups check the item they
        // resolve against its id once its page is in (`Ranker::find_key`). Checking every id
        // cost about a millisecond per page of 1,000 items at 1M (docs/FIGURES.md).
        let n = h.item_count as usize;
        let sample = (0..n)
            .step_by(crate::shard::KEY_SAMPLE_STRIDE)
            .chain(n.checked_sub(1));
        for j in sample {
            let key = crate::hash::item_key_of_bytes(view.ids.bytes(j));
            let index = h.item_start + j as u32;
            if ranker.index_key_lookup(key) != Some(index) {
                return Err(Error::shard_set(format!(
                    "page {}: the id of item {index} does not hash to the key the index holds",
                    h.shard_index
                )));
            }
        }
        if let Some(pages) = &mut self.pages {
            pages.loaded.insert(h.shard_index, page);
        }
        Ok(())
    }

    /// Forgets a loaded page (a cache evicting it); returns whether it was loaded.
    pub fn drop_page(&mut self, page: u32) -> bool {
        self.pages
            .as_mut()
            .is_some_and(|p| p.loaded.remove(&page).is_some())
    }

    /// The global index of an item id.
    pub fn find(&self, id: &str) -> Option<u32> {
        self.find_key(item_key(id))
    }

    /// The global index of an item key.
    pub fn find_key(&self, key: u64) -> Option<u32> {
        self.ranker().find_key(key)
    }

    /// The category bit set of an item (0 when the model has no categories).
    pub fn item_categories(&self, index: u32) -> u64 {
        self.ranker().categories(index)
    }

    /// Category names, in bit order.
    pub fn category_names(&self) -> Vec<&str> {
        self.shards[0]
            .view()
            .global
            .category_names
            .map(|t| t.iter().collect())
            .unwrap_or_default()
    }

    /// The bit set of the named categories; unknown names are an error.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] naming the first unknown category.
    pub fn category_mask<S: AsRef<str>>(&self, names: &[S]) -> Result<u64> {
        let all = self.category_names();
        let mut mask = 0u64;
        for name in names {
            let name = name.as_ref();
            let bit = all
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| Error::argument(format!("unknown category {name:?}")))?;
            mask |= 1u64 << bit;
        }
        Ok(mask)
    }

    /// Writes the item's vector, dequantized, into `out` (`dim` values).
    pub fn item_vector(&self, index: u32, out: &mut [f32]) {
        self.ranker().dequantize(index, out);
    }

    fn ranker(&self) -> Ranker<'_> {
        Ranker::new(self)
    }

    /// The query vector the ranking uses for this session and context (for inspection,
    /// training parity and tests).
    pub fn query_vector(&self, session: &Session, context: &Context) -> Vec<f32> {
        self.ranker().query_vector(session, context)
    }

    /// The weights this model gives each signal for a session with `known_clicks` items it
    /// knows (neutral for models without a profile table).
    pub fn profile(&self, known_clicks: usize) -> Profile {
        self.ranker().profile(known_clicks)
    }

    /// The items a request's exact scoring would read with the two-stage scan on: those its
    /// first pass keeps (exclusions and filters not applied), and the boosted items scored
    /// beside them. `None` when the scan is exact. For measuring how a request's reads spread
    /// over the catalog (`examples/first_pass_reads.rs`), not for ranking.
    #[doc(hidden)]
    pub fn first_pass_reads(
        &self,
        session: &Session,
        request: &Request,
    ) -> Option<(Vec<u32>, Vec<u32>)> {
        self.ranker().first_pass_reads(session, request)
    }

    /// Every item's score for a session and request, by global index, as
    /// [`Engine::recommend`] scores it (`q·row + bias + boost`), with no item excluded or
    /// filtered and no selection: what central-sync trains the session encoder against. Items
    /// of a paged model's missing pages score −∞.
    #[doc(hidden)]
    pub fn scores(&self, session: &Session, request: &Request) -> Vec<f32> {
        self.ranker().scores(session, request)
    }

    /// Ranks items for a session and request. Never fails and never panics: everything it
    /// reads was validated when the model was loaded, and unknown ids are ignored.
    ///
    /// A paged model ranks only the items of the pages it holds: use
    /// [`Engine::try_recommend`], which says which pages a request needs.
    pub fn recommend(&self, session: &Session, request: &Request) -> Vec<Recommendation> {
        self.ranker().recommend(session, request)
    }

    /// Ranks as [`Engine::recommend`] does, or names the pages of a paged model the request
    /// needs and the engine does not hold. Load those ([`Engine::add_page`]) and call again: a
    /// session's own items come first (the query is built from them), then the items the
    /// ranking scores, so a request asks at most twice. The ranking, once every page it needs
    /// is loaded, is the one the same model in whole shards gives. Always `Ok` for a model of
    /// whole shards.
    ///
    /// # Errors
    /// [`MissingPages`], never anything else.
    pub fn try_recommend(
        &self,
        session: &Session,
        request: &Request,
    ) -> core::result::Result<Vec<Recommendation>, MissingPages> {
        self.ranker().try_recommend(session, request)
    }
}

pub use crate::ranker::trend_window;
