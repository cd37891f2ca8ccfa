//! edgerec's Cloudflare Worker: the HTTP contract of DESIGN.md on top of the core.
//!
//! - `GET /v1/recommendations`: context from the request (`cf` location and timezone,
//!   User-Agent and client hints; query parameters override), session from the signed token,
//!   ranking by the core. Session-less lists are cached per context bucket in the Cache API.
//! - `POST /v1/events`: updates the session at once and answers with the new token (cookie and
//!   body); forwards the events to central-sync's ingest with `waitUntil`.
//!   Each list served is recorded as an exposure (model, items, positions, scores,
//!   propensities), batched per isolate and sent to the ingest's `POST /v1/exposures`; the
//!   answer's `exposure` id is what a click names to link back to it.
//! - `POST /v1/exposures`: lists a page ranked in the browser and showed, logged the same way.
//! - `GET /v1/health`: which model serves, when it was checked, the last load error.
//! - `GET /v1/model`, `GET /v1/model/<version>/shard-<i>.bin`: the served model, for browsers.
//!
//! Every answer is counted by route, status, model, list-cache state and error code with its
//! latency ([`metrics`]): reported per isolate to central-sync's `POST /v1/edge-metrics`, and
//! written to Workers Analytics Engine (`EDGE_ANALYTICS`) and Workers Logs (`REQUEST_LOG`)
//! where configured.
//!
//! `models/current` names one version or an A/B split (`v1=90,v2=10`, [`Pointer`]): every arm
//! is loaded, each visitor is served by the arm their visitor id hashes to, and the arm travels
//! in the answer and the exposure log.
//!
//! The model lives in the isolate (`MODEL`), is reloaded when `models/current` changes (checked
//! at most every `CHECK_INTERVAL_SECONDS`, and on the cron trigger), and is swapped in only
//! after full validation: a missing, partial or corrupt new model leaves the old one serving.
//! No code on the request path panics; every failure is a JSON error.

pub mod api;
mod context;
pub mod metrics;
pub mod token;

use api::ApiError;
use edgerec::shard::AlignedBytes;
use edgerec::{Engine, Request as RankRequest, Session};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    event, Cache, Env, Fetch, Headers, Method, Request, RequestInit, Response, ScheduleContext,
    ScheduledEvent,
};

use edgerec_contract::exposures::{Exposure, Shown};
use edgerec_contract::keys;
use edgerec_contract::manifest::{Fallback, Manifest};
use edgerec_contract::pointer::Pointer;
use futures_util::StreamExt;

struct Loaded {
    manifest: Manifest,
    /// Mutable only for a paged model, whose requests add pages (never across an await).
    engine: RefCell<Engine>,
    /// A paged model's page cache: when each loaded page was last used.
    pages: RefCell<PageCache>,
    loaded_at_ms: u64,
}

/// Least-recently-used bookkeeping of a paged model's loaded pages.
#[derive(Default)]
struct PageCache {
    last_use: std::collections::BTreeMap<u32, u64>,
    tick: u64,
}

/// Bytes of loaded pages a paged model keeps between requests (`PAGE_CACHE_BYTES`): beside its
/// index, within the isolate's budget.
const PAGE_CACHE_BYTES: u64 = edgerec_contract::manifest::EDGE_PAGE_CACHE_BYTES;

/// Rounds of page reads one request may take: its session's pages, then its candidates'; a
/// third only if concurrent requests evicted some of them in between.
const MAX_PAGE_ROUNDS: usize = 4;

/// Pages one request may read (`MAX_PAGE_READS`): each is a KV subrequest, and Workers cap a
/// request's subrequests (50 on the free plan). A request that needs more is refused with
/// `too_many_pages` rather than reading a large part of the catalog into the isolate (a paged
/// model whose signals reach across the catalog, such as trend counts, can ask for that).
const MAX_PAGE_READS: u64 = 48;

/// The page cache budget of this worker.
fn page_cache_bytes(env: &Env) -> u64 {
    var(env, "PAGE_CACHE_BYTES", PAGE_CACHE_BYTES)
}

/// What serves: the pointer and one loaded model per arm, in the pointer's order.
struct Live {
    pointer: Pointer,
    models: Vec<Rc<Loaded>>,
}

impl Live {
    /// The first arm's model: `/v1/model` for browsers, `/v1/health`'s `model`.
    fn primary(&self) -> &Rc<Loaded> {
        &self.models[0]
    }

    /// The model of the visitor's arm, and the arm's name when the pointer splits traffic.
    fn for_visitor(&self, visitor: u64) -> (&Rc<Loaded>, Option<&str>) {
        let arm = self.pointer.assign(visitor);
        let i = self
            .pointer
            .arms()
            .iter()
            .position(|a| a.version == arm.version)
            .unwrap_or(0);
        let label = self.pointer.is_split().then_some(arm.version.as_str());
        (&self.models[i], label)
    }

    fn version(&self, version: &str) -> Option<&Rc<Loaded>> {
        self.models.iter().find(|m| m.manifest.version == version)
    }
}

#[derive(Default)]
struct ModelCache {
    current: Option<Rc<Live>>,
    fallback: Option<Rc<Vec<String>>>,
    last_check_ms: u64,
    /// When the last load failed, and its code.
    last_error: Option<(u64, &'static str)>,
    /// A load is in flight in this isolate: concurrent requests do not start another one.
    loading: bool,
    /// Loads started in this isolate (for `/v1/health`).
    loads_started: u64,
    /// Consecutive failed loads; each doubles the wait before the next attempt.
    failures: u32,
    /// No load starts before this time (backoff after a failure).
    retry_at_ms: u64,
}

/// The wait after the first failed load; doubled per further failure, up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: u64 = 1_000;
const MAX_BACKOFF_MS: u64 = 60_000;

/// Clears the in-flight flag however the load ends, including when the request that started it
/// is dropped mid-way (a flag left set would stop every later load in the isolate).
struct LoadingGuard;

impl Drop for LoadingGuard {
    fn drop(&mut self) {
        MODEL.with(|m| m.borrow_mut().loading = false);
    }
}

thread_local! {
    static MODEL: RefCell<ModelCache> = RefCell::new(ModelCache::default());
    static RATE: RefCell<api::RateLimiter> = RefCell::new(api::RateLimiter::default());
    static LISTS: RefCell<api::RecentLists<serde_json::Value>> =
        RefCell::new(api::RecentLists::new(RECENT_LISTS));
}

/// Session-less lists an isolate keeps in memory: one per context bucket and `k` in use.
const RECENT_LISTS: usize = 256;

/// Milliseconds since the epoch, from `Date.now()`: `worker::Date::now()` builds a JS `Date`
/// object per call, garbage the isolate's collector has to clear.
pub(crate) fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A variable's trimmed text, `None` when unset or empty.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string().trim().to_string())
        .ok()
        .filter(|v| !v.is_empty())
}

fn var(env: &Env, name: &str, default: u64) -> u64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
}

fn json(value: &serde_json::Value, status: u16) -> worker::Result<Response> {
    let mut r = Response::from_json(value)?.with_status(status);
    r.headers_mut().set("Cache-Control", "no-store")?;
    Ok(r)
}

/// The model store failed on a request path: logged in full, answered with a fixed text.
fn kv_unavailable(e: impl std::fmt::Display) -> ApiError {
    worker::console_error!("edgerec: reading KV: {e}");
    ApiError::new(502, KV_UNAVAILABLE, "the model store could not be read")
}

/// A runtime failure on a request path: logged in full, answered with a fixed text (the
/// runtime's message can name bindings, keys or internals).
fn internal(e: worker::Error) -> ApiError {
    worker::console_error!("edgerec: internal error: {e}");
    ApiError::new(500, "internal", "internal error")
}

fn error_response(e: &ApiError) -> worker::Result<Response> {
    json(&serde_json::to_value(e.body())?, e.status)
}

