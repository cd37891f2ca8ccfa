//! Reading shards: validate everything once, then hand out borrowed, typed views.
//!
//! [`Shard::from_bytes`] copies the bytes into 8-byte aligned storage and runs [`validate`]:
//! header, checksum, the section table (bounds, alignment, exact coverage, no duplicates),
//! every section's length against the metadata, and every value the scorer trusts later
//! (finite floats, indices in range, sorted keys, UTF-8 ids; keys against their ids by sample,
//! the rest at each lookup, see [`KEY_SAMPLE_STRIDE`]). After that, [`Shard::view`] only
//! reinterprets validated byte ranges, and no scoring code can fail on shard contents.
//! None of this panics for any input bytes (see the `never_panics` property tests in
//! tests/core_format.rs).

use crate::error::{Error, ErrorKind, Result};
use crate::first_pass;
use crate::format::*;
use crate::hash;

/// Bytes stored with 8-byte alignment, so sections can be viewed as `u64`/`f32` slices without
/// copying. (A `Vec<u8>` promises only 1-byte alignment.)
#[derive(Clone)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn copy_from(bytes: &[u8]) -> AlignedBytes {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes {
            words: vec![0u64; len.div_ceil(8)],
            len,
        }
    }

    /// `len` bytes written in place by `fill` (e.g. straight from a JS `Uint8Array` with
    /// `copy_to_uninit`), without zeroing them first: a profile of the worker's cold start
    /// showed zeroing a 6.4 MB shard before the copy took 7% of it. `fill` must return the whole
    /// buffer it was given, initialised; anything else is rejected and the bytes are zeroed
    /// instead, so this is safe for any `fill`.
    pub fn filled_by(
        len: usize,
        fill: impl FnOnce(&mut [core::mem::MaybeUninit<u8>]) -> &mut [u8],
    ) -> AlignedBytes {
        let words = len.div_ceil(8);
        let mut storage: Vec<u64> = Vec::with_capacity(words);
        let spare = storage.spare_capacity_mut();
        let base = spare.as_mut_ptr().cast::<core::mem::MaybeUninit<u8>>();
        // SAFETY: `spare` is `words * 8 >= len` bytes of allocated, exclusively borrowed memory;
        // viewing it as `MaybeUninit<u8>` asks nothing of its contents.
        let bytes = unsafe { core::slice::from_raw_parts_mut(base, len) };
        let start = bytes.as_ptr() as usize;
        let written = fill(bytes);
        if written.as_ptr() as usize != start || written.len() != len {
            return AlignedBytes::zeroed(len);
        }
        // The padding after `len` (under 8 bytes) is zeroed, so every word is initialised.
        let tail = words * 8 - len;
        // SAFETY: the tail bytes lie inside the allocation, after the `len` written ones.
        unsafe { core::ptr::write_bytes(base.add(len), 0, tail) };
        // SAFETY: `fill` returned `&mut [u8]` over exactly the first `len` bytes, so they are
        // initialised (a `&mut [u8]` can only point at initialised bytes), and the tail was
        // zeroed above: all `words` words are initialised.
        unsafe { storage.set_len(words) };
        AlignedBytes {
            words: storage,
            len,
        }
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// The fixed header of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The format version the shard was written in (`MIN_VERSION..=VERSION`).
    pub version: u16,
    /// Identifies the model; equal in all shards of one model.
    pub model_id: u64,
    /// This shard's position in the model.
    pub shard_index: u32,
    /// Number of shards in the model.
    pub shard_count: u32,
    /// Global index of this shard's first item.
    pub item_start: u32,
    /// Number of items in this shard.
    pub item_count: u32,
    /// Total length in bytes.
    pub total_len: u64,
    /// The verified XXH3-64 checksum of the shard (see `format`).
    pub checksum: u64,
    /// What the shard holds of its items (version 7; whole before).
    pub role: ShardRole,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// Where each section of a validated shard lives.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    header: Header,
    meta: Meta,
    spans: [Option<Span>; SectionKind::ALL.len()],
}

/// An owned, validated shard.
#[derive(Clone)]
pub struct Shard {
    bytes: AlignedBytes,
    layout: Layout,
}

impl core::fmt::Debug for Shard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shard")
            .field("header", &self.layout.header)
            .field("meta", &self.layout.meta)
            .finish()
    }
}

impl Shard {
    /// Copies and validates a shard.
    ///
    /// # Errors
    /// Any structural or value problem, as a typed [`Error`]; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Shard> {
        Shard::from_aligned(AlignedBytes::copy_from(bytes))
    }

    /// Validates a shard already in aligned storage, without copying it.
    ///
    /// # Errors
    /// As [`Shard::from_bytes`].
    pub fn from_aligned(bytes: AlignedBytes) -> Result<Shard> {
        let layout = validate(bytes.as_bytes())?;
        Ok(Shard { bytes, layout })
    }

    /// The shard's header.
    pub fn header(&self) -> &Header {
        &self.layout.header
    }

    /// The model metadata carried by the shard.
    pub fn meta(&self) -> &Meta {
        &self.layout.meta
    }

    /// The raw bytes (as given to `from_bytes`).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_bytes()
    }

    /// Borrowed typed views of the sections. Cheap: no copying, no re-validation.
    pub fn view(&self) -> ShardView<'_> {
        self.layout.view(self.bytes.as_bytes())
    }
}

/// A table of strings: `offsets` (n+1 entries) into UTF-8 `text`. Validated: offsets start at 0,
/// never decrease, end at `text.len()` and fall on character boundaries.
#[derive(Debug, Clone, Copy)]
pub struct StrTable<'a> {
    offsets: &'a [u32],
    // Raw bytes, validated as UTF-8 once in `validate`; `get` converts only the few strings a
    // request returns, so building a view per request costs nothing per item.
    text: &'a [u8],
}

impl<'a> StrTable<'a> {
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th string, or "" past the end.
    pub fn get(&self, i: usize) -> &'a str {
        core::str::from_utf8(self.bytes(i)).unwrap_or("")
    }

    /// The `i`-th string's UTF-8 bytes (empty past the end), without converting them to `str`:
    /// for work on every id, such as checking their keys at load, where `get` would check each
    /// id's UTF-8 again after `validate` checked the whole text.
    pub(crate) fn bytes(&self, i: usize) -> &'a [u8] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.text.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// All strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// The item rows of a shard.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// int8 rows (row-major, `stride` elements each) and one scale per row.
    I8 { rows: &'a [i8], scales: &'a [f32] },
    /// f16 rows as raw bits.
    F16 { rows: &'a [u16] },
    /// f32 rows.
    F32 { rows: &'a [f32] },
}

/// A sparse item-to-item table in CSR form: for local item `i`, entries
/// `offsets[i]..offsets[i+1]` of `targets` (global item indices) and `weights` (≥ 0), each
/// stored wide or, from format 4, narrow.
#[derive(Debug, Clone, Copy)]
pub struct SeqTable<'a> {
    pub offsets: &'a [u32],
    pub targets: SeqTargets<'a>,
    pub weights: SeqWeights<'a>,
}

