//! Off-policy evaluation: the reward a target policy would have earned, estimated from
//! exposures logged under another policy together with the probability (propensity) the
//! logging policy gave each shown item.
//!
//! Three estimators, all from the same per-row terms (`Terms`):
//! - IPS: the mean of `w·r`, with `w = π_target(a|x) / π_logging(a|x)`. Unbiased when every
//!   action the target can take had a positive logging propensity; its variance grows with the
//!   weights.
//! - SNIPS: `Σ w·r / Σ w`. Slightly biased, far less variance, and immune to a constant shift of
//!   the rewards; with correct propensities `mean(w)` is close to 1, which the report prints
//!   as a check on the logged propensities.
//! - DR (doubly robust): `mean(q̂(x, π_target) + w·(r − q̂(x, a)))`, where `q̂` is a reward model.
//!   Unbiased if either the propensities or `q̂` are right; here `q̂` is a per-(item, position)
//!   reward rate shrunk toward the position's mean, cross-fitted on two folds so no row's `q̂`
//!   saw its own reward.
//!
//! Intervals are percentile bootstraps over rows (seeded, so a rerun prints the same figures;
//! the reward model is held fixed across resamples, so DR's and DM's intervals leave out its
//! own estimation error);
//! the effective sample size `(Σw)² / Σw²` says how many on-policy rows the log is worth.

use anyhow::{bail, ensure, Context as _, Result};
use edgerec::engine::Request;
use edgerec::math::SplitMix64;
use edgerec::session::{EventType, Session};
use edgerec::{Context, Engine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// One logged exposure: `item` was shown at `position` (0-based) with probability `propensity`
/// under the logging policy, and earned `reward` (a click is 1). `session` is what the visitor
/// had clicked before (item ids, oldest first, separated by spaces) and `ts` the request time:
/// what a model policy needs to rank as it would have. `model`, `arm` and `exposure` say which
/// served list the row came from (empty for logs from elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    #[serde(default)]
    pub ts: i64,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub session: String,
    pub item: String,
    #[serde(default)]
    pub position: u32,
    pub reward: f64,
    pub propensity: f64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub arm: String,
    #[serde(default)]
    pub exposure: String,
}

/// Columns of the exposure-log CSV (`item`, `reward` and `propensity` are required).
pub const LOG_COLUMNS: [&str; 10] = [
    "ts",
    "user",
    "session",
    "item",
    "position",
    "reward",
    "propensity",
    "model",
    "arm",
    "exposure",
];

/// Reads an exposure-log CSV. Any bad row is an error naming its line: an estimate from a log
/// with rows silently dropped would be biased in a way nobody could see.
pub fn read_log(path: &Path) -> Result<Vec<Exposure>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .clone();
    for h in headers.iter() {
        ensure!(
            LOG_COLUMNS.contains(&h),
            "{}: unknown column {h:?} (expected some of {})",
            path.display(),
            LOG_COLUMNS.join(",")
        );
    }
    let mut log = Vec::new();
    for (i, row) in reader.deserialize::<Exposure>().enumerate() {
        let line = i + 2;
        let e = row.with_context(|| format!("{}: line {line}", path.display()))?;
        check_exposure(&e).with_context(|| format!("{}: line {line}", path.display()))?;
        log.push(e);
    }
    ensure!(!log.is_empty(), "{}: no exposures", path.display());
    Ok(log)
}

fn check_exposure(e: &Exposure) -> Result<()> {
    ensure!(!e.item.is_empty(), "item is empty");
    ensure!(
        e.reward.is_finite(),
        "reward {} is not a finite number",
        e.reward
    );
    ensure!(
        e.propensity > 0.0 && e.propensity <= 1.0,
        "propensity {} is not in (0, 1]: an action the logging policy could not take cannot be reweighted",
        e.propensity
    );
    Ok(())
}

/// The policy being evaluated.
pub enum Policy {
    /// Every item of `catalog` equally likely at every position.
    Uniform { catalog: Vec<String> },
    /// A model's ranking, as the edge would serve it for the row's session and time: the item
    /// at each position with probability 1.
    Model { engine: Box<Engine>, label: String },
}

