//! The evaluation protocol of shared/DATA.md, and the baselines computed in the same run.
//!
//! Per user (sequences already stably sorted by time): the last interaction is the test target,
//! the one before it the validation target, the rest training data. A query is the user's
//! history before the target; everything in it is excluded; all items are ranked; HR@10 and
//! NDCG@10 (gain 1/log2(rank+2), rank from 0) are averaged over users. edgerec is scored through
//! the real engine on real shards (int8 as the edge serves it, f32 for comparison).

use crate::dataset::{Dataset, Step};
use crate::train::{self, Combination, Params, Tables, TrainConfig};
use edgerec::format::{Dtype, Profile, MAX_SHARD_BYTES, PROFILE_BUCKETS, PROFILE_FIELDS};
use edgerec::{Engine, Request, Session};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// HR@10, NDCG@10 and the number of users.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub hr10: f64,
    pub ndcg10: f64,
    pub users: usize,
}

/// One evaluation query: a user's history (time order) and the target.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub history: &'a [Step],
    pub target: Step,
}

/// The leave-last-out split.
pub struct Split {
    /// Training sequences for validation (all but the last two per user).
    pub train: Vec<Vec<Step>>,
    /// Training sequences for test (all but the last per user).
    pub train_val: Vec<Vec<Step>>,
    /// Users evaluated (those with at least 3 interactions).
    pub users: Vec<usize>,
}

impl Split {
    /// Whether a user's sequence is evaluated: it has a test and a validation target and at
    /// least one event before them.
    pub fn evaluated(sequence: &[Step]) -> bool {
        sequence.len() >= 3
    }

    pub fn new(d: &Dataset) -> Split {
        let mut split = Split {
            train: Vec::new(),
            train_val: Vec::new(),
            users: Vec::new(),
        };
        for (u, s) in d.sequences.iter().enumerate() {
            if Split::evaluated(s) {
                split.users.push(u);
                split.train.push(s[..s.len() - 2].to_vec());
                split.train_val.push(s[..s.len() - 1].to_vec());
            } else {
                split.train.push(s.clone());
                split.train_val.push(s.clone());
            }
        }
        split
    }

    pub fn validation<'a>(&self, d: &'a Dataset) -> Vec<Query<'a>> {
        queries_from_end(d, &self.users, 2)
    }

    /// The tuning split over `positions` hold-out positions per user: the training sequences
    /// without each evaluated user's last `positions + 1` events, and the queries whose
    /// targets are the 2nd- … `(positions + 1)`-th-to-last events (each with everything before
    /// it as the history). The test event is never among them. With one position this is
    /// `train` and `validation`. Users with too few events for every position keep the
    /// positions they have, down to one. A log with more than [`TUNING_QUERY_CAP`] such
    /// queries keeps that many, evenly spaced over its users, since the tuner ranks every query
    /// once per profile it tries.
    pub fn tuning<'a>(d: &'a Dataset, positions: usize) -> (Vec<Vec<Step>>, Vec<Query<'a>>) {
        let positions = positions.max(1);
        let mut train = Vec::with_capacity(d.sequences.len());
        let mut queries = Vec::new();
        for s in &d.sequences {
            if !Split::evaluated(s) {
                train.push(s.clone());
                continue;
            }
            // At least one event stays before the earliest target, as in `Split::new`.
            let here = positions.min(s.len() - 2);
            train.push(s[..s.len() - 1 - here].to_vec());
            queries.extend((2..=here + 1).map(|back| query_from_end(s, back)));
        }
        if queries.len() > TUNING_QUERY_CAP {
            let n = queries.len();
            queries = (0..TUNING_QUERY_CAP)
                .map(|i| queries[i * n / TUNING_QUERY_CAP])
                .collect();
        }
        (train, queries)
    }

    pub fn test<'a>(&self, d: &'a Dataset) -> Vec<Query<'a>> {
        last_queries(d, &self.users)
    }
}

