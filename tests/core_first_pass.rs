#![cfg(not(target_arch = "wasm32"))]
//! The two-stage scan (`edgerec::first_pass`): what the writer produces, what the reader
//! rejects, when the engine uses it, and how close its rankings stay to the exact scan's.

use edgerec::first_pass::{self, EMPTY_SLOT};
use edgerec::format::MAX_SHARD_BYTES;
use edgerec::testing::{tiny_golden_model_shards, Synthetic};
use edgerec::writer::ModelSpec;
use edgerec::{Engine, EventType, Request, Session, Shard};
use proptest::prelude::*;

mod common;
use common::{reseal, section, u32_at};

/// Section kinds of format 3 (see `format.rs`).
const CODEBOOK: u32 = 18;
const CENTROIDS: u32 = 20;
const LISTS: u32 = 22;
const SLOTS: u32 = 23;
/// Format 6.
const RUNS: u32 = 30;

/// The frozen golden v5 shard: its first pass names items by slot table.
const V5: &[u8] = include_bytes!("golden/v5-tiny.shard");

/// The golden-sized v3 model, written once per test binary.
fn v3() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| tiny_golden_model_shards().remove(0))
        .clone()
}

/// `good` with the u32 at byte `at` of its section of `kind` replaced by `edit` of it, resealed.
fn edited_u32(good: &[u8], kind: u32, at: usize, edit: impl Fn(u32) -> u32) -> Vec<u8> {
    let mut bytes = good.to_vec();
    let (_, range) = section(&bytes, kind);
    let at = range.start + at;
    let value = edit(u32_at(&bytes, at));
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    reseal(&mut bytes);
    bytes
}

fn rejected(bytes: &[u8], needle: &str) {
    let err = Shard::from_bytes(bytes).unwrap_err().to_string();
    assert!(err.contains(needle), "{err}");
}

/// A catalog large enough for the two-stage scan to be on by default.
fn large() -> Synthetic {
    Synthetic {
        items: 20_000,
        clusters: 64,
        neighbours: 0,
        transitions: false,
        first_pass: true,
        ..Synthetic::default()
    }
}

fn sessions(n_items: usize, count: usize) -> Vec<Session> {
    let mut rng = edgerec::math::SplitMix64::new(9);
    (0..count)
        .map(|_| {
            let mut s = Session::new();
            for t in 0..3 {
                let id = format!("item-{}", rng.below(n_items));
                s.observe(&id, EventType::Click, 1_700_000_000 + t);
            }
            s
        })
        .collect()
}

#[test]
fn the_writer_lays_out_every_item_once_and_the_reader_accepts_it() {
    let shard = Shard::from_bytes(&v3()).unwrap();
    let view = shard.view();
    assert_eq!(view.header.version, edgerec::format::VERSION);
    let fp = view.first_pass.expect("codes written");
    let k = fp.centroid_scales.len();
    assert_eq!(k, first_pass::train::clusters(400));
    assert_eq!(fp.lists.len(), 2 * k);
    // Items in cluster order: runs, not a slot table, and every item in exactly one slot.
    assert!(matches!(fp.members, first_pass::Members::Runs(_)));
    let mut items = Vec::new();
    for (c, list) in fp.lists.chunks_exact(2).enumerate() {
        for r in 0..list[1] as usize {
            for j in 0..first_pass::BLOCK_ITEMS {
                items.extend(fp.members.item(c, list[0] as usize, r, j));
            }
        }
    }
    assert_eq!(
        items,
        (0..400).collect::<Vec<u32>>(),
        "cluster after cluster, in order"
    );
}

#[test]
fn runs_name_the_same_slots_as_the_slot_table_they_replace() {
    // The golden v5 shard's slot table, rewritten as runs, must describe the same slots: the
    // slot table's items are consecutive there too (the v5 writer already grouped them).
    let v5 = Shard::from_bytes(V5).unwrap();
    let fp = v5.view().first_pass.unwrap();
    let first_pass::Members::Slots(slots) = fp.members else {
        panic!("format 5 has a slot table");
    };
    for (c, list) in fp.lists.chunks_exact(2).enumerate() {
        for r in 0..list[1] as usize {
            for j in 0..first_pass::BLOCK_ITEMS {
                let slot = slots[(list[0] as usize + r) * first_pass::BLOCK_ITEMS + j];
                let want = (slot != EMPTY_SLOT).then_some(slot);
                assert_eq!(fp.members.item(c, list[0] as usize, r, j), want);
            }
        }
    }
}

