//! Stripe's webhook endpoints and their delivery (API-CONTRACTS §3.4–3.5): every event an
//! endpoint's `enabled_events` cover (`*` for all) is posted to its URL as the event object,
//! signed `Stripe-Signature: t=<now>,v1=<HMAC-SHA256(secret, "t.body")>`; a delivery answered
//! non-2xx, refused or not answered in time is tried again later with a doubling delay, up to
//! the account's attempts (Stripe's test mode: 3 retries). Stripe promises neither order nor
//! uniqueness, so the account's [`StripeDelivery`] can hold some events back (later ones
//! overtake them) and send some twice, seeded.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::account::Account;
use super::form::Form;
use super::{invalid, list_envelope, missing, missing_param, new_id};
use crate::Sandbox;
use crate::emulate::Answer;
use crate::hubspot::WebhookCounts;

/// How an account's events reach its endpoints: Stripe's retries, and the disorder tests need.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeDelivery {
    /// Share of events posted a second time, a little later.
    pub duplicate: f64,
    /// Share of events held back `hold_ms` before their first try, so later events overtake them.
    pub hold: f64,
    pub hold_ms: u64,
    /// Tries per delivery (Stripe's test mode: the first and 3 retries).
    pub max_attempts: u32,
    /// The first retry's delay, doubled per retry (Stripe spreads its retries over hours; tests
    /// want seconds).
    pub retry_delay_ms: u64,
    /// A delivery not answered within this is tried again.
    pub timeout_ms: u64,
    /// Seeds duplication and holding back.
    pub seed: u64,
}

impl Default for StripeDelivery {
    fn default() -> StripeDelivery {
        StripeDelivery { duplicate: 0.0, hold: 0.0, hold_ms: 2_000, max_attempts: 4, retry_delay_ms: 1_000, timeout_ms: 10_000, seed: 0 }
    }
}

/// An endpoint made at start (a seed's, or `syncline sandbox --stripe-webhook`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeWebhook {
    pub url: String,
    /// The signing secret (`whsec_…`); Stripe makes one, a seed may choose it.
    pub secret: String,
    /// Event types sent (`*`: every one).
    #[serde(default = "every_event")]
    pub events: Vec<String>,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