/// The targets of a sequence table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqTargets<'a> {
    U32(&'a [u32]),
    /// Format 4, models of at most 65,536 items.
    U16(&'a [u16]),
    /// Format 5, models of at most 16,777,216 items: 3 little-endian bytes each.
    U24(&'a [[u8; 3]]),
}

/// The weights of a sequence table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqWeights<'a> {
    F32(&'a [f32]),
    /// Format 4: f16 bits.
    F16(&'a [u16]),
}

impl SeqTargets<'_> {
    fn len(&self) -> usize {
        match self {
            SeqTargets::U32(t) => t.len(),
            SeqTargets::U16(t) => t.len(),
            SeqTargets::U24(t) => t.len(),
        }
    }
}

/// The local index of each sorted key: u32, or (format 7) u16 or u24 where the shard's item count
/// allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyOrder<'a> {
    U32(&'a [u32]),
    U16(&'a [u16]),
    U24(&'a [[u8; 3]]),
}

impl KeyOrder<'_> {
    /// The local index of the `pos`-th smallest key.
    pub fn get(&self, pos: usize) -> Option<u32> {
        match self {
            KeyOrder::U32(o) => o.get(pos).copied(),
            KeyOrder::U16(o) => o.get(pos).map(|&x| u32::from(x)),
            KeyOrder::U24(o) => o.get(pos).map(|&x| u24(x)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            KeyOrder::U32(o) => o.len(),
            KeyOrder::U16(o) => o.len(),
            KeyOrder::U24(o) => o.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 3-byte little-endian target.
fn u24(b: [u8; 3]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

impl<'a> SeqTable<'a> {
    /// Appends `(target, scale × weight)` for each entry of local item `i` (none when out of
    /// range). The product is taken in f32 after widening, so a wide table gives exactly the
    /// sums it always gave.
    pub fn extend_scaled(&self, i: usize, scale: f32, out: &mut Vec<(u32, f32)>) {
        let Some(r) = csr_range(self.offsets, i, i + 1) else {
            return;
        };
        let f16 = |b: u16| half::f16::from_bits(b).to_f32();
        let wide = |x: f32| x;
        match (self.targets, self.weights) {
            (SeqTargets::U32(t), SeqWeights::F32(w)) => extend(t, w, r, |g| g, wide, scale, out),
            (SeqTargets::U32(t), SeqWeights::F16(w)) => extend(t, w, r, |g| g, f16, scale, out),
            (SeqTargets::U16(t), SeqWeights::F32(w)) => {
                extend(t, w, r, u32::from, wide, scale, out)
            }
            (SeqTargets::U16(t), SeqWeights::F16(w)) => extend(t, w, r, u32::from, f16, scale, out),
            (SeqTargets::U24(t), SeqWeights::F32(w)) => extend(t, w, r, u24, wide, scale, out),
            (SeqTargets::U24(t), SeqWeights::F16(w)) => extend(t, w, r, u24, f16, scale, out),
        }
    }

    /// Bytes per entry as stored: target and weight, each wide or narrow.
    pub fn entry_bytes(&self) -> usize {
        let target = match self.targets {
            SeqTargets::U32(_) => 4,
            SeqTargets::U16(_) => 2,
            SeqTargets::U24(_) => 3,
        };
        let weight = match self.weights {
            SeqWeights::F32(_) => 4,
            SeqWeights::F16(_) => 2,
        };
        target + weight
    }

    /// The `(target, weight)` entries of local item `i`; empty when out of range.
    pub fn row(&self, i: usize) -> Vec<(u32, f32)> {
        let mut out = Vec::new();
        self.extend_scaled(i, 1.0, &mut out);
        out
    }
}

/// Appends `(target, scale × widen(weight))` for the entries `range` of one table's targets and
/// weights, in whichever widths they are stored (one loop, monomorphised per pair of widths).
fn extend<T: Copy, W: Copy>(
    targets: &[T],
    weights: &[W],
    range: core::ops::Range<usize>,
    target: impl Fn(T) -> u32,
    widen: impl Fn(W) -> f32,
    scale: f32,
    out: &mut Vec<(u32, f32)>,
) {
    if let (Some(t), Some(w)) = (targets.get(range.clone()), weights.get(range)) {
        out.extend(
            t.iter()
                .zip(w)
                .map(|(&g, &x)| (target(g), scale * widen(x))),
        );
    }
}

/// The entry range `offsets[from]..offsets[to]`; `None` when an index is out of range or the
/// offsets decrease.
fn csr_range(offsets: &[u32], from: usize, to: usize) -> Option<core::ops::Range<usize>> {
    match (offsets.get(from), offsets.get(to)) {
        (Some(&start), Some(&end)) if start <= end => Some(start as usize..end as usize),
        _ => None,
    }
}

/// Entries `offsets[from]..offsets[to]` of two parallel CSR value arrays; empty when any index
/// is out of range or the offsets decrease.
fn csr_slices<'a, A, B>(
    offsets: &[u32],
    from: usize,
    to: usize,
    a: &'a [A],
    b: &'a [B],
) -> (&'a [A], &'a [B]) {
    match csr_range(offsets, from, to).map(|r| (a.get(r.clone()), b.get(r))) {
        Some((Some(a), Some(b))) => (a, b),
        _ => (&[], &[]),
    }
}

/// The model-wide tables stored in shard 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalTables<'a> {
    /// `dim x dim` row-major matrix applied to the session vector (identity when absent).
    pub query_transform: Option<&'a [f32]>,
    /// Constant added to every query (`dim`).
    pub query_bias: Option<&'a [f32]>,
    /// `TIME_BINS x dim` context rows.
    pub ctx_time: Option<&'a [f32]>,
    /// `DEVICE_CLASSES x dim` context rows.
    pub ctx_device: Option<&'a [f32]>,
    /// `geo_buckets x dim` context rows.
    pub ctx_geo: Option<&'a [f32]>,
    /// Category names, in bit order.
    pub category_names: Option<StrTable<'a>>,
    /// `PROFILE_BUCKETS x PROFILE_FIELDS` session-length profiles (neutral when absent).
    pub profiles: Option<&'a [f32]>,
    /// Time-bucketed item counts (see `Meta::trend_buckets`).
    pub trend: Option<TrendTable<'a>>,
    /// A paged model's page table (`format::SectionKind::PageStarts`), in its index shard 0.
    pub page_starts: Option<&'a [u32]>,
    /// The session encoder's section (format 8; validated by
    /// [`crate::encoder::EncoderView::parse`]).
    pub encoder: Option<&'a [u8]>,
}

/// Item counts per time bucket, in CSR form: bucket `b` holds entries
/// `offsets[b]..offsets[b+1]` of `items` (global item indices) and `counts` (≥ 0).
#[derive(Debug, Clone, Copy)]
pub struct TrendTable<'a> {
    pub offsets: &'a [u32],
    pub items: &'a [u32],
    pub counts: &'a [f32],
}

impl<'a> TrendTable<'a> {
    /// The (items, counts) of buckets `from..to`; empty when out of range.
    pub fn buckets(&self, from: usize, to: usize) -> (&'a [u32], &'a [f32]) {
        csr_slices(self.offsets, from, to, self.items, self.counts)
    }
}

/// Borrowed, typed, validated view of one shard.
#[derive(Debug, Clone)]
pub struct ShardView<'a> {
    pub header: Header,
    pub meta: Meta,
    pub ids: StrTable<'a>,
    /// Item keys (`hash::item_key`) sorted ascending, and the local index of each.
    pub keys_sorted: &'a [u64],
    pub keys_order: KeyOrder<'a>,
    pub rows: Rows<'a>,
    pub bias: &'a [f32],
    pub categories: Option<&'a [u64]>,
    pub seq: [Option<SeqTable<'a>>; SEQ_TABLES],
    /// The two-stage scan's first pass (`crate::first_pass`), when the shard carries it.
    pub first_pass: Option<first_pass::FirstPassShard<'a>>,
    pub global: GlobalTables<'a>,
}

impl<'a> ShardView<'a> {
    /// Validates `bytes` in place and borrows them.
    ///
    /// # Errors
    /// As [`Shard::from_bytes`], and also when `bytes` is not 8-byte aligned (use
    /// [`Shard::from_bytes`], which copies, for arbitrary buffers).
    pub fn parse(bytes: &'a [u8]) -> Result<ShardView<'a>> {
        if (bytes.as_ptr() as usize) % 8 != 0 {
            return Err(Error::argument(
                "shard buffer is not 8-byte aligned; use Shard::from_bytes",
            ));
        }
        Ok(validate(bytes)?.view(bytes))
    }

    /// Local index of the item with this key, by binary search.
    ///
    /// The item found is the answer only if it is one of this shard's items and its id hashes
    /// to `key`: loading checks the keys' order and a sample of them against their ids
    /// ([`KEY_SAMPLE_STRIDE`]), and each lookup checks the one it returns, so a key that does
    /// not match its id never names an item.
    pub fn find_key(&self, key: u64) -> Option<u32> {
        let pos = self.keys_sorted.binary_search(&key).ok()?;
        let local = self.keys_order.get(pos)?;
        let named = (local as usize) < self.ids.len()
            && hash::item_key_of_bytes(self.ids.bytes(local as usize)) == key;
        named.then_some(local)
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn align_up(x: usize) -> Option<usize> {
    x.checked_add(SECTION_ALIGN - 1)
        .map(|v| v / SECTION_ALIGN * SECTION_ALIGN)
}

/// Reads and checks the fixed header, including the checksum.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < HEADER_LEN {
        return Err(ErrorKind::Truncated {
            what: "shard header",
            need: HEADER_LEN as u64,
            got: bytes.len() as u64,
        }
        .into());
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(ErrorKind::BadMagic.into());
    }
    let marker = read_u32(bytes, ENDIAN_AT);
    if marker == ENDIAN_MARKER.swap_bytes() {
        return Err(ErrorKind::WrongEndianness.into());
    }
    if marker != ENDIAN_MARKER {
        return Err(ErrorKind::BadMagic.into());
    }
    let version = read_u16(bytes, VERSION_AT);
    if !(MIN_VERSION..=VERSION).contains(&version) {
        return Err(ErrorKind::UnsupportedVersion {
            found: version,
            supported: VERSION,
        }
        .into());
    }
    if read_u16(bytes, HEADER_LEN_AT) as usize != HEADER_LEN {
        return Err(Error::invalid("header length is not 64"));
    }
    let total_len = read_u64(bytes, TOTAL_LEN_AT);
    if total_len != bytes.len() as u64 {
        return Err(ErrorKind::LengthMismatch {
            header: total_len,
            actual: bytes.len() as u64,
        }
        .into());
    }
    let expected = read_u64(bytes, CHECKSUM_AT);
    let actual = hash::shard_checksum(bytes, CHECKSUM_AT);
    if expected != actual {
        return Err(ErrorKind::ChecksumMismatch { expected, actual }.into());
    }
    let flags = read_u32(bytes, FLAGS_AT);
    let role = match ShardRole::from_flags(flags) {
        Some(role) if version >= 7 || role == ShardRole::Whole => role,
        _ => {
            return Err(Error::invalid(format!(
                "header flags {flags:#x} name no shard role of format version {version}"
            )))
        }
    };
    let header = Header {
        version,
        model_id: read_u64(bytes, MODEL_ID_AT),
        shard_index: read_u32(bytes, SHARD_INDEX_AT),
        shard_count: read_u32(bytes, SHARD_COUNT_AT),
        item_start: read_u32(bytes, ITEM_START_AT),
        item_count: read_u32(bytes, ITEM_COUNT_AT),
        total_len,
        checksum: expected,
        role,
    };
    if header.shard_count == 0 || header.shard_index >= header.shard_count {
        return Err(Error::invalid(format!(
            "shard index {} out of range for {} shards",
            header.shard_index, header.shard_count
        )));
    }
    Ok(header)
}

/// Full validation of one shard. Returns the layout `view` trusts.
pub(crate) fn validate(bytes: &[u8]) -> Result<Layout> {
    let header = parse_header(bytes)?;
    let spans = section_spans(bytes, &header)?;
    let span = |k: SectionKind| spans[k.slot()];
    let meta_span = span(SectionKind::Meta).ok_or(ErrorKind::MissingSection { kind: "meta" })?;
    let meta = Meta::decode(
        &bytes[meta_span.start..meta_span.start + meta_span.len],
        header.version,
    )?;
    if u64::from(header.item_start) + u64::from(header.item_count) > u64::from(meta.total_items) {
        return Err(Error::invalid(format!(
            "items {}..{} exceed the model's {} items",
            header.item_start,
            u64::from(header.item_start) + u64::from(header.item_count),
            meta.total_items
        )));
    }
    check_lengths(&spans, &header, &meta)?;
    let layout = Layout {
        header,
        meta,
        spans,
    };
    check_values(&layout.view(bytes))?;
    Ok(layout)
}

type Spans = [Option<Span>; SectionKind::ALL.len()];

/// Reads the section table: every entry in bounds, sections back to back at aligned offsets
/// up to the end of the shard, each known kind at most once.
fn section_spans(bytes: &[u8], header: &Header) -> Result<Spans> {
    let count = read_u32(bytes, SECTION_COUNT_AT);
    if count > MAX_SECTIONS {
        return Err(Error::section_table(format!(
            "{count} sections, at most {MAX_SECTIONS}"
        )));
    }
    let table_end = HEADER_LEN + count as usize * SECTION_ENTRY_LEN;
    if table_end > bytes.len() {
        return Err(ErrorKind::Truncated {
            what: "section table",
            need: table_end as u64,
            got: bytes.len() as u64,
        }
        .into());
    }
    let mut spans: Spans = [None; SectionKind::ALL.len()];
    let mut next = align_up(table_end).ok_or_else(|| Error::section_table("overflow"))?;
    let mut end = table_end;
    for i in 0..count as usize {
        let at = HEADER_LEN + i * SECTION_ENTRY_LEN;
        let (kind, flags) = (
            read_u32(bytes, at + ENTRY_KIND_AT),
            read_u32(bytes, at + ENTRY_FLAGS_AT),
        );
        let (offset, len) = (
            read_u64(bytes, at + ENTRY_OFFSET_AT),
            read_u64(bytes, at + ENTRY_LENGTH_AT),
        );
        if flags & !SECTION_FLAG_OPTIONAL != 0 {
            return Err(Error::section_table(format!(
                "section {i}: unknown flags {flags:#x}"
            )));
        }
        // Sections must follow one another at the next aligned offset: this rules out overlap,
        // gaps that could hide data, and unsorted tables in one comparison.
        if offset != next as u64 {
            return Err(Error::section_table(format!(
                "section {i} (kind {kind}) starts at {offset}, expected {next}"
            )));
        }
        let stop = offset
            .checked_add(len)
            .filter(|&s| s <= bytes.len() as u64)
            .ok_or_else(|| {
                Error::section_table(format!("section {i} (kind {kind}) out of bounds"))
            })? as usize;
        end = stop;
        next = align_up(stop).ok_or_else(|| Error::section_table("overflow"))?;
        let span = Span {
            start: offset as usize,
            len: len as usize,
        };
        record_span(&mut spans, header, kind, flags, span)?;
    }
    if end != bytes.len() {
        return Err(Error::section_table(format!(
            "sections end at {end} but the shard has {} bytes",
            bytes.len()
        )));
    }
    Ok(spans)
}

/// Files one section under its kind: known kinds once each, in a format version that has them,
/// global ones in shard 0 only; unknown kinds are skipped when flagged optional.
fn record_span(
    spans: &mut Spans,
    header: &Header,
    kind: u32,
    flags: u32,
    span: Span,
) -> Result<()> {
    let Some(k) = SectionKind::from_u32(kind) else {
        if flags & SECTION_FLAG_OPTIONAL != 0 {
            return Ok(());
        }
        return Err(Error::section_table(format!(
            "unknown required section kind {kind}"
        )));
    };
    if spans[k.slot()].is_some() {
        return Err(Error::section_table(format!(
            "duplicate section `{}`",
            k.name()
        )));
    }
    if k.since_version() > header.version {
        return Err(Error::section_table(format!(
            "section `{}` does not exist in format version {}",
            k.name(),
            header.version
        )));
    }
    if k.is_global() && (header.shard_index != 0 || header.role == ShardRole::Page) {
        return Err(Error::section_table(format!(
            "global section `{}` outside shard 0",
            k.name()
        )));
    }
    if k == SectionKind::PageStarts && header.role != ShardRole::Index {
        return Err(Error::section_table(
            "a page table outside a paged model's index",
        ));
    }
    spans[k.slot()] = Some(span);
    Ok(())
}

/// The section spans of one shard, checked against the lengths the metadata implies.
struct Lengths<'a> {
    spans: &'a Spans,
    meta: &'a Meta,
}

impl Lengths<'_> {
    fn get(&self, k: SectionKind) -> Option<Span> {
        self.spans[k.slot()]
    }

    fn len(&self, k: SectionKind) -> u64 {
        self.get(k).map_or(0, |s| s.len as u64)
    }

    fn exact(&self, k: SectionKind, expected: u64, required: bool) -> Result<()> {
        match self.get(k) {
            None if required => Err(ErrorKind::MissingSection { kind: k.name() }.into()),
            None => Ok(()),
            Some(s) if s.len as u64 != expected => Err(ErrorKind::BadSectionLength {
                kind: k.name(),
                expected,
                got: s.len as u64,
            }
            .into()),
            Some(_) => Ok(()),
        }
    }

    fn multiple(&self, k: SectionKind, of: u64) -> Result<()> {
        match self.get(k) {
            Some(s) if s.len as u64 % of != 0 => Err(Error::invalid(format!(
                "section `{}` length {} is not a multiple of {of}",
                k.name(),
                s.len
            ))),
            _ => Ok(()),
        }
    }

    /// The key order of `n` items: exactly one of its three widths.
    fn key_order(&self, n: u64) -> Result<()> {
        use SectionKind as K;
        let widths = [
            (K::KeysOrder, 4),
            (K::KeysOrderU16, 2),
            (K::KeysOrderU24, 3),
        ];
        let mut present = widths.iter().filter(|(k, _)| self.get(*k).is_some());
        match (present.next(), present.next()) {
            (Some(&(k, width)), None) => self.exact(k, width * n, true),
            (Some(a), Some(b)) => Err(Error::section_table(format!(
                "both `{}` and `{}`",
                a.0.name(),
                b.0.name()
            ))),
            (None, _) => Err(ErrorKind::MissingSection {
                kind: K::KeysOrder.name(),
            }
            .into()),
        }
    }

    fn not_in_role(&self, k: SectionKind, role: ShardRole) -> Result<()> {
        match self.get(k) {
            Some(_) => Err(Error::section_table(format!(
                "section `{}` does not belong in a {role:?} shard",
                k.name()
            ))),
            None => Ok(()),
        }
    }

    fn absent(&self, k: SectionKind) -> Result<()> {
        match self.get(k) {
            Some(_) => Err(Error::section_table(format!(
                "section `{}` does not belong in a {:?} shard",
                k.name(),
                self.meta.dtype
            ))),
            None => Ok(()),
        }
    }

    /// A sequence table over `rows` items: its offsets, exactly one targets section (u32, u16
    /// or u24) and exactly one weights section (f32 or f16), with as many entries each; or none
    /// of these sections.
    fn seq_table(&self, k: SeqSectionKinds, rows: u64) -> Result<()> {
        let what = format!("sequence table `{}`", k.offsets.name());
        if k.all().iter().all(|&s| self.get(s).is_none()) {
            return Ok(());
        }
        // The one present section of a group and its element size.
        let one_of = |group: &[(SectionKind, u64)]| -> Result<(SectionKind, u64)> {
            let mut present = group.iter().filter(|(kind, _)| self.get(*kind).is_some());
            match (present.next(), present.next()) {
                (Some(&one), None) => Ok(one),
                (Some(a), Some(b)) => Err(Error::section_table(format!(
                    "{what} has both `{}` and `{}`",
                    a.0.name(),
                    b.0.name()
                ))),
                (None, _) => Err(Error::section_table(format!("{what} is incomplete"))),
            }
        };
        if self.get(k.offsets).is_none() {
            return Err(Error::section_table(format!("{what} is incomplete")));
        }
        let (targets, target_bytes) = one_of(&k.target_widths())?;
        let (weights, weight_bytes) = one_of(&[(k.weights, 4), (k.weights_f16, 2)])?;
        self.exact(k.offsets, 4 * (rows + 1), true)?;
        self.multiple(targets, target_bytes)?;
        let entries = self.len(targets) / target_bytes;
        self.exact(weights, weight_bytes * entries, true)
    }

    /// A CSR table (offsets over `rows`, targets, weights): all three sections or none.
    fn csr(&self, kinds: [SectionKind; 3], rows: u64, what: &str) -> Result<bool> {
        let present = kinds.map(|k| self.get(k).is_some());
        if !present.iter().any(|&p| p) {
            return Ok(false);
        }
        if !present.iter().all(|&p| p) {
            return Err(Error::section_table(format!("{what} is incomplete")));
        }
        self.exact(kinds[0], 4 * (rows + 1), true)?;
        self.multiple(kinds[1], 4)?;
        self.exact(kinds[2], self.len(kinds[1]), true)?;
        Ok(true)
    }
}

/// Checks that required sections exist and every section has the length the metadata implies.
fn check_lengths(spans: &Spans, header: &Header, meta: &Meta) -> Result<()> {
    use SectionKind as K;
    let l = Lengths { spans, meta };
    let n = u64::from(header.item_count);
    let stride = u64::from(meta.row_stride());
    // A paged model's index holds no item data and its pages no index.
    let (index_kinds, item_kinds) = role_kinds();
    let (item_data, index) = match header.role {
        ShardRole::Whole => (true, true),
        ShardRole::Index => (false, true),
        ShardRole::Page => (true, false),
    };
    if !item_data {
        let seq_kinds = SEQ_SECTION_KINDS.iter().flat_map(|kinds| kinds.all());
        for k in item_kinds.iter().copied().chain(seq_kinds) {
            l.not_in_role(k, header.role)?;
        }
    }
    if index {
        l.exact(K::KeysSorted, 8 * n, true)?;
        l.key_order(n)?;
        check_first_pass_lengths(&l, n, stride)?;
        l.exact(K::Categories, 8 * n, false)?;
    } else {
        for &k in index_kinds {
            l.not_in_role(k, header.role)?;
        }
    }
    if header.role == ShardRole::Index {
        if meta.dtype != Dtype::I8 || l.get(K::FirstPassCodes).is_none() {
            return Err(Error::section_table(
                "a paged model's index needs int8 rows and first-pass codes",
            ));
        }
        if header.shard_index == 0 {
            l.multiple(K::PageStarts, 4)?;
            if l.len(K::PageStarts) < 8 {
                return Err(ErrorKind::MissingSection {
                    kind: K::PageStarts.name(),
                }
                .into());
            }
        }
    }
    if item_data {
        check_item_lengths(&l, n, stride)?;
    }
    check_global_lengths(&l, header)
}

/// The sections an index shard holds and the ones a page holds (sequence tables aside).
fn role_kinds() -> (&'static [SectionKind], &'static [SectionKind]) {
    use SectionKind as K;
    (
        &[
            K::KeysSorted,
            K::KeysOrder,
            K::KeysOrderU16,
            K::KeysOrderU24,
            K::Categories,
            K::FirstPassCodebook,
            K::FirstPassCodes,
            K::FirstPassCentroids,
            K::FirstPassCentroidScales,
            K::FirstPassLists,
            K::FirstPassSlots,
            K::FirstPassRuns,
        ],
        &[
            K::IdOffsets,
            K::IdBytes,
            K::RowsI8,
            K::RowsF16,
            K::RowsF32,
            K::RowScales,
            K::ItemBias,
        ],
    )
}

/// Ids, rows, bias and sequence tables: what whole shards and pages hold of their items.
fn check_item_lengths(l: &Lengths<'_>, n: u64, stride: u64) -> Result<()> {
    use SectionKind as K;
    let meta = l.meta;
    l.exact(K::IdOffsets, 4 * (n + 1), true)?;
    if l.get(K::IdBytes).is_none() {
        return Err(ErrorKind::MissingSection { kind: "id_bytes" }.into());
    }
    let (rows, bytes, others): (K, u64, &[K]) = match meta.dtype {
        Dtype::I8 => {
            l.exact(K::RowScales, 4 * n, true)?;
            (K::RowsI8, 1, &[K::RowsF16, K::RowsF32])
        }
        Dtype::F16 => (K::RowsF16, 2, &[K::RowsI8, K::RowScales, K::RowsF32]),
        Dtype::F32 => (K::RowsF32, 4, &[K::RowsI8, K::RowScales, K::RowsF16]),
    };
    l.exact(rows, bytes * n * stride, true)?;
    for &k in others {
        l.absent(k)?;
    }
    l.exact(K::ItemBias, 4 * n, true)?;
    for kinds in SEQ_SECTION_KINDS {
        l.seq_table(kinds, n)?;
    }
    Ok(())
}

/// The first pass's sections: all or none, int8 models only, lengths from the stride, the
/// number of centroids (from their scales) and the number of blocks (from the codes). The
/// lists and slots are checked against each other in `check_first_pass_values`.
fn check_first_pass_lengths(l: &Lengths<'_>, n: u64, stride: u64) -> Result<()> {
    use SectionKind as K;
    let kinds = [
        K::FirstPassCodebook,
        K::FirstPassCodes,
        K::FirstPassCentroids,
        K::FirstPassCentroidScales,
        K::FirstPassLists,
    ];
    let present = kinds.map(|k| l.get(k).is_some());
    // Which item each slot holds: a slot table, or (format 6) runs; exactly one of them.
    let (slots, runs) = (
        l.get(K::FirstPassSlots).is_some(),
        l.get(K::FirstPassRuns).is_some(),
    );
    if !present.iter().any(|&p| p) && !slots && !runs {
        return Ok(());
    }
    if !present.iter().all(|&p| p) || slots == runs {
        return Err(Error::section_table("first-pass sections are incomplete"));
    }
    if l.meta.dtype != Dtype::I8 {
        return l.absent(K::FirstPassCodebook);
    }
    let block = first_pass::block_bytes(stride as usize) as u64;
    l.exact(
        K::FirstPassCodebook,
        4 * first_pass::codebook_len(stride as usize) as u64,
        true,
    )?;
    l.multiple(K::FirstPassCentroidScales, 4)?;
    let k = l.len(K::FirstPassCentroidScales) / 4;
    if k == 0 || k > first_pass::MAX_CLUSTERS as u64 {
        return Err(Error::invalid(format!(
            "{k} first-pass centroids, expected 1..={}",
            first_pass::MAX_CLUSTERS
        )));
    }
    l.exact(K::FirstPassCentroids, k * stride, true)?;
    l.exact(K::FirstPassLists, 8 * k, true)?;
    l.multiple(K::FirstPassCodes, block)?;
    let blocks = l.len(K::FirstPassCodes) / block;
    // Every item has a slot, and a cluster pads at most its last block.
    if blocks * first_pass::BLOCK_ITEMS as u64 > n + k * first_pass::BLOCK_ITEMS as u64 {
        return Err(Error::invalid(format!(
            "{blocks} first-pass blocks for {n} items in {k} clusters"
        )));
    }
    if runs {
        l.exact(K::FirstPassRuns, 8 * k, true)
    } else {
        l.exact(
            K::FirstPassSlots,
            4 * blocks * first_pass::BLOCK_ITEMS as u64,
            true,
        )
    }
}

/// The lengths of the model-wide tables (shard 0).
fn check_global_lengths(l: &Lengths<'_>, header: &Header) -> Result<()> {
    use SectionKind as K;
    let meta = l.meta;
    let dim = u64::from(meta.dim);
    l.exact(K::QueryTransform, 4 * dim * dim, false)?;
    l.exact(K::QueryBias, 4 * dim, false)?;
    l.exact(K::CtxTime, 4 * TIME_BINS as u64 * dim, false)?;
    l.exact(K::CtxDevice, 4 * DEVICE_CLASSES as u64 * dim, false)?;
    l.exact(K::CtxGeo, 4 * u64::from(meta.geo_buckets) * dim, false)?;
    // Shard 0 of a model holds its global tables; a paged model's pages hold none.
    let holds_globals = header.shard_index == 0 && header.role != ShardRole::Page;
    let names_required = holds_globals && meta.category_count > 0;
    l.exact(
        K::CategoryOffsets,
        4 * (u64::from(meta.category_count) + 1),
        names_required,
    )?;
    if l.get(K::CategoryOffsets).is_some() != l.get(K::CategoryBytes).is_some() {
        return Err(Error::section_table("category names are incomplete"));
    }
    l.exact(
        K::Profiles,
        4 * (PROFILE_BUCKETS * PROFILE_FIELDS) as u64,
        false,
    )?;
    let trend = [K::TrendOffsets, K::TrendItems, K::TrendCounts];
    if trend.iter().any(|&k| l.get(k).is_some()) && !meta.has_trend() {
        return Err(Error::section_table(
            "trend table in a model without trend buckets",
        ));
    }
    let has_trend = l.csr(trend, u64::from(meta.trend_buckets), "trend table")?;
    if holds_globals && meta.has_trend() && !has_trend {
        return Err(ErrorKind::MissingSection {
            kind: K::TrendOffsets.name(),
        }
        .into());
    }
    Ok(())
}

impl Layout {
    /// Typed views of the validated sections. Cannot fail: `validate` established that every
    /// span is in bounds, 16-byte aligned within 8-byte aligned storage, and a whole number of
    /// elements long, which is all `bytemuck::cast_slice` requires.
    pub(crate) fn view<'a>(&self, bytes: &'a [u8]) -> ShardView<'a> {
        use SectionKind as K;
        let raw = |k: K| -> &'a [u8] {
            match self.spans[k.slot()] {
                Some(s) => &bytes[s.start..s.start + s.len],
                None => &[],
            }
        };
        let present = |k: K| self.spans[k.slot()].is_some();
        fn cast<T: bytemuck::AnyBitPattern>(b: &[u8]) -> &[T] {
            // An absent section is an empty slice of alignment 1 (an index holds no rows, a
            // page no keys), which `cast_slice` would refuse for wider types.
            if b.is_empty() {
                return &[];
            }
            bytemuck::cast_slice(b)
        }
        let strings = |off: K, text: K| StrTable {
            offsets: cast(raw(off)),
            text: raw(text),
        };
        let opt_f32 = |k: K| present(k).then(|| cast::<f32>(raw(k)));
        let seq = |k: SeqSectionKinds| {
            present(k.offsets).then(|| SeqTable {
                offsets: cast(raw(k.offsets)),
                targets: if present(k.targets_u16) {
                    SeqTargets::U16(cast(raw(k.targets_u16)))
                } else if present(k.targets_u24) {
                    SeqTargets::U24(cast(raw(k.targets_u24)))
                } else {
                    SeqTargets::U32(cast(raw(k.targets)))
                },
                weights: if present(k.weights_f16) {
                    SeqWeights::F16(cast(raw(k.weights_f16)))
                } else {
                    SeqWeights::F32(cast(raw(k.weights)))
                },
            })
        };
        ShardView {
            header: self.header,
            meta: self.meta.clone(),
            ids: strings(K::IdOffsets, K::IdBytes),
            keys_sorted: cast(raw(K::KeysSorted)),
            keys_order: if present(K::KeysOrderU16) {
                KeyOrder::U16(cast(raw(K::KeysOrderU16)))
            } else if present(K::KeysOrderU24) {
                KeyOrder::U24(cast(raw(K::KeysOrderU24)))
            } else {
                KeyOrder::U32(cast(raw(K::KeysOrder)))
            },
            rows: match self.meta.dtype {
                Dtype::I8 => Rows::I8 {
                    rows: cast(raw(K::RowsI8)),
                    scales: cast(raw(K::RowScales)),
                },
                Dtype::F32 => Rows::F32 {
                    rows: cast(raw(K::RowsF32)),
                },
                Dtype::F16 => Rows::F16 {
                    rows: cast(raw(K::RowsF16)),
                },
            },
            bias: cast(raw(K::ItemBias)),
            categories: present(K::Categories).then(|| cast::<u64>(raw(K::Categories))),
            seq: SEQ_SECTION_KINDS.map(seq),
            first_pass: present(K::FirstPassCodes).then(|| first_pass::FirstPassShard {
                centroids: cast(raw(K::FirstPassCentroids)),
                centroid_scales: cast(raw(K::FirstPassCentroidScales)),
                codebook: cast(raw(K::FirstPassCodebook)),
                lists: cast(raw(K::FirstPassLists)),
                codes: raw(K::FirstPassCodes),
                members: if present(K::FirstPassRuns) {
                    first_pass::Members::Runs(cast(raw(K::FirstPassRuns)))
                } else {
                    first_pass::Members::Slots(cast(raw(K::FirstPassSlots)))
                },
            }),
            global: GlobalTables {
                query_transform: opt_f32(K::QueryTransform),
                query_bias: opt_f32(K::QueryBias),
                ctx_time: opt_f32(K::CtxTime),
                ctx_device: opt_f32(K::CtxDevice),
                ctx_geo: opt_f32(K::CtxGeo),
                category_names: present(K::CategoryOffsets)
                    .then(|| strings(K::CategoryOffsets, K::CategoryBytes)),
                profiles: opt_f32(K::Profiles),
                trend: present(K::TrendOffsets).then(|| TrendTable {
                    offsets: cast(raw(K::TrendOffsets)),
                    items: cast(raw(K::TrendItems)),
                    counts: cast(raw(K::TrendCounts)),
                }),
                page_starts: present(K::PageStarts).then(|| cast::<u32>(raw(K::PageStarts))),
                encoder: present(K::SeqEncoder).then(|| raw(K::SeqEncoder)),
            },
        }
    }
}

fn check_strings(what: &str, offsets: &[u32], raw_text: &[u8]) -> Result<()> {
    // ASCII text (the usual case, found by a SIMD kernel) is UTF-8 with a character boundary at
    // every byte: only other text needs the general check and the boundary test per offset.
    let ascii = crate::kernels::is_ascii(raw_text);
    let text = if ascii {
        None
    } else {
        Some(core::str::from_utf8(raw_text).map_err(|e| {
            Error::invalid(format!("{what}: invalid UTF-8 at byte {}", e.valid_up_to()))
        })?)
    };
    if offsets.first() != Some(&0) || offsets.last().map(|&l| l as usize) != Some(raw_text.len()) {
        return Err(Error::invalid(format!(
            "{what}: offsets do not span the text"
        )));
    }
    if !crate::kernels::strictly_increasing(offsets) {
        return Err(Error::invalid(format!(
            "{what}: empty string or decreasing offsets"
        )));
    }
    if let Some(t) = text {
        if offsets.iter().any(|&o| !t.is_char_boundary(o as usize)) {
            return Err(Error::invalid(format!(
                "{what}: offset inside a UTF-8 character"
            )));
        }
    }
    Ok(())
}

fn all_finite(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::invalid(format!("{what}[{i}] is not finite"))),
        None => Ok(()),
    }
}

