//! The worker's request/response vocabulary, free of worker types so it is tested natively:
//! error bodies, event parsing and validation, query parameters.

use edgerec::Device;
pub use edgerec_contract::events::Event;
use edgerec_contract::events::{parse_batch, validate_json, Defaults, TS_RANGE, TZ_RANGE_MIN};
pub use edgerec_contract::ApiError;

/// Most events accepted in one `POST /v1/events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 50;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The request headers that tell a visitor's own page from another site posting into the
/// visitor's session (CSRF).
#[derive(Debug, Clone, Copy, Default)]
pub struct PostHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// Refuses event posts another site could make in the visitor's name. JSON only (415 otherwise):
/// an HTML form can send only text/plain, urlencoded or multipart bodies, and a cross-site
/// `fetch` with JSON needs a CORS preflight this worker never grants. A browser's
/// `Sec-Fetch-Site: cross-site`, or an `Origin` whose host is not this worker's, is refused (403)
/// unless the origin is listed in `allowed_origins` (comma-separated, e.g. the site that embeds
/// the recommendations). Requests without those headers (servers, curl) are not browsers'.
pub fn check_event_post(h: &PostHeaders<'_>, allowed_origins: &str) -> Result<(), ApiError> {
    let json = h.content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "events must be sent as Content-Type: application/json",
        ));
    }
    let allowed = h.origin.is_some_and(|o| {
        allowed_origins
            .split(',')
            .any(|a| !a.trim().is_empty() && a.trim().eq_ignore_ascii_case(o.trim()))
    });
    let origin_host = h.origin.map(|o| {
        let o = o.trim();
        o.split_once("://").map_or(o, |(_, rest)| rest)
    });
    let cross_site = match (h.fetch_site, origin_host) {
        (Some(site), _) => site.trim().eq_ignore_ascii_case("cross-site"),
        (None, Some(origin)) => h
            .host
            .is_none_or(|host| !origin.eq_ignore_ascii_case(host.trim())),
        (None, None) => false,
    };
    if cross_site && !allowed {
        return Err(ApiError::new(
            403,
            "cross_site",
            "events from another site are refused (list it in ALLOWED_ORIGINS to allow it)",
        ));
    }
    Ok(())
}

/// Fixed one-minute windows of event counts per key (a visitor, an IP block), kept in the
/// isolate: enough to stop one client from flooding the training log through one edge
/// location; a global limit needs a Durable Object or Cloudflare's rate limiting rules.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: std::collections::HashMap<String, (u64, u32)>,
}

/// Keys remembered before windows that have ended are dropped.
const RATE_KEYS: usize = 10_000;

impl RateLimiter {
    /// Counts `n` events for `key` at `now_s`; refuses (429) when the window's count would pass
    /// `per_minute`. Refused events are not counted.
    pub fn admit(
        &mut self,
        key: &str,
        n: u32,
        per_minute: u32,
        now_s: u64,
    ) -> Result<(), ApiError> {
        let window = now_s / 60;
        if self.windows.len() >= RATE_KEYS {
            self.windows.retain(|_, (w, _)| *w == window);
        }
        let entry = self.windows.entry(key.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1.saturating_add(n) > per_minute {
            return Err(ApiError::new(
                429,
                "rate_limited",
                format!("more than {per_minute} events a minute; slow down"),
            ));
        }
        entry.1 += n;
        Ok(())
    }
}

/// Session-less lists this isolate ranked or read recently, by Cache API key, each until its
/// time to live ends. The Cache API write of a new list runs after the answer (`wait_until`);
/// this copy lets the isolate's next request for the same bucket skip both the ranking and the
/// Cache API read, and is what makes that request a hit before the write has landed.
#[derive(Debug)]
pub struct RecentLists<T> {
    /// (key, expiry in ms, list); the newest at the end.
    entries: std::collections::VecDeque<(String, u64, T)>,
    capacity: usize,
}

impl<T: Clone> RecentLists<T> {
    pub fn new(capacity: usize) -> Self {
        RecentLists {
            entries: std::collections::VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// The list under `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<T> {
        self.entries
            .iter()
            .find(|(k, expires, _)| k == key && now_ms < *expires)
            .map(|(_, _, list)| list.clone())
    }

    /// Keeps `list` under `key` for `ttl_ms`, replacing an older copy; the oldest entry goes
    /// when the isolate holds `capacity` lists.
    pub fn put(&mut self, key: &str, list: T, now_ms: u64, ttl_ms: u64) {
        self.entries
            .retain(|(k, expires, _)| k != key && now_ms < *expires);
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries
            .push_back((key.to_string(), now_ms.saturating_add(ttl_ms), list));
    }
}

/// The rate-limit key of a client address: the /24 of an IPv4 address, the /48 of an IPv6 one
/// (one household or office shares it, and rotating within it does not escape the limit).
pub fn ip_block(ip: &str) -> String {
    let ip = ip.trim();
    if ip.contains(':') {
        let groups: Vec<&str> = ip.split(':').take(3).collect();
        format!("ip6:{}", groups.join(":"))
    } else {
        let octets: Vec<&str> = ip.split('.').take(3).collect();
        format!("ip4:{}", octets.join("."))
    }
}

/// The answer to a body above [`MAX_BODY_BYTES`].
pub fn body_too_large() -> ApiError {
    ApiError::new(
        413,
        "too_large",
        format!("body above {MAX_BODY_BYTES} bytes"),
    )
}

/// Parses a JSON event or array of events posted by `visitor` (every event is attributed to
/// it, whatever the body says) with the contract's one validation, so the ingest accepts
/// exactly what the edge accepted. `now` fills a missing `ts`. Each problem names the event's
/// index and field.
pub fn parse_events(body: &[u8], visitor: &str, now: i64) -> Result<Vec<Event>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(body_too_large());
    }
    let defaults = Defaults {
        user: Some(visitor),
        now: Some(now),
    };
    parse_batch(body, MAX_EVENTS_PER_REQUEST)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            validate_json(v, defaults)
                .map_err(|e| ApiError::new(400, "invalid_event", format!("event {i}: {e}")))
        })
        .collect()
}

