//! Writing models: quantize item vectors and pack them, with the model tables, into shards of at
//! most `max_shard_bytes` each (25 MiB, Cloudflare KV's value limit, by default).
//!
//! Compiled with the `writer` feature (central-sync and tests); edge and browser builds do not
//! carry it. Everything written is then readable by `Shard::from_bytes`; the tests check that
//! round trip for every section.

use crate::error::{Error, Result};
use crate::format::*;
use crate::hash::{item_key, shard_checksum};

/// Everything that goes into a model. Vectors are row-major `f32`, `dim` wide.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    /// Model parameters; `total_items` and `category_count` are set from the data.
    pub meta: Option<Meta>,
    /// Item ids (unique, non-empty).
    pub ids: Vec<String>,
    /// `ids.len() x dim` item vectors.
    pub vectors: Vec<f32>,
    /// Per-item bias (popularity prior); empty means 0.
    pub bias: Vec<f32>,
    /// Per-item category bit sets; empty means none.
    pub categories: Vec<u64>,
    /// Category names in bit order.
    pub category_names: Vec<String>,
    /// Sequence tables (neighbours, transitions): per item, (target item index, weight ≥ 0).
    pub seq: [Vec<Vec<(u32, f32)>>; SEQ_TABLES],
    /// Optional `dim x dim` query transform.
    pub query_transform: Option<Vec<f32>>,
    /// Optional query bias (`dim`).
    pub query_bias: Option<Vec<f32>>,
    /// Optional context tables.
    pub ctx_time: Option<Vec<f32>>,
    pub ctx_device: Option<Vec<f32>>,
    pub ctx_geo: Option<Vec<f32>>,
    /// Optional per-session-length profiles (neutral when absent).
    pub profiles: Option<[Profile; PROFILE_BUCKETS]>,
    /// Optional time-bucketed item counts; sets the trend fields of the meta.
    pub trend: Option<TrendSpec>,
    /// Whether int8 shards carry the two-stage scan's first-pass codes (`crate::first_pass`,
    /// format 3). Ignored for f16 and f32 models.
    pub first_pass: bool,
    /// Bytes per sequence-table target (2, 3 or 4), at least what the item count needs; `None`
    /// (the default) takes the narrowest width. Tests set it to write a width a small model
    /// would not get.
    pub seq_target_bytes: Option<u8>,
    /// Optional session encoder (format 8); its weight per bucket is the profiles' `encoder`
    /// field (1 without profiles).
    pub encoder: Option<EncoderSpec>,
}

/// A session encoder's weights (see `crate::encoder`), written as f16.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// Session positions it reads (1..=64).
    pub positions: u32,
    /// Hidden width of its feed-forward layer.
    pub hidden: u32,
    /// Every weight in `crate::encoder::TENSORS` order, within f16's range.
    pub weights: Vec<f32>,
}

impl EncoderSpec {
    /// Its shape in a model of `dim` dimensions.
    pub fn shape(&self, dim: u32) -> crate::encoder::EncoderShape {
        crate::encoder::EncoderShape {
            dim,
            positions: self.positions,
            hidden: self.hidden,
        }
    }
}

/// Item counts per time bucket, for the edge's "popular right now" signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrendSpec {
    /// Unix seconds at which bucket 0 starts.
    pub start: i64,
    /// Bucket width in seconds.
    pub bucket_s: u32,
    /// The window the edge sums over, in seconds.
    pub window_s: u32,
    /// Per bucket, (item index, count ≥ 0).
    pub buckets: Vec<Vec<(u32, f32)>>,
}

/// Quantizes one row to int8 with a symmetric per-row scale (max |x| ↦ 127).
pub fn quantize_row_i8(row: &[f32], out: &mut [i8]) -> f32 {
    let max_abs = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max_abs > 0.0 { max_abs / 127.0 } else { 0.0 };
    for (o, &x) in out.iter_mut().zip(row) {
        *o = if scale > 0.0 {
            (x / scale).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        };
    }
    scale
}

struct SectionBuf {
    kind: SectionKind,
    bytes: Vec<u8>,
}

fn le<T: bytemuck::NoUninit>(values: &[T]) -> Vec<u8> {
    // The format is little-endian; so is every target we build for (x86-64, aarch64, wasm32).
    bytemuck::cast_slice(values).to_vec()
}

/// Packs a model into shards (bytes), shard 0 first.
///
/// # Errors
/// [`crate::ErrorKind::InvalidArgument`] for inconsistent inputs (lengths, duplicate or empty ids,
/// non-finite values, negative sequence weights) or an item too large for one shard.
pub fn write_model(spec: &ModelSpec, model_id: u64, max_shard_bytes: u64) -> Result<Vec<Vec<u8>>> {
    let model = Prepared::new(spec)?;
    let ranges = plan_shards(&model, ShardRole::Whole, max_shard_bytes)?;
    model.write_shards(ShardRole::Whole, &ranges, model_id, max_shard_bytes, None)
}

