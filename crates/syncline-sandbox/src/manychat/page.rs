//! One ManyChat page: its subscribers, tags and custom fields, its per-method rate limits, and
//! the rules the sending endpoints check (content v2 limits, the 24-hour window).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::window::RollingWindow;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How a page is set up in a seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// The API token, `<page_id>:<key>` as ManyChat issues them (API-CONTRACTS §2.1).
    pub token: String,
    #[serde(default = "default_page_name")]
    pub name: String,
    /// Tags that exist on the page from the start.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Custom fields that exist from the start.
    #[serde(default)]
    pub custom_fields: Vec<FieldSeed>,
    /// Subscribers that exist from the start (people who already wrote to the page).
    #[serde(default)]
    pub subscribers: Vec<SubscriberSeed>,
    /// Enforce ManyChat's per-method limits (default true).
    #[serde(default = "yes")]
    pub rate_limits: bool,
}

fn default_page_name() -> String {
    "Sandbox page".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSeed {
    pub name: String,
    /// `text`, `number`, `date`, `datetime` or `boolean`.
    #[serde(rename = "type", default = "text")]
    pub kind: String,
}

fn text() -> String {
    "text".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriberSeed {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub whatsapp_phone: Option<String>,
    pub email: Option<String>,
    /// Hours since the subscriber last wrote (None: never, so only tagged messages reach them).
    pub last_interaction_hours_ago: Option<f64>,
}

/// ManyChat's documented limits per method (API-CONTRACTS §2.3–2.5), per second.
pub(crate) fn per_second(method: &str) -> u32 {
    match method {
        "sendContent" | "sendContentByUserRef" => 25,
        "sendFlow" => 20,
        "findBySystemField" => 50,
        "getInfo@page" | "getTags" | "getCustomFields" | "getBotFields" | "getGrowthTools" | "getOtnTopics" => 100,
        _ => 10,
    }
}

/// sendFlow: at most this many per subscriber per hour.
const FLOWS_PER_SUBSCRIBER_HOUR: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub id: u64,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub whatsapp_phone: Option<String>,
    pub email: Option<String>,
    pub gender: Option<String>,
    pub optin_phone: bool,
    pub optin_email: bool,
    pub subscribed: DateTime<Utc>,
    pub last_interaction: Option<DateTime<Utc>>,
    pub tags: Vec<u64>,
    pub fields: BTreeMap<u64, Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub description: String,
}

pub(crate) struct Page {
    pub(crate) config: PageConfig,
    pub(crate) id: u64,
    pub(crate) subscribers: Vec<Subscriber>,
    pub(crate) tags: Vec<(u64, String)>,
    pub(crate) fields: Vec<Field>,
    next_id: u64,
    /// Calls per method in the last second.
    windows: HashMap<String, RollingWindow>,
    /// Flows sent per subscriber in the last hour.
    flows_sent: HashMap<u64, RollingWindow>,
}

pub(crate) const FIELD_TYPES: [&str; 5] = ["text", "number", "date", "datetime", "boolean"];

impl Page {
    pub fn new(config: PageConfig) -> Result<Page, String> {
        let Some((id, key)) = config.token.split_once(':') else {
            return Err(format!("token {:?} is not <page_id>:<key>", config.token));
        };
        let id: u64 = id.parse().map_err(|_| format!("the page id in token {:?} is not a number", config.token))?;
        if key.is_empty() {
            return Err("the token's key after `:` is empty".into());
        }
        let mut page = Page {
            id,
            subscribers: Vec::new(),
            tags: Vec::new(),
            fields: Vec::new(),
            next_id: 1,
            windows: HashMap::new(),
            flows_sent: HashMap::new(),
            config: config.clone(),
        };
        for tag in &config.tags {
            page.tag_id(tag);
        }
        for field in &config.custom_fields {
            page.create_field(&field.name, &field.kind, "")?;
        }
        let now = Utc::now();
        for seed in config.subscribers {
            let last = seed.last_interaction_hours_ago.map(|h| now - chrono::Duration::milliseconds((h * 3_600_000.0) as i64));
            let id = page.new_id();
            page.subscribers.push(Subscriber {
                id,
                first_name: seed.first_name,
                last_name: seed.last_name,
                optin_phone: seed.phone.is_some() || seed.whatsapp_phone.is_some(),
                optin_email: seed.email.is_some(),
                phone: seed.phone,
                whatsapp_phone: seed.whatsapp_phone,
                email: seed.email,
                gender: None,
                subscribed: now,
                last_interaction: last,
                tags: Vec::new(),
                fields: BTreeMap::new(),
            });
        }
        Ok(page)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.id * 1_000_000 + self.next_id;
        self.next_id += 1;
        id
    }

    /// Spends one call of `method`'s per-second limit.
    pub fn spend(&mut self, method: &str, now: Instant) -> bool {
        if !self.config.rate_limits {
            return true;
        }
        let window = self
            .windows
            .entry(method.to_owned())
            .or_insert_with(|| RollingWindow::new(per_second(method) as usize, Duration::from_secs(1)));
        window.try_spend(now)
    }

    /// Spends one of a subscriber's 100 flows an hour.
    pub fn spend_flow(&mut self, subscriber: u64, now: Instant) -> bool {
        let sent =
            self.flows_sent.entry(subscriber).or_insert_with(|| RollingWindow::new(FLOWS_PER_SUBSCRIBER_HOUR, Duration::from_secs(3600)));
        sent.try_spend(now)
    }

    pub fn subscriber(&mut self, id: u64) -> Option<&mut Subscriber> {
        self.subscribers.iter_mut().find(|s| s.id == id)
    }

    /// A tag's id, creating the tag when the page has none by that name.
    pub fn tag_id(&mut self, name: &str) -> u64 {
        if let Some((id, _)) = self.tags.iter().find(|(_, n)| n == name) {
            return *id;
        }
        let id = 100 + self.tags.len() as u64;
        self.tags.push((id, name.to_owned()));
        id
    }

    pub fn create_field(&mut self, name: &str, kind: &str, description: &str) -> Result<u64, String> {
        if !FIELD_TYPES.contains(&kind) {
            return Err(format!("type must be one of {}", FIELD_TYPES.join(", ")));
        }
        if name.trim().is_empty() {
            return Err("caption is required".into());
        }
        if self.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(format!("custom field {name:?} already exists"));
        }
        let id = 5_000 + self.fields.len() as u64;
        self.fields.push(Field { id, name: name.to_owned(), kind: kind.to_owned(), description: description.to_owned() });
        Ok(id)
    }

    /// A custom field by id or case-insensitive name.
    pub fn field(&self, id: Option<u64>, name: Option<&str>) -> Option<&Field> {
        self.fields.iter().find(|f| Some(f.id) == id || name.is_some_and(|n| f.name.eq_ignore_ascii_case(n)))
    }

    pub fn create_subscriber(&mut self, fields: NewSubscriber) -> &Subscriber {
        let id = self.new_id();
        self.subscribers.push(Subscriber {
            id,
            first_name: fields.first_name.unwrap_or_default(),
            last_name: fields.last_name.unwrap_or_default(),
            optin_phone: fields.has_opt_in_sms.unwrap_or(false),
            optin_email: fields.has_opt_in_email.unwrap_or(false),
            phone: fields.phone,
            whatsapp_phone: fields.whatsapp_phone,
            email: fields.email,
            gender: fields.gender,
            subscribed: Utc::now(),
            // created through the API: the person has not written yet
            last_interaction: None,
            tags: Vec::new(),
            fields: BTreeMap::new(),
        });
        self.subscribers.last().expect("just pushed")
    }

    /// The `Subscriber` object ManyChat returns (API-CONTRACTS §2.3).
    pub fn subscriber_json(&self, s: &Subscriber) -> Value {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, false);
        let tags: Vec<Value> = s
            .tags
            .iter()
            .filter_map(|id| self.tags.iter().find(|(t, _)| t == id))
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                json!({"id": f.id, "name": f.name, "type": f.kind, "description": f.description,
                       "value": s.fields.get(&f.id).cloned().unwrap_or(Value::Null)})
            })
            .collect();
        json!({
            "id": s.id.to_string(),
            "page_id": self.id.to_string(),
            "user_refs": [],
            "first_name": s.first_name,
            "last_name": s.last_name,
            "name": format!("{} {}", s.first_name, s.last_name).trim(),
            "gender": s.gender,
            "profile_pic": null,
            "locale": null,
            "language": null,
            "timezone": null,
            "live_chat_url": format!("https://app.manychat.com/fb{}/chat/{}", self.id, s.id),
            "last_input_text": null,
            "optin_phone": s.optin_phone,
            "phone": s.phone,
            "optin_email": s.optin_email,
            "email": s.email,
            "subscribed": time(s.subscribed),
            "last_interaction": s.last_interaction.map(time),
            "last_seen": s.last_interaction.map(time),
            "is_followup_enabled": true,
            "ig_username": null,
            "ig_id": null,
            "whatsapp_phone": s.whatsapp_phone,
            "optin_whatsapp": s.whatsapp_phone.is_some(),
            "custom_fields": fields,
            "tags": tags,
        })
    }
}

