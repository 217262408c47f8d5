//! HubSpot's webhook delivery (API-CONTRACTS §1.9–1.10): every create, property change and
//! archive a portal's subscriptions cover becomes an event; events are posted to the app's target
//! URL as JSON arrays of at most 100, signed v1 and v3, at most 10 requests in flight, and a
//! delivery answered non-2xx, refused, or not answered within 5 s is retried later with a
//! higher `attemptNumber`. Duplication, shuffling and drops are configurable, because HubSpot
//! promises neither uniqueness nor order and tests must meet both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Sandbox;

/// An app's webhook settings and subscriptions on one portal, plus the sandbox's knobs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where deliveries are posted (the app's `targetUrl`).
    pub target_url: String,
    /// The app's client secret, which signs every delivery.
    pub client_secret: String,
    #[serde(default = "default_app_id")]
    pub app_id: u64,
    /// Event types (`contact.creation`, `contact.propertyChange`, `deal.deletion`…); a
    /// `propertyChange` subscription may name its property.
    pub subscriptions: Vec<Subscription>,
    /// Requests in flight at once (HubSpot: 10).
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Events per delivery (HubSpot: up to 100).
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// How long events gather before they are sent.
    #[serde(default = "default_window")]
    pub batch_window_ms: u64,
    /// A delivery not answered within this is retried (HubSpot: 5 s).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Attempts per delivery before HubSpot gives up (the first plus 10 retries).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The first retry's delay, doubled per retry with ±50 % jitter (HubSpot spreads 10 retries
    /// over 24 h; tests want seconds).
    #[serde(default = "default_retry")]
    pub retry_delay_ms: u64,
    /// Share of events delivered a second time, in a later delivery.
    #[serde(default)]
    pub duplicate: f64,
    /// Share of events never delivered.
    #[serde(default)]
    pub drop: f64,
    /// Deliver in random order and random delivery sizes.
    #[serde(default)]
    pub shuffle: bool,
    /// Seeds duplication, drops and shuffling.
    #[serde(default)]
    pub seed: u64,
}

fn default_app_id() -> u64 {
    54321
}
fn default_concurrency() -> usize {
    10
}
fn default_batch() -> usize {
    100
}
fn default_window() -> u64 {
    50
}
fn default_timeout() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    11
}
fn default_retry() -> u64 {
    1_000
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subscription {
    pub event_type: String,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

impl WebhookSettings {
    pub fn check(&self) -> Result<(), String> {
        if !(self.target_url.starts_with("http://") || self.target_url.starts_with("https://")) {
            return Err(format!("webhooks.target_url {:?} is not an http(s) URL", self.target_url));
        }
        if self.subscriptions.is_empty() {
            return Err("webhooks.subscriptions is empty".into());
        }
        if !(1..=100).contains(&self.max_batch) || self.max_concurrent_requests == 0 || self.max_attempts == 0 {
            return Err("webhooks: max_batch must be 1–100, max_concurrent_requests and max_attempts at least 1".into());
        }
        Ok(())
    }

    /// The subscription (its id is its position, from 1) that covers `event_type`, and
    /// `property` for property changes.
    fn subscription(&self, event_type: &str, property: Option<&str>) -> Option<u64> {
        let covers = |s: &Subscription| {
            s.active && s.event_type == event_type && (s.property_name.is_none() || s.property_name.as_deref() == property)
        };
        self.subscriptions.iter().position(covers).map(|i| i as u64 + 1)
    }
}

/// One portal's events waiting to be sent.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(crate) settings: Option<WebhookSettings>,
    pub(crate) events: Vec<Value>,
    next_event_id: u64,
}

impl Outbox {
    /// Queues the event a change emits, when a subscription covers it. `singular` is the object
    /// type's event prefix (`contact`, `company`, `deal`); `change` is `creation`,
    /// `propertyChange` (with the property's new value) or `deletion`.
    pub(crate) fn emit(&mut self, portal_id: u64, singular: &str, object_id: u64, change: &str, property: Option<(&str, &str)>) {
        let Some(settings) = &self.settings else { return };
        let event_type = format!("{singular}.{change}");
        let Some(subscription_id) = settings.subscription(&event_type, property.map(|(name, _)| name)) else { return };
        self.next_event_id += 1;
        let mut event = json!({
            "eventId": self.next_event_id,
            "subscriptionId": subscription_id,
            "portalId": portal_id,
            "appId": settings.app_id,
            "occurredAt": chrono::Utc::now().timestamp_millis(),
            "subscriptionType": event_type,
            "attemptNumber": 0,
            "objectId": object_id,
            "changeSource": "CRM",
            "sourceId": "userId:1",
        });
        match property {
            Some((name, value)) => {
                event["propertyName"] = json!(name);
                event["propertyValue"] = json!(value);
            }
            None if change == "creation" => event["changeFlag"] = json!("NEW"),
            None => event["changeFlag"] = json!("DELETED"),
        }
        self.events.push(event);
    }
}

/// One try of a delivery, as the ledger keeps it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebhookAttempt {
    pub portal_id: u64,
    pub at_ms: i64,
    pub events: usize,
    pub attempt_number: u32,
    /// The receiver's status, or none when it refused the connection or did not answer in time.
    pub status: Option<u16>,
    /// Why there is no status, or `gave up` on the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to emitted events, as the ledger counts them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookCounts {
    pub emitted: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Events in deliveries answered 2xx.
    pub delivered: u64,
    /// Events in deliveries that ran out of attempts.
    pub given_up: u64,
}

