//! Interaction events: the event CSV of DESIGN.md, the JSON events of the ingest endpoint, and
//! their validation. Every rejection names the line (CSV) or the index (JSON batch) and the
//! field, and a bad row never stops the good rows around it from being counted or reported.

use anyhow::{bail, Context as _, Result};
use edgerec::context::{geohash_encode, normalize_geohash};
use edgerec::format::MAX_GEOHASH_PRECISION;
use edgerec::{Device, EventType};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One validated interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key; events with the same id are stored once.
    pub id: Option<String>,
    pub user: String,
    pub item: String,
    /// Unix seconds.
    pub ts: i64,
    pub kind: EventKind,
    pub value: Option<f64>,
    /// Capped at `MAX_GEOHASH_PRECISION` characters.
    pub geohash: Option<String>,
    pub device: Option<String>,
    pub tz_offset_min: Option<i32>,
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

    pub fn parse(s: &str) -> Result<EventKind> {
        Ok(match EventType::from_name(s)? {
            EventType::View => EventKind::View,
            EventType::Click => EventKind::Click,
            EventType::Like => EventKind::Like,
            EventType::Cart => EventKind::Cart,
            EventType::Purchase => EventKind::Purchase,
            EventType::Dwell => EventKind::Dwell,
        })
    }
}

const MAX_ID_LEN: usize = 256;
/// Timestamps outside [1990, 2100) are almost certainly milliseconds or garbage.
const TS_RANGE: std::ops::Range<i64> = 631_152_000..4_102_444_800;

/// Raw fields of an event before validation (shared by the CSV and JSON paths).
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
}

fn number(field: &str, v: &serde_json::Value) -> Result<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().context(format!("`{field}` is not a number")),
        serde_json::Value::String(s) if !s.trim().is_empty() => s
            .trim()
            .parse::<f64>()
            .with_context(|| format!("`{field}` is not a number: {s:?}")),
        _ => bail!("`{field}` is not a number"),
    }
}

fn id_field(field: &str, v: Option<&str>) -> Result<String> {
    let v = v.map(str::trim).unwrap_or("");
    if v.is_empty() {
        bail!("`{field}` is missing or empty");
    }
    if v.len() > MAX_ID_LEN {
        bail!("`{field}` is longer than {MAX_ID_LEN} bytes");
    }
    if v.chars().any(char::is_control) {
        bail!("`{field}` contains control characters");
    }
    Ok(v.to_string())
}

impl RawEvent {
    /// Validates every field; the error names the first bad one.
    pub fn validate(&self) -> Result<Event> {
        let user = id_field("user", self.user.as_deref())?;
        let item = id_field("item", self.item.as_deref())?;
        let ts = number("ts", self.ts.as_ref().context("`ts` is missing")?)?;
        if ts.fract() != 0.0 || !TS_RANGE.contains(&(ts as i64)) {
            bail!("`ts` must be whole unix seconds between 1990 and 2100, got {ts}");
        }
        let kind = match self.kind.as_deref().map(str::trim) {
            None | Some("") => EventKind::View,
            Some(k) => EventKind::parse(k)?,
        };
        let value = self
            .value
            .as_ref()
            .map(|v| number("value", v))
            .transpose()?;
        if value.is_some_and(|v| !v.is_finite()) {
            bail!("`value` must be finite");
        }
        let geohash = match (&self.geohash, &self.lat, &self.lon) {
            (Some(g), _, _) if !g.trim().is_empty() => Some(
                normalize_geohash(g, MAX_GEOHASH_PRECISION)
                    .with_context(|| format!("`geohash` {g:?} is not a geohash"))?,
            ),
            (_, Some(lat), Some(lon)) => Some(
                geohash_encode(
                    number("lat", lat)?,
                    number("lon", lon)?,
                    MAX_GEOHASH_PRECISION,
                )
                .context("`lat`/`lon` out of range")?,
            ),
            (_, Some(_), None) | (_, None, Some(_)) => bail!("`lat` and `lon` must come together"),
            _ => None,
        };
        let device = match self.device.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(Device::from_name(d)?.name().to_string()),
        };
        let tz_offset_min = match &self.tz_offset_min {
            None => None,
            Some(v) => {
                let t = number("tz_offset_min", v)?;
                if !(-840.0..=840.0).contains(&t) || t.fract() != 0.0 {
                    bail!("`tz_offset_min` must be whole minutes in [-840, 840]");
                }
                Some(t as i32)
            }
        };
        let id = match &self.id {
            Some(i) => Some(id_field("id", Some(i))?),
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
        })
    }
}

