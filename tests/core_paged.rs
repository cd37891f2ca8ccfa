#![cfg(not(target_arch = "wasm32"))]
//! Paged models (format 7, `edgerec::format::ShardRole`): index shards loaded whole, pages
//! loaded as requests need them. A paged model must rank exactly as the same model in whole
//! shards, ask only for the pages a request reads, and refuse pages that are not its own.

use edgerec::engine::MissingPages;
use edgerec::testing::{Synthetic, TREND_START};
use edgerec::writer::{write_paged_model, PagedModel};
use edgerec::{Context, Engine, EventType, Recommendation, Request, Session, Shard};

mod common;
use common::{reseal, section};

const MAX_SHARD: u64 = 120_000;
const PAGE_ITEMS: usize = 200;

/// A model with every item-indexed table (neighbours, transitions, trend, categories), large
/// enough for several index shards and many pages.
fn synthetic() -> Synthetic {
    Synthetic {
        items: 3_000,
        clusters: 12,
        with_trend: true,
        first_pass: true,
        ..Synthetic::default()
    }
}

fn model_id(syn: &Synthetic) -> u64 {
    syn.seed ^ 0xed9e_4ec0
}

fn written() -> (Vec<Vec<u8>>, PagedModel) {
    static BYTES: std::sync::OnceLock<(Vec<Vec<u8>>, PagedModel)> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let syn = synthetic();
            let spec = syn.spec();
            let paged = write_paged_model(&spec, model_id(&syn), MAX_SHARD, PAGE_ITEMS).unwrap();
            (syn.write(&spec, MAX_SHARD), paged)
        })
        .clone()
}

fn engines() -> (Engine, Engine, Vec<Shard>) {
    let (whole, paged) = written();
    let mut whole = Engine::from_bytes(whole.iter().map(|s| s.as_slice())).unwrap();
    let index = Engine::from_bytes(paged.index.iter().map(|s| s.as_slice())).unwrap();
    // Below `first_pass::MIN_ITEMS` the pass is off by default for whole models; a paged one
    // ranks through it at any size (the exact scan would read every page).
    assert_eq!(whole.first_pass_keep(), None);
    assert_eq!(index.first_pass_keep(), Some(256));
    assert!(whole.set_first_pass(Some(256)));
    let pages = paged
        .pages
        .iter()
        .map(|p| Shard::from_bytes(p).unwrap())
        .collect();
    (whole, index, pages)
}

fn sessions(n_items: usize, count: usize) -> Vec<Session> {
    let mut rng = edgerec::math::SplitMix64::new(5);
    (0..count)
        .map(|i| {
            let mut s = Session::new();
            for t in 0..(i % 6) as u64 {
                let id = format!("item-{}", rng.below(n_items));
                s.observe(&id, EventType::Click, TREND_START as u64 + 5 * 86_400 + t);
            }
            s
        })
        .collect()
}

fn request(i: usize) -> Request {
    Request {
        k: 20,
        context: Context {
            ts: Some(TREND_START + 5 * 86_400 + i as i64 * 3_600),
            ..Context::default()
        },
        allow_categories: if i % 3 == 0 { 0b0110 } else { 0 },
        exclude: vec![format!("item-{}", i * 7)],
        diversity: if i % 4 == 1 { 0.3 } else { 0.0 },
        ..Request::default()
    }
}

fn named(engine: &Engine, ranked: &[Recommendation]) -> Vec<(String, f32)> {
    ranked
        .iter()
        .map(|r| (engine.item_id(r.index).unwrap().to_string(), r.score))
        .collect()
}

/// Asks until the engine has every page the request needs; returns the ranking and the
/// number of times it asked.
fn rank_paged(
    engine: &mut Engine,
    pages: &[Shard],
    session: &Session,
    request: &Request,
) -> (Vec<Recommendation>, usize) {
    for asked in 1..=3 {
        match engine.try_recommend(session, request) {
            Ok(ranked) => return (ranked, asked),
            Err(MissingPages(missing)) => {
                assert!(!missing.is_empty());
                for p in missing {
                    assert!(!engine.loaded_pages().contains(&p), "page {p} asked twice");
                    engine.add_page(pages[p as usize].clone()).unwrap();
                }
            }
        }
    }
    panic!("a request needed more than two rounds of pages");
}

