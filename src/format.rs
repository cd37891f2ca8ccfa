//! The shard wire format, version 8 (versions 1 to 7 still read): constants, the header, the model
//! metadata block and the section kinds. `shard.rs` reads it and `writer.rs` writes it; nothing else knows the layout.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "EDGERECS"
//!      8     4  endianness marker 0x01020304 (reads 0x04030201 on a byte-swapped writer)
//!     12     2  format version (8; 1 to 7 are still read)
//!     14     2  header length (64)
//!     16     4  section count
//!     20     4  flags: the shard's role (version 7; 0 before): 0 whole, 1 index, 2 page
//!     24     8  total length of the shard in bytes
//!     32     8  checksum: XXH3-64 of every byte of the shard except these 8
//!     40     8  model id (the same in every shard of one model)
//!     48     4  shard index          52  4  shard count
//!     56     4  first item (global index)   60  4  item count in this shard
//!     64  24*n  section table: kind u32, flags u32, offset u64, length u64
//!      …        sections, each starting at the next multiple of 16 after the previous one,
//!               the last one ending exactly at the total length (no gaps, no trailing bytes)
//! ```
//! All integers and floats are little-endian. Every shard carries the `Meta` section (the model
//! parameters needed to read its rows and to score) and its items' sections; the global tables
//! (query transform, context tables, category names, session profiles, trend counts) live in
//! shard 0 only.
//!
//! Version 2 added, all optional so that a version-1 shard means exactly what it meant before:
//! the trend fields of `Meta` (words 49–53, zero in version 1), the per-session-length
//! [`Profile`] table and the trend count table (time-bucketed item counts, so the edge can rank
//! by popularity over a recent window before the request's time).
//!
//! Version 3 added the two-stage scan's first pass (`crate::first_pass`), also optional: per
//! shard of an int8 model, coarse centroids, a residual codebook, and the items' 4-bit codes
//! grouped by centroid. Without them the edge scans the int8 rows exactly, as before.
//!
//! Version 4 added narrow sequence tables: a neighbour or transition table may hold its targets
//! as u16 (models of at most 65,536 items) and its weights as f16, in sections of their own
//! that replace the u32 and f32 ones. In trained models these tables are most of the bytes
//! (100 neighbours per item against 32 int8 dimensions), so the narrow forms halve them.
//!
//! Version 5 added 24-bit targets for models of 65,537 to 16,777,216 items, again in sections
//! of their own, so a catalog past u16's reach stores 5 bytes per entry (with f16 weights)
//! instead of 6.
//!
//! Version 6 added first-pass runs: a shard whose items are stored cluster by cluster (as the
//! writer stores them) names each cluster's items as one run of local indices (start, count)
//! instead of a slot per item, so the first pass keeps 8 bytes per cluster instead of 4 per
//! item and reads no slot table. A shard has exactly one of the two sections.
//!
//! Version 7 added paged models ([`ShardRole`]), for catalogs whose rows do not fit the memory
//! the edge has. Such a model is a set of *index* shards, loaded whole, and *pages*, loaded
//! when a request needs them. An index shard carries what every request reads for every item
//! of its range: the keys, the categories and the first pass's codes (required), and in index
//! shard 0 the global tables and the page table (`PageStarts`). A page carries what only the
//! items a request scores need: ids, rows, bias and sequence tables, for a run of items that
//! the page table names. Whole shards (role 0) are what versions 1 to 6 wrote and mean the
//! same; a model is either all whole shards or index shards with pages. Version 7 also stores
//! the key order as narrowly as the shard's item count allows (u16 or u24 instead of u32).
//!
//! Version 8 added the session encoder (`crate::encoder`), optional, in shard 0 (index shard 0
//! of a paged model): an order-aware map from the session's latest items to a vector added to
//! the query, with its weight per profile bucket. Without it a model ranks as before.