/// What the target policy does at one logged row.
pub enum Decision<'a> {
    /// Any item of the catalog, each with probability 1/len.
    Uniform(&'a [String]),
    /// This item with probability 1 (none when the list is shorter than the position).
    Item(Option<String>),
}

impl Decision<'_> {
    /// π_target(item | row).
    pub fn probability(&self, item: &str) -> f64 {
        match self {
            Decision::Uniform(catalog) => {
                if catalog.binary_search_by(|c| c.as_str().cmp(item)).is_ok() {
                    1.0 / catalog.len() as f64
                } else {
                    0.0
                }
            }
            Decision::Item(chosen) => f64::from(u8::from(chosen.as_deref() == Some(item))),
        }
    }

    /// `Σ_a π_target(a | row) q̂(a)`: the reward model's value of the policy at this row.
    pub fn expected(&self, q: impl Fn(&str) -> f64) -> f64 {
        match self {
            Decision::Uniform(catalog) => {
                catalog.iter().map(|a| q(a)).sum::<f64>() / catalog.len() as f64
            }
            Decision::Item(chosen) => chosen.as_deref().map_or(0.0, q),
        }
    }
}

impl Policy {
    /// Uniform over the items that appear in `log`.
    pub fn uniform_over(log: &[Exposure]) -> Policy {
        let catalog: BTreeSet<&str> = log.iter().map(|e| e.item.as_str()).collect();
        Policy::Uniform {
            catalog: catalog.into_iter().map(str::to_string).collect(),
        }
    }

    /// What the policy does at this row's position.
    pub fn decide(&self, e: &Exposure) -> Decision<'_> {
        match self {
            Policy::Uniform { catalog } => Decision::Uniform(catalog),
            Policy::Model { engine, .. } => Decision::Item(model_choice(engine, e)),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Policy::Uniform { catalog } => format!("uniform over {} items", catalog.len()),
            Policy::Model { label, .. } => label.clone(),
        }
    }
}

/// The item the model ranks at the row's position for its session and request time (the
/// session's items are never recommended, as at the edge).
fn model_choice(engine: &Engine, e: &Exposure) -> Option<String> {
    let mut session = Session::new();
    let clicks: Vec<&str> = e.session.split_whitespace().collect();
    let ts = e.ts.max(clicks.len() as i64) as u64;
    for (i, id) in clicks.iter().enumerate() {
        // Spaced a second apart before the request so the session keeps their order.
        session.observe(id, EventType::Click, ts - (clicks.len() - i) as u64);
    }
    let request = Request {
        k: e.position as usize + 1,
        context: Context {
            ts: Some(e.ts),
            ..Context::default()
        },
        ..Request::default()
    };
    let list = engine.recommend(&session, &request);
    list.get(e.position as usize)
        .and_then(|r| engine.item_id(r.index))
        .map(str::to_string)
}

/// Reward rates per (item, position), shrunk toward the position's mean reward by
/// `prior_rows` pseudo-rows, so a cell seen a few times does not get a rate of 0 or 1.
#[derive(Debug, Clone)]
pub struct RewardModel {
    cells: HashMap<(String, u32), (f64, f64)>,
    position_mean: HashMap<u32, f64>,
    overall: f64,
    prior_rows: f64,
}

impl RewardModel {
    pub fn fit<'a>(rows: impl Iterator<Item = &'a Exposure>, prior_rows: f64) -> RewardModel {
        let mut cells: HashMap<(String, u32), (f64, f64)> = HashMap::new();
        let mut positions: HashMap<u32, (f64, f64)> = HashMap::new();
        let (mut sum, mut n) = (0.0, 0.0);
        for e in rows {
            let c = cells.entry((e.item.clone(), e.position)).or_default();
            c.0 += e.reward;
            c.1 += 1.0;
            let p = positions.entry(e.position).or_default();
            p.0 += e.reward;
            p.1 += 1.0;
            sum += e.reward;
            n += 1.0;
        }
        RewardModel {
            cells,
            position_mean: positions
                .into_iter()
                .map(|(k, (s, n))| (k, s / n))
                .collect(),
            overall: if n > 0.0 { sum / n } else { 0.0 },
            prior_rows,
        }
    }

    pub fn predict(&self, item: &str, position: u32) -> f64 {
        let prior = *self.position_mean.get(&position).unwrap_or(&self.overall);
        let (sum, n) = self
            .cells
            .get(&(item.to_string(), position))
            .copied()
            .unwrap_or((0.0, 0.0));
        (sum + self.prior_rows * prior) / (n + self.prior_rows)
    }
}