/// When a check is due, reads `models/current` and, if it names a new version, loads,
/// validates and swaps it in. Failures are recorded and the previous model keeps serving.
/// Returns whether this call swapped in a new model (its request has waited for the load).
async fn refresh(env: &Env, force: bool) -> bool {
    let now = now_ms();
    let interval = var(env, "CHECK_INTERVAL_SECONDS", 30) * 1000;
    // One load in flight per isolate, and none during the backoff after a failure: a cold or
    // failing isolate under load must not start a model download per request. The cron
    // (`force`) is not request-driven and skips the backoff.
    let start = MODEL.with(|m| {
        let mut m = m.borrow_mut();
        let due = force || m.current.is_none() || now.saturating_sub(m.last_check_ms) >= interval;
        if !due || m.loading || (!force && now < m.retry_at_ms) {
            return false;
        }
        m.loading = true;
        m.loads_started += 1;
        m.last_check_ms = now;
        true
    });
    if !start {
        return false;
    }
    let guard = LoadingGuard;
    let result = load(env).await;
    drop(guard);
    let loaded_new = matches!(result, Ok(Some(_)));
    MODEL.with(|m| {
        let mut m = m.borrow_mut();
        match result {
            Ok(loaded) => {
                if let Some(loaded) = loaded {
                    m.current = Some(Rc::new(loaded));
                }
                m.last_error = None;
                m.failures = 0;
                m.retry_at_ms = 0;
            }
            Err(LoadFailure {
                code,
                detail,
                backoff,
            }) => {
                worker::console_error!("edgerec: model load failed ({code}): {detail}");
                m.last_error = Some((now, code));
                if backoff {
                    m.failures = m.failures.saturating_add(1);
                    let wait = FIRST_BACKOFF_MS
                        .saturating_mul(1 << (m.failures - 1).min(16))
                        .min(MAX_BACKOFF_MS);
                    m.retry_at_ms = now_ms().saturating_add(wait);
                }
            }
        }
    });
    if MODEL.with(|m| m.borrow().current.is_none() && m.borrow().fallback.is_none()) {
        if let Ok(kv) = env.kv("MODELS") {
            if let Ok(Some(text)) = kv.get(keys::FALLBACK).text().await {
                let items = serde_json::from_str::<Fallback>(&text)
                    .map(|f| f.items)
                    .unwrap_or_default();
                MODEL.with(|m| m.borrow_mut().fallback = Some(Rc::new(items)));
            }
        }
    }
    loaded_new
}

/// The most shard bytes a model may have here: an isolate has 128 MB, and the model lives in
/// wasm memory once (each shard is copied from KV's buffer into its final aligned buffer), beside
/// the runtime, at most one shard's KV buffer while loading, and the requests in flight.
/// `central-sync publish` refuses larger models with the same figure.
const MODEL_BUDGET_BYTES: u64 = edgerec_contract::manifest::EDGE_MODEL_BUDGET_BYTES;

/// Reads one KV value as bytes: one `get` as an `ArrayBuffer` (outside wasm memory), `None` when
/// the key is missing. A cold-start profile on workerd showed reading a shard as a stream, chunk
/// by chunk through wasm, took a fifth of the isolate's time.
async fn kv_bytes(
    namespace: &JsValue,
    key: &str,
) -> Result<Option<js_sys::Uint8Array>, LoadFailure> {
    let unavailable =
        |e: JsValue| LoadFailure::new(KV_UNAVAILABLE, format!("reading {key}: {e:?}"));
    let get: js_sys::Function = js_sys::Reflect::get(namespace, &"get".into())
        .map_err(unavailable)?
        .dyn_into()
        .map_err(unavailable)?;
    let options = js_sys::Object::new();
    for (name, value) in [
        ("type", JsValue::from("arrayBuffer")),
        ("cacheTtl", JsValue::from(86_400)),
    ] {
        js_sys::Reflect::set(&options, &name.into(), &value).map_err(unavailable)?;
    }
    let pending: js_sys::Promise = get
        .call2(namespace, &key.into(), &options)
        .map_err(unavailable)?
        .dyn_into()
        .map_err(unavailable)?;
    let value = wasm_bindgen_futures::JsFuture::from(pending)
        .await
        .map_err(unavailable)?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    let buffer: js_sys::ArrayBuffer = value
        .dyn_into()
        .map_err(|_| LoadFailure::new(CORRUPT_SHARD, format!("reading {key}: not bytes")))?;
    Ok(Some(js_sys::Uint8Array::new(&buffer)))
}

/// A shard read from KV, copied once into the aligned buffer it is parsed from, its length
/// checked against the manifest first. The KV buffer is dropped after the copy.
fn aligned_shard(
    key: &str,
    bytes: Option<js_sys::Uint8Array>,
    expected: u64,
) -> Result<AlignedBytes, LoadFailure> {
    let Some(bytes) = bytes else {
        return Err(LoadFailure::new(
            PARTIAL_PUBLISH,
            format!("{key} is missing"),
        ));
    };
    if u64::from(bytes.length()) != expected {
        return Err(LoadFailure::new(
            CORRUPT_SHARD,
            format!(
                "{key}: {} bytes, the manifest says {expected}",
                bytes.length()
            ),
        ));
    }
    Ok(AlignedBytes::filled_by(bytes.length() as usize, |dst| {
        bytes.copy_to_uninit(dst)
    }))
}

/// A version's first shard, read from KV under the name central-sync gives it
/// (`keys::shard_file(0)`) while its manifest is still on its way.
struct EarlyShard {
    key: String,
    bytes: js_sys::Uint8Array,
}

/// Why a load produced no model: a stable code, which `/v1/health` shows with a fixed text, and
/// the full detail (keys, runtime errors), which only goes to the worker's log.
struct LoadFailure {
    code: &'static str,
    detail: String,
    /// Whether the next attempt waits out a backoff: yes after a failed model download or
    /// validation, not when no model is published yet (one cheap pointer read).
    backoff: bool,
}

impl LoadFailure {
    fn new(code: &'static str, detail: impl Into<String>) -> LoadFailure {
        LoadFailure {
            code,
            detail: detail.into(),
            backoff: true,
        }
    }
}

const NO_MODEL: &str = "no_model";
const KV_UNAVAILABLE: &str = "kv_unavailable";
const PARTIAL_PUBLISH: &str = "partial_publish";
const BAD_MANIFEST: &str = "bad_manifest";
const OVER_BUDGET: &str = "over_budget";
const CORRUPT_SHARD: &str = "corrupt_shard";
const BAD_MODEL: &str = "bad_model";
const NO_BINDING: &str = "no_binding";
const BAD_POINTER: &str = "bad_pointer";

/// The public text of a load failure's code: fixed, so nothing internal reaches a client.
fn failure_summary(code: &str) -> &'static str {
    match code {
        NO_MODEL => "no model published yet",
        KV_UNAVAILABLE => "the model store could not be read",
        PARTIAL_PUBLISH => "the current version is missing files (partial publish?)",
        BAD_MANIFEST => "the current version's manifest is not valid",
        OVER_BUDGET => "the current model is above this worker's memory budget",
        CORRUPT_SHARD => "a shard of the current version failed validation",
        BAD_MODEL => "the current version's shards do not form one model",
        NO_BINDING => "the worker has no model store binding",
        BAD_POINTER => "models/current is neither a version nor a split of versions",
        _ => "the model could not be loaded",
    }
}

/// Loads the version `models/current` names, unless it is already serving. `Ok(None)` means
/// nothing to do.
async fn load(env: &Env) -> Result<Option<Live>, LoadFailure> {
    let kv = env
        .kv("MODELS")
        .map_err(|e| LoadFailure::new(NO_BINDING, format!("KV binding MODELS: {e}")))?;
    // The same binding as a JS object, for reading shards as one ArrayBuffer (`kv_bytes`).
    let namespace = js_sys::Reflect::get(env, &"MODELS".into())
        .map_err(|e| LoadFailure::new(NO_BINDING, format!("KV binding MODELS: {e:?}")))?;
    let pointer_ttl = var(env, "POINTER_CACHE_TTL_SECONDS", 60).max(60);
    let text = kv
        .get(keys::CURRENT)
        .cache_ttl(pointer_ttl)
        .text()
        .await
        .map_err(|e| LoadFailure::new(KV_UNAVAILABLE, format!("reading models/current: {e}")))?
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let Some(text) = text else {
        return Err(LoadFailure {
            backoff: false,
            ..LoadFailure::new(NO_MODEL, "no model published (models/current is missing)")
        });
    };
    let pointer = Pointer::parse(&text)
        .map_err(|e| LoadFailure::new(BAD_POINTER, format!("models/current: {e}")))?;
    let live = MODEL.with(|m| m.borrow().current.clone());
    if live.as_ref().is_some_and(|l| l.pointer == pointer) {
        return Ok(None);
    }
    // Every arm's manifest first, read together: the arms together must fit the isolate before
    // any shard is copied into it. Arms already loaded are kept, not downloaded again. With the
    // manifests, the first shard of the first arm to download is read under its usual name, so a
    // cold isolate waits for two KV round trips before it can build the model, not three; the
    // read is used only if the manifest names that file (`load_shards`).
    let kept: Vec<Option<Rc<Loaded>>> = pointer
        .arms()
        .iter()
        .map(|arm| live.as_ref().and_then(|l| l.version(&arm.version)).cloned())
        .collect();
    let to_fetch: Vec<&str> = pointer
        .arms()
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| kept.is_none())
        .map(|(arm, _)| arm.version.as_str())
        .collect();
    let early_key = to_fetch
        .first()
        .map(|version| keys::shard(version, &keys::shard_file(0)));
    let (manifests, mut early) = futures_util::future::join(
        futures_util::future::join_all(to_fetch.iter().map(|v| read_manifest(&kv, v))),
        async {
            let key = early_key?;
            // A failed or missing early read is not an error here: the shard is read again
            // by the name the manifest gives, and that read reports what is wrong.
            let bytes = kv_bytes(&namespace, &key).await.ok().flatten()?;
            Some(EarlyShard { key, bytes })
        },
    )
    .await;
    let mut manifests = manifests.into_iter();
    let mut arms = Vec::with_capacity(pointer.arms().len());
    let mut total = 0u64;
    for (arm, kept) in pointer.arms().iter().zip(kept) {
        let next = match kept {
            Some(loaded) => ArmLoad::Kept(loaded),
            None => ArmLoad::Fetch(Box::new(match manifests.next() {
                Some(manifest) => manifest?,
                None => read_manifest(&kv, &arm.version).await?,
            })),
        };
        total += next.manifest().shard_bytes();
        if next.manifest().is_paged() {
            total += page_cache_bytes(env);
        }
        arms.push(next);
    }
    if total > MODEL_BUDGET_BYTES {
        return Err(LoadFailure::new(
            OVER_BUDGET,
            format!(
                "the arms of {text} have {total} bytes of shards together, above this worker's \
                 budget of {MODEL_BUDGET_BYTES} bytes"
            ),
        ));
    }
    let mut models = Vec::with_capacity(arms.len());
    for arm in arms {
        models.push(match arm {
            ArmLoad::Kept(loaded) => loaded,
            ArmLoad::Fetch(manifest) => {
                Rc::new(load_shards(&namespace, *manifest, early.take()).await?)
            }
        });
    }
    Ok(Some(Live { pointer, models }))
}

