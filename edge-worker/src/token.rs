//! Session tokens: the visitor's compact session and visitor id, encrypted and authenticated, so
//! whoever sees a token (logs, proxies, the browser's storage) learns nothing from it: not the
//! visitor id, not the items, not how many there are beyond the length.
//!
//! Version 2 (issued): `base64url(2 | nonce | XChaCha20-Poly1305(expiry u64 BE | visitor u64 BE
//! | Session::to_bytes()))`, the version byte as associated data, a random 24-byte nonce per
//! token (large enough that random nonces never repeat in practice) and a key derived from the
//! `SESSION_KEY` secret with HMAC-SHA256 under a fixed label.
//!
//! Version 1 (signed only: `base64url(1 | expiry | visitor | session) "." base64url(hmac)`) is
//! still accepted until it expires, so an upgrade does not reset sessions; the next event post
//! answers with a version 2 token.
//!
//! Anything forged, expired, malformed or oversized decodes to `None`, and the caller starts a
//! fresh session: a bad token is never an error page. Pure code, tested natively.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use edgerec::session::MAX_SESSION_BYTES;
use edgerec::Session;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SIGNED_VERSION: u8 = 1;
const SEALED_VERSION: u8 = 2;
/// Bytes of the XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Expiry and visitor id, before the session.
const HEAD_LEN: usize = 16;
const SIGNED_MAX: usize = (1 + HEAD_LEN + MAX_SESSION_BYTES).div_ceil(3) * 4 + 1 + 43;
const SEALED_MAX: usize = (1 + NONCE_LEN + HEAD_LEN + MAX_SESSION_BYTES + TAG_LEN).div_ceil(3) * 4;
/// Longest token accepted: the largest session of either version, base64url-encoded.
pub const MAX_TOKEN_LEN: usize = if SIGNED_MAX > SEALED_MAX {
    SIGNED_MAX
} else {
    SEALED_MAX
};

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

/// The encryption key: the secret run through HMAC-SHA256 under a label, so the signing (v1)
/// and encryption uses of one secret never share a key.
fn cipher(key: &[u8]) -> XChaCha20Poly1305 {
    let derived = mac(key, b"edgerec session token v2 encryption key").finalize();
    XChaCha20Poly1305::new(&derived.into_bytes())
}

fn plaintext(visitor: u64, expires: u64, session: &Session) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN + MAX_SESSION_BYTES);
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(&visitor.to_be_bytes());
    out.extend_from_slice(&session.to_bytes());
    out
}

/// Seals a session. `nonce` must be fresh random bytes (the worker draws them from the
/// runtime's CSPRNG).
pub fn encode(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    visitor: u64,
    expires: u64,
    session: &Session,
) -> String {
    let payload = Payload {
        msg: &plaintext(visitor, expires, session),
        aad: &[SEALED_VERSION],
    };
    // Encryption fails only for messages beyond 256 GiB.
    let sealed = cipher(key)
        .encrypt(XNonce::from_slice(&nonce), payload)
        .unwrap_or_else(|_| unreachable!("a session is far below the AEAD's limit"));
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(out)
}

/// Opens a token; `None` for anything but a valid, unexpired token made with `key`.
pub fn decode(key: &[u8], token: &str, now: u64) -> Option<Verified> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let inner = match token.split_once('.') {
        Some((payload, tag)) => open_signed(key, payload, tag)?,
        None => open_sealed(key, token)?,
    };
    let expires = u64::from_be_bytes(inner.get(0..8)?.try_into().ok()?);
    if expires <= now {
        return None;
    }
    let visitor = u64::from_be_bytes(inner.get(8..HEAD_LEN)?.try_into().ok()?);
    let session = Session::from_bytes(&inner[HEAD_LEN..]).ok()?;
    Some(Verified {
        visitor,
        expires,
        session,
    })
}

/// A version 2 token's plaintext, if it authenticates.
fn open_sealed(key: &[u8], token: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != SEALED_VERSION {
        return None;
    }
    let (nonce, sealed) = raw[1..].split_at(NONCE_LEN);
    let payload = Payload {
        msg: sealed,
        aad: &[SEALED_VERSION],
    };
    cipher(key).decrypt(XNonce::from_slice(nonce), payload).ok()
}