/// Most queries the tuner scores each profile on: twice the targets a log needs before it
/// stops adding hold-out positions (`train::TUNING_TARGETS`). The tuner ranks every query once
/// per profile it tries (about 400), so without a cap its time grows with users × items rather
/// than with events: a log of 50,436 events over 8,000 users and 8,000 items took 9 minutes.
pub const TUNING_QUERY_CAP: usize = 2 * crate::train::TUNING_TARGETS;

/// For each of `users`, the query whose target is the user's last interaction.
pub fn last_queries<'a>(d: &'a Dataset, users: &[usize]) -> Vec<Query<'a>> {
    queries_from_end(d, users, 1)
}

/// For each of `users`, the query whose target is the `back`-th interaction from the end.
fn queries_from_end<'a>(d: &'a Dataset, users: &[usize], back: usize) -> Vec<Query<'a>> {
    users
        .iter()
        .map(|&u| query_from_end(&d.sequences[u], back))
        .collect()
}

/// The query whose target is the `back`-th interaction of `sequence` from the end, with
/// everything before it as the history.
fn query_from_end(sequence: &[Step], back: usize) -> Query<'_> {
    let t = sequence.len() - back;
    Query {
        history: &sequence[..t],
        target: sequence[t],
    }
}

/// Averages the metrics of `top10(query)` over all queries.
pub fn evaluate(queries: &[Query<'_>], top10: impl FnMut(&Query<'_>) -> Vec<u32>) -> Metrics {
    Metrics::of(&per_query_ndcg(queries, top10))
}

/// The top 10 by a neighbour table alone, as the edge's neighbour boost scores it: item j gets
/// `Σ_k 0.7^k nb(last_k, j)` over the last 5 clicks, the history excluded, ties by item index.
/// Only the items the clicks reach are sorted; the rest score 0 and follow in index order.
pub fn neighbour_boost_top10(table: &train::Sparse, n_items: usize, q: &Query<'_>) -> Vec<u32> {
    let mut scores: HashMap<u32, f32> = HashMap::new();
    let mut w = 1.0f32;
    for s in q.history.iter().rev().take(5) {
        for &(j, c) in table.get(s.item as usize).map_or(&[][..], Vec::as_slice) {
            *scores.entry(j).or_insert(0.0) += w * c;
        }
        w *= 0.7;
    }
    let history: std::collections::HashSet<u32> = q.history.iter().map(|s| s.item).collect();
    let mut reached: Vec<(u32, f32)> = scores
        .into_iter()
        .filter(|&(j, c)| c > 0.0 && !history.contains(&j))
        .collect();
    reached.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut top: Vec<u32> = reached.iter().take(10).map(|e| e.0).collect();
    let chosen: std::collections::HashSet<u32> = top.iter().copied().collect();
    top.extend(
        (0..n_items as u32)
            .filter(|j| !history.contains(j) && !chosen.contains(j))
            .take(10 - top.len()),
    );
    top
}