/// One arm of a new pointer: a model this isolate already has, or a version to download.
enum ArmLoad {
    Kept(Rc<Loaded>),
    Fetch(Box<Manifest>),
}

impl ArmLoad {
    fn manifest(&self) -> &Manifest {
        match self {
            ArmLoad::Kept(loaded) => &loaded.manifest,
            ArmLoad::Fetch(manifest) => manifest,
        }
    }
}

/// Downloads and validates the shards of one version. `early` is its first shard if it was
/// read before the manifest had arrived: used when the manifest names that file, else dropped.
async fn load_shards(
    namespace: &JsValue,
    manifest: Manifest,
    mut early: Option<EarlyShard>,
) -> Result<Loaded, LoadFailure> {
    let version = manifest.version.clone();
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for (position, s) in manifest.shards.iter().enumerate() {
        let key = keys::shard(&version, &s.file);
        let bytes = match early.take().filter(|e| e.key == key) {
            Some(early) => Some(early.bytes),
            None => kv_bytes(namespace, &key).await?,
        };
        let bytes = aligned_shard(&key, bytes, s.bytes)?;
        let shard = edgerec::Shard::from_aligned(bytes).map_err(|e| {
            let detail = format!("model {version}: shard {position} ({key}): {e}");
            LoadFailure::new(CORRUPT_SHARD, detail)
        })?;
        shards.push(shard);
    }
    let engine = Engine::from_shards(shards)
        .map_err(|e| LoadFailure::new(BAD_MODEL, format!("model {version}: {e}")))?;
    if engine.item_count() != manifest.items {
        return Err(LoadFailure::new(
            BAD_MANIFEST,
            format!(
                "model {version}: {} items, the manifest says {}",
                engine.item_count(),
                manifest.items
            ),
        ));
    }
    if engine.is_paged() != manifest.is_paged() || engine.page_count() != manifest.pages.len() {
        return Err(LoadFailure::new(
            BAD_MANIFEST,
            format!(
                "model {version}: {} pages in the index, the manifest lists {}",
                engine.page_count(),
                manifest.pages.len()
            ),
        ));
    }
    Ok(Loaded {
        manifest,
        engine: RefCell::new(engine),
        pages: RefCell::new(PageCache::default()),
        loaded_at_ms: now_ms(),
    })
}

/// Reads a version's manifest and refuses a model above the isolate's budget before any shard
/// is read.
async fn read_manifest(kv: &worker::KvStore, version: &str) -> Result<Manifest, LoadFailure> {
    let key = keys::manifest(version);
    let text = kv
        .get(&key)
        .cache_ttl(86_400)
        .text()
        .await
        .map_err(|e| LoadFailure::new(KV_UNAVAILABLE, format!("reading {key}: {e}")))?
        .ok_or_else(|| LoadFailure::new(PARTIAL_PUBLISH, format!("{key} is missing")))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| LoadFailure::new(BAD_MANIFEST, format!("{key}: {e}")))?;
    let declared = manifest.shard_bytes();
    if manifest
        .shards
        .iter()
        .any(|s| s.bytes > edgerec::format::MAX_SHARD_BYTES)
        || declared > MODEL_BUDGET_BYTES
    {
        return Err(LoadFailure::new(
            OVER_BUDGET,
            format!(
                "model {version}: {declared} bytes of shards, above this worker's budget of \
                 {MODEL_BUDGET_BYTES} bytes (or a shard above the KV value limit)"
            ),
        ));
    }
    Ok(manifest)
}

fn current() -> (Option<Rc<Live>>, Option<Rc<Vec<String>>>) {
    MODEL.with(|m| {
        let m = m.borrow();
        (m.current.clone(), m.fallback.clone())
    })
}

fn session_key(env: &Env) -> Option<Vec<u8>> {
    env.secret("SESSION_KEY")
        .ok()
        .map(|s| s.to_string().into_bytes())
        .filter(|k| k.len() >= 16)
}

/// The verified session of the request, or a fresh one (forged, expired, oversized or missing
/// tokens all start fresh).
fn read_session(req: &Request, key: Option<&[u8]>) -> token::Verified {
    let headers = req.headers();
    let raw = token::from_headers(
        headers.get("X-Edgerec-Session").ok().flatten().as_deref(),
        headers.get("Cookie").ok().flatten().as_deref(),
    );
    let now = now_ms() / 1000;
    raw.zip(key)
        .and_then(|(t, k)| token::decode(k, &t, now))
        .unwrap_or_else(|| token::Verified {
            visitor: random_u64(),
            expires: 0,
            session: Session::new(),
        })
}

/// A new visitor id from the runtime's CSPRNG: ids must not be guessable.
fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes())
}

/// Random bytes from the runtime's CSPRNG (`crypto.getRandomValues`). `Math.random` is only the
/// fallback for a runtime without Web Crypto, which workerd always has.
fn random_bytes<const N: usize>() -> [u8; N] {
    let buf = js_sys::Uint8Array::new_with_length(N as u32);
    let filled = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()
        .and_then(|crypto| {
            let fill: js_sys::Function = js_sys::Reflect::get(&crypto, &"getRandomValues".into())
                .ok()?
                .dyn_into()
                .ok()?;
            fill.call1(&crypto, &buf).ok()
        });
    let mut bytes = [0u8; N];
    if filled.is_some() {
        buf.copy_to(&mut bytes);
        return bytes;
    }
    worker::console_warn!("edgerec: no crypto.getRandomValues; falling back to Math.random");
    for b in &mut bytes {
        *b = (js_sys::Math::random() * 256.0) as u8;
    }
    bytes
}

/// The fixed strings every request hands to JS (binding and variable names, header names and
/// values, `cf` fields), interned once per isolate. Without this, each crossing decodes the
/// string again into a new JS string through a fresh view of wasm memory: 22 strings and about
/// 1.8 KB of JS garbage per ranked request, a fifth of what the isolate's collector then has to
/// clear (`node scripts/profile-workerd.mjs --heap`). With wasm-bindgen's `enable-interning`,
/// an interned `&str` crosses as the cached JS string (a hash lookup). Strings left out of this
/// list still work; they are only decoded on each crossing.
const INTERNED: &[&str] = &[
    // Settings read per request (`var`, `setting`, `env.secret`, bindings).
    "CHECK_INTERVAL_SECONDS",
    "POINTER_CACHE_TTL_SECONDS",
    "SESSION_KEY",
    "MAX_K",
    "DEFAULT_K",
    "PRECOMPUTED_TTL_SECONDS",
    "SESSION_TTL_SECONDS",
    "EVENTS_PER_MINUTE_PER_SESSION",
    "EVENTS_PER_MINUTE_PER_IP",
    "EXPOSURE_BATCH",
    "EXPOSURE_FLUSH_SECONDS",
    "EDGE_METRICS_FLUSH_SECONDS",
    "INGEST_URL",
    EDGE_METRICS_SWITCH,
    "REQUEST_LOG",
    "EDGE_ANALYTICS",
    "MODELS",
    // Headers read and written, and their fixed values.
    "X-Edgerec-Session",
    "X-Edgerec-Model",
    "X-Edgerec-Cache",
    "Cookie",
    "User-Agent",
    "Sec-CH-UA-Mobile",
    "Cache-Control",
    "no-store",
    "content-type",
    "application/json",
    "bypass",
    "hit",
    "miss",
    // The request's `cf` object and the fields the context reads.
    "cf",
    "latitude",
    "longitude",
    "timezone",
];