/// Checks every value the scorer later trusts.
fn check_values(v: &ShardView<'_>) -> Result<()> {
    let role = v.header.role;
    if role != ShardRole::Index {
        check_strings("item ids", v.ids.offsets, v.ids.text)?;
        check_rows(&v.rows)?;
        all_finite("item bias", v.bias)?;
    }
    if role != ShardRole::Page {
        check_keys(v)?;
    }
    if let Some(fp) = v.first_pass {
        check_first_pass_values(&fp, v.header.item_count, v.meta.row_stride() as usize)?;
    }
    if let Some(cats) = v.categories {
        let count = v.meta.category_count;
        let allowed = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        if let Some(i) = cats.iter().position(|&c| c & !allowed != 0) {
            return Err(Error::invalid(format!(
                "item {i} has a category bit above {count}"
            )));
        }
    }
    let total = v.meta.total_items;
    for (t, table) in v.seq.iter().enumerate() {
        if let Some(table) = table {
            check_seq_table(&format!("sequence table {t}"), table, total)?;
        }
    }
    if let Some(starts) = v.global.page_starts {
        let ok = starts.first() == Some(&0)
            && starts.last() == Some(&total)
            && crate::kernels::strictly_increasing(starts);
        if !ok {
            return Err(Error::invalid(format!(
                "page starts do not run from 0 up to the {total} items"
            )));
        }
    }
    check_global_values(&v.global, total)?;
    if let Some(bytes) = v.global.encoder {
        crate::encoder::EncoderView::parse(bytes, v.meta.dim)?;
    }
    Ok(())
}