/// The first 8 bytes of every shard.
pub const MAGIC: [u8; 8] = *b"EDGERECS";
/// Written as a little-endian u32; a reader that sees it byte-swapped rejects the shard.
pub const ENDIAN_MARKER: u32 = 0x0102_0304;
/// The format version this build writes.
pub const VERSION: u16 = 8;
/// The oldest format version this build still reads.
pub const MIN_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Size of one section table entry.
pub const SECTION_ENTRY_LEN: usize = 24;
/// Sections start at multiples of this, so every typed view (u64, f32, SIMD loads) is aligned.
pub const SECTION_ALIGN: usize = 16;
/// Upper bound on the section count, so a forged count cannot make the reader allocate.
pub const MAX_SECTIONS: u32 = 64;
/// Cloudflare KV's value limit: the writer never produces a larger shard.
pub const MAX_SHARD_BYTES: u64 = 25 * 1024 * 1024;
/// Byte offsets of the header fields (see the table above). The reader and the writer use
/// these names; no other module spells an offset.
pub(crate) const ENDIAN_AT: usize = 8;
pub(crate) const VERSION_AT: usize = 12;
pub(crate) const HEADER_LEN_AT: usize = 14;
pub(crate) const SECTION_COUNT_AT: usize = 16;
pub(crate) const FLAGS_AT: usize = 20;
pub(crate) const TOTAL_LEN_AT: usize = 24;
/// Byte offset of the checksum in the header.
pub const CHECKSUM_AT: usize = 32;
pub(crate) const MODEL_ID_AT: usize = 40;
pub(crate) const SHARD_INDEX_AT: usize = 48;
pub(crate) const SHARD_COUNT_AT: usize = 52;
pub(crate) const ITEM_START_AT: usize = 56;
pub(crate) const ITEM_COUNT_AT: usize = 60;
/// Byte offsets within one section table entry: kind u32, flags u32, offset u64, length u64.
pub(crate) const ENTRY_KIND_AT: usize = 0;
pub(crate) const ENTRY_FLAGS_AT: usize = 4;
pub(crate) const ENTRY_OFFSET_AT: usize = 8;
pub(crate) const ENTRY_LENGTH_AT: usize = 16;

/// Section flag: a reader that does not know this section kind may skip it. Without the flag an
/// unknown kind is an error, because ignoring it could change the ranking.
pub const SECTION_FLAG_OPTIONAL: u32 = 1;

/// Time-of-week bins of the context table: 8 three-hour bins on weekdays, 8 on weekends.
pub const TIME_BINS: usize = 16;
/// Device classes of the context table (see `context::Device`).
pub const DEVICE_CLASSES: usize = 6;
/// Event types with a session weight each (see `session::EventType`).
pub const EVENT_TYPES: usize = 6;
/// The most recent session items that contribute sequence signals.
pub const MAX_SEQ_LEN: usize = 16;
/// Sequence tables: item neighbours (co-occurrence) and next-item transitions.
pub const SEQ_TABLES: usize = 2;
/// Geohash precision is capped for privacy: 5 characters is a cell of about 5 x 5 km.
pub const MAX_GEOHASH_PRECISION: usize = 5;
/// Largest embedding dimension accepted (keeps the i32 dot accumulators far from overflow).
pub const MAX_DIM: u32 = 1024;
/// Categories are a u64 bit set per item.
pub const MAX_CATEGORIES: u32 = 64;
/// Size of the Meta section.
pub const META_LEN: usize = 256;
/// Session-length buckets of the profile table: 0, 1, 2, 3, 4–7 and 8 or more known clicks.
pub const PROFILE_BUCKETS: usize = 6;
/// f32 fields of one profile row, in [`Profile`] field order.
pub const PROFILE_FIELDS: usize = 5;
/// Upper bound on trend buckets, so bucket arithmetic cannot overflow.
pub const MAX_TREND_BUCKETS: u32 = 1 << 20;

/// The profile bucket of a session with `known_clicks` items the model knows.
pub fn profile_bucket(known_clicks: usize) -> usize {
    match known_clicks {
        0..=3 => known_clicks,
        4..=7 => 4,
        _ => 5,
    }
}

/// How much each signal counts for sessions of one length bucket. A visitor with no clicks is
/// best served by what is popular now, one with a single click by what follows that click, one
/// with a long history by the embedding of it; the weights are chosen on validation data per
/// bucket. All are finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Multiplier of the session (embedding) term of the query.
    pub embed: f32,
    /// Multiplier of the context rows and the query bias.
    pub context: f32,
    /// Multiplier of the neighbour boosts.
    pub neighbours: f32,
    /// Multiplier of the transition boosts.
    pub transitions: f32,
    /// Weight of the trend boost (an item's share of the window's top count, in [0, 1]).
    pub trend: f32,
    /// Multiplier of the session encoder's output (`crate::encoder`), added to the query.
    /// Stored in the encoder's section, not in the profile table (format 8); models without
    /// an encoder ignore it.
    pub encoder: f32,
}