/// Runs once when the isolate loads the script, before it serves anything. Cloudflare loads a
/// worker's script while the visitor's TLS handshake is still going on, so work done here is
/// work the first request does not wait for. Only work without I/O can move here (the model
/// needs KV, which a script cannot read at startup).
#[event(start)]
fn start() {
    for s in INTERNED {
        wasm_bindgen::intern(s);
    }
    context::load_time_zone_data();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: worker::Context) -> worker::Result<Response> {
    let started = now_ms();
    let route_label = metrics::route_label(&req.path());
    let (answer, error) = match route(req, &env, &ctx).await {
        Ok(r) => (Ok(r), ""),
        Err(e) => (error_response(&e), e.code),
    };
    if let Ok(r) = &answer {
        let header = |name: &str| r.headers().get(name).ok().flatten();
        let labels = metrics::labels(
            route_label,
            r.status_code(),
            header("X-Edgerec-Model").as_deref(),
            header("X-Edgerec-Cache").as_deref(),
            error,
        );
        let ms = now_ms().saturating_sub(started) as f64;
        record_request(&env, &ctx, labels, ms);
    }
    answer
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    refresh(&env, true).await;
    drain_spool(&env).await;
    // An isolate that served requests since its last report sends it now (the cron's isolate
    // only; others send on their next request after the interval).
    let now = now_ms();
    if let Some(ingest) = Ingest::edge_metrics(&env) {
        if EDGE.with(|e| e.borrow().is_due(now, 0)) {
            let report = EDGE.with(|e| e.borrow_mut().take_report(now, &isolate_id()));
            send_edge_report(&ingest, &report).await;
        }
    }
}

thread_local! {
    static EDGE: RefCell<metrics::IsolateTallies> = const { RefCell::new(metrics::IsolateTallies::new()) };
    static ISOLATE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// This isolate's id in its metric reports, picked at its first report.
fn isolate_id() -> String {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        if i.is_empty() {
            *i = format!("i{:016x}", random_u64());
        }
        i.clone()
    })
}

/// Counts one answer (`metrics`): into the isolate's report to central-sync (sent after the
/// response once `EDGE_METRICS_FLUSH_SECONDS`, default 60, have passed), one Analytics Engine
/// data point when the `EDGE_ANALYTICS` binding exists, one log line when `REQUEST_LOG` is
/// `json`. Latency is what the Workers clock shows: it advances on I/O (KV, cache, fetches),
/// not during computation, so CPU time is not in it (Workers' own analytics has CPU time).
fn record_request(
    env: &Env,
    ctx: &worker::Context,
    labels: edgerec_contract::edge_metrics::Labels,
    ms: f64,
) {
    if let Ok(dataset) = env.analytics_engine("EDGE_ANALYTICS") {
        let p = metrics::data_point(&labels, ms);
        let point = worker::AnalyticsEngineDataPointBuilder::new()
            .indexes([p.index.as_str()])
            .blobs(p.blobs.to_vec())
            .doubles(p.doubles.to_vec())
            .build();
        if let Err(e) = dataset.write_data_point(&point) {
            worker::console_warn!("edgerec: analytics engine write failed: {e}");
        }
    }
    if setting(env, "REQUEST_LOG").is_some_and(|v| v.eq_ignore_ascii_case("json")) {
        worker::console_log!("{}", metrics::log_line(&labels, ms));
    }
    if !Ingest::sibling_on(env, EDGE_METRICS_SWITCH) {
        return;
    }
    let now = now_ms();
    let flush_ms = var(env, "EDGE_METRICS_FLUSH_SECONDS", 60) * 1000;
    let due = EDGE.with(|e| {
        let mut e = e.borrow_mut();
        e.observe(labels, ms, now);
        e.is_due(now, flush_ms)
    });
    if due {
        send_edge_report_later(env, ctx, now);
    }
}

/// Takes the isolate's report and sends it after the response (`waitUntil`).
fn send_edge_report_later(env: &Env, ctx: &worker::Context, now: u64) {
    let Some(ingest) = Ingest::edge_metrics(env) else {
        return;
    };
    let report = EDGE.with(|e| e.borrow_mut().take_report(now, &isolate_id()));
    ctx.wait_until(async move { send_edge_report(&ingest, &report).await });
}

/// The variable that turns the edge's metric reports off.
const EDGE_METRICS_SWITCH: &str = "EDGE_METRICS";

/// One attempt: metrics are not worth a retry or the spool (the next report carries on).
async fn send_edge_report(ingest: &Ingest, report: &edgerec_contract::edge_metrics::EdgeReport) {
    let Ok(body) = serde_json::to_string(report) else {
        return;
    };
    match ingest.send(&body).await {
        Delivery::Stored => {}
        Delivery::Refused(code) => {
            worker::console_error!("edgerec: ingest refused an edge metrics report ({code})");
        }
        Delivery::Failed(why) => {
            worker::console_warn!("edgerec: edge metrics report lost: ingest {why}");
        }
    }
}