/// Every this many keys (and the last), loading checks the key against its item's id.
///
/// Checking all of them hashed every id at every model load: on a cold start, where the wasm
/// still runs in V8's baseline compiler, about 4 ms of a 100k-item load in Node
/// (docs/FIGURES.md). A writer that gets keys wrong gets most of them wrong, so a sample
/// rejects its shards with a clear error; and [`ShardView::find_key`] checks the key it
/// resolves, so an unsampled wrong key makes its item unknown, never another item.
pub const KEY_SAMPLE_STRIDE: usize = 64;

/// Keys: strictly increasing (so lookups are unambiguous), and a sample of them (every
/// [`KEY_SAMPLE_STRIDE`]-th and the last) naming the item whose id hashes to the key. Lookups
/// check the rest as they use them, so a key order that names an item twice or one past the
/// end leaves items unknown, never misnamed; a checksum-valid shard gets that far only by a
/// writer's bug, which the sample catches.
fn check_keys(v: &ShardView<'_>) -> Result<()> {
    let n = v.header.item_count as usize;
    if !crate::kernels::strictly_increasing_u64(v.keys_sorted) {
        return Err(Error::invalid(
            "item keys are not strictly increasing (duplicate ids?)",
        ));
    }
    if v.header.role == ShardRole::Index {
        // The ids are in the pages: `Engine::add_page` checks a page's against these keys.
        return Ok(());
    }
    let sample = (0..n).step_by(KEY_SAMPLE_STRIDE).chain(n.checked_sub(1));
    for i in sample {
        let (Some(&key), Some(local)) = (v.keys_sorted.get(i), v.keys_order.get(i)) else {
            continue; // both hold `n` keys (section lengths are checked before values)
        };
        if hash::item_key_of_bytes(v.ids.bytes(local as usize)) != key {
            return Err(Error::invalid(format!(
                "key of item {local} does not match its id"
            )));
        }
    }
    Ok(())
}