/// NDCG@10 of `top10(query)` for each query (0 when the target is not in the top 10).
pub fn per_query_ndcg(
    queries: &[Query<'_>],
    mut top10: impl FnMut(&Query<'_>) -> Vec<u32>,
) -> Vec<f64> {
    queries
        .iter()
        .map(|q| {
            let list = top10(q);
            list.iter()
                .take(10)
                .position(|&i| i == q.target.item)
                .map_or(0.0, |rank| 1.0 / ((rank + 2) as f64).log2())
        })
        .collect()
}

impl Metrics {
    /// HR@10 and NDCG@10 from per-query NDCG@10 values (a hit is any positive value).
    pub fn of(ndcg: &[f64]) -> Metrics {
        let n = ndcg.len().max(1) as f64;
        Metrics {
            hr10: ndcg.iter().filter(|&&g| g > 0.0).count() as f64 / n,
            // Folded from +0.0: an empty sum of f64 is -0.0, which prints as "-0.0000".
            ndcg10: ndcg.iter().fold(0.0, |a, g| a + g) / n,
            users: ndcg.len(),
        }
    }
}

/// How much of a user's history the edge knows when it ranks: the latest `n` clicks (a short
/// visit) or the whole history (capped by the session's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clicks {
    Last(usize),
    Full,
}

impl Clicks {
    /// The rows of the by-length table, one per profile bucket (4–7 clicks measured at 5, 8+ at
    /// the full history).
    pub const TABLE: [Clicks; PROFILE_BUCKETS] = [
        Clicks::Last(0),
        Clicks::Last(1),
        Clicks::Last(2),
        Clicks::Last(3),
        Clicks::Last(5),
        Clicks::Full,
    ];

    /// The clicks the edge's session holds.
    pub fn session(self, history: &[Step]) -> &[Step] {
        let n = match self {
            Clicks::Last(n) => n,
            Clicks::Full => edgerec::session::MAX_SESSION_EVENTS,
        };
        &history[history.len().saturating_sub(n)..]
    }

    /// What may not be recommended: the clicks the edge knows (for the full history, all of it,
    /// as the protocol says).
    pub fn excluded(self, history: &[Step]) -> &[Step] {
        match self {
            Clicks::Last(_) => self.session(history),
            Clicks::Full => history,
        }
    }

    pub fn label(self) -> String {
        match self {
            Clicks::Last(n) => n.to_string(),
            Clicks::Full => "full".into(),
        }
    }
}

/// Top 10 of a dense score vector, `excluded` left out, ties broken by popularity then index.
fn top10_dense(scores: &[f32], popularity: &[f32], excluded: &[Step]) -> Vec<u32> {
    let mut is_excluded = vec![false; scores.len()];
    for s in excluded {
        is_excluded[s.item as usize] = true;
    }
    let mut idx: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| !is_excluded[i as usize])
        .collect();
    let key = |i: &u32| (scores[*i as usize], popularity[*i as usize]);
    let cmp = |a: &u32, b: &u32| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(a.cmp(b))
    };
    if idx.len() > 10 {
        idx.select_nth_unstable_by(9, cmp);
        idx.truncate(10);
    }
    idx.sort_by(cmp);
    idx
}

/// The baselines of the protocol (and the trending one), fitted on `train` sequences; each is
/// given the same clicks as the model.
pub struct Baselines {
    popularity: Vec<f32>,
    /// Every training interaction as (time, item), by time.
    by_time: Vec<(i64, u32)>,
    transitions: train::Sparse,
    cosine: train::Sparse,
}

/// The trending baseline's window: 30 days before the request.
pub const TRENDING_WINDOW_S: i64 = 30 * 86_400;

impl Baselines {
    pub fn fit(n_items: usize, train: &[Vec<Step>]) -> Baselines {
        let mut popularity = vec![0f32; n_items];
        for x in train.iter().flatten() {
            popularity[x.item as usize] += 1.0;
        }
        let mut by_time: Vec<(i64, u32)> = train.iter().flatten().map(|x| (x.ts, x.item)).collect();
        by_time.sort_unstable();
        Baselines {
            popularity,
            by_time,
            // P(j | i) orders each source's targets exactly as the raw counts do.
            transitions: train::transitions(n_items, train, usize::MAX),
            cosine: train::item_neighbours(n_items, train, usize::MAX),
        }
    }

    /// All-time popularity.
    pub fn popularity(&self, q: &Query<'_>, clicks: Clicks) -> Vec<u32> {
        top10_dense(
            &self.popularity,
            &self.popularity,
            clicks.excluded(q.history),
        )
    }