/// Most lists accepted in one `POST /v1/exposures` (from a page scoring in the browser).
pub const MAX_EXPOSURES_PER_REQUEST: usize = 20;

/// A client's record id scoped to its visitor, so a client cannot pre-claim ids that would make
/// the ingest drop another visitor's records as duplicates: `<user>:<id>`, or the id's hash when
/// that would pass the contract's id length.
pub fn scoped_id(user: &str, id: &str) -> String {
    if user.len() + 1 + id.len() <= edgerec_contract::events::MAX_ID_LEN {
        format!("{user}:{id}")
    } else {
        format!("{user}:{:016x}", edgerec::hash::text_key(id))
    }
}

/// Parses the lists a page ranked in the browser and showed (`POST /v1/exposures`): one
/// exposure object or an array (the batch envelope), each with the client's `id`, `model`,
/// optional `arm` and `items` as the contract has them. The visitor, the time and the id's
/// scope are the edge's: `user` is set to `visitor`, `ts` to `now`, `id` to [`scoped_id`].
pub fn parse_exposures(
    body: &[u8],
    visitor: &str,
    now: i64,
) -> Result<Vec<edgerec_contract::Exposure>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(body_too_large());
    }
    let invalid = |i: usize, e: &dyn std::fmt::Display| {
        ApiError::new(400, "invalid_exposure", format!("exposure {i}: {e}"))
    };
    parse_batch(body, MAX_EXPOSURES_PER_REQUEST)?
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            let Some(fields) = v.as_object_mut() else {
                return Err(invalid(i, &"not an object"));
            };
            let id = match fields.get("id") {
                Some(serde_json::Value::String(id)) => scoped_id(visitor, id),
                _ => return Err(invalid(i, &"`id` must be a string")),
            };
            fields.insert("id".into(), id.into());
            fields.insert("user".into(), visitor.into());
            fields.insert("ts".into(), now.into());
            edgerec_contract::exposures::validate_exposure_json(v).map_err(|e| invalid(i, &e))
        })
        .collect()
}

/// Query-string overrides of the request context, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub k: Option<usize>,
    pub geohash: Option<String>,
    pub device: Option<Device>,
    pub ts: Option<i64>,
    pub tz_offset_min: Option<i32>,
    pub exclude: Vec<String>,
}