/// The first pass's values: a finite codebook, centroids like int8 rows (no −128, scales
/// finite and ≥ 0), each cluster's blocks following the previous cluster's and all of them
/// covered, and every local item in exactly one slot, padding only after a cluster's items
/// (with runs: each cluster's run following the previous one, filling its blocks but the last
/// one's padding, all runs together covering the shard's items).
fn check_first_pass_values(
    fp: &first_pass::FirstPassShard<'_>,
    items: u32,
    stride: usize,
) -> Result<()> {
    all_finite("first-pass codebook", fp.codebook)?;
    check_rows(&Rows::I8 {
        rows: fp.centroids,
        scales: fp.centroid_scales,
    })
    .map_err(|e| Error::invalid(format!("first-pass centroids: {e}")))?;
    // The codes' length is a whole number of blocks (checked with the section lengths).
    let blocks = fp.codes.len() / first_pass::block_bytes(stride);
    let mut next = 0u64;
    for (k, list) in fp.lists.chunks_exact(2).enumerate() {
        if u64::from(list[0]) != next {
            return Err(Error::invalid(format!(
                "first-pass cluster {k} starts at block {}, expected {next}",
                list[0]
            )));
        }
        next += u64::from(list[1]);
    }
    if next != blocks as u64 {
        return Err(Error::invalid(format!(
            "first-pass clusters cover {next} blocks of {blocks}"
        )));
    }
    match fp.members {
        first_pass::Members::Slots(slots) => check_first_pass_slots(fp.lists, slots, items),
        first_pass::Members::Runs(runs) => check_first_pass_runs(fp.lists, runs, items),
    }
}

