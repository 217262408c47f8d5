//! ManyChat's wire: the shapes syncline uses (content v2 messages included; the only place they
//! are written), ManyChat's `status: success|error` envelopes turned into error classes, and one
//! policy per method class (its documented per-second budget). Calls go through the shared
//! [`Endpoint`](crate::http::Endpoint).
//!
//! Sends are not idempotent (ManyChat takes no idempotency key), so a send is never retried
//! after an answer that leaves its fate unknown (5xx, reset, timeout): the failure goes back to
//! the caller, whose recovery checks the message's own marker before sending again. 429s are
//! retried: ManyChat refused the call, nothing was sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use syncline_core::metric::Service;
use syncline_core::{ConnectorError, ErrorClass};
use syncline_resilience::{Budget, Health, Policy, PolicyConfig, Reply, parse_retry_after};

use super::config::{MAX_FIELDS_PER_CALL, ManyChatProfile};
use crate::http::{Answer, Endpoint, Request, shared};

/// Actions one content v2 message may carry (API-CONTRACTS §2.5).
pub const MAX_ACTIONS: usize = 5;

/// A text message in content v2 and the actions ManyChat applies if, and only if, it accepts
/// the message: the `mark` tag (how a retry knows the message went out) and custom field values.
#[derive(Debug, Clone, Default)]
pub struct TextMessage {
    /// One to ten texts, sent as separate bubbles.
    pub texts: Vec<String>,
    /// The tag added with the message.
    pub mark: String,
    /// Custom field values set with the message (at most `MAX_ACTIONS - 1`).
    pub fields: Vec<(String, Value)>,
    /// A Facebook message tag, for messages outside the 24-hour window.
    pub message_tag: Option<String>,
}

impl TextMessage {
    /// `sendContent`'s `data`: `{"version":"v2","content":{"messages":[…],"actions":[…]}}`.
    fn content(&self) -> Value {
        let messages: Vec<Value> = self.texts.iter().map(|text| json!({"type": "text", "text": text})).collect();
        let mut actions = vec![json!({"action": "add_tag", "tag_name": self.mark})];
        actions.extend(self.fields.iter().map(|(name, value)| json!({"action": "set_field_value", "field_name": name, "value": value})));
        json!({"version": "v2", "content": {"messages": messages, "actions": actions}})
    }
}

/// A subscriber (`Subscriber` in ManyChat's API); only what syncline reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Subscriber {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub whatsapp_phone: Option<String>,
    pub email: Option<String>,
    pub tags: Vec<Tag>,
}

impl Subscriber {
    pub fn has_tag(&self, name: &str) -> bool {
        self.tags.iter().any(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Tag {
    pub id: u64,
    pub name: String,
}

/// What `findBySystemField` looks up by.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Email(&'a str),
    /// A phone in international format; ManyChat matches SMS and WhatsApp numbers.
    Phone(&'a str),
}

/// `createSubscriber`'s body: one of phone, whatsapp_phone or email is required, and an SMS
/// opt-in needs the consent phrase the person agreed to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewSubscriber {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub has_opt_in_sms: bool,
    pub has_opt_in_email: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_phrase: Option<String>,
}

/// ManyChat's envelope: `status`, then `data` or the error's message, details and code.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Envelope {
    status: String,
    data: Value,
    message: String,
    details: Value,
    code: Option<u32>,
}

/// Method classes, each with its own budget per second (API-CONTRACTS §2.3–2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Subscriber reads and writes, tags, fields: 10/s.
    Subscriber,
    /// `findBySystemField`: 50/s.
    Find,
    /// `sendContent`: 25/s.
    SendContent,
    /// `sendFlow`: 20/s (and 100 per subscriber per hour, which ManyChat enforces).
    SendFlow,
}

impl Class {
    const ALL: [Class; 4] = [Class::Subscriber, Class::Find, Class::SendContent, Class::SendFlow];

    fn per_second(self) -> u32 {
        match self {
            Class::Subscriber => 10,
            Class::Find => 50,
            Class::SendContent => 25,
            Class::SendFlow => 20,
        }
    }

    fn is_send(self) -> bool {
        matches!(self, Class::SendContent | Class::SendFlow)
    }

    fn name(self) -> &'static str {
        match self {
            Class::Subscriber => "manychat",
            Class::Find => "manychat findBySystemField",
            Class::SendContent => "manychat sendContent",
            Class::SendFlow => "manychat sendFlow",
        }
    }
}

/// A ManyChat page as seen through its API token.
pub struct ManyChatApi {
    endpoint: Endpoint,
    policies: Vec<(Class, Policy)>,
}

