//! Interaction events and their one validation, shared by the edge's `POST /v1/events`,
//! central-sync's ingest endpoint and its CSV import, so an event one side accepts is never
//! dropped by the other.
//!
//! Rules: `user`, `item` and `id` are non-empty strings of at most 256 bytes without control
//! characters; `ts` is whole unix seconds in [1990, 2100); `type` is one of `view`, `click`,
//! `like`, `cart`, `purchase`, `dwell` (missing: `view`); `value` is finite; `geohash` (or
//! `lat` + `lon`) is cut to 5 characters; `device` is a device class; `tz_offset_min` is whole
//! minutes in [-840, 840]; `exposure` (optional) follows the id rules. Numbers may also come as numeric strings (the CSV path). The edge
//! supplies `user` itself (the visitor) and the time of arrival for a missing `ts`.

use crate::error::ApiError;
use edgerec::context::{geohash_encode, normalize_geohash, MAX_TZ_OFFSET_MIN};
use edgerec::format::MAX_GEOHASH_PRECISION;
use edgerec::{Device, EventType};
use serde::{Deserialize, Serialize};

/// Longest accepted id (user, item, event id).
pub const MAX_ID_LEN: usize = 256;
/// The most events one ingest request (central-sync's `POST /v1/events`) may carry.
pub const INGEST_MAX_EVENTS: usize = 1000;
/// The largest ingest request body, in bytes.
pub const INGEST_MAX_BYTES: usize = 1024 * 1024;
/// Timestamps outside [1990, 2100) are almost certainly milliseconds or garbage.
pub const TS_RANGE: core::ops::Range<i64> = 631_152_000..4_102_444_800;
/// Timezone offsets in minutes east of UTC, as the IANA zones span them.
pub const TZ_RANGE_MIN: core::ops::RangeInclusive<i32> = -MAX_TZ_OFFSET_MIN..=MAX_TZ_OFFSET_MIN;

/// One validated interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key; events with the same id are stored once.
    pub id: Option<String>,
    pub user: String,
    pub item: String,
    /// Unix seconds.
    pub ts: i64,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub value: Option<f64>,
    /// Capped at `MAX_GEOHASH_PRECISION` characters.
    pub geohash: Option<String>,
    pub device: Option<String>,
    pub tz_offset_min: Option<i32>,
    /// The exposure (a served list, [`crate::exposures::Exposure`]) this interaction came
    /// from, when the client knows it: how clicks are joined with what was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<String>,
}

impl Event {
    /// A click with nothing but its user, item and time. The fields are not validated: this
    /// builds events a program already trusts (fixtures, synthetic logs); events from outside
    /// go through the validation of `RawEvent`.
    pub fn click(user: impl Into<String>, item: impl Into<String>, ts: i64) -> Event {
        Event {
            id: None,
            user: user.into(),
            item: item.into(),
            ts,
            kind: EventKind::Click,
            value: None,
            geohash: None,
            device: None,
            tz_offset_min: None,
            exposure: None,
        }
    }
}

/// Serde-friendly event type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    View,
    Click,
    Like,
    Cart,
    Purchase,
    Dwell,
}

impl EventKind {
    /// The core's event type.
    pub fn core(self) -> EventType {
        match self {
            EventKind::View => EventType::View,
            EventKind::Click => EventType::Click,
            EventKind::Like => EventType::Like,
            EventKind::Cart => EventType::Cart,
            EventKind::Purchase => EventType::Purchase,
            EventKind::Dwell => EventType::Dwell,
        }
    }

    /// Parses a type name (case-insensitive, as the core reads it).
    ///
    /// # Errors
    /// The core's message naming the allowed types.
    pub fn parse(s: &str) -> Result<EventKind, EventError> {
        Ok(
            match EventType::from_name(s).map_err(|e| EventError(e.to_string()))? {
                EventType::View => EventKind::View,
                EventType::Click => EventKind::Click,
                EventType::Like => EventKind::Like,
                EventType::Cart => EventKind::Cart,
                EventType::Purchase => EventKind::Purchase,
                EventType::Dwell => EventKind::Dwell,
            },
        )
    }
}