/// A paged model (`format::ShardRole`): index shards, which the edge loads whole, and pages,
/// which it loads as requests need them.
#[derive(Debug, Clone)]
pub struct PagedModel {
    pub index: Vec<Vec<u8>>,
    pub pages: Vec<Vec<u8>>,
}

/// Writes `spec` as a paged model: index shards of at most `max_shard_bytes`, and pages of at
/// most `page_items` items each (and `max_shard_bytes`). Pages hold whole coarse clusters where
/// they fit, several small ones together, so a request's candidates (which come from a few
/// clusters) are in a few pages.
///
/// # Errors
/// As [`write_model`]; also when the model cannot be paged (it needs int8 rows and first-pass
/// codes) or a page would exceed `max_shard_bytes`.
pub fn write_paged_model(
    spec: &ModelSpec,
    model_id: u64,
    max_shard_bytes: u64,
    page_items: usize,
) -> Result<PagedModel> {
    let model = Prepared::new(spec)?;
    if model.first_pass.is_none() {
        return Err(Error::argument(
            "a paged model needs int8 rows and first-pass codes (`first_pass`)",
        ));
    }
    let pages = plan_pages(&model.clusters, page_items.max(1));
    let mut starts: Vec<u32> = pages.iter().map(|r| r.start as u32).collect();
    starts.push(model.spec.ids.len() as u32);
    let index_ranges = plan_shards(&model, ShardRole::Index, max_shard_bytes)?;
    Ok(PagedModel {
        index: model.write_shards(
            ShardRole::Index,
            &index_ranges,
            model_id,
            max_shard_bytes,
            Some(&starts),
        )?,
        pages: model.write_shards(ShardRole::Page, &pages, model_id, max_shard_bytes, None)?,
    })
}

/// Page ranges: consecutive clusters (the items are in cluster order) gathered up to
/// `page_items` items, and clusters larger than that cut into pieces of that size.
fn plan_pages(clusters: &[u32], page_items: usize) -> Vec<core::ops::Range<usize>> {
    let mut pages = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < clusters.len() {
        let run_end = i + clusters[i..].partition_point(|&c| c == clusters[i]);
        if run_end - start > page_items && i > start {
            pages.push(start..i);
            start = i;
        }
        while run_end - start > page_items {
            pages.push(start..start + page_items);
            start += page_items;
        }
        i = run_end;
    }
    if start < clusters.len() {
        pages.push(start..clusters.len());
    }
    pages
}

/// A spec checked and ready to write: its metadata, its first-pass model (the items then in
/// cluster order, with each item's cluster) and its sequence-table encodings.
struct Prepared<'s> {
    spec: std::borrow::Cow<'s, ModelSpec>,
    meta: Meta,
    first_pass: Option<crate::first_pass::train::Model>,
    clusters: Vec<u32>,
    encodings: [CsrEncoding; SEQ_TABLES],
}