impl Profile {
    /// What a model without a profile table does: every signal as trained, no trend.
    pub const NEUTRAL: Profile = Profile {
        embed: 1.0,
        context: 1.0,
        neighbours: 1.0,
        transitions: 1.0,
        trend: 0.0,
        encoder: 1.0,
    };

    /// The fields of the profile table, in wire order (all but `encoder`).
    pub fn to_array(self) -> [f32; PROFILE_FIELDS] {
        [
            self.embed,
            self.context,
            self.neighbours,
            self.transitions,
            self.trend,
        ]
    }

    /// Reads one row of the profile table (`PROFILE_FIELDS` values); missing values, and the
    /// encoder weight, are neutral.
    pub fn from_slice(v: &[f32]) -> Profile {
        let get = |i: usize, d: f32| v.get(i).copied().unwrap_or(d);
        let n = Profile::NEUTRAL;
        Profile {
            embed: get(0, n.embed),
            context: get(1, n.context),
            neighbours: get(2, n.neighbours),
            transitions: get(3, n.transitions),
            trend: get(4, n.trend),
            encoder: n.encoder,
        }
    }
}

/// The element type of the item rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// int8 with one f32 scale per row.
    I8 = 1,
    /// IEEE half precision.
    F16 = 2,
    /// IEEE single precision: the unquantized reference (evaluation, tests).
    F32 = 3,
}

