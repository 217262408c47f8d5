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

/// One request and its whole answer, counted and timed under `operation`. A failure to
/// connect, a reset or a body cut off is an error message (transient: whether a write happened
/// is unknown, so only the caller knows if repeating it is safe).
pub async fn exchange(
    request: reqwest::RequestBuilder,
    service: Service,
    operation: &str,
    base_url: &str,
    what: &str,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), String> {
    let started = std::time::Instant::now();
    let name = match service {
        Service::HubSpot => "HubSpot",
        Service::ManyChat => "ManyChat",
    };
    let answer = async {
        let response = request.send().await.map_err(|e| unreachable(name, base_url, what, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| format!("{what}: the answer was cut off: {e}"))?;
        Ok((status, headers, body.to_vec()))
    }
    .await;
    let status = answer.as_ref().map_or_else(|_| "unreachable".to_owned(), |(status, ..)| status.as_u16().to_string());
    metric::api_request(service, operation, &status, started.elapsed().as_secs_f64());
    answer
}

/// "`what`: cannot reach `service` at `base_url`: …", with every cause in the chain.
fn unreachable(service: &str, base_url: &str, what: &str, error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut message = format!("{what}: cannot reach {service} at {base_url}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
