//! The evaluation protocol of shared/DATA.md, and the baselines computed in the same run.
//!
//! Per user (sequences already stably sorted by time): the last interaction is the test target,
//! the one before it the validation target, the rest training data. A query is the user's
//! history before the target; everything in it is excluded; all items are ranked; HR@10 and
//! NDCG@10 (gain 1/log2(rank+2), rank from 0) are averaged over users. edgerec is scored through
//! the real engine on real shards (int8 as the edge serves it, f32 for comparison).

use crate::dataset::{Dataset, Step};
use crate::train::{self, Params, Tables, TrainConfig};
use edgerec::format::{Dtype, MAX_SHARD_BYTES};
use edgerec::{Context, Device, Engine, Request, Session};
use serde::Serialize;

/// HR@10, NDCG@10 and the number of users.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Metrics {
    pub hr10: f64,
    pub ndcg10: f64,
    pub users: usize,
}

/// One evaluation query: a user's history (time order) and the target.
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
    pub fn new(d: &Dataset) -> Split {
        let mut split = Split {
            train: Vec::new(),
            train_val: Vec::new(),
            users: Vec::new(),
        };
        for (u, s) in d.sequences.iter().enumerate() {
            if s.len() >= 3 {
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
        self.users
            .iter()
            .map(|&u| {
                let s = &d.sequences[u];
                Query {
                    history: &s[..s.len() - 2],
                    target: s[s.len() - 2],
                }
            })
            .collect()
    }

    pub fn test<'a>(&self, d: &'a Dataset) -> Vec<Query<'a>> {
        self.users
            .iter()
            .map(|&u| {
                let s = &d.sequences[u];
                Query {
                    history: &s[..s.len() - 1],
                    target: s[s.len() - 1],
                }
            })
            .collect()
    }
}

/// Averages the metrics of `top10(query)` over all queries.
pub fn evaluate(queries: &[Query<'_>], mut top10: impl FnMut(&Query<'_>) -> Vec<u32>) -> Metrics {
    let (mut hr, mut ndcg) = (0.0, 0.0);
    for q in queries {
        let list = top10(q);
        if let Some(rank) = list.iter().take(10).position(|&i| i == q.target.item) {
            hr += 1.0;
            ndcg += 1.0 / ((rank + 2) as f64).log2();
        }
    }
    let n = queries.len().max(1) as f64;
    Metrics {
        hr10: hr / n,
        ndcg10: ndcg / n,
        users: queries.len(),
    }
}

/// Top 10 of a dense score vector, history excluded, ties broken by popularity then index.
fn top10_dense(scores: &[f32], popularity: &[f32], history: &[Step]) -> Vec<u32> {
    let mut excluded = vec![false; scores.len()];
    for s in history {
        excluded[s.item as usize] = true;
    }
    let mut idx: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| !excluded[i as usize])
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

/// The three baselines of the protocol, fitted on `train` sequences.
pub struct Baselines {
    popularity: Vec<f32>,
    transitions: train::Sparse,
    cosine: train::Sparse,
}

impl Baselines {
    pub fn fit(n_items: usize, train: &[Vec<Step>]) -> Baselines {
        let mut popularity = vec![0f32; n_items];
        for x in train.iter().flatten() {
            popularity[x.item as usize] += 1.0;
        }
        Baselines {
            popularity,
            // P(j | i) orders each source's targets exactly as the raw counts do.
            transitions: train::transitions(n_items, train, usize::MAX),
            cosine: train::item_neighbours(n_items, train, usize::MAX),
        }
    }

    pub fn popularity(&self, q: &Query<'_>) -> Vec<u32> {
        top10_dense(&self.popularity, &self.popularity, q.history)
    }

    /// Last-item transition counts (first-order Markov).
    pub fn markov(&self, q: &Query<'_>) -> Vec<u32> {
        let mut scores = vec![0f32; self.popularity.len()];
        if let Some(last) = q.history.last() {
            for &(j, c) in &self.transitions[last.item as usize] {
                scores[j as usize] = c;
            }
        }
        top10_dense(&scores, &self.popularity, q.history)
    }

    /// Item-kNN cosine over the last 5 items, weight 0.7^k.
    pub fn knn(&self, q: &Query<'_>) -> Vec<u32> {
        let mut scores = vec![0f32; self.popularity.len()];
        let mut w = 1.0f32;
        for s in q.history.iter().rev().take(5) {
            for &(j, c) in &self.cosine[s.item as usize] {
                scores[j as usize] += w * c;
            }
            w *= 0.7;
        }
        top10_dense(&scores, &self.popularity, q.history)
    }
}

/// Ranks through the engine exactly as the edge does: the last `session_len` events of the
/// history as the session, the whole history excluded, the target's time and context as the
/// request's.
pub fn engine_top10(engine: &Engine, d: &Dataset, q: &Query<'_>, session_len: usize) -> Vec<u32> {
    let mut session = Session::new();
    for s in q.history.iter().rev().take(session_len).rev() {
        session.observe(&d.items[s.item as usize], s.kind, s.ts.max(0) as u64);
    }
    let request = Request {
        k: 10,
        context: Context {
            ts: Some(q.target.ts),
            device: q
                .target
                .ctx
                .device
                .and_then(|i| Device::ALL.get(i as usize).copied()),
            geohash: None,
            tz_offset_min: 0,
        },
        exclude: q
            .history
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
                .copied()
        })
        .collect()
}

/// Builds an engine in memory from trained parameters.
pub fn build_engine(
    p: &Params,
    tables: &Tables,
    cfg: &TrainConfig,
    dtype: Dtype,
    embed_weight: f32,
) -> anyhow::Result<Engine> {
    let spec = train::model_spec(p, tables, cfg, dtype, embed_weight, None);
    let shards = edgerec::writer::write_model(&spec, 1, MAX_SHARD_BYTES)?;
    Ok(Engine::from_bytes(shards.iter().map(Vec::as_slice))?)
}

/// The tuned combination weights.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tuned {
    pub alpha: f32,
    pub beta: f32,
    pub embed_weight: f32,
    pub validation: Metrics,
}

/// Grid search of α (neighbours), β (transitions) and the embedding weight on validation
/// NDCG@10, through the int8 engine.
pub fn tune(
    p: &Params,
    tables: &Tables,
    cfg: &TrainConfig,
    d: &Dataset,
    queries: &[Query<'_>],
) -> anyhow::Result<Tuned> {
    let mut best: Option<Tuned> = None;
    for &embed_weight in &[0.0f32, 0.5, 1.0] {
        for &alpha in &[0.0f32, 0.5, 1.0, 2.0, 4.0, 8.0] {
            for &beta in &[0.0f32, 0.5, 1.0, 2.0, 4.0, 8.0] {
                if embed_weight == 0.0 && alpha == 0.0 && beta == 0.0 {
                    continue;
                }
                let c = TrainConfig {
                    alpha,
                    beta,
                    ..cfg.clone()
                };
                let engine = build_engine(p, tables, &c, Dtype::I8, embed_weight)?;
                let m = evaluate(queries, |q| {
                    engine_top10(&engine, d, q, edgerec::session::MAX_SESSION_EVENTS)
                });
                tracing::debug!(alpha, beta, embed_weight, ndcg = m.ndcg10, "tuning");
                if best.is_none_or(|b| m.ndcg10 > b.validation.ndcg10) {
                    best = Some(Tuned {
                        alpha,
                        beta,
                        embed_weight,
                        validation: m,
                    });
                }
            }
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("empty tuning grid"))
}