/// Pseudo-rows of the position mean in every (item, position) cell of the reward model. About
/// one expected click's worth at a CTR of 1%: enough to keep empty cells at the position's
/// rate, little enough that a cell with hundreds of rows speaks for itself.
pub const DEFAULT_PRIOR_ROWS: f64 = 100.0;

/// The per-row quantities every estimator is a sum of.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    /// Importance weights π_target / π_logging.
    pub weight: Vec<f64>,
    /// `w·r`.
    pub weighted_reward: Vec<f64>,
    /// The reward model's value of the target policy at the row's position (the direct method).
    pub direct: Vec<f64>,
    /// `direct + w·(r − q̂(logged action))`.
    pub doubly_robust: Vec<f64>,
}

impl Terms {
    /// Terms of every row, with `q(row, item, position)` the reward model's prediction for that
    /// row (the row index lets a cross-fitted model answer from the other fold).
    pub fn new(log: &[Exposure], policy: &Policy, q: impl Fn(usize, &str, u32) -> f64) -> Terms {
        let mut t = Terms::default();
        for (i, e) in log.iter().enumerate() {
            let decision = policy.decide(e);
            let w = decision.probability(&e.item) / e.propensity;
            let direct = decision.expected(|a| q(i, a, e.position));
            t.weight.push(w);
            t.weighted_reward.push(w * e.reward);
            t.direct.push(direct);
            t.doubly_robust
                .push(direct + w * (e.reward - q(i, &e.item, e.position)));
        }
        t
    }

    /// Terms with a reward model cross-fitted on two folds (even and odd rows): each row's
    /// predictions come from the model fitted on the other fold.
    pub fn cross_fitted(log: &[Exposure], policy: &Policy, prior_rows: f64) -> Terms {
        let folds: [RewardModel; 2] = [0, 1].map(|fold| {
            RewardModel::fit(
                log.iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 != fold)
                    .map(|(_, e)| e),
                prior_rows,
            )
        });
        Terms::new(log, policy, |i, a, p| folds[i % 2].predict(a, p))
    }

    pub fn len(&self) -> usize {
        self.weight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weight.is_empty()
    }

    /// The four estimates over the rows `rows` (indices, repeats allowed).
    fn estimates(&self, rows: impl Iterator<Item = usize>) -> [f64; 4] {
        let (mut n, mut w, mut wr, mut dm, mut dr) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in rows {
            n += 1.0;
            w += self.weight[i];
            wr += self.weighted_reward[i];
            dm += self.direct[i];
            dr += self.doubly_robust[i];
        }
        let snips = if w > 0.0 { wr / w } else { 0.0 };
        [wr / n, snips, dr / n, dm / n]
    }

    /// `(Σw)² / Σw²`: how many on-policy rows the log is worth.
    pub fn effective_sample_size(&self) -> f64 {
        let sum: f64 = self.weight.iter().sum();
        let squares: f64 = self.weight.iter().map(|w| w * w).sum();
        if squares > 0.0 {
            sum * sum / squares
        } else {
            0.0
        }
    }
}

/// Names of the estimators, in the order `Terms::estimates` returns them.
pub const ESTIMATORS: [&str; 4] = ["IPS", "SNIPS", "DR", "DM"];

/// A point estimate with a percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// How the intervals are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub resamples: usize,
    /// Two-sided coverage, e.g. 0.95.
    pub level: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            level: 0.95,
            seed: 7,
        }
    }
}

