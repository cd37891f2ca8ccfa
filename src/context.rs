//! Request context: where (geohash), when (local time bin) and on what (device class).
//!
//! Each maps to one row of a context table in shard 0 that is added into the query. The
//! functions here are pure so the worker, the browser and central-sync's trainer compute the
//! same bins from the same inputs.

use crate::error::{Error, ErrorKind, Result};
use crate::format::{DEVICE_CLASSES, MAX_GEOHASH_PRECISION, TIME_BINS};
use crate::hash::geo_bucket;

/// Device classes, in context-table row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Mobile = 0,
    Desktop = 1,
    Tablet = 2,
    Tv = 3,
    Bot = 4,
    Other = 5,
}

impl Device {
    /// All classes in row order.
    pub const ALL: [Device; 6] = [
        Device::Mobile,
        Device::Desktop,
        Device::Tablet,
        Device::Tv,
        Device::Bot,
        Device::Other,
    ];

    /// The class's name as used in events and query parameters.
    pub fn name(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Desktop => "desktop",
            Device::Tablet => "tablet",
            Device::Tv => "tv",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }

    /// Parses a class name (case-insensitive).
    ///
    /// # Errors
    /// [`ErrorKind::UnknownDevice`] for any other string.
    pub fn from_name(name: &str) -> Result<Device> {
        Device::ALL
            .iter()
            .copied()
            .find(|d| d.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                Error::new(ErrorKind::UnknownDevice {
                    name: name.to_string(),
                })
            })
    }

    /// Classifies a request from its User-Agent and, when sent, the `Sec-CH-UA-Mobile` client
    /// hint (`?1` → `Some(true)`). Order matters: bots first (they often claim to be browsers),
    /// then TVs and tablets (whose agents also say "Android" or "Mobile").
    pub fn from_user_agent(user_agent: &str, ch_mobile: Option<bool>) -> Device {
        let ua = user_agent.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
        if has(&[
            "bot",
            "crawler",
            "spider",
            "slurp",
            "headlesschrome",
            "curl/",
            "wget/",
            "python-requests",
        ]) {
            return Device::Bot;
        }
        if has(&[
            "smart-tv", "smarttv", "googletv", "appletv", "hbbtv", "roku", "crkey", "tizen",
            "webos", "bravia", "aftb", "aftt", "aftm",
        ]) {
            return Device::Tv;
        }
        if has(&["ipad", "tablet", "kindle", "silk/", "playbook"])
            || (ua.contains("android") && !ua.contains("mobile"))
        {
            return Device::Tablet;
        }
        if ch_mobile == Some(true) || has(&["mobi", "iphone", "ipod", "android", "windows phone"]) {
            return Device::Mobile;
        }
        if has(&["windows nt", "macintosh", "x11", "cros", "linux x86_64"]) {
            return Device::Desktop;
        }
        if ch_mobile == Some(false) {
            return Device::Desktop;
        }
        Device::Other
    }
}

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// Encodes a position as a geohash of at most [`MAX_GEOHASH_PRECISION`] characters: precision
/// is capped here, at the source, so no finer location is ever computed or stored.
/// Returns `None` for coordinates out of range or not finite.
pub fn geohash_encode(lat: f64, lon: f64, precision: usize) -> Option<String> {
    let valid = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
    if !valid {
        return None;
    }
    let precision = precision.clamp(1, MAX_GEOHASH_PRECISION);
    let (mut lat_lo, mut lat_hi, mut lon_lo, mut lon_hi) = (-90.0, 90.0, -180.0, 180.0);
    let mut out = String::with_capacity(precision);
    let (mut bits, mut value, mut even) = (0, 0usize, true);
    while out.len() < precision {
        let (lo, hi, x) = if even {
            (&mut lon_lo, &mut lon_hi, lon)
        } else {
            (&mut lat_lo, &mut lat_hi, lat)
        };
        let mid = (*lo + *hi) / 2.0;
        value <<= 1;
        if x >= mid {
            value |= 1;
            *lo = mid;
        } else {
            *hi = mid;
        }
        even = !even;
        bits += 1;
        if bits == 5 {
            out.push(BASE32[value] as char);
            bits = 0;
            value = 0;
        }
    }
    Some(out)
}

/// Normalises a client-supplied geohash: lower-cased, cut to `precision` (itself capped at
/// [`MAX_GEOHASH_PRECISION`]), and `None` unless every character is in the geohash alphabet.
pub fn normalize_geohash(geohash: &str, precision: usize) -> Option<String> {
    let precision = precision.clamp(1, MAX_GEOHASH_PRECISION);
    let g: String = geohash
        .trim()
        .chars()
        .take(precision)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if g.is_empty() || !g.bytes().all(|b| BASE32.contains(&b)) {
        return None;
    }
    Some(g)
}

/// Largest timezone offset from UTC in minutes: the IANA zones span UTC−12:00 to UTC+14:00,
/// so anything beyond ±14 h is an error wherever an offset is read (JS API, edge, events).
pub const MAX_TZ_OFFSET_MIN: i32 = 840;

/// The time-of-week bin of a unix timestamp in a time zone `tz_offset_min` minutes east of UTC:
/// 8 three-hour bins, offset by 8 on Saturdays and Sundays. In `0..TIME_BINS`.
pub fn time_bin(ts: i64, tz_offset_min: i32) -> usize {
    let local = ts.saturating_add(i64::from(tz_offset_min) * 60);
    let day = local.div_euclid(86_400);
    let hour = local.rem_euclid(86_400) / 3_600;
    // 1970-01-01 was a Thursday: weekday index 0 = Monday gives (day + 3) mod 7.
    let weekday = (day + 3).rem_euclid(7);
    let weekend = usize::from(weekday >= 5);
    let bin = weekend * 8 + (hour / 3) as usize;
    bin.min(TIME_BINS - 1)
}

/// The context of one request, before it is mapped to table rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Geohash (any length; cut to the model's precision).
    pub geohash: Option<String>,
    /// Device class.
    pub device: Option<Device>,
    /// Unix seconds of the request; `None` leaves the time row out.
    pub ts: Option<i64>,
    /// Minutes east of UTC.
    pub tz_offset_min: i32,
}

/// The rows of the model's context tables a request selects. The one mapping from a request's
/// [`Context`] to numbers the model scores: the engine ranks with it, training learns the
/// context vectors with it, evaluation and the worker's list cache key use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ContextRows {
    /// Time-of-week bin (`0..TIME_BINS`), when the request has a time.
    pub time: Option<u8>,
    /// Device class (`0..DEVICE_CLASSES`).
    pub device: Option<u8>,
    /// Geo bucket, when the request has a geohash and the model a geo table.
    pub geo: Option<u32>,
}

impl Context {
    /// The context-table rows of this request for a model whose geo table has `geo_buckets`
    /// rows keyed by geohash prefixes of `geo_precision` characters (see `Meta::context_rows`).
    pub fn rows(&self, geo_precision: usize, geo_buckets: u32) -> ContextRows {
        ContextRows {
            time: self
                .ts
                .map(|ts| time_bin(ts, self.tz_offset_min).min(TIME_BINS - 1) as u8),
            device: self
                .device
                .map(|d| (d as usize).min(DEVICE_CLASSES - 1) as u8),
            geo: self
                .geohash
                .as_deref()
                .and_then(|g| normalize_geohash(g, geo_precision))
                .and_then(|g| geo_bucket(&g, geo_buckets)),
        }
    }
}
