//! Deterministic synthetic models for tests, benchmarks and examples (with the `writer`
//! feature). Items fall into clusters: vectors near their cluster's centre, one category per
//! cluster, neighbours within the cluster and a transition to the next item of the cluster, so
//! tests can check that a session pulls the ranking toward the clicked cluster.

use crate::format::{Dtype, Meta, Profile, DEVICE_CLASSES, PROFILE_BUCKETS, TIME_BINS};
use crate::math::SplitMix64;
use crate::writer::{write_model, ModelSpec, TrendSpec};

/// Parameters of a synthetic model.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub items: usize,
    pub dim: usize,
    pub clusters: usize,
    pub dtype: Dtype,
    pub seed: u64,
    pub neighbours: usize,
    /// Whether each item gets a transition to the next item of its cluster.
    pub transitions: bool,
    pub with_context: bool,
    /// Whether the model carries session-length profiles and a trend table (format v2).
    pub with_trend: bool,
    /// Whether int8 shards carry first-pass codes (format v3).
    pub first_pass: bool,
    /// Whether the model carries a session encoder (format v8) of random weights.
    pub with_encoder: bool,
}

/// Start of the synthetic trend table (unix seconds).
pub const TREND_START: i64 = 1_700_000_000;
/// Daily trend buckets in the synthetic model.
pub const TREND_DAYS: usize = 20;

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            items: 40,
            dim: 16,
            clusters: 4,
            dtype: Dtype::I8,
            seed: 1,
            neighbours: 3,
            transitions: true,
            with_context: true,
            with_trend: false,
            first_pass: false,
            with_encoder: false,
        }
    }
}

impl Synthetic {
    /// The cluster of item `i`.
    pub fn cluster_of(&self, i: usize) -> usize {
        i % self.clusters
    }

    /// The model spec.
    pub fn spec(&self) -> ModelSpec {
        let mut rng = SplitMix64::new(self.seed);
        let (n, d, c) = (self.items, self.dim, self.clusters.max(1));
        let centres: Vec<f32> = (0..c * d).map(|_| rng.approx_normal()).collect();
        let mut vectors = Vec::with_capacity(n * d);
        for i in 0..n {
            let k = i % c;
            for j in 0..d {
                vectors.push(centres[k * d + j] + 0.3 * rng.approx_normal());
            }
        }
        let ids: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
        let bias: Vec<f32> = (0..n).map(|_| 0.1 * rng.approx_normal()).collect();
        let categories: Vec<u64> = (0..n).map(|i| 1u64 << (i % c).min(63)).collect();
        let category_names: Vec<String> = (0..c.min(64)).map(|k| format!("cat{k}")).collect();
        let neighbours: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|i| {
                (1..=self.neighbours)
                    .map(|s| ((i + s * c) % n) as u32)
                    .filter(|&t| t as usize != i)
                    .map(|t| (t, 0.5))
                    .collect()
            })
            .collect();
        let transitions: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|i| {
                if i + c < n {
                    vec![((i + c) as u32, 1.0)]
                } else {
                    vec![]
                }
            })
            .collect();
        let mut meta = Meta::new(d as u32, self.dtype, n as u32);
        meta.seq_len = 3;
        meta.seq_weights[0][..3].copy_from_slice(&[0.3, 0.2, 0.1]);
        meta.seq_weights[1][0] = 0.5;
        meta.geo_buckets = if self.with_context { 8 } else { 0 };
        let table = |rows: usize, rng: &mut SplitMix64| -> Vec<f32> {
            (0..rows * d).map(|_| 0.2 * rng.approx_normal()).collect()
        };
        ModelSpec {
            meta: Some(meta),
            ids,
            vectors,
            bias,
            categories,
            category_names,
            seq: [
                if self.neighbours > 0 {
                    neighbours
                } else {
                    Vec::new()
                },
                transitions,
            ],
            query_transform: None,
            seq_target_bytes: None,
            query_bias: self.with_context.then(|| table(1, &mut rng)),
            ctx_time: self.with_context.then(|| table(TIME_BINS, &mut rng)),
            ctx_device: self.with_context.then(|| table(DEVICE_CLASSES, &mut rng)),
            ctx_geo: self.with_context.then(|| table(8, &mut rng)),
            profiles: self.with_trend.then(|| {
                core::array::from_fn(|b| Profile {
                    embed: [0.0, 0.5, 0.8, 1.0, 1.0, 1.2][b % PROFILE_BUCKETS],
                    context: 0.5,
                    neighbours: 1.0 + 0.25 * b as f32,
                    transitions: 2.0 - 0.25 * b as f32,
                    trend: [2.0, 1.0, 0.5, 0.25, 0.1, 0.0][b % PROFILE_BUCKETS],
                    encoder: [0.0, 0.6, 0.8, 1.0, 1.0, 1.2][b % PROFILE_BUCKETS],
                })
            }),
            trend: self.with_trend.then(|| self.trend(&mut rng)),
            first_pass: self.first_pass,
            encoder: self
                .with_encoder
                .then(|| synthetic_encoder(d as u32, 8, &mut rng)),
        }
    }

    /// Daily counts where cluster `day % clusters` is in fashion on each day.
    fn trend(&self, rng: &mut SplitMix64) -> TrendSpec {
        let c = self.clusters.max(1);
        let mut buckets = Vec::with_capacity(TREND_DAYS);
        for day in 0..TREND_DAYS {
            let mut bucket = Vec::new();
            for i in 0..self.items {
                if i % c == day % c || rng.next_f32() < 0.1 {
                    bucket.push((i as u32, 1.0 + (10.0 * rng.next_f32()).floor()));
                }
            }
            buckets.push(bucket);
        }
        TrendSpec {
            start: TREND_START,
            bucket_s: 86_400,
            window_s: 3 * 86_400,
            buckets,
        }
    }

    /// The model as shard bytes, split at `max_shard_bytes`.
    pub fn shards(&self, max_shard_bytes: u64) -> Vec<Vec<u8>> {
        self.write(&self.spec(), max_shard_bytes)
    }

    /// `spec` (this model's spec, perhaps edited) as shard bytes under this model's id.
    pub fn write(&self, spec: &ModelSpec, max_shard_bytes: u64) -> Vec<Vec<u8>> {
        write_model(spec, self.seed ^ 0xed9e_4ec0, max_shard_bytes)
            .expect("synthetic model is valid")
    }
}