impl<'s> Prepared<'s> {
    fn new(spec: &'s ModelSpec) -> Result<Prepared<'s>> {
        let meta = model_meta(spec)?;
        check_tables(spec, &meta)?;
        check_ids(&spec.ids)?;
        let first_pass = first_pass_model(spec, &meta);
        let (spec, clusters) = match &first_pass {
            Some(model) => {
                let (ordered, clusters) = in_cluster_order(spec, &meta, model);
                (std::borrow::Cow::Owned(ordered), clusters)
            }
            None => (std::borrow::Cow::Borrowed(spec), Vec::new()),
        };
        let encodings = seq_encodings(&spec);
        Ok(Prepared {
            spec,
            meta,
            first_pass,
            clusters,
            encodings,
        })
    }

    /// The shards of `role` over `ranges`; `page_starts` goes into index shard 0.
    fn write_shards(
        &self,
        role: ShardRole,
        ranges: &[core::ops::Range<usize>],
        model_id: u64,
        max_shard_bytes: u64,
        page_starts: Option<&[u32]>,
    ) -> Result<Vec<Vec<u8>>> {
        let (spec, meta) = (&*self.spec, &self.meta);
        let count = ranges.len() as u32;
        let mut out = Vec::with_capacity(ranges.len());
        for (index, range) in ranges.iter().cloned().enumerate() {
            let mut sections =
                shard_sections(spec, meta, &self.encodings, index, range.clone(), role);
            if let Some(model) = self.first_pass.as_ref().filter(|_| role != ShardRole::Page) {
                let rows: Vec<f32> = range
                    .clone()
                    .flat_map(|i| served_row(spec, meta, i))
                    .collect();
                let bias: Vec<f32> = range.clone().map(|i| bias_of(spec, i)).collect();
                let encoded = model.encode_assigned(&rows, &bias, &self.clusters[range.clone()]);
                // Items are in cluster order, so each cluster's are one run (format 6); a slot
                // table only if that ever did not hold.
                let members = match &encoded.runs {
                    Some(runs) => (SectionKind::FirstPassRuns, le(runs)),
                    None => (SectionKind::FirstPassSlots, le(&encoded.slots)),
                };
                for (kind, bytes) in [
                    (SectionKind::FirstPassCodebook, le(&model.codebook)),
                    (SectionKind::FirstPassCentroids, le(&model.centroids)),
                    (
                        SectionKind::FirstPassCentroidScales,
                        le(&model.centroid_scales),
                    ),
                    (SectionKind::FirstPassLists, le(&encoded.lists)),
                    (SectionKind::FirstPassCodes, encoded.codes),
                    members,
                ] {
                    sections.push(SectionBuf { kind, bytes });
                }
            }
            if let Some(starts) = page_starts.filter(|_| index == 0) {
                sections.push(SectionBuf {
                    kind: SectionKind::PageStarts,
                    bytes: le(starts),
                });
            }
            let header = HeaderFields {
                model_id,
                index: index as u32,
                count,
                item_start: range.start as u32,
                item_count: range.len() as u32,
                role,
            };
            let bytes = assemble(&sections, header);
            if bytes.len() as u64 > max_shard_bytes {
                return Err(Error::argument(format!(
                    "{role:?} shard {index} is {} bytes, above the limit",
                    bytes.len()
                )));
            }
            out.push(bytes);
        }
        Ok(out)
    }
}

/// Item `i`'s vector as the edge scores it (int8 row × row scale), `stride` wide.
fn served_row(spec: &ModelSpec, meta: &Meta, i: usize) -> Vec<f32> {
    let dim = meta.dim as usize;
    let mut q = vec![0i8; dim];
    let scale = quantize_row_i8(&spec.vectors[i * dim..(i + 1) * dim], &mut q);
    let mut row = vec![0f32; meta.row_stride() as usize];
    for (r, &x) in row.iter_mut().zip(&q) {
        *r = f32::from(x) * scale;
    }
    row
}

/// The spec with its items in the order of their coarse cluster (by index within a cluster),
/// and each item's cluster in that order. A request's exact scoring reads the rows of the items
/// the first pass keeps, which come from a few clusters (docs/FIGURES.md, "What a request reads,
/// measured by cluster"): stored together, they are read from a few stretches of memory, and a
/// model paged by item range would fetch a few pages. Which index an item gets is the writer's
/// choice; everything outside a model names items by id.
fn in_cluster_order(
    spec: &ModelSpec,
    meta: &Meta,
    model: &crate::first_pass::train::Model,
) -> (ModelSpec, Vec<u32>) {
    let n = spec.ids.len();
    let dim = meta.dim as usize;
    let assigned: Vec<u32> = (0..n)
        .map(|i| model.assign(&served_row(spec, meta, i)) as u32)
        .collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&i| (assigned[i as usize], i));
    let mut new_index = vec![0u32; n];
    for (new, &old) in order.iter().enumerate() {
        new_index[old as usize] = new as u32;
    }
    let reorder = |v: &[f32]| -> Vec<f32> {
        if v.is_empty() {
            Vec::new()
        } else {
            order.iter().map(|&o| v[o as usize]).collect()
        }
    };
    let renumber = |entries: &[(u32, f32)]| -> Vec<(u32, f32)> {
        entries
            .iter()
            .map(|&(item, w)| (new_index[item as usize], w))
            .collect()
    };
    let ordered = ModelSpec {
        meta: spec.meta.clone(),
        ids: order
            .iter()
            .map(|&o| spec.ids[o as usize].clone())
            .collect(),
        vectors: order
            .iter()
            .flat_map(|&o| {
                spec.vectors[o as usize * dim..(o as usize + 1) * dim]
                    .iter()
                    .copied()
            })
            .collect(),
        bias: reorder(&spec.bias),
        categories: if spec.categories.is_empty() {
            Vec::new()
        } else {
            order.iter().map(|&o| spec.categories[o as usize]).collect()
        },
        category_names: spec.category_names.clone(),
        seq: spec.seq.each_ref().map(|table| {
            if table.is_empty() {
                Vec::new()
            } else {
                order
                    .iter()
                    .map(|&o| renumber(&table[o as usize]))
                    .collect()
            }
        }),
        query_transform: spec.query_transform.clone(),
        query_bias: spec.query_bias.clone(),
        ctx_time: spec.ctx_time.clone(),
        ctx_device: spec.ctx_device.clone(),
        ctx_geo: spec.ctx_geo.clone(),
        profiles: spec.profiles,
        trend: spec.trend.as_ref().map(|t| TrendSpec {
            start: t.start,
            bucket_s: t.bucket_s,
            window_s: t.window_s,
            buckets: t.buckets.iter().map(|b| renumber(b)).collect(),
        }),
        first_pass: spec.first_pass,
        seq_target_bytes: spec.seq_target_bytes,
        encoder: spec.encoder.clone(),
    };
    let clusters = order.iter().map(|&o| assigned[o as usize]).collect();
    (ordered, clusters)
}

