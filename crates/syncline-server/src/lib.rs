//! `syncline serve`: webhook intake into the durable inbox.
//!
//! A delivery to `/webhooks/<source>` is refused with 413 past the body limit before it is
//! buffered, checked against the source's signing secrets on its raw bytes (401, nothing
//! stored), split into events (400 for a malformed body), and stored in the inbox in one
//! transaction, shared with the deliveries that arrived meanwhile (group commit, `commit.rs`).
//! Only then is it answered 2xx; a store that cannot commit (down, disk full)
//! answers 503 so the sender retries, and nothing acknowledged is lost. Redelivered events are
//! acknowledged and counted as duplicates.
//!
//! Workers (`worker.rs`) then claim the stored events and run the flows they start (`flow/`).
//!
//! `/healthz` answers while the process runs; `/readyz` while the store answers and can commit
//! and not every service the workers call is unhealthy, saying how each is doing (healthy,
//! degraded or unhealthy, with reasons: a breaker open, recent 429s, a token not renewed); `/metrics`
//! (Prometheus) with the names of `syncline_core::metric`.

pub mod backfill;
mod commit;
pub mod events;
pub mod flow;
pub mod http;
pub mod signature;
mod trace;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use syncline_resilience::{Health, Level};
use syncline_store::{NewEvent, Store};

pub use signature::{HubSpotVersion, Secret, SignatureError};

/// Bodies above this are refused unless a source sets its own limit (HubSpot sends at most 100
/// events per delivery, far below it).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Who posts to a source, which decides its signature scheme and payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    HubSpot,
    Stripe,
}

/// One webhook endpoint, `/webhooks/<name>`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub provider: Provider,
    /// Any of these verifies a delivery (two during a rotation).
    pub secrets: Vec<Secret>,
    /// HubSpot signature versions taken (default all three; v3 is checked when present).
    pub hubspot_versions: Vec<HubSpotVersion>,
    /// The URL the sender calls, as it signs it (HubSpot v2/v3), when a proxy in front changes
    /// the scheme or host. Default: `http://<Host header><path and query>`.
    pub public_url: Option<String>,
    pub body_limit: usize,
}

/// Counts since start, by a name (a source, a flow) and outcome (`stored`, `duplicate`,
/// `unauthorized`, `malformed`, `too_large`, `unavailable`; `sent`, `dead`…), also exported as
/// the Prometheus counter `metric` with the name under `label`.
pub struct Counters {
    metric: &'static str,
    label: &'static str,
    counts: std::sync::Mutex<BTreeMap<(String, &'static str), Arc<AtomicU64>>>,
}

impl Counters {
    pub fn new(metric: &'static str, label: &'static str) -> Counters {
        Counters { metric, label, counts: Default::default() }
    }

    pub fn add(&self, source: &str, outcome: &'static str, n: u64) {
        syncline_core::metric::outcome(self.metric, self.label, source, outcome, n);
        let counter = {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts.entry((source.to_owned(), outcome)).or_default().clone()
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Every count, as (source, outcome, n).
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|((s, o), n)| (s.clone(), *o, n.load(Ordering::Relaxed))).collect()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    inbox: commit::GroupCommit,
    sources: Arc<BTreeMap<String, Source>>,
    pub counters: Arc<Counters>,
    /// Notified after each delivery that stored events, to wake idle workers.
    pub arrived: Arc<tokio::sync::Notify>,
    /// Renders the process's metrics in Prometheus' text format, when `/metrics` is served.
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// How the services the workers call are doing, by policy, for `/readyz`.
    health: Option<Arc<Dependencies>>,
    /// How long a client may take to send a body (and, in `serve`, its headers).
    limits: http::HttpLimits,
}

/// Lists the dependencies' health.
type Dependencies = dyn Fn() -> Vec<Health> + Send + Sync;

impl Intake {
    pub fn new(store: Store, sources: Vec<Source>) -> Intake {
        let sources = sources.into_iter().map(|s| (s.name.clone(), s)).collect();
        let counters = Arc::new(Counters::new(syncline_core::metric::WEBHOOKS, "source"));
        let inbox = commit::GroupCommit::start(store.clone());
        Intake {
            store,
            inbox,
            sources: Arc::new(sources),
            counters,
            arrived: Arc::default(),
            metrics: None,
            health: None,
            limits: http::HttpLimits::default(),
        }
    }