/// The `Stripe-Signature` of `body` at `t`. Written here rather than shared with the server's
/// verifier, so that a misreading on one side fails a test.
pub fn signature(secret: &str, body: &[u8], t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /v1/webhook_endpoints`: `url` and `enabled_events[]`; the answer alone shows `secret`.
pub(crate) fn create_endpoint(account: &mut Account, form: &Form, now: i64) -> Result<Value, Answer> {
    form.only(&["url", "enabled_events", "description", "metadata", "api_version", "expand"])?;
    let url = form.get("url").ok_or_else(|| missing_param("url"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid("url_invalid", "url", format!("Invalid URL: {url}")));
    }
    let events: Vec<String> = form.list("enabled_events").into_iter().map(str::to_owned).collect();
    if events.is_empty() {
        return Err(missing_param("enabled_events"));
    }
    let secret = new_id("whsec", 32);
    Ok(account.add_endpoint(url, &secret, events, form.get("description"), now))
}

impl Account {
    /// Adds an endpoint; its JSON as the create call answers it (with the secret).
    pub(crate) fn add_endpoint(&mut self, url: &str, secret: &str, events: Vec<String>, description: Option<&str>, now: i64) -> Value {
        let endpoint = json!({
            "id": new_id("we", 24), "object": "webhook_endpoint", "api_version": null, "application": null, "created": now,
            "description": description, "enabled_events": events, "livemode": self.config.livemode(), "metadata": {},
            "status": "enabled", "url": url, "secret": secret,
        });
        self.endpoints.insert(endpoint.clone());
        endpoint
    }

    /// The endpoints whose `enabled_events` cover `kind`, as (url, secret).
    pub(crate) fn endpoints_for(&self, kind: &str) -> Vec<(String, String)> {
        self.endpoints
            .live()
            .filter(|e| e["enabled_events"].as_array().is_some_and(|list| list.iter().any(|t| t == "*" || t == kind)))
            .map(|e| (e["url"].as_str().unwrap_or_default().to_owned(), e["secret"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }
}

/// An endpoint as reads show it: without its secret.
fn shown(endpoint: &Value) -> Value {
    let mut endpoint = endpoint.clone();
    endpoint.as_object_mut().map(|e| e.remove("secret"));
    endpoint
}

/// `GET`/`DELETE /v1/webhook_endpoints[/{id}]`.
pub(crate) fn read_or_delete(account: &mut Account, method: &str, id: Option<&str>, form: &Form) -> Result<Value, Answer> {
    match (method, id) {
        ("GET", None) => {
            let (page, more) =
                account.endpoints.page(super::catalog::cursor(form), super::catalog::limit(form)?, "webhook endpoint", |_| true)?;
            Ok(list_envelope("/v1/webhook_endpoints", page.into_iter().map(shown).collect(), more))
        }
        ("GET", Some(id)) => account.endpoints.get(id).map(shown).ok_or_else(|| missing("webhook_endpoint", id)),
        (_, Some(id)) => {
            account.endpoints.get(id).ok_or_else(|| missing("webhook_endpoint", id))?;
            account.endpoints.delete(id);
            Ok(json!({"id": id, "object": "webhook_endpoint", "deleted": true}))
        }
        _ => Err(missing("webhook_endpoint", "")),
    }
}

/// One event on its way to one endpoint.
struct Post {
    url: String,
    secret: String,
    event: Value,
    /// Held back (or a duplicate's lag) before the first try.
    wait: Duration,
}

impl Sandbox {
    /// Posts the Stripe accounts' events to their endpoints until the runtime stops.
    /// `Sandbox::serve` and `syncline sandbox` start it.
    pub fn spawn_stripe_delivery(&self) -> tokio::task::JoinHandle<()> {
        let sandbox = self.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().build().expect("the HTTP client builds");
            let mut rng = fastrand::Rng::new();
            let mut seeded = None;
            loop {
                for (post, delivery) in sandbox.take_stripe_posts(&mut rng, &mut seeded) {
                    let (sandbox, client) = (sandbox.clone(), client.clone());
                    tokio::spawn(async move { sandbox.post_stripe_event(&client, post, &delivery).await });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    /// Takes every account's queued events, with duplicates and holds drawn.
    fn take_stripe_posts(&self, rng: &mut fastrand::Rng, seeded: &mut Option<u64>) -> Vec<(Post, StripeDelivery)> {
        let mut state = self.lock();
        let crate::SandboxState { stripe, ledger, .. } = &mut *state;
        let mut posts = Vec::new();
        for account in stripe.iter_mut() {
            let delivery = account.config.webhook_delivery.clone();
            if seeded.replace(delivery.seed) != Some(delivery.seed) {
                rng.seed(delivery.seed);
            }
            for (url, secret, event) in std::mem::take(&mut account.outbox) {
                ledger.stripe_webhook_counts.emitted += 1;
                let held = rng.f64() < delivery.hold;
                let wait = Duration::from_millis(if held { delivery.hold_ms } else { 0 });
                if rng.f64() < delivery.duplicate {
                    ledger.stripe_webhook_counts.duplicated += 1;
                    let lag = Duration::from_millis(rng.u64(0..=delivery.hold_ms.max(1)));
                    let again = Post { url: url.clone(), secret: secret.clone(), event: event.clone(), wait: wait + lag };
                    posts.push((again, delivery.clone()));
                }
                posts.push((Post { url, secret, event, wait }, delivery.clone()));
            }
        }
        posts
    }

    /// Posts one event until it is answered 2xx or runs out of attempts.
    async fn post_stripe_event(&self, client: &reqwest::Client, post: Post, delivery: &StripeDelivery) {
        tokio::time::sleep(post.wait).await;
        let body = serde_json::to_vec(&post.event).expect("events serialize");
        for attempt in 0..delivery.max_attempts.max(1) {
            let t = chrono::Utc::now().timestamp();
            let answer = client
                .post(&post.url)
                .timeout(Duration::from_millis(delivery.timeout_ms))
                .header("content-type", "application/json; charset=utf-8")
                .header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
                .header("stripe-signature", signature(&post.secret, &body, t))
                .body(body.clone())
                .send()
                .await;
            let delivered = answer.is_ok_and(|a| a.status().is_success());
            let last = attempt + 1 >= delivery.max_attempts.max(1);
            if delivered || last {
                let counts = &mut self.lock().ledger.stripe_webhook_counts;
                if delivered {
                    counts.delivered += 1
                } else {
                    counts.given_up += 1
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(delivery.retry_delay_ms.saturating_mul(1 << attempt.min(16)))).await;
        }
    }

    /// What became of the Stripe events sent to endpoints: emitted, duplicated, delivered (each
    /// post answered 2xx, duplicates included) and given up.
    pub fn stripe_webhook_counts(&self) -> WebhookCounts {
        self.lock().ledger.stripe_webhook_counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API-CONTRACTS §3.5's vector, so the sandbox signs as Stripe does.
    #[test]
    fn signs_like_stripe() {
        let body = br#"{"id":"evt_test_webhook","object":"event","type":"product.updated"}"#;
        assert_eq!(
            signature("whsec_test_secret", body, 1700000000),
            "t=1700000000,v1=e45228dadf794851935bb75234fe0a5a2411eb632c9051688151255103a53ec0"
        );
    }
}