impl Dtype {
    pub(crate) fn from_u32(v: u32) -> Option<Dtype> {
        match v {
            1 => Some(Dtype::I8),
            2 => Some(Dtype::F16),
            3 => Some(Dtype::F32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// Rows are padded to a multiple of 16 elements so the SIMD kernels need no tail loop.
pub fn row_stride(dim: u32) -> u32 {
    dim.div_ceil(16) * 16
}

/// Model parameters, stored in every shard (identical across the shards of a model).
///
/// Layout: 64 little-endian 32-bit words; words past the fields below are reserved and must be 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// Embedding dimension.
    pub dim: u32,
    /// Element type of the rows.
    pub dtype: Dtype,
    /// Items in the whole model (all shards).
    pub total_items: u32,
    /// Number of named categories (≤ 64).
    pub category_count: u32,
    /// Geohash prefix length used for the geo context table (≤ MAX_GEOHASH_PRECISION).
    pub geo_precision: u32,
    /// Rows of the geo context table (0 when the model has none).
    pub geo_buckets: u32,
    /// How many of the latest session items feed the sequence tables (≤ MAX_SEQ_LEN).
    pub seq_len: u32,
    /// Half-life of a session event's weight in seconds (0 disables time decay).
    pub time_half_life_s: f32,
    /// Weight ratio between consecutive session positions in the session vector (newest = 1).
    pub position_decay: f32,
    /// Multiplier of the session/embedding term of the query.
    pub embed_weight: f32,
    /// Weight of each event type in the session vector, in `EventType` order.
    pub type_weights: [f32; EVENT_TYPES],
    /// Per sequence table, the weight of each of the latest `seq_len` positions (newest first).
    pub seq_weights: [[f32; MAX_SEQ_LEN]; SEQ_TABLES],
    /// Width of one trend bucket in seconds (0: the model has no trend table).
    pub trend_bucket_s: u32,
    /// Unix seconds at which trend bucket 0 starts.
    pub trend_start: i64,
    /// Number of trend buckets; the last one ends where the model's data end.
    pub trend_buckets: u32,
    /// The trend window: popularity counts over this many seconds before the request.
    pub trend_window_s: u32,
}

/// Meta words used by version 1; words from here on were reserved (zero) there.
const META_V1_WORDS: usize = 17 + SEQ_TABLES * MAX_SEQ_LEN;
/// Meta words used by version 2.
const META_V2_WORDS: usize = META_V1_WORDS + 5;

impl Meta {
    /// A neutral default for a model of `dim` dimensions and `total_items` items.
    pub fn new(dim: u32, dtype: Dtype, total_items: u32) -> Meta {
        Meta {
            dim,
            dtype,
            total_items,
            category_count: 0,
            geo_precision: 4,
            geo_buckets: 0,
            seq_len: 0,
            time_half_life_s: 0.0,
            position_decay: 0.7,
            embed_weight: 1.0,
            type_weights: [1.0, 1.0, 1.5, 2.0, 3.0, 1.0],
            seq_weights: [[0.0; MAX_SEQ_LEN]; SEQ_TABLES],
            trend_bucket_s: 0,
            trend_start: 0,
            trend_buckets: 0,
            trend_window_s: 0,
        }
    }

    /// The weights of a session's events in the session vector, newest first: event type ×
    /// `position_decay`^k × time decay (with a half-life and a known `now`). The one session
    /// fold: the engine ranks with it and central-sync trains through it.
    pub fn session_weights<'a>(
        &'a self,
        events_newest_first: impl IntoIterator<Item = (crate::EventType, u64)> + 'a,
        now: Option<u64>,
    ) -> impl Iterator<Item = f32> + 'a {
        let mut position = 1.0f32;
        events_newest_first.into_iter().map(move |(kind, ts)| {
            let mut w = self.type_weights[kind as usize] * position;
            position *= self.position_decay;
            if self.time_half_life_s > 0.0 {
                if let Some(now) = now {
                    let age = now.saturating_sub(ts) as f32;
                    w *= crate::math::exp2(-age / self.time_half_life_s);
                }
            }
            w
        })
    }

    /// The context-table rows this model scores for a request (the one mapping from request to
    /// rows; see [`crate::context::ContextRows`]).
    pub fn context_rows(&self, context: &crate::Context) -> crate::context::ContextRows {
        context.rows(self.geo_precision as usize, self.geo_buckets)
    }

    /// Whether the model carries a trend table.
    pub fn has_trend(&self) -> bool {
        self.trend_buckets > 0
    }

    /// Row stride in elements.
    pub fn row_stride(&self) -> u32 {
        row_stride(self.dim)
    }

    #[cfg(any(feature = "writer", test))]
    pub(crate) fn encode(&self) -> [u8; META_LEN] {
        let mut words = [0u32; META_LEN / 4];
        words[0] = self.dim;
        words[1] = self.dtype as u32;
        words[2] = self.row_stride();
        words[3] = self.total_items;
        words[4] = self.category_count;
        words[5] = self.geo_precision;
        words[6] = self.geo_buckets;
        words[7] = self.seq_len;
        words[8] = self.time_half_life_s.to_bits();
        words[9] = self.position_decay.to_bits();
        words[10] = self.embed_weight.to_bits();
        for (i, w) in self.type_weights.iter().enumerate() {
            words[11 + i] = w.to_bits();
        }
        for t in 0..SEQ_TABLES {
            for (i, w) in self.seq_weights[t].iter().enumerate() {
                words[17 + t * MAX_SEQ_LEN + i] = w.to_bits();
            }
        }
        let t = META_V1_WORDS;
        words[t] = self.trend_bucket_s;
        words[t + 1] = self.trend_start as u64 as u32;
        words[t + 2] = ((self.trend_start as u64) >> 32) as u32;
        words[t + 3] = self.trend_buckets;
        words[t + 4] = self.trend_window_s;
        let mut out = [0u8; META_LEN];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes and validates the Meta section of a shard of format `version`. Never panics.
    pub(crate) fn decode(bytes: &[u8], version: u16) -> crate::Result<Meta> {
        use crate::Error;
        if bytes.len() != META_LEN {
            return Err(crate::ErrorKind::BadSectionLength {
                kind: "meta",
                expected: META_LEN as u64,
                got: bytes.len() as u64,
            }
            .into());
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
            u32::from_le_bytes(b)
        };
        let float = |i: usize| f32::from_bits(word(i));
        let dim = word(0);
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "meta: dim {dim} not in 1..={MAX_DIM}"
            )));
        }
        let dtype = Dtype::from_u32(word(1))
            .ok_or_else(|| Error::invalid(format!("meta: unknown dtype {}", word(1))))?;
        if word(2) != row_stride(dim) {
            return Err(Error::invalid(format!(
                "meta: row stride {} does not match dim {dim}",
                word(2)
            )));
        }
        let mut type_weights = [0.0; EVENT_TYPES];
        for (i, w) in type_weights.iter_mut().enumerate() {
            *w = float(11 + i);
        }
        let mut seq_weights = [[0.0; MAX_SEQ_LEN]; SEQ_TABLES];
        for (t, table) in seq_weights.iter_mut().enumerate() {
            for (i, w) in table.iter_mut().enumerate() {
                *w = float(17 + t * MAX_SEQ_LEN + i);
            }
        }
        let meta = Meta {
            dim,
            dtype,
            total_items: word(3),
            category_count: word(4),
            geo_precision: word(5),
            geo_buckets: word(6),
            seq_len: word(7),
            time_half_life_s: float(8),
            position_decay: float(9),
            embed_weight: float(10),
            type_weights,
            seq_weights,
            trend_bucket_s: word(META_V1_WORDS),
            trend_start: (u64::from(word(META_V1_WORDS + 1))
                | u64::from(word(META_V1_WORDS + 2)) << 32) as i64,
            trend_buckets: word(META_V1_WORDS + 3),
            trend_window_s: word(META_V1_WORDS + 4),
        };
        let used = if version >= 2 {
            META_V2_WORDS
        } else {
            META_V1_WORDS
        };
        if (used..META_LEN / 4).any(|i| word(i) != 0) {
            return Err(Error::invalid("meta: reserved words are not zero"));
        }
        meta.check()?;
        Ok(meta)
    }

    /// Checks the invariants the scorer relies on; used by both the reader and the writer.
    pub(crate) fn check(&self) -> crate::Result<()> {
        use crate::Error;
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "meta: dim {} not in 1..={MAX_DIM}",
                self.dim
            )));
        }
        if self.category_count > MAX_CATEGORIES {
            return Err(Error::invalid(format!(
                "meta: {} categories, at most {MAX_CATEGORIES}",
                self.category_count
            )));
        }
        if self.geo_precision == 0 || self.geo_precision as usize > MAX_GEOHASH_PRECISION {
            return Err(Error::invalid(format!(
                "meta: geohash precision {} not in 1..={MAX_GEOHASH_PRECISION}",
                self.geo_precision
            )));
        }
        if self.seq_len as usize > MAX_SEQ_LEN {
            return Err(Error::invalid(format!(
                "meta: seq_len {} above {MAX_SEQ_LEN}",
                self.seq_len
            )));
        }
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        if !non_negative(self.time_half_life_s)
            || !non_negative(self.embed_weight)
            || !(0.0..=1.0).contains(&self.position_decay)
        {
            return Err(Error::invalid("meta: decay or weight out of range"));
        }
        // Sequence boosts must be non-negative: the ranker's exact top-K over a dense scan plus
        // a separately boosted set depends on it.
        let all_weights = self
            .type_weights
            .iter()
            .chain(self.seq_weights.iter().flatten());
        if !all_weights.copied().all(non_negative) {
            return Err(Error::invalid(
                "meta: weights must be finite and non-negative",
            ));
        }
        let trend_fields_zero =
            self.trend_bucket_s == 0 && self.trend_start == 0 && self.trend_window_s == 0;
        if self.trend_buckets == 0 && !trend_fields_zero {
            return Err(Error::invalid(
                "meta: trend fields set without trend buckets",
            ));
        }
        if self.trend_buckets > 0 {
            let end = i64::from(self.trend_buckets)
                .checked_mul(i64::from(self.trend_bucket_s))
                .and_then(|span| self.trend_start.checked_add(span));
            if self.trend_buckets > MAX_TREND_BUCKETS
                || self.trend_bucket_s == 0
                || self.trend_window_s == 0
                || end.is_none()
            {
                return Err(Error::invalid(format!(
                    "meta: trend of {} buckets of {} s from {} (window {} s) is out of range",
                    self.trend_buckets, self.trend_bucket_s, self.trend_start, self.trend_window_s
                )));
            }
        }
        Ok(())
    }
}