/// Columns the event CSV may have.
pub const CSV_COLUMNS: [&str; 11] = [
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
];

/// A row the CSV reader rejected.
#[derive(Debug, Clone, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// Reads an event CSV. Structural problems (no file, no header, missing required or unknown
/// columns, no rows at all) are errors; bad rows are collected with their line numbers.
pub fn read_csv(path: &Path, mut on_row: impl FnMut(u64)) -> Result<(Vec<Event>, Vec<RowError>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        bail!(
            "{}: empty file (expected a header row with user,item,ts)",
            path.display()
        );
    }
    for h in headers.iter() {
        if !CSV_COLUMNS.contains(&h) {
            bail!(
                "{}: unknown column {h:?} in the header (allowed: {})",
                path.display(),
                CSV_COLUMNS.join(", ")
            );
        }
    }
    for required in ["user", "item", "ts"] {
        if !headers.iter().any(|h| h == required) {
            bail!(
                "{}: the header has no `{required}` column (required: user,item,ts)",
                path.display()
            );
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let idx: Vec<Option<usize>> = CSV_COLUMNS.iter().map(|c| col(c)).collect();
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    for (n, record) in reader.records().enumerate() {
        on_row(n as u64);
        let line = n as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                errors.push(RowError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let get = |i: usize| {
            idx[i]
                .and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let json = |i: usize| get(i).map(serde_json::Value::String);
        let raw = RawEvent {
            id: get(0),
            user: get(1),
            item: get(2),
            ts: json(3),
            kind: get(4),
            value: json(5),
            lat: json(6),
            lon: json(7),
            geohash: get(8),
            device: get(9),
            tz_offset_min: json(10),
        };
        match raw.validate() {
            Ok(e) => events.push(e),
            Err(e) => errors.push(RowError {
                line,
                message: format!("{e:#}"),
            }),
        }
    }
    if events.is_empty() && errors.is_empty() {
        bail!("{}: no events after the header", path.display());
    }
    Ok((events, errors))
}

/// Reads a CSV for training or evaluation, where any bad row is an error naming it.
pub fn read_csv_strict(path: &Path) -> Result<Vec<Event>> {
    let (events, errors) = read_csv(path, |_| {})?;
    if let Some(first) = errors.first() {
        bail!(
            "{}:{}: {} ({} bad rows in all; fix them or import with `central-sync import`, which skips and reports them)",
            path.display(),
            first.line,
            first.message,
            errors.len()
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn csv(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_all_columns() {
        let f = csv("user,item,ts,type,value,lat,lon,device,tz_offset_min\nu1,i1,978300760,click,1.5,37.7749,-122.4194,mobile,-480\nu2,i2,978300761,,,,,,\n");
        let (events, errors) = read_csv(f.path(), |_| {}).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events[0].geohash.as_deref(), Some("9q8yy"));
        assert_eq!(events[0].kind, EventKind::Click);
        assert_eq!(events[0].device.as_deref(), Some("mobile"));
        assert_eq!(events[1].kind, EventKind::View);
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let f = csv("user,item,ts,type\nu1,i1,978300760,click\nu1,,978300761,view\nu2,i3,12,view\nu3,i4,978300762,teleport\nu4,i5,978300763,like\n");
        let (events, errors) = read_csv(f.path(), |_| {}).unwrap();
        assert_eq!(events.len(), 2);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(errors[0].message.contains("`item`"));
        assert!(errors[1].message.contains("`ts`"));
        assert!(errors[2].message.contains("teleport"));
        let err = read_csv_strict(f.path()).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
    }

    #[test]
    fn structural_errors() {
        let err = |t: &str| read_csv(csv(t).path(), |_| {}).unwrap_err().to_string();
        assert!(err("").contains("empty file"));
        assert!(err("user,item\nu,i\n").contains("no `ts` column"));
        assert!(err("user,item,ts,colour\n").contains("unknown column \"colour\""));
        assert!(err("user,item,ts\n").contains("no events"));
        assert!(read_csv(Path::new("/nonexistent.csv"), |_| {})
            .unwrap_err()
            .to_string()
            .contains("cannot open"));
    }
}
