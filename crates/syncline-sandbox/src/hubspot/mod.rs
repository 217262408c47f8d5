//! The HubSpot CRM emulator: `/crm/v3/properties/{objectType}` and the objects API's list, get,
//! batch read, batch upsert and search, behind Bearer-token auth and the portal's rate budgets.

mod portal;
mod search;

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

pub use portal::{Portal, PortalConfig, Property, PropertyOption, Tier};
use portal::{Written, iso, object_type};

use crate::faults::Cut;
use crate::ledger::{Effect, RequestLine};
use crate::{Sandbox, SandboxState};

/// The canonical name of an object type given by name or id (`contacts`, `0-1`…).
pub fn object_type_name(name: &str) -> Option<&'static str> {
    object_type(name)
}

/// Batch calls take at most this many inputs (API-CONTRACTS §1.4).
const MAX_BATCH: usize = 100;

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/crm/v3/properties/{object_type}", get(list_properties))
        .route("/crm/v3/objects/{object_type}", get(list_objects))
        .route("/crm/v3/objects/{object_type}/{id}", get(get_object))
        .route("/crm/v3/objects/{object_type}/batch/upsert", post(batch_upsert))
        .route("/crm/v3/objects/{object_type}/batch/read", post(batch_read))
        .route("/crm/v3/objects/{object_type}/search", post(search_objects))
}

/// A HubSpot error body (`Error` in the specs).
fn error(status: StatusCode, category: &str, message: impl Into<String>) -> (StatusCode, Value) {
    (status, json!({"status": "error", "message": message.into(), "correlationId": uuid::Uuid::now_v7().to_string(), "category": category}))
}

/// A per-input error inside a 207 (`StandardError` in the specs).
fn standard_error(category: &str, message: String, context: Value, errors: Vec<Value>) -> Value {
    json!({"status": "error", "category": category, "message": message, "context": context, "errors": errors, "links": {}})
}

/// What `serve` needs of a request besides its body: the token and the ledger's line.
struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Call { method: parts.method.clone(), uri: parts.uri.clone(), headers: parts.headers.clone() })
    }
}

/// Which budget a request spends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The portal's rolling ten-second and daily budget, reported in rate-limit headers.
    TenSecondly,
    /// The search API's own 5 per second, without rate-limit headers.
    Search,
}

/// Authenticates, spends the budget, runs `handler` on the portal, and records the ledger line.
/// Scripted faults come first: the added latency, then an answer instead of the request, or
/// after it (the write applied, its answer lost).
async fn serve(
    sandbox: &Sandbox,
    call: Call,
    inputs: usize,
    limit: Limit,
    handler: impl FnOnce(&mut Portal, &mut Vec<Effect>) -> (StatusCode, Value),
) -> Response {
    let fault = sandbox.lock().faults.draw(Instant::now());
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    let mut state = sandbox.lock();
    let SandboxState { portals, ledger, .. } = &mut *state;
    let token = call.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let portal = token.and_then(|t| portals.iter_mut().find(|p| p.config.token == t));
    let mut effects = Vec::new();
    // a connection cut before handling: nothing is applied and no usable answer is sent
    let reset_before = fault.cut.is_some_and(|(_, applied)| !applied);
    let (mut status, mut body, mut headers) = match (fault.before, portal) {
        _ if reset_before => (StatusCode::OK, Value::Null, Vec::new()),
        (Some(429), _) => {
            let headers = fault.retry_after.map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default();
            let policy = if limit == Limit::Search { "SECONDLY" } else { "TEN_SECONDLY_ROLLING" };
            (StatusCode::TOO_MANY_REQUESTS, rate_limit_body(policy), headers)
        }
        (Some(code), _) => {
            let status = StatusCode::from_u16(code).expect("fault codes are valid");
            let (status, body) = error(status, "INTERNAL_ERROR", "internal error (injected by the sandbox)");
            (status, body, Vec::new())
        }
        (None, None) => {
            let (status, body) = error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
            (status, body, Vec::new())
        }
        (None, Some(portal)) => {
            let spent = match limit {
                Limit::TenSecondly => portal.spend(Instant::now()),
                Limit::Search => portal.spend_search(Instant::now()),
            };
            let headers = |portal: &Portal| if limit == Limit::Search { Vec::new() } else { portal.rate_headers() };
            match spent {
                Err(policy) => (StatusCode::TOO_MANY_REQUESTS, rate_limit_body(policy), headers(portal)),
                Ok(()) => {
                    let (status, body) = handler(portal, &mut effects);
                    (status, body, headers(portal))
                }
            }
        }
    };
    if let Some(code) = fault.after {
        let status_code = StatusCode::from_u16(code).expect("fault codes are valid");
        (status, body) = error(status_code, "INTERNAL_ERROR", "bad gateway (injected by the sandbox after applying the request)");
        headers.clear();
    }
    ledger.requests.push(RequestLine {
        method: call.method.to_string(),
        path: call.uri.path().to_owned(),
        status: status.as_u16(),
        at_ms: Utc::now().timestamp_millis(),
        inputs,
        cut: fault.cut.map(|(cut, _)| cut.name()),
    });
    ledger.effects.extend(effects);
    drop(state);
    let mut response = match fault.cut {
        None => (status, axum::Json(body)).into_response(),
        Some((cut, _)) => cut_off(status, &body, cut),
    };
    let map = response.headers_mut();
    map.insert("x-hubspot-correlation-id", HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("uuid is ascii"));
    for (name, value) in headers {
        map.insert(name, HeaderValue::from_str(&value).expect("numbers are ascii"));
    }
    response
}