/// Slots (formats 3 to 5): every local item in exactly one slot, padding only after a
/// cluster's items.
fn check_first_pass_slots(lists: &[u32], all_slots: &[u32], items: u32) -> Result<()> {
    let mut seen = vec![false; items as usize];
    for (k, list) in lists.chunks_exact(2).enumerate() {
        let (start, end) = (list[0] as usize, (list[0] + list[1]) as usize);
        let slots = &all_slots[start * first_pass::BLOCK_ITEMS..end * first_pass::BLOCK_ITEMS];
        let filled = slots
            .iter()
            .position(|&s| s == first_pass::EMPTY_SLOT)
            .unwrap_or(slots.len());
        if slots[filled..].iter().any(|&s| s != first_pass::EMPTY_SLOT)
            || slots.len() - filled >= first_pass::BLOCK_ITEMS
        {
            return Err(Error::invalid(format!(
                "first-pass cluster {k} has empty slots before its last block's items"
            )));
        }
        for &slot in &slots[..filled] {
            match seen.get_mut(slot as usize) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(Error::invalid(format!(
                        "first-pass slot names item {slot} twice or out of range"
                    )))
                }
            }
        }
    }
    if let Some(i) = seen.iter().position(|&s| !s) {
        return Err(Error::invalid(format!("item {i} has no first-pass slot")));
    }
    Ok(())
}

