//! The ManyChat emulator (API-CONTRACTS §2): `/fb/page/*`, `/fb/subscriber/*` and
//! `/fb/sending/*` behind `<page_id>:<key>` tokens, with ManyChat's envelopes, per-method rate
//! limits (answered 429), content v2 validation, the 24-hour rule (error 3011), and a ledger of
//! every message delivered.
//!
//! Assumptions where ManyChat documents nothing (flagged in API-CONTRACTS §2.2): a 429 and a
//! 401 carry a `status: error` body; `findBySystemField` answers a miss with
//! `{"status":"success","data":null}`; `add_tag` actions create a tag the page lacks.

mod page;

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};

pub(crate) use page::Page;
pub use page::{Delivered, FieldSeed, PageConfig, SubscriberSeed};

use crate::emulate::{Answer, Api, Headers, emulate};
use crate::faults::Service;
use crate::{Call, Sandbox, SandboxState};
use page::{NewSubscriber, content_problems};

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new().route("/fb/{namespace}/{method}", get(call).post(call))
}

fn success(data: Value) -> Answer {
    (StatusCode::OK, json!({"status": "success", "data": data}))
}

fn done() -> Answer {
    (StatusCode::OK, json!({"status": "success"}))
}

/// A validation error (HTTP 400, `details.messages`).
fn invalid(message: impl Into<String>) -> Answer {
    let message = message.into();
    (StatusCode::BAD_REQUEST, json!({"status": "error", "message": "Validation error", "details": {"messages": [{"message": message}]}}))
}

/// An error with a ManyChat code (HTTP 400).
fn coded(code: u32, message: &str) -> Answer {
    (StatusCode::BAD_REQUEST, json!({"status": "error", "message": message, "code": code}))
}

/// Query parameters and JSON body, merged: GET methods take the one, POST methods the other.
struct Params(serde_json::Map<String, Value>);

impl Params {
    fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// An integer id, sent as a number or a numeric string.
    fn id(&self, name: &str) -> Result<u64, Answer> {
        self.text(name).and_then(|t| t.parse().ok()).ok_or_else(|| invalid(format!("{name} is required and must be an integer")))
    }
}

/// ManyChat's side of the request pipeline: pages by `<page_id>:<key>` token, `status: error`
/// envelopes, and its per-method limits (a request spends its method's).
struct ManyChat;

impl Api for ManyChat {
    const SERVICE: Service = Service::ManyChat;
    type Account = Page;
    /// The method's name (`sendContent`, `getInfo@page`…).
    type Limit = String;

    fn account<'s>(state: &'s mut SandboxState, token: &str) -> Option<&'s mut Page> {
        state.pages.iter_mut().find(|p| p.config.token == token)
    }

    fn unauthorized() -> Answer {
        (StatusCode::UNAUTHORIZED, json!({"status": "error", "message": "Wrong format token"}))
    }

    fn throttled(_: &String, retry_after: Option<u64>) -> (Answer, Headers) {
        (rate_limited(), retry_after.map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default())
    }

    fn failed(status: StatusCode, applied: bool) -> Answer {
        let message = if applied {
            "Bad gateway (injected by the sandbox after applying the request)"
        } else {
            "Internal server error (injected by the sandbox)"
        };
        (status, json!({"status": "error", "message": message}))
    }

    fn spend(page: &mut Page, method: &String, now: Instant) -> Result<(), Answer> {
        if page.spend(method, now) { Ok(()) } else { Err(rate_limited()) }
    }

    fn budget_headers(_: &Page, _: &String) -> Headers {
        Vec::new()
    }

    fn stamp(_: &mut Value) -> Headers {
        Vec::new()
    }
}

async fn call(
    State(sandbox): State<Sandbox>,
    request: Call,
    Path((namespace, method)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut params: serde_json::Map<String, Value> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let parsed_body = if body.is_empty() { Ok(()) } else { parse_into(&body, &mut params) };
    let limit = if namespace == "page" && method == "getInfo" { "getInfo@page".to_owned() } else { method.clone() };
    emulate::<ManyChat>(&sandbox, request, 0, limit, |page, applied| match parsed_body {
        Err(answer) => answer,
        Ok(()) => handle(page, &namespace, &method, &Params(params), &mut applied.messages),
    })
    .await
}

fn parse_into(body: &[u8], params: &mut serde_json::Map<String, Value>) -> Result<(), Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => {
            params.extend(fields);
            Ok(())
        }
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(e) => Err(invalid(format!("the body is not valid JSON: {e}"))),
    }
}

fn rate_limited() -> Answer {
    (StatusCode::TOO_MANY_REQUESTS, json!({"status": "error", "message": "Too many requests. Please, try again later"}))
}

