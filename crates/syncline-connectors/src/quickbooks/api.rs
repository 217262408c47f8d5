//! QuickBooks' wire (API-CONTRACTS §4): calls under `/v3/company/{realm}/` with `minorversion`,
//! each carrying the [`TokenManager`]'s access token (a 401 refreshes it once and repeats the
//! call), the company info and the query language; and how QuickBooks' answers — its `Fault`
//! envelope, even inside an HTTP 200 — are classified.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use syncline_core::metric::Service;
use syncline_core::{ConnectorError, ErrorClass};
use syncline_resilience::{Budget, Feedback, Health, Policy, PolicyConfig, RateLimiter, Reply};

use super::config::{MINOR_VERSION, QuickBooksProfile};
use super::oauth::TokenManager;
use super::sink::BATCH_OPERATIONS;
use crate::http::{Answer, Endpoint, Request};

/// How long QuickBooks asks a throttled client to wait (API-CONTRACTS §4.5).
const THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// The most objects one query returns.
pub const MAX_RESULTS: usize = 1000;

/// One page of a query: the entity's objects (as QuickBooks wrote them) and where it started.
#[derive(Debug, Default)]
pub struct QueryPage {
    pub objects: Vec<Value>,
    pub start: usize,
}

#[derive(Deserialize, Default)]
struct FaultBody {
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<Fault>,
}

#[derive(Deserialize, Default)]
struct Fault {
    #[serde(rename = "Error", alias = "error", default)]
    errors: Vec<FaultError>,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize, Default)]
struct FaultError {
    #[serde(rename = "Message", alias = "message", default)]
    message: String,
    #[serde(rename = "Detail", alias = "detail", default)]
    detail: String,
    #[serde(default)]
    code: String,
}

/// A company as one OAuth app reaches it.
pub struct QuickBooksApi {
    endpoint: Endpoint,
    policy: Policy,
    /// Batch calls' own budget (40 a minute per realm and app).
    batch_policy: Policy,
    tokens: Arc<TokenManager>,
    realm_id: String,
    /// Single writes and batch calls a minute (see [`QuickBooksApi::singles_for`]).
    rates: (f64, f64),
}

/// An answer before its token was checked: a 401 is not an error yet, the token is renewed.
enum Authorized {
    Yes(Vec<u8>),
    Refused,
}

impl QuickBooksApi {
    /// A client within the realm's 500 requests a minute, 10 a second and 10 in flight. A batch
    /// call is a request too: the batch budget's 40 a minute come out of the 500, the other
    /// calls share the 460 left, and all of them the 10 a second.
    pub fn new(profile: &QuickBooksProfile, tokens: Arc<TokenManager>) -> Result<QuickBooksApi, ConnectorError> {
        let batch_rate = profile.batches_per_minute.max(1);
        let other_rate = profile.requests_per_minute.saturating_sub(batch_rate).max(1);
        let config = PolicyConfig {
            name: "quickbooks".into(),
            budget: Some(Budget::per(other_rate, Duration::from_secs(60)).with_margin(Duration::from_millis(200))),
            max_in_flight: Some(profile.in_flight.max(1)),
            bulkhead_wait: profile.call_timeout,
            overall_timeout: profile.call_timeout,
            unavailable_for: profile.unreachable_for,
            ..PolicyConfig::default()
        };
        let batches = PolicyConfig {
            name: "quickbooks-batch".into(),
            budget: Some(Budget::per(batch_rate, Duration::from_secs(60)).with_margin(Duration::from_millis(200))),
            ..config.clone()
        };
        // every call, single or batch, within the realm's 10 a second
        let per_second = Budget::per(profile.requests_per_second.max(1), Duration::from_secs(1)).with_margin(Duration::from_millis(100));
        let per_second = Arc::new(std::sync::Mutex::new(RateLimiter::new(per_second)));
        Ok(QuickBooksApi {
            // the token is each call's own: the endpoint's is never sent
            endpoint: Endpoint::new(Service::QUICKBOOKS, &profile.base_url, "")?,
            policy: Policy::new(config).also_spending(per_second.clone()),
            batch_policy: Policy::new(batches).also_spending(per_second),
            tokens,
            realm_id: profile.realm_id.clone(),
            rates: (f64::from(other_rate), f64::from(batch_rate)),
        })
    }

    /// Of `n` operations, how many to send as single writes while the rest go in batch calls
    /// of 30, so that both budgets are spent at once and end together: the split that takes the
    /// fewest minutes, batch calls counted whole. At 460 single writes and 40 batch calls a
    /// minute, about 28 % (140 of 500); one operation alone is a single write.
    pub fn singles_for(&self, n: usize) -> usize {
        singles_for(n, self.rates)
    }

    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    /// How the company's calls, batch calls and tokens are doing, for `/readyz`.
    pub fn health(&self) -> Vec<Health> {
        vec![self.policy.health(), self.batch_policy.health(), self.tokens.health()]
    }

