//! `central-sync serve`: the HTTP ingest endpoint and metrics.
//!
//! `POST /v1/events` takes one JSON event or an array (at most 1,000 events, 1 MiB), with
//! `Authorization: Bearer <token>`. Each event is validated on its own: valid ones are stored
//! (deduplicated by `id`), invalid ones are listed with their index and reason, and one bad
//! event never rejects the rest. `POST /v1/exposures` takes the lists the edge served in the
//! same envelope, validated and stored the same way. `POST /v1/edge-metrics` takes the edge
//! isolates' per-request counts (`edgerec_contract::edge_metrics`), summed in memory into
//! `/metrics`. `GET /healthz` and Prometheus `GET /metrics` report the log, the last sync and
//! the edge.

use crate::store::{Inserted, Store};
use crate::sync_state::SyncState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgerec_contract::edge_metrics::{validate_edge_report_json, Tallies, LATENCY_BOUNDS_MS};
use edgerec_contract::events::{parse_batch, validate_json, Defaults};
use edgerec_contract::exposures::validate_exposure_json;
use edgerec_contract::ApiError;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use edgerec_contract::events::{
    INGEST_MAX_BYTES as MAX_BODY_BYTES, INGEST_MAX_EVENTS as MAX_BATCH,
};

/// Where accepted events go.
pub enum Sink {
    /// The local SQLite log (and nothing else).
    Sqlite,
    /// A Kafka topic; an answer waits for the broker's acknowledgement of every event.
    Kafka(crate::kafka::Producer),
}

struct AppState {
    /// Used only from blocking threads (`spawn_blocking`): an insert holds it across SQLite's
    /// fsync, which must never stall the async runtime that serves other requests. With a
    /// Kafka sink it holds only the sync state `/metrics` reports.
    store: Mutex<Store>,
    sink: Sink,
    token: String,
    /// Events in the log: counted once at start, then kept by the inserts, so `/metrics` and
    /// `/healthz` never wait for the store.
    stored: AtomicU64,
    ingested: AtomicU64,
    rejected: AtomicU64,
    duplicates: AtomicU64,
    exposures: AtomicU64,
    exposures_rejected: AtomicU64,
    /// The edge's request counts, summed over every report since this process started.
    edge: Mutex<Tallies>,
    edge_reports: AtomicU64,
    edge_reports_rejected: AtomicU64,
}

/// The most distinct label sets of edge requests `/metrics` keeps (routes × statuses × models ×
/// cache states × error codes stays far below it; a bug or a forged report cannot grow memory).
const EDGE_SERIES_CAP: usize = 4096;

/// Runs `f` on the store on a blocking thread.
async fn with_store<T: Send + 'static>(
    app: &Arc<AppState>,
    f: impl FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = app
            .store
            .lock()
            .map_err(|_| anyhow::anyhow!("event log lock poisoned"))?;
        f(&mut store)
    })
    .await
    .map_err(|e| anyhow::anyhow!("store task failed: {e}"))?
}

/// The contract's error body with its status.
fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    api_error(ApiError::new(status.as_u16(), code, message))
}

fn api_error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

/// Checks the bearer token before reading any of the body, then reads at most
/// `MAX_BODY_BYTES` (a declared larger length is refused without reading) and unpacks the
/// batch envelope. Events and exposures share all of it.
async fn authorized_batch(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<serde_json::Value>, Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| constant_time_eq(t.as_bytes(), app.token.as_bytes()));
    if !ok {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ));
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body above {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return Err(too_large());
    };
    parse_batch(&body, MAX_BATCH).map_err(api_error)
}

/// An authorized batch validated record by record: the valid ones, and the index and reason of
/// each invalid one (one bad record never rejects the rest).
async fn validated_batch<T, E: std::fmt::Display>(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    validate: impl Fn(serde_json::Value) -> Result<T, E>,
) -> Result<(Vec<T>, Vec<serde_json::Value>), Response> {
    let items = authorized_batch(app, headers, body).await?;
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match validate(item) {
            Ok(x) => valid.push(x),
            Err(e) => rejected.push(json!({"index": index, "error": e.to_string()})),
        }
    }
    Ok((valid, rejected))
}