    /// Serves with these limits instead of the defaults.
    pub fn with_limits(mut self, limits: http::HttpLimits) -> Intake {
        self.limits = limits;
        self
    }

    /// Serves the intake on `listener` within its limits until `shutdown` resolves.
    pub async fn serve(&self, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        http::serve(listener, self.router(), self.limits, shutdown).await
    }

    /// Serves `GET /metrics` with what `render` returns (the installed Prometheus recorder's
    /// text), after setting the inbox gauges from the store.
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Intake {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Reports these dependencies in `/readyz`, which answers 503 while every one is unhealthy
    /// (nothing the workers call is reachable).
    pub fn with_health(mut self, health: impl Fn() -> Vec<Health> + Send + Sync + 'static) -> Intake {
        self.health = Some(Arc::new(health));
        self
    }

    /// The HTTP API: `POST /webhooks/<source>`, `GET /healthz`, `GET /readyz`, and
    /// `GET /metrics` when set.
    pub fn router(&self) -> Router {
        let router =
            Router::new().route("/webhooks/{source}", post(receive)).route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready));
        let router = if self.metrics.is_some() { router.route("/metrics", get(metrics)) } else { router };
        router.with_state(self.clone())
    }
}

/// The inbox gauges, read from the store at scrape time (so several instances on one store
/// report the same), then everything recorded.
async fn metrics(State(intake): State<Intake>) -> Response {
    use syncline_core::metric::{INBOX_EVENTS, INBOX_OLDEST_PENDING_AGE};
    match intake.store.inbox_depth().await {
        Ok(depth) => {
            let now = chrono::Utc::now();
            for row in depth {
                metrics::gauge!(INBOX_EVENTS, "source" => row.source.clone(), "status" => row.status.clone()).set(row.events as f64);
                if row.status == "pending" {
                    let oldest = row.oldest_received_at.parse::<chrono::DateTime<chrono::Utc>>().ok();
                    let age = oldest.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
                    metrics::gauge!(INBOX_OLDEST_PENDING_AGE, "source" => row.source).set(age);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "inbox depth unavailable for /metrics"),
    }
    let render = intake.metrics.as_ref().expect("the route exists only with a renderer");
    ([("content-type", "text/plain; version=0.0.4")], render()).into_response()
}

enum BodyFailure {
    TooLarge,
    TooSlow(String),
}

/// The whole body, at most `limit` bytes, each chunk within `body_chunk_timeout` and all of it
/// within `body_timeout`: a client sending a byte a second is answered 408, not waited for.
async fn read_body(body: Body, limit: usize, limits: &http::HttpLimits) -> Result<Bytes, BodyFailure> {
    use futures_util::StreamExt;
    let reading = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        loop {
            let chunk = tokio::time::timeout(limits.body_chunk_timeout, stream.next())
                .await
                .map_err(|_| BodyFailure::TooSlow(format!("no part of the body came for {:?}", limits.body_chunk_timeout)))?;
            match chunk {
                None => return Ok(Bytes::from(bytes)),
                Some(Ok(chunk)) if bytes.len() + chunk.len() <= limit => bytes.extend_from_slice(&chunk),
                Some(Ok(_)) => return Err(BodyFailure::TooLarge),
                Some(Err(e)) => return Err(BodyFailure::TooSlow(format!("the body could not be read: {e}"))),
            }
        }
    };
    tokio::time::timeout(limits.body_timeout, reading)
        .await
        .unwrap_or_else(|_| Err(BodyFailure::TooSlow(format!("the body did not arrive within {:?}", limits.body_timeout))))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// One delivery, in a span of its own: its events carry the span's trace into the inbox.
async fn receive(State(intake): State<Intake>, Path(name): Path<String>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!("webhook", source = %name, events = tracing::field::Empty, status = tracing::field::Empty);
    let response = receive_delivery(intake, name, uri, headers, body).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

async fn receive_delivery(intake: Intake, name: String, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let Some(source) = intake.sources.get(&name) else {
        return answer(StatusCode::NOT_FOUND, json!({"error": format!("no webhook source named {name}")}));
    };
    let counters = &intake.counters;
    // refused before reading when the sender declares it too large; chunked bodies are cut off
    // at the limit while being read, so memory stays bounded either way
    let declared = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        counters.add(&name, "too_large", 1);
        answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body is larger than {} bytes", source.body_limit)}))
    };
    if declared.is_some_and(|n| n > source.body_limit as u64) {
        return too_large();
    }
    let bytes = match read_body(body, source.body_limit, &intake.limits).await {
        Ok(bytes) => bytes,
        Err(BodyFailure::TooLarge) => return too_large(),
        Err(BodyFailure::TooSlow(why)) => {
            counters.add(&name, "too_slow", 1);
            return answer(StatusCode::REQUEST_TIMEOUT, json!({"error": why}));
        }
    };
    if let Err(why) = verify(source, &uri, &headers, &bytes) {
        counters.add(&name, "unauthorized", 1);
        metrics::counter!(syncline_core::metric::SIGNATURE_FAILURES, "source" => name.clone()).increment(1);
        tracing::warn!(source = %name, error = %why, "webhook signature refused");
        return answer(StatusCode::UNAUTHORIZED, json!({"error": why.to_string()}));
    }
    let parsed = match source.provider {
        Provider::HubSpot => events::hubspot(&name, &bytes),
        Provider::Stripe => events::stripe(&name, &bytes),
    };
    let mut events: Vec<NewEvent> = match parsed {
        Ok(events) => events,
        Err(why) => {
            counters.add(&name, "malformed", 1);
            tracing::warn!(source = %name, error = %why, "webhook body refused");
            return answer(StatusCode::BAD_REQUEST, json!({"error": why.to_string()}));
        }
    };
    tracing::Span::current().record("events", events.len());
    if let Some(parent) = trace::current_parent() {
        events.iter_mut().for_each(|e| e.trace_parent = Some(parent.clone()));
    }
    match intake.inbox.accept(events).await {
        Ok(accepted) => {
            counters.add(&name, "stored", accepted.stored as u64);
            counters.add(&name, "duplicate", accepted.duplicates as u64);
            if accepted.stored > 0 {
                intake.arrived.notify_one();
            }
            answer(StatusCode::OK, json!({"stored": accepted.stored, "duplicates": accepted.duplicates}))
        }
        Err(e) => {
            counters.add(&name, "unavailable", 1);
            tracing::error!(source = %name, error = %e, "inbox commit failed; answering 503 so the sender retries");
            let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "the inbox cannot store events right now"}));
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
            response
        }
    }
}

