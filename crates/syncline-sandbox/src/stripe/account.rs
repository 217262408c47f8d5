//! One Stripe account's objects: products, prices and the events their changes make, paged
//! newest first as Stripe lists them, and the idempotency keys of its writes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{invalid, missing};
use crate::emulate::Answer;
use crate::window::RollingWindow;

/// A Stripe account as a seed or test sets it up.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeAccountConfig {
    /// The secret key requests carry as `Authorization: Bearer sk_…`. A `sk_live_` key gets
    /// live mode's limit and `livemode: true`; any other, test mode's.
    pub key: String,
    /// Requests per second before 429s (default: 25 in test mode, 100 live; 0: no limit, for
    /// benchmarks).
    #[serde(default)]
    pub rate_limit: Option<usize>,
    /// How long an idempotency key is kept (Stripe prunes keys at least 24 h old).
    #[serde(default = "day")]
    pub idempotency_ttl_secs: u64,
    /// Webhook endpoints the account starts with (more are made by `POST /v1/webhook_endpoints`).
    #[serde(default)]
    pub webhooks: Vec<super::StripeWebhook>,
    /// How its events reach the endpoints: retries, and held-back and duplicated events.
    #[serde(default)]
    pub webhook_delivery: super::StripeDelivery,
}

fn day() -> u64 {
    86_400
}

impl StripeAccountConfig {
    pub fn new(key: impl Into<String>) -> StripeAccountConfig {
        StripeAccountConfig {
            key: key.into(),
            rate_limit: None,
            idempotency_ttl_secs: day(),
            webhooks: Vec::new(),
            webhook_delivery: super::StripeDelivery::default(),
        }
    }

    pub fn livemode(&self) -> bool {
        self.key.starts_with("sk_live_")
    }
}

/// Objects of one kind in creation order (the newest last), found by id.
#[derive(Default)]
pub(crate) struct Objects {
    list: Vec<Value>,
    index: HashMap<String, usize>,
    deleted: HashSet<String>,
}

