//! The QuickBooks Online emulator (API-CONTRACTS §4): realms under `/v3/company/{realmId}/…`
//! with items and income accounts, the query language subset (`query.rs`), create and sparse
//! or full update guarded by `SyncToken`, batch (≤ 30 operations), QuickBooks' `Fault`
//! envelope and codes (6240 duplicate name, 5010 stale object, 610 inactive or missing object,
//! 2050 length, 2020 required, 2500 bad reference, 2010 unknown property, 4000/4001 query), its
//! limits (500 requests per minute and 10 per second per realm, 40 batch calls per minute; 429
//! with its throttle body), the `intuit_tid` header, and the OAuth token endpoint with rotating
//! refresh tokens (`oauth.rs`).
//!
//! Assumptions where the contracts are silent: an item's `Type` defaults to `Service`; a
//! `minorversion` below 75 is refused (400) rather than served as 75; a batch of more than 30
//! operations is a 400 `ValidationFault` (code 6000); the 10-concurrent-requests cap is not
//! emulated (requests are answered one at a time, so only the rate limits bite).

mod oauth;
mod query;
mod realm;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryString, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use chrono::Utc;
use serde_json::{Value, json};

pub(crate) use realm::Realm;
pub use realm::RealmConfig;

use crate::emulate::{Answer, Api, Applied, Headers, emulate};
use crate::faults::Service;
use crate::ledger::Effect;
use crate::{Call, Sandbox, SandboxState};
use query::Query;
use realm::Limit;

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/v3/company/{realm}/{*path}", any(call))
        .route("/oauth2/v1/tokens/bearer", post(oauth::token))
        .route("/connect/oauth2", get(oauth::authorize))
}

/// QuickBooks' most items per batch call.
const BATCH_MAX: usize = 30;
/// The lowest minor version QuickBooks serves since 2025-08-01.
const MINOR_VERSION_MIN: u32 = 75;

/// One error of QuickBooks' `Fault` envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    kind: &'static str,
    pub code: &'static str,
    message: String,
    detail: String,
    element: String,
}

impl Fault {
    pub fn validation(code: &'static str, message: &str, detail: String, element: &str) -> Fault {
        Fault { kind: "ValidationFault", code, message: message.into(), detail, element: element.into() }
    }

    pub fn required(field: &str) -> Fault {
        let detail = format!("Required parameter {field} is missing in the request");
        Fault::validation("2020", "Required param missing, need to supply the required value for the API", detail, field)
    }

    pub fn not_found() -> Fault {
        let detail = "Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees.";
        Fault::validation("610", "Object Not Found", detail.into(), "")
    }

    pub fn business(detail: String) -> Fault {
        Fault::validation(
            "6000",
            "A business validation error has occurred while processing your request",
            format!("Business Validation Error: {detail}"),
            "",
        )
    }