fn handle(page: &mut Page, namespace: &str, method: &str, p: &Params, delivered: &mut Vec<Delivered>) -> Answer {
    let result = match (namespace, method) {
        ("page", "getInfo") => Ok(success(json!({"id": page.id, "name": page.config.name, "category": "Sandbox", "is_pro": true}))),
        ("page", "getTags") => Ok(success(page.tags.iter().map(|(id, name)| json!({"id": id, "name": name})).collect())),
        ("page", "createTag") => create_tag(page, p),
        ("page", "getCustomFields") => Ok(success(
            page.fields.iter().map(|f| json!({"id": f.id, "name": f.name, "type": f.kind, "description": f.description})).collect(),
        )),
        ("page", "createCustomField") => create_field(page, p),
        ("subscriber", "getInfo") => p.id("subscriber_id").and_then(|id| {
            let s = page.subscribers.iter().find(|s| s.id == id).ok_or_else(|| invalid("Subscriber does not exist"))?;
            Ok(success(page.subscriber_json(s)))
        }),
        ("subscriber", "findBySystemField") => Ok(find(page, p)),
        ("subscriber", "createSubscriber") => create_subscriber(page, p),
        ("subscriber", "addTag" | "addTagByName" | "removeTag" | "removeTagByName") => tag(page, method, p),
        ("subscriber", "setCustomField" | "setCustomFieldByName") => set_fields(page, p, &[Value::Object(p.0.clone())]).map(|()| done()),
        ("subscriber", "setCustomFields") => match p.0.get("fields").and_then(Value::as_array) {
            Some(fields) if fields.len() > 20 => Err(invalid(format!("fields has {} items; at most 20 are allowed", fields.len()))),
            Some(fields) => set_fields(page, p, &fields.clone()).map(|()| done()),
            None => Err(invalid("fields is required")),
        },
        ("sending", "sendContent") => send_content(page, p, delivered),
        ("sending", "sendFlow") => send_flow(page, p, delivered),
        _ => return (StatusCode::NOT_FOUND, json!({"status": "error", "message": format!("/fb/{namespace}/{method} is not emulated")})),
    };
    result.unwrap_or_else(|answer| answer)
}

fn create_tag(page: &mut Page, p: &Params) -> Result<Answer, Answer> {
    let name = p.text("name").filter(|n| !n.trim().is_empty()).ok_or_else(|| invalid("name is required"))?;
    if page.tags.iter().any(|(_, n)| *n == name) {
        return Err(invalid(format!("Tag with name \"{name}\" already exists")));
    }
    let id = page.tag_id(&name);
    Ok(success(json!({"tag": {"id": id, "name": name}})))
}

fn create_field(page: &mut Page, p: &Params) -> Result<Answer, Answer> {
    let caption = p.text("caption").unwrap_or_default();
    let kind = p.text("type").unwrap_or_default();
    let description = p.text("description").unwrap_or_default();
    let id = page.create_field(&caption, &kind, &description).map_err(invalid)?;
    Ok(success(json!({"field": {"id": id, "name": caption, "type": kind, "description": description}})))
}

/// `findBySystemField`: exactly one of `email` or `phone`; a phone matches the SMS or the
/// WhatsApp number.
fn find(page: &Page, p: &Params) -> Answer {
    let found = match (p.text("email"), p.text("phone")) {
        (Some(email), None) => page.subscribers.iter().find(|s| s.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&email))),
        (None, Some(phone)) => page
            .subscribers
            .iter()
            .find(|s| s.phone.as_deref() == Some(phone.as_str()) || s.whatsapp_phone.as_deref() == Some(phone.as_str())),
        _ => return invalid("pass exactly one of email or phone"),
    };
    success(found.map(|s| page.subscriber_json(s)).unwrap_or(Value::Null))
}

fn create_subscriber(page: &mut Page, p: &Params) -> Result<Answer, Answer> {
    let fields: NewSubscriber = serde_json::from_value(Value::Object(p.0.clone())).map_err(|e| invalid(e.to_string()))?;
    if fields.phone.is_none() && fields.whatsapp_phone.is_none() && fields.email.is_none() {
        return Err(invalid("One of phone, whatsapp_phone or email is required"));
    }
    if fields.has_opt_in_sms == Some(true) && fields.consent_phrase.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(invalid("consent_phrase is required when has_opt_in_sms is true"));
    }
    for phone in [&fields.phone, &fields.whatsapp_phone].into_iter().flatten() {
        if !phone.starts_with('+') || phone.len() < 8 || !phone[1..].chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!("{phone:?} is not a phone number in international format (+…)")));
        }
    }
    let taken = |s: &page::Subscriber| {
        fields.email.as_ref().is_some_and(|e| s.email.as_ref().is_some_and(|x| x.eq_ignore_ascii_case(e)))
            || fields.phone.is_some() && s.phone == fields.phone
            || fields.whatsapp_phone.is_some() && s.whatsapp_phone == fields.whatsapp_phone
    };
    if page.subscribers.iter().any(taken) {
        return Err(invalid("Subscriber with this phone or email already exists"));
    }
    let subscriber = page.create_subscriber(fields).clone();
    Ok(success(page.subscriber_json(&subscriber)))
}

