//! HubSpot's wire: the request and response shapes syncline uses, and one `send` that runs every
//! call through the shared resilience `Policy` and turns HTTP answers into error classes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use syncline_core::metric::Service;
use syncline_core::{ConnectorError, ErrorClass};
use syncline_resilience::{Budget, CallError, Feedback, Policy, PolicyConfig, Reply, ResponseCache, parse_retry_after};

use super::config::HubSpotSettings;

/// One property definition (`Property` in the properties spec); only what syncline checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Vec<PropertyOptionDef>,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub calculated: bool,
    #[serde(default)]
    pub modification_metadata: Option<ModificationMetadata>,
}

impl PropertyDef {
    /// Whether a value can be written to it through the API.
    pub fn writable(&self) -> bool {
        !self.calculated && !self.modification_metadata.as_ref().is_some_and(|m| m.read_only_value)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PropertyOptionDef {
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationMetadata {
    #[serde(default)]
    pub read_only_value: bool,
}

#[derive(Deserialize)]
struct PropertyList {
    results: Vec<PropertyDef>,
}

/// One input of a batch upsert.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpsertInput {
    pub id: String,
    pub id_property: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Inputs<T> {
    inputs: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadRequest<'a> {
    inputs: Vec<ReadInput<'a>>,
    properties: &'a [String],
    id_property: &'a str,
}

#[derive(Serialize)]
struct ReadInput<'a> {
    id: &'a str,
}

/// A batch answer, 200 or 207 (`BatchResponseSimplePublicObject[WithErrors]`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    #[serde(default)]
    pub results: Vec<SimpleObject>,
    #[serde(default)]
    pub errors: Vec<StandardError>,
}

#[derive(Debug, Deserialize)]
pub struct SimpleObject {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    /// Upserts only: whether the object was created.
    #[serde(default)]
    pub new: Option<bool>,
}

/// One input's error inside a 207; every field is optional in practice (API-CONTRACTS §1.5).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StandardError {
    pub category: String,
    pub message: String,
    pub context: BTreeMap<String, Vec<String>>,
    pub errors: Vec<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub message: String,
    pub code: Option<String>,
    #[serde(rename = "in")]
    pub field: Option<String>,
}

/// A search page (`CollectionResponseWithTotalSimplePublicObjectForwardPaging`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchPage {
    pub total: u64,
    pub results: Vec<SimpleObject>,
    pub paging: Option<Paging>,
}

impl SearchPage {
    /// The cursor of the next page, if there is one.
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref().and_then(|p| p.next.as_ref()).map(|n| n.after.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    pub next: Option<NextPage>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextPage {
    pub after: String,
}

/// `GET /account-info/v3/details`, only the id.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDetails {
    portal_id: u64,
}

/// A whole-call error body (`Error`, and the 429 body with `policyName`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ErrorBody {
    message: String,
    category: Option<String>,
    policy_name: Option<String>,
}

/// A HubSpot portal as seen through one private app token.
pub struct HubSpotApi {
    http: reqwest::Client,
    base_url: String,
    token: String,
    policy: Policy,
    /// The search API's own 5 requests per second, outside the ten-second budget.
    search_policy: Policy,
    /// Property definitions change rarely and every pre-flight reads them.
    definitions: ResponseCache<Vec<PropertyDef>>,
}

impl HubSpotApi {
    /// A client whose calls share the portal's budget and a circuit breaker.
    pub fn new(settings: &HubSpotSettings) -> Result<HubSpotApi, ConnectorError> {
        let config = PolicyConfig {
            name: "hubspot".into(),
            // 1 % kept clear of the window's edge: our clock and HubSpot's are not the same clock
            budget: Some(Budget::per(settings.calls_per_ten_seconds, Duration::from_secs(10)).with_margin(Duration::from_millis(100))),
            max_in_flight: Some(settings.in_flight.max(1)),
            bulkhead_wait: settings.call_timeout,
            overall_timeout: settings.call_timeout,
            unavailable_for: settings.unreachable_for,
            ..PolicyConfig::default()
        };
        HubSpotApi::with_policy(settings, config)
    }

    /// A client with its own policy (`check` wants a short one).
    pub fn with_policy(settings: &HubSpotSettings, config: PolicyConfig) -> Result<HubSpotApi, ConnectorError> {
        let http = crate::http::client()?;
        let search = PolicyConfig {
            name: "hubspot-search".into(),
            budget: Some(Budget::per(SEARCHES_PER_SECOND, Duration::from_secs(1)).with_margin(Duration::from_millis(20))),
            ..config.clone()
        };
        Ok(HubSpotApi {
            http,
            base_url: settings.base_url.clone(),
            token: settings.token.clone(),
            policy: Policy::new(config),
            search_policy: Policy::new(search),
            definitions: ResponseCache::new(Duration::from_secs(300), 100),
        })
    }

