//! The JavaScript API (wasm32 only): `Engine`, `Session`, and plain-object options and results.
//!
//! This is the only module that knows about wasm-bindgen. It converts at the boundary and
//! nothing else: every core error becomes a thrown JS `Error` with the core's message, and no
//! input from JS can panic (numbers are checked for range, strings parsed with typed errors).

use crate::context::{Context, Device, MAX_TZ_OFFSET_MIN};
use crate::engine::{Engine, Exploration, MissingPages, Recommendation, Request};
use crate::session::{EventType, Session};
use crate::shard::{AlignedBytes, Shard};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `Engine.recommend`. Every field is optional. */
export interface RecommendOptions {
  /** How many items to return (default 10, at most 1000). */
  k?: number;
  /** Visitor location as a geohash; cut to the model's precision (at most 5). */
  geohash?: string;
  /** Device class. */
  device?: "mobile" | "desktop" | "tablet" | "tv" | "bot" | "other";
  /** Request time, unix seconds (for the time-of-week context and session decay). */
  ts?: number;
  /** Visitor time zone, minutes east of UTC. */
  tzOffsetMin?: number;
  /** Item ids never to return. */
  exclude?: string[];
  /** Only items in at least one of these categories. */
  allowCategories?: string[];
  /** Never items in any of these categories. */
  denyCategories?: string[];
  /** Maximal-marginal-relevance weight in [0, 1] (default 0). */
  diversity?: number;
  /** Exploration: `{ epsilon, seed }` or `{ temperature, seed }`. */
  explore?: { epsilon?: number; temperature?: number; seed?: number };
  /** Candidates considered by diversity/exploration (default max(4k, k + 20)). */
  pool?: number;
}

/** What a page sends to the worker's `POST /v1/exposures` for a list it showed. */
export interface ExposureRecord {
  id: string;
  model: string;
  items: { item: string; position: number; score: number | null; propensity: number }[];
}

/** What `Engine.tryRecommend` returns: the ranking, or the pages of a paged model the request
 * needs and the engine does not hold (load them with `addPage` and ask again). */
export type TryRecommendResult = Recommendation[] | { missingPages: number[] };

/** One ranked item. `propensity` is present when exploring. */
export interface Recommendation {
  id: string;
  score: number;
  propensity?: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "RecommendOptions")]
    pub type RecommendOptions;
    #[wasm_bindgen(typescript_type = "Recommendation[]")]
    pub type RecommendationList;
    #[wasm_bindgen(typescript_type = "TryRecommendResult")]
    pub type TryRecommendResult;
    #[wasm_bindgen(typescript_type = "Uint8Array[]")]
    pub type ShardList;
    #[wasm_bindgen(typescript_type = "string[]")]
    pub type StringList;
    #[wasm_bindgen(typescript_type = "ExposureRecord")]
    pub type ExposureRecord;
}

/// The most items one exposure lists (the contract's limit).
const MAX_EXPOSED_ITEMS: u32 = 100;