fn verify(source: &Source, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<(), SignatureError> {
    let now = chrono::Utc::now();
    match source.provider {
        Provider::Stripe => signature::verify_stripe(body, headers, &source.secrets, now.timestamp()),
        Provider::HubSpot => {
            let url = match &source.public_url {
                Some(public) => format!("{}{}", public.trim_end_matches('/'), uri.query().map(|q| format!("?{q}")).unwrap_or_default()),
                None => {
                    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                    format!("http://{host}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                }
            };
            let request = signature::Signed { method: "POST", url: &url, body };
            signature::verify_hubspot(request, headers, &source.secrets, &source.hubspot_versions, now.timestamp_millis()).map(|_| ())
        }
    }
}

/// Ready while the store answers and not every dependency is unhealthy. The body says how each
/// is doing, and why: `{"status": "degraded", "store": "ok", "dependencies": {"quickbooks":
/// {"status": "degraded", "reasons": ["3 × 429 in the last 5 minutes"]}, …}}`.
async fn ready(State(intake): State<Intake>) -> Response {
    // reachable, and able to commit (after a failed commit, a write probe decides)
    let store = match intake.store.ping().await {
        Ok(()) => intake.store.writable().await,
        Err(e) => Err(e.to_string()),
    };
    let dependencies = intake.health.as_ref().map(|h| h()).unwrap_or_default();
    let all_down = !dependencies.is_empty() && dependencies.iter().all(|d| d.level == Level::Unhealthy);
    // one service down while others work leaves the server degraded, not out of service
    let worst = dependencies.iter().map(|d| d.level).max().unwrap_or(Level::Healthy).min(Level::Degraded);
    let level = if store.is_err() || all_down { Level::Unhealthy } else { worst };
    let body = json!({
        "status": level.name(),
        "store": store.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned()),
        "dependencies": dependencies
            .into_iter()
            .map(|d| (d.name, json!({"status": d.level.name(), "reasons": d.reasons})))
            .collect::<BTreeMap<_, _>>(),
    });
    let status = if level == Level::Unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    answer(status, body)
}