    /// `GET …/companyinfo/{realm}`: the company's name.
    pub async fn company_name(&self) -> Result<String, ConnectorError> {
        let body = self.call("companyinfo", Request::get(self.path(&format!("companyinfo/{}", self.realm_id)))).await?;
        Ok(body["CompanyInfo"]["CompanyName"].as_str().unwrap_or_default().to_owned())
    }

    /// `GET …/query`: one page of `select * from <entity> [where …]`, from `start` (1-based).
    pub async fn query(&self, entity: &str, condition: Option<&str>, start: usize) -> Result<QueryPage, ConnectorError> {
        let filter = condition.map(|c| format!(" where {c}")).unwrap_or_default();
        let text = format!("select * from {entity}{filter} startposition {start} maxresults {MAX_RESULTS}");
        let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        let body = self.call("query", Request::get(format!("{}&query={encoded}", self.path("query")))).await?;
        let objects = body["QueryResponse"][entity].as_array().cloned().unwrap_or_default();
        Ok(QueryPage { objects, start })
    }

    /// Every object of `entity`, active or not, a query of 1,000 at a time.
    pub async fn all(&self, entity: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut objects = Vec::new();
        loop {
            let page = self.query(entity, Some("Active IN (true, false)"), objects.len() + 1).await?;
            let full = page.objects.len() == MAX_RESULTS;
            objects.extend(page.objects);
            if !full {
                return Ok(objects);
            }
        }
    }

    /// `POST …/batch`: up to 30 operations, answered in order by `bId` (each an entity or a
    /// `Fault`), paced by the batch budget.
    pub async fn batch(&self, operations: Vec<Value>) -> Result<Vec<Value>, ConnectorError> {
        let request = Request::post(self.path("batch"), &serde_json::json!({"BatchItemRequest": operations}));
        let body = self.call_with(&self.batch_policy, "batch", request).await?;
        Ok(body["BatchItemResponse"].as_array().cloned().unwrap_or_default())
    }

    /// `POST …/item`: one create (no `Id`) or sparse update, answered as a batch operation is —
    /// `{"Item": …}` or the operation's `{"Fault": …}` — within the 500 a minute rather than
    /// the 40 batch calls: one change (a webhook's) need not wait for a batch slot.
    pub async fn write_item(&self, item: &Value) -> Result<Value, ConnectorError> {
        let request = Request::post(self.path("item"), item);
        self.call_classified(&self.policy, "write_item", request, classify_write).await
    }

    fn path(&self, tail: &str) -> String {
        format!("/v3/company/{}/{tail}?minorversion={MINOR_VERSION}", self.realm_id)
    }

    /// One call with a live access token; a 401 renews the token (once for all callers) and
    /// repeats the call once.
    async fn call(&self, operation: &str, request: Request) -> Result<Value, ConnectorError> {
        self.call_with(&self.policy, operation, request).await
    }

    async fn call_with(&self, policy: &Policy, operation: &str, request: Request) -> Result<Value, ConnectorError> {
        self.call_classified(policy, operation, request, classify).await
    }

    async fn call_classified(
        &self,
        policy: &Policy,
        operation: &str,
        request: Request,
        classify: fn(Answer, &str) -> Reply<Authorized>,
    ) -> Result<Value, ConnectorError> {
        let what = request.what();
        let token = self.tokens.access_token().await?;
        let body = match self.endpoint.call_as(policy, operation, request.clone(), &token, classify).await? {
            Authorized::Yes(body) => body,
            Authorized::Refused => {
                let renewed = self.tokens.after_rejection(&token).await?;
                match self.endpoint.call_as(policy, operation, request, &renewed, classify).await? {
                    Authorized::Yes(body) => body,
                    Authorized::Refused => {
                        let message = format!(
                            "{what}: QuickBooks refused a freshly renewed token for company {} (401): check that the app is connected to this company",
                            self.realm_id
                        );
                        return Err(ConnectorError::new(ErrorClass::Config, message));
                    }
                }
            }
        };
        crate::http::decode(Service::QUICKBOOKS, &what, &body)
    }
}

/// [`QuickBooksApi::singles_for`] at `(single writes, batch calls)` a minute.
fn singles_for(n: usize, (singles, batches): (f64, f64)) -> usize {
    let minutes = |s: usize| (s as f64 / singles).max((n - s).div_ceil(BATCH_OPERATIONS) as f64 / batches);
    (0..=n).min_by(|a, b| minutes(*a).total_cmp(&minutes(*b))).unwrap_or(0)
}

