//! The worker's request/response vocabulary, free of worker types so it is tested natively:
//! error bodies, event parsing and validation, query parameters.

use edgerec::{Device, EventType};
use serde::Serialize;

/// Most events accepted in one `POST /v1/events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 50;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON error: `{"error": {"code": ..., "message": ...}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// One visitor event posted to the edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeEvent {
    pub id: Option<String>,
    pub item: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ts: u64,
    pub value: Option<f64>,
}

impl EdgeEvent {
    pub fn event_type(&self) -> EventType {
        EventType::from_name(&self.kind).unwrap_or(EventType::Click)
    }
}

/// Parses a JSON event or array of events. `now` fills a missing `ts`. Each problem names the
/// event's index and field.
pub fn parse_events(body: &[u8], now: u64) -> Result<Vec<EdgeEvent>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            413,
            "too_large",
            format!("body above {MAX_BODY_BYTES} bytes"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "malformed_json",
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let list = match value {
        serde_json::Value::Array(a) => a,
        o @ serde_json::Value::Object(_) => vec![o],
        _ => {
            return Err(ApiError::new(
                400,
                "malformed_json",
                "expected an event object or an array of events",
            ))
        }
    };
    if list.is_empty() {
        return Err(ApiError::new(
            400,
            "no_events",
            "the request holds no events",
        ));
    }
    if list.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::new(
            413,
            "too_many_events",
            format!("{} events, at most {MAX_EVENTS_PER_REQUEST}", list.len()),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let bad = |m: String| ApiError::new(400, "invalid_event", format!("event {i}: {m}"));
            let obj = v.as_object().ok_or_else(|| bad("not an object".into()))?;
            let item = obj
                .get("item")
                .and_then(|x| x.as_str())
                .map(str::trim)
                .unwrap_or("");
            if item.is_empty() || item.len() > 256 {
                return Err(bad(
                    "`item` must be a non-empty string of at most 256 bytes".into(),
                ));
            }
            let kind = match obj.get("type") {
                None | Some(serde_json::Value::Null) => "click".to_string(),
                Some(t) => {
                    let t = t
                        .as_str()
                        .ok_or_else(|| bad("`type` must be a string".into()))?;
                    EventType::from_name(t)
                        .map_err(|e| bad(e.to_string()))?
                        .name()
                        .to_string()
                }
            };
            let ts = match obj.get("ts") {
                None | Some(serde_json::Value::Null) => now,
                Some(t) => match t.as_f64() {
                    Some(x) if (0.0..1e11).contains(&x) && x.fract() == 0.0 => x as u64,
                    _ => return Err(bad("`ts` must be whole unix seconds".into())),
                },
            };
            let value = match obj.get("value") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad("`value` must be a finite number".into()))?,
                ),
            };
            let id = match obj.get("id") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .filter(|s| !s.is_empty() && s.len() <= 256)
                        .ok_or_else(|| bad("`id` must be a short string".into()))?
                        .to_string(),
                ),
            };
            Ok(EdgeEvent {
                id,
                item: item.to_string(),
                kind,
                ts,
                value,
            })
        })
        .collect()
}

/// Query-string overrides of the request context, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub k: Option<usize>,
    pub geohash: Option<String>,
    pub device: Option<Device>,
    pub ts: Option<i64>,
    pub tz_offset_min: Option<i32>,
    pub exclude: Vec<String>,
}

pub fn parse_query(
    pairs: impl Iterator<Item = (String, String)>,
    max_k: usize,
) -> Result<Overrides, ApiError> {
    let mut o = Overrides::default();
    for (key, value) in pairs {
        let bad = |what: &str| ApiError::new(400, "invalid_parameter", format!("`{key}` {what}"));
        match key.as_str() {
            "k" => {
                let k: usize = value.parse().map_err(|_| bad("must be a whole number"))?;
                if k == 0 || k > max_k {
                    return Err(bad(&format!("must be between 1 and {max_k}")));
                }
                o.k = Some(k);
            }
            "geohash" => {
                o.geohash = Some(
                    edgerec::context::normalize_geohash(
                        &value,
                        edgerec::format::MAX_GEOHASH_PRECISION,
                    )
                    .ok_or_else(|| bad("is not a geohash"))?,
                )
            }
            "device" => {
                o.device = Some(
                    Device::from_name(&value)
                        .map_err(|e| ApiError::new(400, "invalid_parameter", e.to_string()))?,
                )
            }
            "ts" => {
                o.ts = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|t| (0..100_000_000_000).contains(t))
                        .ok_or_else(|| bad("must be unix seconds"))?,
                )
            }
            "tz_offset_min" => {
                o.tz_offset_min = Some(
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|t| (-840..=840).contains(t))
                        .ok_or_else(|| bad("must be minutes in [-840, 840]"))?,
                )
            }
            "exclude" => o.exclude.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .take(100)
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_defaults_and_named_errors() {
        let e = parse_events(br#"{"item": "i1"}"#, 100).unwrap();
        assert_eq!(
            e[0],
            EdgeEvent {
                id: None,
                item: "i1".into(),
                kind: "click".into(),
                ts: 100,
                value: None
            }
        );
        let e = parse_events(
            br#"[{"item": "a", "type": "Like", "ts": 5}, {"item": "b", "id": "x"}]"#,
            1,
        )
        .unwrap();
        assert_eq!(
            (e[0].kind.as_str(), e[0].ts, e[1].id.as_deref()),
            ("like", 5, Some("x"))
        );
        let err = |b: &str| parse_events(b.as_bytes(), 1).unwrap_err();
        assert_eq!(err("{nope").code, "malformed_json");
        assert_eq!(err("42").code, "malformed_json");
        assert_eq!(err("[]").code, "no_events");
        let e = err(r#"[{"item": "a"}, {"item": ""}]"#);
        assert_eq!(
            (e.code, e.message.starts_with("event 1:")),
            ("invalid_event", true)
        );
        assert!(err(r#"{"item": "a", "type": "teleport"}"#)
            .message
            .contains("teleport"));
        assert!(err(r#"{"item": "a", "ts": -1}"#).message.contains("`ts`"));
        assert_eq!(
            err(&format!("[{}]", vec![r#"{"item":"a"}"#; 51].join(","))).status,
            413
        );
        assert_eq!(
            parse_events(&vec![b' '; MAX_BODY_BYTES + 1], 1)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn query_overrides() {
        let q = |s: &[(&str, &str)]| {
            parse_query(s.iter().map(|(a, b)| (a.to_string(), b.to_string())), 100)
        };
        let o = q(&[
            ("k", "5"),
            ("geohash", "9Q8YYZZ"),
            ("device", "tablet"),
            ("ts", "1700000000"),
            ("tz_offset_min", "-480"),
            ("exclude", "a, b,,c"),
        ])
        .unwrap();
        assert_eq!(o.k, Some(5));
        assert_eq!(o.geohash.as_deref(), Some("9q8yy"));
        assert_eq!(o.device, Some(Device::Tablet));
        assert_eq!(o.exclude, vec!["a", "b", "c"]);
        assert_eq!(q(&[("k", "0")]).unwrap_err().code, "invalid_parameter");
        assert_eq!(q(&[("k", "1000")]).unwrap_err().status, 400);
        assert!(q(&[("device", "fridge")]).is_err());
        assert!(q(&[("geohash", "!!")]).is_err());
        assert!(q(&[("unrelated", "x")]).is_ok());
    }
}
