//! A visitor's session: their latest events, kept by the visitor (in a token or in the browser),
//! never on a server.
//!
//! Events are stored by item key (`hash::item_key`), not by id, so a session is small and stays
//! valid across model versions. At most [`MAX_SESSION_EVENTS`] events are kept, oldest dropped
//! first, in time order. The byte encoding (`to_bytes`) is at most [`MAX_SESSION_BYTES`]:
//!
//! ```text
//! u8 version (1) | u8 count | varint first_ts | count x (u64 key LE, u8 type, varint ts delta)
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::hash::item_key;

/// Events a session keeps.
pub const MAX_SESSION_EVENTS: usize = 24;
/// Largest valid encoding: 2 header bytes, a 10-byte varint, and 19 bytes per event at most.
pub const MAX_SESSION_BYTES: usize = 2 + 10 + MAX_SESSION_EVENTS * 19;
const SESSION_VERSION: u8 = 1;

/// The kind of an interaction; each has a weight in the model's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    View = 0,
    Click = 1,
    Like = 2,
    Cart = 3,
    Purchase = 4,
    Dwell = 5,
}

impl EventType {
    /// All types, in weight-table order.
    pub const ALL: [EventType; 6] = [
        EventType::View,
        EventType::Click,
        EventType::Like,
        EventType::Cart,
        EventType::Purchase,
        EventType::Dwell,
    ];

    /// The type's name in events and APIs.
    pub fn name(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Click => "click",
            EventType::Like => "like",
            EventType::Cart => "cart",
            EventType::Purchase => "purchase",
            EventType::Dwell => "dwell",
        }
    }

    /// Parses a type name (case-insensitive).
    ///
    /// # Errors
    /// [`ErrorKind::UnknownEventType`] for any other string.
    pub fn from_name(name: &str) -> Result<EventType> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                Error::new(ErrorKind::UnknownEventType {
                    name: name.to_string(),
                })
            })
    }

    fn from_u8(v: u8) -> Option<EventType> {
        EventType::ALL.get(v as usize).copied()
    }
}

/// One session event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// `hash::item_key` of the item id.
    pub key: u64,
    /// What the visitor did.
    pub kind: EventType,
    /// Unix seconds.
    pub ts: u64,
}

/// The latest events of one visitor, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    events: Vec<Event>,
}

impl Session {
    /// An empty session.
    pub fn new() -> Session {
        Session {
            events: Vec::with_capacity(MAX_SESSION_EVENTS),
        }
    }

    /// Records an event on item `id`.
    pub fn observe(&mut self, id: &str, kind: EventType, ts: u64) {
        self.observe_key(item_key(id), kind, ts);
    }

    /// Records an event by item key. Events arriving out of order are placed by time (after
    /// events with the same time); when full, the oldest event is dropped.
    pub fn observe_key(&mut self, key: u64, kind: EventType, ts: u64) {
        let at = self.events.partition_point(|e| e.ts <= ts);
        self.events.insert(at, Event { key, kind, ts });
        if self.events.len() > MAX_SESSION_EVENTS {
            self.events.remove(0);
        }
    }

    /// The events, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the session has an event on this item key.
    pub fn contains_key(&self, key: u64) -> bool {
        self.events.iter().any(|e| e.key == key)
    }

    /// The compact encoding (at most [`MAX_SESSION_BYTES`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 10 + self.events.len() * 11);
        out.push(SESSION_VERSION);
        out.push(self.events.len() as u8);
        let first = self.events.first().map_or(0, |e| e.ts);
        put_varint(&mut out, first);
        let mut prev = first;
        for e in &self.events {
            out.extend_from_slice(&e.key.to_le_bytes());
            out.push(e.kind as u8);
            put_varint(&mut out, e.ts - prev);
            prev = e.ts;
        }
        out
    }

    /// Decodes [`Session::to_bytes`] output, checking everything. Never panics.
    ///
    /// # Errors
    /// [`ErrorKind::BadSession`] for oversized, truncated, trailing, or invalid bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Session> {
        if bytes.len() > MAX_SESSION_BYTES {
            return Err(Error::session(format!(
                "{} bytes, at most {MAX_SESSION_BYTES}",
                bytes.len()
            )));
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte()?;
        if version != SESSION_VERSION {
            return Err(Error::session(format!("unsupported version {version}")));
        }
        let count = r.byte()? as usize;
        if count > MAX_SESSION_EVENTS {
            return Err(Error::session(format!(
                "{count} events, at most {MAX_SESSION_EVENTS}"
            )));
        }
        let mut ts = r.varint()?;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let key = u64::from_le_bytes(r.array::<8>()?);
            let kind = r.byte()?;
            let kind = EventType::from_u8(kind)
                .ok_or_else(|| Error::session(format!("unknown event type code {kind}")))?;
            ts = ts
                .checked_add(r.varint()?)
                .ok_or_else(|| Error::session("timestamp overflow"))?;
            events.push(Event { key, kind, ts });
        }
        if r.at != bytes.len() {
            return Err(Error::session(format!(
                "{} trailing bytes",
                bytes.len() - r.at
            )));
        }
        Ok(Session { events })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| Error::session("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.at.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Error::session("truncated"))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Error::session("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::session("varint too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_latest_events_in_time_order() {
        let mut s = Session::new();
        for i in 0..30u64 {
            s.observe(&format!("item{i}"), EventType::Click, 1000 + i);
        }
        assert_eq!(s.len(), MAX_SESSION_EVENTS);
        assert_eq!(s.events()[0].key, item_key("item6"));
        s.observe("late", EventType::View, 1010);
        assert!(s.events().windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(s.contains_key(item_key("late")));
    }

    #[test]
    fn full_session_fits_a_few_hundred_bytes() {
        let mut s = Session::new();
        for i in 0..MAX_SESSION_EVENTS as u64 {
            s.observe(&i.to_string(), EventType::Purchase, 1_700_000_000 + i * 600);
        }
        let bytes = s.to_bytes();
        assert!(bytes.len() <= 300, "{} bytes", bytes.len());
        assert_eq!(Session::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn rejects_bad_bytes_with_reasons() {
        let mut s = Session::new();
        s.observe("a", EventType::Like, 5);
        let good = s.to_bytes();
        let err = |b: &[u8]| Session::from_bytes(b).unwrap_err().to_string();
        assert!(err(&[]).contains("truncated"));
        assert!(err(&[2, 0, 0]).contains("version"));
        assert!(err(&[1, 25, 0]).contains("at most"));
        assert!(err(&good[..good.len() - 1]).contains("truncated"));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(err(&trailing).contains("trailing"));
        let mut bad_type = good.clone();
        bad_type[2 + 1 + 8] = 9;
        assert!(err(&bad_type).contains("event type"));
        assert!(err(&vec![1; MAX_SESSION_BYTES + 1]).contains("at most"));
        assert!(
            err(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .contains("varint")
        );
    }

    proptest! {
        #[test]
        fn round_trips(events in proptest::collection::vec((any::<u64>(), 0u8..6, 0u64..=u64::MAX / 4), 0..40)) {
            let mut s = Session::new();
            for (key, kind, ts) in events {
                s.observe_key(key, EventType::from_u8(kind).unwrap(), ts);
            }
            let bytes = s.to_bytes();
            prop_assert!(bytes.len() <= MAX_SESSION_BYTES);
            prop_assert_eq!(Session::from_bytes(&bytes).unwrap(), s);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Session::from_bytes(&bytes);
        }
    }
}
