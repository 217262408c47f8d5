//! The request pipeline every emulated API runs, in HubSpot's and ManyChat's order: the
//! service's scripted fault (latency, then an answer instead of the request or after it, or a
//! cut connection) → the account the token opens → its rate budget → the handler → the ledger
//! line. Each service plugs in through [`Api`]: only its answers differ.

use std::time::Instant;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use crate::faults::{Draw, Service, cut_off};
use crate::ledger::{Effect, RequestLine};
use crate::manychat::Delivered;
use crate::{Call, Sandbox, SandboxState};

/// A status and JSON body, as handlers answer (`Value::Null` for no body).
pub(crate) type Answer = (StatusCode, Value);

/// Headers an answer carries besides its body.
pub(crate) type Headers = Vec<(&'static str, String)>;

/// What a handler did that the ledger keeps.
#[derive(Default)]
pub(crate) struct Applied {
    pub effects: Vec<Effect>,
    pub messages: Vec<Delivered>,
    /// Headers the handler adds to its answer (Stripe's `Idempotent-Replayed`).
    pub headers: Headers,
}

/// One emulated API's answers for what every request can meet.
pub(crate) trait Api {
    /// Whose faults apply.
    const SERVICE: Service;
    /// What a token opens (a HubSpot portal, a ManyChat page).
    type Account;
    /// Which of the account's budgets a request spends.
    type Limit;

    fn account<'s>(state: &'s mut SandboxState, token: &str) -> Option<&'s mut Self::Account>;
    /// The answer to a request without a known token.
    fn unauthorized() -> Answer;
    /// An injected 429, with `Retry-After` when the faults set one.
    fn throttled(limit: &Self::Limit, retry_after: Option<u64>) -> (Answer, Headers);
    /// An injected server error, answered instead of the request or after applying it.
    fn failed(status: StatusCode, applied: bool) -> Answer;
    /// Spends one call of the account's budget, or answers as the service does when it is spent.
    fn spend(account: &mut Self::Account, limit: &Self::Limit, now: Instant) -> Result<(), Answer>;
    /// The headers every answer for the account carries (HubSpot's rate-limit headers).
    fn budget_headers(account: &Self::Account, limit: &Self::Limit) -> Headers;
    /// The headers every answer carries, and what they repeat in the body (HubSpot's
    /// correlation id, which an error body carries too).
    fn stamp(body: &mut Value) -> Headers;

    /// The token a request carries: `Authorization: Bearer …` (Stripe also takes the key as
    /// HTTP Basic's user name, as `curl -u sk_test_…:` sends it).
    fn token(headers: &axum::http::HeaderMap) -> Option<String> {
        headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::to_owned)
    }
}

/// Runs one request through the pipeline; `inputs` is its batch size for the ledger.
pub(crate) async fn emulate<A: Api>(
    sandbox: &Sandbox,
    call: Call,
    inputs: usize,
    limit: A::Limit,
    handler: impl FnOnce(&mut A::Account, &mut Applied) -> Answer,
) -> Response {
    let fault = sandbox.lock().faults.of(A::SERVICE).draw(Instant::now());
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    let mut applied = Applied::default();
    let (status, mut body, mut headers) = {
        let mut state = sandbox.lock();
        let token = A::token(&call.headers);
        let account = token.filter(|_| !fault.revoked).and_then(|t| A::account(&mut state, &t));
        let (mut answer, headers) = answer::<A>(&fault, account, &limit, handler, &mut applied);
        if let Some(code) = fault.after {
            answer = A::failed(StatusCode::from_u16(code).expect("fault codes are valid"), true);
        }
        let headers = if fault.after.is_some() { Vec::new() } else { headers.into_iter().chain(applied.headers.drain(..)).collect() };
        record(&mut state, &call, answer.0, inputs, &fault, applied);
        (answer.0, answer.1, headers)
    };
    headers.extend(A::stamp(&mut body));
    let mut response = match fault.cut {
        None if body.is_null() => status.into_response(),
        None => (status, axum::Json(body)).into_response(),
        Some((cut, _)) => cut_off(status, &body, cut),
    };
    for (name, value) in headers {
        response.headers_mut().insert(name, HeaderValue::from_str(&value).expect("header values are ascii"));
    }
    response
}

/// The answer before any after-the-fact fault: an injected one, the refusal of an unknown
/// token or a spent budget, or the handler's.
fn answer<A: Api>(
    fault: &Draw,
    account: Option<&mut A::Account>,
    limit: &A::Limit,
    handler: impl FnOnce(&mut A::Account, &mut Applied) -> Answer,
    applied: &mut Applied,
) -> (Answer, Headers) {
    // a connection cut before handling: nothing is applied and no usable answer is sent
    if fault.cut.is_some_and(|(_, applied)| !applied) {
        return ((StatusCode::OK, Value::Null), Vec::new());
    }
    match (fault.before, account) {
        (Some(429), _) => A::throttled(limit, fault.retry_after),
        (Some(code), _) => (A::failed(StatusCode::from_u16(code).expect("fault codes are valid"), false), Vec::new()),
        (None, None) => (A::unauthorized(), Vec::new()),
        (None, Some(account)) => {
            let answer = match A::spend(account, limit, Instant::now()) {
                Ok(()) => handler(account, applied),
                Err(refused) => refused,
            };
            (answer, A::budget_headers(account, limit))
        }
    }
}

/// The request's ledger line, and what it applied.
pub(crate) fn record(state: &mut SandboxState, call: &Call, status: StatusCode, inputs: usize, fault: &Draw, applied: Applied) {
    state.ledger.requests.push(RequestLine {
        method: call.method.to_string(),
        path: call.uri.path().to_owned(),
        status: status.as_u16(),
        at_ms: Utc::now().timestamp_millis(),
        inputs,
        cut: fault.cut.map(|(cut, _)| cut.name()),
    });
    state.ledger.effects.extend(applied.effects);
    state.ledger.messages.extend(applied.messages);
}