/// The headers HubSpot signs a delivery with: v1 (`SHA256(secret + body)`, hex) and v3
/// (`HMAC_SHA256(secret, method + url + body + timestamp)`, base64). Written here rather than
/// shared with the server's verifier, so that a misreading on one side fails a test.
pub fn signature_headers(secret: &str, url: &str, body: &[u8], timestamp_ms: i64) -> Vec<(&'static str, String)> {
    let mut v1 = Sha256::new();
    v1.update(secret.as_bytes());
    v1.update(body);
    let mut v3 = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    v3.update(b"POST");
    v3.update(url.as_bytes());
    v3.update(body);
    v3.update(timestamp_ms.to_string().as_bytes());
    vec![
        ("x-hubspot-signature", hex::encode(v1.finalize())),
        ("x-hubspot-signature-version", "v1".into()),
        ("x-hubspot-signature-v3", base64::engine::general_purpose::STANDARD.encode(v3.finalize().into_bytes())),
        ("x-hubspot-request-timestamp", timestamp_ms.to_string()),
    ]
}

/// A delivery ready to send: where, signed with what, and its events.
struct Delivery {
    portal_id: u64,
    settings: WebhookSettings,
    events: Vec<Value>,
}

impl Sandbox {
    /// Sets (or with `None` removes) the webhook settings of the portal reached with `token`.
    /// Events already queued keep waiting for the new target.
    pub fn set_webhooks(&self, token: &str, settings: Option<WebhookSettings>) -> Result<(), String> {
        if let Some(settings) = &settings {
            settings.check()?;
        }
        let mut state = self.lock();
        let portal = state.portals.iter_mut().find(|p| p.config.token == token).ok_or_else(|| format!("no portal with token {token}"))?;
        portal.outbox.settings = settings;
        Ok(())
    }