/// The kinds of section a version-1 shard can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Meta = 1,
    IdOffsets = 2,
    IdBytes = 3,
    KeysSorted = 4,
    KeysOrder = 5,
    RowsI8 = 6,
    RowsF16 = 7,
    RowScales = 8,
    ItemBias = 9,
    Categories = 10,
    NeighbourOffsets = 11,
    NeighbourTargets = 12,
    NeighbourWeights = 13,
    TransitionOffsets = 14,
    TransitionTargets = 15,
    TransitionWeights = 16,
    RowsF32 = 17,
    /// Version 3, int8 models, all six or none (`crate::first_pass`): the residual codebook
    /// (`first_pass::codebook_len` f32, the same in every shard).
    FirstPassCodebook = 18,
    /// Version 3: 4-bit codes, `first_pass::block_bytes` per block of 32 slots.
    FirstPassCodes = 19,
    /// Version 3: the coarse centroids, int8 rows of the row stride (the same in every shard).
    FirstPassCentroids = 20,
    /// Version 3: one f32 scale (finite, ≥ 0) per coarse centroid.
    FirstPassCentroidScales = 21,
    /// Version 3: per centroid, its first block and block count (u32 pairs, back to back).
    FirstPassLists = 22,
    /// Version 3: the local item in each slot of each block (u32), or `first_pass::EMPTY_SLOT`.
    FirstPassSlots = 23,
    /// Version 4: neighbour targets as u16, in place of `NeighbourTargets` (models of at most
    /// 65,536 items).
    NeighbourTargetsU16 = 24,
    /// Version 4: neighbour weights as f16 bits (finite, ≥ 0), in place of `NeighbourWeights`.
    NeighbourWeightsF16 = 25,
    /// Version 4: transition targets as u16, in place of `TransitionTargets`.
    TransitionTargetsU16 = 26,
    /// Version 4: transition weights as f16 bits, in place of `TransitionWeights`.
    TransitionWeightsF16 = 27,
    /// Version 5: neighbour targets as 3-byte little-endian integers, in place of
    /// `NeighbourTargets` (models of at most 16,777,216 items).
    NeighbourTargetsU24 = 28,
    /// Version 5: transition targets as 3-byte little-endian integers.
    TransitionTargetsU24 = 29,
    /// Version 6: per centroid, the first local item of its run and the run's length (u32
    /// pairs), in place of `FirstPassSlots` when each cluster's items are consecutive.
    FirstPassRuns = 30,
    QueryTransform = 32,
    QueryBias = 33,
    CtxTime = 34,
    CtxDevice = 35,
    CtxGeo = 36,
    CategoryOffsets = 37,
    CategoryBytes = 38,
    /// Version 2: `PROFILE_BUCKETS x PROFILE_FIELDS` f32.
    Profiles = 39,
    /// Version 2: per trend bucket, offsets (`trend_buckets + 1` u32) into the items and counts.
    TrendOffsets = 40,
    /// Version 2: global item index (u32) of each trend entry.
    TrendItems = 41,
    /// Version 2: interaction count (f32, ≥ 0) of each trend entry.
    TrendCounts = 42,
    /// Version 7, index shard 0 of a paged model only: the first global item of each page and
    /// the item count (`pages + 1` u32, from 0, strictly increasing, ending at the count).
    PageStarts = 43,
    /// Version 7: the key order as u16, in place of `KeysOrder` (shards of at most 65,536 items).
    KeysOrderU16 = 44,
    /// Version 7: the key order as 3-byte little-endian integers (at most 16,777,216 items).
    KeysOrderU24 = 45,
    /// Version 8, shard 0 only: the session encoder (`crate::encoder`): a header, then f16
    /// weights.
    SeqEncoder = 46,
}