/// The answer to a batch: 400 when nothing in it was valid, else 200, with what was stored.
fn batch_answer(count: usize, inserted: Inserted, rejected: Vec<serde_json::Value>) -> Response {
    let status = if count == 0 && !rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"stored": inserted.stored, "duplicates": inserted.duplicates, "rejected": rejected}))).into_response()
}

fn store_failed() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_failed",
        "the event log could not store the batch; retry later",
    )
}

/// `POST /v1/exposures`: lists the edge served, validated one by one like events and stored in
/// the SQLite log (also beside a Kafka event log: the `--db` store), deduplicated by id.
async fn ingest_exposures(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (valid, rejected) =
        match validated_batch(&app, &headers, body, validate_exposure_json).await {
            Ok(batch) => batch,
            Err(answer) => return answer,
        };
    let count = valid.len();
    let inserted = match with_store(&app, move |store| store.insert_exposures(&valid)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), exposures = count, "exposure log write failed");
            return store_failed();
        }
    };
    app.exposures
        .fetch_add(inserted.stored as u64, Ordering::Relaxed);
    app.exposures_rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    batch_answer(count, inserted, rejected)
}

/// `POST /v1/edge-metrics`: isolates' request counts since their last report, validated one by
/// one and added to the totals `/metrics` shows. Kept in memory only: Prometheus stores them,
/// and its `rate()` handles this process restarting.
async fn ingest_edge_metrics(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (valid, rejected) =
        match validated_batch(&app, &headers, body, validate_edge_report_json).await {
            Ok(batch) => batch,
            Err(answer) => return answer,
        };
    let count = valid.len();
    if let Ok(mut edge) = app.edge.lock() {
        for r in &valid {
            edge.merge(r, EDGE_SERIES_CAP);
        }
    }
    app.edge_reports.fetch_add(count as u64, Ordering::Relaxed);
    app.edge_reports_rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    let inserted = Inserted {
        stored: count,
        duplicates: 0,
    };
    batch_answer(count, inserted, rejected)
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The edge's series in the exposition format: request counts by every label, and a latency
/// histogram per route.
fn edge_exposition(edge: &Tallies) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut out = String::from(
        "# HELP edgerec_edge_requests_total Requests the edge answered, by route, status, model version, list cache state and error code (summed over isolate reports).\n# TYPE edgerec_edge_requests_total counter\n",
    );
    let mut by_route: BTreeMap<&str, edgerec_contract::edge_metrics::Tally> = BTreeMap::new();
    for (l, t) in edge.iter() {
        let _ = writeln!(
            out,
            "edgerec_edge_requests_total{{route=\"{}\",status=\"{}\",model=\"{}\",cache=\"{}\",error=\"{}\"}} {}",
            label(&l.route),
            l.status,
            label(&l.model),
            label(&l.cache),
            label(&l.error),
            t.count
        );
        by_route.entry(&l.route).or_default().merge(t);
    }
    out += "# HELP edgerec_edge_request_duration_seconds Time from request to response at the edge, as the Workers clock sees it (it advances on I/O: KV and cache waits count, CPU time does not).\n# TYPE edgerec_edge_request_duration_seconds histogram\n";
    for (route, t) in &by_route {
        let route = label(route);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BOUNDS_MS.iter().zip(&t.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "edgerec_edge_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "edgerec_edge_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\nedgerec_edge_request_duration_seconds_sum{{route=\"{route}\"}} {}\nedgerec_edge_request_duration_seconds_count{{route=\"{route}\"}} {}",
            t.count,
            t.ms_sum / 1000.0,
            t.count
        );
    }
    out
}

async fn ingest(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (valid, rejected) = match validated_batch(&app, &headers, body, |item| {
        validate_json(item, Defaults::default())
    })
    .await
    {
        Ok(batch) => batch,
        Err(answer) => return answer,
    };
    let count = valid.len();
    let inserted = match &app.sink {
        Sink::Sqlite => with_store(&app, move |store| store.insert(&valid)).await,
        Sink::Kafka(producer) => producer.append(&valid).await.map(|n| Inserted {
            // Duplicates are removed by id when `sync` reads the topic.
            stored: n,
            duplicates: 0,
        }),
    };
    let inserted = match inserted {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), events = count, "event log write failed");
            return store_failed();
        }
    };
    app.stored
        .fetch_add(inserted.stored as u64, Ordering::Relaxed);
    app.ingested
        .fetch_add(inserted.stored as u64, Ordering::Relaxed);
    app.duplicates
        .fetch_add(inserted.duplicates as u64, Ordering::Relaxed);
    app.rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    batch_answer(count, inserted, rejected)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    Json(json!({"ok": true, "events": app.stored.load(Ordering::Relaxed)})).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    // Read on a blocking thread: the store's lock may be held across an fsync.
    let state = with_store(&app, |store| SyncState::load(store))
        .await
        .unwrap_or_default();
    let mut out = String::new();
    // Names ending in `_total` only ever grow while the process lives: counters, so `rate()`
    // and `increase()` handle a restart.
    let mut gauge = |name: &str, help: &str, value: String| {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    gauge(
        "edgerec_events_stored",
        "Events in the event log (with a Kafka sink: events this process had acknowledged).",
        app.stored.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_events_ingested_total",
        "Events stored by this process.",
        app.ingested.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_events_duplicate_total",
        "Events skipped as duplicates by this process.",
        app.duplicates.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_events_rejected_total",
        "Events rejected as invalid by this process.",
        app.rejected.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_exposures_ingested_total",
        "Exposures (lists served at the edge) stored by this process.",
        app.exposures.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_exposures_rejected_total",
        "Exposures rejected as invalid by this process.",
        app.exposures_rejected.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_edge_reports_total",
        "Edge isolate metric reports received by this process.",
        app.edge_reports.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "edgerec_edge_reports_rejected_total",
        "Edge isolate metric reports rejected as invalid by this process.",
        app.edge_reports_rejected
            .load(Ordering::Relaxed)
            .to_string(),
    );
    let edge = app.edge.lock().map(|e| e.clone()).unwrap_or_default();
    gauge(
        "edgerec_edge_requests_dropped_total",
        "Edge requests counted without labels: an isolate or this process had kept its most series.",
        edge.dropped.to_string(),
    );
    for (name, help, value) in state.gauges() {
        gauge(name, help, value);
    }
    if let Some(v) = &state.model_version {
        out += &format!("# HELP edgerec_model_version_info The published model version.\n# TYPE edgerec_model_version_info gauge\nedgerec_model_version_info{{version=\"{}\"}} 1\n", v.replace('"', ""));
    }
    if !edge.is_empty() {
        out += &edge_exposition(&edge);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Serves until Ctrl-C. Prints the bound address on stdout first (tests bind port 0).
pub async fn run(store: Store, sink: Sink, addr: &str, token: String) -> anyhow::Result<()> {
    let stored = match sink {
        Sink::Sqlite => u64::try_from(store.count()?).unwrap_or(0),
        Sink::Kafka(_) => 0,
    };
    let app = Arc::new(AppState {
        store: Mutex::new(store),
        sink,
        stored: AtomicU64::new(stored),
        token,
        ingested: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        exposures: AtomicU64::new(0),
        exposures_rejected: AtomicU64::new(0),
        edge: Mutex::new(Tallies::default()),
        edge_reports: AtomicU64::new(0),
        edge_reports_rejected: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/v1/events", post(ingest))
        .route("/v1/exposures", post(ingest_exposures))
        .route("/v1/edge-metrics", post(ingest_edge_metrics))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush().ok();
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
