//! Exposures: what a visitor was shown. The edge (or a page scoring in the browser) records one
//! per list served: which model and experiment arm produced it, each item with its position,
//! score and the probability the serving policy had of putting it there. A click names the
//! exposure it came from (the event's `exposure` field), so central-sync can join what was
//! shown with what was clicked: the log `central-sync ope` and `ab report` read.
//!
//! Rules: `id`, `user`, `model` and `arm` follow the event id rules (non-empty, at most 256
//! bytes, no control characters; `arm` optional); `ts` as events; `items` holds 1 to
//! [`MAX_EXPOSED_ITEMS`] entries with distinct item ids and distinct positions, each
//! `propensity` in (0, 1] (1 when the policy is deterministic) and each `score` finite or null.
//! The edge posts them to the ingest's `POST /v1/exposures` in the batch envelope of events
//! ([`crate::events::parse_batch`]).

use crate::events::{bad_field as bad, id_field, number, EventError, TS_RANGE};
use serde::{Deserialize, Serialize};

/// The most items one exposure lists (the edge's largest `k`).
pub const MAX_EXPOSED_ITEMS: usize = 100;

/// One validated exposure: a list as it was served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Unique per list served; clicks name it.
    pub id: String,
    pub user: String,
    /// Unix seconds.
    pub ts: i64,
    /// The model version that ranked the list.
    pub model: String,
    /// The experiment arm the visitor was assigned to, when the pointer splits traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    pub items: Vec<Shown>,
}

/// One item of a served list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    pub item: String,
    /// 0 is the top of the list.
    pub position: u32,
    /// The model's score; `None` for lists served without one (the fallback list).
    pub score: Option<f64>,
    /// Probability that the serving policy put this item at this position.
    pub propensity: f64,
}