/// Bytes of this module's linear memory.
fn wasm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Reads the request body, refusing (413) a declared `Content-Length` above `max` before
/// reading anything and a streamed body as soon as it passes `max`: one large request must not
/// fill the isolate's memory (and with it drop the loaded model).
async fn read_body_capped(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(api::body_too_large());
    }
    let mut body = Vec::new();
    // No body at all reads as empty, which the event parser answers with a JSON error.
    let Ok(mut stream) = req.stream() else {
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            worker::console_warn!("edgerec: reading a request body: {e}");
            ApiError::new(400, "bad_body", "the request body could not be read")
        })?;
        if body.len() + chunk.len() > max {
            return Err(api::body_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn route(mut req: Request, env: &Env, ctx: &worker::Context) -> Result<Response, ApiError> {
    let path = req.path();
    let method = req.method();
    match (method.clone(), path.as_str()) {
        (Method::Get, "/v1/health") => {
            refresh(env, false).await;
            health().map_err(internal)
        }
        (Method::Get, "/v1/recommendations") => {
            let loaded_new = refresh(env, false).await;
            recommendations(&req, env, ctx, loaded_new).await
        }
        (Method::Post, "/v1/events") => {
            refresh(env, false).await;
            let body = read_body_capped(&mut req, api::MAX_BODY_BYTES).await?;
            events(&req, env, ctx, &body)
        }
        (Method::Post, "/v1/exposures") => {
            refresh(env, false).await;
            let body = read_body_capped(&mut req, api::MAX_BODY_BYTES).await?;
            browser_exposures(&req, env, ctx, &body)
        }
        (Method::Get, "/v1/model") => {
            refresh(env, false).await;
            let (model, _) = current();
            let live = model.ok_or_else(|| ApiError::new(503, "no_model", "no model is loaded"))?;
            // Browsers score with the primary arm: splits are assigned at the edge.
            let manifest = &live.primary().manifest;
            let mut r =
                json(&serde_json::to_value(manifest).unwrap_or_default(), 200).map_err(internal)?;
            r.headers_mut()
                .set("X-Edgerec-Model", &manifest.version)
                .map_err(internal)?;
            Ok(r)
        }
        (Method::Get, p) if p.starts_with("/v1/model/") => shard(p, env).await,
        (
            _,
            "/v1/health" | "/v1/recommendations" | "/v1/events" | "/v1/exposures" | "/v1/model",
        ) => Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("{method:?} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            404,
            "not_found",
            format!("no route for {path}"),
        )),
    }
}

fn health() -> worker::Result<Response> {
    let (model, fallback) = current();
    let (last_check, last_error, loads) = MODEL.with(|m| {
        let m = m.borrow();
        let retry_in = m.retry_at_ms.saturating_sub(now_ms());
        let loads = serde_json::json!({"started": m.loads_started, "in_flight": m.loading,
            "consecutive_failures": m.failures, "retry_in_ms": retry_in});
        (m.last_check_ms, m.last_error, loads)
    });
    let status = match (&model, &last_error) {
        (Some(_), None) => "ok",
        (Some(_), Some(_)) => "degraded",
        (None, _) => "fallback",
    };
    let describe = |m: &Loaded| {
        let engine = m.engine.borrow();
        // A paged model: its page count, and the pages and bytes this isolate holds now.
        let pages = engine.is_paged().then(|| {
            serde_json::json!({
                "count": engine.page_count(), "loaded": engine.loaded_pages().len(),
                "loaded_bytes": engine.loaded_page_bytes(),
            })
        });
        serde_json::json!({
            "version": m.manifest.version, "items": m.manifest.items, "dim": m.manifest.dim,
            "dtype": m.manifest.dtype, "shards": m.manifest.shards.len(), "loaded_at_ms": m.loaded_at_ms,
            "pages": pages,
        })
    };
    let body = serde_json::json!({
        "status": status,
        "model": model.as_ref().map(|live| describe(live.primary())),
        // With an A/B split: every arm, its weight and model.
        "arms": model.as_ref().filter(|live| live.pointer.is_split()).map(|live| {
            live.pointer.arms().iter().zip(&live.models).map(|(arm, m)| {
                serde_json::json!({"version": arm.version, "weight": arm.weight, "model": describe(m)})
            }).collect::<Vec<_>>()
        }),
        "fallback": model.is_none(),
        "fallback_items": fallback.map_or(0, |f| f.len()),
        "last_check_ms": last_check,
        "loads": loads,
        // Linear memory never shrinks, so this is the isolate's peak wasm heap so far (the
        // model, one load's buffers, the requests): what the 128 MB isolate limit bounds.
        "wasm_memory_bytes": wasm_memory_bytes(),
        // Which of the bundle's two builds this isolate runs (see scripts/build-worker.sh).
        "wasm_build": if cfg!(target_feature = "relaxed-simd") { "relaxed-simd" } else { "simd128" },
        "last_error": last_error.map(|(at, code)| serde_json::json!({
            "at_ms": at, "code": code, "message": failure_summary(code),
        })),
    });
    json(&body, 200)
}

/// `GET /v1/model/<version>/shard-<i>.bin`: shard `i` of `version`, from the loaded model when it
/// is that version, otherwise from KV by the version's immutable keys. Any isolate serves any
/// published version, so a page that read one manifest never gets another version's shard.
/// `page-<i>.bin` is page `i` of a paged model, always from KV (an isolate holds only some).
async fn shard(path: &str, env: &Env) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(404, "not_found", format!("no such shard: {path}"));
    let rest = path.trim_start_matches("/v1/model/");
    let (version, file) = rest.split_once('/').ok_or_else(not_found)?;
    let numbered = |prefix: &str| -> Option<usize> {
        file.strip_prefix(prefix)
            .and_then(|f| f.strip_suffix(".bin"))
            .and_then(|i| i.parse().ok())
    };
    let (index, page) = match (numbered("shard-"), numbered("page-")) {
        (Some(i), _) => (i, false),
        (None, Some(i)) => (i, true),
        (None, None) => return Err(not_found()),
    };
    if version.is_empty() || version.contains(['/', '\\', '.']) {
        return Err(not_found());
    }
    let (model, _) = current();
    let loaded = model
        .as_ref()
        .and_then(|live| live.version(version))
        .filter(|_| !page);
    let bytes = match loaded {
        Some(m) => m
            .engine
            .borrow()
            .shard_bytes(index)
            .ok_or_else(not_found)?
            .to_vec(),
        None => {
            let kv = env.kv("MODELS").map_err(internal)?;
            let manifest: Manifest = kv
                .get(&keys::manifest(version))
                .cache_ttl(86_400)
                .json()
                .await
                .map_err(kv_unavailable)?
                .ok_or_else(not_found)?;
            let entries = if page {
                &manifest.pages
            } else {
                &manifest.shards
            };
            let entry = entries.get(index).ok_or_else(not_found)?;
            kv.get(&keys::shard(version, &entry.file))
                .cache_ttl(86_400)
                .bytes()
                .await
                .map_err(kv_unavailable)?
                .ok_or_else(not_found)?
        }
    };
    let mut r = Response::from_bytes(bytes).map_err(internal)?;
    let h = r.headers_mut();
    h.set("Content-Type", "application/octet-stream")
        .map_err(internal)?;
    // Versioned URLs never change content.
    h.set("Cache-Control", "public, max-age=31536000, immutable")
        .map_err(internal)?;
    Ok(r)
}

async fn recommendations(
    req: &Request,
    env: &Env,
    worker_ctx: &worker::Context,
    loaded_new: bool,
) -> Result<Response, ApiError> {
    let url = req.url().map_err(internal)?;
    let max_k = var(env, "MAX_K", 100) as usize;
    let o = api::parse_query(
        url.query_pairs()
            .map(|(a, b)| (a.into_owned(), b.into_owned())),
        max_k,
    )?;
    let k = o.k.unwrap_or(var(env, "DEFAULT_K", 10) as usize).min(max_k);
    let ctx = context::from_request(req, &o);
    let key = session_key(env);
    let visitor = read_session(req, key.as_deref());
    let (live, fallback) = current();
    let Some(live) = live else {
        return fallback_list(fallback.as_deref(), &o.exclude, k, visitor.session.len());
    };
    let (model, arm) = live.for_visitor(visitor.visitor);
    // Only lists without a session or exclusions are shared; the rest of the answer is always
    // this request's own.
    let cache_url = (visitor.session.is_empty() && o.exclude.is_empty())
        .then(|| list_cache_url(model, k, &ctx));
    let ttl_ms = var(env, "PRECOMPUTED_TTL_SECONDS", 60).saturating_mul(1000);
    let cached = match &cache_url {
        Some(url) => match LISTS.with(|l| l.borrow().get(url, now_ms())) {
            Some(items) => Some(items),
            // A request that has just waited for a model load does not wait for the Cache API
            // as well: ranking one list costs less than the round trip, and the list is
            // written to the cache after the answer either way.
            None if loaded_new => None,
            None => {
                let items = cached_list(url).await;
                if let Some(items) = &items {
                    remember_list(url, items, ttl_ms);
                }
                items
            }
        },
        None => None,
    };
    let hit = cached.is_some();
    let items = match cached {
        Some(items) => items,
        None => {
            let items = rank(model, env, &visitor.session, &ctx, &o.exclude, k).await?;
            if let Some(url) = cache_url.clone() {
                remember_list(&url, &items, ttl_ms);
                // The write runs after the answer: the first visitor of a bucket does not wait
                // for it (it was the largest single piece of a cold request's time).
                let list = items.clone();
                worker_ctx.wait_until(async move { store_list(&url, &list, ttl_ms / 1000).await });
            }
            items
        }
    };
    let exposure = log_exposure(env, worker_ctx, model, arm, visitor.visitor, &items);
    let body = serde_json::json!({
        "items": items,
        "model": model.manifest.version,
        "exposure": exposure,
        "arm": arm,
        "fallback": false,
        "session_events": visitor.session.len(),
        "context": {
            "geohash": ctx.geohash, "device": ctx.device.map(|d| d.name()), "ts": ctx.ts,
            "tz_offset_min": ctx.tz_offset_min,
        },
    });
    let mut r = json(&body, 200).map_err(internal)?;
    let cache_state = match (&cache_url, hit) {
        (None, _) => "bypass",
        (Some(_), true) => "hit",
        (Some(_), false) => "miss",
    };
    let headers = r.headers_mut();
    headers
        .set("X-Edgerec-Cache", cache_state)
        .map_err(internal)?;
    headers
        .set("X-Edgerec-Model", &model.manifest.version)
        .map_err(internal)?;
    Ok(r)
}

/// The answer without a model: the published fallback list, unscored.
fn fallback_list(
    fallback: Option<&Vec<String>>,
    exclude: &[String],
    k: usize,
    session_events: usize,
) -> Result<Response, ApiError> {
    let items: Vec<serde_json::Value> = fallback
        .map(|f| {
            f.iter()
                .filter(|id| !exclude.contains(id))
                .take(k)
                .map(|id| serde_json::json!({"id": id, "score": null}))
                .collect()
        })
        .unwrap_or_default();
    let body = serde_json::json!({"items": items, "model": null, "fallback": true, "session_events": session_events});
    json(&body, 200).map_err(internal)
}

/// The Cache API key of a session-less list. Requests that map to the same context rows and the
/// same trend window get the same list: the core's mappings from request to rows and window
/// decide what may share an entry.
fn list_cache_url(model: &Loaded, k: usize, ctx: &edgerec::Context) -> String {
    let engine = model.engine.borrow();
    let meta = engine.meta();
    let rows = meta.context_rows(ctx);
    let window = edgerec::engine::trend_window(meta, ctx.ts);
    let row = |r: Option<u32>| r.map_or("-".to_string(), |r| r.to_string());
    format!(
        "https://edgerec.cache/v1/precomputed/{}/{k}/t{}/d{}/g{}/w{}-{}",
        model.manifest.version,
        row(rows.time.map(u32::from)),
        row(rows.device.map(u32::from)),
        row(rows.geo),
        window.start,
        window.end,
    )
}

/// A cached list, if the Cache API has one (a failed read is a miss).
async fn cached_list(url: &str) -> Option<serde_json::Value> {
    let mut hit = Cache::default().get(url, false).await.ok()??;
    serde_json::from_str(&hit.text().await.ok()?).ok()
}