/// QuickBooks' answers as an attempt's outcome: a 401 goes back to the caller to renew its
/// token; 429 waits (60 s unless told); 5xx retries; a `Fault` — in a 4xx, or an HTTP 200 —
/// is classified by its code: 6240 (duplicate name) and 5010 (stale `SyncToken`) are
/// conflicts, the other validation faults data errors, 3100/120 (not authorized) config.
fn classify(answer: Answer, what: &str) -> Reply<Authorized> {
    let retry_after = answer.header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    let tid = answer.header("intuit_tid").map(|t| format!(" (intuit_tid {t})")).unwrap_or_default();
    let status = answer.status.as_u16();
    if status == 401 {
        return Reply::ok(Authorized::Refused);
    }
    let fault: FaultBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let Some(fault) = fault.fault.filter(|f| !f.errors.is_empty()).or_else(|| (!answer.status.is_success()).then(Fault::default)) else {
        return Reply::ok(Authorized::Yes(answer.body));
    };
    let first = fault.errors.first();
    let code = first.map_or("", |e| e.code.as_str());
    let detail =
        first.map(|e| if e.detail.is_empty() { e.message.clone() } else { format!("{}: {}", e.message, e.detail) }).unwrap_or_default();
    let message = format!("{what}: QuickBooks answered {status} ({} {code}){tid}: {detail}", fault.kind);
    let class = match (status, code) {
        (429, _) => ErrorClass::RateLimited,
        (500..=599, _) => ErrorClass::Transient { retry_after },
        (_, "6240" | "5010") => ErrorClass::Conflict,
        (403, _) | (_, "3100" | "120" | "3200") => ErrorClass::Config,
        _ => ErrorClass::Data,
    };
    let wait = if status == 429 { retry_after.or(Some(THROTTLE_WAIT)) } else { retry_after };
    Reply::failed(class, message).with_feedback(Feedback { retry_after: wait, ..Feedback::default() })
}

/// A single write's answers: a `ValidationFault` in a 400 is the operation's answer (the
/// caller decides by its code, as for a batch operation); the rest as [`classify`].
fn classify_write(answer: Answer, what: &str) -> Reply<Authorized> {
    let fault: FaultBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let operation_fault = fault.fault.is_some_and(|f| !f.errors.is_empty() && f.kind == "ValidationFault");
    match answer.status.as_u16() {
        400 if operation_fault => Reply::ok(Authorized::Yes(answer.body)),
        _ => classify(answer, what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn class(status: u16, body: &str) -> Result<bool, ErrorClass> {
        let answer = Answer { status: StatusCode::from_u16(status).unwrap(), headers: HeaderMap::new(), body: body.as_bytes().to_vec() };
        match classify(answer, "GET /v3/company/1/query").outcome {
            Ok(Authorized::Yes(_)) => Ok(true),
            Ok(Authorized::Refused) => Ok(false),
            Err(failure) => Err(failure.class),
        }
    }

    fn fault(code: &str) -> String {
        format!(r#"{{"Fault":{{"Error":[{{"Message":"m","Detail":"d","code":"{code}"}}],"type":"ValidationFault"}},"time":"t"}}"#)
    }

    #[test]
    fn a_write_is_split_so_both_budgets_end_together() {
        let rates = (460.0, 40.0);
        assert_eq!(singles_for(1, rates), 1, "one change alone is a single write");
        assert_eq!(singles_for(120, rates), 30, "3 batch calls (4.5 s) beside 30 single writes (3.9 s)");
        assert_eq!(singles_for(500, rates), 140, "12 batch calls of 30 (18 s) beside 140 single writes (18.3 s)");
        assert_eq!(singles_for(0, rates), 0);
    }

    #[test]
    fn faults_are_classified_by_their_code_even_in_a_200() {
        assert_eq!(class(200, r#"{"QueryResponse":{}}"#), Ok(true));
        assert_eq!(class(401, "{}"), Ok(false), "a 401 renews the token");
        assert_eq!(class(400, &fault("6240")), Err(ErrorClass::Conflict));
        assert_eq!(class(400, &fault("5010")), Err(ErrorClass::Conflict));
        assert_eq!(class(400, &fault("610")), Err(ErrorClass::Data));
        assert_eq!(class(200, &fault("2050")), Err(ErrorClass::Data), "a Fault in an HTTP 200 is still a fault");
        assert_eq!(class(429, &fault("3001")), Err(ErrorClass::RateLimited));
        assert_eq!(class(503, "<html>"), Err(ErrorClass::Transient { retry_after: None }));
        assert_eq!(class(403, &fault("3100")), Err(ErrorClass::Config));
    }
}