/// What a shard holds of its items (the header's flags since version 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRole {
    /// Everything about its items (every shard before version 7).
    Whole,
    /// What every request reads of its items: keys, categories, first-pass codes.
    Index,
    /// What only the items a request scores need: ids, rows, bias, sequence tables.
    Page,
}

impl ShardRole {
    /// The header flags value of this role.
    pub(crate) fn flags(self) -> u32 {
        match self {
            ShardRole::Whole => 0,
            ShardRole::Index => 1,
            ShardRole::Page => 2,
        }
    }

    pub(crate) fn from_flags(flags: u32) -> Option<ShardRole> {
        [ShardRole::Whole, ShardRole::Index, ShardRole::Page]
            .into_iter()
            .find(|r| r.flags() == flags)
    }
}

/// The sections of one sequence table: offsets, its targets in one of three widths and its
/// weights in one of two (version 4 added u16 targets and f16 weights, version 5 u24 targets; a
/// table has exactly one section of each group).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqSectionKinds {
    pub offsets: SectionKind,
    /// u32 targets.
    pub targets: SectionKind,
    /// u16 targets.
    pub targets_u16: SectionKind,
    /// u24 targets.
    pub targets_u24: SectionKind,
    /// f32 weights.
    pub weights: SectionKind,
    /// f16 weights.
    pub weights_f16: SectionKind,
}