/// An answer whose connection breaks: after the status line, with none or half of the body.
fn cut_off(status: StatusCode, body: &Value, cut: Cut) -> Response {
    let bytes = serde_json::to_vec(body).expect("json serializes");
    let sent = match cut {
        Cut::Reset => Vec::new(),
        Cut::Truncated => bytes[..bytes.len() / 2].to_vec(),
    };
    let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection cut by the sandbox");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(sent), Err(broken)];
    let mut response = Response::new(axum::body::Body::from_stream(futures_util::stream::iter(chunks)));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// HubSpot's 429 body for a spent `policy` (`TEN_SECONDLY_ROLLING`, `DAILY`).
fn rate_limit_body(policy: &str) -> Value {
    let message = match policy {
        "DAILY" => "You have reached your daily limit.",
        "SECONDLY" => "You have reached your secondly limit.",
        _ => "You have reached your ten_secondly_rolling limit.",
    };
    json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": uuid::Uuid::now_v7().to_string(),
        "policyName": policy,
        "requestId": uuid::Uuid::now_v7().to_string(),
    })
}

/// Resolves the path's object type, or answers as HubSpot does for an unknown one.
fn known_type(name: &str) -> Result<&'static str, (StatusCode, Value)> {
    object_type(name).ok_or_else(|| error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Unable to infer object type from: {name}")))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|e| {
        error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column()))
    })
}

async fn list_properties(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(&kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let results: Vec<Value> = portal.properties[kind].iter().map(|(p, builtin)| p.to_json(*builtin)).collect();
        (StatusCode::OK, json!({"results": results}))
    })
    .await
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
    properties: Option<String>,
    #[serde(rename = "idProperty")]
    id_property: Option<String>,
}

fn wanted(properties: &Option<String>) -> Option<Vec<String>> {
    properties.as_ref().map(|p| p.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
}

/// Properties returned when none are asked for (API-CONTRACTS §1.2).
fn default_wanted(kind: &str) -> Vec<String> {
    let names: &[&str] = match kind {
        "contacts" => &["firstname", "lastname", "email"],
        "companies" => &["name", "domain"],
        "deals" => &["dealname", "amount", "closedate", "pipeline", "dealstage"],
        _ => &[],
    };
    names.iter().map(|s| s.to_string()).collect()
}

async fn list_objects(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, Query(q): Query<ListQuery>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(&kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let limit = q.limit.unwrap_or(10).clamp(1, 100);
        let after: u64 = match q.after.as_deref().map(str::parse).transpose() {
            Ok(after) => after.unwrap_or(0),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    format!("Invalid after cursor: {}", q.after.unwrap_or_default()),
                );
            }
        };
        let wanted = wanted(&q.properties).unwrap_or_else(|| default_wanted(kind));
        let store = portal.stores.entry(kind).or_default();
        let mut page: Vec<&portal::Object> = store.objects.range(after..).take(limit + 1).map(|(_, o)| o).collect();
        let next = (page.len() > limit).then(|| page.pop().map(|o| o.id)).flatten();
        let results: Vec<Value> = page.iter().map(|o| o.to_json(Some(&wanted))).collect();
        let mut body = json!({"results": results});
        if let Some(next) = next {
            body["paging"] = json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}});
        }
        (StatusCode::OK, body)
    })
    .await
}