/// Keeps a list in the isolate's memory beside the Cache API (`RecentLists`).
fn remember_list(url: &str, items: &serde_json::Value, ttl_ms: u64) {
    LISTS.with(|l| l.borrow_mut().put(url, items.clone(), now_ms(), ttl_ms));
}

/// Caches a list for `ttl` seconds; a failed write only costs the next request a ranking.
async fn store_list(url: &str, items: &serde_json::Value, ttl: u64) {
    if let Ok(mut cached) = Response::from_json(items) {
        let control = format!("public, max-age={ttl}");
        if cached.headers_mut().set("Cache-Control", &control).is_ok() {
            let _ = Cache::default().put(url, cached).await;
        }
    }
}

/// Ranks with the core: the answer's `items`. A paged model reads the pages the request needs
/// and the isolate does not hold from KV (together, at most [`MAX_PAGE_ROUNDS`] times), then
/// trims its page cache to the budget, least recently used first.
async fn rank(
    model: &Loaded,
    env: &Env,
    session: &Session,
    ctx: &edgerec::Context,
    exclude: &[String],
    k: usize,
) -> Result<serde_json::Value, ApiError> {
    let request = RankRequest {
        k,
        context: ctx.clone(),
        exclude: exclude.to_vec(),
        ..RankRequest::default()
    };
    let max_reads = var(env, "MAX_PAGE_READS", MAX_PAGE_READS) as usize;
    let mut reads = 0usize;
    for _ in 0..MAX_PAGE_ROUNDS {
        // The borrow ends with the statement: none is held across the reads below.
        let ranked = model.engine.borrow().try_recommend(session, &request);
        match ranked {
            Ok(ranked) => {
                let engine = model.engine.borrow();
                let items = ranked
                    .iter()
                    .map(|r| serde_json::json!({"id": engine.item_id(r.index).unwrap_or(""), "score": r.score}))
                    .collect();
                if engine.is_paged() {
                    drop(engine);
                    trim_pages(model, env, session, &ranked);
                }
                return Ok(items);
            }
            Err(edgerec::engine::MissingPages(missing)) => {
                reads += missing.len();
                if reads > max_reads {
                    return Err(ApiError::new(
                        503,
                        "too_many_pages",
                        format!(
                            "this request needs more than {max_reads} pages of the model \
                             (MAX_PAGE_READS)"
                        ),
                    ));
                }
                read_pages(model, env, &missing).await?
            }
        }
    }
    Err(ApiError::new(
        503,
        "pages_unavailable",
        "the model's pages for this request could not be kept in memory; try again",
    ))
}

/// Reads pages of a paged model from KV, together, checks each against the manifest and the
/// index, and adds them to the engine.
async fn read_pages(model: &Loaded, env: &Env, missing: &[u32]) -> Result<(), ApiError> {
    let failed = |f: LoadFailure| {
        worker::console_error!("edgerec: reading pages ({}): {}", f.code, f.detail);
        ApiError::new(503, f.code, "the model's pages could not be read")
    };
    let namespace = js_sys::Reflect::get(env, &"MODELS".into()).map_err(|e| {
        failed(LoadFailure::new(
            NO_BINDING,
            format!("KV binding MODELS: {e:?}"),
        ))
    })?;
    let version = &model.manifest.version;
    let reads = missing.iter().map(|&p| {
        let namespace = &namespace;
        async move {
            let entry = model.manifest.pages.get(p as usize).ok_or_else(|| {
                LoadFailure::new(BAD_MANIFEST, format!("model {version}: no page {p}"))
            })?;
            let key = keys::shard(version, &entry.file);
            let bytes = kv_bytes(namespace, &key).await?;
            let page = edgerec::Shard::from_aligned(aligned_shard(&key, bytes, entry.bytes)?)
                .map_err(|e| LoadFailure::new(CORRUPT_SHARD, format!("{key}: {e}")))?;
            if !entry.names_checksum(page.header().checksum) {
                return Err(LoadFailure::new(
                    CORRUPT_SHARD,
                    format!("{key}: checksum differs from the manifest"),
                ));
            }
            Ok(page)
        }
    });
    let pages = futures_util::future::join_all(reads).await;
    let mut engine = model.engine.borrow_mut();
    let mut cache = model.pages.borrow_mut();
    for page in pages {
        let page = page.map_err(failed)?;
        let number = page.header().shard_index;
        engine
            .add_page(page)
            .map_err(|e| failed(LoadFailure::new(BAD_MODEL, format!("page {number}: {e}"))))?;
        cache.tick += 1;
        let tick = cache.tick;
        cache.last_use.insert(number, tick);
    }
    Ok(())
}

/// Marks the pages a ranking used (its session's items' and its results') as used now, then
/// drops least recently used pages until the loaded pages fit the budget.
fn trim_pages(model: &Loaded, env: &Env, session: &Session, ranked: &[edgerec::Recommendation]) {
    let mut engine = model.engine.borrow_mut();
    let mut cache = model.pages.borrow_mut();
    cache.tick += 1;
    let tick = cache.tick;
    let used = session
        .events()
        .iter()
        .filter_map(|e| engine.find_key(e.key))
        .chain(ranked.iter().map(|r| r.index))
        .filter_map(|index| engine.page_of(index));
    let used: Vec<u32> = used.collect();
    for page in used {
        cache.last_use.insert(page, tick);
    }
    let budget = page_cache_bytes(env) as usize;
    while engine.loaded_page_bytes() > budget {
        let Some((&oldest, _)) = cache.last_use.iter().min_by_key(|(_, &t)| t) else {
            break;
        };
        cache.last_use.remove(&oldest);
        engine.drop_page(oldest);
    }
}

/// Lists waiting to be sent to the ingest's `POST /v1/exposures`: one subrequest per batch,
/// not per list served.
#[derive(Default)]
struct ExposureBuffer {
    /// Each exposure as JSON.
    pending: Vec<String>,
    bytes: usize,
    /// When the oldest pending exposure was recorded.
    oldest_ms: u64,
}

thread_local! {
    static EXPOSURES: RefCell<ExposureBuffer> = RefCell::new(ExposureBuffer::default());
}

/// A batch is sent before it could pass this size, well under the ingest's 1 MiB limit.
const EXPOSURE_BATCH_MAX_BYTES: usize = 256 * 1024;

/// Records the list a visitor is shown (issue 15's exposure log) and returns its id, which the
/// answer carries so the page can name it in the click's event (`exposure`). Exposures are
/// batched per isolate: a batch is sent (`waitUntil`, with the events' retries and spool) when
/// it holds `EXPOSURE_BATCH` lists (default 25) or its oldest is `EXPOSURE_FLUSH_SECONDS` old
/// (default 10). `None` when exposures are off (no ingest, or `EXPOSURES = "off"`).
fn log_exposure(
    env: &Env,
    ctx: &worker::Context,
    model: &Loaded,
    arm: Option<&str>,
    visitor: u64,
    items: &serde_json::Value,
) -> Option<String> {
    let ingest = Ingest::from_env(env, Stream::Exposures)?;
    let listed = items.as_array().filter(|l| !l.is_empty())?;
    let id = format!("x{:016x}{:016x}", random_u64(), random_u64());
    let items = listed
        .iter()
        .enumerate()
        .map(|(position, it)| Shown {
            item: it["id"].as_str().unwrap_or_default().to_string(),
            position: position as u32,
            score: it["score"].as_f64(),
            // The worker's lists are deterministic: each item had probability 1 of its slot.
            propensity: it["propensity"].as_f64().unwrap_or(1.0),
        })
        .collect();
    let exposure = Exposure {
        id: id.clone(),
        user: visitor_user(visitor),
        ts: (now_ms() / 1000) as i64,
        model: model.manifest.version.clone(),
        arm: arm.map(str::to_string),
        items,
    };
    buffer_exposure(env, ctx, ingest, &exposure);
    Some(id)
}

/// Adds an exposure to the isolate's batch, sending the batch when it is due (`log_exposure`).
fn buffer_exposure(env: &Env, ctx: &worker::Context, ingest: Ingest, exposure: &Exposure) {
    let Ok(exposure) = serde_json::to_string(exposure) else {
        return;
    };
    let now = now_ms();
    let batch = var(env, "EXPOSURE_BATCH", 25).clamp(1, 500) as usize;
    let flush_ms = var(env, "EXPOSURE_FLUSH_SECONDS", 10) * 1000;
    let ready = EXPOSURES.with(|b| {
        let mut b = b.borrow_mut();
        if b.pending.is_empty() {
            b.oldest_ms = now;
        }
        b.bytes += exposure.len() + 1;
        b.pending.push(exposure);
        let due = b.pending.len() >= batch
            || b.bytes >= EXPOSURE_BATCH_MAX_BYTES
            || now.saturating_sub(b.oldest_ms) >= flush_ms;
        due.then(|| std::mem::take(&mut *b))
    });
    if let Some(ready) = ready {
        let body = format!("[{}]", ready.pending.join(","));
        send_later(env, ctx, ingest, Stream::Exposures, body);
    }
}