    /// Posts the portals' webhook events until the runtime stops. `Sandbox::serve` starts it.
    pub fn spawn_webhook_delivery(&self) -> tokio::task::JoinHandle<()> {
        let sandbox = self.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().build().expect("the HTTP client builds");
            let mut limits: HashMap<u64, Arc<tokio::sync::Semaphore>> = HashMap::new();
            let mut rng = fastrand::Rng::new();
            let mut seeded: HashMap<u64, u64> = HashMap::new();
            // duplicates go out with a later delivery, as HubSpot's redeliveries do
            let mut later: Vec<(u64, Value)> = Vec::new();
            loop {
                let window = sandbox.take_deliveries(&mut rng, &mut seeded, &mut later);
                for delivery in window.deliveries {
                    let limit = limits
                        .entry(delivery.portal_id)
                        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(delivery.settings.max_concurrent_requests)))
                        .clone();
                    let (sandbox, client) = (sandbox.clone(), client.clone());
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        sandbox.deliver(&client, delivery).await;
                    });
                }
                tokio::time::sleep(Duration::from_millis(window.next_ms)).await;
            }
        })
    }

    /// Takes every queued event, applies drops, duplication and shuffling, and cuts deliveries.
    fn take_deliveries(&self, rng: &mut fastrand::Rng, seeded: &mut HashMap<u64, u64>, later: &mut Vec<(u64, Value)>) -> Window {
        let mut state = self.lock();
        let crate::SandboxState { portals, ledger, .. } = &mut *state;
        let mut deliveries = Vec::new();
        let mut next_ms = default_window();
        for portal in portals.iter_mut() {
            let Some(settings) = portal.outbox.settings.clone() else { continue };
            next_ms = next_ms.min(settings.batch_window_ms.max(1));
            if seeded.insert(portal.id, settings.seed) != Some(settings.seed) {
                rng.seed(settings.seed);
            }
            let fresh = std::mem::take(&mut portal.outbox.events);
            ledger.webhook_counts.emitted += fresh.len() as u64;
            let mut events: Vec<Value> = Vec::new();
            later.retain(|(id, event)| {
                let mine = *id == portal.id;
                if mine {
                    events.push(event.clone());
                }
                !mine
            });
            for event in fresh {
                if rng.f64() < settings.drop {
                    ledger.webhook_counts.dropped += 1;
                    continue;
                }
                if rng.f64() < settings.duplicate {
                    ledger.webhook_counts.duplicated += 1;
                    later.push((portal.id, event.clone()));
                }
                events.push(event);
            }
            if settings.shuffle {
                rng.shuffle(&mut events);
            }
            while !events.is_empty() {
                let size = if settings.shuffle { rng.usize(1..=settings.max_batch) } else { settings.max_batch };
                let rest = events.split_off(size.min(events.len()));
                deliveries.push(Delivery { portal_id: portal.id, settings: settings.clone(), events });
                events = rest;
            }
        }
        Window { deliveries, next_ms }
    }

    /// Sends one delivery until it is answered 2xx or runs out of attempts.
    async fn deliver(&self, client: &reqwest::Client, mut delivery: Delivery) {
        let settings = &delivery.settings;
        let mut rng = fastrand::Rng::new();
        for attempt in 0..settings.max_attempts {
            for event in &mut delivery.events {
                event["attemptNumber"] = json!(attempt);
            }
            let body = serde_json::to_vec(&delivery.events).expect("events serialize");
            let now = chrono::Utc::now().timestamp_millis();
            let mut request = client
                .post(&settings.target_url)
                .timeout(Duration::from_millis(settings.timeout_ms))
                .header("content-type", "application/json")
                .header(
                    "user-agent",
                    "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nonprod) - WebhooksExecutorDaemon",
                )
                .header("x-hubspot-timeout-millis", settings.timeout_ms.to_string());
            for (name, value) in signature_headers(&settings.client_secret, &settings.target_url, &body, now) {
                request = request.header(name, value);
            }
            let (status, error) = match request.body(body).send().await {
                Ok(response) => (Some(response.status().as_u16()), None),
                Err(e) if e.is_timeout() => (None, Some("timed out".to_owned())),
                Err(e) => (None, Some(format!("unreachable: {e}"))),
            };
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            let last = attempt + 1 == settings.max_attempts;
            {
                let mut state = self.lock();
                let ledger = &mut state.ledger;
                let error = if !delivered && last { Some(error.map_or("gave up".to_owned(), |e| format!("{e}; gave up"))) } else { error };
                ledger.webhook_attempts.push(WebhookAttempt {
                    portal_id: delivery.portal_id,
                    at_ms: now,
                    events: delivery.events.len(),
                    attempt_number: attempt,
                    status,
                    error,
                });
                if delivered {
                    ledger.webhook_counts.delivered += delivery.events.len() as u64;
                } else if last {
                    ledger.webhook_counts.given_up += delivery.events.len() as u64;
                }
            }
            if delivered || last {
                return;
            }
            let delay = settings.retry_delay_ms.saturating_mul(1 << attempt.min(16)) as f64 * (0.5 + rng.f64());
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
    }
}

struct Window {
    deliveries: Vec<Delivery>,
    /// When to look for events again.
    next_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HubSpot's SDK vectors (API-CONTRACTS §1.10), so the sandbox signs as HubSpot does.
    #[test]
    fn signs_like_hubspot() {
        let secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
        let body = b"{'example_field':'example_value'}";
        let headers = signature_headers(secret, "https://www.example.com/webhook_uri", body, 1693657560000);
        assert_eq!(headers[0].1, "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750");
        assert_eq!(headers[2].1, "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=");
    }
}
