//! The request's context: `cf` coordinates → geohash (precision capped in the core), `cf`
//! timezone → UTC offset (via `Intl`, every call guarded so a bad zone name cannot throw into
//! wasm), User-Agent and `Sec-CH-UA-Mobile` → device; query parameters override each.

use crate::api::Overrides;
use edgerec::format::MAX_GEOHASH_PRECISION;
use edgerec::{Context, Device};
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use worker::Request;

/// A field of the request's `cf` object, read through `Reflect`: workers-rs's `Cf` getters
/// unwrap, and panic on a missing timezone or unparsable coordinates.
fn cf_field(req: &Request, name: &str) -> Option<JsValue> {
    let cf = Reflect::get(req.inner(), &"cf".into()).ok()?;
    if !cf.is_object() {
        return None;
    }
    let v = Reflect::get(&cf, &name.into()).ok()?;
    (!v.is_undefined() && !v.is_null()).then_some(v)
}

/// A `cf` number that Cloudflare sends as a string ("37.7749"), or as a number.
fn cf_number(req: &Request, name: &str) -> Option<f64> {
    let v = cf_field(req, name)?;
    v.as_f64()
        .or_else(|| v.as_string()?.trim().parse().ok())
        .filter(|x: &f64| x.is_finite())
}

pub fn from_request(req: &Request, o: &Overrides) -> Context {
    let now_ms = crate::now_ms();
    let geohash = o.geohash.clone().or_else(|| {
        let (lat, lon) = (cf_number(req, "latitude")?, cf_number(req, "longitude")?);
        edgerec::context::geohash_encode(lat, lon, MAX_GEOHASH_PRECISION)
    });
    let device = o.device.or_else(|| {
        let headers = req.headers();
        let ua = headers.get("User-Agent").ok().flatten().unwrap_or_default();
        let mobile = headers
            .get("Sec-CH-UA-Mobile")
            .ok()
            .flatten()
            .map(|v| v.trim() == "?1");
        Some(Device::from_user_agent(&ua, mobile))
    });
    let tz_offset_min = o.tz_offset_min.or_else(|| {
        let name = cf_field(req, "timezone")?.as_string()?;
        cached_offset_minutes(&name, now_ms as f64)
    });
    Context {
        geohash,
        device,
        ts: Some(o.ts.unwrap_or((now_ms / 1000) as i64)),
        tz_offset_min: tz_offset_min.unwrap_or(0),
    }
}

/// How long a zone's offset is reused. Offsets are whole quarter hours and tz rules change them at
/// whole local hours or half hours, so a change falls on a quarter hour of UTC and one quarter hour
/// has one offset per zone. (A rule changing at another minute, such as 00:01, would be served the
/// old offset for the rest of that quarter hour.)
const QUARTER_HOUR_MS: f64 = 900_000.0;
/// Zones remembered per isolate (a request's zone is where its visitor is: a few dozen cover
/// most traffic); the cache starts over when full.
const ZONES_CACHED: usize = 64;

std::thread_local! {
    /// (zone, quarter hour since the epoch, its offset) of the zones this isolate has seen.
    static ZONE_OFFSETS: std::cell::RefCell<Vec<(String, i64, Option<i32>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// [`offset_minutes`], computed once per zone and quarter hour. A CPU profile of the worker under
/// load (workerd's inspector) showed constructing an `Intl.DateTimeFormat` for every request
/// took 15% of the isolate's time, more than anything but the scan.
fn cached_offset_minutes(zone: &str, now_ms: f64) -> Option<i32> {
    let quarter = (now_ms / QUARTER_HOUR_MS).floor() as i64;
    let hit = ZONE_OFFSETS.with(|c| {
        c.borrow()
            .iter()
            .find(|(z, q, _)| z == zone && *q == quarter)
            .map(|e| e.2)
    });
    if let Some(offset) = hit {
        return offset;
    }
    let offset = offset_minutes(zone, now_ms);
    ZONE_OFFSETS.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|(z, q, _)| z != zone && *q == quarter);
        if c.len() >= ZONES_CACHED {
            c.clear();
        }
        c.push((zone.to_string(), quarter, offset));
    });
    offset
}

/// Builds one `Intl.DateTimeFormat`, so the isolate's first request does not: the first
/// formatter in a process loads ICU's date and time-zone data. That took 12-25 ms in Node 20
/// here, and 11.5 ms of an 85 ms cold start in a profile of the worker on workerd. Every later
/// formatter, for any zone, takes about 0.15 ms. The result is not needed.
pub fn load_time_zone_data() {
    let _ = offset_minutes("UTC", js_sys::Date::now());
}

/// Minutes east of UTC of an IANA zone at `now_ms`, or None (unknown zone, no Intl).
fn offset_minutes(zone: &str, now_ms: f64) -> Option<i32> {
    if zone.is_empty() {
        return None;
    }
    let global = js_sys::global();
    let intl = Reflect::get(&global, &"Intl".into()).ok()?;
    let ctor: Function = Reflect::get(&intl, &"DateTimeFormat".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let opts = Object::new();
    for (k, v) in [
        ("timeZone", zone),
        ("hourCycle", "h23"),
        ("year", "numeric"),
        ("month", "numeric"),
        ("day", "numeric"),
        ("hour", "numeric"),
        ("minute", "numeric"),
    ] {
        Reflect::set(&opts, &k.into(), &v.into()).ok()?;
    }
    let args = Array::of2(&"en-US".into(), &opts);
    let fmt = Reflect::construct(&ctor, &args).ok()?; // RangeError for unknown zones: None
    let format_to_parts: Function = Reflect::get(&fmt, &"formatToParts".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let date = js_sys::Date::new(&JsValue::from_f64(now_ms));
    let parts: Array = format_to_parts.call1(&fmt, &date).ok()?.dyn_into().ok()?;
    let mut f = [0f64; 5]; // year, month, day, hour, minute
    for p in parts.iter() {
        let kind = Reflect::get(&p, &"type".into()).ok()?.as_string()?;
        // Only the numeric parts: the literals between them ("/", ", ", ":") are not numbers.
        let Some(slot) = ["year", "month", "day", "hour", "minute"]
            .iter()
            .position(|k| *k == kind)
        else {
            continue;
        };
        f[slot] = Reflect::get(&p, &"value".into())
            .ok()?
            .as_string()?
            .parse()
            .ok()?;
    }
    let local = js_sys::Date::utc(f[0], f[1] - 1.0)
        + (f[2] - 1.0) * 86_400_000.0
        + f[3] * 3_600_000.0
        + f[4] * 60_000.0;
    let utc_minute = (now_ms / 60_000.0).floor() * 60_000.0;
    let offset = ((local - utc_minute) / 60_000.0).round();
    let max = f64::from(edgerec::context::MAX_TZ_OFFSET_MIN);
    (-max..=max).contains(&offset).then_some(offset as i32)
}