/// A session encoder of random weights reading `positions` positions: the norms' weights near
/// 1, the rest small, so that its output moves rankings without swamping the session's own
/// vector.
pub fn synthetic_encoder(
    dim: u32,
    positions: u32,
    rng: &mut SplitMix64,
) -> crate::writer::EncoderSpec {
    use crate::encoder::{EncoderShape, Tensor, TENSORS};
    let shape = EncoderShape {
        dim,
        positions,
        hidden: 2 * dim,
    };
    let mut weights = Vec::with_capacity(shape.weight_count());
    for t in TENSORS {
        let norm_weight = matches!(
            t,
            Tensor::Norm1Weight | Tensor::Norm2Weight | Tensor::Norm3Weight
        );
        for _ in 0..shape.len(t) {
            let noise = 0.3 * rng.approx_normal();
            weights.push(if norm_weight { 1.0 + noise } else { noise });
        }
    }
    crate::writer::EncoderSpec {
        positions: shape.positions,
        hidden: shape.hidden,
        weights,
    }
}

/// A small model (40 items, 16 dims, 4 clusters) in one shard.
pub fn tiny_model_shards() -> Vec<Vec<u8>> {
    Synthetic::default().shards(crate::format::MAX_SHARD_BYTES)
}

/// The requests whose rankings the golden files freeze: the two-click session of format 1, then
/// (for format 2) an anonymous visitor, one click and two clicks at a time inside the trend
/// window, and a request long after the model's data.
pub fn golden_cases(format_version: u16) -> Vec<(crate::Session, crate::Request)> {
    use crate::{Context, EventType, Request, Session};
    let session = |clicks: &[(&str, EventType, u64)]| {
        let mut s = Session::new();
        for &(id, kind, ts) in clicks {
            s.observe(id, kind, ts);
        }
        s
    };
    let at = |ts: Option<i64>| Request {
        k: 8,
        context: Context {
            ts,
            ..Context::default()
        },
        ..Request::default()
    };
    let two = [
        ("item-1", EventType::Click, 1_700_000_000),
        ("item-5", EventType::Like, 1_700_000_060),
    ];
    if format_version < 2 {
        return vec![(session(&two), at(None))];
    }
    let inside = Some(TREND_START + 10 * 86_400 + 3_600);
    let late = Some(TREND_START + 400 * 86_400);
    let mut cases = vec![
        (session(&[]), at(inside)),
        (session(&two[..1]), at(inside)),
        (session(&two), at(inside)),
        (session(&[]), at(late)),
        (session(&two), at(None)),
    ];
    if format_version >= 8 {
        // Longer sessions of mixed event types, and the same items in another order: the
        // session encoder reads positions and types (and more items than its 8 positions).
        let kinds = [EventType::View, EventType::Click, EventType::Purchase];
        let ids: Vec<String> = (0..11).map(|i| format!("item-{}", 7 * i + 2)).collect();
        let long: Vec<(&str, EventType, u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), kinds[i % 3], 1_700_000_000 + 60 * i as u64))
            .collect();
        let mut reordered = long[..5].to_vec();
        reordered.reverse();
        for (i, c) in reordered.iter_mut().enumerate() {
            c.2 = 1_700_000_000 + 60 * i as u64;
        }
        cases.push((session(&long[..5]), at(inside)));
        cases.push((session(&reordered), at(inside)));
        cases.push((session(&long), at(inside)));
    }
    cases
}