/// Why an event was rejected: a sentence naming the field.
#[derive(Debug, Clone, PartialEq)]
pub struct EventError(pub String);

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EventError {}

pub(crate) fn bad_field<T>(message: impl Into<String>) -> Result<T, EventError> {
    Err(EventError(message.into()))
}

use bad_field as bad;

/// Raw fields of an event before validation (the JSON and CSV paths both fill it).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawEvent {
    pub id: Option<String>,
    pub user: Option<String>,
    pub item: Option<String>,
    pub ts: Option<serde_json::Value>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<serde_json::Value>,
    pub lat: Option<serde_json::Value>,
    pub lon: Option<serde_json::Value>,
    pub geohash: Option<String>,
    pub device: Option<String>,
    pub tz_offset_min: Option<serde_json::Value>,
    pub exposure: Option<String>,
}

/// What the receiving side fills in before validating.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults<'a> {
    /// The user every event is attributed to, replacing any `user` field (the edge's visitor:
    /// a client never chooses whose events it posts).
    pub user: Option<&'a str>,
    /// The time of a event without `ts` (the edge's time of arrival); without it, `ts` is
    /// required.
    pub now: Option<i64>,
}

pub(crate) fn number(field: &str, v: &serde_json::Value) -> Result<f64, EventError> {
    let parsed = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) => Ok(x),
        None => bad(format!("`{field}` is not a number: {v}")),
    }
}

pub(crate) fn id_field(field: &str, v: Option<&str>) -> Result<String, EventError> {
    let v = v.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return bad(format!("`{field}` is missing or empty"));
    }
    if v.len() > MAX_ID_LEN {
        return bad(format!("`{field}` is longer than {MAX_ID_LEN} bytes"));
    }
    if v.chars().any(char::is_control) {
        return bad(format!("`{field}` contains control characters"));
    }
    Ok(v.to_string())
}

impl RawEvent {
    /// Validates every field; the error names the first bad one.
    ///
    /// # Errors
    /// [`EventError`] naming the field and the rule.
    pub fn validate(&self, defaults: Defaults<'_>) -> Result<Event, EventError> {
        let user = id_field("user", defaults.user.or(self.user.as_deref()))?;
        let item = id_field("item", self.item.as_deref())?;
        let ts = match (&self.ts, defaults.now) {
            (None | Some(serde_json::Value::Null), Some(now)) => now as f64,
            (None | Some(serde_json::Value::Null), None) => return bad("`ts` is missing"),
            (Some(v), _) => number("ts", v)?,
        };
        if ts.fract() != 0.0 || !TS_RANGE.contains(&(ts as i64)) {
            return bad(format!(
                "`ts` must be whole unix seconds between 1990 and 2100, got {ts}"
            ));
        }
        let kind = match self.kind.as_deref().map(str::trim) {
            None | Some("") => EventKind::View,
            Some(k) => EventKind::parse(k)?,
        };
        let value = match &self.value {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(number("value", v)?),
        };
        if value.is_some_and(|v| !v.is_finite()) {
            return bad("`value` must be finite");
        }
        let geohash = match (&self.geohash, &self.lat, &self.lon) {
            (Some(g), _, _) if !g.trim().is_empty() => {
                match normalize_geohash(g, MAX_GEOHASH_PRECISION) {
                    Some(g) => Some(g),
                    None => return bad(format!("`geohash` {g:?} is not a geohash")),
                }
            }
            (_, Some(lat), Some(lon)) => {
                match geohash_encode(
                    number("lat", lat)?,
                    number("lon", lon)?,
                    MAX_GEOHASH_PRECISION,
                ) {
                    Some(g) => Some(g),
                    None => return bad("`lat`/`lon` out of range"),
                }
            }
            (_, Some(_), None) | (_, None, Some(_)) => {
                return bad("`lat` and `lon` must come together")
            }
            _ => None,
        };
        let device = match self.device.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(
                Device::from_name(d)
                    .map_err(|e| EventError(e.to_string()))?
                    .name()
                    .to_string(),
            ),
        };
        let tz_offset_min = match &self.tz_offset_min {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let t = number("tz_offset_min", v)?;
                if t.fract() != 0.0 || !TZ_RANGE_MIN.contains(&(t as i32)) {
                    return bad("`tz_offset_min` must be whole minutes in [-840, 840]");
                }
                Some(t as i32)
            }
        };
        let id = match &self.id {
            Some(i) => Some(id_field("id", Some(i))?),
            None => None,
        };
        let exposure = match &self.exposure {
            Some(x) => Some(id_field("exposure", Some(x))?),
            None => None,
        };
        Ok(Event {
            id,
            user,
            item,
            ts: ts as i64,
            kind,
            value,
            geohash,
            device,
            tz_offset_min,
            exposure,
        })
    }
}

