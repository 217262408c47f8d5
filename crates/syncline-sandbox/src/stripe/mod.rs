//! The Stripe emulator (API-CONTRACTS §3): products and prices (create, retrieve, update, list
//! with `expand`, `starting_after`/`ending_before` paging and `created` ranges, product search,
//! delete), the events their changes make (`/v1/events`, newest first), form-encoded
//! parameters with bracket nesting, `Idempotency-Key` replay and mismatch, and test mode's
//! 25 requests per second (100 live) answered with Stripe's 429 body.
//!
//! Assumptions where the contracts are silent: one per-second budget covers every endpoint;
//! search results are newest first and visible at once (Stripe's lag up to a minute is not
//! emulated); `page` tokens are `page_<offset>`.

mod account;
mod catalog;
mod form;
mod webhooks;

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use chrono::Utc;
use serde_json::{Value, json};

pub(crate) use account::Account;
pub use account::StripeAccountConfig;
pub use webhooks::{StripeDelivery, StripeWebhook, signature as stripe_signature};

use crate::emulate::{Answer, Api, Applied, Headers, emulate};
use crate::faults::Service;
use crate::{Call, Sandbox, SandboxState};
use catalog::{Write, ok};
use form::Form;

/// The API version events carry.
pub(crate) const API_VERSION: &str = "2023-08-16";

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new().route("/v1/{*path}", any(call))
}

/// An id as Stripe makes them: a prefix, `_`, and `length` letters and digits.
pub(crate) fn new_id(prefix: &str, length: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let tail: String = (0..length).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    format!("{prefix}_{tail}")
}

/// An `invalid_request_error` 400 naming the parameter.
pub(crate) fn invalid(code: &str, param: &str, message: String) -> Answer {
    let mut error = json!({"code": code, "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")), "message": message, "type": "invalid_request_error"});
    if !param.is_empty() {
        error["param"] = json!(param);
    }
    (StatusCode::BAD_REQUEST, json!({"error": error}))
}

pub(crate) fn missing_param(param: &str) -> Answer {
    invalid("parameter_missing", param, format!("Missing required param: {param}."))
}

/// Stripe's 404 for an object that does not exist (or was deleted).
pub(crate) fn missing(kind: &str, id: &str) -> Answer {
    let (_, mut body) = invalid("resource_missing", "id", format!("No such {kind}: '{id}'"));
    (StatusCode::NOT_FOUND, body.take())
}

pub(crate) fn list_envelope(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "url": url, "has_more": has_more, "data": data})
}

fn rate_limited(livemode: bool) -> Answer {
    let message = if livemode {
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
    } else {
        "Testmode request rate limit exceeded, the rate limits in testmode are lower than livemode. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
    };
    let body = json!({"error": {"code": "rate_limit", "doc_url": "https://stripe.com/docs/error-codes/rate-limit", "message": message, "type": "invalid_request_error"}});
    (StatusCode::TOO_MANY_REQUESTS, body)
}

/// Stripe's side of the request pipeline: accounts by secret key, one budget per account.
struct Stripe;

impl Api for Stripe {
    const SERVICE: Service = Service::Stripe;
    type Account = Account;
    type Limit = ();

    fn account<'s>(state: &'s mut SandboxState, token: &str) -> Option<&'s mut Account> {
        state.stripe.iter_mut().find(|a| a.config.key == token)
    }

    fn unauthorized() -> Answer {
        let message = "Invalid API Key provided. You can find your API keys at https://dashboard.stripe.com/apikeys.";
        (StatusCode::UNAUTHORIZED, json!({"error": {"message": message, "type": "invalid_request_error"}}))
    }

    fn throttled(_: &(), retry_after: Option<u64>) -> (Answer, Headers) {
        (rate_limited(false), retry_after.map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default())
    }

    fn failed(status: StatusCode, applied: bool) -> Answer {
        let message = if applied {
            "An unknown error occurred (injected by the sandbox after applying the request)"
        } else {
            "An unknown error occurred (injected by the sandbox)"
        };
        (status, json!({"error": {"message": message, "type": "api_error"}}))
    }

    fn spend(account: &mut Account, _: &(), now: Instant) -> Result<(), Answer> {
        if account.spend(now) { Ok(()) } else { Err(rate_limited(account.config.livemode())) }
    }

    fn budget_headers(_: &Account, _: &()) -> Headers {
        Vec::new()
    }

    fn stamp(_: &mut Value) -> Headers {
        vec![("request-id", new_id("req", 14))]
    }

    fn token(headers: &axum::http::HeaderMap) -> Option<String> {
        use base64::Engine;
        let value = headers.get("authorization")?.to_str().ok()?;
        if let Some(bearer) = value.strip_prefix("Bearer ") {
            return Some(bearer.to_owned());
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
        String::from_utf8(decoded).ok()?.split(':').next().map(str::to_owned)
    }
}

async fn call(State(sandbox): State<Sandbox>, request: Call, body: Bytes) -> Response {
    let query = request.uri.query().unwrap_or_default().as_bytes();
    let form = if request.method == Method::GET { Form::parse(query) } else { Form::parse(&body) };
    let path = request.uri.path().trim_start_matches("/v1/").to_owned();
    let key = request.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let method = request.method.clone();
    emulate::<Stripe>(&sandbox, request, 1, (), move |account, applied| idempotent(account, &method, &path, &form, key.as_deref(), applied))
        .await
}

