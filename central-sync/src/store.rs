//! The event log: an embedded SQLite database in WAL mode with synchronous=FULL, so an
//! acknowledged event survives a crash. Events with an id are stored once (a retried batch is
//! harmless); `seq` orders events by arrival for incremental training. A small key/value table
//! keeps sync state (last synced seq, model version, evaluation figures) for `/metrics`.

use crate::events::{Event, EventKind};
use anyhow::{Context as _, Result};
use edgerec_contract::exposures::Exposure;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct Store {
    conn: Connection,
}

/// What an insert did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Inserted {
    pub stored: usize,
    pub duplicates: usize,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the event log {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Freed space (deleted rows, pages reorganised by splits) is zeroed, so a visitor's
        // deleted events leave no copy in the file.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT UNIQUE,
                user TEXT NOT NULL,
                item TEXT NOT NULL,
                ts INTEGER NOT NULL,
                type TEXT NOT NULL,
                value REAL,
                geohash TEXT,
                device TEXT,
                tz_offset_min INTEGER,
                received_at INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS exposures (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                exposure_id TEXT UNIQUE NOT NULL,
                user TEXT NOT NULL,
                ts INTEGER NOT NULL,
                model TEXT NOT NULL,
                arm TEXT,
                items TEXT NOT NULL,
                received_at INTEGER NOT NULL
            );",
        )
        .context("creating the event log schema")?;
        // Logs written before events named their exposure gain the column (NULL for old rows).
        let has_exposure: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'exposure'")?
            .exists([])?;
        if !has_exposure {
            conn.execute_batch("ALTER TABLE events ADD COLUMN exposure TEXT")
                .context("adding the exposure column to the event log")?;
        }
        Ok(Store { conn })
    }

    /// Stores events in one transaction; events whose id is already stored are counted as
    /// duplicates and skipped.
    pub fn insert(&mut self, events: &[Event]) -> Result<Inserted> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let tx = self.conn.transaction()?;
        let mut result = Inserted::default();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (event_id, user, item, ts, type, value, geohash, device, tz_offset_min, received_at, exposure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for e in events {
                let kind = serde_json::to_value(e.kind)?
                    .as_str()
                    .unwrap_or("view")
                    .to_string();
                let n = stmt.execute(params![
                    e.id,
                    e.user,
                    e.item,
                    e.ts,
                    kind,
                    e.value,
                    e.geohash,
                    e.device,
                    e.tz_offset_min,
                    now,
                    e.exposure
                ])?;
                if n == 1 {
                    result.stored += 1;
                } else {
                    result.duplicates += 1;
                }
            }
        }
        tx.commit()?;
        Ok(result)
    }

    /// Events with `seq > after`, in arrival order, each with its seq. One statement, so one
    /// consistent snapshot: events ingested while it runs are either in it or in the next read.
    pub fn events_after(&self, after: i64) -> Result<Vec<(i64, Event)>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, event_id, user, item, ts, type, value, geohash, device, tz_offset_min, exposure FROM events WHERE seq > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([after], |r| {
            let kind: String = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                Event {
                    id: r.get(1)?,
                    user: r.get(2)?,
                    item: r.get(3)?,
                    ts: r.get(4)?,
                    kind: EventKind::parse(&kind).unwrap_or(EventKind::View),
                    value: r.get(6)?,
                    geohash: r.get(7)?,
                    device: r.get(8)?,
                    tz_offset_min: r.get(9)?,
                    exposure: r.get(10)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores exposures in one transaction; one whose id is already stored is a duplicate.
    pub fn insert_exposures(&mut self, exposures: &[Exposure]) -> Result<Inserted> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let tx = self.conn.transaction()?;
        let mut result = Inserted::default();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO exposures (exposure_id, user, ts, model, arm, items, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for x in exposures {
                let items = serde_json::to_string(&x.items)?;
                let n = stmt.execute(params![x.id, x.user, x.ts, x.model, x.arm, items, now])?;
                if n == 1 {
                    result.stored += 1;
                } else {
                    result.duplicates += 1;
                }
            }
        }
        tx.commit()?;
        Ok(result)
    }

    /// Every stored exposure, in arrival order.
    pub fn exposures(&self) -> Result<Vec<Exposure>> {
        let mut stmt = self.conn.prepare(
            "SELECT exposure_id, user, ts, model, arm, items FROM exposures ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            let items: String = r.get(5)?;
            Ok((
                Exposure {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    ts: r.get(2)?,
                    model: r.get(3)?,
                    arm: r.get(4)?,
                    items: Vec::new(),
                },
                items,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut x, items) = row?;
            x.items = serde_json::from_str(&items)
                .with_context(|| format!("exposure {} has unreadable items", x.id))?;
            out.push(x);
        }
        Ok(out)
    }

    /// Deletes every event and exposure of `user` (a visitor's erasure request) and rebuilds
    /// the file, so no copy survives in free space (including space freed before
    /// `secure_delete` was on, by an older release). Returns how many events went.
    pub fn forget_user(&mut self, user: &str) -> Result<usize> {
        let n = self.delete("DELETE FROM events WHERE user = ?1", params![user])?;
        let shown = self.delete("DELETE FROM exposures WHERE user = ?1", params![user])?;
        if n + shown > 0 {
            self.conn.execute_batch("VACUUM")?;
        }
        self.checkpoint()?;
        Ok(n)
    }

    /// Deletes the events and exposures from before `ts` (unix seconds): the retention window.
    /// Returns how many events went.
    pub fn forget_before(&mut self, ts: i64) -> Result<usize> {
        let n = self.delete("DELETE FROM events WHERE ts < ?1", params![ts])?;
        self.delete("DELETE FROM exposures WHERE ts < ?1", params![ts])?;
        self.checkpoint()?;
        Ok(n)
    }

    /// Runs a delete in one transaction; `secure_delete` (set at open) zeroes the freed
    /// content. Callers then `checkpoint`.
    fn delete(&mut self, sql: &str, args: impl rusqlite::Params) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(sql, args)?;
        tx.commit()?;
        Ok(n)
    }

    /// A truncating checkpoint: empties the WAL, which would otherwise keep copies of deleted
    /// pages.
    fn checkpoint(&self) -> Result<()> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        anyhow::ensure!(
            busy == 0,
            "the event log is busy (another process reads it); the deleted rows are gone from \
             queries but may remain in the write-ahead log until the next checkpoint"
        );
        Ok(())
    }

    pub fn count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
    }

    pub fn get_state(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_state(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])?;
        Ok(())
    }
}