#[test]
fn a_paged_model_ranks_as_the_whole_one_and_reads_a_few_pages() {
    let (whole, mut paged, pages) = engines();
    assert!(paged.is_paged() && !whole.is_paged());
    assert_eq!(paged.page_count(), pages.len());
    assert!(pages.len() >= 15, "{} pages", pages.len());
    let mut loaded_per_request = Vec::new();
    for (i, session) in sessions(3_000, 40).iter().enumerate() {
        // Every fourth request starts from an empty cache, the others keep what earlier ones
        // loaded (a cache that evicts, and one that does not).
        if i % 4 == 0 {
            for p in paged.loaded_pages() {
                assert!(paged.drop_page(p));
            }
        }
        let before = paged.loaded_pages().len();
        let request = request(i);
        let (ranked, asked) = rank_paged(&mut paged, &pages, session, &request);
        let want = whole.recommend(session, &request);
        assert_eq!(want.len(), 20);
        assert_eq!(named(&paged, &ranked), named(&whole, &want), "request {i}");
        assert!(asked <= 3);
        if i % 4 == 0 {
            loaded_per_request.push(paged.loaded_pages().len() - before);
        }
    }
    // Here the trend boosts items of every cluster, so a request from an empty cache reads
    // every page: the trend's reach is what the next test leaves out.
    assert!(loaded_per_request.iter().all(|&n| n > 0));
}

#[test]
fn without_the_trend_a_request_reads_few_pages() {
    // A catalog where the 256 items the first pass keeps are a small part of the whole.
    let syn = Synthetic {
        items: 20_000,
        clusters: 64,
        with_trend: false,
        ..synthetic()
    };
    let paged = write_paged_model(&syn.spec(), model_id(&syn), 4 * MAX_SHARD, 500).unwrap();
    let mut engine = Engine::from_bytes(paged.index.iter().map(|s| s.as_slice())).unwrap();
    let whole = syn.shards(4 * MAX_SHARD);
    let whole = Engine::from_bytes(whole.iter().map(|s| s.as_slice())).unwrap();
    assert!(engine.first_pass_keep().is_some() && whole.first_pass_keep().is_some());
    let pages: Vec<Shard> = paged
        .pages
        .iter()
        .map(|p| Shard::from_bytes(p).unwrap())
        .collect();
    let mut read = Vec::new();
    for (i, session) in sessions(syn.items, 12).iter().enumerate() {
        for p in engine.loaded_pages() {
            engine.drop_page(p);
        }
        let request = Request {
            k: 10,
            ..Request::default()
        };
        let (ranked, _) = rank_paged(&mut engine, &pages, session, &request);
        assert_eq!(
            named(&engine, &ranked),
            named(&whole, &whole.recommend(session, &request)),
            "request {i}"
        );
        read.push(engine.loaded_pages().len());
    }
    eprintln!("pages read per request: {read:?} of {}", pages.len());
    assert!(
        read.iter().all(|&n| n * 3 <= pages.len()),
        "pages read per request: {read:?} of {}",
        pages.len()
    );
}

#[test]
fn the_exact_scan_of_a_paged_model_needs_every_page() {
    let (mut whole, mut paged, pages) = engines();
    whole.set_first_pass(None);
    paged.set_first_pass(None);
    let session = &sessions(3_000, 3)[2];
    let request = request(2);
    let Err(MissingPages(first)) = paged.try_recommend(session, &request) else {
        panic!("nothing loaded yet");
    };
    assert!(first.len() < pages.len(), "the session's pages first");
    let (ranked, _) = rank_paged(&mut paged, &pages, session, &request);
    assert_eq!(paged.loaded_pages().len(), pages.len());
    assert_eq!(
        named(&paged, &ranked),
        named(&whole, &whole.recommend(session, &request))
    );
}

#[test]
fn pages_are_placed_by_cluster_and_cover_the_items_once() {
    let (_, paged) = written();
    let mut next = 0u32;
    for (p, bytes) in paged.pages.iter().enumerate() {
        let page = Shard::from_bytes(bytes).unwrap();
        let h = page.header();
        assert_eq!(h.role, edgerec::format::ShardRole::Page);
        assert_eq!((h.shard_index as usize, h.item_start), (p, next));
        assert!(h.item_count as usize <= PAGE_ITEMS);
        next += h.item_count;
    }
    assert_eq!(next, 3_000);
    for bytes in &paged.index {
        let shard = Shard::from_bytes(bytes).unwrap();
        let view = shard.view();
        assert_eq!(view.header.role, edgerec::format::ShardRole::Index);
        assert!(view.ids.is_empty() && view.bias.is_empty());
        assert!(view.first_pass.is_some() && view.categories.is_some());
    }
}

