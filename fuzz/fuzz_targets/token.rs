//! The session token decoder and the session bytes inside a token: any input decodes to a
//! session or to `None`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzzing-session-key-0123456789";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = edge_worker::token::decode(KEY, &text, 1_700_000_000) {
        assert!(v.expires > 1_700_000_000);
    }
    // What an authentic token carries after decryption.
    if let Ok(session) = edgerec::Session::from_bytes(data) {
        let again = edgerec::Session::from_bytes(&session.to_bytes()).expect("round trip");
        assert_eq!(again, session);
    }
});