/// Where a list page starts: `starting_after` (older than) or `ending_before` (newer than).
pub(crate) enum From<'a> {
    Newest,
    After(&'a str),
    Before(&'a str),
}

impl Objects {
    pub fn insert(&mut self, object: Value) {
        let id = object["id"].as_str().expect("objects have ids").to_owned();
        self.index.insert(id, self.list.len());
        self.list.push(object);
    }

    pub fn get(&self, id: &str) -> Option<&Value> {
        self.index.get(id).filter(|_| !self.deleted.contains(id)).map(|&i| &self.list[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.index.get(id).filter(|_| !self.deleted.contains(id)).map(|&i| &mut self.list[i])
    }

    pub fn delete(&mut self, id: &str) {
        self.deleted.insert(id.to_owned());
    }

    pub fn live(&self) -> impl DoubleEndedIterator<Item = &Value> {
        self.list.iter().filter(|o| !self.deleted.contains(o["id"].as_str().unwrap_or_default()))
    }

    /// One page of at most `limit` objects that `keep`, newest first, and whether more follow
    /// in the direction read; `what` names the kind for a cursor that names no object.
    pub fn page(&self, from: From, limit: usize, what: &str, keep: impl Fn(&Value) -> bool) -> Result<(Vec<&Value>, bool), Answer> {
        let position = |id: &str, param: &str| {
            self.index.get(id).copied().ok_or_else(|| invalid("resource_missing", param, format!("No such {what}: '{id}'")))
        };
        let live = |i: &usize| !self.deleted.contains(self.list[*i]["id"].as_str().unwrap_or_default()) && keep(&self.list[*i]);
        let (page, more): (Vec<usize>, bool) = match from {
            From::Newest => take(&mut (0..self.list.len()).rev().filter(live), limit),
            From::After(id) => take(&mut (0..position(id, "starting_after")?).rev().filter(live), limit),
            From::Before(id) => {
                let (mut newer, more) = take(&mut (position(id, "ending_before")? + 1..self.list.len()).filter(live), limit);
                newer.reverse();
                (newer, more)
            }
        };
        Ok((page.into_iter().map(|i| &self.list[i]).collect(), more))
    }
}

/// The first `limit` of `items`, and whether any is left.
fn take(items: &mut impl Iterator<Item = usize>, limit: usize) -> (Vec<usize>, bool) {
    let page: Vec<usize> = items.take(limit).collect();
    (page, items.next().is_some())
}

/// A saved answer to an idempotent write, and the parameters it was for.
struct Saved {
    request: String,
    answer: Answer,
    at: Instant,
}

/// What an idempotency key says about a write.
pub(crate) enum Replay {
    /// Not seen (or pruned): run the write.
    Fresh,
    /// Seen with the same parameters: answer this again.
    Same(Answer),
    /// Seen with other parameters.
    Mismatch(Answer),
}

pub(crate) struct Account {
    pub config: StripeAccountConfig,
    pub products: Objects,
    pub prices: Objects,
    pub events: Objects,
    pub endpoints: Objects,
    /// Events waiting to be posted, as (url, secret, event).
    pub outbox: Vec<(String, String, Value)>,
    idempotency: HashMap<String, Saved>,
    window: Option<RollingWindow>,
}

impl Account {
    pub fn new(config: StripeAccountConfig) -> Result<Account, String> {
        if !config.key.starts_with("sk_") && !config.key.starts_with("rk_") {
            return Err(format!("a Stripe secret key starts with sk_ or rk_, not {:?}", config.key.chars().take(8).collect::<String>()));
        }
        let per_second = config.rate_limit.unwrap_or(if config.livemode() { 100 } else { 25 });
        let window = (per_second > 0).then(|| RollingWindow::new(per_second, Duration::from_secs(1)));
        let mut account = Account {
            config,
            products: Objects::default(),
            prices: Objects::default(),
            events: Objects::default(),
            endpoints: Objects::default(),
            outbox: Vec::new(),
            idempotency: HashMap::new(),
            window,
        };
        for webhook in account.config.webhooks.clone() {
            account.add_endpoint(&webhook.url, &webhook.secret, webhook.events, None, chrono::Utc::now().timestamp());
        }
        Ok(account)
    }

    pub fn spend(&mut self, now: Instant) -> bool {
        self.window.as_mut().is_none_or(|w| w.try_spend(now))
    }

    /// What `key` says about a write of `request` (method, path and canonical parameters).
    pub fn replay(&mut self, key: &str, request: &str, now: Instant) -> Replay {
        let ttl = Duration::from_secs(self.config.idempotency_ttl_secs);
        self.idempotency.retain(|_, saved| now.duration_since(saved.at) < ttl);
        match self.idempotency.get(key) {
            None => Replay::Fresh,
            Some(saved) if saved.request == request => Replay::Same(saved.answer.clone()),
            Some(_) => Replay::Mismatch(idempotency_mismatch(key)),
        }
    }

    /// Keeps the answer of a write that began executing (Stripe saves even a 500; a request
    /// refused by validation saves nothing).
    pub fn save(&mut self, key: &str, request: String, answer: &Answer, now: Instant) {
        if !answer.0.is_client_error() {
            self.idempotency.insert(key.to_owned(), Saved { request, answer: answer.clone(), at: now });
        }
    }

    /// Records an event of `kind` about `object` (and what an update changed).
    pub fn emit(&mut self, kind: &str, object: &Value, previous: Option<Map<String, Value>>, idempotency_key: Option<&str>, now: i64) {
        let mut data = json!({"object": object});
        if let Some(previous) = previous {
            data["previous_attributes"] = Value::Object(previous);
        }
        let endpoints = self.endpoints_for(kind);
        let event = json!({
            "id": super::new_id("evt", 24),
            "object": "event",
            "api_version": super::API_VERSION,
            "created": now,
            "data": data,
            "livemode": self.config.livemode(),
            "pending_webhooks": endpoints.len(),
            "request": {"id": null, "idempotency_key": idempotency_key},
            "type": kind,
        });
        self.outbox.extend(endpoints.into_iter().map(|(url, secret)| (url, secret, event.clone())));
        self.events.insert(event);
    }

    /// `GET /v1/account`: the account the key opens (its id derived from the key, so one key
    /// always opens the same account).
    pub fn account_json(&self) -> Value {
        let digest: u64 = self.config.key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        json!({"id": format!("acct_{digest:016x}"), "object": "account", "country": "US", "default_currency": "usd", "type": "standard",
               "charges_enabled": true, "details_submitted": true, "payouts_enabled": true})
    }

    /// A live product by id, or Stripe's 404.
    pub fn product(&self, id: &str) -> Result<&Value, Answer> {
        self.products.get(id).ok_or_else(|| missing("product", id))
    }

    /// A price by id, or Stripe's 404.
    pub fn price(&self, id: &str) -> Result<&Value, Answer> {
        self.prices.get(id).ok_or_else(|| missing("price", id))
    }
}

fn idempotency_mismatch(key: &str) -> Answer {
    let message = format!(
        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
    );
    (axum::http::StatusCode::BAD_REQUEST, json!({"error": {"message": message, "type": "idempotency_error"}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(n: usize) -> Objects {
        let mut objects = Objects::default();
        for i in 0..n {
            objects.insert(json!({"id": format!("o{i}"), "even": i % 2 == 0}));
        }
        objects
    }

    fn ids(page: &[&Value]) -> Vec<String> {
        page.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn pages_run_newest_first_from_either_cursor() {
        let mut objects = objects(6);
        let (page, more) = objects.page(From::Newest, 2, "thing", |_| true).unwrap();
        assert_eq!((ids(&page), more), (vec!["o5".into(), "o4".into()], true));
        let (page, more) = objects.page(From::After("o4"), 3, "thing", |_| true).unwrap();
        assert_eq!((ids(&page), more), (vec!["o3".into(), "o2".into(), "o1".into()], true));
        let (page, more) = objects.page(From::Before("o1"), 2, "thing", |_| true).unwrap();
        assert_eq!((ids(&page), more), (vec!["o3".into(), "o2".into()], true), "the two just newer than o1");
        objects.delete("o2");
        let (page, more) = objects.page(From::After("o4"), 10, "thing", |o| o["even"] == true).unwrap();
        assert_eq!((ids(&page), more), (vec!["o0".into()], false), "deleted and filtered objects are skipped");
        let (status, body) = objects.page(From::After("nope"), 1, "thing", |_| true).unwrap_err();
        assert_eq!((status.as_u16(), body["error"]["param"].as_str()), (400, Some("starting_after")));
    }
}
