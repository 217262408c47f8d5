//! Stripe's wire (API-CONTRACTS §3): the account, products with their default price expanded,
//! and events, each list paged by `starting_after` in Stripe's newest-first order; and how
//! Stripe's answers are classified.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use syncline_core::metric::Service;
use syncline_core::{ConnectorError, ErrorClass};
use syncline_resilience::{Budget, Feedback, Health, Policy, PolicyConfig, Reply};

use super::config::StripeProfile;
use crate::http::{Answer, Endpoint, Request};

/// The most objects a Stripe list call returns.
pub const LIST_LIMIT: usize = 100;

/// The product and price events an incremental read catches up from.
pub const CHANGE_EVENTS: [&str; 5] = ["product.created", "product.updated", "product.deleted", "price.created", "price.updated"];

/// A list page: `{"object": "list", "data": [...], "has_more": …}`.
#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub active: bool,
    pub created: i64,
    pub updated: i64,
    #[serde(default)]
    pub default_price: Option<DefaultPrice>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub unit_label: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub livemode: bool,
}

/// A product's default price: its id, or the price when the read expanded it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DefaultPrice {
    Price(Price),
    Id(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: String,
    pub currency: String,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    pub unit_amount_decimal: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub recurring: Option<Recurring>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Recurring {
    pub interval: String,
    #[serde(default)]
    pub interval_count: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    pub created: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

impl Event {
    /// The product an event is about (see [`product_of`]).
    pub fn product_id(&self) -> Option<&str> {
        product_of(&self.data.object)
    }
}

/// The product a product or price object is about: the product itself, or a price's product
/// (its id, or the expanded product's).
pub fn product_of(object: &serde_json::Value) -> Option<&str> {
    match object["object"].as_str() {
        Some("product") => object["id"].as_str(),
        Some("price") => object["product"].as_str().or_else(|| object["product"]["id"].as_str()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Account {
    id: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    param: Option<String>,
}

/// One Stripe account as its key sees it.
pub struct StripeApi {
    endpoint: Endpoint,
    policy: Policy,
}

impl StripeApi {
    /// A client whose calls share the profile's request rate and a circuit breaker.
    pub fn new(profile: &StripeProfile) -> Result<StripeApi, ConnectorError> {
        let config = PolicyConfig {
            name: "stripe".into(),
            budget: Some(Budget::per(profile.requests_per_second.max(1), Duration::from_secs(1)).with_margin(Duration::from_millis(20))),
            max_in_flight: Some(profile.in_flight.max(1)),
            bulkhead_wait: profile.call_timeout,
            overall_timeout: profile.call_timeout,
            unavailable_for: profile.unreachable_for,
            ..PolicyConfig::default()
        };
        Ok(StripeApi { endpoint: Endpoint::new(Service::STRIPE, &profile.base_url, &profile.key)?, policy: Policy::new(config) })
    }

    pub fn base_url(&self) -> &str {
        self.endpoint.base_url()
    }

    /// How the account's policy is doing, for `/readyz`.
    pub fn health(&self) -> Vec<Health> {
        vec![self.policy.health()]
    }

    /// `GET /v1/account`: the account's id (`acct_…`).
    pub async fn account_id(&self) -> Result<String, ConnectorError> {
        Ok(self.call::<Account>("account", Request::get("/v1/account")).await?.id)
    }

    /// `GET /v1/products`: up to 100 products with their default price, newest first, older
    /// than `after`.
    pub async fn products(&self, after: Option<&str>) -> Result<List<Product>, ConnectorError> {
        let mut pairs = vec![("limit", LIST_LIMIT.to_string()), ("expand[]", "data.default_price".into())];
        pairs.extend(after.map(|a| ("starting_after", a.to_owned())));
        self.call("list_products", Request::get(format!("/v1/products?{}", query(&pairs)))).await
    }

    /// `GET /v1/products?ids[]=…`: these products (≤ 100; deleted ones are left out).
    pub async fn products_by_id(&self, ids: &[&str]) -> Result<List<Product>, ConnectorError> {
        let mut pairs = vec![("limit", LIST_LIMIT.to_string()), ("expand[]", "data.default_price".into())];
        pairs.extend(ids.iter().map(|id| ("ids[]", (*id).to_owned())));
        self.call("list_products", Request::get(format!("/v1/products?{}", query(&pairs)))).await
    }

    /// `GET /v1/events`: up to 100 product and price events created at or after `since` (Unix
    /// seconds), newest first, older than `after`.
    pub async fn change_events(&self, since: i64, after: Option<&str>) -> Result<List<Event>, ConnectorError> {
        let mut pairs = vec![("limit", LIST_LIMIT.to_string()), ("created[gte]", since.to_string())];
        pairs.extend(CHANGE_EVENTS.iter().map(|t| ("types[]", (*t).to_owned())));
        pairs.extend(after.map(|a| ("starting_after", a.to_owned())));
        self.call("list_events", Request::get(format!("/v1/events?{}", query(&pairs)))).await
    }

    /// When the newest product or price event was created (Stripe's clock, Unix seconds), if
    /// the account has one: where an incremental read after a full one starts.
    pub async fn newest_change(&self) -> Result<Option<i64>, ConnectorError> {
        let mut pairs = vec![("limit", "1".to_owned())];
        pairs.extend(CHANGE_EVENTS.iter().map(|t| ("types[]", (*t).to_owned())));
        let page: List<Event> = self.call("list_events", Request::get(format!("/v1/events?{}", query(&pairs)))).await?;
        Ok(page.data.first().map(|e| e.created))
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, operation: &str, request: Request) -> Result<T, ConnectorError> {
        let what = request.what();
        let body = self.endpoint.call(&self.policy, operation, request, classify).await?;
        crate::http::decode(Service::STRIPE, &what, &body)
    }
}

fn query(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Stripe's answers as an attempt's outcome (the SDK's rules, API-CONTRACTS §3.7): 2xx is a
/// success; 429 (a rate limit or a lock timeout) waits; 409 and 5xx are retried, as is any
/// answer marked `Stripe-Should-Retry: true` (and none marked `false`); 401/403 are the key's
/// fault; other 4xx the request's.
fn classify(answer: Answer, what: &str) -> Reply<Vec<u8>> {
    let retry_after = answer.header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    let feedback = Feedback { retry_after, ..Feedback::default() };
    if answer.status.is_success() {
        return Reply::ok(answer.body).with_feedback(feedback);
    }
    let body: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let error = body.error;
    let code = error.code.as_deref().unwrap_or(&error.kind);
    let param = error.param.map(|p| format!(" (parameter {p})")).unwrap_or_default();
    let message = format!("{what}: Stripe answered {} ({code}){param}: {}", answer.status.as_u16(), error.message);
    let class = match (answer.status.as_u16(), answer.header("stripe-should-retry")) {
        (429, _) => ErrorClass::RateLimited,
        (_, Some("false")) => ErrorClass::Data,
        (_, Some("true")) | (409 | 500..=599, _) => ErrorClass::Transient { retry_after },
        (401 | 403, _) => ErrorClass::Config,
        _ => ErrorClass::Data,
    };
    Reply::failed(class, message).with_feedback(feedback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn class(status: u16, headers: &[(&'static str, &str)], body: &str) -> Option<ErrorClass> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let answer = Answer { status: StatusCode::from_u16(status).unwrap(), headers: map, body: body.as_bytes().to_vec() };
        classify(answer, "GET /v1/products").outcome.err().map(|f| f.class)
    }

    #[test]
    fn answers_are_classified_as_stripes_sdk_does() {
        assert_eq!(class(200, &[], "{}"), None);
        assert_eq!(class(429, &[], r#"{"error":{"code":"rate_limit","type":"invalid_request_error"}}"#), Some(ErrorClass::RateLimited));
        assert_eq!(class(429, &[], r#"{"error":{"code":"lock_timeout"}}"#), Some(ErrorClass::RateLimited));
        assert_eq!(class(409, &[], "{}"), Some(ErrorClass::Transient { retry_after: None }));
        assert_eq!(class(503, &[("stripe-should-retry", "false")], "{}"), Some(ErrorClass::Data), "the header wins");
        assert_eq!(class(400, &[("stripe-should-retry", "true")], "{}"), Some(ErrorClass::Transient { retry_after: None }));
        assert_eq!(class(401, &[], r#"{"error":{"message":"Invalid API Key provided"}}"#), Some(ErrorClass::Config));
        assert_eq!(class(404, &[], r#"{"error":{"code":"resource_missing"}}"#), Some(ErrorClass::Data));
    }

    #[test]
    fn an_expanded_or_plain_default_price_is_read() {
        let product: Product = serde_json::from_str(
            r#"{"id":"prod_1","name":"A","active":true,"created":1,"updated":2,"metadata":{"sku":"S"},
                "default_price":{"id":"price_1","currency":"usd","unit_amount":2000,"type":"one_time"}}"#,
        )
        .unwrap();
        assert!(matches!(product.default_price, Some(DefaultPrice::Price(ref p)) if p.unit_amount == Some(2000)));
        let plain: Product =
            serde_json::from_str(r#"{"id":"prod_2","name":"B","active":false,"created":1,"updated":2,"default_price":"price_9"}"#).unwrap();
        assert!(matches!(plain.default_price, Some(DefaultPrice::Id(ref id)) if id == "price_9"));
    }
}