fn js_err(e: impl core::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A loaded model. Build it once with `Engine.fromShards`, then call `recommend` per request.
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: Engine,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// Validates the shards (checksums included) and builds the engine. Throws on any problem.
    #[wasm_bindgen(js_name = fromShards)]
    pub fn from_shards(shards: ShardList) -> Result<WasmEngine, JsError> {
        let list: Array = shards
            .dyn_into()
            .map_err(|_| JsError::new("Engine.fromShards expects an array of Uint8Array"))?;
        let mut parsed = Vec::with_capacity(list.length() as usize);
        for (i, value) in list.iter().enumerate() {
            let array: Uint8Array = value
                .dyn_into()
                .map_err(|_| JsError::new(&format!("shard {i} is not a Uint8Array")))?;
            // Copy straight into aligned storage: one copy of the shard, not two.
            let bytes =
                AlignedBytes::filled_by(array.length() as usize, |dst| array.copy_to_uninit(dst));
            parsed.push(
                Shard::from_aligned(bytes).map_err(|e| JsError::new(&format!("shard {i}: {e}")))?,
            );
        }
        Ok(WasmEngine {
            inner: Engine::from_shards(parsed).map_err(js_err)?,
        })
    }

    /// Ranks items for the session. Throws only on invalid options, and for a paged model
    /// whose pages the request needs are not all loaded (`tryRecommend` says which).
    pub fn recommend(
        &self,
        session: &WasmSession,
        options: Option<RecommendOptions>,
    ) -> Result<RecommendationList, JsError> {
        let request = self.request(options)?;
        match self.inner.try_recommend(&session.inner, &request) {
            Ok(ranked) => self.recommendations(&ranked),
            Err(MissingPages(pages)) => Err(JsError::new(&format!(
                "{} pages of this paged model are needed and not loaded (first: {}): rank \
                 with tryRecommend and addPage",
                pages.len(),
                pages.first().copied().unwrap_or(0)
            ))),
        }
    }

    /// Ranks as `recommend` does, or, for a paged model, returns `{ missingPages }`: the
    /// numbers of the pages the request needs that are not loaded, in increasing order. Load
    /// them with `addPage` and ask again; a request asks at most twice (its session's pages,
    /// then the pages of the items it scores). Throws only on invalid options.
    #[wasm_bindgen(js_name = tryRecommend)]
    pub fn try_recommend(
        &self,
        session: &WasmSession,
        options: Option<RecommendOptions>,
    ) -> Result<TryRecommendResult, JsError> {
        let request = self.request(options)?;
        match self.inner.try_recommend(&session.inner, &request) {
            Ok(ranked) => Ok(self.recommendations(&ranked)?.unchecked_into()),
            Err(MissingPages(pages)) => {
                let o = Object::new();
                let list: Array = pages.iter().map(|&p| JsValue::from(p)).collect();
                set(&o, "missingPages", &list)?;
                Ok(o.unchecked_into())
            }
        }
    }

    /// Validates a page of this paged model (its checksum, its items against the index) and
    /// keeps it, replacing a loaded page of the same number. Throws when it is not a page of
    /// this model; the engine is then unchanged.
    #[wasm_bindgen(js_name = addPage)]
    pub fn add_page(&mut self, page: &Uint8Array) -> Result<(), JsError> {
        let bytes = AlignedBytes::filled_by(page.length() as usize, |dst| page.copy_to_uninit(dst));
        let shard = Shard::from_aligned(bytes).map_err(|e| JsError::new(&format!("page: {e}")))?;
        self.inner.add_page(shard).map_err(js_err)
    }

    /// Forgets a loaded page (a cache evicting it); returns whether it was loaded.
    #[wasm_bindgen(js_name = dropPage)]
    pub fn drop_page(&mut self, page: u32) -> bool {
        self.inner.drop_page(page)
    }

    /// Whether the model is paged: built from index shards, its pages added as requests need.
    #[wasm_bindgen(getter)]
    pub fn paged(&self) -> bool {
        self.inner.is_paged()
    }

    /// A paged model's page count (0 otherwise).
    #[wasm_bindgen(getter, js_name = pageCount)]
    pub fn page_count(&self) -> u32 {
        self.inner.page_count() as u32
    }

    /// The numbers of the loaded pages, in increasing order.
    #[wasm_bindgen(getter, js_name = loadedPages)]
    pub fn loaded_pages(&self) -> Vec<u32> {
        self.inner.loaded_pages()
    }

    /// Bytes of the loaded pages.
    #[wasm_bindgen(getter, js_name = loadedPageBytes)]
    pub fn loaded_page_bytes(&self) -> f64 {
        self.inner.loaded_page_bytes() as f64
    }
}

impl WasmEngine {
    /// The ranked items as plain objects.
    fn recommendations(&self, ranked: &[Recommendation]) -> Result<RecommendationList, JsError> {
        let out = Array::new_with_length(ranked.len() as u32);
        for (i, r) in ranked.iter().enumerate() {
            let o = Object::new();
            let id = self.inner.item_id(r.index).unwrap_or("");
            set(&o, "id", &JsValue::from_str(id))?;
            set(&o, "score", &JsValue::from_f64(f64::from(r.score)))?;
            if let Some(p) = r.propensity {
                set(&o, "propensity", &JsValue::from_f64(f64::from(p)))?;
            }
            out.set(i as u32, o.into());
        }
        Ok(out.unchecked_into())
    }
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// The exposure record of a list this engine ranked and the page showed, for the worker's
    /// `POST /v1/exposures` (issue 15's exposure log): the list's items in order with their
    /// positions, scores and propensities (1 when the list was not explored), under `model`,
    /// the served version (`/v1/model`'s `version`). `id` defaults to a random one. Throws when
    /// the list is empty or longer than 100, or names an item this model does not have.
    pub fn exposure(
        &self,
        list: RecommendationList,
        model: &str,
        id: Option<String>,
    ) -> Result<ExposureRecord, JsError> {
        let list: JsValue = list.into();
        if !Array::is_array(&list) {
            return Err(JsError::new("the list must be an array of recommendations"));
        }
        let list = Array::from(&list);
        if list.length() == 0 || list.length() > MAX_EXPOSED_ITEMS {
            return Err(JsError::new(&format!(
                "an exposure lists 1 to {MAX_EXPOSED_ITEMS} items, got {}",
                list.length()
            )));
        }
        if model.is_empty() {
            return Err(JsError::new("`model` must be the served version"));
        }
        let items = Array::new();
        for (position, r) in list.iter().enumerate() {
            let item = string(&r, "id")?
                .filter(|i| self.inner.find(i).is_some())
                .ok_or_else(|| {
                    JsError::new(&format!("list[{position}] is not an item of this model"))
                })?;
            let o = Object::new();
            set(&o, "item", &JsValue::from_str(&item))?;
            set(&o, "position", &JsValue::from_f64(position as f64))?;
            let score = number(&r, "score", f64::MIN, f64::MAX)?;
            set(&o, "score", &score.map_or(JsValue::NULL, JsValue::from_f64))?;
            let propensity = number(&r, "propensity", f64::MIN_POSITIVE, 1.0)?.unwrap_or(1.0);
            set(&o, "propensity", &JsValue::from_f64(propensity))?;
            items.push(&o);
        }
        let id = id.unwrap_or_else(|| {
            // Unique per page view, not secret: the worker scopes it to the visitor.
            let word = || (js_sys::Math::random() * 4_294_967_296.0) as u32;
            format!("b{:08x}{:08x}{:08x}{:08x}", word(), word(), word(), word())
        });
        let out = Object::new();
        set(&out, "id", &JsValue::from_str(&id))?;
        set(&out, "model", &JsValue::from_str(model))?;
        set(&out, "items", &items)?;
        Ok(JsValue::from(out).unchecked_into())
    }