pub fn parse_query(
    pairs: impl Iterator<Item = (String, String)>,
    max_k: usize,
) -> Result<Overrides, ApiError> {
    let mut o = Overrides::default();
    for (key, value) in pairs {
        let bad = |what: &str| ApiError::new(400, "invalid_parameter", format!("`{key}` {what}"));
        match key.as_str() {
            "k" => {
                let k: usize = value.parse().map_err(|_| bad("must be a whole number"))?;
                if k == 0 || k > max_k {
                    return Err(bad(&format!("must be between 1 and {max_k}")));
                }
                o.k = Some(k);
            }
            "geohash" => {
                o.geohash = Some(
                    edgerec::context::normalize_geohash(
                        &value,
                        edgerec::format::MAX_GEOHASH_PRECISION,
                    )
                    .ok_or_else(|| bad("is not a geohash"))?,
                )
            }
            "device" => {
                o.device = Some(
                    Device::from_name(&value)
                        .map_err(|e| ApiError::new(400, "invalid_parameter", e.to_string()))?,
                )
            }
            "ts" => {
                o.ts = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|t| TS_RANGE.contains(t))
                        .ok_or_else(|| bad("must be unix seconds between 1990 and 2100"))?,
                )
            }
            "tz_offset_min" => {
                o.tz_offset_min = Some(
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|t| TZ_RANGE_MIN.contains(t))
                        .ok_or_else(|| bad("must be minutes in [-840, 840]"))?,
                )
            }
            "exclude" => o.exclude.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .take(100)
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_defaults_and_named_errors() {
        let now = 1_700_000_000;
        let e = parse_events(br#"{"item": "i1", "user": "mallory"}"#, "v01", now).unwrap();
        assert_eq!(
            (
                e[0].user.as_str(),
                e[0].item.as_str(),
                e[0].ts,
                e[0].id.is_none()
            ),
            ("v01", "i1", now, true)
        );
        assert_eq!(e[0].kind, edgerec_contract::EventKind::View);
        let e = parse_events(
            br#"[{"item": "a", "type": "Like", "ts": 1600000000}, {"item": "b", "id": "x"}]"#,
            "v01",
            now,
        )
        .unwrap();
        assert_eq!(
            (e[0].kind.core().name(), e[0].ts, e[1].id.as_deref()),
            ("like", 1_600_000_000, Some("x"))
        );
        let err = |b: &str| parse_events(b.as_bytes(), "v01", now).unwrap_err();
        assert_eq!(err("{nope").code, "malformed_json");
        assert_eq!(err("42").code, "malformed_json");
        assert_eq!(err("[]").code, "no_events");
        let e = err(r#"[{"item": "a"}, {"item": ""}]"#);
        assert_eq!(
            (e.code, e.message.starts_with("event 1:")),
            ("invalid_event", true)
        );
        assert!(err(r#"{"item": "a", "type": "teleport"}"#)
            .message
            .contains("teleport"));
        assert!(err(r#"{"item": "a", "ts": -1}"#).message.contains("`ts`"));
        // Accepted here before the contract, then dropped by the ingest after a 200.
        assert!(err(r#"{"item": "a", "ts": 5}"#).message.contains("`ts`"));
        assert!(err(r#"{"item": "a\u0007"}"#).message.contains("control"));
        assert_eq!(
            err(&format!("[{}]", vec![r#"{"item":"a"}"#; 51].join(","))).status,
            413
        );
        assert_eq!(
            parse_events(&vec![b' '; MAX_BODY_BYTES + 1], "v01", now)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn browser_exposures_are_the_visitors_and_now() {
        let now = 1_700_000_000;
        let body = br#"[{"id": "b1", "user": "someone-else", "ts": 978300000, "model": "v3",
            "items": [{"item": "50", "position": 0, "score": 0.9, "propensity": 1}]}]"#;
        let x = parse_exposures(body, "v00ff", now).unwrap();
        assert_eq!(
            (x[0].id.as_str(), x[0].user.as_str(), x[0].ts),
            ("v00ff:b1", "v00ff", now)
        );
        let err = |b: &str| parse_exposures(b.as_bytes(), "v00ff", now).unwrap_err();
        assert_eq!(
            err(r#"{"model": "v3", "items": []}"#).code,
            "invalid_exposure"
        );
        let e = err(
            r#"[{"id": "b1", "model": "v3", "items": [{"item": "50", "position": 0, "propensity": 2}]}]"#,
        );
        assert!(e.message.starts_with("exposure 0:") && e.message.contains("propensity"));
        let many = format!(
            "[{}]",
            vec![r#"{"id":"b"}"#; MAX_EXPOSURES_PER_REQUEST + 1].join(",")
        );
        assert_eq!(err(&many).status, 413);
        let long = "b".repeat(300);
        assert_eq!(scoped_id("v00ff", &long).len(), "v00ff:".len() + 16);
    }

    #[test]
    fn cross_site_event_posts_are_refused() {
        let h = |ct: &'static str, origin: Option<&'static str>, site: Option<&'static str>| {
            PostHeaders {
                content_type: Some(ct),
                origin,
                fetch_site: site,
                host: Some("shop.example"),
            }
        };
        let code = |x: Result<(), ApiError>| x.err().map(|e| e.code);
        let json = "application/json; charset=utf-8";
        // Same-origin pages, servers and allowed partners pass.
        assert_eq!(
            check_event_post(
                &h(json, Some("https://shop.example"), Some("same-origin")),
                ""
            ),
            Ok(())
        );
        assert_eq!(check_event_post(&h(json, None, None), ""), Ok(()));
        assert_eq!(
            check_event_post(&h(json, Some("https://shop.example"), None), ""),
            Ok(())
        );
        assert_eq!(
            check_event_post(
                &h(json, Some("https://blog.example"), Some("cross-site")),
                "https://blog.example"
            ),
            Ok(())
        );
        // A cross-site form or fetch does not.
        assert_eq!(
            code(check_event_post(&h("text/plain", None, None), "")),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(check_event_post(
                &h(json, Some("https://evil.example"), Some("cross-site")),
                ""
            )),
            Some("cross_site")
        );
        assert_eq!(
            code(check_event_post(
                &h(json, Some("https://evil.example"), None),
                ""
            )),
            Some("cross_site")
        );
        assert_eq!(
            code(check_event_post(&h(json, Some("null"), None), "")),
            Some("cross_site")
        );
        let mut none = h(json, None, None);
        none.content_type = None;
        assert_eq!(
            code(check_event_post(&none, "")),
            Some("unsupported_media_type")
        );
    }

    #[test]
    fn rate_limits_per_key_and_minute() {
        let mut limits = RateLimiter::default();
        assert!(limits.admit("v1", 3, 5, 60).is_ok());
        assert!(limits.admit("v1", 2, 5, 61).is_ok());
        assert_eq!(limits.admit("v1", 1, 5, 62).unwrap_err().status, 429);
        assert!(
            limits.admit("v2", 5, 5, 62).is_ok(),
            "keys are counted apart"
        );
        assert!(
            limits.admit("v1", 5, 5, 120).is_ok(),
            "a new minute starts afresh"
        );
        assert_eq!(ip_block("203.0.113.77"), "ip4:203.0.113");
        assert_eq!(ip_block("2001:db8:85a3:1::7"), "ip6:2001:db8:85a3");
    }

    #[test]
    fn recent_lists_expire_and_keep_the_newest() {
        let mut lists = RecentLists::new(2);
        lists.put("a", 1, 1_000, 500);
        assert_eq!(lists.get("a", 1_499), Some(1));
        assert_eq!(lists.get("a", 1_500), None, "expired at its time to live");
        assert_eq!(lists.get("b", 1_000), None);
        lists.put("a", 2, 1_000, 500);
        assert_eq!(
            lists.get("a", 1_000),
            Some(2),
            "a newer copy replaces the older"
        );
        lists.put("b", 3, 1_000, 500);
        lists.put("c", 4, 1_000, 500);
        assert_eq!(lists.get("a", 1_000), None, "the oldest goes at capacity");
        assert_eq!(
            (lists.get("b", 1_000), lists.get("c", 1_000)),
            (Some(3), Some(4))
        );
        lists.put("d", 5, 2_000, 500);
        assert_eq!(
            lists.entries.len(),
            1,
            "expired entries are dropped on the next put"
        );
    }

    #[test]
    fn query_overrides() {
        let q = |s: &[(&str, &str)]| {
            parse_query(s.iter().map(|(a, b)| (a.to_string(), b.to_string())), 100)
        };
        let o = q(&[
            ("k", "5"),
            ("geohash", "9Q8YYZZ"),
            ("device", "tablet"),
            ("ts", "1700000000"),
            ("tz_offset_min", "-480"),
            ("exclude", "a, b,,c"),
        ])
        .unwrap();
        assert_eq!(o.k, Some(5));
        assert_eq!(o.geohash.as_deref(), Some("9q8yy"));
        assert_eq!(o.device, Some(Device::Tablet));
        assert_eq!(o.exclude, vec!["a", "b", "c"]);
        assert_eq!(q(&[("k", "0")]).unwrap_err().code, "invalid_parameter");
        assert_eq!(q(&[("k", "1000")]).unwrap_err().status, 400);
        assert!(q(&[("device", "fridge")]).is_err());
        assert!(q(&[("geohash", "!!")]).is_err());
        assert!(q(&[("unrelated", "x")]).is_ok());
    }
}