    /// `GET /crm/v3/properties/{object}`, cached for five minutes.
    pub async fn properties(&self, object: &str) -> Result<Arc<Vec<PropertyDef>>, ConnectorError> {
        let path = format!("/crm/v3/properties/{object}");
        let fetch = async {
            let body = self.send("properties", Method::GET, &path, None).await?;
            decode::<PropertyList>(&path, &body).map(|list| list.results)
        };
        self.definitions.get_or_fetch(&path, fetch).await.map_err(|e| ConnectorError::new(e.class.clone(), e.message.clone()))
    }

    /// `POST /crm/v3/objects/{object}/batch/upsert` (≤ 100 inputs).
    pub async fn batch_upsert(&self, object: &str, inputs: &[UpsertInput]) -> Result<BatchResponse, ConnectorError> {
        let path = format!("/crm/v3/objects/{object}/batch/upsert");
        let body = serde_json::to_vec(&Inputs { inputs }).expect("inputs serialize");
        decode(&path, &self.send("batch_upsert", Method::POST, &path, Some(body)).await?)
    }

    /// `POST /crm/v3/objects/{object}/batch/read` by `id_property` (≤ 100 ids).
    pub async fn batch_read(
        &self,
        object: &str,
        id_property: &str,
        ids: &[&str],
        properties: &[String],
    ) -> Result<BatchResponse, ConnectorError> {
        let path = format!("/crm/v3/objects/{object}/batch/read");
        let request = ReadRequest { inputs: ids.iter().map(|id| ReadInput { id }).collect(), properties, id_property };
        let body = serde_json::to_vec(&request).expect("inputs serialize");
        decode(&path, &self.send("batch_read", Method::POST, &path, Some(body)).await?)
    }

    /// `GET /crm/v3/objects/{object}/{id}` with `properties` (a 404 is a `Data` error).
    pub async fn get_object(&self, object: &str, id: &str, properties: &[String]) -> Result<SimpleObject, ConnectorError> {
        let path = format!("/crm/v3/objects/{object}/{id}");
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("properties", &properties.join(",")).finish();
        let body = self.send("get_object", Method::GET, &format!("{path}?{query}"), None).await?;
        decode(&path, &body)
    }

    /// `POST /crm/v3/objects/{object}/search` with a `PublicObjectSearchRequest` body, paced by the
    /// search API's own limit.
    pub async fn search(&self, object: &str, request: &serde_json::Value) -> Result<SearchPage, ConnectorError> {
        let path = format!("/crm/v3/objects/{object}/search");
        let body = serde_json::to_vec(request).expect("JSON serializes");
        decode(&path, &self.send_through(&self.search_policy, "search", Method::POST, &path, Some(body)).await?)
    }

    /// Each policy's breaker state (the portal's and search's), for `/readyz`.
    pub fn breakers(&self) -> Vec<(String, &'static str)> {
        [&self.policy, &self.search_policy].into_iter().filter_map(Policy::breaker).collect()
    }

    /// The portal's id (`portalId` in its webhook events), from `GET /account-info/v3/details`.
    pub async fn account_id(&self) -> Result<u64, ConnectorError> {
        let path = "/account-info/v3/details";
        decode::<AccountDetails>(path, &self.send("account_details", Method::GET, path, None).await?).map(|d| d.portal_id)
    }

