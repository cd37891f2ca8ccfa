//! The event log: an embedded SQLite database in WAL mode with synchronous=FULL, so an
//! acknowledged event survives a crash. Events with an id are stored once (a retried batch is
//! harmless); `seq` orders events by arrival for incremental training. A small key/value table
//! keeps sync state (last synced seq, model version, evaluation figures) for `/metrics`.

use crate::events::{Event, EventKind};
use anyhow::{Context as _, Result};
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
            CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .context("creating the event log schema")?;
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
                "INSERT OR IGNORE INTO events (event_id, user, item, ts, type, value, geohash, device, tz_offset_min, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                    now
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
            "SELECT seq, event_id, user, item, ts, type, value, geohash, device, tz_offset_min FROM events WHERE seq > ?1 ORDER BY seq",
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
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes every event of `user` (a visitor's erasure request) and rebuilds the file, so no
    /// copy survives in free space (including space freed before `secure_delete` was on, by an
    /// older release). Returns how many events went.
    pub fn forget_user(&mut self, user: &str) -> Result<usize> {
        let n = self.delete("DELETE FROM events WHERE user = ?1", params![user])?;
        if n > 0 {
            self.conn.execute_batch("VACUUM")?;
        }
        self.checkpoint()?;
        Ok(n)
    }

    /// Deletes the events that happened before `ts` (unix seconds): the retention window.
    pub fn forget_before(&mut self, ts: i64) -> Result<usize> {
        let n = self.delete("DELETE FROM events WHERE ts < ?1", params![ts])?;
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
            user: "u".into(),
            item: item.into(),
            ts: 978_300_760,
            kind: EventKind::Click,
            value: None,
            geohash: None,
            device: None,
            tz_offset_min: None,
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
