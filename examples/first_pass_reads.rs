//! How a request's exact scoring spreads over a large catalog: for the bench's 1M model and its
//! sessions, the items the two-stage scan's first pass keeps for rescoring, and the boosted items
//! scored beside them, counted by coarse cluster and by 32-item block of codes. The writer stores
//! items cluster by cluster, so this is what a model whose rows are fetched on demand (issue 14,
//! item 3) would read per request.
//!
//! Usage: `cargo run --release --example first_pass_reads --features writer -- target/bench`
//! (the directory `make bench` writes: `m1m/shard-*.bin` and `m100k/sessions.json`).

use edgerec::{first_pass, Context, Device, Engine, EventType, Request, Session, Shard};
use std::collections::HashSet;
use std::path::Path;

/// The `"items": [...]` lists of the bench's sessions file (a flat JSON array of objects whose
/// item ids contain no quotes); the core has no JSON parser and this example needs no other.
fn session_items(json: &str) -> Vec<Vec<String>> {
    json.split("\"items\":[")
        .skip(1)
        .map(|rest| {
            let list = &rest[..rest.find(']').unwrap_or(rest.len())];
            list.split(',')
                .map(|id| id.trim().trim_matches('"').to_string())
                .filter(|id| !id.is_empty())
                .collect()
        })
        .collect()
}

fn percentile(values: &[usize], p: f64) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/bench".into());
    let dir = Path::new(&dir);
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("m1m"))
        .expect("reading the 1M model's directory")
        .map(|e| e.expect("listing the 1M model").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    let shards: Vec<Shard> = paths
        .iter()
        .map(|p| {
            Shard::from_bytes(&std::fs::read(p).expect("reading a shard")).expect("a valid shard")
        })
        .collect();
    let engine = Engine::from_shards(shards.clone()).expect("one model");
    let total = engine.item_count() as usize;
    let stride = engine.meta().row_stride() as usize;

    // Each item's coarse cluster and block of codes, from the shards' lists and slots (a block
    // holds one cluster's items; a cluster's blocks are numbered per shard).
    let mut cluster_of = vec![u32::MAX; total];
    let mut block_of = vec![u64::MAX; total];
    let mut cluster_sizes: Vec<usize> = Vec::new();
    for (s, shard) in shards.iter().enumerate() {
        let view = shard.view();
        let start = view.header.item_start;
        let fp = view.first_pass.expect("the 1M model has a first pass");
        cluster_sizes.resize(fp.centroid_scales.len(), 0);
        for (k, list) in fp.lists.chunks_exact(2).enumerate() {
            let first = list[0] as usize;
            for r in 0..list[1] as usize {
                for j in 0..first_pass::BLOCK_ITEMS {
                    let Some(local) = fp.members.item(k, first, r, j) else {
                        continue;
                    };
                    let item = (start + local) as usize;
                    cluster_of[item] = k as u32;
                    block_of[item] = ((s as u64) << 32) | (first + r) as u64;
                    cluster_sizes[k] += 1;
                }
            }
        }
    }
    assert!(
        cluster_of.iter().all(|&k| k != u32::MAX),
        "every item is in a cluster"
    );

    let sessions =
        session_items(&std::fs::read_to_string(dir.join("m100k/sessions.json")).expect("sessions"));
    let (mut kept, mut clusters, mut blocks, mut boosted, mut boost_clusters) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut cluster_bytes = vec![];
    for items in &sessions {
        let mut session = Session::new();
        for (t, id) in items.iter().enumerate() {
            session.observe(id, EventType::Click, 1_700_000_000 + 60 * t as u64);
        }
        let request = Request {
            k: 10,
            context: Context {
                geohash: Some("9q8yy".into()),
                device: Some(Device::Mobile),
                ts: Some(1_700_000_400),
                tz_offset_min: -480,
            },
            ..Request::default()
        };
        let (candidates, boosts) = engine
            .first_pass_reads(&session, &request)
            .expect("the two-stage scan is on at 1M");
        let c: HashSet<u32> = candidates.iter().map(|&i| cluster_of[i as usize]).collect();
        let b: HashSet<u64> = candidates.iter().map(|&i| block_of[i as usize]).collect();
        let bc: HashSet<u32> = boosts.iter().map(|&i| cluster_of[i as usize]).collect();
        kept.push(candidates.len());
        cluster_bytes.push(
            c.iter()
                .map(|&k| cluster_sizes[k as usize] * stride)
                .sum::<usize>(),
        );
        clusters.push(c.len());
        blocks.push(b.len());
        boosted.push(boosts.len());
        boost_clusters.push(bc.len());
    }
    let row = |name: &str, v: &[usize]| {
        println!(
            "[first-pass-reads] {name}: median {}, p90 {}, max {}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            v.iter().max().unwrap_or(&0)
        );
    };
    println!(
        "[first-pass-reads] {} items, {} coarse clusters (median {} items), row stride {stride} B, {} sessions",
        total,
        cluster_sizes.len(),
        percentile(&cluster_sizes, 0.5),
        sessions.len()
    );
    row("items kept by the first pass", &kept);
    row("distinct clusters among them", &clusters);
    row("distinct 32-item blocks among them", &blocks);
    row("int8 row bytes of those whole clusters", &cluster_bytes);
    row("boosted items scored beside them", &boosted);
    row("distinct clusters among the boosted items", &boost_clusters);
}