/// A stable id for a CSV row without one, so importing the same file twice stores it once.
pub fn synthetic_id(e: &Event) -> String {
    let key = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{:?}",
        e.user, e.item, e.ts, e.kind, e.value
    );
    format!("csv:{:016x}", edgerec::hash::text_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: Option<&str>, item: &str) -> Event {
        Event {
            id: id.map(str::to_string),
            ..Event::click("u", item, 978_300_760)
        }
    }

    #[test]
    fn dedups_by_id_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("e.db")).unwrap();
        let r = s
            .insert(&[
                ev(Some("a"), "i1"),
                ev(Some("b"), "i2"),
                ev(Some("a"), "i1"),
            ])
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (2, 1));
        let r = s.insert(&[ev(Some("b"), "i2"), ev(None, "i3")]).unwrap();
        assert_eq!((r.stored, r.duplicates), (1, 1));
        let all = s.events_after(0).unwrap();
        assert_eq!(
            all.iter().map(|e| e.1.item.as_str()).collect::<Vec<_>>(),
            ["i1", "i2", "i3"]
        );
        let last = all.last().unwrap().0;
        assert_eq!(s.forget_user("nobody").unwrap(), 0);
        let after = s.events_after(last - 1).unwrap();
        assert_eq!(after.len(), 1);
        s.set_state("k", "v1").unwrap();
        s.set_state("k", "v2").unwrap();
        assert_eq!(s.get_state("k").unwrap().as_deref(), Some("v2"));
        drop(s);
        // Durable: a reopened store has everything.
        assert_eq!(
            Store::open(&dir.path().join("e.db"))
                .unwrap()
                .count()
                .unwrap(),
            3
        );
    }

    #[test]
    fn exposures_are_stored_once_and_forgotten_with_their_visitor() {
        use edgerec_contract::exposures::Shown;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("e.db")).unwrap();
        let list = |id: &str, user: &str, ts: i64| Exposure {
            id: id.into(),
            user: user.into(),
            ts,
            model: "m1".into(),
            arm: Some("a".into()),
            items: vec![Shown {
                item: "i1".into(),
                position: 0,
                score: Some(0.5),
                propensity: 1.0,
            }],
        };
        let r = s
            .insert_exposures(&[
                list("x1", "u", 100),
                list("x2", "w", 200),
                list("x1", "u", 100),
            ])
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (2, 1));
        assert_eq!(
            s.exposures().unwrap(),
            [list("x1", "u", 100), list("x2", "w", 200)]
        );
        let mut click = ev(Some("c"), "i1");
        click.exposure = Some("x1".into());
        s.insert(&[click]).unwrap();
        assert_eq!(
            s.events_after(0).unwrap()[0].1.exposure.as_deref(),
            Some("x1")
        );
        s.forget_user("w").unwrap();
        assert_eq!(s.exposures().unwrap(), [list("x1", "u", 100)]);
        s.forget_before(150).unwrap();
        assert!(s.exposures().unwrap().is_empty());
    }

    #[test]
    fn a_log_from_before_exposures_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE,
                 user TEXT NOT NULL, item TEXT NOT NULL, ts INTEGER NOT NULL, type TEXT NOT NULL,
                 value REAL, geohash TEXT, device TEXT, tz_offset_min INTEGER,
                 received_at INTEGER NOT NULL);
                 INSERT INTO events (event_id, user, item, ts, type, received_at)
                 VALUES ('old', 'u', 'i1', 978300760, 'click', 0);",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let mut click = ev(Some("new"), "i2");
        click.exposure = Some("x9".into());
        s.insert(&[click]).unwrap();
        let all = s.events_after(0).unwrap();
        assert_eq!(
            all.iter()
                .map(|(_, e)| e.exposure.as_deref())
                .collect::<Vec<_>>(),
            [None, Some("x9")]
        );
        drop(s);
        // Opening again does not try to add it twice.
        assert_eq!(Store::open(&path).unwrap().count().unwrap(), 2);
    }

    #[test]
    fn forgetting_a_visitor_leaves_no_copy_in_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let mut s = Store::open(&path).unwrap();
        let marker = "visitor-to-forget-7f3a9c";
        let mut events = Vec::new();
        for i in 0..200 {
            let mut e = ev(Some(&format!("{marker}:{i}")), &format!("i{i}"));
            e.user = marker.into();
            events.push(e);
            let item = if i < 100 { "expired-item" } else { "kept-item" };
            let mut other = ev(Some(&format!("keep:{i}")), item);
            other.ts = 978_300_000 + i;
            events.push(other);
        }
        s.insert(&events).unwrap();
        let on_disk = |path: &std::path::Path| {
            let mut bytes = std::fs::read(path).unwrap_or_default();
            bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        };
        assert!(on_disk(&path), "the marker is stored before");
        assert_eq!(s.forget_user(marker).unwrap(), 200);
        assert_eq!(s.count().unwrap(), 200);
        assert!(!on_disk(&path), "no copy in the database or its WAL");
        // Retention: events before a time go, later ones stay.
        assert_eq!(s.forget_before(978_300_100).unwrap(), 100);
        let left = s.events_after(0).unwrap();
        assert!(left
            .iter()
            .all(|(_, e)| e.ts >= 978_300_100 && e.user == "u"));
    }
}