    /// The query vector `recommend` would score with (session vector, transform and context
    /// combined): for inspection, and to time the session part of a request on its own.
    #[wasm_bindgen(js_name = queryVector)]
    pub fn query_vector(
        &self,
        session: &WasmSession,
        options: Option<RecommendOptions>,
    ) -> Result<Vec<f32>, JsError> {
        let request = self.request(options)?;
        Ok(self.inner.query_vector(&session.inner, &request.context))
    }

    /// The two-stage scan: keep at least `keep` items (by their 4-bit codes) for exact scoring,
    /// or 0 to score every row exactly. Returns whether the two-stage scan is on, which needs a
    /// model whose shards carry codes. For benchmarks and tests; the default suits serving.
    #[wasm_bindgen(js_name = setFirstPass)]
    pub fn set_first_pass(&mut self, keep: u32) -> bool {
        self.inner
            .set_first_pass((keep > 0).then_some(keep as usize))
    }

    /// How many items the two-stage scan keeps for exact scoring (0 when it is off): for
    /// benchmarks and tests, to restore the default after [`Self::set_first_pass`].
    #[wasm_bindgen(getter, js_name = firstPassKeep)]
    pub fn first_pass_keep(&self) -> u32 {
        self.inner.first_pass_keep().map_or(0, |k| k as u32)
    }

    /// Number of items in the model.
    #[wasm_bindgen(getter, js_name = itemCount)]
    pub fn item_count(&self) -> u32 {
        self.inner.item_count()
    }

    /// Embedding dimension.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> u32 {
        self.inner.meta().dim
    }

    /// The model id, as 16 hex digits.
    #[wasm_bindgen(getter, js_name = modelId)]
    pub fn model_id(&self) -> String {
        format!("{:016x}", self.inner.model_id())
    }

    /// Whether the model has this item.
    pub fn has(&self, id: &str) -> bool {
        self.inner.find(id).is_some()
    }

    /// Category names of the model, in bit order.
    #[wasm_bindgen(js_name = categoryNames)]
    pub fn category_names(&self) -> StringList {
        strings(self.inner.category_names().into_iter())
    }

    /// Category names of one item (empty for unknown items).
    #[wasm_bindgen(js_name = itemCategories)]
    pub fn item_categories(&self, id: &str) -> StringList {
        let mask = self
            .inner
            .find(id)
            .map_or(0, |i| self.inner.item_categories(i));
        let names = self.inner.category_names();
        strings(
            names
                .into_iter()
                .enumerate()
                .filter(|(b, _)| mask >> b & 1 == 1)
                .map(|(_, n)| n),
        )
    }
}

fn strings<'a>(items: impl Iterator<Item = &'a str>) -> StringList {
    let out = Array::new();
    for s in items {
        out.push(&JsValue::from_str(s));
    }
    out.unchecked_into()
}

fn set(o: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(o, &JsValue::from_str(key), value)
        .map(|_| ())
        .map_err(|_| JsError::new("could not build the result object"))
}

fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    if !o.is_object() {
        return None;
    }
    Reflect::get(o, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn number(o: &JsValue, key: &str, min: f64, max: f64) -> Result<Option<f64>, JsError> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(JsError::new(&format!(
                "option `{key}` must be a number in [{min}, {max}]"
            ))),
        },
    }
}