/// The `q`-quantile of sorted values (linear interpolation between order statistics).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Every estimator's point estimate and bootstrap interval, in `ESTIMATORS` order.
pub fn intervals(terms: &Terms, b: Bootstrap) -> Result<[Interval; 4]> {
    let n = terms.len();
    if n == 0 {
        bail!("no rows to estimate from");
    }
    ensure!(
        b.resamples >= 2,
        "at least 2 bootstrap resamples are needed"
    );
    ensure!(
        b.level > 0.0 && b.level < 1.0,
        "the interval level must be in (0, 1)"
    );
    let point = terms.estimates(0..n);
    let mut rng = SplitMix64::new(b.seed);
    let mut draws: [Vec<f64>; 4] = Default::default();
    for _ in 0..b.resamples {
        let est = terms.estimates((0..n).map(|_| rng.below(n)));
        for (d, e) in draws.iter_mut().zip(est) {
            d.push(e);
        }
    }
    let tail = (1.0 - b.level) / 2.0;
    Ok(std::array::from_fn(|k| {
        draws[k].sort_by(f64::total_cmp);
        Interval {
            estimate: point[k],
            low: quantile(&draws[k], tail),
            high: quantile(&draws[k], 1.0 - tail),
        }
    }))
}

/// The mean reward of a log with a bootstrap interval: the value a policy actually earned when
/// it was the one logging (the ground truth an off-policy estimate is checked against).
pub fn on_policy_mean(log: &[Exposure], b: Bootstrap) -> Result<Interval> {
    let terms = Terms {
        weight: vec![1.0; log.len()],
        weighted_reward: log.iter().map(|e| e.reward).collect(),
        direct: vec![0.0; log.len()],
        doubly_robust: vec![0.0; log.len()],
    };
    Ok(intervals(&terms, b)?[0])
}

/// Everything `central-sync ope` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub policy: String,
    pub rows: usize,
    pub effective_sample_size: f64,
    pub mean_weight: f64,
    pub max_weight: f64,
    pub level: f64,
    pub resamples: usize,
    /// Estimator name → estimate with interval.
    pub estimates: Vec<(String, Interval)>,
    /// The observed mean reward of a log the target policy itself produced, when given.
    pub on_policy: Option<Interval>,
}

