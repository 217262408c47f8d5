//! Turning a verified delivery into inbox events, each with its dedupe key.
//!
//! HubSpot posts a JSON array of up to 100 events; its `eventId` is not unique on its own, so
//! the key joins it with the portal, subscription type, object, property and `occurredAt`
//! (`attemptNumber` is left out: a retry is the same event). Stripe posts one event whose `id`
//! is unique.

use chrono::{DateTime, Utc};
use serde_json::Value;
use syncline_store::NewEvent;

/// Why a delivery's body cannot be taken, naming the event and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

fn parse(body: &[u8]) -> Result<Value, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError(format!("body is not UTF-8 ({e})")))?;
    serde_json::from_str(text).map_err(|e| BodyError(format!("body is not JSON: {e} (line {}, column {})", e.line(), e.column())))
}

/// A field as text (HubSpot sends ids as numbers, Stripe as strings).
fn text(event: &Value, field: &str) -> Option<String> {
    match event.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The events of a HubSpot delivery (a JSON array of event objects).
pub fn hubspot(source: &str, body: &[u8]) -> Result<Vec<NewEvent>, BodyError> {
    let Value::Array(items) = parse(body)? else { return Err(BodyError("a HubSpot delivery is a JSON array of events".into())) };
    items
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let field = |name: &str| text(event, name).ok_or_else(|| BodyError(format!("event {i}: missing or empty field {name}")));
            let kind = field("subscriptionType")?;
            let occurred = field("occurredAt")?;
            let occurred_at = occurred
                .parse()
                .ok()
                .and_then(millis)
                .ok_or_else(|| BodyError(format!("event {i}: occurredAt {occurred} is not epoch milliseconds")))?;
            let property = text(event, "propertyName").unwrap_or_default();
            let key = [field("portalId")?, kind.clone(), field("objectId")?, property, field("eventId")?, occurred].join(":");
            Ok(NewEvent {
                source: source.to_owned(),
                dedupe_key: format!("hubspot:{key}"),
                event_type: kind,
                payload: event.to_string(),
                occurred_at: Some(occurred_at),
            })
        })
        .collect()
}

/// The event of a Stripe delivery (one event object).
pub fn stripe(source: &str, body: &[u8]) -> Result<Vec<NewEvent>, BodyError> {
    let event = parse(body)?;
    let field = |name: &str| text(&event, name).ok_or_else(|| BodyError(format!("missing or empty field {name}")));
    if event.get("object").and_then(Value::as_str) == Some("v2.core.event") {
        return Err(BodyError("thin events (v2.core.event) are not supported; subscribe with a snapshot event destination".into()));
    }
    let id = field("id")?;
    let occurred_at = event.get("created").and_then(Value::as_i64).and_then(|s| DateTime::from_timestamp(s, 0));
    Ok(vec![NewEvent {
        source: source.to_owned(),
        dedupe_key: format!("stripe:{id}"),
        event_type: field("type")?,
        payload: event.to_string(),
        occurred_at,
    }])
}