impl SeqSectionKinds {
    /// The target sections with the bytes per target each holds, in format order (u32, then
    /// version 4's u16, then version 5's u24): the one map between a width and its section,
    /// for the writer and the reader.
    pub(crate) fn target_widths(self) -> [(SectionKind, u64); 3] {
        [
            (self.targets, 4),
            (self.targets_u16, 2),
            (self.targets_u24, 3),
        ]
    }

    /// Every section a table may have: its offsets, targets in each width, weights in each.
    pub(crate) fn all(self) -> [SectionKind; 6] {
        [
            self.offsets,
            self.targets,
            self.targets_u16,
            self.targets_u24,
            self.weights,
            self.weights_f16,
        ]
    }
}

/// The sections of each sequence table, in `Meta::seq_weights` order: neighbours, then
/// transitions.
pub(crate) const SEQ_SECTION_KINDS: [SeqSectionKinds; SEQ_TABLES] = [
    SeqSectionKinds {
        offsets: SectionKind::NeighbourOffsets,
        targets: SectionKind::NeighbourTargets,
        targets_u16: SectionKind::NeighbourTargetsU16,
        targets_u24: SectionKind::NeighbourTargetsU24,
        weights: SectionKind::NeighbourWeights,
        weights_f16: SectionKind::NeighbourWeightsF16,
    },
    SeqSectionKinds {
        offsets: SectionKind::TransitionOffsets,
        targets: SectionKind::TransitionTargets,
        targets_u16: SectionKind::TransitionTargetsU16,
        targets_u24: SectionKind::TransitionTargetsU24,
        weights: SectionKind::TransitionWeights,
        weights_f16: SectionKind::TransitionWeightsF16,
    },
];

impl SectionKind {
    pub(crate) const ALL: [SectionKind; 45] = [
        SectionKind::Meta,
        SectionKind::IdOffsets,
        SectionKind::IdBytes,
        SectionKind::KeysSorted,
        SectionKind::KeysOrder,
        SectionKind::RowsI8,
        SectionKind::RowsF16,
        SectionKind::RowScales,
        SectionKind::ItemBias,
        SectionKind::Categories,
        SectionKind::NeighbourOffsets,
        SectionKind::NeighbourTargets,
        SectionKind::NeighbourWeights,
        SectionKind::TransitionOffsets,
        SectionKind::TransitionTargets,
        SectionKind::TransitionWeights,
        SectionKind::RowsF32,
        SectionKind::FirstPassCodebook,
        SectionKind::FirstPassCodes,
        SectionKind::FirstPassCentroids,
        SectionKind::FirstPassCentroidScales,
        SectionKind::FirstPassLists,
        SectionKind::FirstPassSlots,
        SectionKind::NeighbourTargetsU16,
        SectionKind::NeighbourWeightsF16,
        SectionKind::TransitionTargetsU16,
        SectionKind::TransitionWeightsF16,
        SectionKind::NeighbourTargetsU24,
        SectionKind::TransitionTargetsU24,
        SectionKind::FirstPassRuns,
        SectionKind::QueryTransform,
        SectionKind::QueryBias,
        SectionKind::CtxTime,
        SectionKind::CtxDevice,
        SectionKind::CtxGeo,
        SectionKind::CategoryOffsets,
        SectionKind::CategoryBytes,
        SectionKind::Profiles,
        SectionKind::TrendOffsets,
        SectionKind::TrendItems,
        SectionKind::TrendCounts,
        SectionKind::PageStarts,
        SectionKind::KeysOrderU16,
        SectionKind::KeysOrderU24,
        SectionKind::SeqEncoder,
    ];

    pub(crate) fn from_u32(v: u32) -> Option<SectionKind> {
        SectionKind::ALL.iter().copied().find(|k| *k as u32 == v)
    }