    fn json(&self) -> Value {
        json!({"Error": [{"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}], "type": self.kind})
    }

    fn answer(&self) -> Answer {
        let status = match self.kind {
            "AuthenticationFault" => StatusCode::UNAUTHORIZED,
            "AuthorizationFault" => StatusCode::FORBIDDEN,
            "SystemFault" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, json!({"Fault": self.json(), "time": now()}))
    }
}

/// The `time` every answer carries, in the company's offset with milliseconds.
fn now() -> String {
    realm::in_company_zone(Utc::now()).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

fn entity(name: &str, object: Value) -> Answer {
    (StatusCode::OK, json!({name: object, "time": now()}))
}

/// QuickBooks' side of the request pipeline: realms by access token, the realm's budgets.
struct QuickBooks;

impl Api for QuickBooks {
    const SERVICE: Service = Service::QuickBooks;
    type Account = Realm;
    type Limit = Limit;

    fn account<'s>(state: &'s mut SandboxState, token: &str) -> Option<&'s mut Realm> {
        state.realms.iter_mut().find(|r| r.opens(token))
    }

    fn unauthorized() -> Answer {
        let detail = "Token expired or invalid: refresh the access token (or re-authorize the app)";
        let fault = Fault {
            kind: "AuthenticationFault",
            code: "3200",
            message: "message=AuthenticationFailed; errorCode=003200; statusCode=401".into(),
            detail: detail.into(),
            element: String::new(),
        };
        fault.answer()
    }

    fn throttled(_: &Limit, retry_after: Option<u64>) -> (Answer, Headers) {
        (throttle(), retry_after.map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default())
    }

    fn failed(status: StatusCode, applied: bool) -> Answer {
        let detail = if applied {
            "System Failure Error (injected by the sandbox after applying the request)"
        } else {
            "System Failure Error (injected by the sandbox)"
        };
        let (_, body) = Fault {
            kind: "SystemFault",
            code: "10000",
            message: "An application error has occurred while processing your request".into(),
            detail: detail.into(),
            element: String::new(),
        }
        .answer();
        (status, body)
    }

    fn spend(realm: &mut Realm, limit: &Limit, now: Instant) -> Result<(), Answer> {
        if realm.spend(*limit, now) { Ok(()) } else { Err(throttle()) }
    }

    fn budget_headers(_: &Realm, _: &Limit) -> Headers {
        Vec::new()
    }

    fn stamp(_: &mut Value) -> Headers {
        vec![("intuit_tid", uuid::Uuid::now_v7().to_string())]
    }
}

/// QuickBooks' 429 body.
fn throttle() -> Answer {
    let error = json!({"Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429", "Detail": "The request limit was reached.", "code": "3001"});
    (StatusCode::TOO_MANY_REQUESTS, json!({"Fault": {"Error": [error], "type": "SERVICE"}, "time": now()}))
}

async fn call(
    State(sandbox): State<Sandbox>,
    request: Call,
    Path((realm_id, path)): Path<(String, String)>,
    QueryString(params): QueryString<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let method = request.method.clone();
    let limit = if path == "batch" { Limit::Batch } else { Limit::Call };
    let inputs = if path == "batch" { batch_size(&body) } else { 0 };
    emulate::<QuickBooks>(&sandbox, request, inputs, limit, move |realm, applied| {
        if realm.config.realm_id != realm_id {
            let detail = format!("The access token is not for company {realm_id}");
            let fault = Fault {
                kind: "AuthorizationFault",
                code: "3100",
                message: "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403".into(),
                detail,
                element: String::new(),
            };
            return fault.answer();
        }
        match minor_version(&params) {
            Err(fault) => fault.answer(),
            Ok(()) => handle(realm, &method, &path, &params, &body, applied),
        }
    })
    .await
}

fn batch_size(body: &[u8]) -> usize {
    serde_json::from_slice::<Value>(body).ok().and_then(|b| b["BatchItemRequest"].as_array().map(Vec::len)).unwrap_or_default()
}

fn minor_version(params: &HashMap<String, String>) -> Result<(), Fault> {
    match params.get("minorversion").map(|v| v.parse::<u32>()) {
        None => Ok(()),
        Some(Ok(v)) if v >= MINOR_VERSION_MIN => Ok(()),
        Some(_) => Err(Fault::validation(
            "4001",
            "Invalid minor version",
            format!("minorversion {} is not supported: the lowest is {MINOR_VERSION_MIN}", params["minorversion"]),
            "minorversion",
        )),
    }
}

fn handle(realm: &mut Realm, method: &Method, path: &str, params: &HashMap<String, String>, body: &[u8], applied: &mut Applied) -> Answer {
    let segments: Vec<&str> = path.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["query"]) => answer_query(realm, params.get("query").map_or("", String::as_str)),
        ("POST", ["query"]) => answer_query(realm, &String::from_utf8_lossy(body)),
        ("GET", ["item", id]) => {
            id.parse().ok().and_then(|id| realm.items.get(&id)).map_or_else(|| Fault::not_found().answer(), |i| entity("Item", i.clone()))
        }
        ("GET", ["account", id]) => id
            .parse()
            .ok()
            .and_then(|id| realm.accounts.get(&id))
            .map_or_else(|| Fault::not_found().answer(), |a| entity("Account", a.clone())),
        ("POST", ["item"]) if params.get("operation").is_some_and(|o| o == "delete") => {
            Fault::business("Items cannot be deleted: make them inactive (Active false)".into()).answer()
        }
        ("POST", ["item"]) => match serde_json::from_slice::<Value>(body) {
            Ok(item) => write(realm, &item, applied).map_or_else(|f| f.answer(), |item| entity("Item", item)),
            Err(e) => {
                Fault::validation("2010", "Request has invalid or unsupported property", format!("The body is not JSON: {e}"), "").answer()
            }
        },
        ("POST", ["batch"]) => batch(realm, body, applied),
        ("GET", ["companyinfo", _]) => entity("CompanyInfo", company_info(realm)),
        _ => Fault::validation("500", "Unsupported Operation", format!("Operation {method} {path} is not supported."), "").answer(),
    }
}

/// An item write, kept in the ledger.
fn write(realm: &mut Realm, item: &Value, applied: &mut Applied) -> Result<Value, Fault> {
    let written = realm.write_item(item)?;
    let kind = if item.get("Id").is_some() { "updated" } else { "created" };
    applied.effects.push(Effect { kind, object_type: "Item".into(), id: written["Id"].as_str().unwrap_or_default().to_owned() });
    Ok(written)
}

fn company_info(realm: &Realm) -> Value {
    json!({
        "CompanyName": "Sandbox Company", "LegalName": "Sandbox Company", "Country": "US", "domain": "QBO", "sparse": false,
        "Id": realm.config.realm_id, "SyncToken": "0",
    })
}

fn answer_query(realm: &Realm, text: &str) -> Answer {
    match run_query(&realm.items, &realm.accounts, text) {
        Ok(response) => (StatusCode::OK, json!({"QueryResponse": response, "time": now()})),
        Err(fault) => fault.answer(),
    }
}

/// The properties QuickBooks lets a query filter or sort on.
const QUERYABLE: [&str; 10] = [
    "Id",
    "Name",
    "Sku",
    "Active",
    "Type",
    "FullyQualifiedName",
    "MetaData.CreateTime",
    "MetaData.LastUpdatedTime",
    "AccountType",
    "Classification",
];

/// A query's `QueryResponse`: a page of objects, `{}` when none, or `totalCount` for `count(*)`.
/// Without a condition on `Active`, only active objects are returned, as QuickBooks does.
fn run_query(items: &BTreeMap<u64, Value>, accounts: &BTreeMap<u64, Value>, text: &str) -> Result<Value, Fault> {
    let query = Query::parse(text).map_err(|detail| Fault::validation("4000", "Error parsing query", detail, ""))?;
    let invalid = |detail: String| Fault::validation("4001", "Invalid query", format!("QueryValidationError: {detail}"), "");
    let (name, objects) = match query.entity.to_lowercase().as_str() {
        "item" => ("Item", items),
        "account" => ("Account", accounts),
        _ => return Err(invalid(format!("Invalid entity name: {}", query.entity))),
    };
    let fields = query.conditions.iter().map(|c| c.field.as_str()).chain(query.order.iter().map(|(f, _)| f.as_str()));
    if let Some(field) = fields.into_iter().find(|f| !QUERYABLE.iter().any(|q| q.eq_ignore_ascii_case(f))) {
        return Err(invalid(format!("property '{field}' is not queryable")));
    }
    if query.max > 1000 {
        return Err(invalid(format!("value {} is too large. Max allowed value is: 1000", query.max)));
    }
    let mut matching: Vec<&Value> =
        objects.values().filter(|o| query.matches(o) && (query.mentions_active() || o["Active"] == true)).collect();
    if query.count {
        return Ok(json!({"totalCount": matching.len()}));
    }
    query.sort(&mut matching);
    let page: Vec<Value> = matching.into_iter().skip(query.start - 1).take(query.max).cloned().collect();
    if page.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({name: page.clone(), "startPosition": query.start, "maxResults": page.len()}))
}