#[test]
fn forged_first_pass_sections_are_rejected() {
    let good = v3();

    // A cluster's run moved by one block: its blocks no longer follow the previous cluster's.
    let bytes = edited_u32(&good, LISTS, 8, |first| first + 1);
    rejected(&bytes, "first-pass cluster 1 starts at block");

    // Runs (format 6): a run that does not start where the previous one ended.
    let bytes = edited_u32(&good, RUNS, 8, |start| start + 1);
    rejected(&bytes, "first-pass cluster 1's items start at");

    // A run longer than its blocks hold.
    let (_, lists) = section(&good, LISTS);
    let blocks = u32_at(&good, lists.start + 4);
    let bytes = edited_u32(&good, RUNS, 4, |_| {
        blocks * first_pass::BLOCK_ITEMS as u32 + 1
    });
    rejected(&bytes, "items in");

    // Runs that stop short of the shard's last item (the last run one item shorter).
    let (_, runs) = section(&good, RUNS);
    let last = runs.len() - 4;
    let short = u32_at(&good, runs.start + last) - 1;
    let bytes = edited_u32(&good, RUNS, last, |_| short);
    // (Unless the shorter run needs one block less: then its blocks do not match it.)
    let needle = if short % first_pass::BLOCK_ITEMS as u32 == 0 {
        "items in"
    } else {
        "first-pass runs cover"
    };
    rejected(&bytes, needle);

    // Both a slot table and runs, or neither: incomplete.
    let mut bytes = good.clone();
    let (entry, _) = section(&bytes, RUNS);
    bytes[entry..entry + 4].copy_from_slice(&SLOTS.to_le_bytes());
    reseal(&mut bytes);
    assert!(Shard::from_bytes(&bytes).is_err());

    // Slot tables (formats 3 to 5), on the frozen v5 shard: one item in two slots (and so
    // another item in none).
    let good = V5.to_vec();
    let mut bytes = good.clone();
    let (_, slots) = section(&bytes, SLOTS);
    let first = u32_at(&bytes, slots.start);
    bytes[slots.start + 4..slots.start + 8].copy_from_slice(&first.to_le_bytes());
    reseal(&mut bytes);
    rejected(&bytes, "twice or out of range");

    // An empty slot before a cluster's items end.
    let mut bytes = good.clone();
    bytes[slots.start..slots.start + 4].copy_from_slice(&EMPTY_SLOT.to_le_bytes());
    reseal(&mut bytes);
    rejected(&bytes, "empty slots before");

    // A centroid element of -128 (the kernels' overflow bound assumes |x| ≤ 127).
    let mut bytes = good.clone();
    let (_, centroids) = section(&bytes, CENTROIDS);
    bytes[centroids.start] = 0x80;
    reseal(&mut bytes);
    rejected(&bytes, "first-pass centroids");

    // A codebook value that is not finite.
    let mut bytes = good.clone();
    let (_, codebook) = section(&bytes, CODEBOOK);
    bytes[codebook.start..codebook.start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    reseal(&mut bytes);
    rejected(&bytes, "first-pass codebook[0] is not finite");

    // One of the six sections turned into an unknown optional one: the rest is incomplete.
    let good = v3();
    let mut bytes = good.clone();
    let (entry, _) = section(&bytes, RUNS);
    bytes[entry..entry + 4].copy_from_slice(&999u32.to_le_bytes());
    bytes[entry + 4..entry + 8].copy_from_slice(&1u32.to_le_bytes());
    reseal(&mut bytes);
    rejected(&bytes, "first-pass sections are incomplete");

    // Relabelled as format 2, which has no such sections.
    let mut bytes = good.clone();
    bytes[12] = 2;
    reseal(&mut bytes);
    rejected(&bytes, "does not exist in format version 2");
}

#[test]
fn the_writer_stores_items_cluster_by_cluster_and_they_rank_as_in_id_order() {
    // Neighbours, transitions, a trend and categories: every item-indexed table is renumbered.
    let syn = Synthetic {
        items: 3_000,
        clusters: 12,
        with_trend: true,
        first_pass: true,
        ..Synthetic::default()
    };
    let spec = syn.spec();
    let ordered = syn.write(&spec, 120_000);
    assert!(ordered.len() > 1, "several shards");
    let unordered = syn.write(
        &ModelSpec {
            first_pass: false,
            ..spec.clone()
        },
        120_000,
    );
    let ordered = Engine::from_bytes(ordered.iter().map(|s| s.as_slice())).unwrap();
    let unordered = Engine::from_bytes(unordered.iter().map(|s| s.as_slice())).unwrap();

    // Each coarse cluster's items, gathered from every shard's lists and slots, are one run of
    // indices, and the runs follow the cluster order.
    let shards: Vec<Shard> = (0..ordered.shard_count())
        .map(|i| Shard::from_bytes(ordered.shard_bytes(i).unwrap()).unwrap())
        .collect();
    let clusters = shards[0].view().first_pass.unwrap().centroid_scales.len();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for shard in &shards {
        let view = shard.view();
        let fp = view.first_pass.unwrap();
        for (k, list) in fp.lists.chunks_exact(2).enumerate() {
            for r in 0..list[1] as usize {
                for j in 0..first_pass::BLOCK_ITEMS {
                    if let Some(local) = fp.members.item(k, list[0] as usize, r, j) {
                        members[k].push(view.header.item_start + local);
                    }
                }
            }
        }
    }
    let mut next = 0;
    for list in members.iter().filter(|l| !l.is_empty()) {
        let want: Vec<u32> = (next..next + list.len() as u32).collect();
        assert_eq!(list, &want, "a cluster's items are the next run of indices");
        next += list.len() as u32;
    }
    assert_eq!(next, syn.items as u32);
    let moved = (0..syn.items as u32).filter(|&i| ordered.item_id(i) != unordered.item_id(i));
    assert!(
        moved.count() > syn.items / 2,
        "the synthetic ids interleave the clusters"
    );

    // The exact scan ranks the same items with the same scores either way: sessions (their
    // neighbours and transitions), the trend at a request time inside the table, a category
    // filter and an excluded id.
    let ranked = |engine: &Engine, session: &Session, request: &Request| -> Vec<(String, f32)> {
        engine
            .recommend(session, request)
            .iter()
            .map(|r| (engine.item_id(r.index).unwrap().to_string(), r.score))
            .collect()
    };
    let in_trend = edgerec::testing::TREND_START + 5 * 86_400;
    for (i, session) in sessions(syn.items, 30).iter().enumerate() {
        let request = Request {
            k: 20,
            context: edgerec::Context {
                ts: Some(in_trend + i as i64 * 3_600),
                ..edgerec::Context::default()
            },
            allow_categories: if i % 3 == 0 { 0b0110 } else { 0 },
            exclude: vec![format!("item-{}", i * 7)],
            ..Request::default()
        };
        let want = ranked(&unordered, session, &request);
        assert_eq!(want.len(), 20);
        assert_eq!(ranked(&ordered, session, &request), want, "session {i}");
    }
    let anonymous = Request {
        k: 20,
        context: edgerec::Context {
            ts: Some(in_trend),
            ..edgerec::Context::default()
        },
        ..Request::default()
    };
    assert_eq!(
        ranked(&ordered, &Session::new(), &anonymous),
        ranked(&unordered, &Session::new(), &anonymous)
    );
}

#[test]
fn the_engine_uses_the_first_pass_only_where_it_pays_and_can() {
    // Small catalogs are scanned exactly even with codes; the switch turns it on for tests.
    let mut small = Engine::from_bytes([v3().as_slice()]).unwrap();
    assert!(!small.set_first_pass(None));
    assert!(small.set_first_pass(Some(8)));
    // Without codes it cannot be turned on.
    let plain = Synthetic::default().shards(MAX_SHARD_BYTES);
    let mut plain = Engine::from_bytes(plain.iter().map(|s| s.as_slice())).unwrap();
    assert!(!plain.set_first_pass(Some(8)));
}

#[test]
fn two_stage_rankings_stay_close_to_the_exact_scan_and_honour_filters() {
    let syn = large();
    // Several shards: sums must compare across them (one codebook for all).
    let shards = syn.shards(400_000);
    assert!(shards.len() > 1);
    let mut engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
    let request = Request {
        k: 10,
        ..Request::default()
    };
    let sessions = sessions(syn.items, 40);
    assert!(!engine.set_first_pass(None));
    let exact: Vec<Vec<u32>> = sessions
        .iter()
        .map(|s| {
            engine
                .recommend(s, &request)
                .iter()
                .map(|r| r.index)
                .collect()
        })
        .collect();
    // On by default at this size.
    let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
    let mut hits = 0;
    for (s, want) in sessions.iter().zip(&exact) {
        let got = engine.recommend(s, &request);
        assert_eq!(got.len(), 10);
        // Scores are the exact scan's scores for the items the first pass kept.
        hits += got.iter().filter(|r| want.contains(&r.index)).count();
    }
    let recall = hits as f64 / (10 * sessions.len()) as f64;
    assert!(recall >= 0.9, "recall@10 against the exact scan: {recall}");

    // A narrow filter (one cluster's category of 64) still fills the list from that category:
    // the first pass leaves filtered items out before it keeps its best.
    let narrow = Request {
        k: 10,
        allow_categories: 1 << 5,
        ..Request::default()
    };
    for s in &sessions[..5] {
        let got = engine.recommend(s, &narrow);
        assert_eq!(got.len(), 10);
        // The writer stores items in cluster order: the synthetic index is in the id.
        let synthetic = |index: u32| {
            let id = engine.item_id(index).unwrap();
            id.strip_prefix("item-").unwrap().parse::<usize>().unwrap()
        };
        assert!(got.iter().all(|r| syn.cluster_of(synthetic(r.index)) == 5));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    // A v3 shard with bytes changed anywhere (checksum repaired): an error, or an engine that
    // ranks through the first pass without panicking.
    #[test]
    fn never_panics_on_mutated_first_pass_shards(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = v3();
        let (_, codebook) = section(&bytes, CODEBOOK);
        let (_, runs) = section(&bytes, RUNS);
        for (at, v) in edits {
            // Half the edits land in the first pass's sections.
            let i = if at % 2 == 0 {
                codebook.start + at / 2 % (runs.end - codebook.start)
            } else {
                at % bytes.len()
            };
            if !(32..40).contains(&i) {
                bytes[i] = v;
            }
        }
        reseal(&mut bytes);
        if let Ok(shard) = Shard::from_bytes(&bytes) {
            if let Ok(mut engine) = Engine::from_shards(vec![shard]) {
                engine.set_first_pass(Some(4));
                let mut s = Session::new();
                s.observe("item-2", EventType::Click, 1);
                let _ = engine.recommend(&s, &Request::default());
            }
        }
    }
}
