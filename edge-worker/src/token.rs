//! Session tokens: the visitor's compact session, signed with HMAC-SHA256 and an expiry.
//!
//! `base64url(payload) "." base64url(hmac)`, payload = version (1) | expiry (u64 BE, unix
//! seconds) | visitor id (u64 BE) | `Session::to_bytes()`. Anything forged, expired, malformed
//! or oversized decodes to `None`, and the caller starts a fresh session: a bad token is never
//! an error page. Pure code, tested natively.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgerec::session::MAX_SESSION_BYTES;
use edgerec::Session;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_VERSION: u8 = 1;
/// Longest token accepted: the largest session, header and MAC, base64url-encoded.
pub const MAX_TOKEN_LEN: usize = (1 + 8 + 8 + MAX_SESSION_BYTES).div_ceil(3) * 4 + 1 + 43;

/// A verified session with its visitor id.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub visitor: u64,
    pub expires: u64,
    pub session: Session,
}

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(payload);
    m
}

/// Signs a session.
pub fn encode(key: &[u8], visitor: u64, expires: u64, session: &Session) -> String {
    let mut payload = vec![TOKEN_VERSION];
    payload.extend_from_slice(&expires.to_be_bytes());
    payload.extend_from_slice(&visitor.to_be_bytes());
    payload.extend_from_slice(&session.to_bytes());
    let tag = mac(key, &payload).finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Verifies a token; `None` for anything but a valid, unexpired token signed with `key`.
pub fn decode(key: &[u8], token: &str, now: u64) -> Option<Verified> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload_b64, tag_b64) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
    // Constant-time comparison, before looking at anything inside the payload.
    mac(key, &payload).verify_slice(&tag).ok()?;
    if payload.len() < 17 || payload[0] != TOKEN_VERSION {
        return None;
    }
    let expires = u64::from_be_bytes(payload[1..9].try_into().ok()?);
    if expires <= now {
        return None;
    }
    let visitor = u64::from_be_bytes(payload[9..17].try_into().ok()?);
    let session = Session::from_bytes(&payload[17..]).ok()?;
    Some(Verified {
        visitor,
        expires,
        session,
    })
}

/// The session token from the `X-Edgerec-Session` header or the `edgerec_session` cookie.
pub fn from_headers(header: Option<&str>, cookie: Option<&str>) -> Option<String> {
    if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) {
        return Some(h.to_string());
    }
    cookie?.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name.trim() == "edgerec_session").then(|| value.trim().to_string())
    })
}

/// The `Set-Cookie` value for a token.
pub fn cookie(token: &str, max_age: u64) -> String {
    format!("edgerec_session={token}; Max-Age={max_age}; Path=/; HttpOnly; Secure; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::EventType;

    fn session() -> Session {
        let mut s = Session::new();
        for i in 0..30 {
            s.observe(&format!("item-{i}"), EventType::Click, 1_700_000_000 + i);
        }
        s
    }

    #[test]
    fn round_trip() {
        let t = encode(b"key", 42, 2_000, &session());
        assert!(t.len() <= MAX_TOKEN_LEN);
        let v = decode(b"key", &t, 1_000).unwrap();
        assert_eq!((v.visitor, v.expires), (42, 2_000));
        assert_eq!(v.session, session());
    }

    #[test]
    fn rejects_forged_expired_malformed_and_oversized() {
        let t = encode(b"key", 1, 2_000, &session());
        assert!(decode(b"other key", &t, 1_000).is_none(), "wrong key");
        assert!(decode(b"key", &t, 2_000).is_none(), "expired");
        let (p, tag) = t.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        payload[12] ^= 1; // a different visitor id with the old signature
        assert!(decode(
            b"key",
            &format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&payload)),
            1_000
        )
        .is_none());
        for bad in [
            "",
            ".",
            "abc",
            "a.b",
            &format!("{p}."),
            &format!(".{tag}"),
            "!!!.???",
        ] {
            assert!(decode(b"key", bad, 1_000).is_none(), "{bad:?}");
        }
        assert!(decode(b"key", &"a".repeat(MAX_TOKEN_LEN + 1), 1_000).is_none());
        // Correctly signed but with a corrupt session inside: still just "no session".
        let mut junk = vec![TOKEN_VERSION];
        junk.extend_from_slice(&9_999u64.to_be_bytes());
        junk.extend_from_slice(&1u64.to_be_bytes());
        junk.extend_from_slice(&[7, 7, 7]);
        let tag = mac(b"key", &junk).finalize().into_bytes();
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&junk),
            URL_SAFE_NO_PAD.encode(tag)
        );
        assert!(decode(b"key", &forged, 1_000).is_none());
    }

    #[test]
    fn finds_the_token() {
        assert_eq!(
            from_headers(Some("h"), Some("edgerec_session=c")).as_deref(),
            Some("h")
        );
        assert_eq!(
            from_headers(None, Some("a=1; edgerec_session=tok; b=2")).as_deref(),
            Some("tok")
        );
        assert_eq!(from_headers(Some(" "), Some("x=1")), None);
        assert!(cookie("t", 10).contains("HttpOnly; Secure; SameSite=Lax"));
    }
}