/// The batch envelope of `POST /v1/events` (edge and ingest): one JSON event object or an
/// array of them, at most `max_events`, at least one. Returns the raw events in order; each is
/// then validated on its own, so the caller can name the index of a bad one.
///
/// # Errors
/// `malformed_json` (400) for anything but an object or an array, `no_events` (400) for an
/// empty array, `too_many_events` (413) above `max_events`.
pub fn parse_batch(body: &[u8], max_events: usize) -> Result<Vec<serde_json::Value>, ApiError> {
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
    if list.len() > max_events {
        return Err(ApiError::new(
            413,
            "too_many_events",
            format!("{} events, at most {max_events} per request", list.len()),
        ));
    }
    Ok(list)
}

/// Validates one event read from the event log's stream (a Kafka topic): as [`validate_json`],
/// and a field this contract does not know is an error too. Everything edgerec writes to the
/// log carries only the contract's fields, so anything else came from another producer.
///
/// # Errors
/// [`EventError`] as [`validate_json`], or for an unknown field.
pub fn validate_logged_json(value: serde_json::Value) -> Result<Event, EventError> {
    if let Some(map) = value.as_object() {
        if let Some(unknown) = map.keys().find(|k| !RawEvent::FIELDS.contains(&k.as_str())) {
            return bad(format!("unknown field `{unknown}`"));
        }
    }
    validate_json(value, Defaults::default())
}

impl RawEvent {
    /// The JSON field names of an event.
    pub const FIELDS: [&'static str; 12] = [
        "id",
        "user",
        "item",
        "ts",
        "type",
        "value",
        "lat",
        "lon",
        "geohash",
        "device",
        "tz_offset_min",
        "exposure",
    ];
}