impl ManyChatApi {
    pub fn new(profile: &ManyChatProfile) -> Result<ManyChatApi, ConnectorError> {
        let policies = Class::ALL
            .into_iter()
            .map(|class| {
                let config = PolicyConfig {
                    name: class.name().into(),
                    // ManyChat counts arrivals per second; 50 ms clear of the edge absorbs clock skew
                    // and sends delayed on their way (a busy host: with 20 ms, a loaded 2-core
                    // machine saw one send in 500 land in the next 25's second), for ~5 % of pace
                    budget: Some(Budget::per(class.per_second(), Duration::from_secs(1)).with_margin(Duration::from_millis(50))),
                    max_attempts: if class.is_send() { 1 } else { PolicyConfig::default().max_attempts },
                    attempt_timeout: Duration::from_secs(10),
                    overall_timeout: profile.call_timeout,
                    ..PolicyConfig::default()
                };
                (class, shared(Policy::new(config), &profile.budgets, class.name(), &profile.base_url, &profile.token))
            })
            .collect();
        Ok(ManyChatApi { endpoint: Endpoint::new(Service::MANYCHAT, &profile.base_url, &profile.token)?, policies })
    }

    /// `GET /fb/subscriber/findBySystemField`: the subscriber with this email or phone, if any.
    pub async fn find(&self, lookup: Lookup<'_>) -> Result<Option<Subscriber>, ConnectorError> {
        let query = match lookup {
            Lookup::Email(email) => ("email", email),
            Lookup::Phone(phone) => ("phone", phone),
        };
        let data = self.send(Class::Find, get("/fb/subscriber/findBySystemField", &[query])).await?;
        // a miss is a success without a subscriber: null, {} or []
        let empty = data.is_null() || data.as_object().is_some_and(|o| o.is_empty()) || data.as_array().is_some_and(|a| a.is_empty());
        if empty { Ok(None) } else { subscriber("findBySystemField", data).map(Some) }
    }

    /// `GET /fb/subscriber/getInfo`.
    pub async fn get_info(&self, subscriber_id: &str) -> Result<Subscriber, ConnectorError> {
        let data = self.send(Class::Subscriber, get("/fb/subscriber/getInfo", &[("subscriber_id", subscriber_id)])).await?;
        subscriber("getInfo", data)
    }

    /// `POST /fb/subscriber/createSubscriber`.
    pub async fn create_subscriber(&self, new: &NewSubscriber) -> Result<Subscriber, ConnectorError> {
        let data = self.send(Class::Subscriber, Request::post("/fb/subscriber/createSubscriber", new)).await?;
        subscriber("createSubscriber", data)
    }

    /// `POST /fb/subscriber/setCustomFields`, 20 fields per call, by field name.
    pub async fn set_custom_fields(&self, subscriber_id: &str, fields: &[(String, Value)]) -> Result<(), ConnectorError> {
        for chunk in fields.chunks(MAX_FIELDS_PER_CALL) {
            let fields: Vec<Value> = chunk.iter().map(|(name, value)| json!({"field_name": name, "field_value": value})).collect();
            let body = json!({"subscriber_id": id_number(subscriber_id)?, "fields": fields});
            self.send(Class::Subscriber, Request::post("/fb/subscriber/setCustomFields", &body)).await?;
        }
        Ok(())
    }

    /// `POST /fb/subscriber/addTagByName`.
    pub async fn add_tag(&self, subscriber_id: &str, tag: &str) -> Result<(), ConnectorError> {
        let body = json!({"subscriber_id": id_number(subscriber_id)?, "tag_name": tag});
        self.send(Class::Subscriber, Request::post("/fb/subscriber/addTagByName", &body)).await.map(drop)
    }

    /// `GET /fb/page/getInfo`: the page's name, which proves the token opens it (`syncline check`).
    pub async fn page_name(&self) -> Result<String, ConnectorError> {
        let data = self.send(Class::Subscriber, Request::get("/fb/page/getInfo")).await?;
        Ok(data.get("name").and_then(Value::as_str).unwrap_or("(no name)").to_owned())
    }

    /// How each method class's policy is doing, for `/readyz`.
    pub fn health(&self) -> Vec<Health> {
        self.policies.iter().map(|(_, policy)| policy.health()).collect()
    }

    /// `POST /fb/sending/sendContent`: the texts as one content v2 message, with its mark and
    /// field values as the message's own actions. Never repeated after an answer that leaves
    /// its fate unknown.
    pub async fn send_text(&self, subscriber_id: &str, message: &TextMessage) -> Result<(), ConnectorError> {
        if message.fields.len() >= MAX_ACTIONS {
            let why = format!("a message carries at most {} field values besides its mark", MAX_ACTIONS - 1);
            return Err(ConnectorError::new(ErrorClass::Config, why));
        }
        let mut body = json!({"subscriber_id": id_number(subscriber_id)?, "data": message.content()});
        if let Some(tag) = &message.message_tag {
            body["message_tag"] = json!(tag);
        }
        self.send(Class::SendContent, Request::post("/fb/sending/sendContent", &body)).await.map(drop)
    }

    /// `POST /fb/sending/sendFlow`.
    pub async fn send_flow(&self, subscriber_id: &str, flow_ns: &str) -> Result<(), ConnectorError> {
        let body = json!({"subscriber_id": id_number(subscriber_id)?, "flow_ns": flow_ns});
        self.send(Class::SendFlow, Request::post("/fb/sending/sendFlow", &body)).await.map(drop)
    }

