//! Intuit's OAuth 2.0 endpoints (API-CONTRACTS §4.4): the consent page, which the sandbox
//! grants at once by redirecting with `code`, `state` and `realmId`, and the token endpoint —
//! `authorization_code` and `refresh_token` grants, the client checked by HTTP Basic, access
//! tokens that expire, and refresh tokens that rotate (an old one is `invalid_grant`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::emulate::{Applied, record};
use crate::faults::Draw;
use crate::{Call, Sandbox};

/// `GET /connect/oauth2?client_id&redirect_uri&response_type=code&scope&state`: consents for the
/// first realm of the client and redirects back with a one-time code.
pub(crate) async fn authorize(State(sandbox): State<Sandbox>, Query(params): Query<HashMap<String, String>>) -> Response {
    let (Some(client), Some(redirect)) = (params.get("client_id"), params.get("redirect_uri")) else {
        return (StatusCode::BAD_REQUEST, "client_id and redirect_uri are required").into_response();
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "response_type must be code").into_response();
    }
    let mut state = sandbox.lock();
    let Some(realm) = state.realms.iter_mut().find(|r| &r.config.client_id == client) else {
        return (StatusCode::BAD_REQUEST, format!("no app has the client id {client}")).into_response();
    };
    let code = format!("qbo-code-{}", uuid::Uuid::now_v7().simple());
    realm.codes.insert(code.clone(), redirect.clone());
    let mut location = url_with(redirect, &[("code", &code), ("realmId", &realm.config.realm_id)]);
    if let Some(csrf) = params.get("state") {
        location = url_with(&location, &[("state", csrf)]);
    }
    (StatusCode::FOUND, [(axum::http::header::LOCATION, location)]).into_response()
}

fn url_with(base: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{query}")
}

/// `POST /oauth2/v1/tokens/bearer`.
pub(crate) async fn token(State(sandbox): State<Sandbox>, call: Call, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let client = basic_auth(&call);
    let mut state = sandbox.lock();
    let (status, body) = grant(&mut state.realms, client, &form);
    record(&mut state, &call, status, 0, &Draw::default(), Applied::default());
    let tid = uuid::Uuid::now_v7().to_string();
    (status, [("intuit_tid", tid)], axum::Json(body)).into_response()
}

fn basic_auth(call: &Call) -> Option<(String, String)> {
    let header = call.headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(header).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn grant(realms: &mut [super::Realm], client: Option<(String, String)>, form: &HashMap<String, String>) -> (StatusCode, Value) {
    let refused = |error: &str| (StatusCode::BAD_REQUEST, json!({"error": error}));
    let Some((id, secret)) = client else { return (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"})) };
    let mut realms = realms.iter_mut().filter(|r| r.config.client_id == id && r.config.client_secret == secret).peekable();
    if realms.peek().is_none() {
        return (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let (Some(code), Some(redirect)) = (form.get("code"), form.get("redirect_uri")) else { return refused("invalid_request") };
            let Some(realm) = realms.find(|r| r.codes.get(code) == Some(redirect)) else { return refused("invalid_grant") };
            realm.codes.remove(code);
            (StatusCode::OK, realm.grant(true))
        }
        Some("refresh_token") => {
            let Some(token) = form.get("refresh_token") else { return refused("invalid_request") };
            let Some(realm) = realms.find(|r| r.refresh.as_ref() == Some(token)) else { return refused("invalid_grant") };
            realm.refreshes += 1;
            (StatusCode::OK, realm.grant(false))
        }
        _ => refused("unsupported_grant_type"),
    }
}
