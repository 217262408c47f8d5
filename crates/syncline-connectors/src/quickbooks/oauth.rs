//! OAuth 2.0 for QuickBooks (API-CONTRACTS §4.4): the app's grants at Intuit's token endpoint,
//! and a [`TokenManager`] that hands every caller a live access token and refreshes it **once**
//! however many callers find it expired — they wait on one lock, and the first refreshes while
//! the rest then see its result. Intuit may rotate the refresh token on any refresh, retiring
//! the old one, so the new pair is stored in the [`TokenVault`] *before* anything uses it; and
//! before refreshing, the manager reads the vault again, so a pair another instance stored is
//! used rather than refreshed over.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use syncline_core::metric::{self, Service};
use syncline_core::{ConnectorError, ErrorClass};

/// An access token, the refresh token that renews it, and when the access token stops working.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Tokens never show in logs or panics.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("access_token", &"***").field("refresh_token", &"***").field("expires_at", &self.expires_at).finish()
    }
}

/// Where tokens are kept between runs and shared between instances (the state store, with the
/// tokens encrypted), by account (`quickbooks:<realm>`).
pub trait TokenVault: Send + Sync {
    fn load<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, ConnectorError>>;
    fn save<'a>(&'a self, account: &'a str, tokens: &'a Tokens) -> BoxFuture<'a, Result<(), ConnectorError>>;

    /// Waits until no other process sharing the vault refreshes `account`, and keeps them out
    /// until the guard is dropped; by default nothing (one process uses the vault).
    fn hold_refresh<'a>(&'a self, _account: &'a str) -> BoxFuture<'a, Result<Box<dyn Send>, ConnectorError>> {
        Box::pin(async { Ok(Box::new(()) as Box<dyn Send>) })
    }
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

#[derive(Deserialize, Default)]
struct Refused {
    #[serde(default)]
    error: String,
}

/// The message every dead refresh token leads to.
pub const REAUTHORIZE: &str = "re-authorize the app: run `syncline auth quickbooks` and follow the link it prints";

/// The OAuth app: its client and Intuit's token endpoint.
pub struct OAuthApp {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
}

impl OAuthApp {
    pub fn new(token_url: &str, client_id: &str, client_secret: &str) -> Result<OAuthApp, ConnectorError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConnectorError::with_source(ErrorClass::Config, "cannot build the HTTP client", e))?;
        Ok(OAuthApp { http, token_url: token_url.to_owned(), client_id: client_id.to_owned(), client_secret: client_secret.to_owned() })
    }

    /// The consent page's URL for this app (`response_type=code`, the accounting scope).
    pub fn authorize_url(&self, authorize_url: &str, redirect_uri: &str, state: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "com.intuit.quickbooks.accounting")
            .append_pair("state", state)
            .finish();
        format!("{authorize_url}?{query}")
    }

    /// Exchanges the code the consent redirect carried for the first pair of tokens.
    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Result<Tokens, ConnectorError> {
        self.grant("authorization_code", &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]).await
    }

    /// Renews the tokens. Sent once, never retried: Intuit may have rotated the refresh token
    /// even when its answer is lost, and a repeat with the old one would be refused.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ConnectorError> {
        self.grant("refresh_token", &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    async fn grant(&self, operation: &str, form: &[(&str, &str)]) -> Result<Tokens, ConnectorError> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.client_id, self.client_secret));
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let started = std::time::Instant::now();
        let request = self
            .http
            .post(&self.token_url)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        let sent = request.send().await;
        let status = sent.as_ref().map_or_else(|_| "unreachable".to_owned(), |r| r.status().as_u16().to_string());
        metric::api_request(Service::QUICKBOOKS, operation, &status, started.elapsed().as_secs_f64());
        let response = sent.map_err(|e| {
            let class = if e.is_connect() { ErrorClass::Unavailable } else { ErrorClass::Transient { retry_after: None } };
            ConnectorError::new(class, format!("QuickBooks token endpoint {}: {e}", self.token_url))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let granted: Granted = crate::http::decode(Service::QUICKBOOKS, "the token endpoint", &bytes)?;
            let expires_at = Utc::now() + chrono::Duration::seconds(granted.expires_in);
            return Ok(Tokens { access_token: granted.access_token, refresh_token: granted.refresh_token, expires_at });
        }
        let refused: Refused = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = match (status.as_u16(), refused.error.as_str()) {
            (_, "invalid_grant") => format!(
                "QuickBooks refused the {} (invalid_grant): it expired, was revoked or was replaced by a newer one; {REAUTHORIZE}",
                if operation == "refresh_token" { "refresh token" } else { "authorization code" }
            ),
            (401, _) | (_, "invalid_client") => {
                "QuickBooks refused the app's client id or secret (invalid_client): check client_id and client_secret".to_owned()
            }
            (code, error) => format!("QuickBooks token endpoint answered {code} {error}"),
        };
        let class = if status.is_server_error() { ErrorClass::Transient { retry_after: None } } else { ErrorClass::Config };
        Err(ConnectorError::new(class, message))
    }
}

