//! The event parsers: the edge's `POST /v1/events` body and the contract's batch parser and
//! validation used by the ingest, for events, exposures and edge metric reports. Any body is
//! records or a JSON error, never a panic; a valid report adds up without overflow.
#![no_main]

use edgerec_contract::edge_metrics::{validate_edge_report_json, Tallies};
use edgerec_contract::events::{parse_batch, validate_json, Defaults};
use edgerec_contract::exposures::validate_exposure_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = edge_worker::api::parse_events(data, "v0123456789abcdef", 1_700_000_000) {
        assert!(events.iter().all(|e| e.user == "v0123456789abcdef"));
    }
    if let Ok(lists) = edge_worker::api::parse_exposures(data, "v0123456789abcdef", 1_700_000_000) {
        assert!(lists
            .iter()
            .all(|x| x.user == "v0123456789abcdef" && x.id.starts_with("v0123456789abcdef:")));
    }
    if let Ok(items) = parse_batch(data, 1000) {
        for item in items {
            let _ = validate_json(item.clone(), Defaults::default());
            if let Ok(r) = validate_edge_report_json(item.clone()) {
                let mut sum = Tallies::new();
                sum.merge(&r, 64);
                sum.merge(&r, 64);
            }
            if let Ok(x) = validate_exposure_json(item) {
                assert!(!x.items.is_empty() && x.items.iter().all(|s| s.propensity > 0.0));
            }
        }
    }
});