/// The query vector of each golden case, one line per case: its `f32` values as hexadecimal
/// bits, so a file pins the arithmetic that builds it (the session encoder's included) bit for
/// bit, where a ranking shows only the order it leads to.
pub fn query_lines(engine: &crate::Engine, format_version: u16) -> String {
    golden_cases(format_version)
        .iter()
        .map(|(session, request)| {
            let q = engine.query_vector(session, &request.context);
            let bits: Vec<String> = q.iter().map(|x| format!("{:08x}", x.to_bits())).collect();
            bits.join(" ") + "\n"
        })
        .collect()
}

/// The first line where a golden shard's query vectors differ from its query file
/// ([`query_lines`]), if any.
pub fn golden_query_mismatch(format_version: u16, shard: &[u8], queries: &str) -> Option<String> {
    let engine = match crate::Engine::from_bytes([shard]) {
        Ok(e) => e,
        Err(e) => return Some(format!("format {format_version}: golden shard: {e}")),
    };
    let got = query_lines(&engine, format_version);
    if got.lines().count() != queries.lines().count() {
        return Some(format!(
            "format {format_version}: {} query lines, expected {}",
            got.lines().count(),
            queries.lines().count()
        ));
    }
    got.lines()
        .zip(queries.lines())
        .position(|(g, w)| g != w)
        .map(|i| format!("format {format_version}, query of case {i} differs"))
}

