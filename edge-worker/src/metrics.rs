//! Per-request metrics of the worker (issue 15), the pure part: which labels a request is
//! counted under, and the shapes of its two production channels. The worker (`lib.rs`) counts
//! every answer into an isolate-local [`Tallies`] that it reports to central-sync's
//! `POST /v1/edge-metrics` (summed into Prometheus `/metrics` there), and, where the bindings
//! exist, writes one Workers Analytics Engine data point (`EDGE_ANALYTICS`) and one structured
//! log line (`REQUEST_LOG = "json"`, which Workers Logs indexes) per request.

use edgerec_contract::edge_metrics::{EdgeReport, Labels, Tallies, CACHE_STATES, MAX_SERIES};
use std::fmt::Write;

/// The route label of a request path (one of `edge_metrics::ROUTES`).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/recommendations" => "recommendations",
        "/v1/events" => "events",
        "/v1/exposures" => "exposures",
        "/v1/health" => "health",
        "/v1/model" => "model",
        p if p.starts_with("/v1/model/") => "shard",
        _ => "other",
    }
}

/// The labels of one answer. `model` and `cache` come from the answer's `X-Edgerec-Model` and
/// `X-Edgerec-Cache` headers (absent: `none`); `error` is the error answer's code.
pub fn labels(
    route: &'static str,
    status: u16,
    model: Option<&str>,
    cache: Option<&str>,
    error: &str,
) -> Labels {
    let cache = cache
        .and_then(|c| CACHE_STATES.iter().find(|s| **s == c))
        .map_or("none", |s| s);
    let model = model.filter(|m| edgerec_contract::pointer::valid_version(m));
    Labels {
        route: route.to_string(),
        status,
        model: model.unwrap_or("none").to_string(),
        cache: cache.to_string(),
        error: error.to_string(),
    }
}

/// One Analytics Engine data point: `blob1..5` = route, status, model, cache, error;
/// `double1` = milliseconds, `double2` = 1 (so `SUM(_sample_interval * double2)` counts requests
/// under sampling); the index is the model version, the dimension queries split by most.
pub struct DataPoint {
    pub blobs: [String; 5],
    pub doubles: [f64; 2],
    pub index: String,
}

/// Analytics Engine allows at most 96 bytes in an index.
const MAX_INDEX_BYTES: usize = 96;

pub fn data_point(l: &Labels, ms: f64) -> DataPoint {
    let mut index = l.model.clone();
    // Versions are ASCII (`valid_version`), so any byte is a char boundary.
    index.truncate(MAX_INDEX_BYTES);
    DataPoint {
        blobs: [
            l.route.clone(),
            l.status.to_string(),
            l.model.clone(),
            l.cache.clone(),
            l.error.clone(),
        ],
        doubles: [ms, 1.0],
        index,
    }
}

/// One structured log line: a JSON object Workers Logs can filter on.
pub fn log_line(l: &Labels, ms: f64) -> String {
    let mut s = String::from("{\"edgerec\":\"request\"");
    let _ = write!(
        s,
        ",\"route\":\"{}\",\"status\":{},\"model\":{},\"cache\":\"{}\",\"error\":\"{}\",\"ms\":{ms}}}",
        l.route,
        l.status,
        serde_json::Value::from(l.model.as_str()),
        l.cache,
        l.error
    );
    s
}

/// An isolate's counts since its last report.
pub struct IsolateTallies {
    pub tallies: Tallies,
    /// When the counting for the next report started (ms); 0 before the first request.
    pub since_ms: u64,
}

impl Default for IsolateTallies {
    fn default() -> IsolateTallies {
        IsolateTallies::new()
    }
}

impl IsolateTallies {
    pub const fn new() -> IsolateTallies {
        IsolateTallies {
            tallies: Tallies::new(),
            since_ms: 0,
        }
    }

    /// Counts a request that took `ms` at `now_ms`.
    pub fn observe(&mut self, labels: Labels, ms: f64, now_ms: u64) {
        if self.since_ms == 0 {
            self.since_ms = now_ms;
        }
        self.tallies.observe(labels, ms, MAX_SERIES);
    }

    /// Whether a report is due: something was counted and `flush_ms` have passed since the
    /// counting started.
    pub fn is_due(&self, now_ms: u64, flush_ms: u64) -> bool {
        !(self.tallies.is_empty() && self.tallies.dropped == 0)
            && now_ms.saturating_sub(self.since_ms) >= flush_ms
    }

    /// The report of what was counted; counting starts again at `now_ms`.
    pub fn take_report(&mut self, now_ms: u64, isolate: &str) -> EdgeReport {
        self.since_ms = now_ms;
        self.tallies.take_report(isolate, (now_ms / 1000) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec_contract::edge_metrics::validate_edge_report_json;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(route_label("/v1/recommendations"), "recommendations");
        assert_eq!(route_label("/v1/model/v1/shard-0.bin"), "shard");
        assert_eq!(route_label("/v1/model"), "model");
        assert_eq!(route_label("/admin"), "other");
    }

    #[test]
    fn labels_accept_only_known_values() {
        let l = labels("recommendations", 200, Some("v17"), Some("hit"), "");
        assert_eq!((l.model.as_str(), l.cache.as_str()), ("v17", "hit"));
        let l = labels("events", 400, Some("../x"), Some("warm"), "unknown_item");
        assert_eq!((l.model.as_str(), l.cache.as_str()), ("none", "none"));
    }

    #[test]
    fn reports_are_due_after_the_flush_interval_and_valid() {
        let mut t = IsolateTallies::new();
        let l = labels("recommendations", 200, Some("v1"), Some("miss"), "");
        assert!(!t.is_due(1_700_000_000_000, 0), "nothing counted yet");
        t.observe(l.clone(), 3.0, 1_700_000_000_000);
        assert!(!t.is_due(1_700_000_000_000, 10_000));
        t.observe(l.clone(), 4.0, 1_700_000_005_000);
        assert!(!t.is_due(1_700_000_005_000, 10_000));
        t.observe(l, 5.0, 1_700_000_010_000);
        assert!(t.is_due(1_700_000_010_000, 10_000));
        let r = t.take_report(1_700_000_010_000, "i");
        assert_eq!(r.series[0].count, 3);
        let back = validate_edge_report_json(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(!t.is_due(1_700_000_100_000, 10_000), "nothing new to send");
    }

    #[test]
    fn the_data_point_and_log_line_carry_the_labels() {
        let l = labels("recommendations", 200, Some("v1"), Some("hit"), "");
        let p = data_point(&l, 2.5);
        assert_eq!(
            p.blobs,
            ["recommendations", "200", "v1", "hit", ""].map(String::from)
        );
        assert_eq!((p.doubles, p.index.as_str()), ([2.5, 1.0], "v1"));
        let line: serde_json::Value = serde_json::from_str(&log_line(&l, 2.5)).unwrap();
        assert_eq!(line["route"], "recommendations");
        assert_eq!(line["ms"], 2.5);
    }
}