fn string(o: &JsValue, key: &str) -> Result<Option<String>, JsError> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => v
            .as_string()
            .map(Some)
            .ok_or_else(|| JsError::new(&format!("option `{key}` must be a string"))),
    }
}

fn string_list(o: &JsValue, key: &str) -> Result<Vec<String>, JsError> {
    let Some(v) = get(o, key) else {
        return Ok(Vec::new());
    };
    if !Array::is_array(&v) {
        return Err(JsError::new(&format!(
            "option `{key}` must be an array of strings"
        )));
    }
    Array::from(&v)
        .iter()
        .map(|x| {
            x.as_string()
                .ok_or_else(|| JsError::new(&format!("option `{key}` must contain only strings")))
        })
        .collect()
}

impl WasmEngine {
    fn request(&self, options: Option<RecommendOptions>) -> Result<Request, JsError> {
        let o = options.map(JsValue::from).unwrap_or(JsValue::UNDEFINED);
        if !(o.is_undefined() || o.is_null() || o.is_object()) {
            return Err(JsError::new("recommend options must be an object"));
        }
        let device = string(&o, "device")?
            .map(|d| Device::from_name(&d))
            .transpose()
            .map_err(js_err)?;
        let mut request = Request {
            k: number(&o, "k", 0.0, 1000.0)?.map_or(10, |k| k as usize),
            context: Context {
                geohash: string(&o, "geohash")?,
                device,
                ts: number(&o, "ts", 0.0, 1e13)?.map(|t| t as i64),
                tz_offset_min: number(
                    &o,
                    "tzOffsetMin",
                    -f64::from(MAX_TZ_OFFSET_MIN),
                    f64::from(MAX_TZ_OFFSET_MIN),
                )?
                .map_or(0, |t| t as i32),
            },
            exclude: string_list(&o, "exclude")?,
            allow_categories: self
                .inner
                .category_mask(&string_list(&o, "allowCategories")?)
                .map_err(js_err)?,
            deny_categories: self
                .inner
                .category_mask(&string_list(&o, "denyCategories")?)
                .map_err(js_err)?,
            diversity: number(&o, "diversity", 0.0, 1.0)?.unwrap_or(0.0) as f32,
            pool: number(&o, "pool", 0.0, 100_000.0)?.map_or(0, |p| p as usize),
            ..Request::default()
        };
        if let Some(explore) = get(&o, "explore") {
            let seed =
                number(&explore, "seed", 0.0, 9.007_199_254_740_991e15)?.unwrap_or(0.0) as u64;
            request.exploration = match (
                number(&explore, "epsilon", 0.0, 1.0)?,
                number(&explore, "temperature", 1e-6, 1e6)?,
            ) {
                (Some(epsilon), None) => Exploration::Epsilon {
                    epsilon: epsilon as f32,
                    seed,
                },
                (None, Some(t)) => Exploration::Softmax {
                    temperature: t as f32,
                    seed,
                },
                (None, None) => Exploration::Off,
                (Some(_), Some(_)) => {
                    return Err(JsError::new(
                        "explore takes epsilon or temperature, not both",
                    ))
                }
            };
        }
        Ok(request)
    }
}

/// A visitor's session: their latest events, kept by the page (or in a token).
#[wasm_bindgen(js_name = Session)]
pub struct WasmSession {
    inner: Session,
}

impl Default for WasmSession {
    fn default() -> Self {
        WasmSession::new()
    }
}

#[wasm_bindgen(js_class = Session)]
impl WasmSession {
    /// An empty session.
    #[wasm_bindgen(constructor)]
    pub fn new() -> WasmSession {
        WasmSession {
            inner: Session::new(),
        }
    }

    /// Records an event: `type` is one of view, click, like, cart, purchase, dwell.
    pub fn observe(&mut self, item_id: &str, r#type: &str, ts_seconds: f64) -> Result<(), JsError> {
        if item_id.is_empty() {
            return Err(JsError::new("item id must not be empty"));
        }
        let kind = EventType::from_name(r#type).map_err(js_err)?;
        if !(ts_seconds.is_finite() && (0.0..=1e13).contains(&ts_seconds)) {
            return Err(JsError::new("tsSeconds must be a unix time in seconds"));
        }
        self.inner.observe(item_id, kind, ts_seconds as u64);
        Ok(())
    }

    /// The compact encoding (a few hundred bytes at most).
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    /// Decodes `toBytes` output; throws on malformed or oversized input.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<WasmSession, JsError> {
        Ok(WasmSession {
            inner: Session::from_bytes(bytes).map_err(js_err)?,
        })
    }

    /// Number of events held.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }
}
