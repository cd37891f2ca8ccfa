//! Per-request metrics of the edge: what each isolate counts (requests by route, status, model
//! version, list-cache state and error code, with a latency histogram) and sends to central-sync's
//! `POST /v1/edge-metrics`, which sums the isolates' reports into its Prometheus `/metrics`.
//!
//! Counts are deltas: an isolate sends what it counted since its last report and starts again, so
//! central can add reports up without knowing how many isolates exist or when one was evicted
//! (what an evicted isolate had not sent yet is lost: metrics, not the event log).
//!
//! Rules of a report: `isolate` follows the event id rules; `ts` whole unix seconds in the
//! events' range; 1 to [`MAX_SERIES`] series with distinct labels; `route` one of [`ROUTES`],
//! `status` an HTTP status, `model` a version or `none`, `cache` one of [`CACHE_STATES`],
//! `error` empty or a lower-case code; `buckets` one count per bound of [`LATENCY_BOUNDS_MS`]
//! plus one above the last, adding up to `count`; `ms_sum` finite and not negative.

use crate::events::{bad_field as bad, id_field, EventError, TS_RANGE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The routes the edge counts apart; anything else is `other`.
pub const ROUTES: [&str; 6] = [
    "recommendations",
    "events",
    "health",
    "model",
    "shard",
    "other",
];

/// How a list was answered: from the Cache API (`hit`), ranked and cached (`miss`), ranked
/// for this request alone (`bypass`: a session or exclusions), or not a list (`none`).
pub const CACHE_STATES: [&str; 4] = ["hit", "miss", "bypass", "none"];

/// Upper bounds (milliseconds, inclusive) of the latency histogram's buckets; one more bucket
/// counts everything above the last.
pub const LATENCY_BOUNDS_MS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The most series one report may carry (and one isolate keeps between reports).
pub const MAX_SERIES: usize = 256;

/// The most requests one series may count in one report.
const MAX_COUNT: u64 = 1_000_000_000;

/// What a request is counted by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Labels {
    pub route: String,
    pub status: u16,
    /// The model version that answered, `none` when no model did.
    pub model: String,
    pub cache: String,
    /// The error code of an error answer, empty otherwise.
    pub error: String,
}

/// Requests counted under one set of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub ms_sum: f64,
    /// Non-cumulative: `buckets[i]` counts requests above bound `i - 1` and at most bound `i`.
    pub buckets: Vec<u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            count: 0,
            ms_sum: 0.0,
            buckets: vec![0; LATENCY_BOUNDS_MS.len() + 1],
        }
    }
}

impl Tally {
    /// Counts one request that took `ms` milliseconds.
    pub fn observe(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.count += 1;
        self.ms_sum += ms;
        self.buckets[bucket] += 1;
    }

    /// Adds another tally of the same labels.
    pub fn merge(&mut self, other: &Tally) {
        self.count = self.count.saturating_add(other.count);
        self.ms_sum += other.ms_sum;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
    }
}

/// One series of a report: labels and their tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub route: String,
    pub status: u16,
    pub model: String,
    pub cache: String,
    pub error: String,
    pub count: u64,
    pub ms_sum: f64,
    pub buckets: Vec<u64>,
}

/// What one isolate sends: its counts since its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeReport {
    /// A random id the isolate picked when it started.
    pub isolate: String,
    /// Unix seconds when the report was sent.
    pub ts: i64,
    pub series: Vec<Series>,
    /// Requests the isolate did not count under labels because it already kept `MAX_SERIES`.
    #[serde(default)]
    pub dropped: u64,
}

/// Request counts by labels: an isolate's since its last report, or central's sum of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    series: BTreeMap<Labels, Tally>,
    /// Requests not counted because `MAX_SERIES` (or the caller's cap) labels were already kept.
    pub dropped: u64,
}

