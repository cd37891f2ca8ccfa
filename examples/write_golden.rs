//! Writes the golden shard of the current format version and its expected rankings into
//! tests/golden/. Run only when the format version changes, and keep the files of older versions
//! (they are frozen: every later reader must load them and rank them the same way):
//! `cargo run --example write_golden --features writer`.

use edgerec::format::VERSION;
use edgerec::testing::{
    golden_cases, golden_paged_mismatch, query_lines, ranking_line, tiny_golden_model_shards,
    tiny_golden_paged_model, GOLDEN_FIRST_PASS_KEEP,
};
use edgerec::Engine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let shards = tiny_golden_model_shards();
    let name = format!("{dir}/v{VERSION}-tiny");
    std::fs::write(format!("{name}.shard"), &shards[0])?;
    let mut engine = Engine::from_bytes([shards[0].as_slice()])?;
    assert!(engine.set_first_pass(Some(GOLDEN_FIRST_PASS_KEEP)));
    let lines: Vec<String> = golden_cases(VERSION)
        .iter()
        .map(|(session, request)| ranking_line(&engine, session, request) + "\n")
        .collect();
    std::fs::write(format!("{name}.ranking"), lines.concat())?;
    // From format 8, the query vector of each case as bits: the session encoder's output,
    // pinned exactly for every platform to reproduce.
    std::fs::write(format!("{name}.query"), query_lines(&engine, VERSION))?;
    // From format 7, the same model paged: its index, and its pages back to back. It must rank
    // as the whole model's ranking file says.
    let paged = tiny_golden_paged_model();
    assert_eq!(paged.index.len(), 1);
    std::fs::write(format!("{name}-paged.index"), &paged.index[0])?;
    std::fs::write(format!("{name}-paged.pages"), paged.pages.concat())?;
    let mismatch = golden_paged_mismatch(
        VERSION,
        &paged.index[0],
        &paged.pages.concat(),
        &lines.concat(),
    );
    assert_eq!(mismatch, None);
    println!(
        "wrote {name}.shard ({} bytes) and {name}.ranking",
        shards[0].len()
    );
    Ok(())
}
