//! Native benchmarks of the scoring core (criterion). `scripts/bench.sh` runs these, then the
//! Node benchmark with the peers, and prints the ratios from criterion's estimates.
//!
//! Cases (the same as the Node benchmark): one query with a 5-item session and full context over
//! 100,000 x 64 int8 items, top-10; the same over 1,000,000 x 64 in several shards; the scalar
//! reference kernel against the dispatching (SIMD) kernel over 100,000 rows; session update plus
//! query vector; loading (validating) a 100k x 64 model.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgerec::format::MAX_SHARD_BYTES;
use edgerec::kernels::{dot_i8_block, scalar};
use edgerec::testing::Synthetic;
use edgerec::{Context, Device, Engine, EventType, Request, Session};

fn model(items: usize, neighbours: usize) -> (Vec<Vec<u8>>, Engine) {
    let syn = Synthetic {
        items,
        dim: 64,
        clusters: 256,
        neighbours,
        ..Synthetic::default()
    };
    let shards = syn.shards(MAX_SHARD_BYTES);
    let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).expect("valid model");
    (shards, engine)
}

fn session() -> Session {
    let mut s = Session::new();
    for (t, id) in ["item-17", "item-4242", "item-99", "item-31337", "item-5"]
        .iter()
        .enumerate()
    {
        s.observe(id, EventType::Click, 1_700_000_000 + 60 * t as u64);
    }
    s
}

fn request() -> Request {
    Request {
        k: 10,
        context: Context {
            geohash: Some("9q8yy".into()),
            device: Some(Device::Mobile),
            ts: Some(1_700_000_400),
            tz_offset_min: -480,
        },
        ..Request::default()
    }
}

fn benches(c: &mut Criterion) {
    let (_, engine) = model(100_000, 20);
    let (session, request) = (session(), request());
    c.bench_function("recommend_100k_x64_i8_top10", |b| {
        b.iter(|| black_box(engine.recommend(&session, &request)))
    });
    // Rows, scales, biases, ids and keys only (about 6.5 MB), as the Node figure is defined.
    let (shards, _) = model(100_000, 0);
    eprintln!(
        "load case: {} bytes in {} shard(s)",
        shards.iter().map(Vec::len).sum::<usize>(),
        shards.len()
    );
    c.bench_function("load_100k_x64_model", |b| {
        b.iter(|| black_box(Engine::from_bytes(shards.iter().map(|s| s.as_slice())).is_ok()))
    });
    c.bench_function("session_update_and_query_vector", |b| {
        let mut s = session.clone();
        let mut t = 1_700_001_000u64;
        b.iter(|| {
            t += 1;
            s.observe("item-777", EventType::Click, t);
            black_box(engine.query_vector(&s, &request.context))
        })
    });

    let stride = 64;
    let rows: Vec<i8> = (0..100_000 * stride).map(|i| (i * 7 % 255) as i8).collect();
    let query: Vec<i16> = (0..stride).map(|i| (i as i16 - 32) * 1000).collect();
    let mut out = vec![0i32; 100_000];
    c.bench_function("kernel_scalar_100k_x64", |b| {
        b.iter(|| scalar::dot_i8_block(black_box(&query), black_box(&rows), stride, &mut out))
    });
    c.bench_function("kernel_simd_100k_x64", |b| {
        b.iter(|| dot_i8_block(black_box(&query), black_box(&rows), stride, &mut out))
    });
    drop((shards, engine));

    let (shards, engine) = model(1_000_000, 20);
    assert!(shards.len() > 1, "1M model spans several shards");
    c.bench_function("recommend_1m_x64_i8_top10", |b| {
        b.iter(|| black_box(engine.recommend(&session, &request)))
    });
}

criterion_group! {
    name = scoring;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(scoring);
