//! What every HTTP connector shares: the client, and how a failure to reach a service reads.

use std::time::Duration;

use syncline_core::metric::{self, Service};
use syncline_core::{ConnectorError, ErrorClass};

/// A client with syncline's user agent and a connect timeout (rustls, pooled connections).
pub fn client() -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ConnectorError::with_source(ErrorClass::Config, "cannot build the HTTP client", e))
}

/// One request and its whole answer, counted and timed under `operation`. A failure to connect
/// (refused, unknown host, connect timeout) is `Unavailable`: nothing was sent. A reset or a
/// body cut off is `Transient`: whether a write happened is unknown, so only the caller knows
/// if repeating it is safe.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    service: Service,
    operation: &str,
    base_url: &str,
    what: &str,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), (ErrorClass, String)> {
    let started = std::time::Instant::now();
    let name = match service {
        Service::HubSpot => "HubSpot",
        Service::ManyChat => "ManyChat",
    };
    let answer = async {
        let response = request.send().await.map_err(|e| {
            let class = if e.is_connect() { ErrorClass::Unavailable } else { ErrorClass::Transient { retry_after: None } };
            (class, unreachable(name, base_url, what, &e))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| (ErrorClass::Transient { retry_after: None }, format!("{what}: the answer was cut off: {e}")))?;
        Ok((status, headers, body.to_vec()))
    }
    .await;
    let status = answer.as_ref().map_or_else(|_| "unreachable".to_owned(), |(status, ..)| status.as_u16().to_string());
    metric::api_request(service, operation, &status, started.elapsed().as_secs_f64());
    answer
}

/// "`what`: cannot reach `service` at `base_url`: connection refused": the innermost cause says
/// what happened (the outer ones repeat the URL and the client's wording).
fn unreachable(service: &str, base_url: &str, what: &str, error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut cause: &dyn Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let why = if error.is_timeout() { "no answer in time".to_owned() } else { cause.to_string() };
    format!("{what}: cannot reach {service} at {base_url}: {why}")
}