fn bias_of(spec: &ModelSpec, i: usize) -> f32 {
    spec.bias.get(i).copied().unwrap_or(0.0)
}

/// The model's first-pass centroids and codebook, trained on a sample of its items as served,
/// when the spec asks for them and the model is int8.
fn first_pass_model(spec: &ModelSpec, meta: &Meta) -> Option<crate::first_pass::train::Model> {
    if !spec.first_pass || meta.dtype != Dtype::I8 {
        return None;
    }
    let n = spec.ids.len();
    let picked = crate::first_pass::train::training_items(n);
    let rows: Vec<f32> = picked
        .iter()
        .flat_map(|&i| served_row(spec, meta, i))
        .collect();
    let bias: Vec<f32> = picked.iter().map(|&i| bias_of(spec, i)).collect();
    let stride = meta.row_stride() as usize;
    Some(crate::first_pass::train::Model::train(
        &rows, &bias, stride, n,
    ))
}

/// The meta written into every shard: the spec's parameters with the counts taken from the data.
fn model_meta(spec: &ModelSpec) -> Result<Meta> {
    let mut meta = spec
        .meta
        .clone()
        .ok_or_else(|| Error::argument("meta is required"))?;
    meta.total_items =
        u32::try_from(spec.ids.len()).map_err(|_| Error::argument("too many items"))?;
    meta.category_count = spec.category_names.len() as u32;
    (
        meta.trend_bucket_s,
        meta.trend_start,
        meta.trend_buckets,
        meta.trend_window_s,
    ) = match &spec.trend {
        Some(t) if !t.buckets.is_empty() => (
            t.bucket_s,
            t.start,
            u32::try_from(t.buckets.len())
                .map_err(|_| Error::argument("too many trend buckets"))?,
            t.window_s,
        ),
        _ => (0, 0, 0, 0),
    };
    if spec.ctx_geo.is_none() {
        meta.geo_buckets = 0;
    }
    meta.check().map_err(|e| Error::argument(e.to_string()))?;
    Ok(meta)
}

fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::argument(format!(
            "{what}: {len} values, expected {want}"
        )))
    }
}

fn check_finite(what: &str, values: &[f32]) -> Result<()> {
    if values.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(Error::argument(format!("{what} has non-finite values")))
    }
}

/// True when a sparse list points only at items `< n` with finite, non-negative weights.
fn sparse_ok<'a>(mut entries: impl Iterator<Item = &'a (u32, f32)>, n: usize) -> bool {
    entries.all(|&(g, w)| (g as usize) < n && w.is_finite() && w >= 0.0)
}