/// Hands out a live access token for one account, refreshing it once for all callers.
pub struct TokenManager {
    app: OAuthApp,
    vault: Arc<dyn TokenVault>,
    account: String,
    current: tokio::sync::Mutex<Option<Tokens>>,
    /// The last refresh's failure, until one succeeds: what `/readyz` says of the tokens.
    failed: std::sync::Mutex<Option<(ErrorClass, String)>>,
    /// Refresh this long before the access token expires, so no call carries a token that
    /// expires on the way.
    early: chrono::Duration,
}

impl TokenManager {
    pub fn new(app: OAuthApp, vault: Arc<dyn TokenVault>, account: &str) -> TokenManager {
        TokenManager {
            app,
            vault,
            account: account.to_owned(),
            current: tokio::sync::Mutex::new(None),
            failed: std::sync::Mutex::new(None),
            early: chrono::Duration::seconds(300),
        }
    }

    pub fn app(&self) -> &OAuthApp {
        &self.app
    }

    /// A live access token: the one held, or one refreshed now (once, whoever else asks).
    pub async fn access_token(&self) -> Result<String, ConnectorError> {
        let mut current = self.current.lock().await;
        if current.is_none() {
            *current = self.vault.load(&self.account).await?;
        }
        match current.as_ref() {
            None => {
                Err(ConnectorError::new(ErrorClass::Config, format!("no QuickBooks tokens are stored for {}; {REAUTHORIZE}", self.account)))
            }
            Some(tokens) if self.live(tokens) => Ok(tokens.access_token.clone()),
            Some(_) => self.refresh_locked(&mut current).await,
        }
    }

    /// After QuickBooks refused `rejected` (a 401): a refreshed token, unless another caller
    /// already replaced it.
    pub async fn after_rejection(&self, rejected: &str) -> Result<String, ConnectorError> {
        let mut current = self.current.lock().await;
        match current.as_ref() {
            Some(tokens) if tokens.access_token != rejected => Ok(tokens.access_token.clone()),
            _ => self.refresh_locked(&mut current).await,
        }
    }

    /// The tokens: unhealthy after a refresh refused for good (re-authorize), degraded after
    /// one that failed for now (the access token expires or has expired meanwhile).
    pub fn health(&self) -> syncline_resilience::Health {
        use syncline_resilience::Level;
        let mut health = syncline_resilience::Health::healthy(format!("{} tokens", self.account));
        if let Some((class, message)) = self.failed.lock().expect("token health").as_ref() {
            let level = if *class == ErrorClass::Config { Level::Unhealthy } else { Level::Degraded };
            health.note(level, format!("the access token could not be renewed: {message}"));
        }
        health
    }

    fn live(&self, tokens: &Tokens) -> bool {
        tokens.expires_at - self.early > Utc::now()
    }

    async fn refresh_locked(&self, current: &mut Option<Tokens>) -> Result<String, ConnectorError> {
        // one refresh among the instances sharing the vault: the others wait here, then find
        // this one's pair stored
        let _held = self.vault.hold_refresh(&self.account).await?;
        // another instance may have refreshed already: its pair is the one to use (or renew)
        let stored = self.vault.load(&self.account).await?;
        if let Some(stored) = stored.filter(|s| Some(s) != current.as_ref()) {
            if self.live(&stored) {
                let access = stored.access_token.clone();
                *current = Some(stored);
                return Ok(access);
            }
            *current = Some(stored);
        }
        let refresh_token = current.as_ref().map(|t| t.refresh_token.clone()).ok_or_else(|| {
            ConnectorError::new(ErrorClass::Config, format!("no QuickBooks tokens are stored for {}; {REAUTHORIZE}", self.account))
        })?;
        let fresh = self.app.refresh(&refresh_token).await;
        *self.failed.lock().expect("token health") = fresh.as_ref().err().map(|e| (e.class.clone(), e.message.clone()));
        let fresh = fresh?;
        // the old refresh token may be dead now: keep the new pair before anything uses it
        let saved = self.save(&fresh).await;
        *current = Some(fresh.clone());
        saved?;
        Ok(fresh.access_token)
    }

    /// Stores a pair, trying three times: a pair lost here means re-authorizing.
    async fn save(&self, tokens: &Tokens) -> Result<(), ConnectorError> {
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            match self.vault.save(&self.account, tokens).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let error = last.expect("three attempts");
        Err(ConnectorError::new(
            error.class.clone(),
            format!(
                "QuickBooks issued new tokens but they could not be stored ({}); this process keeps using them, but after it stops you must {REAUTHORIZE}",
                error.message
            ),
        ))
    }

    /// Stores the first pair (after `syncline auth quickbooks`).
    pub async fn store_first(&self, tokens: Tokens) -> Result<(), ConnectorError> {
        self.save(&tokens).await?;
        *self.current.lock().await = Some(tokens);
        Ok(())
    }
}
