//! The HubSpot CRM emulator: the properties API, the objects API for standard and custom object
//! types (`objects.rs`), search (`search.rs`) and custom object schemas (`schemas.rs`), behind
//! Bearer-token auth and the portal's rate budgets.

mod associations;
mod budget;
mod objects;
mod portal;
mod properties;
mod query;
mod reference;
mod schemas;
mod search;
mod store;
mod webhooks;

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

pub use budget::Tier;
pub use portal::{Portal, PortalConfig, Refused};
pub use properties::{Property, PropertyOption};
pub use schemas::{Labels, SchemaEgg};
pub use webhooks::{Subscription, WebhookAttempt, WebhookCounts, WebhookSettings, signature_headers};

use crate::emulate::{Answer, Api, Headers, emulate};
use crate::faults::Service;
use crate::ledger::Effect;
use crate::{Call, Sandbox, SandboxState};

/// Batch calls take at most this many inputs (API-CONTRACTS §1.4).
const MAX_BATCH: usize = 100;

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/crm/v3/properties/{object_type}", get(list_properties).post(create_property))
        .route("/crm/v3/properties/{object_type}/{property_name}", axum::routing::patch(update_property))
        .route("/crm/v3/objects/{object_type}", get(objects::list).post(objects::create))
        .route("/crm/v3/objects/{object_type}/{id}", get(objects::get).patch(objects::update).delete(objects::archive))
        .route("/crm/v3/objects/{object_type}/batch/read", post(objects::batch_read))
        .route("/crm/v3/objects/{object_type}/batch/create", post(objects::batch_create))
        .route("/crm/v3/objects/{object_type}/batch/update", post(objects::batch_update))
        .route("/crm/v3/objects/{object_type}/batch/upsert", post(objects::batch_upsert))
        .route("/crm/v3/objects/{object_type}/batch/archive", post(objects::batch_archive))
        .route("/crm/v3/objects/{object_type}/search", post(search_objects))
        .route("/crm/v3/objects/{object_type}/merge", post(objects::merge))
        .route("/crm/v4/associations/{from}/{to}/batch/read", post(associations::batch_read))
        .route("/crm/v4/associations/{from}/{to}/batch/create", post(associations::batch_create))
        .route("/crm/v4/associations/{from}/{to}/batch/associate/default", post(associations::batch_default))
        .route("/crm/v4/associations/{from}/{to}/batch/archive", post(associations::batch_archive))
        .route("/crm/v4/objects/{object_type}/{id}/associations/{to}", get(associations::list))
        .route("/crm/v4/objects/{object_type}/{id}/associations/default/{to}/{to_id}", axum::routing::put(associations::put_default))
        .route("/crm/v4/objects/{object_type}/{id}/associations/{to}/{to_id}", axum::routing::delete(associations::delete))
        .route("/crm/associations/v4/{from}/{to}/labels", get(associations::labels).post(associations::create_label))
        .route("/crm/v3/owners", get(reference::owners))
        .route("/crm/v3/pipelines/{object_type}", get(reference::pipelines).post(reference::create_pipeline))
        .route("/crm/v3/pipelines/{object_type}/{pipeline_id}", axum::routing::delete(reference::archive_pipeline))
        .route("/account-info/v3/details", get(account_details))
        .route("/crm-object-schemas/v3/schemas", get(schemas::list).post(schemas::create))
        .route("/crm-object-schemas/v3/schemas/{object_type}", get(schemas::get).patch(schemas::patch).delete(schemas::delete))
}

/// A HubSpot error body (`Error` in the specs); its `correlationId` is the answer's (`stamp`).
fn error(status: StatusCode, category: &str, message: impl Into<String>) -> Answer {
    (status, json!({"status": "error", "message": message.into(), "correlationId": "", "category": category}))
}

/// One correlation id per answer: in the `X-HubSpot-Correlation-Id` header and in an error
/// body's `correlationId`, as HubSpot gives them.
fn stamp(body: &mut Value) -> Headers {
    let id = uuid::Uuid::now_v7().to_string();
    if let Some(field) = body.get_mut("correlationId") {
        *field = Value::String(id.clone());
    }
    vec![("x-hubspot-correlation-id", id)]
}