#[derive(Deserialize)]
struct RawExposure {
    id: Option<String>,
    user: Option<String>,
    ts: Option<serde_json::Value>,
    model: Option<String>,
    arm: Option<String>,
    items: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawShown {
    item: Option<String>,
    position: Option<serde_json::Value>,
    score: Option<serde_json::Value>,
    propensity: Option<serde_json::Value>,
}

/// Validates one JSON exposure of a batch; the error names the first bad field.
///
/// # Errors
/// [`EventError`] when it is not an object of the exposure's fields, or a field breaks its rule.
pub fn validate_exposure_json(value: serde_json::Value) -> Result<Exposure, EventError> {
    if !value.is_object() {
        return bad("not an object");
    }
    let raw: RawExposure = serde_json::from_value(value).map_err(|e| EventError(e.to_string()))?;
    let id = id_field("id", raw.id.as_deref())?;
    let user = id_field("user", raw.user.as_deref())?;
    let ts = match &raw.ts {
        None | Some(serde_json::Value::Null) => return bad("`ts` is missing"),
        Some(v) => number("ts", v)?,
    };
    if ts.fract() != 0.0 || !TS_RANGE.contains(&(ts as i64)) {
        return bad(format!(
            "`ts` must be whole unix seconds between 1990 and 2100, got {ts}"
        ));
    }
    let model = id_field("model", raw.model.as_deref())?;
    let arm = match raw.arm.as_deref() {
        None => None,
        Some(a) => Some(id_field("arm", Some(a))?),
    };
    let listed = raw.items.unwrap_or_default();
    if listed.is_empty() || listed.len() > MAX_EXPOSED_ITEMS {
        return bad(format!(
            "`items` must list 1 to {MAX_EXPOSED_ITEMS} items, got {}",
            listed.len()
        ));
    }
    let mut items: Vec<Shown> = Vec::with_capacity(listed.len());
    for (i, v) in listed.into_iter().enumerate() {
        let shown = shown(v).map_err(|e| EventError(format!("`items[{i}]`: {e}")))?;
        if items.iter().any(|s| s.item == shown.item) {
            return bad(format!(
                "`items[{i}]`: item {:?} is listed twice",
                shown.item
            ));
        }
        if items.iter().any(|s| s.position == shown.position) {
            return bad(format!(
                "`items[{i}]`: position {} is listed twice",
                shown.position
            ));
        }
        items.push(shown);
    }
    Ok(Exposure {
        id,
        user,
        ts: ts as i64,
        model,
        arm,
        items,
    })
}

fn shown(v: serde_json::Value) -> Result<Shown, EventError> {
    if !v.is_object() {
        return bad("not an object");
    }
    let raw: RawShown = serde_json::from_value(v).map_err(|e| EventError(e.to_string()))?;
    let item = id_field("item", raw.item.as_deref())?;
    let position = match &raw.position {
        Some(v) => number("position", v)?,
        None => return bad("`position` is missing"),
    };
    if position.fract() != 0.0 || !(0.0..MAX_EXPOSED_ITEMS as f64).contains(&position) {
        return bad(format!(
            "`position` must be a whole number in [0, {MAX_EXPOSED_ITEMS}), got {position}"
        ));
    }
    let score = match &raw.score {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(number("score", v)?),
    };
    if score.is_some_and(|s| !s.is_finite()) {
        return bad("`score` must be finite");
    }
    let propensity = match &raw.propensity {
        Some(v) => number("propensity", v)?,
        None => return bad("`propensity` is missing"),
    };
    if !(propensity > 0.0 && propensity <= 1.0) {
        return bad(format!("`propensity` must be in (0, 1], got {propensity}"));
    }
    Ok(Shown {
        item,
        position: position as u32,
        score,
        propensity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> serde_json::Value {
        json!({"id": "x1", "user": "v00ff", "ts": 1_700_000_000, "model": "v3", "arm": "v3",
            "items": [{"item": "50", "position": 0, "score": 0.9, "propensity": 1.0},
                      {"item": "181", "position": 1, "score": 0.5, "propensity": 0.25}]})
    }

    fn error_of(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v = list();
        mutate(&mut v);
        validate_exposure_json(v).unwrap_err().0
    }

    #[test]
    fn a_served_list_round_trips() {
        let e = validate_exposure_json(list()).unwrap();
        assert_eq!((e.model.as_str(), e.arm.as_deref()), ("v3", Some("v3")));
        assert_eq!(e.items[1].propensity, 0.25);
        assert_eq!(
            validate_exposure_json(serde_json::to_value(&e).unwrap()).unwrap(),
            e
        );
        // No arm, a fallback list without scores.
        let mut v = list();
        v.as_object_mut().unwrap().remove("arm");
        v["items"][0]["score"] = json!(null);
        let e = validate_exposure_json(v).unwrap();
        assert_eq!((e.arm, e.items[0].score), (None, None));
    }

    #[test]
    fn every_rule_names_its_field() {
        assert!(error_of(|v| v["id"] = json!("")).contains("`id`"));
        assert!(error_of(|v| v["ts"] = json!(5)).contains("`ts`"));
        assert!(error_of(|v| v["model"] = json!("a\u{7}")).contains("`model`"));
        assert!(error_of(|v| v["items"] = json!([])).contains("`items`"));
        assert!(error_of(|v| v["items"][1]["propensity"] = json!(0)).contains("propensity"));
        assert!(error_of(|v| v["items"][1]["propensity"] = json!(1.5)).contains("propensity"));
        assert!(error_of(|v| v["items"][1]["position"] = json!(0)).contains("position 0"));
        assert!(error_of(|v| v["items"][1]["item"] = json!("50")).contains("twice"));
        assert!(error_of(|v| v["items"][0]["position"] = json!(-1)).contains("`position`"));
        assert!(error_of(|v| v["items"][0] = json!("50")).contains("items[0]"));
        let many: Vec<_> = (0..=MAX_EXPOSED_ITEMS)
            .map(|i| json!({"item": i.to_string(), "position": i % MAX_EXPOSED_ITEMS, "propensity": 1}))
            .collect();
        assert!(error_of(|v| v["items"] = json!(many)).contains("1 to 100"));
        assert!(validate_exposure_json(json!([1])).is_err());
    }
}