/// Every table's length and values against the item count and `meta`.
fn check_tables(spec: &ModelSpec, meta: &Meta) -> Result<()> {
    let n = spec.ids.len();
    let dim = meta.dim as usize;
    check_len("vectors", spec.vectors.len(), n * dim)?;
    if !spec.bias.is_empty() {
        check_len("bias", spec.bias.len(), n)?;
    }
    if !spec.categories.is_empty() {
        check_len("categories", spec.categories.len(), n)?;
    }
    if let Some(bytes) = spec.seq_target_bytes {
        if !(2..=4).contains(&bytes) || bytes < target_bytes(n) {
            return Err(Error::argument(format!(
                "sequence targets of {bytes} bytes cannot name {n} items"
            )));
        }
    }
    for table in spec.seq.iter().filter(|t| !t.is_empty()) {
        check_len("sequence table", table.len(), n)?;
        if !sparse_ok(table.iter().flatten(), n) {
            return Err(Error::argument("sequence entry out of range or negative"));
        }
    }
    check_finite("vectors", &spec.vectors)?;
    check_finite("bias", &spec.bias)?;
    for (what, table, rows) in [
        ("query_transform", &spec.query_transform, dim),
        ("query_bias", &spec.query_bias, 1),
        ("ctx_time", &spec.ctx_time, TIME_BINS),
        ("ctx_device", &spec.ctx_device, DEVICE_CLASSES),
        ("ctx_geo", &spec.ctx_geo, meta.geo_buckets as usize),
    ] {
        if let Some(t) = table {
            check_len(what, t.len(), rows * dim)?;
            check_finite(what, t)?;
        }
    }
    if let Some(profiles) = &spec.profiles {
        let mut values = profiles.iter().flat_map(|p| p.to_array());
        if !values.all(|w| w.is_finite() && w >= 0.0) {
            return Err(Error::argument(
                "profile weights must be finite and non-negative",
            ));
        }
    }
    if let Some(t) = &spec.trend {
        if !sparse_ok(t.buckets.iter().flatten(), n) {
            return Err(Error::argument("trend entry out of range or negative"));
        }
    }
    if let Some(e) = &spec.encoder {
        use crate::encoder::{MAX_HIDDEN, MAX_POSITIONS};
        if !(1..=MAX_POSITIONS).contains(&e.positions) || !(1..=MAX_HIDDEN).contains(&e.hidden) {
            return Err(Error::argument(format!(
                "encoder: {} positions and hidden width {} (expected 1..={MAX_POSITIONS} and \
                 1..={MAX_HIDDEN})",
                e.positions, e.hidden
            )));
        }
        check_len("encoder", e.weights.len(), e.shape(meta.dim).weight_count())?;
        if !e
            .weights
            .iter()
            .all(|w| w.abs() <= f32::from(half::f16::MAX))
        {
            return Err(Error::argument(
                "encoder weights must be finite and within f16's range",
            ));
        }
        if let Some(p) = &spec.profiles {
            if !p.iter().all(|p| p.encoder.is_finite() && p.encoder >= 0.0) {
                return Err(Error::argument(
                    "profile weights must be finite and non-negative",
                ));
            }
        }
    }
    Ok(())
}

/// Ids are non-empty and their 64-bit keys distinct (the edge looks items up by key).
fn check_ids(ids: &[String]) -> Result<()> {
    if ids.iter().any(|id| id.is_empty()) {
        return Err(Error::argument("empty item id"));
    }
    let mut keys: Vec<u64> = ids.iter().map(|id| item_key(id)).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::argument(
            "duplicate item ids (or a 64-bit key collision)",
        ));
    }
    Ok(())
}

/// Splits items into shards by their byte cost, leaving room for headers, tables, padding and (in
/// shard 0) the global tables.
fn plan_shards(
    model: &Prepared<'_>,
    role: ShardRole,
    max_shard_bytes: u64,
) -> Result<Vec<core::ops::Range<usize>>> {
    let (spec, meta, encodings) = (&*model.spec, &model.meta, &model.encodings);
    let n = spec.ids.len();
    let row = (meta.row_stride() as usize * meta.dtype.size()) as u64;
    let stride = meta.row_stride() as usize;
    let with_codes = spec.first_pass && meta.dtype == Dtype::I8;
    // Per item: half a byte per column (rounded up); items are in cluster order, so their
    // slots are runs (format 6). Per shard: the codebook, the centroids with their lists and
    // runs, and up to one padded block per cluster.
    let codes = if with_codes {
        crate::first_pass::columns(stride).div_ceil(2) as u64
    } else {
        0
    };
    let codes_fixed = if with_codes {
        let k = crate::first_pass::train::clusters(n) as u64;
        let block = crate::first_pass::block_bytes(stride) as u64;
        4 * crate::first_pass::codebook_len(stride) as u64 + k * (stride as u64 + 4 + 8 + 8 + block)
    } else {
        0
    };
    let item_cost = |i: usize| -> u64 {
        let seq: u64 = spec
            .seq
            .iter()
            .zip(encodings)
            .map(|(t, e)| t.get(i).map_or(0, |l| e.entry_bytes() * l.len() as u64 + 4))
            .sum();
        // Index: key, key order, categories and codes; item data: row, scale, bias, id.
        let index = 8 + 4 + 8 + codes;
        let data = row + 4 + 4 + 4 + spec.ids[i].len() as u64 + seq;
        match role {
            ShardRole::Whole => index + data,
            ShardRole::Index => index,
            ShardRole::Page => data,
        }
    };
    let fixed = (HEADER_LEN + MAX_SECTIONS as usize * SECTION_ENTRY_LEN + META_LEN) as u64
        + 32 * SECTION_ALIGN as u64
        + codes_fixed;
    let mut ranges = Vec::new();
    let mut start = 0usize;
    // The page table: one u32 per page, at most one page per item.
    let globals = match role {
        ShardRole::Whole => global_cost(spec),
        ShardRole::Index => global_cost(spec) + 4 * (n as u64 + 1),
        ShardRole::Page => 0,
    };
    let mut used = fixed + globals;
    for i in 0..n {
        let c = item_cost(i);
        if used + c > max_shard_bytes && i > start {
            ranges.push(start..i);
            start = i;
            used = fixed;
        }
        if used + c > max_shard_bytes {
            return Err(Error::argument(format!(
                "item {} does not fit in a shard",
                spec.ids[i]
            )));
        }
        used += c;
    }
    ranges.push(start..n);
    Ok(ranges)
}