pub fn evaluate(
    log: &[Exposure],
    policy: &Policy,
    prior_rows: f64,
    b: Bootstrap,
    on_policy: Option<&[Exposure]>,
) -> Result<Report> {
    let terms = Terms::cross_fitted(log, policy, prior_rows);
    let estimates = intervals(&terms, b)?;
    Ok(Report {
        policy: policy.label(),
        rows: terms.len(),
        effective_sample_size: terms.effective_sample_size(),
        mean_weight: terms.weight.iter().sum::<f64>() / terms.len() as f64,
        max_weight: terms.weight.iter().copied().fold(0.0, f64::max),
        level: b.level,
        resamples: b.resamples,
        estimates: ESTIMATORS
            .iter()
            .map(|s| s.to_string())
            .zip(estimates)
            .collect(),
        on_policy: on_policy.map(|l| on_policy_mean(l, b)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(item: &str, position: u32, reward: f64, propensity: f64) -> Exposure {
        Exposure {
            ts: 0,
            user: String::new(),
            session: String::new(),
            item: item.into(),
            position,
            reward,
            propensity,
            ..Exposure::default()
        }
    }

    /// Four rows, target uniform over {a, b} (π = 1/2): weights 1, 2, 1, 2/3.
    fn tiny() -> Vec<Exposure> {
        vec![
            row("a", 0, 1.0, 0.5),
            row("b", 0, 0.0, 0.25),
            row("a", 0, 0.0, 0.5),
            row("b", 0, 1.0, 0.75),
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn estimators_match_hand_computed_values() {
        let log = tiny();
        let policy = Policy::uniform_over(&log);
        // q̂ = 0.5 everywhere, so DM = 0.5 and DR = 0.5 + w (r − 0.5) per row.
        let t = Terms::new(&log, &policy, |_, _, _| 0.5);
        let [ips, snips, dr, dm] = t.estimates(0..4);
        // IPS: (1·1 + 2·0 + 1·0 + 2/3·1) / 4 = 5/12.
        assert!(close(ips, 5.0 / 12.0), "{ips}");
        // SNIPS: (5/3) / (1 + 2 + 1 + 2/3) = 5/14.
        assert!(close(snips, 5.0 / 14.0), "{snips}");
        // DR: (1.0 − 0.5 + 0.0 + (0.5 + 1/3)) / 4 = 1/3.
        assert!(close(dr, 1.0 / 3.0), "{dr}");
        assert!(close(dm, 0.5));
        // ESS: (14/3)² / (1 + 4 + 1 + 4/9) = (196/9) / (58/9) = 98/29.
        assert!(close(t.effective_sample_size(), 98.0 / 29.0));
    }

    #[test]
    fn on_policy_logs_give_the_plain_mean_and_full_sample_size() {
        let log: Vec<Exposure> = (0..10)
            .map(|i| row(["a", "b"][i % 2], 0, (i % 3 == 0) as u8 as f64, 0.5))
            .collect();
        let policy = Policy::uniform_over(&log);
        let t = Terms::new(&log, &policy, |_, _, _| 0.3);
        let [ips, snips, dr, _] = t.estimates(0..10);
        let mean = 4.0 / 10.0;
        assert!(close(ips, mean) && close(snips, mean) && close(dr, mean));
        assert!(close(t.effective_sample_size(), 10.0));
    }

    #[test]
    fn items_outside_the_target_policy_get_no_weight() {
        let log = tiny();
        let policy = Policy::Uniform {
            catalog: vec!["a".into()],
        };
        let t = Terms::new(&log, &policy, |_, _, _| 0.0);
        assert_eq!(t.weight, vec![2.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn the_reward_model_shrinks_toward_the_position_mean_and_is_cross_fitted() {
        let log = vec![
            row("a", 0, 1.0, 0.5),
            row("a", 0, 0.0, 0.5),
            row("b", 0, 0.0, 0.5),
            row("b", 0, 0.0, 0.5),
        ];
        let m = RewardModel::fit(log.iter(), 2.0);
        // Position mean 1/4; cell a: (1 + 2·1/4) / (2 + 2) = 3/8; unseen cells get the mean.
        assert!(close(m.predict("a", 0), 3.0 / 8.0));
        assert!(close(m.predict("zzz", 0), 0.25));
        assert!(close(m.predict("a", 9), 0.25));
        // Cross-fitted: row 0 (even) is predicted from the odd rows, where a's only reward is 0.
        let policy = Policy::uniform_over(&log);
        let t = Terms::cross_fitted(&log, &policy, 2.0);
        let odd = RewardModel::fit([&log[1], &log[3]].into_iter(), 2.0);
        let expected = 0.5 * (odd.predict("a", 0) + odd.predict("b", 0));
        assert!(close(t.direct[0], expected));
        assert!(close(odd.predict("a", 0), 0.0));
    }

    #[test]
    fn intervals_hold_the_estimate_and_repeat_for_a_seed() {
        let log: Vec<Exposure> = (0..200)
            .map(|i| {
                row(
                    ["a", "b", "c"][i % 3],
                    0,
                    (i % 7 == 0) as u8 as f64,
                    0.2 + 0.1 * (i % 4) as f64,
                )
            })
            .collect();
        let policy = Policy::uniform_over(&log);
        let t = Terms::cross_fitted(&log, &policy, DEFAULT_PRIOR_ROWS);
        let b = Bootstrap {
            resamples: 500,
            level: 0.95,
            seed: 1,
        };
        let first = intervals(&t, b).unwrap();
        assert_eq!(first, intervals(&t, b).unwrap());
        for i in first {
            assert!(i.low < i.estimate && i.estimate < i.high, "{i:?}");
        }
        let other = intervals(&t, Bootstrap { seed: 2, ..b }).unwrap();
        assert_ne!(first[0].low, other[0].low);
    }

    /// Items a, b, c, d with biases 4, 3, 2, 1 and equal vectors: without other signals the
    /// model ranks a, b, c, d.
    fn biased_model() -> Engine {
        let ids: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let spec = edgerec::writer::ModelSpec {
            meta: Some(edgerec::Meta::new(4, edgerec::Dtype::F32, 4)),
            ids,
            vectors: vec![0.5; 16],
            bias: vec![4.0, 3.0, 2.0, 1.0],
            ..Default::default()
        };
        let shards = edgerec::writer::write_model(&spec, 1, 1 << 20).unwrap();
        Engine::from_bytes(shards.iter().map(Vec::as_slice)).unwrap()
    }

    #[test]
    fn a_model_policy_takes_the_item_it_ranks_at_the_logged_position() {
        let policy = Policy::Model {
            engine: Box::new(biased_model()),
            label: "model".into(),
        };
        let at = |item: &str, position: u32, session: &str| Exposure {
            session: session.into(),
            ts: 1_000_000,
            ..row(item, position, 0.0, 0.5)
        };
        assert_eq!(policy.decide(&at("a", 0, "")).probability("a"), 1.0);
        assert_eq!(policy.decide(&at("a", 1, "")).probability("a"), 0.0);
        assert_eq!(policy.decide(&at("b", 1, "")).probability("b"), 1.0);
        // The session's items are not recommended again: with a clicked, b leads.
        assert_eq!(policy.decide(&at("b", 0, "a")).probability("b"), 1.0);
        assert_eq!(policy.decide(&at("c", 0, "a b")).probability("c"), 1.0);
        // Past the end of the list: no item, no value.
        let beyond = policy.decide(&at("a", 9, ""));
        assert_eq!(beyond.probability("a"), 0.0);
        assert_eq!(beyond.expected(|_| 1.0), 0.0);

        // Rows shown at position 0 by a logging policy that picked a or b with probability 1/2:
        // the model would have shown a, so only a's rows count, with weight 2.
        let log = vec![
            Exposure {
                reward: 1.0,
                ..at("a", 0, "")
            },
            Exposure {
                reward: 0.0,
                ..at("a", 0, "")
            },
            Exposure {
                reward: 1.0,
                ..at("b", 0, "")
            },
            Exposure {
                reward: 1.0,
                ..at("b", 0, "a")
            },
        ];
        let t = Terms::new(&log, &policy, |_, _, _| 0.25);
        assert_eq!(t.weight, vec![2.0, 2.0, 0.0, 2.0]);
        let [ips, snips, dr, dm] = t.estimates(0..4);
        assert!(close(ips, (2.0 + 0.0 + 0.0 + 2.0) / 4.0));
        assert!(close(snips, 4.0 / 6.0));
        // DR: 0.25 + w (r − 0.25) per row = 1.75, −0.25, 0.25, 1.75.
        assert!(close(dr, 3.5 / 4.0));
        assert!(close(dm, 0.25));
    }

    #[test]
    fn bad_rows_are_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(
            &path,
            "item,position,reward,propensity\na,0,1,0.5\nb,0,0,0\n",
        )
        .unwrap();
        let err = format!("{:#}", read_log(&path).unwrap_err());
        assert!(
            err.contains("line 3") && err.contains("propensity 0"),
            "{err}"
        );
        std::fs::write(&path, "item,reward,propensity,score\na,1,0.5,3\n").unwrap();
        let err = format!("{:#}", read_log(&path).unwrap_err());
        assert!(err.contains("unknown column \"score\""), "{err}");
        std::fs::write(&path, "item,reward,propensity\na,x,0.5\n").unwrap();
        assert!(format!("{:#}", read_log(&path).unwrap_err()).contains("line 2"));
        std::fs::write(&path, "item,reward,propensity\n").unwrap();
        assert!(format!("{:#}", read_log(&path).unwrap_err()).contains("no exposures"));
        std::fs::write(&path, "item,reward,propensity\na,1,0.5\n").unwrap();
        assert_eq!(read_log(&path).unwrap(), vec![row("a", 0, 1.0, 0.5)]);
    }
}
