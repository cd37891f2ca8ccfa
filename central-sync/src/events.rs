//! The event CSV of DESIGN.md. Rows are validated by the contract's one event validation (the
//! same rules as the edge and the ingest endpoint); every rejection names the line and the
//! field, and a bad row never stops the good rows around it from being counted or reported.

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use std::path::Path;

/// Events and their one validation live in the contract both the edge and central-sync speak.
pub use edgerec_contract::events::{Defaults, Event, EventKind, RawEvent};

/// Columns the event CSV may have: the contract's event fields.
pub const CSV_COLUMNS: [&str; 12] = RawEvent::FIELDS;

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
            exposure: get(11),
        };
        match raw.validate(Defaults::default()) {
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