/// Bytes of the tables only shard 0 carries.
fn global_cost(spec: &ModelSpec) -> u64 {
    let dense: u64 = [
        &spec.query_transform,
        &spec.query_bias,
        &spec.ctx_time,
        &spec.ctx_device,
        &spec.ctx_geo,
    ]
    .iter()
    .map(|t| t.as_ref().map_or(0, |v| 4 * v.len() as u64))
    .sum();
    let trend = spec.trend.as_ref().map_or(0, |t| {
        4 * (t.buckets.len() as u64 + 1) + 8 * t.buckets.iter().map(|b| b.len() as u64).sum::<u64>()
    });
    let names: u64 = spec.category_names.iter().map(|c| c.len() as u64 + 4).sum();
    let dim = spec.meta.as_ref().map_or(0, |m| m.dim);
    let encoder = spec
        .encoder
        .as_ref()
        .map_or(0, |e| e.shape(dim).section_bytes());
    dense + trend + 4 * (PROFILE_BUCKETS * PROFILE_FIELDS) as u64 + names + encoder
}

fn string_table(strings: impl Iterator<Item = impl AsRef<str>>) -> (Vec<u8>, Vec<u8>) {
    let mut offsets = vec![0u32];
    let mut text = Vec::new();
    for s in strings {
        text.extend_from_slice(s.as_ref().as_bytes());
        offsets.push(text.len() as u32);
    }
    (le(&offsets), text)
}

/// How a CSR table is stored. A sequence table takes the narrowest form that holds it. Targets
/// are u16 when every global item index fits (models of at most 65,536 items), else u24 (at
/// most 16,777,216 items), else u32; weights are f16 when every weight stays finite in f16. The
/// weights round to f16's 11 significant bits, which left MovieLens-100k's validation NDCG@10
/// unchanged; the tables are most of a trained model's bytes, so narrow tables let about twice
/// the catalog fit an edge isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CsrEncoding {
    /// Bytes per target: 2, 3 or 4.
    target_bytes: u8,
    f16_weights: bool,
}

impl CsrEncoding {
    /// u32 targets and f32 weights: every table of formats 1 to 3, and the trend table.
    const WIDE: CsrEncoding = CsrEncoding {
        target_bytes: 4,
        f16_weights: false,
    };

    fn entry_bytes(self) -> u64 {
        u64::from(self.target_bytes) + (if self.f16_weights { 2 } else { 4 })
    }

    /// The section kind its targets go in (u32 for any width the format has no section of).
    fn targets_kind(self, kinds: SeqSectionKinds) -> SectionKind {
        kinds
            .target_widths()
            .into_iter()
            .find(|&(_, bytes)| bytes == u64::from(self.target_bytes))
            .map_or(kinds.targets, |(kind, _)| kind)
    }
}

/// Bytes per target of a model of `items` items: the narrowest width every global index fits.
fn target_bytes(items: usize) -> u8 {
    match items {
        n if n <= 1 << 16 => 2,
        n if n <= 1 << 24 => 3,
        _ => 4,
    }
}

/// The encoding of each of the spec's sequence tables, chosen once over the whole model so
/// every shard stores a table the same way.
fn seq_encodings(spec: &ModelSpec) -> [CsrEncoding; SEQ_TABLES] {
    let target_bytes = spec
        .seq_target_bytes
        .unwrap_or(target_bytes(spec.ids.len()));
    core::array::from_fn(|t| CsrEncoding {
        target_bytes,
        f16_weights: spec.seq[t]
            .iter()
            .flatten()
            .all(|&(_, w)| half::f16::from_f32(w).is_finite()),
    })
}

/// A CSR table of sparse per-row lists: offsets, then targets and weights in `encoding`.
fn csr<'a>(rows: impl Iterator<Item = &'a Vec<(u32, f32)>>, encoding: CsrEncoding) -> [Vec<u8>; 3] {
    let mut offsets = vec![0u32];
    let (mut targets, mut weights) = (Vec::new(), Vec::new());
    for list in rows {
        for &(g, w) in list {
            targets.push(g);
            weights.push(w);
        }
        offsets.push(targets.len() as u32);
    }
    // In range: `seq_encodings` chose the width from the item count, and `check_tables` refused
    // any target past it.
    let targets = match encoding.target_bytes {
        2 => le(&targets.iter().map(|&g| g as u16).collect::<Vec<u16>>()),
        3 => targets
            .iter()
            .flat_map(|&g| {
                let [a, b, c, _] = g.to_le_bytes();
                [a, b, c]
            })
            .collect(),
        _ => le(&targets),
    };
    let weights = if encoding.f16_weights {
        le(&weights
            .iter()
            .map(|&w| half::f16::from_f32(w).to_bits())
            .collect::<Vec<u16>>())
    } else {
        le(&weights)
    };
    [le(&offsets), targets, weights]
}

