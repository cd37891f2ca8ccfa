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
    let n = spec.ids.len();
    let mut meta = spec
        .meta
        .clone()
        .ok_or_else(|| Error::argument("meta is required"))?;
    meta.total_items = u32::try_from(n).map_err(|_| Error::argument("too many items"))?;
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
    meta.check().map_err(|e| Error::argument(e.to_string()))?;
    let dim = meta.dim as usize;
    let stride = meta.row_stride() as usize;
    let check_len = |what: &str, len: usize, want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(Error::argument(format!(
                "{what}: {len} values, expected {want}"
            )))
        }
    };
    check_len("vectors", spec.vectors.len(), n * dim)?;
    if !spec.bias.is_empty() {
        check_len("bias", spec.bias.len(), n)?;
    }
    if !spec.categories.is_empty() {
        check_len("categories", spec.categories.len(), n)?;
    }
    for t in 0..SEQ_TABLES {
        if !spec.seq[t].is_empty() {
            check_len("sequence table", spec.seq[t].len(), n)?;
            for list in &spec.seq[t] {
                if list
                    .iter()
                    .any(|&(g, w)| g as usize >= n || !(w.is_finite() && w >= 0.0))
                {
                    return Err(Error::argument("sequence entry out of range or negative"));
                }
            }
        }
    }
    let finite = |what: &str, v: &[f32]| {
        if v.iter().all(|x| x.is_finite()) {
            Ok(())
        } else {
            Err(Error::argument(format!("{what} has non-finite values")))
        }
    };
    finite("vectors", &spec.vectors)?;
    finite("bias", &spec.bias)?;
    for (what, table, rows) in [
        ("query_transform", &spec.query_transform, dim),
        ("query_bias", &spec.query_bias, 1),
        ("ctx_time", &spec.ctx_time, TIME_BINS),
        ("ctx_device", &spec.ctx_device, DEVICE_CLASSES),
        ("ctx_geo", &spec.ctx_geo, meta.geo_buckets as usize),
    ] {
        if let Some(t) = table {
            check_len(what, t.len(), rows * dim)?;
            finite(what, t)?;
        }
    }
    if spec.ctx_geo.is_none() {
        meta.geo_buckets = 0;
    }
    if let Some(profiles) = &spec.profiles {
        let values = profiles.iter().flat_map(|p| p.to_array());
        if !values.into_iter().all(|w| w.is_finite() && w >= 0.0) {
            return Err(Error::argument(
                "profile weights must be finite and non-negative",
            ));
        }
    }
    if let Some(t) = &spec.trend {
        let bad = t.buckets.iter().flatten();
        if bad
            .into_iter()
            .any(|&(g, c)| g as usize >= n || !(c.is_finite() && c >= 0.0))
        {
            return Err(Error::argument("trend entry out of range or negative"));
        }
    }
    let mut keys: Vec<u64> = spec.ids.iter().map(|id| item_key(id)).collect();
    if spec.ids.iter().any(|id| id.is_empty()) {
        return Err(Error::argument("empty item id"));
    }
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::argument(
            "duplicate item ids (or a 64-bit key collision)",
        ));
    }

    // Split items into shards by their byte cost, leaving room for headers, tables, padding and
    // (in shard 0) the global tables.
    let item_cost = |i: usize| -> u64 {
        let row = (stride * meta.dtype.size()) as u64;
        let seq: u64 = spec
            .seq
            .iter()
            .map(|t| t.get(i).map_or(0, |l| 8 * l.len() as u64 + 4))
            .sum();
        row + 4 + 4 + 8 + 12 + 4 + spec.ids[i].len() as u64 + seq
    };
    let global_cost: u64 = [
        &spec.query_transform,
        &spec.query_bias,
        &spec.ctx_time,
        &spec.ctx_device,
        &spec.ctx_geo,
    ]
    .iter()
    .map(|t| t.as_ref().map_or(0, |v| 4 * v.len() as u64))
    .sum::<u64>()
        + spec.trend.as_ref().map_or(0, |t| {
            4 * (t.buckets.len() as u64 + 1)
                + 8 * t.buckets.iter().map(|b| b.len() as u64).sum::<u64>()
        })
        + 4 * (PROFILE_BUCKETS * PROFILE_FIELDS) as u64
        + spec
            .category_names
            .iter()
            .map(|c| c.len() as u64 + 4)
            .sum::<u64>();
    let fixed = (HEADER_LEN + MAX_SECTIONS as usize * SECTION_ENTRY_LEN + META_LEN) as u64
        + 32 * SECTION_ALIGN as u64;
    let mut ranges = Vec::new();
    let mut start = 0usize;
    let mut used = fixed + global_cost;
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

    let count = ranges.len() as u32;
    let mut out = Vec::with_capacity(ranges.len());
    for (index, range) in ranges.into_iter().enumerate() {
        let sections = shard_sections(spec, &meta, index, range.clone());
        let bytes = assemble(
            &sections,
            model_id,
            index as u32,
            count,
            range.start as u32,
            range.len() as u32,
        );
        if bytes.len() as u64 > max_shard_bytes {
            return Err(Error::argument(format!(
                "shard {index} is {} bytes, above the limit",
                bytes.len()
            )));
        }
        out.push(bytes);
    }
    Ok(out)
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

