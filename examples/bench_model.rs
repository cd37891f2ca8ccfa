//! Writes the benchmark models for scripts/bench-node.mjs into the directory given:
//! `m100k/` (100,000 x 64 int8, no sequence tables, so the int8 path can be compared with exact
//! float32 search), `m1m/` (1,000,000 x 64 with sequence tables, several shards), and for
//! m100k the float32 vectors with the bias appended as a 65th column (`vectors.f32`), the
//! engine's float query vectors with a 1 appended (`queries.f32`) and the sessions/contexts
//! they came from (`sessions.json`). Peers searching `queries.f32` over `vectors.f32` by inner
//! product therefore rank by exactly the float32 version of edgerec's score. Both models carry
//! first-pass codes (the two-stage scan); the bench times the one-stage scan on them too.
//! `m1m-paged/` is the 1M model paged (format 7): `index-N.bin` and `page-N.bin`.

use edgerec::format::MAX_SHARD_BYTES;
use edgerec::math::SplitMix64;
use edgerec::testing::Synthetic;
use edgerec::writer::write_paged_model;
use edgerec::{Context, Device, Engine, EventType, Session};

/// Items per page of the paged 1M model.
const PAGE_ITEMS: usize = 1024;
use std::fmt::Write;

fn write_shards(dir: &str, shards: &[Vec<u8>]) -> std::io::Result<()> {
    // A fresh directory: the bench loads every `shard-*.bin` in it, and an earlier model may
    // have had more shards.
    if std::path::Path::new(dir).exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (i, s) in shards.iter().enumerate() {
        std::fs::write(format!("{dir}/shard-{i}.bin"), s)?;
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: bench_model OUT_DIR")?;
    let syn = Synthetic {
        items: 100_000,
        dim: 64,
        clusters: 256,
        neighbours: 0,
        transitions: false,
        first_pass: true,
        ..Synthetic::default()
    };
    let spec = syn.spec();
    let shards = syn.shards(MAX_SHARD_BYTES);
    write_shards(&format!("{out}/m100k"), &shards)?;
    // The same model with a session encoder reading all 24 positions the session holds
    // (format 8), for the encoder's share of building the query.
    let mut encoded = spec.clone();
    let mut rng = edgerec::math::SplitMix64::new(29);
    encoded.encoder = Some(edgerec::testing::synthetic_encoder(
        64,
        edgerec::session::MAX_SESSION_EVENTS as u32,
        &mut rng,
    ));
    write_shards(
        &format!("{out}/m100k-encoder"),
        &syn.write(&encoded, MAX_SHARD_BYTES),
    )?;
    let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice()))?;
    let mut vectors = Vec::with_capacity(syn.items * 65);
    for i in 0..syn.items {
        vectors.extend_from_slice(&spec.vectors[i * 64..(i + 1) * 64]);
        vectors.push(spec.bias[i]);
    }
    std::fs::write(format!("{out}/m100k/vectors.f32"), f32_bytes(&vectors))?;
    let mut rng = SplitMix64::new(2024);
    let mut queries = Vec::new();
    let mut json = String::from("[");
    let devices = ["mobile", "desktop", "tablet"];
    for q in 0..200 {
        let mut session = Session::new();
        let mut items = Vec::new();
        for t in 0..5 {
            let id = format!("item-{}", rng.below(syn.items));
            session.observe(&id, EventType::Click, 1_700_000_000 + t * 60);
            items.push(format!("\"{id}\""));
        }
        let device = devices[q % 3];
        let context = Context {
            geohash: Some("9q8yy".into()),
            device: Some(Device::from_name(device)?),
            ts: Some(1_700_000_400),
            tz_offset_min: -480,
        };
        queries.extend(engine.query_vector(&session, &context));
        queries.push(1.0);
        write!(
            json,
            "{}{{\"items\":[{}],\"options\":{{\"k\":10,\"device\":\"{device}\",\"geohash\":\"9q8yy\",\"ts\":1700000400,\"tzOffsetMin\":-480}}}}",
            if q > 0 { "," } else { "" },
            items.join(",")
        )?;
    }
    json.push(']');
    std::fs::write(format!("{out}/m100k/queries.f32"), f32_bytes(&queries))?;
    std::fs::write(format!("{out}/m100k/sessions.json"), json)?;

    let big = Synthetic {
        items: 1_000_000,
        dim: 64,
        clusters: 1024,
        neighbours: 10,
        first_pass: true,
        ..Synthetic::default()
    };
    let big_spec = big.spec();
    let shards = big.write(&big_spec, MAX_SHARD_BYTES);
    write_shards(&format!("{out}/m1m"), &shards)?;
    // The same model paged (format 7): pages of about one coarse cluster (1,024 clusters of
    // about 976 items), for scripts/bench-paged.mjs.
    let paged = write_paged_model(
        &big_spec,
        big.seed ^ 0xed9e_4ec0,
        MAX_SHARD_BYTES,
        PAGE_ITEMS,
    )?;
    let dir = format!("{out}/m1m-paged");
    write_shards(&dir, &[])?;
    for (i, s) in paged.index.iter().enumerate() {
        std::fs::write(format!("{dir}/index-{i}.bin"), s)?;
    }
    for (i, s) in paged.pages.iter().enumerate() {
        std::fs::write(format!("{dir}/page-{i}.bin"), s)?;
    }
    println!(
        "wrote {out}/m100k (1 model, 200 queries), {out}/m100k-encoder, {out}/m1m ({} shards) and {dir} ({} index \
         shards, {} pages)",
        shards.len(),
        paged.index.len(),
        paged.pages.len()
    );
    Ok(())
}