    /// Interactions in the 30 days before the request (no look-ahead), ties by popularity.
    pub fn trending(&self, q: &Query<'_>, clicks: Clicks) -> Vec<u32> {
        let t = q.target.ts;
        let from = self
            .by_time
            .partition_point(|e| e.0 < t.saturating_sub(TRENDING_WINDOW_S));
        let to = self.by_time.partition_point(|e| e.0 < t);
        let mut scores = vec![0f32; self.popularity.len()];
        for &(_, item) in &self.by_time[from..to.max(from)] {
            scores[item as usize] += 1.0;
        }
        top10_dense(&scores, &self.popularity, clicks.excluded(q.history))
    }

    /// Last-item transition counts (first-order Markov).
    pub fn markov(&self, q: &Query<'_>, clicks: Clicks) -> Vec<u32> {
        let mut scores = vec![0f32; self.popularity.len()];
        if let Some(last) = clicks.session(q.history).last() {
            for &(j, c) in &self.transitions[last.item as usize] {
                scores[j as usize] = c;
            }
        }
        top10_dense(&scores, &self.popularity, clicks.excluded(q.history))
    }

    /// Item-kNN cosine over the last 5 items, weight 0.7^k.
    pub fn knn(&self, q: &Query<'_>, clicks: Clicks) -> Vec<u32> {
        let mut scores = vec![0f32; self.popularity.len()];
        let mut w = 1.0f32;
        for s in clicks.session(q.history).iter().rev().take(5) {
            for &(j, c) in &self.cosine[s.item as usize] {
                scores[j as usize] += w * c;
            }
            w *= 0.7;
        }
        top10_dense(&scores, &self.popularity, clicks.excluded(q.history))
    }
}

