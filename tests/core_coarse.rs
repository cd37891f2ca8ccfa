#![cfg(not(target_arch = "wasm32"))]
//! The certified coarse pass (`edgerec::coarse`) never changes a ranking: the same items, scores
//! and order with it on and off, on random models (several shards, ties, filters, diversity,
//! exploration). Natively the coarse kernel is the scalar reference; the wasm relaxed-SIMD
//! build runs the same comparison in `tests/wasm.rs` and in the JS parity tests.

use edgerec::testing::Synthetic;
use edgerec::writer::write_model;
use edgerec::{Context, Device, Engine, EventType, Exploration, Request, Session};
use proptest::prelude::*;

fn engines(shards: &[Vec<u8>]) -> (Engine, Engine) {
    let exact = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
    let mut coarse = exact.clone();
    coarse.set_coarse_pass(true);
    let mut exact = exact;
    exact.set_coarse_pass(false);
    (exact, coarse)
}

fn session(clicks: &[usize], items: usize) -> Session {
    let mut s = Session::new();
    for (t, &i) in clicks.iter().enumerate() {
        s.observe(
            &format!("item-{}", i % items),
            EventType::Click,
            1_700_000_000 + t as u64,
        );
    }
    s
}

fn request(k: usize, mode: u8, seed: u64) -> Request {
    Request {
        k,
        context: Context {
            device: Some(Device::Desktop),
            geohash: Some("u4pru".into()),
            ts: Some(1_700_100_000),
            tz_offset_min: 0,
        },
        allow_categories: if mode == 1 { 0b101 } else { 0 },
        deny_categories: if mode == 2 { 0b10 } else { 0 },
        diversity: if mode == 3 { 0.4 } else { 0.0 },
        exploration: if mode == 4 {
            Exploration::Softmax {
                temperature: 0.5,
                seed,
            }
        } else {
            Exploration::Off
        },
        exclude: vec!["item-1".into(), "item-5".into()],
        ..Request::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn coarse_pass_never_changes_a_ranking(
        items in 1usize..2500,
        dim in prop::sample::select(vec![8usize, 16, 24, 32, 64, 100, 128, 200]),
        clusters in 1usize..9,
        seed in any::<u64>(),
        shard_kib in prop::sample::select(vec![16u64, 64, 4096]),
        clicks in proptest::collection::vec(0usize..5000, 0..7),
        k in 1usize..40,
        mode in 0u8..5,
        duplicate_rows in any::<bool>(),
    ) {
        let syn = Synthetic { items, dim, clusters, seed, with_trend: seed % 2 == 0, ..Synthetic::default() };
        let mut spec = syn.spec();
        if duplicate_rows {
            // Every item of a cluster gets the same vector: ties everywhere.
            for i in 0..items {
                let c = i % clusters;
                let (src, dst) = (c * dim, i * dim);
                if src != dst {
                    spec.vectors.copy_within(src..src + dim, dst);
                }
            }
        }
        let Ok(shards) = write_model(&spec, seed, shard_kib * 1024) else {
            return Ok(());
        };
        let (exact, coarse) = engines(&shards);
        let s = session(&clicks, items);
        let r = request(k, mode, seed);
        prop_assert_eq!(exact.recommend(&s, &r), coarse.recommend(&s, &r));
    }
}

#[test]
fn coarse_pass_is_exact_on_the_clustered_bench_shape() {
    // A larger model in several shards, 64 dims, as in the benches: the top 10 for many sessions.
    let syn = Synthetic {
        items: 20_000,
        dim: 64,
        clusters: 50,
        with_trend: true,
        ..Synthetic::default()
    };
    let (exact, coarse) = engines(&syn.shards(512 * 1024));
    for i in 0..200usize {
        let clicks: Vec<usize> = (0..i % 6)
            .map(|t| (i * 7919 + t * 104_729) % 20_000)
            .collect();
        let s = session(&clicks, 20_000);
        let r = request(10, (i % 5) as u8, i as u64);
        assert_eq!(
            exact.recommend(&s, &r),
            coarse.recommend(&s, &r),
            "session {i}"
        );
    }
}