/// `POST /v1/exposures`: lists a page ranked in the browser (with the npm package's
/// `Engine.exposure`) and showed. Same guards as events (session key, cross-site check, rate
/// limit); the visitor, time and id scope are the edge's (`api::parse_exposures`); the model
/// must be one this isolate serves and every item one it knows. Logged like the edge's own
/// lists; the answer lists the stored ids, which clicks name in their `exposure` field.
fn browser_exposures(
    req: &Request,
    env: &Env,
    ctx: &worker::Context,
    body: &[u8],
) -> Result<Response, ApiError> {
    let post = VisitorPost::check(req, env)?;
    let lists = api::parse_exposures(body, &post.user, post.now as i64)?;
    post.admit(env, lists.len())?;
    let (live, _) = current();
    let live = live.ok_or_else(|| ApiError::new(503, "no_model", "no model is loaded"))?;
    for (i, x) in lists.iter().enumerate() {
        let model = live.version(&x.model).ok_or_else(|| {
            ApiError::new(
                400,
                "unknown_model",
                format!("exposure {i}: model {:?} is not served here", x.model),
            )
        })?;
        check_known_items(model, x.items.iter().map(|s| s.item.as_str())).map_err(|mut e| {
            e.message = format!("exposure {i}: {}", e.message);
            e
        })?;
    }
    let ids: Vec<&str> = lists.iter().map(|x| x.id.as_str()).collect();
    let logged = match Ingest::from_env(env, Stream::Exposures) {
        Some(ingest) => {
            for x in &lists {
                buffer_exposure(env, ctx, ingest.clone(), x);
            }
            true
        }
        None => false,
    };
    let body = serde_json::json!({"accepted": if logged { lists.len() } else { 0 }, "exposures": ids, "logged": logged});
    json(&body, 200).map_err(internal)
}

fn events(
    req: &Request,
    env: &Env,
    ctx: &worker::Context,
    body: &[u8],
) -> Result<Response, ApiError> {
    let VisitorPost {
        key,
        mut visitor,
        user,
        now,
        ip,
    } = VisitorPost::check(req, env)?;
    let mut posted = api::parse_events(body, &user, now as i64)?;
    admit(env, &user, &ip, posted.len() as u32, now)?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    // Automated clients stay out of training: their events are marked with the bot device
    // class (central-sync stores them but does not learn from them).
    let ua = header("User-Agent").unwrap_or_default();
    if edgerec::Device::from_user_agent(&ua, None) == edgerec::Device::Bot {
        for e in &mut posted {
            e.device = Some(edgerec::Device::Bot.name().to_string());
        }
    }
    if let (Some(live), _) = current() {
        check_known_items(
            live.for_visitor(visitor.visitor).0,
            posted.iter().map(|e| e.item.as_str()),
        )?;
    }
    for e in &posted {
        visitor
            .session
            .observe(&e.item, e.kind.core(), e.ts.max(0) as u64);
    }
    let ttl = var(env, "SESSION_TTL_SECONDS", 30 * 86_400);
    let nonce = random_bytes::<{ token::NONCE_LEN }>();
    let token = token::encode(&key, nonce, visitor.visitor, now + ttl, &visitor.session);
    forward(env, ctx, &posted);
    let body = serde_json::json!({"session": token, "accepted": posted.len(), "session_events": visitor.session.len()});
    let mut r = json(&body, 200).map_err(internal)?;
    r.headers_mut()
        .set("Set-Cookie", &token::cookie(&token, ttl))
        .map_err(internal)?;
    Ok(r)
}

/// A post into a visitor's session, past the checks every such post passes first: the session
/// key must be set and the post must not come from another site.
struct VisitorPost {
    key: Vec<u8>,
    visitor: token::Verified,
    /// The event log's id of the visitor.
    user: String,
    /// Unix seconds.
    now: u64,
    ip: String,
}

impl VisitorPost {
    fn check(req: &Request, env: &Env) -> Result<VisitorPost, ApiError> {
        let key = session_key(env).ok_or_else(|| {
            ApiError::new(
                503,
                "no_session_key",
                "the SESSION_KEY secret is not set (at least 16 bytes)",
            )
        })?;
        let headers = req.headers();
        let header = |name: &str| headers.get(name).ok().flatten();
        check_cross_site(env, &header)?;
        let visitor = read_session(req, Some(&key));
        Ok(VisitorPost {
            user: visitor_user(visitor.visitor),
            ip: header("CF-Connecting-IP").unwrap_or_default(),
            now: now_ms() / 1000,
            key,
            visitor,
        })
    }

    /// The rate limits (`admit`) for `n` records.
    fn admit(&self, env: &Env, n: usize) -> Result<(), ApiError> {
        admit(env, &self.user, &self.ip, n as u32, self.now)
    }
}

/// CSRF: JSON only, from this site or an allowed origin (`api::check_event_post`).
fn check_cross_site(env: &Env, header: &dyn Fn(&str) -> Option<String>) -> Result<(), ApiError> {
    let (content_type, origin, fetch_site, host) = (
        header("Content-Type"),
        header("Origin"),
        header("Sec-Fetch-Site"),
        header("Host"),
    );
    let allowed = env
        .var("ALLOWED_ORIGINS")
        .map(|v| v.to_string())
        .unwrap_or_default();
    api::check_event_post(
        &api::PostHeaders {
            content_type: content_type.as_deref(),
            origin: origin.as_deref(),
            fetch_site: fetch_site.as_deref(),
            host: host.as_deref(),
        },
        &allowed,
    )
}

/// Rate limits per visitor and per client address block, so neither a script reusing one
/// session nor one minting fresh sessions can flood the training log.
fn admit(env: &Env, user: &str, ip: &str, n: u32, now: u64) -> Result<(), ApiError> {
    let per_session = var(env, "EVENTS_PER_MINUTE_PER_SESSION", 120) as u32;
    let per_ip = var(env, "EVENTS_PER_MINUTE_PER_IP", 1200) as u32;
    RATE.with(|r| {
        let mut r = r.borrow_mut();
        r.admit(user, n, per_session, now)?;
        r.admit(&api::ip_block(ip), n, per_ip, now)
    })
}

/// Events (and browser exposures) naming items the served model does not know are refused: they
/// cannot move a session and would only be noise (or poison) in the training log.
fn check_known_items<'a>(
    model: &Loaded,
    mut items: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let engine = model.engine.borrow();
    match items.find(|item| engine.find(item).is_none()) {
        Some(unknown) => Err(ApiError::new(
            400,
            "unknown_item",
            format!(
                "item {unknown:?} is not in model {}",
                model.manifest.version
            ),
        )),
        None => Ok(()),
    }
}

/// The event log's user id of a visitor.
fn visitor_user(visitor: u64) -> String {
    format!("v{visitor:016x}")
}

/// Sends the events, as the contract validated them, to central-sync's ingest after the
/// response (`waitUntil`). A client's event id is prefixed with the visitor; events without one
/// get one derived from the visitor, time, item and type, so a retried or re-delivered batch is
/// stored once. A slow or failing central never affects the visitor: a batch the ingest did not
/// store after the retries goes to the KV spool, which the cron drains (`drain_spool`).
fn forward(env: &Env, ctx: &worker::Context, posted: &[api::Event]) {
    let Some(ingest) = Ingest::from_env(env, Stream::Events) else {
        return;
    };
    let batch: Vec<api::Event> = posted
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let kind = e.kind.core().name();
            // Ids are scoped to the visitor: a client cannot pre-claim ids that would make
            // the ingest drop another visitor's events as duplicates.
            e.id = Some(match e.id.take() {
                Some(id) => api::scoped_id(&e.user, &id),
                None => {
                    let key = edgerec::hash::text_key(&format!("{}/{kind}", e.item));
                    format!("{}-{}-{key:016x}", e.user, e.ts)
                }
            });
            e
        })
        .collect();
    let Ok(body) = serde_json::to_string(&batch) else {
        return;
    };
    send_later(env, ctx, ingest, Stream::Events, body);
}

/// What the edge sends to central-sync: events to `INGEST_URL` (`/v1/events`), the lists it
/// served to the sibling `/v1/exposures` (or `EXPOSURE_URL`). Each has its own spool prefix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stream {
    Events,
    Exposures,
}

impl Stream {
    const ALL: [Stream; 2] = [Stream::Events, Stream::Exposures];

    fn spool_prefix(self) -> &'static str {
        match self {
            Stream::Events => keys::SPOOL_PREFIX,
            Stream::Exposures => keys::EXPOSURE_SPOOL_PREFIX,
        }
    }

    fn spool_key(self, stamp: u64, nonce: u64) -> String {
        match self {
            Stream::Events => keys::spool(stamp, nonce),
            Stream::Exposures => keys::exposure_spool(stamp, nonce),
        }
    }
}

