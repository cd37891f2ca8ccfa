//! The exposure log joined with the clicks that name it: one row per item shown, with reward 1
//! when the visitor interacted with that item from that list (an event whose `exposure` is the
//! list's id), and the visitor's earlier items as the row's session. These rows are what
//! `central-sync ope` estimates from and `ab report` compares arms on.

use crate::events::Event;
use crate::ope;
use edgerec_contract::exposures::Exposure;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The most earlier items a row's session keeps (the newest ones), as the edge's session does.
pub const SESSION_ITEMS: usize = 50;

/// One row per item of each exposure, in log order. An interaction links to a row only when it
/// names the exposure and the item; exposure ids are random and only the page that was shown
/// the list has its id, so a link cannot be forged for someone else's list.
pub fn join(exposures: &[Exposure], events: &[Event]) -> Vec<ope::Exposure> {
    let clicked: HashSet<(&str, &str)> = events
        .iter()
        .filter_map(|e| Some((e.exposure.as_deref()?, e.item.as_str())))
        .collect();
    // Each visitor's events in time order (stable: ties keep arrival order).
    let mut by_user: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_user.entry(e.user.as_str()).or_default().push(e);
    }
    for list in by_user.values_mut() {
        list.sort_by_key(|e| e.ts);
    }
    let mut rows = Vec::new();
    for x in exposures {
        let before: Vec<&str> = by_user.get(x.user.as_str()).map_or_else(Vec::new, |list| {
            let end = list.partition_point(|e| e.ts < x.ts);
            list[end.saturating_sub(SESSION_ITEMS)..end]
                .iter()
                .map(|e| e.item.as_str())
                .collect()
        });
        let session = before.join(" ");
        for shown in &x.items {
            rows.push(ope::Exposure {
                ts: x.ts,
                user: x.user.clone(),
                session: session.clone(),
                item: shown.item.clone(),
                position: shown.position,
                reward: f64::from(u8::from(
                    clicked.contains(&(x.id.as_str(), shown.item.as_str())),
                )),
                propensity: shown.propensity,
                model: x.model.clone(),
                arm: x.arm.clone().unwrap_or_default(),
                exposure: x.id.clone(),
            });
        }
    }
    rows
}

/// Lists, items shown and clicks for one model and arm.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Served {
    pub model: String,
    pub arm: String,
    pub lists: usize,
    pub items_shown: usize,
    /// Lists with at least one linked interaction.
    pub lists_clicked: usize,
    pub clicks: usize,
}

/// Lists and clicked lists (by exposure id) and counts of one (model, arm).
#[derive(Default)]
struct Tally<'a> {
    lists: HashSet<&'a str>,
    clicked: HashSet<&'a str>,
    items_shown: usize,
    clicks: usize,
}

/// Per (model, arm), in name order.
pub fn summarize(rows: &[ope::Exposure]) -> Vec<Served> {
    let mut by: BTreeMap<(&str, &str), Tally<'_>> = BTreeMap::new();
    for r in rows {
        let t = by.entry((r.model.as_str(), r.arm.as_str())).or_default();
        t.lists.insert(r.exposure.as_str());
        t.items_shown += 1;
        if r.reward > 0.0 {
            t.clicks += 1;
            t.clicked.insert(r.exposure.as_str());
        }
    }
    by.into_iter()
        .map(|((model, arm), t)| Served {
            model: model.to_string(),
            arm: arm.to_string(),
            lists: t.lists.len(),
            items_shown: t.items_shown,
            lists_clicked: t.clicked.len(),
            clicks: t.clicks,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec_contract::exposures::Shown;

    fn event(user: &str, item: &str, ts: i64, exposure: Option<&str>) -> Event {
        Event {
            exposure: exposure.map(str::to_string),
            ..Event::click(user, item, ts)
        }
    }

    fn list(id: &str, user: &str, ts: i64, arm: Option<&str>, items: &[&str]) -> Exposure {
        Exposure {
            id: id.into(),
            user: user.into(),
            ts,
            model: "m1".into(),
            arm: arm.map(str::to_string),
            items: items
                .iter()
                .enumerate()
                .map(|(i, item)| Shown {
                    item: item.to_string(),
                    position: i as u32,
                    score: Some(1.0 - i as f64 / 10.0),
                    propensity: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn clicks_link_to_their_list_and_item_only() {
        let exposures = [
            list("x1", "u1", 100, Some("a"), &["i1", "i2", "i3"]),
            list("x2", "u2", 100, Some("b"), &["i1", "i2"]),
        ];
        let events = [
            event("u1", "i0", 50, None),
            event("u1", "i9", 99, None),
            event("u1", "i2", 105, Some("x1")),
            // Names a list, but an item the list did not show: no reward.
            event("u2", "i3", 106, Some("x2")),
            // Names another visitor's list and item: links by id and item, as the id is only
            // on the page that was shown the list.
            event("u3", "i1", 107, Some("x2")),
        ];
        let rows = join(&exposures, &events);
        assert_eq!(rows.len(), 5);
        let reward: Vec<(&str, &str, f64)> = rows
            .iter()
            .map(|r| (r.exposure.as_str(), r.item.as_str(), r.reward))
            .collect();
        assert_eq!(
            reward,
            [
                ("x1", "i1", 0.0),
                ("x1", "i2", 1.0),
                ("x1", "i3", 0.0),
                ("x2", "i1", 1.0),
                ("x2", "i2", 0.0)
            ]
        );
        // The session is what came strictly before the list, oldest first.
        assert_eq!(rows[0].session, "i0 i9");
        assert_eq!(rows[3].session, "");
        assert_eq!((rows[1].position, rows[1].arm.as_str()), (1, "a"));

        let summary = summarize(&rows);
        assert_eq!(
            summary,
            [
                Served {
                    model: "m1".into(),
                    arm: "a".into(),
                    lists: 1,
                    items_shown: 3,
                    lists_clicked: 1,
                    clicks: 1
                },
                Served {
                    model: "m1".into(),
                    arm: "b".into(),
                    lists: 1,
                    items_shown: 2,
                    lists_clicked: 1,
                    clicks: 1
                },
            ]
        );
    }

    #[test]
    fn long_histories_keep_the_newest_items() {
        let events: Vec<Event> = (0..80)
            .map(|i| event("u", &format!("i{i}"), 10 + i, None))
            .collect();
        let rows = join(&[list("x", "u", 1000, None, &["z"])], &events);
        let session: Vec<&str> = rows[0].session.split(' ').collect();
        assert_eq!(session.len(), SESSION_ITEMS);
        assert_eq!((session[0], session[49]), ("i30", "i79"));
    }
}
