//! Writes the frozen golden shard and its expected ranking into tests/golden/.
//! Run only when the format version changes (and keep the old files): `cargo run --example
//! write_golden --features writer`.

use edgerec::testing::tiny_model_shards;
use edgerec::{Engine, EventType, Request, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let shards = tiny_model_shards();
    std::fs::write(format!("{dir}/v1-tiny.shard"), &shards[0])?;
    let engine = Engine::from_bytes([shards[0].as_slice()])?;
    let mut session = Session::new();
    session.observe("item-1", EventType::Click, 1_700_000_000);
    session.observe("item-5", EventType::Like, 1_700_000_060);
    let top = engine.recommend(
        &session,
        &Request {
            k: 8,
            ..Default::default()
        },
    );
    let line: Vec<&str> = top.iter().filter_map(|r| engine.item_id(r.index)).collect();
    std::fs::write(format!("{dir}/v1-tiny.ranking"), line.join(",") + "\n")?;
    println!(
        "wrote {dir}/v1-tiny.shard ({} bytes) and v1-tiny.ranking",
        shards[0].len()
    );
    Ok(())
}
