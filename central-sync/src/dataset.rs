//! Events arranged for learning: an item index and each user's interactions in time order
//! (a stable sort, so ties keep file order, as the evaluation protocol requires).

use crate::events::Event;
use edgerec::context::ContextRows;
use edgerec::{Context, Device};
use std::collections::HashMap;

/// One interaction of a user, with the item as an index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub item: u32,
    pub ts: i64,
    pub kind: edgerec::EventType,
    /// The context-table rows of the interaction, mapped by the core exactly as the edge maps
    /// a request (`Context::rows`).
    pub ctx: ContextRows,
    /// The interaction's geohash (index into `Dataset::geohashes`), to rebuild its request.
    pub geohash: Option<u32>,
    pub tz_offset_min: i16,
    /// Where the step came from: its index in the events the dataset was built from.
    pub event: u32,
}

/// Items and per-user sequences.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub items: Vec<String>,
    pub item_index: HashMap<String, u32>,
    pub users: Vec<String>,
    pub sequences: Vec<Vec<Step>>,
    /// Distinct geohashes of the events.
    pub geohashes: Vec<String>,
}

/// Geo buckets of the context table learned from data.
pub const GEO_BUCKETS: u32 = 256;
/// Geohash precision of the geo context.
pub const GEO_PRECISION: usize = 4;

/// The request an event stands for: what the edge would have seen.
pub fn event_context(e: &Event) -> Context {
    Context {
        geohash: e.geohash.clone(),
        device: e
            .device
            .as_deref()
            .and_then(|d| edgerec::Device::from_name(d).ok()),
        ts: Some(e.ts),
        tz_offset_min: e.tz_offset_min.unwrap_or(0),
    }
}

impl Dataset {
    /// Builds the dataset; items are indexed in order of first appearance, users likewise.
    /// Events from automated clients (device `bot`, which the edge sets from the User-Agent)
    /// stay in the log but are not learned from.
    pub fn from_events(events: &[Event]) -> Dataset {
        let mut d = Dataset::default();
        let mut user_index: HashMap<&str, usize> = HashMap::new();
        let mut geohash_index: HashMap<&str, u32> = HashMap::new();
        let bot = Device::Bot.name();
        for (index, e) in events.iter().enumerate() {
            if e.device.as_deref() == Some(bot) {
                continue;
            }
            let item = match d.item_index.get(&e.item) {
                Some(&i) => i,
                None => {
                    let i = d.items.len() as u32;
                    d.items.push(e.item.clone());
                    d.item_index.insert(e.item.clone(), i);
                    i
                }
            };
            let u = *user_index.entry(e.user.as_str()).or_insert_with(|| {
                d.users.push(e.user.clone());
                d.sequences.push(Vec::new());
                d.users.len() - 1
            });
            let geohash = e.geohash.as_deref().map(|g| {
                *geohash_index.entry(g).or_insert_with(|| {
                    d.geohashes.push(g.to_string());
                    d.geohashes.len() as u32 - 1
                })
            });
            d.sequences[u].push(Step {
                item,
                ts: e.ts,
                kind: e.kind.core(),
                ctx: event_context(e).rows(GEO_PRECISION, GEO_BUCKETS),
                geohash,
                // Validated to ±840 minutes (the contract's event rules).
                tz_offset_min: e.tz_offset_min.unwrap_or(0) as i16,
                event: index as u32,
            });
        }
        for s in &mut d.sequences {
            s.sort_by_key(|x| x.ts); // stable: ties keep file order
        }
        d
    }

    /// The request a step stands for, as the edge would see it.
    pub fn context(&self, step: &Step) -> Context {
        Context {
            geohash: step
                .geohash
                .and_then(|i| self.geohashes.get(i as usize).cloned()),
            device: step
                .ctx
                .device
                .and_then(|i| Device::ALL.get(usize::from(i)).copied()),
            ts: Some(step.ts),
            tz_offset_min: i32::from(step.tz_offset_min),
        }
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The `n` items with the most interactions, most first (ties by first appearance): the
    /// edge's fallback list.
    pub fn most_popular(&self, n: usize) -> Vec<String> {
        let pop = self.popularity(&self.sequences);
        let mut order: Vec<usize> = (0..pop.len()).collect();
        order.sort_by(|&a, &b| pop[b].total_cmp(&pop[a]).then(a.cmp(&b)));
        order
            .iter()
            .take(n)
            .map(|&i| self.items[i].clone())
            .collect()
    }

    /// Interaction count per item.
    pub fn popularity(&self, sequences: &[Vec<Step>]) -> Vec<f32> {
        let mut pop = vec![0f32; self.items.len()];
        for s in sequences {
            for x in s {
                pop[x.item as usize] += 1.0;
            }
        }
        pop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Defaults, RawEvent};

    fn event(user: &str, item: &str, ts: i64, geohash: &str, device: &str, tz: i32) -> Event {
        RawEvent {
            user: Some(user.into()),
            item: Some(item.into()),
            ts: Some(ts.into()),
            geohash: Some(geohash.into()),
            device: Some(device.into()),
            tz_offset_min: Some(tz.into()),
            ..RawEvent::default()
        }
        .validate(Defaults::default())
        .unwrap()
    }

    #[test]
    fn a_step_rebuilds_the_request_the_edge_would_see() {
        // Evaluation ranks each target with the request it stands for: its geohash, device and
        // timezone, not a context with those left out.
        let events = [
            event("u1", "a", 1_700_000_000, "9q8yyk", "tablet", -480),
            event("u1", "b", 1_700_000_100, "u4pru", "mobile", 60),
        ];
        let d = Dataset::from_events(&events);
        for (step, e) in d.sequences[0].iter().zip(&events) {
            let ctx = d.context(step);
            assert_eq!(ctx, event_context(e));
            assert_eq!(step.ctx, ctx.rows(GEO_PRECISION, GEO_BUCKETS));
            assert!(step.ctx.geo.is_some() && step.ctx.device.is_some());
        }
        assert_eq!(d.context(&d.sequences[0][0]).tz_offset_min, -480);
    }

    #[test]
    fn bot_events_are_not_learned_from() {
        let events = [
            event("u1", "a", 1_700_000_000, "9q8yy", "mobile", 0),
            event("u2", "b", 1_700_000_100, "9q8yy", "bot", 0),
        ];
        let d = Dataset::from_events(&events);
        assert_eq!(
            (d.items.as_slice(), d.users.as_slice()),
            (&["a".to_string()][..], &["u1".to_string()][..])
        );
    }
}