/// `createSubscriber`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NewSubscriber {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub whatsapp_phone: Option<String>,
    pub email: Option<String>,
    pub gender: Option<String>,
    pub has_opt_in_sms: Option<bool>,
    pub has_opt_in_email: Option<bool>,
    pub consent_phrase: Option<String>,
}

/// A message the page delivered (the ledger's record of what a person received).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivered {
    pub page_id: u64,
    pub subscriber_id: u64,
    /// `content` or `flow`.
    pub kind: &'static str,
    /// The text of each text message (content), or the flow's namespace (flow).
    pub texts: Vec<String>,
    pub message_tag: Option<String>,
    pub at_ms: i64,
}

/// What is wrong with a content v2 body, in ManyChat's words where known (API-CONTRACTS §2.5).
pub(crate) fn content_problems(data: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if data.get("version").and_then(Value::as_str) != Some("v2") {
        problems.push("data.version must be \"v2\"".to_owned());
    }
    let Some(content) = data.get("content").filter(|c| c.is_object()) else {
        problems.push("data.content is required".to_owned());
        return problems;
    };
    let messages = content.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let actions = content.get("actions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let replies = content.get("quick_replies").and_then(Value::as_array).map_or(0, Vec::len);
    if messages.is_empty() && actions.is_empty() {
        problems.push("content.messages is empty".to_owned());
    }
    if messages.len() > 10 {
        problems.push(format!("content.messages has {} messages; at most 10 are allowed", messages.len()));
    }
    if actions.len() > 5 {
        problems.push(format!("content.actions has {} actions; at most 5 are allowed", actions.len()));
    }
    if replies > 11 {
        problems.push(format!("content.quick_replies has {replies}; at most 11 are allowed"));
    }
    for (i, m) in messages.iter().enumerate() {
        match m.get("type").and_then(Value::as_str) {
            Some("text") => match m.get("text").and_then(Value::as_str) {
                Some(t) if !t.trim().is_empty() && t.chars().count() <= 2000 => {}
                Some(t) if !t.trim().is_empty() => problems.push(format!("messages[{i}].text is longer than 2000 characters")),
                _ => problems.push(format!("messages[{i}].text is required")),
            },
            Some("image" | "video" | "audio" | "file") => {
                if m.get("url").and_then(Value::as_str).is_none() {
                    problems.push(format!("messages[{i}].url is required"));
                }
            }
            Some("cards" | "list") => {
                if m.get("elements").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                    problems.push(format!("messages[{i}].elements is required"));
                }
            }
            other => problems.push(format!("messages[{i}].type {other:?} is not supported")),
        }
    }
    for (i, a) in actions.iter().enumerate() {
        match a.get("action").and_then(Value::as_str) {
            Some("add_tag" | "remove_tag") if a.get("tag_name").and_then(Value::as_str).is_some() => {}
            Some("set_field_value" | "unset_field_value") if a.get("field_name").and_then(Value::as_str).is_some() => {}
            Some(action) => problems.push(format!("actions[{i}] ({action}) lacks its tag_name or field_name")),
            None => problems.push(format!("actions[{i}].action is required")),
        }
    }
    problems
}