/// Validates one raw JSON event of a batch.
///
/// # Errors
/// [`EventError`] when it is not an object of the event's fields, or a field breaks its rule.
pub fn validate_json(
    value: serde_json::Value,
    defaults: Defaults<'_>,
) -> Result<Event, EventError> {
    if !value.is_object() {
        return bad("not an object");
    }
    let raw: RawEvent = serde_json::from_value(value).map_err(|e| EventError(e.to_string()))?;
    raw.validate(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value, defaults: Defaults<'_>) -> Result<Event, String> {
        validate_json(v, defaults).map_err(|e| e.0)
    }

    #[test]
    fn logged_events_carry_only_the_contracts_fields() {
        let event = Event {
            id: Some("a".into()),
            user: "v1".into(),
            item: "50".into(),
            ts: 978_300_760,
            kind: EventKind::Like,
            value: Some(4.0),
            geohash: Some("9q8yy".into()),
            device: Some("mobile".into()),
            tz_offset_min: Some(-480),
            exposure: Some("x1".into()),
        };
        // What edgerec writes reads back.
        let written = serde_json::to_value(&event).unwrap();
        assert_eq!(validate_logged_json(written).unwrap(), event);
        let mut extra = serde_json::to_value(&event).unwrap();
        extra["colour"] = json!("red");
        assert!(validate_logged_json(extra)
            .unwrap_err()
            .0
            .contains("colour"));
        assert!(validate_logged_json(json!({"user": "v1", "item": "1"})).is_err());
    }

    #[test]
    fn one_rule_set_for_both_sides() {
        let edge = Defaults {
            user: Some("v00ff"),
            now: Some(1_700_000_000),
        };
        let e = check(json!({"item": " 50 ", "user": "someone-else"}), edge).unwrap();
        assert_eq!((e.user.as_str(), e.item.as_str()), ("v00ff", "50"));
        assert_eq!((e.ts, e.kind), (1_700_000_000, EventKind::View));
        // What the edge used to accept and the ingest then dropped.
        assert!(check(json!({"item": "a", "ts": 5}), edge)
            .unwrap_err()
            .contains("`ts`"));
        assert!(check(json!({"item": "a\u{7}"}), edge)
            .unwrap_err()
            .contains("control"));
        assert!(check(json!({"item": "a", "tz_offset_min": 1440}), edge).is_err());
        // Centrally, user and ts are required.
        assert!(check(
            json!({"item": "a", "ts": 1_700_000_000}),
            Defaults::default()
        )
        .unwrap_err()
        .contains("`user`"));
        assert!(
            check(json!({"user": "u", "item": "a"}), Defaults::default())
                .unwrap_err()
                .contains("`ts` is missing")
        );
        let full = check(
            json!({"id": "e1", "user": "u", "item": "a", "ts": "1700000000", "type": "Purchase",
                   "value": 2.5, "lat": 37.77, "lon": -122.42, "device": "mobile", "tz_offset_min": -480}),
            Defaults::default(),
        )
        .unwrap();
        assert_eq!(full.kind, EventKind::Purchase);
        assert_eq!(full.geohash.as_deref(), Some("9q8yy"));
        assert_eq!(full.device.as_deref(), Some("mobile"));
        assert_eq!(full.tz_offset_min, Some(-480));
        for bad_event in [
            json!("x"),
            json!({"user": "u", "item": "a", "ts": 1.5e9 + 0.5}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "type": "poke"}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "value": "NaN"}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "lat": 1}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "geohash": "!!"}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "device": "toaster"}),
            json!({"user": "u", "item": "", "ts": 1_700_000_000}),
            json!({"user": "u", "item": "a", "ts": 1_700_000_000, "id": "x".repeat(300)}),
        ] {
            assert!(
                check(bad_event.clone(), Defaults::default()).is_err(),
                "{bad_event}"
            );
        }
    }

    #[test]
    fn a_validated_event_travels_and_validates_again() {
        // The edge forwards what it validated; the ingest validates it again with its rules.
        let e = check(
            json!({"item": "a", "type": "cart", "geohash": "9q8yyzzz", "tz_offset_min": 60}),
            Defaults {
                user: Some("v1"),
                now: Some(1_700_000_000),
            },
        )
        .unwrap();
        let again = check(serde_json::to_value(&e).unwrap(), Defaults::default()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn envelope() {
        assert_eq!(parse_batch(b"{\"item\":\"a\"}", 5).unwrap().len(), 1);
        assert_eq!(parse_batch(b"[{},{}]", 5).unwrap().len(), 2);
        let code = |b: &[u8]| parse_batch(b, 2).unwrap_err().code;
        assert_eq!(code(b"nope"), "malformed_json");
        assert_eq!(code(b"3"), "malformed_json");
        assert_eq!(code(b"[]"), "no_events");
        assert_eq!(code(b"[{},{},{}]"), "too_many_events");
    }
}
