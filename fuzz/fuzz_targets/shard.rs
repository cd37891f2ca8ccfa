//! The shard parser: any bytes either fail validation with an error or give a shard the engine
//! can load and rank from without panicking. Each input is tried as it is and with its checksum
//! repaired, so mutations reach the validation behind the checksum. The seeds include a paged
//! model's index shard and one of its pages (format 7).
#![no_main]

use edgerec::format::{CHECKSUM_AT, HEADER_LEN};
use edgerec::{Engine, Request, Session};
use libfuzzer_sys::fuzz_target;

fn rank(bytes: &[u8]) {
    let Ok(shard) = edgerec::Shard::from_bytes(bytes) else {
        return;
    };
    let Ok(engine) = Engine::from_shards(vec![shard]) else {
        return;
    };
    let mut session = Session::new();
    if let Some(id) = engine.item_id(0) {
        session.observe(id, edgerec::EventType::Click, 1_700_000_000);
    }
    let request = Request {
        k: 10,
        ..Request::default()
    };
    assert!(engine.recommend(&session, &request).len() <= 10);
    // A paged model's index (format 7) holds no pages yet: it names the ones it needs.
    if let Err(missing) = engine.try_recommend(&session, &request) {
        assert!(missing
            .0
            .iter()
            .all(|&p| (p as usize) < engine.page_count()));
    }
}

fuzz_target!(|data: &[u8]| {
    rank(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        let sum = edgerec::hash::shard_checksum(&fixed, CHECKSUM_AT);
        fixed[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
        rank(&fixed);
    }
});