/// The ids of a ranking, comma-separated (one line of a golden ranking file).
pub fn ranking_line(
    engine: &crate::Engine,
    session: &crate::Session,
    request: &crate::Request,
) -> String {
    engine
        .recommend(session, request)
        .iter()
        .map(|r| engine.item_id(r.index).unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Ranks a golden shard's cases and compares them with its ranking file (one line per case of
/// [`golden_cases`]); the first difference, if any. From format 3 on, the ranking goes through
/// the two-stage scan, keeping [`GOLDEN_FIRST_PASS_KEEP`] candidates.
pub fn golden_mismatch(format_version: u16, shard: &[u8], ranking: &str) -> Option<String> {
    let mut engine = match crate::Engine::from_bytes([shard]) {
        Ok(e) => e,
        Err(e) => return Some(format!("format {format_version}: golden shard: {e}")),
    };
    if format_version >= 3 && !engine.set_first_pass(Some(GOLDEN_FIRST_PASS_KEEP)) {
        return Some(format!("format {format_version}: no first pass"));
    }
    let cases = golden_cases(format_version);
    let lines: Vec<&str> = ranking.lines().collect();
    if lines.len() != cases.len() {
        return Some(format!(
            "format {format_version}: {} ranking lines for {} cases",
            lines.len(),
            cases.len()
        ));
    }
    cases
        .iter()
        .zip(lines)
        .enumerate()
        .find_map(|(i, ((session, request), want))| {
            let got = ranking_line(&engine, session, request);
            (got != want).then(|| format!("format {format_version}, case {i}: {got} != {want}"))
        })
}

/// Items the golden model of format 3 keeps for exact scoring: few enough that the first
/// pass decides most of the ranking, so the golden rankings pin its arithmetic down.
pub const GOLDEN_FIRST_PASS_KEEP: usize = 12;

/// The golden model of format 3 and later: 400 items with profiles, a trend table and
/// first-pass codes (3 coarse clusters). From format 4 its neighbour weights are 0.4/s for the
/// s-th neighbour, most of which f16 cannot hold exactly, so the golden rankings also pin down
/// how narrow sequence tables round. From format 5 its targets are stored in 3 bytes (asked
/// for: 400 items would get u16), so the golden shard pins the u24 form down too.
pub fn tiny_golden_model_shards() -> Vec<Vec<u8>> {
    let (spec, model_id) = tiny_golden_model_spec();
    crate::writer::write_model(&spec, model_id, crate::format::MAX_SHARD_BYTES)
        .expect("golden model is valid")
}

/// The golden model of format 3 and later as a paged model (format 7): its index in one shard,
/// and pages of at most [`GOLDEN_PAGE_ITEMS`] items.
pub fn tiny_golden_paged_model() -> crate::writer::PagedModel {
    let (spec, model_id) = tiny_golden_model_spec();
    crate::writer::write_paged_model(
        &spec,
        model_id,
        crate::format::MAX_SHARD_BYTES,
        GOLDEN_PAGE_ITEMS,
    )
    .expect("golden model is valid")
}

/// Items per page of the paged golden model: its 400 items come in several pages.
pub const GOLDEN_PAGE_ITEMS: usize = 64;

fn tiny_golden_model_spec() -> (crate::writer::ModelSpec, u64) {
    let syn = Synthetic {
        items: 400,
        with_trend: true,
        first_pass: true,
        with_encoder: true,
        ..Synthetic::default()
    };
    let mut spec = syn.spec();
    for list in &mut spec.seq[0] {
        for (s, entry) in list.iter_mut().enumerate() {
            entry.1 = 0.4 / (s + 1) as f32;
        }
    }
    spec.seq_target_bytes = Some(3);
    (spec, syn.seed ^ 0xed9e_4ec0)
}

/// Shards written back to back in one buffer (as the paged golden files keep pages), split by
/// the total length in each header.
pub fn split_shards(mut bytes: &[u8]) -> Vec<&[u8]> {
    let at = crate::format::TOTAL_LEN_AT;
    let mut out = Vec::new();
    while bytes.len() >= crate::format::HEADER_LEN {
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[at..at + 8]);
        let len = (u64::from_le_bytes(len) as usize).clamp(1, bytes.len());
        out.push(&bytes[..len]);
        bytes = &bytes[len..];
    }
    out
}

/// As [`golden_mismatch`], for the paged golden model (format 7): its index shard, its pages
/// back to back, and the ranking file of the same model in whole shards, which it must
/// reproduce, loading the pages each case asks for.
pub fn golden_paged_mismatch(
    format_version: u16,
    index: &[u8],
    pages: &[u8],
    ranking: &str,
) -> Option<String> {
    let mut engine = match crate::Engine::from_bytes([index]) {
        Ok(e) => e,
        Err(e) => return Some(format!("paged golden index: {e}")),
    };
    if !engine.set_first_pass(Some(GOLDEN_FIRST_PASS_KEEP)) {
        return Some("paged golden: no first pass".into());
    }
    let pages = split_shards(pages);
    let lines: Vec<&str> = ranking.lines().collect();
    let cases = golden_cases(format_version);
    if lines.len() != cases.len() {
        return Some(format!(
            "paged golden: {} ranking lines for {} cases",
            lines.len(),
            cases.len()
        ));
    }
    for (i, ((session, request), want)) in cases.iter().zip(lines).enumerate() {
        for p in engine.loaded_pages() {
            engine.drop_page(p);
        }
        let mut ranked = None;
        for _ in 0..3 {
            match engine.try_recommend(session, request) {
                Ok(r) => {
                    ranked = Some(r);
                    break;
                }
                Err(crate::engine::MissingPages(missing)) => {
                    for p in missing {
                        let added = pages
                            .get(p as usize)
                            .ok_or_else(|| format!("no page {p}"))
                            .and_then(|b| {
                                crate::Shard::from_bytes(b)
                                    .and_then(|s| engine.add_page(s))
                                    .map_err(|e| e.to_string())
                            });
                        if let Err(e) = added {
                            return Some(format!("paged golden, case {i}, page {p}: {e}"));
                        }
                    }
                }
            }
        }
        let Some(ranked) = ranked else {
            return Some(format!("paged golden, case {i}: pages still missing"));
        };
        let got: Vec<&str> = ranked
            .iter()
            .map(|r| engine.item_id(r.index).unwrap_or("?"))
            .collect();
        let got = got.join(",");
        if got != want {
            return Some(format!("paged golden, case {i}: {got} != {want}"));
        }
    }
    None
}

/// The golden model of format 2: the tiny model with profiles and a trend table.
pub fn tiny_v2_model_shards() -> Vec<Vec<u8>> {
    Synthetic {
        with_trend: true,
        ..Synthetic::default()
    }
    .shards(crate::format::MAX_SHARD_BYTES)
}
