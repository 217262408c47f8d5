//! The QuickBooks profile: the company (realm), the OAuth app that reaches it, and the limits
//! it is called within.

use std::time::Duration;

/// QuickBooks Online's production API host (the sandbox or Intuit's development host are
/// configured with `base_url`).
pub const DEFAULT_BASE_URL: &str = "https://quickbooks.api.intuit.com";

/// Intuit's OAuth 2.0 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";

/// Intuit's consent page, where `syncline auth quickbooks` sends the user.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://appcenter.intuit.com/connect/oauth2";

/// The lowest minor version QuickBooks serves since 2025-08-01 (API-CONTRACTS §4.1).
pub const MINOR_VERSION: u32 = 75;

#[derive(Clone)]
pub struct QuickBooksProfile {
    /// `https://quickbooks.api.intuit.com`, or the sandbox's URL.
    pub base_url: String,
    /// The token endpoint (`…/oauth2/v1/tokens/bearer`).
    pub token_url: String,
    /// The consent page (`…/connect/oauth2`).
    pub authorize_url: String,
    /// The company's id, as the consent's redirect gives it (`realmId`).
    pub realm_id: String,
    /// The OAuth app's client id and secret.
    pub client_id: String,
    pub client_secret: String,
    /// Requests per minute (QuickBooks: 500 per realm).
    pub requests_per_minute: u32,
    /// Batch calls per minute (QuickBooks: 40 per realm and app).
    pub batches_per_minute: u32,
    /// Requests per second, batch calls included (QuickBooks: 10 per realm and app).
    pub requests_per_second: u32,
    /// Requests in flight at once (QuickBooks: 10 per realm and app).
    pub in_flight: usize,
    /// How long one call, its retries included, may take.
    pub call_timeout: Duration,
    /// How long an API that cannot be reached at all is retried before the call fails.
    pub unreachable_for: Duration,
}

impl QuickBooksProfile {
    pub fn new(base_url: &str, realm_id: &str, client_id: &str, client_secret: &str) -> QuickBooksProfile {
        QuickBooksProfile {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            authorize_url: DEFAULT_AUTHORIZE_URL.to_owned(),
            realm_id: realm_id.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            requests_per_minute: 500,
            batches_per_minute: 40,
            requests_per_second: 10,
            in_flight: 10,
            call_timeout: Duration::from_secs(300),
            unreachable_for: Duration::from_secs(5),
        }
    }
}

/// The client secret never shows in logs or panics.
impl std::fmt::Debug for QuickBooksProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickBooksProfile")
            .field("base_url", &self.base_url)
            .field("realm_id", &self.realm_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}