fn tag(page: &mut Page, method: &str, p: &Params) -> Result<Answer, Answer> {
    let subscriber = p.id("subscriber_id")?;
    let tag = if method.ends_with("ByName") {
        let name = p.text("tag_name").ok_or_else(|| invalid("tag_name is required"))?;
        page.tags.iter().find(|(_, n)| *n == name).map(|(id, _)| *id).ok_or_else(|| invalid(format!("Tag \"{name}\" not found")))?
    } else {
        let id = p.id("tag_id")?;
        page.tags.iter().find(|(t, _)| *t == id).map(|(id, _)| *id).ok_or_else(|| invalid(format!("Tag {id} not found")))?
    };
    let s = page.subscriber(subscriber).ok_or_else(|| invalid("Subscriber does not exist"))?;
    if method.starts_with("add") {
        if !s.tags.contains(&tag) {
            s.tags.push(tag);
        }
    } else {
        s.tags.retain(|t| *t != tag);
    }
    Ok(done())
}

/// Sets `{field_id | field_name, field_value}` items, checking each value against the field's
/// type; nothing is set when any item is wrong.
fn set_fields(page: &mut Page, p: &Params, items: &[Value]) -> Result<(), Answer> {
    let subscriber = p.id("subscriber_id")?;
    let mut values = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = item.get("field_id").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        let name = item.get("field_name").and_then(Value::as_str);
        let field = page.field(id, name).ok_or_else(|| {
            invalid(format!("field {i}: custom field {} not found", name.map_or_else(|| format!("{id:?}"), str::to_owned)))
        })?;
        let value = item.get("field_value").cloned().unwrap_or(Value::Null);
        let fits = match (field.kind.as_str(), &value) {
            (_, Value::Null) => true,
            ("text", Value::String(_)) | ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => true,
            ("date", Value::String(s)) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            ("datetime", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            _ => false,
        };
        if !fits {
            return Err(invalid(format!("field {:?} is {}; {value} does not fit", field.name, field.kind)));
        }
        values.push((field.id, value));
    }
    let s = page.subscriber(subscriber).ok_or_else(|| invalid("Subscriber does not exist"))?;
    s.fields.extend(values);
    Ok(())
}

fn send_content(page: &mut Page, p: &Params, delivered: &mut Vec<Delivered>) -> Result<Answer, Answer> {
    let subscriber = p.id("subscriber_id")?;
    let data = p.0.get("data").cloned().unwrap_or(Value::Null);
    let problems = content_problems(&data);
    if !problems.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "message": "Validation error",
                   "details": {"messages": problems.iter().map(|m| json!({"message": m})).collect::<Vec<_>>()}}),
        ));
    }
    let message_tag = p.text("message_tag");
    let s = page.subscribers.iter().find(|s| s.id == subscriber).ok_or_else(|| invalid("Subscriber does not exist"))?;
    let in_window = s.last_interaction.is_some_and(|t| Utc::now() - t < chrono::Duration::hours(24));
    if !in_window && message_tag.is_none() {
        return Err(coded(3011, "Subscriber was last active more than 24 hours ago: sending content requires a message tag"));
    }
    // actions run with the message: a tag named here marks the subscriber in the same call
    for action in data["content"]["actions"].as_array().cloned().unwrap_or_default() {
        let kind = action["action"].as_str().unwrap_or_default();
        if let Some(tag) = action["tag_name"].as_str() {
            let tag = page.tag_id(tag);
            let s = page.subscriber(subscriber).expect("found above");
            match kind {
                "add_tag" if !s.tags.contains(&tag) => s.tags.push(tag),
                "remove_tag" => s.tags.retain(|t| *t != tag),
                _ => {}
            }
        } else if let Some(field) = action["field_name"].as_str() {
            let value = if kind == "set_field_value" { action.get("value").cloned().unwrap_or(Value::Null) } else { Value::Null };
            let item = json!({"field_name": field, "field_value": value});
            let params = Params(serde_json::Map::from_iter([("subscriber_id".to_owned(), json!(subscriber))]));
            set_fields(page, &params, &[item])?;
        }
    }
    let texts = data["content"]["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["text"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    delivered.push(Delivered {
        page_id: page.id,
        subscriber_id: subscriber,
        kind: "content",
        texts,
        message_tag,
        at_ms: Utc::now().timestamp_millis(),
    });
    Ok(done())
}

fn send_flow(page: &mut Page, p: &Params, delivered: &mut Vec<Delivered>) -> Result<Answer, Answer> {
    let subscriber = p.id("subscriber_id")?;
    let flow = p.text("flow_ns").filter(|f| !f.is_empty()).ok_or_else(|| invalid("flow_ns is required"))?;
    if !page.subscribers.iter().any(|s| s.id == subscriber) {
        return Err(invalid("Subscriber does not exist"));
    }
    if !page.spend_flow(subscriber, Instant::now()) {
        return Err(rate_limited());
    }
    delivered.push(Delivered {
        page_id: page.id,
        subscriber_id: subscriber,
        kind: "flow",
        texts: vec![flow],
        message_tag: None,
        at_ms: Utc::now().timestamp_millis(),
    });
    Ok(done())
}