/// Runs (format 6): cluster `k`'s run starts where cluster `k − 1`'s ended, its blocks hold it
/// with less than one block of padding, and the runs end at the shard's last item. So every
/// local item is in exactly one slot, as with a slot table, without a pass over the items.
fn check_first_pass_runs(lists: &[u32], runs: &[u32], items: u32) -> Result<()> {
    let mut next = 0u64;
    for (k, (list, run)) in lists.chunks_exact(2).zip(runs.chunks_exact(2)).enumerate() {
        let (start, count) = (u64::from(run[0]), u64::from(run[1]));
        if start != next {
            return Err(Error::invalid(format!(
                "first-pass cluster {k}'s items start at {start}, expected {next}"
            )));
        }
        if u64::from(list[1]) != count.div_ceil(first_pass::BLOCK_ITEMS as u64) {
            return Err(Error::invalid(format!(
                "first-pass cluster {k} has {count} items in {} blocks",
                list[1]
            )));
        }
        next += count;
    }
    if next != u64::from(items) {
        return Err(Error::invalid(format!(
            "first-pass runs cover {next} items of {items}"
        )));
    }
    Ok(())
}

fn check_rows(rows: &Rows<'_>) -> Result<()> {
    match *rows {
        Rows::I8 { rows, scales } => {
            // The writer maps to [-127, 127]; -128 would let an i32 dot product overflow at
            // the largest dimension (the query bound assumes |row| ≤ 127).
            // One SIMD pass (`kernels::contains_i8_min`); the position is only looked up on
            // failure.
            if crate::kernels::contains_i8_min(rows) {
                let i = rows.iter().position(|&x| x == i8::MIN).unwrap_or(0);
                return Err(Error::invalid(format!(
                    "int8 row element {i} is -128 (rows are quantized to [-127, 127])"
                )));
            }
            if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
                return Err(Error::invalid(format!(
                    "row scale {i} is negative or not finite"
                )));
            }
            Ok(())
        }
        Rows::F32 { rows } => all_finite("f32 rows", rows),
        Rows::F16 { rows } => {
            match rows
                .iter()
                .position(|&b| !half::f16::from_bits(b).is_finite())
            {
                Some(i) => Err(Error::invalid(format!("f16 row element {i} is not finite"))),
                None => Ok(()),
            }
        }
    }
}