async fn search_objects(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<search::SearchBody, _> = parse_body(&body);
    let delay = sandbox.lock().faults.faults.search_delay_ms;
    serve(&sandbox, call, 0, Limit::Search, |portal, _| {
        let kind = match known_type(&kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let body = match parsed {
            Ok(body) => body,
            Err(e) => return e,
        };
        // HubSpot indexes writes for search a moment after it applies them
        let visible_before = Utc::now() - chrono::Duration::milliseconds(delay as i64);
        search::search(portal, kind, body, visible_before)
    })
    .await
}

async fn get_object(
    State(sandbox): State<Sandbox>,
    call: Call,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(&kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let wanted = wanted(&q.properties).unwrap_or_else(|| default_wanted(kind));
        let id_property = q.id_property.as_deref().unwrap_or("hs_object_id");
        match portal.stores.entry(kind).or_default().find(id_property, &id) {
            Some(object) => (StatusCode::OK, object.to_json(Some(&wanted))),
            None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found"),
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertBody {
    inputs: Vec<UpsertInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertInput {
    id: String,
    id_property: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    object_write_trace_id: Option<String>,
}

/// The object type and body of a batch call of `inputs` inputs, or HubSpot's 400 for a bad one,
/// before anything is applied.
fn batch<T>(kind: &str, parsed: Result<T, (StatusCode, Value)>, inputs: usize) -> Result<(&'static str, T), (StatusCode, Value)> {
    let kind = known_type(kind)?;
    let body = parsed?;
    if inputs > MAX_BATCH {
        let message = format!("Batch input contains {inputs} inputs; the limit is {MAX_BATCH}");
        return Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message));
    }
    Ok((kind, body))
}

async fn batch_upsert(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<UpsertBody, _> = parse_body(&body);
    let inputs = parsed.as_ref().map_or(0, |b| b.inputs.len());
    serve(&sandbox, call, inputs, Limit::TenSecondly, |portal, effects| {
        let started = iso(Utc::now());
        let (kind, body) = match batch(&kind, parsed, inputs) {
            Ok(batch) => batch,
            Err(e) => return e,
        };
        let mut seen = HashSet::new();
        for input in &body.inputs {
            let Some(id_property) = input.id_property.as_deref() else {
                return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "idProperty is required for upserts");
            };
            match portal.property(kind, id_property) {
                Some(p) if p.has_unique_value => {}
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "VALIDATION_ERROR",
                        format!("{id_property} is not a unique property of {kind}; it cannot be an idProperty"),
                    );
                }
            }
            if !seen.insert((id_property, input.id.as_str())) {
                return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Duplicate IDs found in batch input: [{}]", input.id));
            }
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in &body.inputs {
            let id_property = input.id_property.as_deref().expect("checked above");
            let context = json!({"ids": [input.id]});
            let invalid = portal.check_properties(kind, &input.properties);
            if !invalid.is_empty() {
                let message = format!("Property values were not valid: {}", Value::Array(invalid.clone()));
                let details = invalid.iter().map(|d| json!({"message": d["message"], "code": d["error"], "in": d["name"]})).collect();
                errors.push(standard_error("VALIDATION_ERROR", message, context, details));
                continue;
            }
            match portal.upsert(kind, id_property, &input.id, &input.properties) {
                Err(existing) => errors.push(standard_error(
                    "CONFLICT",
                    format!("{} already exists. Existing ID: {existing}", singular(kind)),
                    context,
                    Vec::new(),
                )),
                Ok(written) => {
                    let (id, new) = match written {
                        Written::Created(id) => (id, true),
                        Written::Updated(id) => (id, false),
                    };
                    effects.push(Effect {
                        kind: if new { "created" } else { "updated" },
                        object_type: kind.to_owned(),
                        id: id.to_string(),
                    });
                    let object = &portal.stores[kind].objects[&id];
                    let wanted: Vec<String> = input.properties.keys().cloned().collect();
                    let mut json = object.to_json(Some(&wanted));
                    json["new"] = Value::Bool(new);
                    if let Some(trace) = &input.object_write_trace_id {
                        json["objectWriteTraceId"] = Value::String(trace.clone());
                    }
                    results.push(json);
                }
            }
        }
        batch_response(results, errors, started)
    })
    .await
}

fn singular(kind: &str) -> &'static str {
    match kind {
        "contacts" => "Contact",
        "companies" => "Company",
        "deals" => "Deal",
        _ => "Object",
    }
}

/// 200 with every result, or 207 with the errors beside them.
fn batch_response(results: Vec<Value>, errors: Vec<Value>, started: String) -> (StatusCode, Value) {
    let mut body = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(Utc::now())});
    if errors.is_empty() {
        return (StatusCode::OK, body);
    }
    body["numErrors"] = json!(errors.len());
    body["errors"] = Value::Array(errors);
    (StatusCode::MULTI_STATUS, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadBody {
    inputs: Vec<ReadInput>,
    #[serde(default)]
    properties: Vec<String>,
    id_property: Option<String>,
}

#[derive(Deserialize)]
struct ReadInput {
    id: String,
}

async fn batch_read(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<ReadBody, _> = parse_body(&body);
    let inputs = parsed.as_ref().map_or(0, |b| b.inputs.len());
    serve(&sandbox, call, inputs, Limit::TenSecondly, |portal, _| {
        let started = iso(Utc::now());
        let (kind, body) = match batch(&kind, parsed, inputs) {
            Ok(batch) => batch,
            Err(e) => return e,
        };
        let id_property = body.id_property.as_deref().unwrap_or("hs_object_id");
        let wanted = if body.properties.is_empty() { default_wanted(kind) } else { body.properties.clone() };
        let store = portal.stores.entry(kind).or_default();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in &body.inputs {
            match store.find(id_property, &input.id) {
                Some(object) => results.push(object.to_json(Some(&wanted))),
                None => missing.push(input.id.clone()),
            }
        }
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            let message = format!(
                "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
                singular(kind).to_uppercase()
            );
            vec![standard_error("OBJECT_NOT_FOUND", message, json!({"ids": missing}), Vec::new())]
        };
        batch_response(results, errors, started)
    })
    .await
}
