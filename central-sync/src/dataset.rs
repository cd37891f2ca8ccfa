//! Events arranged for learning: an item index and each user's interactions in time order
//! (a stable sort, so ties keep file order, as the evaluation protocol requires).

use crate::events::Event;
use std::collections::HashMap;

/// One interaction of a user, with the item as an index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub item: u32,
    pub ts: i64,
    pub kind: edgerec::EventType,
    pub ctx: StepContext,
}

/// The context of an interaction as context-table rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepContext {
    pub time_bin: Option<u8>,
    pub device: Option<u8>,
    pub geo_bucket: Option<u32>,
}

/// Items and per-user sequences.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub items: Vec<String>,
    pub item_index: HashMap<String, u32>,
    pub users: Vec<String>,
    pub sequences: Vec<Vec<Step>>,
}

/// Geo buckets of the context table learned from data.
pub const GEO_BUCKETS: u32 = 256;
/// Geohash precision of the geo context.
pub const GEO_PRECISION: usize = 4;

pub fn step_context(e: &Event) -> StepContext {
    StepContext {
        time_bin: Some(edgerec::context::time_bin(e.ts, e.tz_offset_min.unwrap_or(0)) as u8),
        device: e
            .device
            .as_deref()
            .and_then(|d| edgerec::Device::from_name(d).ok())
            .map(|d| d as u8),
        geo_bucket: e
            .geohash
            .as_deref()
            .and_then(|g| edgerec::context::normalize_geohash(g, GEO_PRECISION))
            .and_then(|g| edgerec::hash::geo_bucket(&g, GEO_BUCKETS)),
    }
}

impl Dataset {
    /// Builds the dataset; items are indexed in order of first appearance, users likewise.
    pub fn from_events(events: &[Event]) -> Dataset {
        let mut d = Dataset::default();
        let mut user_index: HashMap<&str, usize> = HashMap::new();
        for e in events {
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
            d.sequences[u].push(Step {
                item,
                ts: e.ts,
                kind: e.kind.core(),
                ctx: step_context(e),
            });
        }
        for s in &mut d.sequences {
            s.sort_by_key(|x| x.ts); // stable: ties keep file order
        }
        d
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