    /// One call through the portal's policy.
    async fn send(&self, operation: &str, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, ConnectorError> {
        self.send_through(&self.policy, operation, method, path, body).await
    }

    /// One call through `policy`: retried while transient or rate-limited, paced by its budget;
    /// each attempt is counted and timed under `operation` (`hubspot_api_*` metrics).
    async fn send_through(
        &self,
        policy: &Policy,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ConnectorError> {
        let url = format!("{}{path}", self.base_url);
        let what = format!("{method} {path}");
        let attempt = || {
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
            if let Some(body) = &body {
                request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let what = what.as_str();
            async move {
                // a reset or a truncated body is transient: an upsert by idProperty is safe to repeat
                match crate::http::exchange(request, Service::HubSpot, operation, &self.base_url, what).await {
                    Ok((status, headers, body)) => classify(status, &headers, body, what),
                    Err((class, message)) => Reply::failed(class, message),
                }
            }
        };
        policy.call(attempt).await.map_err(|e| call_error(e, &self.base_url))
    }
}

/// The search API's limit per portal (API-CONTRACTS §1.3).
const SEARCHES_PER_SECOND: u32 = 5;

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ConnectorError> {
    serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(200).collect();
        ConnectorError::new(
            ErrorClass::Transient { retry_after: None },
            format!("{what}: HubSpot's answer is not the expected JSON ({e}): {start}"),
        )
    })
}

/// A policy's final error as a connector error of the same class.
fn call_error(error: CallError, base_url: &str) -> ConnectorError {
    let class = error.class();
    let message = match &error {
        CallError::Failed(failure) if failure.class == ErrorClass::Config => {
            format!("{} (check the token and its scopes for {base_url})", failure.message)
        }
        other => other.to_string(),
    };
    ConnectorError::new(class, message)
}

/// An HTTP answer as an attempt's outcome: 2xx (207 included) is a success; the rest has a class.
fn classify(status: StatusCode, headers: &HeaderMap, body: Vec<u8>, what: &str) -> Reply<Vec<u8>> {
    let mut feedback = feedback(headers);
    if status.is_success() {
        return Reply::ok(body).with_feedback(feedback);
    }
    let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let category = error.category.as_deref().or(error.policy_name.as_deref()).unwrap_or("no category");
    let message = format!("{what}: HubSpot answered {} ({category}): {}", status.as_u16(), error.message);
    let class = match status.as_u16() {
        429 => {
            match error.policy_name.as_deref() {
                Some("DAILY") => feedback.daily_remaining = Some(0),
                // the search API's per-second limit reopens within a second
                Some("SECONDLY") => feedback.retry_after = feedback.retry_after.or(Some(Duration::from_secs(1))),
                _ => {}
            }
            ErrorClass::RateLimited
        }
        401 | 403 => ErrorClass::Config,
        408 | 500..=599 => ErrorClass::Transient { retry_after: feedback.retry_after },
        409 => ErrorClass::Conflict,
        _ => ErrorClass::Data,
    };
    Reply::failed(class, message).with_feedback(feedback)
}

/// The budget facts in HubSpot's rate-limit headers and `Retry-After`.
fn feedback(headers: &HeaderMap) -> Feedback {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    Feedback {
        max: text("x-hubspot-ratelimit-max").and_then(|v| v.parse().ok()),
        remaining: text("x-hubspot-ratelimit-remaining").and_then(|v| v.parse().ok()),
        daily_remaining: text("x-hubspot-ratelimit-daily-remaining").and_then(|v| v.parse().ok()),
        retry_after: text("retry-after").and_then(|v| parse_retry_after(v, chrono::Utc::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn classes_follow_the_status() {
        let class =
            |status: u16, body: &str| match classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body.into(), "x").outcome {
                Ok(_) => None,
                Err(f) => Some(f.class),
            };
        assert_eq!(class(200, "{}"), None);
        assert_eq!(class(207, "{}"), None);
        assert_eq!(class(401, r#"{"category":"INVALID_AUTHENTICATION","message":"no"}"#), Some(ErrorClass::Config));
        assert_eq!(class(429, r#"{"policyName":"TEN_SECONDLY_ROLLING"}"#), Some(ErrorClass::RateLimited));
        assert_eq!(class(503, "not json"), Some(ErrorClass::Transient { retry_after: None }));
        assert_eq!(class(409, r#"{"category":"CONFLICT"}"#), Some(ErrorClass::Conflict));
        assert_eq!(class(400, r#"{"category":"VALIDATION_ERROR"}"#), Some(ErrorClass::Data));
    }

    #[test]
    fn rate_limit_facts_are_learned() {
        let reply = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-hubspot-ratelimit-max", "100"), ("x-hubspot-ratelimit-remaining", "0"), ("retry-after", "3")]),
            br#"{"policyName":"TEN_SECONDLY_ROLLING","message":"You have reached your ten_secondly_rolling limit."}"#.to_vec(),
            "POST /x",
        );
        assert_eq!(
            reply.feedback,
            Feedback { max: Some(100), remaining: Some(0), daily_remaining: None, retry_after: Some(Duration::from_secs(3)) }
        );
        assert!(reply.outcome.unwrap_err().message.contains("ten_secondly_rolling limit"));

        let daily = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), br#"{"policyName":"DAILY"}"#.to_vec(), "x");
        assert_eq!(daily.feedback.daily_remaining, Some(0));
        let secondly = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), br#"{"policyName":"SECONDLY"}"#.to_vec(), "x");
        assert_eq!(secondly.feedback.retry_after, Some(Duration::from_secs(1)));
    }
}