impl Tallies {
    pub const fn new() -> Tallies {
        Tallies {
            series: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// Counts one request. A request whose labels would pass `cap` distinct series is counted
    /// only in `dropped`, so a flood of odd labels cannot grow memory.
    pub fn observe(&mut self, labels: Labels, ms: f64, cap: usize) {
        if let Some(t) = self.series.get_mut(&labels) {
            t.observe(ms);
        } else if self.series.len() < cap {
            self.series.entry(labels).or_default().observe(ms);
        } else {
            self.dropped += 1;
        }
    }

    /// Adds a validated report's series (up to `cap` distinct series in all).
    pub fn merge(&mut self, report: &EdgeReport, cap: usize) {
        self.dropped = self.dropped.saturating_add(report.dropped);
        for s in &report.series {
            let tally = Tally {
                count: s.count,
                ms_sum: s.ms_sum,
                buckets: s.buckets.clone(),
            };
            let labels = s.labels();
            if let Some(t) = self.series.get_mut(&labels) {
                t.merge(&tally);
            } else if self.series.len() < cap {
                self.series.insert(labels, tally);
            } else {
                self.dropped = self.dropped.saturating_add(s.count);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every series, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, &Tally)> {
        self.series.iter()
    }

    /// The report of what was counted (at most `MAX_SERIES` series), leaving these empty.
    pub fn take_report(&mut self, isolate: &str, ts: i64) -> EdgeReport {
        let series = std::mem::take(&mut self.series)
            .into_iter()
            .take(MAX_SERIES)
            .map(|(l, t)| Series {
                route: l.route,
                status: l.status,
                model: l.model,
                cache: l.cache,
                error: l.error,
                count: t.count,
                ms_sum: t.ms_sum,
                buckets: t.buckets,
            })
            .collect();
        EdgeReport {
            isolate: isolate.to_string(),
            ts,
            series,
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

impl Series {
    pub fn labels(&self) -> Labels {
        Labels {
            route: self.route.clone(),
            status: self.status,
            model: self.model.clone(),
            cache: self.cache.clone(),
            error: self.error.clone(),
        }
    }
}

/// Whether `code` can be an error label: what [`crate::ApiError`] codes look like.
fn valid_code(code: &str) -> bool {
    code.len() <= 40 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Validates one JSON report of a batch; the error names the first bad field.
///
/// # Errors
/// [`EventError`] when it is not a report, or a field breaks its rule.
pub fn validate_edge_report_json(value: serde_json::Value) -> Result<EdgeReport, EventError> {
    let report: EdgeReport =
        serde_json::from_value(value).map_err(|e| EventError(e.to_string()))?;
    id_field("isolate", Some(&report.isolate))?;
    if !TS_RANGE.contains(&report.ts) {
        return bad(format!(
            "`ts` must be unix seconds between 1990 and 2100, got {}",
            report.ts
        ));
    }
    if report.series.len() > MAX_SERIES || (report.series.is_empty() && report.dropped == 0) {
        return bad(format!(
            "`series` must hold up to {MAX_SERIES} series (at least one unless `dropped`), got {}",
            report.series.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in report.series.iter().enumerate() {
        check_series(s).map_err(|e| EventError(format!("`series[{i}]`: {e}")))?;
        if !seen.insert(s.labels()) {
            return bad(format!("`series[{i}]`: its labels are listed twice"));
        }
    }
    Ok(report)
}

fn check_series(s: &Series) -> Result<(), EventError> {
    if !ROUTES.contains(&s.route.as_str()) {
        return bad(format!(
            "`route` must be one of {ROUTES:?}, got {:?}",
            s.route
        ));
    }
    if !(100..=599).contains(&s.status) {
        return bad(format!("`status` must be an HTTP status, got {}", s.status));
    }
    if s.model != "none" && !crate::pointer::valid_version(&s.model) {
        return bad(format!(
            "`model` must be a version or `none`, got {:?}",
            s.model
        ));
    }
    if !CACHE_STATES.contains(&s.cache.as_str()) {
        return bad(format!(
            "`cache` must be one of {CACHE_STATES:?}, got {:?}",
            s.cache
        ));
    }
    if !valid_code(&s.error) {
        return bad(format!(
            "`error` must be a lower-case code, got {:?}",
            s.error
        ));
    }
    if s.count == 0 || s.count > MAX_COUNT {
        return bad(format!(
            "`count` must be in [1, {MAX_COUNT}], got {}",
            s.count
        ));
    }
    if s.buckets.len() != LATENCY_BOUNDS_MS.len() + 1 {
        return bad(format!(
            "`buckets` must hold {} counts, got {}",
            LATENCY_BOUNDS_MS.len() + 1,
            s.buckets.len()
        ));
    }
    if s.buckets.iter().try_fold(0u64, |a, &b| a.checked_add(b)) != Some(s.count) {
        return bad("`buckets` must add up to `count`");
    }
    if !(s.ms_sum.is_finite() && s.ms_sum >= 0.0) {
        return bad("`ms_sum` must be finite and not negative");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(route: &str, status: u16) -> Labels {
        Labels {
            route: route.into(),
            status,
            model: "v1".into(),
            cache: "miss".into(),
            error: String::new(),
        }
    }

    #[test]
    fn latencies_fall_in_their_buckets() {
        let mut t = Tally::default();
        for ms in [0.0, 1.0, 1.5, 3.0, 999.0, 1000.0, 5000.0, f64::NAN, -2.0] {
            t.observe(ms);
        }
        // ≤1: 0, 1, NaN→0, −2→0; ≤2: 1.5; ≤5: 3; ≤1000: 999, 1000; above: 5000.
        assert_eq!(t.buckets, vec![4, 1, 1, 0, 0, 0, 0, 0, 0, 2, 1]);
        assert_eq!(t.count, 9);
        assert_eq!(t.ms_sum, 0.0 + 1.0 + 1.5 + 3.0 + 999.0 + 1000.0 + 5000.0);
    }

    #[test]
    fn reports_round_trip_and_add_up() {
        let mut edge = Tallies::default();
        edge.observe(labels("recommendations", 200), 3.0, MAX_SERIES);
        edge.observe(labels("recommendations", 200), 30.0, MAX_SERIES);
        edge.observe(labels("events", 400), 0.0, MAX_SERIES);
        let report = edge.take_report("i1", 1_700_000_000);
        assert!(edge.is_empty(), "a report empties the isolate's counts");
        let wire = serde_json::to_value(&report).unwrap();
        let back = validate_edge_report_json(wire).unwrap();
        assert_eq!(back, report);
        let mut central = Tallies::default();
        central.merge(&back, 1000);
        central.merge(&back, 1000);
        let recs = central
            .iter()
            .find(|(l, _)| l.route == "recommendations")
            .unwrap()
            .1;
        assert_eq!((recs.count, recs.ms_sum), (4, 66.0));
        assert_eq!(recs.buckets[2], 2);
        assert_eq!(recs.buckets[5], 2);
    }

    #[test]
    fn series_past_the_cap_are_dropped_and_counted() {
        let mut t = Tallies::default();
        t.observe(labels("health", 200), 1.0, 1);
        t.observe(labels("health", 503), 1.0, 1);
        t.observe(labels("health", 200), 1.0, 1);
        assert_eq!(t.iter().count(), 1);
        assert_eq!(t.dropped, 1);
    }

    fn report() -> serde_json::Value {
        json!({"isolate": "i1", "ts": 1_700_000_000, "series": [
            {"route": "recommendations", "status": 200, "model": "v17", "cache": "hit", "error": "",
             "count": 3, "ms_sum": 4.5, "buckets": [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]}]})
    }

    fn error_of(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v = report();
        mutate(&mut v);
        validate_edge_report_json(v).unwrap_err().0
    }

    #[test]
    fn every_rule_names_its_field() {
        assert!(validate_edge_report_json(report()).is_ok());
        assert!(error_of(|v| v["isolate"] = json!("")).contains("`isolate`"));
        assert!(error_of(|v| v["ts"] = json!(5)).contains("`ts`"));
        assert!(error_of(|v| v["series"] = json!([])).contains("`series`"));
        assert!(error_of(|v| v["series"][0]["route"] = json!("admin")).contains("`route`"));
        assert!(error_of(|v| v["series"][0]["status"] = json!(99)).contains("`status`"));
        assert!(error_of(|v| v["series"][0]["model"] = json!("../x")).contains("`model`"));
        assert!(error_of(|v| v["series"][0]["cache"] = json!("warm")).contains("`cache`"));
        assert!(error_of(|v| v["series"][0]["error"] = json!("Bad Thing")).contains("`error`"));
        assert!(error_of(|v| v["series"][0]["count"] = json!(0)).contains("`count`"));
        assert!(error_of(|v| v["series"][0]["buckets"] = json!([3])).contains("`buckets`"));
        assert!(error_of(|v| v["series"][0]["buckets"][0] = json!(1)).contains("add up"));
        assert!(error_of(|v| v["series"][0]["ms_sum"] = json!(-1.0)).contains("`ms_sum`"));
        assert!(error_of(|v| v["series"][0]["extra"] = json!(1)).contains("unknown field"));
        assert!(error_of(|v| {
            let s = v["series"][0].clone();
            v["series"].as_array_mut().unwrap().push(s);
        })
        .contains("twice"));
    }
}