/// The sections of one shard, in the order they are written.
#[derive(Default)]
struct Sections(Vec<SectionBuf>);

impl Sections {
    fn push(&mut self, kind: SectionKind, bytes: Vec<u8>) {
        self.0.push(SectionBuf { kind, bytes });
    }
}

/// The sections of shard `index` over `range` in its role, the first pass's aside. (Whole
/// shards keep the section order of earlier versions.)
fn shard_sections(
    spec: &ModelSpec,
    meta: &Meta,
    encodings: &[CsrEncoding; SEQ_TABLES],
    index: usize,
    range: core::ops::Range<usize>,
    role: ShardRole,
) -> Vec<SectionBuf> {
    use SectionKind as K;
    let (item_data, index_data) = (role != ShardRole::Index, role != ShardRole::Page);
    let mut s = Sections::default();
    s.push(K::Meta, meta.encode().to_vec());
    let ids = &spec.ids[range.clone()];
    if item_data {
        let (offsets, text) = string_table(ids.iter());
        s.push(K::IdOffsets, offsets);
        s.push(K::IdBytes, text);
    }
    if index_data {
        push_keys(&mut s, ids);
    }
    if item_data {
        push_rows(&mut s, spec, meta, range.clone());
        let bias = if spec.bias.is_empty() {
            vec![0.0f32; range.len()]
        } else {
            spec.bias[range.clone()].to_vec()
        };
        s.push(K::ItemBias, le(&bias));
    }
    if index_data && !spec.categories.is_empty() {
        s.push(K::Categories, le(&spec.categories[range.clone()]));
    }
    if item_data {
        push_seq_tables(&mut s, spec, encodings, range);
    }
    if index == 0 && index_data {
        push_global(&mut s, spec);
    }
    s.0
}

/// The items' keys sorted, and the local index of each.
fn push_keys(s: &mut Sections, ids: &[String]) {
    use SectionKind as K;
    let mut keyed: Vec<(u64, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (item_key(id), i as u32))
        .collect();
    keyed.sort_unstable();
    s.push(
        K::KeysSorted,
        le(&keyed.iter().map(|k| k.0).collect::<Vec<_>>()),
    );
    // As narrow as the shard's item count allows (format 7).
    let order = keyed.iter().map(|k| k.1);
    if ids.len() <= 1 << 16 {
        s.push(
            K::KeysOrderU16,
            le(&order.map(|i| i as u16).collect::<Vec<_>>()),
        );
    } else if ids.len() <= 1 << 24 {
        s.push(
            K::KeysOrderU24,
            order.flat_map(|i| i.to_le_bytes()[..3].to_vec()).collect(),
        );
    } else {
        s.push(K::KeysOrder, le(&order.collect::<Vec<_>>()));
    }
}

fn push_seq_tables(
    s: &mut Sections,
    spec: &ModelSpec,
    encodings: &[CsrEncoding; SEQ_TABLES],
    range: core::ops::Range<usize>,
) {
    for ((table, kinds), &encoding) in spec.seq.iter().zip(SEQ_SECTION_KINDS).zip(encodings) {
        if !table.is_empty() {
            let [offsets, targets, weights] = csr(table[range.clone()].iter(), encoding);
            s.push(kinds.offsets, offsets);
            let (t, w) = (
                encoding.targets_kind(kinds),
                if encoding.f16_weights {
                    kinds.weights_f16
                } else {
                    kinds.weights
                },
            );
            s.push(t, targets);
            s.push(w, weights);
        }
    }
}

/// The item rows in the model's dtype (int8 adds one scale per row), padded to the row stride.
fn push_rows(s: &mut Sections, spec: &ModelSpec, meta: &Meta, range: core::ops::Range<usize>) {
    let dim = meta.dim as usize;
    let stride = meta.row_stride() as usize;
    let n = range.len();
    let vectors = spec.vectors[range.start * dim..range.end * dim].chunks_exact(dim);
    match meta.dtype {
        Dtype::I8 => {
            let mut rows = vec![0i8; n * stride];
            let mut scales = Vec::with_capacity(n);
            for (row, out) in vectors.zip(rows.chunks_exact_mut(stride)) {
                scales.push(quantize_row_i8(row, &mut out[..dim]));
            }
            s.push(SectionKind::RowsI8, le(&rows));
            s.push(SectionKind::RowScales, le(&scales));
        }
        Dtype::F32 => {
            let mut rows = vec![0f32; n * stride];
            for (row, out) in vectors.zip(rows.chunks_exact_mut(stride)) {
                out[..dim].copy_from_slice(row);
            }
            s.push(SectionKind::RowsF32, le(&rows));
        }
        Dtype::F16 => {
            let mut rows = vec![0u16; n * stride];
            for (row, out) in vectors.zip(rows.chunks_exact_mut(stride)) {
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = half::f16::from_f32(x).to_bits();
                }
            }
            s.push(SectionKind::RowsF16, le(&rows));
        }
    }
}

