//! The Stripe profile: where the API is, the secret key, and the request rate this app may use.

use std::time::Duration;

/// Stripe's API host; the sandbox (or a proxy) is configured with `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// How long Stripe keeps events (`/v1/events` lists the last 30 days): an incremental read
/// from an older cursor cannot see everything that changed and reads everything instead.
pub const EVENT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

#[derive(Clone)]
pub struct StripeProfile {
    /// `https://api.stripe.com`, or the sandbox's URL.
    pub base_url: String,
    /// A secret (`sk_…`) or restricted (`rk_…`) key, sent as `Authorization: Bearer …`.
    pub key: String,
    /// Requests per second (Stripe allows 25 in test mode and 100 live, per account).
    pub requests_per_second: u32,
    /// Requests in flight at once; the rate still paces them.
    pub in_flight: usize,
    /// How long one call, its retries included, may take.
    pub call_timeout: Duration,
    /// How long an API that cannot be reached at all is retried before the call fails.
    pub unreachable_for: Duration,
}

impl StripeProfile {
    /// A profile at Stripe's rate for the key's mode: 100/s for a live key, else 25/s.
    pub fn new(base_url: &str, key: &str) -> StripeProfile {
        StripeProfile {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            requests_per_second: StripeProfile::mode_rate(key),
            in_flight: 4,
            call_timeout: Duration::from_secs(300),
            unreachable_for: Duration::from_secs(5),
        }
    }

    /// Stripe's documented rate for the key's mode.
    pub fn mode_rate(key: &str) -> u32 {
        if key.starts_with("sk_live_") || key.starts_with("rk_live_") { 100 } else { 25 }
    }
}

/// The key never shows in logs or panics.
impl std::fmt::Debug for StripeProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProfile")
            .field("base_url", &self.base_url)
            .field("key", &"***")
            .field("requests_per_second", &self.requests_per_second)
            .finish_non_exhaustive()
    }
}
