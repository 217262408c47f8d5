//! The one call path of every HTTP connector: an [`Endpoint`] (the client, the service's base
//! URL and token) sends a [`Request`] through a resilience `Policy`, counts and times each
//! attempt, and hands the answer to the connector's own `classify`, which is all a connector's
//! `api.rs` says about its wire besides its types.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use syncline_core::metric::{self, Service};
use syncline_core::{ConnectorError, ErrorClass};
use syncline_resilience::{CallError, Policy, Reply};
use tracing::Instrument;

/// One request to an API: its method, the path (with its query string) and a JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request { method: Method::GET, path: path.into(), body: None }
    }

    /// A POST with `body` as JSON.
    pub fn post(path: impl Into<String>, body: &impl serde::Serialize) -> Request {
        Request { method: Method::POST, path: path.into(), body: Some(serde_json::to_vec(body).expect("request bodies serialize")) }
    }

    /// `METHOD /path` without the query, for messages.
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.path.split('?').next().unwrap_or(&self.path))
    }
}

/// A whole answer, as `classify` reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value as trimmed text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }
}

/// A service's API as one token sees it.
pub struct Endpoint {
    http: reqwest::Client,
    service: Service,
    base_url: String,
    token: String,
}

impl Endpoint {
    /// `base_url` without a trailing slash; the token is sent as `Authorization: Bearer …`.
    pub fn new(service: Service, base_url: &str, token: &str) -> Result<Endpoint, ConnectorError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConnectorError::with_source(ErrorClass::Config, "cannot build the HTTP client", e))?;
        Ok(Endpoint { http, service, base_url: base_url.trim_end_matches('/').to_owned(), token: token.to_owned() })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `request` through `policy`: retried while `classify` calls the answer transient or
    /// rate-limited, paced by the policy's budget. Each attempt is counted and timed under
    /// `operation` (the service's `*_api_requests_total` and duration metrics) in a span with
    /// the operation and the attempt number.
    pub async fn call<T>(
        &self,
        policy: &Policy,
        operation: &str,
        request: Request,
        classify: impl Fn(Answer, &str) -> Reply<T>,
    ) -> Result<T, ConnectorError> {
        self.call_as(policy, operation, request, &self.token, classify).await
    }

    /// [`Endpoint::call`] with a token of the moment (an OAuth access token that is renewed).
    pub async fn call_as<T>(
        &self,
        policy: &Policy,
        operation: &str,
        request: Request,
        token: &str,
        classify: impl Fn(Answer, &str) -> Reply<T>,
    ) -> Result<T, ConnectorError> {
        let url = format!("{}{}", self.base_url, request.path);
        let what = request.what();
        let mut attempt = 0u32;
        let send = || {
            attempt += 1;
            let mut builder = self.http.request(request.method.clone(), &url).bearer_auth(token);
            if let Some(body) = &request.body {
                builder = builder.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let (what, classify) = (what.as_str(), &classify);
            let span = tracing::debug_span!("api_call", service = self.service.name, operation, attempt);
            async move {
                match self.exchange(builder, operation, what).await {
                    Ok(answer) => classify(answer, what),
                    Err((class, message)) => Reply::failed(class, message),
                }
            }
            .instrument(span)
        };
        policy.call(send).await.map_err(|e| self.call_error(e))
    }

    /// One attempt and its whole answer. A failure to connect (refused, unknown host, connect
    /// timeout) is `Unavailable`: nothing was sent. A reset or a body cut off is `Transient`:
    /// whether a write happened is unknown, so only the connector knows if repeating it is safe.
    async fn exchange(&self, request: reqwest::RequestBuilder, operation: &str, what: &str) -> Result<Answer, (ErrorClass, String)> {
        let started = std::time::Instant::now();
        let answer = async {
            let response = request.send().await.map_err(|e| {
                let class = if e.is_connect() { ErrorClass::Unavailable } else { ErrorClass::Transient { retry_after: None } };
                (class, self.unreachable(what, &e))
            })?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response
                .bytes()
                .await
                .map_err(|e| (ErrorClass::Transient { retry_after: None }, format!("{what}: the answer was cut off: {e}")))?;
            Ok(Answer { status, headers, body: body.to_vec() })
        }
        .await;
        let status = answer.as_ref().map_or_else(|_| "unreachable".to_owned(), |a| a.status.as_u16().to_string());
        metric::api_request(self.service, operation, &status, started.elapsed().as_secs_f64());
        answer
    }

    /// "`what`: cannot reach `service` at `base_url`: connection refused": the innermost cause
    /// says what happened (the outer ones repeat the URL and the client's wording).
    fn unreachable(&self, what: &str, error: &reqwest::Error) -> String {
        use std::error::Error;
        let mut cause: &dyn Error = error;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let why = if error.is_timeout() { "no answer in time".to_owned() } else { cause.to_string() };
        format!("{what}: cannot reach {} at {}: {why}", self.service.name, self.base_url)
    }

    /// A policy's final error as a connector error of the same class; an answer that refuses
    /// the token says which URL it was refused by.
    fn call_error(&self, error: CallError) -> ConnectorError {
        let class = error.class();
        let message = match &error {
            CallError::Failed(failure) if failure.class == ErrorClass::Config => {
                format!("{} (check the token and its scopes for {})", failure.message, self.base_url)
            }
            other => other.to_string(),
        };
        ConnectorError::new(class, message)
    }
}

/// A JSON answer decoded, or a transient error that quotes its start (a proxy's HTML page, a
/// body cut short).
pub fn decode<T: serde::de::DeserializeOwned>(service: Service, what: &str, body: &[u8]) -> Result<T, ConnectorError> {
    serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(200).collect();
        ConnectorError::new(
            ErrorClass::Transient { retry_after: None },
            format!("{what}: {}'s answer is not the expected JSON ({e}): {start}", service.name),
        )
    })
}

/// Where a connector's rate budgets are shared with other processes, if anywhere (a PostgreSQL
/// state store; None: each process keeps its own).
pub type Budgets = Option<std::sync::Arc<dyn syncline_resilience::BudgetStore>>;

/// `policy`, spending the budget named `name` of the account `base_url` + `token` with every
/// process that shares `budgets`. The account is named by a digest, never by its token.
pub fn shared(policy: Policy, budgets: &Budgets, name: &str, base_url: &str, token: &str) -> Policy {
    use sha2::{Digest, Sha256};
    let Some(store) = budgets else { return policy };
    let digest = Sha256::digest(format!("{base_url}\n{token}").as_bytes());
    let account = hex::encode(&digest[..8]);
    policy.sharing(syncline_resilience::SharedBudget::new(store.clone(), format!("{name}:{account}")))
}
