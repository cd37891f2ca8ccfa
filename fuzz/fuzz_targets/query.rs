//! Query parsing of `GET /v1/recommendations`: any query string gives overrides within their
//! limits or a JSON error, and the request they form ranks (on the golden model) without
//! panicking.
#![no_main]

use edgerec::{Context, Engine, Request, Session};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let shard: &[u8] = include_bytes!("../../tests/golden/v2-tiny.shard");
        Engine::from_bytes([shard]).expect("the golden shard loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let pairs = form_urlencoded::parse(data).map(|(a, b)| (a.into_owned(), b.into_owned()));
    let Ok(o) = edge_worker::api::parse_query(pairs, 100) else {
        return;
    };
    let k = o.k.unwrap_or(10);
    assert!((1..=100).contains(&k));
    let request = Request {
        k,
        context: Context {
            geohash: o.geohash,
            device: o.device,
            ts: o.ts,
            tz_offset_min: o.tz_offset_min.unwrap_or(0),
        },
        exclude: o.exclude,
        ..Request::default()
    };
    assert!(engine().recommend(&Session::new(), &request).len() <= k);
});