/// `POST …/batch`: up to 30 operations run in order, each answered by its `bId`; queries see
/// the realm as it was when the batch began.
fn batch(realm: &mut Realm, body: &[u8], applied: &mut Applied) -> Answer {
    let requests = match serde_json::from_slice::<Value>(body).ok().and_then(|b| b["BatchItemRequest"].as_array().cloned()) {
        Some(requests) => requests,
        None => {
            return Fault::validation(
                "2010",
                "Request has invalid or unsupported property",
                "The body must be {\"BatchItemRequest\": [...]}".into(),
                "",
            )
            .answer();
        }
    };
    if requests.len() > BATCH_MAX {
        return Fault::business(format!("A batch holds at most {BATCH_MAX} operations; this one has {}", requests.len())).answer();
    }
    let before = requests.iter().any(|r| r.get("Query").is_some()).then(|| realm.items.clone());
    let mut responses = Vec::with_capacity(requests.len());
    for request in &requests {
        let id = request["bId"].clone();
        let result = match (request["operation"].as_str(), request.get("Item"), request["Query"].as_str()) {
            (_, _, Some(text)) => run_query(before.as_ref().unwrap_or(&realm.items), &realm.accounts, text).map(|r| ("QueryResponse", r)),
            (Some("create"), Some(item), _) if item.get("Id").is_none() => write(realm, item, applied).map(|i| ("Item", i)),
            (Some("update"), Some(item), _) if item.get("Id").is_some() => write(realm, item, applied).map(|i| ("Item", i)),
            (Some("delete"), Some(_), _) => Err(Fault::business("Items cannot be deleted: make them inactive (Active false)".into())),
            (operation, _, _) => Err(Fault::validation(
                "2010",
                "Request has invalid or unsupported property",
                format!("Unsupported batch operation {operation:?} (create needs an Item without Id, update one with Id)"),
                "operation",
            )),
        };
        responses.push(match result {
            Ok((name, value)) => json!({"bId": id, name: value}),
            Err(fault) => json!({"bId": id, "Fault": fault.json()}),
        });
    }
    (StatusCode::OK, json!({"BatchItemResponse": responses, "time": now()}))
}