/// The model-wide tables, carried by shard 0 only.
fn push_global(s: &mut Sections, spec: &ModelSpec) {
    use SectionKind as K;
    for (kind, table) in [
        (K::QueryTransform, &spec.query_transform),
        (K::QueryBias, &spec.query_bias),
        (K::CtxTime, &spec.ctx_time),
        (K::CtxDevice, &spec.ctx_device),
        (K::CtxGeo, &spec.ctx_geo),
    ] {
        if let Some(t) = table {
            s.push(kind, le(t));
        }
    }
    if let Some(profiles) = &spec.profiles {
        let values: Vec<f32> = profiles.iter().flat_map(|p| p.to_array()).collect();
        s.push(K::Profiles, le(&values));
    }
    if let Some(t) = spec.trend.as_ref().filter(|t| !t.buckets.is_empty()) {
        let kinds = [K::TrendOffsets, K::TrendItems, K::TrendCounts];
        for (kind, bytes) in kinds
            .into_iter()
            .zip(csr(t.buckets.iter(), CsrEncoding::WIDE))
        {
            s.push(kind, bytes);
        }
    }
    if !spec.category_names.is_empty() {
        let (offsets, text) = string_table(spec.category_names.iter());
        s.push(K::CategoryOffsets, offsets);
        s.push(K::CategoryBytes, text);
    }
    if let (Some(e), Some(meta)) = (&spec.encoder, &spec.meta) {
        let weights = spec
            .profiles
            .map_or([1.0; PROFILE_BUCKETS], |p| p.map(|p| p.encoder));
        let bytes = crate::encoder::encode_section(e.shape(meta.dim), &weights, &e.weights);
        s.push(K::SeqEncoder, bytes);
    }
}

/// The header fields a shard's writer chooses.
struct HeaderFields {
    model_id: u64,
    index: u32,
    count: u32,
    item_start: u32,
    item_count: u32,
    role: ShardRole,
}

fn assemble(sections: &[SectionBuf], h: HeaderFields) -> Vec<u8> {
    let align = |x: usize| x.div_ceil(SECTION_ALIGN) * SECTION_ALIGN;
    let table_end = HEADER_LEN + sections.len() * SECTION_ENTRY_LEN;
    let mut offsets = Vec::with_capacity(sections.len());
    let mut at = align(table_end);
    let mut end = table_end;
    for s in sections {
        offsets.push(at);
        end = at + s.bytes.len();
        at = align(end);
    }
    let mut out = vec![0u8; end];
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC);
    put(ENDIAN_AT, &ENDIAN_MARKER.to_le_bytes());
    put(VERSION_AT, &VERSION.to_le_bytes());
    put(HEADER_LEN_AT, &(HEADER_LEN as u16).to_le_bytes());
    put(SECTION_COUNT_AT, &(sections.len() as u32).to_le_bytes());
    put(TOTAL_LEN_AT, &(end as u64).to_le_bytes());
    put(FLAGS_AT, &h.role.flags().to_le_bytes());
    put(MODEL_ID_AT, &h.model_id.to_le_bytes());
    put(SHARD_INDEX_AT, &h.index.to_le_bytes());
    put(SHARD_COUNT_AT, &h.count.to_le_bytes());
    put(ITEM_START_AT, &h.item_start.to_le_bytes());
    put(ITEM_COUNT_AT, &h.item_count.to_le_bytes());
    for (i, (s, &offset)) in sections.iter().zip(&offsets).enumerate() {
        let e = HEADER_LEN + i * SECTION_ENTRY_LEN;
        put(e + ENTRY_KIND_AT, &(s.kind as u32).to_le_bytes());
        put(e + ENTRY_OFFSET_AT, &(offset as u64).to_le_bytes());
        put(e + ENTRY_LENGTH_AT, &(s.bytes.len() as u64).to_le_bytes());
        put(offset, &s.bytes);
    }
    let checksum = shard_checksum(&out, CHECKSUM_AT);
    out[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&checksum.to_le_bytes());
    out
}