/// Sends a batch to the ingest after the response (`waitUntil`). Retried on 429, 5xx and
/// network errors with growing pauses; the records carry ids, so a retry of a batch the ingest
/// did store is deduplicated there. A batch not stored after the retries goes to the stream's KV
/// spool, which the cron drains (`drain_spool`): a slow or failing central never affects the
/// visitor, and nothing the edge accepted is lost while the ingest is down.
fn send_later(env: &Env, ctx: &worker::Context, ingest: Ingest, stream: Stream, body: String) {
    let spool = env.kv("MODELS").ok();
    ctx.wait_until(async move {
        let mut pause = std::time::Duration::from_millis(250);
        for attempt in 1..=FORWARD_ATTEMPTS {
            match ingest.send(&body).await {
                Delivery::Stored => return,
                Delivery::Refused(code) => {
                    // The contract's validation ran here already; this is a version mismatch
                    // between edge and ingest, and resending cannot help.
                    worker::console_error!(
                        "edgerec: ingest refused a {stream:?} batch as invalid ({code})"
                    );
                    return;
                }
                Delivery::Failed(why) => {
                    worker::console_warn!("edgerec: ingest {why} (attempt {attempt})");
                }
            }
            if attempt < FORWARD_ATTEMPTS {
                worker::Delay::from(pause).await;
                pause *= 4;
            }
        }
        let key = stream.spool_key(now_ms(), random_u64());
        let stored = match &spool {
            Some(kv) => match kv.put(&key, body.as_str()) {
                Ok(put) => put
                    .expiration_ttl(SPOOL_TTL_SECONDS)
                    .execute()
                    .await
                    .is_ok(),
                Err(_) => false,
            },
            None => false,
        };
        if stored {
            worker::console_warn!("edgerec: batch spooled as {key}");
        } else {
            worker::console_error!("edgerec: batch lost: neither the ingest nor the spool took it");
        }
    });
}

/// How long a spooled batch waits for the ingest before KV drops it.
const SPOOL_TTL_SECONDS: u64 = 7 * 86_400;

/// Where `forward` and the spool drain deliver events: central-sync's ingest.
#[derive(Clone)]
struct Ingest {
    url: String,
    token: String,
}

/// What one delivery attempt came to.
enum Delivery {
    Stored,
    /// The ingest found nothing valid in the batch (400): sending it again cannot help.
    Refused(u16),
    /// Worth retrying: anything else (429, 5xx, the network, a wrong token or URL, which an
    /// operator fixes).
    Failed(String),
}

impl Ingest {
    fn from_env(env: &Env, stream: Stream) -> Option<Ingest> {
        match stream {
            Stream::Events => Some(Ingest {
                url: setting(env, "INGEST_URL")?,
                token: Ingest::token(env),
            }),
            Stream::Exposures => Ingest::sibling(env, "EXPOSURES", "EXPOSURE_URL", "/v1/exposures"),
        }
    }

    /// Where isolates report their request metrics (`EDGE_METRICS_URL`, else `INGEST_URL`'s
    /// sibling `/v1/edge-metrics`); `None` without an ingest or with `EDGE_METRICS = "off"`.
    fn edge_metrics(env: &Env) -> Option<Ingest> {
        Ingest::sibling(
            env,
            EDGE_METRICS_SWITCH,
            "EDGE_METRICS_URL",
            "/v1/edge-metrics",
        )
    }

    /// An endpoint beside the event ingest: `url_var` when set, else `INGEST_URL` with its
    /// `/v1/events` replaced by `path`; `None` without `INGEST_URL` or when `switch` is `off`.
    fn sibling(env: &Env, switch: &str, url_var: &str, path: &str) -> Option<Ingest> {
        if !Ingest::sibling_on(env, switch) {
            return None;
        }
        let events = setting(env, "INGEST_URL")?;
        let url = setting(env, url_var).unwrap_or_else(|| {
            format!(
                "{}{path}",
                events.trim_end_matches('/').trim_end_matches("/v1/events")
            )
        });
        Some(Ingest {
            url,
            token: Ingest::token(env),
        })
    }

    /// Whether a sibling endpoint is used: `INGEST_URL` is set and `switch` is not `off` (the
    /// cheap part of `sibling`, for the request path).
    fn sibling_on(env: &Env, switch: &str) -> bool {
        setting(env, "INGEST_URL").is_some()
            && !setting(env, switch).is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    fn token(env: &Env) -> String {
        env.secret("INGEST_TOKEN")
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    async fn send(&self, body: &str) -> Delivery {
        let headers = Headers::new();
        let _ = headers.set("Content-Type", "application/json");
        let _ = headers.set("Authorization", &format!("Bearer {}", self.token));
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.into()));
        let request = match Request::new_with_init(&self.url, &init) {
            Ok(r) => r,
            Err(e) => return Delivery::Failed(format!("has a bad INGEST_URL: {e}")),
        };
        match Fetch::Request(request).send().await {
            Ok(resp) if resp.status_code() < 300 => Delivery::Stored,
            Ok(resp) => match resp.status_code() {
                400 => Delivery::Refused(400),
                code => Delivery::Failed(format!("answered {code}")),
            },
            Err(e) => Delivery::Failed(format!("unreachable: {e}")),
        }
    }
}

/// Delivers spooled batches, oldest first, until the spool is empty, the ingest fails, or this
/// run's share (`SPOOL_DRAIN_REQUESTS` ingest requests) is spent. Batches are combined up to the
/// ingest's request limits, so a few subrequests drain a long outage. A batch leaves the spool
/// once the ingest stored it (or refused it as invalid, 400).
async fn drain_spool(env: &Env) {
    for stream in Stream::ALL {
        drain_stream(env, stream).await;
    }
}

/// Drains one stream's spool (`drain_spool`).
async fn drain_stream(env: &Env, stream: Stream) {
    let (Some(ingest), Ok(kv)) = (Ingest::from_env(env, stream), env.kv("MODELS")) else {
        return;
    };
    let mut requests = var(env, "SPOOL_DRAIN_REQUESTS", 20);
    let mut cursor: Option<String> = None;
    let mut pending = SpoolBatch::default();
    while requests > 0 {
        let mut list = kv
            .list()
            .prefix(stream.spool_prefix().to_string())
            .limit(1000);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let Ok(listed) = list.execute().await else {
            return;
        };
        for key in listed.keys {
            let Ok(Some(body)) = kv.get(&key.name).text().await else {
                continue;
            };
            let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
            if !pending.fits(&events, body.len()) {
                if !pending.deliver(&ingest, &kv).await {
                    return;
                }
                requests -= 1;
                if requests == 0 {
                    return;
                }
            }
            pending.add(key.name, events, body.len());
        }
        match listed.cursor {
            Some(c) if !listed.list_complete && !c.is_empty() => cursor = Some(c),
            _ => break,
        }
    }
    if requests > 0 {
        pending.deliver(&ingest, &kv).await;
    }
}

/// Spooled batches combined into one ingest request.
#[derive(Default)]
struct SpoolBatch {
    keys: Vec<String>,
    events: Vec<serde_json::Value>,
    bytes: usize,
}

impl SpoolBatch {
    fn fits(&self, events: &[serde_json::Value], bytes: usize) -> bool {
        self.events.len() + events.len() <= edgerec_contract::events::INGEST_MAX_EVENTS
            && self.bytes + bytes < edgerec_contract::events::INGEST_MAX_BYTES
    }

    fn add(&mut self, key: String, events: Vec<serde_json::Value>, bytes: usize) {
        self.keys.push(key);
        self.events.extend(events);
        self.bytes += bytes;
    }

    /// Sends the combined batch; on success its keys leave the spool. `false` when the ingest
    /// failed (the keys stay for the next run).
    async fn deliver(&mut self, ingest: &Ingest, kv: &worker::KvStore) -> bool {
        let batch = std::mem::take(self);
        if batch.keys.is_empty() {
            return true;
        }
        if !batch.events.is_empty() {
            let body = serde_json::Value::Array(batch.events).to_string();
            match ingest.send(&body).await {
                Delivery::Stored => {}
                Delivery::Refused(code) => {
                    worker::console_error!("edgerec: ingest refused spooled events ({code})");
                }
                Delivery::Failed(why) => {
                    worker::console_warn!("edgerec: spool drain stopped: ingest {why}");
                    return false;
                }
            }
        }
        for key in &batch.keys {
            if let Err(e) = kv.delete(key).await {
                worker::console_warn!("edgerec: could not delete {key}: {e}");
            }
        }
        true
    }
}

/// Attempts to deliver one batch to the ingest endpoint (pauses 0.25 s, 1 s, 4 s between them:
/// well inside the time `waitUntil` grants after the response).
const FORWARD_ATTEMPTS: u32 = 4;