/// A route HubSpot does not have, or a method a route does not take: HubSpot's JSON 404 or 405,
/// not an empty answer.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let (status, mut body) = error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("No route for {method} {}", uri.path()));
    answer_with(status, &mut body)
}

pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{method} is not supported by {}", uri.path());
    let (status, mut body) = error(StatusCode::METHOD_NOT_ALLOWED, "VALIDATION_ERROR", message);
    answer_with(status, &mut body)
}

fn answer_with(status: StatusCode, body: &mut Value) -> Response {
    use axum::response::IntoResponse;
    let headers = stamp(body);
    let mut response = (status, axum::Json(body.take())).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().expect("a uuid is a header value"));
    }
    response
}

/// A per-input error inside a 207 (`StandardError` in the specs).
fn standard_error(category: &str, message: String, context: Value, errors: Vec<Value>) -> Value {
    json!({"status": "error", "category": category, "message": message, "context": context, "errors": errors, "links": {}})
}

/// Which budget a request spends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The portal's rolling ten-second and daily budget, reported in rate-limit headers.
    TenSecondly,
    /// The search API's own 5 per second, without rate-limit headers.
    Search,
    /// Exempt from the ten-second budget (the v4 association batch calls), with its headers.
    Exempt,
}

/// HubSpot's side of the request pipeline: portals by private app token, its 401, 429 and 5xx
/// bodies, and its rate-limit headers.
struct HubSpot;

impl Api for HubSpot {
    const SERVICE: Service = Service::HubSpot;
    type Account = Portal;
    type Limit = Limit;

    fn account<'s>(state: &'s mut SandboxState, token: &str) -> Option<&'s mut Portal> {
        state.portals.iter_mut().find(|p| p.config.token == token)
    }

    fn unauthorized() -> Answer {
        error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    }

    fn throttled(limit: &Limit, retry_after: Option<u64>) -> (Answer, Headers) {
        let policy = if *limit == Limit::Search { "SECONDLY" } else { "TEN_SECONDLY_ROLLING" };
        let headers = retry_after.map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default();
        ((StatusCode::TOO_MANY_REQUESTS, rate_limit_body(policy)), headers)
    }

    fn failed(status: StatusCode, applied: bool) -> Answer {
        let message = if applied {
            "bad gateway (injected by the sandbox after applying the request)"
        } else {
            "internal error (injected by the sandbox)"
        };
        error(status, "INTERNAL_ERROR", message)
    }

    fn spend(portal: &mut Portal, limit: &Limit, now: Instant) -> Result<(), Answer> {
        let spent = match limit {
            Limit::TenSecondly => portal.spend(now),
            Limit::Search => portal.spend_search(now),
            Limit::Exempt => Ok(()),
        };
        spent.map_err(|policy| (StatusCode::TOO_MANY_REQUESTS, rate_limit_body(policy)))
    }

    fn budget_headers(portal: &Portal, limit: &Limit) -> Headers {
        if *limit == Limit::Search { Vec::new() } else { portal.rate_headers() }
    }

    fn stamp(body: &mut Value) -> Headers {
        stamp(body)
    }
}

/// Runs a HubSpot request through the shared pipeline (see `emulate`).
async fn serve(
    sandbox: &Sandbox,
    call: Call,
    inputs: usize,
    limit: Limit,
    handler: impl FnOnce(&mut Portal, &mut Vec<Effect>) -> Answer,
) -> Response {
    emulate::<HubSpot>(sandbox, call, inputs, limit, |portal, applied| handler(portal, &mut applied.effects)).await
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
        "correlationId": "",
        "policyName": policy,
        "requestId": uuid::Uuid::now_v7().to_string(),
    })
}

/// Resolves the path's object type in `portal`, or answers as HubSpot does for an unknown one.
fn known_type(portal: &Portal, name: &str) -> Result<String, Answer> {
    portal
        .object_type(name)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Unable to infer object type from: {name}")))
}