    /// Position in `ALL`, used to index per-kind arrays.
    pub(crate) fn slot(self) -> usize {
        SectionKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(0)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SectionKind::Meta => "meta",
            SectionKind::IdOffsets => "id_offsets",
            SectionKind::IdBytes => "id_bytes",
            SectionKind::KeysSorted => "keys_sorted",
            SectionKind::KeysOrder => "keys_order",
            SectionKind::RowsI8 => "rows_i8",
            SectionKind::RowsF16 => "rows_f16",
            SectionKind::RowsF32 => "rows_f32",
            SectionKind::FirstPassCodebook => "first_pass_codebook",
            SectionKind::FirstPassCodes => "first_pass_codes",
            SectionKind::FirstPassCentroids => "first_pass_centroids",
            SectionKind::FirstPassCentroidScales => "first_pass_centroid_scales",
            SectionKind::FirstPassLists => "first_pass_lists",
            SectionKind::FirstPassSlots => "first_pass_slots",
            SectionKind::RowScales => "row_scales",
            SectionKind::ItemBias => "item_bias",
            SectionKind::Categories => "categories",
            SectionKind::NeighbourOffsets => "neighbour_offsets",
            SectionKind::NeighbourTargets => "neighbour_targets",
            SectionKind::NeighbourWeights => "neighbour_weights",
            SectionKind::TransitionOffsets => "transition_offsets",
            SectionKind::TransitionTargets => "transition_targets",
            SectionKind::TransitionWeights => "transition_weights",
            SectionKind::NeighbourTargetsU16 => "neighbour_targets_u16",
            SectionKind::NeighbourWeightsF16 => "neighbour_weights_f16",
            SectionKind::TransitionTargetsU16 => "transition_targets_u16",
            SectionKind::TransitionWeightsF16 => "transition_weights_f16",
            SectionKind::NeighbourTargetsU24 => "neighbour_targets_u24",
            SectionKind::TransitionTargetsU24 => "transition_targets_u24",
            SectionKind::FirstPassRuns => "first_pass_runs",
            SectionKind::QueryTransform => "query_transform",
            SectionKind::QueryBias => "query_bias",
            SectionKind::CtxTime => "ctx_time",
            SectionKind::CtxDevice => "ctx_device",
            SectionKind::CtxGeo => "ctx_geo",
            SectionKind::CategoryOffsets => "category_offsets",
            SectionKind::CategoryBytes => "category_bytes",
            SectionKind::Profiles => "profiles",
            SectionKind::TrendOffsets => "trend_offsets",
            SectionKind::TrendItems => "trend_items",
            SectionKind::TrendCounts => "trend_counts",
            SectionKind::PageStarts => "page_starts",
            SectionKind::KeysOrderU16 => "keys_order_u16",
            SectionKind::KeysOrderU24 => "keys_order_u24",
            SectionKind::SeqEncoder => "seq_encoder",
        }
    }

    /// The format version that introduced the kind.
    pub(crate) fn since_version(self) -> u16 {
        match self {
            SectionKind::Profiles
            | SectionKind::TrendOffsets
            | SectionKind::TrendItems
            | SectionKind::TrendCounts => 2,
            SectionKind::FirstPassCodebook
            | SectionKind::FirstPassCodes
            | SectionKind::FirstPassCentroids
            | SectionKind::FirstPassCentroidScales
            | SectionKind::FirstPassLists
            | SectionKind::FirstPassSlots => 3,
            SectionKind::NeighbourTargetsU16
            | SectionKind::NeighbourWeightsF16
            | SectionKind::TransitionTargetsU16
            | SectionKind::TransitionWeightsF16 => 4,
            SectionKind::NeighbourTargetsU24 | SectionKind::TransitionTargetsU24 => 5,
            SectionKind::FirstPassRuns => 6,
            SectionKind::PageStarts | SectionKind::KeysOrderU16 | SectionKind::KeysOrderU24 => 7,
            SectionKind::SeqEncoder => 8,
            _ => 1,
        }
    }

    /// Global tables: allowed in shard 0 only.
    pub(crate) fn is_global(self) -> bool {
        // Kinds from 32 up are global, but for the per-item ones version 7 added after them.
        (self as u32) >= 32
            && !matches!(self, SectionKind::KeysOrderU16 | SectionKind::KeysOrderU24)
    }
}