/// Ranks through the engine exactly as the edge does: the clicks the edge knows as the
/// session, the target's request (time, geohash, device, timezone) as the request.
pub fn engine_top10(engine: &Engine, d: &Dataset, q: &Query<'_>, clicks: Clicks) -> Vec<u32> {
    engine_list(engine, d, q, clicks)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// [`engine_top10`] with the scores: (dataset item index, score), best first.
pub fn engine_list(engine: &Engine, d: &Dataset, q: &Query<'_>, clicks: Clicks) -> Vec<(u32, f32)> {
    engine_list_k(engine, d, q, clicks, 10)
}

/// [`engine_list`] with the `k` best instead of 10.
pub fn engine_list_k(
    engine: &Engine,
    d: &Dataset,
    q: &Query<'_>,
    clicks: Clicks,
    k: usize,
) -> Vec<(u32, f32)> {
    let mut session = Session::new();
    for s in clicks.session(q.history) {
        session.observe(&d.items[s.item as usize], s.kind, s.ts.max(0) as u64);
    }
    let request = Request {
        k,
        context: d.context(&q.target),
        exclude: clicks
            .excluded(q.history)
            .iter()
            .map(|s| d.items[s.item as usize].clone())
            .collect(),
        ..Request::default()
    };
    engine
        .recommend(&session, &request)
        .iter()
        .filter_map(|r| {
            engine
                .item_id(r.index)
                .and_then(|id| d.item_index.get(id))
                .map(|&i| (i, r.score))
        })
        .collect()
}

/// Builds an engine in memory from trained parameters.
pub fn build_engine(
    p: &Params,
    tables: &Tables,
    cfg: &TrainConfig,
    dtype: Dtype,
    combination: &Combination,
) -> anyhow::Result<Engine> {
    let spec = train::model_spec(p, tables, cfg, dtype, combination, None);
    let shards = edgerec::writer::write_model(&spec, 1, MAX_SHARD_BYTES)?;
    Ok(Engine::from_bytes(shards.iter().map(Vec::as_slice))?)
}

/// The tuned combination and its validation figures.
#[derive(Debug, Clone, Serialize)]
pub struct Tuned {
    pub combination: Combination,
    /// Validation NDCG@10 etc. per row of [`Clicks::TABLE`].
    pub validation: Vec<Metrics>,
}

/// The values each profile field is tried at (a field of bucket 0 that needs clicks is skipped).
///
/// Transition weights are probabilities (at most 1) added to scores whose spread is several
/// units, so only a weight in the hundreds lets the transition table decide the order, with the
/// other signals breaking its ties. On a log that follows a first-order chain that is the best
/// list (`scripts/synthetic-log.py markov`: with the grid ending at 8, one click scored 0.90x the
/// Markov baseline; ending at 1,024, 1.00x). MovieLens-100k's tuner picks the same profiles
/// either way.
const GRID: [(&str, &[f32]); PROFILE_FIELDS] = [
    ("embed", &[0.0, 0.25, 0.5, 1.0, 2.0]),
    ("context", &[0.0, 0.5, 1.0]),
    ("neighbours", &[0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    (
        "transitions",
        &[
            0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0,
        ],
    ),
    ("trend", &[0.0, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0]),
];

/// The values the session encoder's weight is tried at, for models with an encoder, as
/// multiples of the weight its training matched in the bucket (`EncoderParams::bucket_scale`).
const ENCODER_GRID: &[f32] = &[0.0, 0.5, 1.0, 1.5, 2.0];

/// The relative validation gain the encoder's weight must bring to be kept. The other weights
/// move on any gain, as they always have; the encoder costs every request its forward pass and
/// its gains on MovieLens-100k were within one hold-out's noise (validation +0.6% at full
/// history and 3 clicks with 2 epochs, test −1.4% and −0.7%; docs/FIGURES.md), so it must
/// show more than that.
const ENCODER_MIN_GAIN: f64 = 0.01;

/// Where the tuner's coordinate ascent starts, for every session length: each signal at weight
/// 1, no trend, no session encoder (so the ascent reaches the encoder's weight last, from the
/// profile the other signals make best, and keeps it only where validation gains).
pub const TUNING_START: Combination = Combination {
    profiles: [Profile {
        trend: 0.0,
        encoder: 0.0,
        ..Profile::NEUTRAL
    }; PROFILE_BUCKETS],
};

/// Most trend-share entries the tuner keeps summed (8 bytes each: 64 MiB).
const TREND_MEMO_ENTRIES: usize = 1 << 23;

/// Coordinate ascent passes over the grid.
const TUNING_PASSES: usize = 2;

/// Chooses each session-length bucket's profile on validation NDCG@10, through the int8
/// engine: per bucket, coordinate ascent over the profile's fields, with the validation
/// queries cut to that bucket's clicks. Buckets are independent (each engine only uses the
/// profile of the session's bucket), so one bucket's tuning never moves another's figures.
///
/// Then, unless `cfg.encoder_epochs` is 0, the session encoder is trained on `sequences` (the
/// events `p` was fitted on) as a correction of the model with those profiles, and each
/// bucket with clicks gets its encoder weight by one more coordinate of the ascent, from the
/// profile chosen without it: a weight is kept only where validation gains more than
/// `ENCODER_MIN_GAIN`, so validation never scores below the model without an encoder, and the
/// other weights stay those the encoder was trained against. `p` keeps the encoder.
pub fn tune(
    p: &mut Params,
    tables: &Tables,
    cfg: &TrainConfig,
    d: &Dataset,
    sequences: &[Vec<Step>],
    queries: &[Query<'_>],
) -> anyhow::Result<Tuned> {
    p.encoder = None;
    let mut combination = TUNING_START;
    let mut validation = Vec::with_capacity(PROFILE_BUCKETS);
    let mut engine = tuning_engine(p, tables, cfg, queries)?;
    for (bucket, clicks) in Clicks::TABLE.into_iter().enumerate() {
        let mut tuner = BucketTuner::new(&mut engine, p, d, queries, combination, bucket, clicks);
        let mut row = train::profile_row(&combination.profiles[bucket]);
        let mut best = tuner.score(row);
        for _ in 0..TUNING_PASSES {
            for field in tuner.profile_fields() {
                tuner.ascend(field, GRID[field].1, &mut row, &mut best, 0.0);
            }
        }
        combination.profiles[bucket] = train::profile_from_row(&row);
        validation.push(best);
    }
    if crate::pipeline::fit_encoder(d, sequences, cfg, p, tables, &combination)?.is_some() {
        let mut engine = tuning_engine(p, tables, cfg, queries)?;
        for (bucket, clicks) in Clicks::TABLE.into_iter().enumerate().skip(1) {
            let mut tuner =
                BucketTuner::new(&mut engine, p, d, queries, combination, bucket, clicks);
            let mut row = train::profile_row(&combination.profiles[bucket]);
            let mut best = validation[bucket];
            tuner.ascend(
                PROFILE_FIELDS,
                ENCODER_GRID,
                &mut row,
                &mut best,
                ENCODER_MIN_GAIN,
            );
            combination.profiles[bucket] = train::profile_from_row(&row);
            validation[bucket] = best;
        }
    }
    for (clicks, (profile, best)) in Clicks::TABLE
        .into_iter()
        .zip(combination.profiles.iter().zip(&validation))
    {
        tracing::info!(
            clicks = clicks.label(),
            ?profile,
            validation_ndcg10 = best.ndcg10,
            "tuned"
        );
    }
    Ok(Tuned {
        combination,
        validation,
    })
}

/// One engine for every profile tried: a profile only weighs the signals, so setting it on the
/// loaded model ranks as shards written with it would, without writing and loading the model
/// (and fitting its first-pass codes) hundreds of times. Each query's trend window is summed
/// once, not once per profile tried: a window's sum grows with the events in it, so tuning
/// time would otherwise grow with users × events.
fn tuning_engine(
    p: &Params,
    tables: &Tables,
    cfg: &TrainConfig,
    queries: &[Query<'_>],
) -> anyhow::Result<Engine> {
    let mut engine = build_engine(p, tables, cfg, Dtype::I8, &TUNING_START)?;
    let windows =
        engine.memoize_trend_windows(queries.iter().map(|q| q.target.ts), TREND_MEMO_ENTRIES);
    tracing::debug!(windows, "trend windows summed once for tuning");
    Ok(engine)
}

/// The coordinate ascent of one bucket's profile, the others fixed.
struct BucketTuner<'e, 'q> {
    engine: &'e mut Engine,
    /// The model `engine` serves, for its encoder's scales (see `train::served_profiles`).
    params: &'e Params,
    d: &'e Dataset,
    queries: &'e [Query<'q>],
    combination: Combination,
    bucket: usize,
    clicks: Clicks,
    /// Validation NDCG@10 of each row tried, computed once: the second pass of the ascent
    /// revisits most of the first pass's rows.
    scores: HashMap<[u32; train::PROFILE_ROW], Metrics>,
}

impl<'e, 'q> BucketTuner<'e, 'q> {
    fn new(
        engine: &'e mut Engine,
        params: &'e Params,
        d: &'e Dataset,
        queries: &'e [Query<'q>],
        combination: Combination,
        bucket: usize,
        clicks: Clicks,
    ) -> Self {
        BucketTuner {
            engine,
            params,
            d,
            queries,
            combination,
            bucket,
            clicks,
            scores: HashMap::new(),
        }
    }

    /// The profile table's fields this bucket tunes: all but those that need clicks for the
    /// anonymous bucket.
    fn profile_fields(&self) -> impl Iterator<Item = usize> {
        let anonymous = self.bucket == 0;
        (0..PROFILE_FIELDS).filter(move |&f| !anonymous || f == 1 || f == 4)
    }

    fn score(&mut self, row: [f32; train::PROFILE_ROW]) -> Metrics {
        let key = row.map(f32::to_bits);
        if let Some(&m) = self.scores.get(&key) {
            return m;
        }
        let mut c = self.combination;
        c.profiles[self.bucket] = train::profile_from_row(&row);
        self.engine
            .set_profiles(Some(train::served_profiles(self.params, &c)));
        let (engine, d, clicks) = (&*self.engine, self.d, self.clicks);
        let m = evaluate(self.queries, |q| engine_top10(engine, d, q, clicks));
        self.scores.insert(key, m);
        m
    }

    /// Tries each of `values` for `field` from `row`, keeping the best if it gains more than
    /// `min_gain` of the best so far (relative).
    fn ascend(
        &mut self,
        field: usize,
        values: &[f32],
        row: &mut [f32; train::PROFILE_ROW],
        best: &mut Metrics,
        min_gain: f64,
    ) {
        let name = GRID.get(field).map_or("encoder", |g| g.0);
        for &v in values {
            if row[field] == v {
                continue;
            }
            let mut candidate = *row;
            candidate[field] = v;
            let m = self.score(candidate);
            tracing::debug!(
                bucket = self.bucket,
                field = name,
                v,
                ndcg = m.ndcg10,
                "tuning"
            );
            if m.ndcg10 > best.ndcg10 * (1.0 + min_gain) {
                *best = m;
                *row = candidate;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::Event;

    /// Users' clicks as (user, item, ts).
    pub(crate) fn dataset(clicks: &[(&str, &str, i64)]) -> Dataset {
        let events: Vec<Event> = clicks
            .iter()
            .map(|&(user, item, ts)| Event::click(user, item, ts))
            .collect();
        Dataset::from_events(&events)
    }

    /// [`dataset`] from owned (user, item, ts) rows.
    pub(crate) fn owned_dataset(rows: &[(String, String, i64)]) -> Dataset {
        let rows: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|(u, i, t)| (u.as_str(), i.as_str(), *t))
            .collect();
        dataset(&rows)
    }

    /// `users` users with `clicks` clicks each, user after user, cycling through `items` items;
    /// the k-th click overall is at time k.
    pub(crate) fn uniform_log(users: usize, clicks: usize, items: usize) -> Dataset {
        let rows: Vec<(String, String, i64)> = (0..users * clicks)
            .map(|k| {
                (
                    format!("u{}", k / clicks),
                    format!("i{}", k % items),
                    k as i64,
                )
            })
            .collect();
        owned_dataset(&rows)
    }

    const DAY: i64 = 86_400;

    fn tiny() -> Dataset {
        dataset(&[
            // a: a → b → c → d; the last two are validation and test targets.
            ("u1", "a", 1_000 * DAY),
            ("u1", "b", 1_001 * DAY),
            ("u1", "c", 1_002 * DAY),
            ("u1", "d", 1_003 * DAY),
            // Ties in time keep file order: e before a.
            ("u2", "e", 1_000 * DAY),
            ("u2", "a", 1_000 * DAY),
            ("u2", "b", 1_002 * DAY),
            // Too short to be evaluated; long before the others.
            ("u3", "z", 900 * DAY),
            ("u3", "z", 960 * DAY),
        ])
    }

    #[test]
    fn the_split_holds_out_the_last_two_of_users_with_three_or_more() {
        let d = tiny();
        let split = Split::new(&d);
        assert_eq!(split.users, [0, 1]);
        let name = |s: &Step| d.items[s.item as usize].as_str();
        let test = split.test(&d);
        assert_eq!((name(&test[0].target), test[0].history.len()), ("d", 3));
        assert_eq!((name(&test[1].target), test[1].history.len()), ("b", 2));
        let validation = split.validation(&d);
        assert_eq!(name(&validation[1].target), "a", "ties keep file order");
        assert_eq!(split.train[0].len(), 2);
        assert_eq!(
            split.train_val[2].len(),
            2,
            "short users train on everything"
        );
    }

    #[test]
    fn tuning_queries_are_capped_evenly_over_the_users() {
        // 6,000 users of 4 events each: one position (past TUNING_TARGETS users), so 6,000
        // queries before the cap.
        let d = uniform_log(6_000, 4, 9);
        let (train, queries) = Split::tuning(&d, 1);
        assert_eq!(train.len(), 6_000, "training keeps every user");
        assert_eq!(queries.len(), TUNING_QUERY_CAP);
        // Each query is its user's 2nd-to-last event: the history tells users apart by its
        // first event's time. The kept users are distinct and spread from first to last.
        let user = |q: &Query<'_>| q.history[0].ts / 4;
        let kept: Vec<i64> = queries.iter().map(user).collect();
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(kept[0], 0);
        assert!(*kept.last().unwrap() >= 5_990, "{:?}", kept.last());
        // Below the cap nothing is dropped.
        let small = uniform_log(4_000, 4, 9);
        assert_eq!(Split::tuning(&small, 1).1.len(), 4_000);
    }

    #[test]
    fn tuning_on_more_positions_never_sees_the_test_event() {
        let d = tiny();
        let name = |s: &Step| d.items[s.item as usize].as_str();
        let split = Split::new(&d);
        // One position is the validation split exactly.
        let (train, queries) = Split::tuning(&d, 1);
        let lens = |t: &[Vec<Step>]| t.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lens(&train), lens(&split.train));
        let targets = |q: &[Query<'_>]| q.iter().map(|q| name(&q.target)).collect::<Vec<_>>();
        assert_eq!(targets(&queries), targets(&split.validation(&d)));
        // Three positions: u1 (4 events) keeps one before its earliest target, so it gets two
        // targets (c, then b); u2 (3 events) one; u3 is too short and trains on everything.
        let (train, queries) = Split::tuning(&d, 3);
        assert_eq!(lens(&train), [1, 1, 2]);
        assert_eq!(targets(&queries), ["c", "b", "a"]);
        assert_eq!(
            queries[1].history.len(),
            1,
            "each target's history is what came before"
        );
        let test = split.test(&d);
        for q in &queries {
            assert!(test.iter().all(|t| t.target.event != q.target.event));
        }
    }

    #[test]
    fn metrics_are_the_protocols_by_hand() {
        let d = tiny();
        let queries = Split::new(&d).test(&d);
        let idx = |name: &str| d.item_index[name];
        // u1's target d at rank 1 (0-based), u2's target b missing: HR 1/2, NDCG (1/log2 3)/2.
        let m = evaluate(&queries, |q| {
            if q.history.len() == 3 {
                vec![idx("a"), idx("d")]
            } else {
                vec![idx("c")]
            }
        });
        assert_eq!(m.users, 2);
        assert!((m.hr10 - 0.5).abs() < 1e-12);
        assert!((m.ndcg10 - 0.5 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(Metrics::of(&[]).ndcg10, 0.0);
    }

    #[test]
    fn baselines_use_only_the_clicks_they_are_given_and_no_future() {
        let d = tiny();
        let split = Split::new(&d);
        let b = Baselines::fit(d.item_count(), &split.train_val);
        let names = |list: Vec<u32>| -> Vec<String> {
            list.iter().map(|&i| d.items[i as usize].clone()).collect()
        };
        // u1: history a b c, target d at day 1003.
        let q = &split.test(&d)[0];
        // Training counts: a 2, z 2, b 1, c 1, e 1, d 0 (u1's d and u2's b are held out).
        // Popularity excludes the whole history with the full history, nothing without clicks.
        assert_eq!(names(b.popularity(q, Clicks::Full)), ["z", "e", "d"]);
        assert_eq!(
            names(b.popularity(q, Clicks::Last(0)))[..3],
            ["a", "z", "b"]
        );
        // Trending counts the 30 days before day 1003 only: u3's z (days 900, 960) scores 0 and
        // follows every item clicked in the window (ties by popularity, then index).
        assert_eq!(
            names(b.trending(q, Clicks::Last(0))),
            ["a", "b", "c", "e", "z", "d"]
        );
        // Markov from the last click c: c was never followed by anything in training, so
        // nothing scores and popularity orders the list; only the known click c is excluded.
        assert_eq!(
            names(b.markov(q, Clicks::Last(1))),
            ["a", "z", "b", "e", "d"]
        );
    }
}