#[test]
fn an_engine_refuses_pages_that_are_not_its_own() {
    let (mut whole, mut paged, pages) = engines();
    let (whole_bytes, paged_bytes) = written();
    // Pages are not a model; index and whole shards do not mix.
    let err = Engine::from_bytes(paged_bytes.pages.iter().map(|s| s.as_slice())).unwrap_err();
    assert!(err.to_string().contains("add_page"), "{err}");
    let mixed = [paged_bytes.index[0].as_slice(), whole_bytes[1].as_slice()];
    assert!(Engine::from_bytes(mixed).is_err());
    // A whole model takes no pages; a paged one no shard that is not a page.
    let err = whole.add_page(pages[0].clone()).unwrap_err();
    assert!(err.to_string().contains("not paged"), "{err}");
    let index0 = Shard::from_bytes(&paged_bytes.index[0]).unwrap();
    assert!(paged.add_page(index0).is_err());
    // Another model's page.
    let syn = Synthetic {
        seed: 2,
        ..synthetic()
    };
    let other = write_paged_model(&syn.spec(), model_id(&syn), MAX_SHARD, PAGE_ITEMS).unwrap();
    let err = paged
        .add_page(Shard::from_bytes(&other.pages[0]).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("belongs to model"), "{err}");
    // A page whose number names other items than it holds.
    let mut moved = paged_bytes.pages[1].clone();
    moved[48..52].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut moved);
    let err = paged
        .add_page(Shard::from_bytes(&moved).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("page table"), "{err}");
    // Pages of the same model id whose ids are not the ones the index keys: every id renamed
    // (the sample finds it), and two ids of one page swapped (lookups find it: the swapped
    // ids are unknown while that page is in, never another item's).
    let mut spec = synthetic().spec();
    spec.ids.iter_mut().for_each(|id| id.insert_str(0, "x-"));
    let renamed = write_paged_model(&spec, model_id(&synthetic()), MAX_SHARD, PAGE_ITEMS).unwrap();
    let err = paged
        .add_page(Shard::from_bytes(&renamed.pages[3]).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("does not hash"), "{err}");
    assert!(paged.loaded_pages().is_empty(), "nothing refused was kept");
    // Two items of page 2 that the load's sample does not check (local 1 and 2).
    let page2 = Shard::from_bytes(&paged_bytes.pages[2]).unwrap();
    let (one, two) = (
        page2.view().ids.get(1).to_string(),
        page2.view().ids.get(2).to_string(),
    );
    let mut spec = synthetic().spec();
    let at = |id: &str| spec.ids.iter().position(|x| x == id).unwrap();
    let (a, b) = (at(&one), at(&two));
    spec.ids.swap(a, b);
    let swapped = write_paged_model(&spec, model_id(&synthetic()), MAX_SHARD, PAGE_ITEMS).unwrap();
    let before = paged.find(&one).expect("the index keys it");
    paged
        .add_page(Shard::from_bytes(&swapped.pages[2]).unwrap())
        .expect("the sample does not reach these two");
    assert_eq!(paged.find(&one), None, "unknown while that page is in");
    assert_eq!(paged.find(&two), None);
    assert!(paged.drop_page(2));
    assert_eq!(paged.find(&one), Some(before));
    paged.add_page(page2).unwrap();
    assert_eq!(paged.item_id(before), Some(one.as_str()));
    assert!(paged.drop_page(2));
    assert!(paged.loaded_pages().is_empty(), "nothing refused was kept");
}

#[test]
fn the_reader_holds_each_role_to_its_sections() {
    let (whole, paged) = written();
    let with_flags = |bytes: &[u8], flags: u32, version: Option<u16>| -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[20..24].copy_from_slice(&flags.to_le_bytes());
        if let Some(v) = version {
            b[12..14].copy_from_slice(&v.to_le_bytes());
        }
        reseal(&mut b);
        b
    };
    let rejected = |bytes: &[u8], needle: &str| {
        let err = Shard::from_bytes(bytes).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    };
    // A whole shard called an index or a page holds sections those do not.
    rejected(
        &with_flags(&whole[1], 1, None),
        "does not belong in a Index shard",
    );
    rejected(
        &with_flags(&whole[1], 2, None),
        "does not belong in a Page shard",
    );
    // A page called an index lacks its keys; an index called a page holds them.
    rejected(&with_flags(&paged.pages[1], 1, None), "does not belong");
    rejected(&with_flags(&paged.index[1], 2, None), "does not belong");
    // Roles are version 7's: before, the flags must be zero; unknown flags are refused.
    rejected(&with_flags(&whole[1], 3, None), "name no shard role");
    rejected(
        &with_flags(&paged.pages[1], 2, Some(6)),
        "name no shard role",
    );
}

#[test]
fn a_forged_page_table_is_refused() {
    let (_, paged) = written();
    let bytes = &paged.index[0];
    let (_, range) = section(bytes, 43);
    let count = (range.end - range.start) / 4;
    for (at, value, needle) in [
        (0, 1, "page starts"),
        (count - 1, 2_999, "page starts"),
        (2, 0, "page starts"),
    ] {
        let mut forged = bytes.clone();
        let pos = range.start + 4 * at;
        forged[pos..pos + 4].copy_from_slice(&(value as u32).to_le_bytes());
        reseal(&mut forged);
        let err = Shard::from_bytes(&forged).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}