/// Runs a write once per idempotency key (GETs are not keyed): a repeat with the same
/// parameters gets the first answer again, marked `Idempotent-Replayed`.
fn idempotent(account: &mut Account, method: &Method, path: &str, form: &Form, key: Option<&str>, applied: &mut Applied) -> Answer {
    let Some(key) = key.filter(|_| *method != Method::GET) else { return handle(account, method, path, form, None) };
    if key.len() > 255 {
        return invalid("idempotency_key_too_long", "", "Idempotency-Key must be at most 255 characters long.".into());
    }
    let request = format!("{method} {path} {}", form.canonical());
    let now = Instant::now();
    match account.replay(key, &request, now) {
        account::Replay::Same(answer) => {
            applied.headers.push(("idempotent-replayed", "true".into()));
            answer
        }
        account::Replay::Mismatch(answer) => answer,
        account::Replay::Fresh => {
            let answer = handle(account, method, path, form, Some(key));
            account.save(key, request, &answer, now);
            answer
        }
    }
}

fn handle(account: &mut Account, method: &Method, path: &str, form: &Form, key: Option<&str>) -> Answer {
    let write = Write { now: Utc::now().timestamp(), key };
    let segments: Vec<&str> = path.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["products"]) => ok(catalog::list_products(account, form)),
        ("POST", ["products"]) => ok(catalog::create_product(account, form, &write)),
        ("GET", ["products", "search"]) => ok(catalog::search_products(account, form)),
        ("GET", ["products", id]) => ok(retrieve(form, "default_price", account.product(id), |p| catalog::expanded_product(account, p))),
        ("POST", ["products", id]) => ok(catalog::update_product(account, id, form, &write)),
        ("DELETE", ["products", id]) => ok(catalog::delete_product(account, id, &write)),
        ("GET", ["prices"]) => ok(catalog::list_prices(account, form)),
        ("POST", ["prices"]) => ok(catalog::create_price(account, form, &write)),
        ("GET", ["prices", id]) => ok(retrieve(form, "product", account.price(id), |p| catalog::expanded_price(account, p))),
        ("POST", ["prices", id]) => ok(catalog::update_price(account, id, form, &write)),
        ("GET", ["account"]) => (StatusCode::OK, account.account_json()),
        ("GET", ["events"]) => ok(list_events(account, form)),
        ("GET", ["events", id]) => ok(account.events.get(id).cloned().ok_or_else(|| missing("event", id))),
        ("POST", ["webhook_endpoints"]) => ok(webhooks::create_endpoint(account, form, write.now)),
        ("GET" | "DELETE", ["webhook_endpoints", rest @ ..]) if rest.len() <= 1 => {
            ok(webhooks::read_or_delete(account, method.as_str(), rest.first().copied(), form))
        }
        _ => unrecognized(method, path),
    }
}

/// One object, with `field` expanded when `expand[]` asks for it.
fn retrieve(form: &Form, field: &str, found: Result<&Value, Answer>, expand: impl FnOnce(&Value) -> Value) -> Result<Value, Answer> {
    form.only(&["expand"])?;
    let found = found?;
    Ok(if catalog::expansions(form, field, false)? { expand(found) } else { found.clone() })
}

/// `GET /v1/events`: `type` (with a `*` wildcard, like `product.*`), `types[]` and `created`.
fn list_events(account: &Account, form: &Form) -> Result<Value, Answer> {
    form.only(&["limit", "starting_after", "ending_before", "type", "types", "created", "delivery_success"])?;
    let created = form.range("created")?;
    let one = form.get("type");
    let types = form.list("types");
    if one.is_some() && !types.is_empty() {
        return Err(invalid("parameter_invalid", "types", "You may not specify both `type` and `types`.".into()));
    }
    let matches = |kind: &str, pattern: &str| pattern.strip_suffix('*').map_or(kind == pattern, |prefix| kind.starts_with(prefix));
    let keep = |e: &Value| {
        let kind = e["type"].as_str().unwrap_or_default();
        created.holds(e["created"].as_i64().unwrap_or_default())
            && one.is_none_or(|t| matches(kind, t))
            && (types.is_empty() || types.iter().any(|t| matches(kind, t)))
    };
    let (page, more) = account.events.page(catalog::cursor(form), catalog::limit(form)?, "event", keep)?;
    Ok(list_envelope("/v1/events", page.into_iter().cloned().collect(), more))
}

fn unrecognized(method: &Method, path: &str) -> Answer {
    let message = format!(
        "Unrecognized request URL ({method}: /v1/{path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
    );
    (StatusCode::NOT_FOUND, json!({"error": {"message": message, "type": "invalid_request_error"}}))
}

impl Sandbox {
    /// Adds a Stripe account reachable with `config.key`.
    pub fn add_stripe_account(&self, config: StripeAccountConfig) -> Result<(), String> {
        let account = Account::new(config)?;
        self.lock().stripe.push(account);
        Ok(())
    }

    /// Makes `count` products with a default price each in the account of `key` (no budget
    /// spent): their ids, newest last.
    pub fn generate_products(&self, key: &str, count: u64) -> Result<Vec<String>, String> {
        self.with_stripe(key, |account| Ok(catalog::generate(account, count, Utc::now().timestamp())))
    }

    /// The account's products that are not deleted, by id, with their default price expanded
    /// (for tests in the same process).
    pub fn stripe_products(&self, key: &str) -> Result<std::collections::BTreeMap<String, Value>, String> {
        self.with_stripe(key, |account| Ok(catalog::products(account)))
    }

    fn with_stripe<T>(&self, key: &str, f: impl FnOnce(&mut Account) -> Result<T, String>) -> Result<T, String> {
        let mut state = self.lock();
        let account = state.stripe.iter_mut().find(|a| a.config.key == key).ok_or("no Stripe account has this key")?;
        f(account)
    }
}