impl Sandbox {
    /// Adds a QuickBooks realm (its tokens come from `config` or the token endpoint).
    pub fn add_realm(&self, config: RealmConfig) -> Result<(), String> {
        let mut state = self.lock();
        if state.realms.iter().any(|r| r.config.realm_id == config.realm_id) {
            return Err(format!("realm {} is already set up", config.realm_id));
        }
        state.realms.push(Realm::new(config));
        Ok(())
    }

    /// Every item of the realm, active or not, by id (for tests in the same process).
    pub fn quickbooks_items(&self, realm_id: &str) -> Result<Vec<Value>, String> {
        self.with_realm(realm_id, |realm| Ok(realm.items.values().cloned().collect()))
    }

    /// Writes an item as someone in QuickBooks would (a create without `Id`, or an update with
    /// the current `SyncToken`), without spending the budget: the item, or the fault's detail.
    pub fn write_quickbooks_item(&self, realm_id: &str, item: Value) -> Result<Value, String> {
        self.with_realm(realm_id, |realm| realm.write_item(&item).map_err(|f| format!("{}: {}", f.code, f.detail)))
    }

    /// How many refresh grants the token endpoint answered for the realm.
    pub fn token_refreshes(&self, realm_id: &str) -> Result<u64, String> {
        self.with_realm(realm_id, |realm| Ok(realm.refreshes))
    }

    /// Makes the realm's access tokens expire now.
    pub fn expire_access_tokens(&self, realm_id: &str) -> Result<(), String> {
        self.with_realm(realm_id, |realm| {
            realm.expire_access_tokens();
            Ok(())
        })
    }

    fn with_realm<T>(&self, realm_id: &str, f: impl FnOnce(&mut Realm) -> Result<T, String>) -> Result<T, String> {
        let mut state = self.lock();
        let realm = state.realms.iter_mut().find(|r| r.config.realm_id == realm_id).ok_or_else(|| format!("no realm {realm_id}"))?;
        f(realm)
    }
}