/// The object type and body of a request with `inputs` batch inputs, or HubSpot's 400 for a bad
/// one, before anything is applied.
fn request<T>(portal: &Portal, kind: &str, parsed: Result<T, Answer>, inputs: usize) -> Result<(String, T), Answer> {
    let kind = known_type(portal, kind)?;
    let body = parsed?;
    if inputs > MAX_BATCH {
        let message = format!("Batch input contains {inputs} inputs; the limit is {MAX_BATCH}");
        return Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message));
    }
    Ok((kind, body))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| {
        error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column()))
    })
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

async fn list_properties(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(portal, &kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let results: Vec<Value> = portal.properties[&kind].iter().map(|(p, builtin)| p.to_json(*builtin)).collect();
        (StatusCode::OK, json!({"results": results}))
    })
    .await
}

/// `POST /crm/v3/properties/{objectType}`: a new property (201), or 409 when the name is taken.
/// Objects read after it carry the property (unset until written).
async fn create_property(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<Property, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let (kind, property) = match request(portal, &kind, parsed, 0) {
            Ok(request) => request,
            Err(e) => return e,
        };
        if portal.property(&kind, &property.name).is_some() {
            let message = format!("A property named '{}' already exists.", property.name);
            return error(StatusCode::CONFLICT, "OBJECT_ALREADY_EXISTS", message);
        }
        let json = property.to_json(false);
        portal.properties.get_mut(&kind).expect("every known type has definitions").push((property, false));
        (StatusCode::CREATED, json)
    })
    .await
}

/// `PATCH /crm/v3/properties/{objectType}/{propertyName}`: a property's type, field type, label
/// or options changed (HubSpot allows it while the values fit), answered with its definition.
async fn update_property(State(sandbox): State<Sandbox>, call: Call, Path((kind, name)): Path<(String, String)>, body: Bytes) -> Response {
    let parsed: Result<Value, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let (kind, change) = match request(portal, &kind, parsed, 0) {
            Ok(request) => request,
            Err(e) => return e,
        };
        let Some((property, builtin)) = portal.properties.get_mut(&kind).and_then(|list| list.iter_mut().find(|(p, _)| p.name == name))
        else {
            return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("Unable to find property {name} on {kind}"));
        };
        let mut definition = serde_json::to_value(&*property).expect("a property serializes");
        for key in ["label", "type", "fieldType", "description", "options", "groupName"] {
            if let Some(value) = change.get(key) {
                definition[key] = value.clone();
            }
        }
        match serde_json::from_value::<Property>(definition) {
            Ok(changed) => {
                *property = changed;
                (StatusCode::OK, property.to_json(*builtin))
            }
            Err(e) => error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid property update: {e}")),
        }
    })
    .await
}

/// `GET /account-info/v3/details`: the portal's id (the `portalId` of its webhook events).
async fn account_details(State(sandbox): State<Sandbox>, call: Call) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let details = json!({
            "portalId": portal.id, "accountType": "STANDARD", "timeZone": "America/Costa_Rica", "companyCurrency": "CRC",
            "additionalCurrencies": [], "utcOffset": "-06:00", "utcOffsetMilliseconds": -21_600_000, "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        });
        (StatusCode::OK, details)
    })
    .await
}

async fn search_objects(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<search::SearchBody, _> = parse_body(&body);
    let (delay, skips) = {
        let state = sandbox.lock();
        let faults = state.faults.faults(Service::HubSpot);
        (faults.search_delay_ms, faults.search_skips.clone())
    };
    serve(&sandbox, call, 0, Limit::Search, |portal, _| {
        let (kind, body) = match request(portal, &kind, parsed, 0) {
            Ok(request) => request,
            Err(e) => return e,
        };
        // HubSpot indexes writes for search a moment after it applies them
        let visible_before = Utc::now() - chrono::Duration::milliseconds(delay as i64);
        search::search(portal, &kind, body, search::Index { visible_before, skips: &skips })
    })
    .await
}