fn shard_sections(
    spec: &ModelSpec,
    meta: &Meta,
    index: usize,
    range: core::ops::Range<usize>,
) -> Vec<SectionBuf> {
    use SectionKind as K;
    let dim = meta.dim as usize;
    let stride = meta.row_stride() as usize;
    let n = range.len();
    let mut sections = vec![SectionBuf {
        kind: K::Meta,
        bytes: meta.encode().to_vec(),
    }];
    let (offsets, text) = string_table(spec.ids[range.clone()].iter());
    sections.push(SectionBuf {
        kind: K::IdOffsets,
        bytes: offsets,
    });
    sections.push(SectionBuf {
        kind: K::IdBytes,
        bytes: text,
    });
    let mut keyed: Vec<(u64, u32)> = spec.ids[range.clone()]
        .iter()
        .enumerate()
        .map(|(i, id)| (item_key(id), i as u32))
        .collect();
    keyed.sort_unstable();
    sections.push(SectionBuf {
        kind: K::KeysSorted,
        bytes: le(&keyed.iter().map(|k| k.0).collect::<Vec<_>>()),
    });
    sections.push(SectionBuf {
        kind: K::KeysOrder,
        bytes: le(&keyed.iter().map(|k| k.1).collect::<Vec<_>>()),
    });
    let vectors = &spec.vectors[range.start * dim..range.end * dim];
    match meta.dtype {
        Dtype::I8 => {
            let mut rows = vec![0i8; n * stride];
            let mut scales = Vec::with_capacity(n);
            for (row, out) in vectors.chunks_exact(dim).zip(rows.chunks_exact_mut(stride)) {
                scales.push(quantize_row_i8(row, &mut out[..dim]));
            }
            sections.push(SectionBuf {
                kind: K::RowsI8,
                bytes: le(&rows),
            });
            sections.push(SectionBuf {
                kind: K::RowScales,
                bytes: le(&scales),
            });
        }
        Dtype::F32 => {
            let mut rows = vec![0f32; n * stride];
            for (row, out) in vectors.chunks_exact(dim).zip(rows.chunks_exact_mut(stride)) {
                out[..dim].copy_from_slice(row);
            }
            sections.push(SectionBuf {
                kind: K::RowsF32,
                bytes: le(&rows),
            });
        }
        Dtype::F16 => {
            let mut rows = vec![0u16; n * stride];
            for (row, out) in vectors.chunks_exact(dim).zip(rows.chunks_exact_mut(stride)) {
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = half::f16::from_f32(x).to_bits();
                }
            }
            sections.push(SectionBuf {
                kind: K::RowsF16,
                bytes: le(&rows),
            });
        }
    }
    let bias = if spec.bias.is_empty() {
        vec![0.0f32; n]
    } else {
        spec.bias[range.clone()].to_vec()
    };
    sections.push(SectionBuf {
        kind: K::ItemBias,
        bytes: le(&bias),
    });
    if !spec.categories.is_empty() {
        sections.push(SectionBuf {
            kind: K::Categories,
            bytes: le(&spec.categories[range.clone()]),
        });
    }
    for (table, kinds) in spec.seq.iter().zip(SEQ_SECTION_KINDS) {
        if table.is_empty() {
            continue;
        }
        let mut offsets = vec![0u32];
        let (mut targets, mut weights) = (Vec::new(), Vec::new());
        for list in &table[range.clone()] {
            for &(g, w) in list {
                targets.push(g);
                weights.push(w);
            }
            offsets.push(targets.len() as u32);
        }
        sections.push(SectionBuf {
            kind: kinds[0],
            bytes: le(&offsets),
        });
        sections.push(SectionBuf {
            kind: kinds[1],
            bytes: le(&targets),
        });
        sections.push(SectionBuf {
            kind: kinds[2],
            bytes: le(&weights),
        });
    }
    if index == 0 {
        for (kind, table) in [
            (K::QueryTransform, &spec.query_transform),
            (K::QueryBias, &spec.query_bias),
            (K::CtxTime, &spec.ctx_time),
            (K::CtxDevice, &spec.ctx_device),
            (K::CtxGeo, &spec.ctx_geo),
        ] {
            if let Some(t) = table {
                sections.push(SectionBuf { kind, bytes: le(t) });
            }
        }
        if let Some(profiles) = &spec.profiles {
            let values: Vec<f32> = profiles.iter().flat_map(|p| p.to_array()).collect();
            sections.push(SectionBuf {
                kind: K::Profiles,
                bytes: le(&values),
            });
        }
        if let Some(t) = spec.trend.as_ref().filter(|t| !t.buckets.is_empty()) {
            let mut offsets = vec![0u32];
            let (mut items, mut counts) = (Vec::new(), Vec::new());
            for bucket in &t.buckets {
                for &(g, c) in bucket {
                    items.push(g);
                    counts.push(c);
                }
                offsets.push(items.len() as u32);
            }
            for (kind, bytes) in [
                (K::TrendOffsets, le(&offsets)),
                (K::TrendItems, le(&items)),
                (K::TrendCounts, le(&counts)),
            ] {
                sections.push(SectionBuf { kind, bytes });
            }
        }
        if !spec.category_names.is_empty() {
            let (offsets, text) = string_table(spec.category_names.iter());
            sections.push(SectionBuf {
                kind: K::CategoryOffsets,
                bytes: offsets,
            });
            sections.push(SectionBuf {
                kind: K::CategoryBytes,
                bytes: text,
            });
        }
    }
    sections
}

fn assemble(
    sections: &[SectionBuf],
    model_id: u64,
    index: u32,
    count: u32,
    item_start: u32,
    item_count: u32,
) -> Vec<u8> {
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
    put(MODEL_ID_AT, &model_id.to_le_bytes());
    put(SHARD_INDEX_AT, &index.to_le_bytes());
    put(SHARD_COUNT_AT, &count.to_le_bytes());
    put(ITEM_START_AT, &item_start.to_le_bytes());
    put(ITEM_COUNT_AT, &item_count.to_le_bytes());
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