    /// One call through its class's policy; the `data` of a success. ManyChat's method name
    /// (`sendContent`…) is the operation in the `manychat_api_*` metrics.
    async fn send(&self, class: Class, request: Request) -> Result<Value, ConnectorError> {
        let policy = &self.policies.iter().find(|(c, _)| *c == class).expect("a policy per class").1;
        let path = request.path.split('?').next().unwrap_or_default().to_owned();
        let operation = path.rsplit('/').next().unwrap_or(&path);
        self.endpoint.call(policy, operation, request, classify).await
    }
}

/// A GET with its query string.
fn get(path: &str, query: &[(&str, &str)]) -> Request {
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    Request::get(format!("{path}?{query}"))
}

fn id_number(subscriber_id: &str) -> Result<u64, ConnectorError> {
    subscriber_id
        .parse()
        .map_err(|_| ConnectorError::new(ErrorClass::Data, format!("ManyChat subscriber id {subscriber_id:?} is not a number")))
}

fn subscriber(what: &str, data: Value) -> Result<Subscriber, ConnectorError> {
    serde_json::from_value(data).map_err(|e| {
        ConnectorError::new(
            ErrorClass::Transient { retry_after: None },
            format!("{what}: ManyChat's subscriber is not the expected JSON: {e}"),
        )
    })
}

/// An answer as an attempt's outcome. A body without `status: success` is a failure whatever
/// the HTTP status (as ManyChat's own PHP client reads it).
fn classify(answer: Answer, what: &str) -> Reply<Value> {
    let retry_after = answer.header("retry-after").and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let (status, body) = (answer.status, answer.body.as_slice());
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    if status.is_success() && envelope.as_ref().is_some_and(|e| e.status == "success") {
        return Reply::ok(envelope.expect("checked").data);
    }
    let envelope = envelope.unwrap_or_default();
    let details: Vec<&str> =
        envelope.details["messages"].as_array().map(|m| m.iter().filter_map(|m| m["message"].as_str()).collect()).unwrap_or_default();
    let mut message = format!("{what}: ManyChat answered {}", status.as_u16());
    if let Some(code) = envelope.code {
        message.push_str(&format!(" (code {code})"));
    }
    if !envelope.message.is_empty() {
        message.push_str(&format!(": {}", envelope.message));
    }
    if !details.is_empty() {
        message.push_str(&format!(": {}", details.join("; ")));
    }
    if envelope.status.is_empty() && !status.is_success() {
        let start: String = String::from_utf8_lossy(body).chars().take(120).collect();
        message.push_str(&format!(": {start}"));
    }
    let class = match status.as_u16() {
        429 => ErrorClass::RateLimited,
        401 | 403 | 404 => ErrorClass::Config,
        408 | 500..=599 => ErrorClass::Transient { retry_after },
        // 3011/3021/3031/304x (the 24-hour window, OTN, notification reasons) and validation
        // errors: sending again will not help until something changes
        _ => ErrorClass::Data,
    };
    let mut reply = Reply::failed(class, message);
    reply.feedback.retry_after = retry_after;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> Result<Value, (ErrorClass, String)> {
        let answer =
            Answer { status: reqwest::StatusCode::from_u16(status).unwrap(), headers: Default::default(), body: body.as_bytes().to_vec() };
        classify(answer, "POST /fb/sending/sendContent").outcome.map_err(|f| (f.class, f.message))
    }

    #[test]
    fn envelopes_decide_success_and_class() {
        assert_eq!(class(200, r#"{"status":"success","data":{"id":"1"}}"#).unwrap(), json!({"id": "1"}));
        assert_eq!(class(200, r#"{"status":"success"}"#).unwrap(), Value::Null);
        let (c, m) = class(200, r#"{"status":"error","message":"weird"}"#).unwrap_err();
        assert_eq!(c, ErrorClass::Data, "{m}");
        let (c, m) =
            class(400, r#"{"status":"error","message":"Subscriber was last active more than 24 hours ago","code":3011}"#).unwrap_err();
        assert_eq!(c, ErrorClass::Data);
        assert!(m.contains("code 3011") && m.contains("24 hours"), "{m}");
        let (_, m) =
            class(400, r#"{"status":"error","message":"Validation error","details":{"messages":[{"message":"text is required"}]}}"#)
                .unwrap_err();
        assert!(m.ends_with("Validation error: text is required"), "{m}");
        assert_eq!(class(429, r#"{"status":"error"}"#).unwrap_err().0, ErrorClass::RateLimited);
        assert_eq!(class(401, r#"{"status":"error"}"#).unwrap_err().0, ErrorClass::Config);
        let (c, m) = class(502, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(c, ErrorClass::Transient { retry_after: None });
        assert!(m.contains("bad gateway"), "{m}");
    }
}