/// A version 1 token's payload after the version byte, if its MAC verifies.
fn open_signed(key: &[u8], payload_b64: &str, tag_b64: &str) -> Option<Vec<u8>> {
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
    // Constant-time comparison, before looking at anything inside the payload.
    mac(key, &payload).verify_slice(&tag).ok()?;
    if payload.first() != Some(&SIGNED_VERSION) {
        return None;
    }
    Some(payload[1..].to_vec())
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

    const NONCE: [u8; NONCE_LEN] = [9; NONCE_LEN];

    /// A version 1 token, as the previous release signed them.
    fn signed(key: &[u8], visitor: u64, expires: u64, session: &Session) -> String {
        let mut payload = vec![SIGNED_VERSION];
        payload.extend_from_slice(&plaintext(visitor, expires, session));
        let tag = mac(key, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    #[test]
    fn round_trip() {
        let t = encode(b"key", NONCE, 42, 2_000, &session());
        assert!(t.len() <= MAX_TOKEN_LEN);
        let v = decode(b"key", &t, 1_000).unwrap();
        assert_eq!((v.visitor, v.expires), (42, 2_000));
        assert_eq!(v.session, session());
        let full = {
            let mut s = Session::new();
            for i in 0..1_000 {
                s.observe(
                    &format!("a-long-item-id-{i}"),
                    EventType::Like,
                    1_700_000_000,
                );
            }
            s
        };
        let t = encode(b"key", NONCE, u64::MAX, u64::MAX, &full);
        assert!(t.len() <= MAX_TOKEN_LEN, "{} > {MAX_TOKEN_LEN}", t.len());
        assert_eq!(decode(b"key", &t, 1_000).unwrap().session, full);
    }

    #[test]
    fn tokens_reveal_neither_the_visitor_nor_the_items() {
        let s = session();
        let (a, b) = (
            encode(b"key", [1; NONCE_LEN], 0x0123_4567_89ab_cdef, 2_000, &s),
            encode(b"key", [2; NONCE_LEN], 0x0123_4567_89ab_cdef, 2_000, &s),
        );
        assert_ne!(
            a, b,
            "a fresh nonce gives a different token for the same session"
        );
        let raw = URL_SAFE_NO_PAD.decode(&a).unwrap();
        let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&0x0123_4567_89ab_cdefu64.to_be_bytes()));
        assert!(!contains(&s.to_bytes()[..16]));
        // The signed format of the previous release carries both in the clear.
        let old = signed(b"key", 0x0123_4567_89ab_cdef, 2_000, &s);
        let old_raw = URL_SAFE_NO_PAD
            .decode(old.split_once('.').unwrap().0)
            .unwrap();
        assert!(old_raw
            .windows(8)
            .any(|w| w == 0x0123_4567_89ab_cdefu64.to_be_bytes()));
    }

    #[test]
    fn signed_tokens_of_the_previous_release_still_open() {
        let t = signed(b"key", 7, 2_000, &session());
        let v = decode(b"key", &t, 1_000).unwrap();
        assert_eq!((v.visitor, v.session), (7, session()));
        assert!(decode(b"other key", &t, 1_000).is_none());
        assert!(decode(b"key", &t, 2_000).is_none(), "expired");
        let (p, tag) = t.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        payload[12] ^= 1; // a different visitor id with the old signature
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&payload));
        assert!(decode(b"key", &forged, 1_000).is_none());
    }

    #[test]
    fn rejects_forged_expired_malformed_and_oversized() {
        let t = encode(b"key", NONCE, 1, 2_000, &session());
        assert!(decode(b"other key", &t, 1_000).is_none(), "wrong key");
        assert!(decode(b"key", &t, 2_000).is_none(), "expired");
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for at in [0, 1, 1 + NONCE_LEN, raw.len() / 2, raw.len() - 1] {
            let mut flipped = raw.clone();
            flipped[at] ^= 1;
            let forged = URL_SAFE_NO_PAD.encode(&flipped);
            assert!(decode(b"key", &forged, 1_000).is_none(), "bit flip at {at}");
        }
        let short = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert!(decode(b"key", &short, 1_000).is_none(), "truncated");
        for bad in ["", ".", "abc", "a.b", "!!!.???", "!!!"] {
            assert!(decode(b"key", bad, 1_000).is_none(), "{bad:?}");
        }
        assert!(decode(b"key", &"a".repeat(MAX_TOKEN_LEN + 1), 1_000).is_none());
        // Authentic but with a corrupt session inside: still just "no session".
        let mut junk = plaintext(1, 9_999, &Session::new());
        junk.truncate(HEAD_LEN);
        junk.extend_from_slice(&[7, 7, 7]);
        let sealed = cipher(b"key")
            .encrypt(
                XNonce::from_slice(&NONCE),
                Payload {
                    msg: &junk,
                    aad: &[SEALED_VERSION],
                },
            )
            .unwrap();
        let mut forged = vec![SEALED_VERSION];
        forged.extend_from_slice(&NONCE);
        forged.extend_from_slice(&sealed);
        assert!(decode(b"key", &URL_SAFE_NO_PAD.encode(&forged), 1_000).is_none());
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