/// A CSR table: offsets from 0 to the target count, never decreasing; targets below `total`;
/// weights finite and non-negative.
fn check_csr(
    what: &str,
    offsets: &[u32],
    targets: &[u32],
    weights: &[f32],
    total: u32,
) -> Result<()> {
    check_offsets(what, offsets, targets.len())?;
    if targets.iter().any(|&x| x >= total) {
        return Err(Error::invalid(format!("{what}: target out of range")));
    }
    check_weights(what, weights.iter().copied())
}

/// A sequence table's offsets, targets (each a global item) and weights, in either width.
fn check_seq_table(what: &str, table: &SeqTable<'_>, total: u32) -> Result<()> {
    check_offsets(what, table.offsets, table.targets.len())?;
    let out_of_range = match table.targets {
        SeqTargets::U32(t) => t.iter().any(|&x| x >= total),
        SeqTargets::U16(t) => t.iter().any(|&x| u32::from(x) >= total),
        SeqTargets::U24(t) => t.iter().any(|&x| u24(x) >= total),
    };
    if out_of_range {
        return Err(Error::invalid(format!("{what}: target out of range")));
    }
    match table.weights {
        SeqWeights::F32(w) => check_weights(what, w.iter().copied()),
        SeqWeights::F16(w) => {
            check_weights(what, w.iter().map(|&b| half::f16::from_bits(b).to_f32()))
        }
    }
}

/// CSR offsets: from 0, never decreasing, ending at the entry count.
fn check_offsets(what: &str, offsets: &[u32], entries: usize) -> Result<()> {
    if offsets.first() != Some(&0)
        || offsets.last().map(|&l| l as usize) != Some(entries)
        || offsets.windows(2).any(|w| w[1] < w[0])
    {
        return Err(Error::invalid(format!("{what}: bad offsets")));
    }
    Ok(())
}

fn check_weights(what: &str, mut weights: impl Iterator<Item = f32>) -> Result<()> {
    if !weights.all(|w| w.is_finite() && w >= 0.0) {
        return Err(Error::invalid(format!(
            "{what}: negative or non-finite weight"
        )));
    }
    Ok(())
}

fn check_global_values(g: &GlobalTables<'_>, total: u32) -> Result<()> {
    for (what, table) in [
        ("query transform", g.query_transform),
        ("query bias", g.query_bias),
        ("time context", g.ctx_time),
        ("device context", g.ctx_device),
        ("geo context", g.ctx_geo),
    ] {
        if let Some(values) = table {
            all_finite(what, values)?;
        }
    }
    if let Some(names) = g.category_names {
        check_strings("category names", names.offsets, names.text)?;
    }
    if let Some(p) = g.profiles {
        if !p.iter().all(|w| w.is_finite() && *w >= 0.0) {
            return Err(Error::invalid(
                "profiles: weights must be finite and non-negative",
            ));
        }
    }
    if let Some(t) = g.trend {
        // Its "targets" are items and its "weights" counts.
        check_csr("trend table", t.offsets, t.items, t.counts, total)?;
    }
    Ok(())
}
