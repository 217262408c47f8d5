//! Turning a verified delivery into inbox events, each with its dedupe key.
//!
//! HubSpot posts a JSON array of up to 100 events; its `eventId` is not unique on its own, so
//! the key joins it with the portal, subscription type, object, property and `occurredAt`
//! (`attemptNumber` is left out: a retry is the same event). An object is created once, so a
//! `*.creation` event's key is the portal, type and object alone: `syncline backfill`, which
//! finds created objects by search and never sees an `eventId`, makes the same key
//! (`creation_key`). Stripe posts one event whose `id` is unique.

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

/// HubSpot sends at most this many events in one delivery (API-CONTRACTS §1.9).
pub const MAX_HUBSPOT_EVENTS: usize = 100;

/// An id that must be a positive integer fitting an i64 (HubSpot's `objectId`, `portalId`).
fn positive_id(event: &Value, i: usize, name: &str) -> Result<String, BodyError> {
    match event.get(name) {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v > 0) => Ok(n.to_string()),
        Some(Value::String(s)) if s.parse::<i64>().is_ok_and(|v| v > 0) => Ok(s.clone()),
        Some(other) => Err(BodyError(format!("event {i}: {name} {other} is not a positive integer id"))),
        None => Err(BodyError(format!("event {i}: missing or empty field {name}"))),
    }
}

/// The events of a HubSpot delivery (a JSON array of at most 100 event objects).
pub fn hubspot(source: &str, body: &[u8]) -> Result<Vec<NewEvent>, BodyError> {
    let Value::Array(items) = parse(body)? else { return Err(BodyError("a HubSpot delivery is a JSON array of events".into())) };
    if items.len() > MAX_HUBSPOT_EVENTS {
        return Err(BodyError(format!("{} events in one delivery; HubSpot sends at most {MAX_HUBSPOT_EVENTS}", items.len())));
    }
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
            let (portal, object) = (positive_id(event, i, "portalId")?, positive_id(event, i, "objectId")?);
            let object_key = Some(format!("{portal}:{object}"));
            let dedupe_key = match kind.ends_with(".creation") {
                true => creation_key(&portal, &kind, &object),
                false => format!("hubspot:{}", [portal, kind.clone(), object, property, field("eventId")?, occurred].join(":")),
            };
            Ok(NewEvent {
                source: source.to_owned(),
                object_key,
                dedupe_key,
                event_type: kind,
                payload: event.to_string(),
                occurred_at: Some(occurred_at),
                trace_parent: None,
            })
        })
        .collect()
}

/// The dedupe key of the event that announces `object`'s creation in `portal` (`kind` is
/// `contact.creation` and the like).
pub fn creation_key(portal: &str, kind: &str, object: &str) -> String {
    format!("hubspot:{portal}:{kind}:{object}")
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
        // the object it is about, so one object's events never run at once
        object_key: stripe_object(&event),
        dedupe_key: format!("stripe:{id}"),
        event_type: field("type")?,
        payload: event.to_string(),
        occurred_at,
        trace_parent: None,
    }])
}

/// The object a Stripe event is about: its `data.object`, except that a price's events are
/// about its product (a product's item carries its default price), so one product's product
/// and price events run in order, one at a time.
pub fn stripe_object(event: &Value) -> Option<String> {
    let object = event.pointer("/data/object")?;
    syncline_connectors::stripe::product_of(object).or_else(|| object["id"].as_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_is_keyed_by_its_object_and_a_change_by_its_event() {
        let body = br#"[
            {"eventId": 1, "portalId": 62515, "occurredAt": 1764000000000, "subscriptionType": "contact.creation", "objectId": 7, "attemptNumber": 0},
            {"eventId": 9, "portalId": 62515, "occurredAt": 1764000000500, "subscriptionType": "contact.creation", "objectId": 7, "attemptNumber": 3},
            {"eventId": 2, "portalId": 62515, "occurredAt": 1764000001000, "subscriptionType": "contact.propertyChange", "objectId": 7,
             "propertyName": "phone", "propertyValue": "8888"}
        ]"#;
        let keys: Vec<String> = hubspot("hubspot", body).unwrap().into_iter().map(|e| e.dedupe_key).collect();
        assert_eq!(keys[0], creation_key("62515", "contact.creation", "7"));
        assert_eq!(keys[0], keys[1], "one object is created once, whatever eventId HubSpot gives the event");
        assert_eq!(keys[2], "hubspot:62515:contact.propertyChange:7:phone:2:1764000001000");
    }

    #[test]
    fn a_prices_events_are_about_its_product() {
        let price = br#"{"id": "evt_1", "type": "price.updated", "created": 1764000000,
            "data": {"object": {"id": "price_9", "object": "price", "product": "prod_7"}}}"#;
        let product = br#"{"id": "evt_2", "type": "product.updated", "created": 1764000001,
            "data": {"object": {"id": "prod_7", "object": "product"}}}"#;
        let keys: Vec<Option<String>> =
            [&price[..], &product[..]].iter().map(|b| stripe("stripe", b).unwrap()[0].object_key.clone()).collect();
        assert_eq!(keys, vec![Some("prod_7".to_owned()), Some("prod_7".to_owned())]);
        assert_eq!(stripe("stripe", price).unwrap()[0].dedupe_key, "stripe:evt_1");
    }

    #[test]
    fn ids_are_positive_integers_and_deliveries_hold_at_most_100() {
        let event = |object: &str| {
            format!(
                r#"{{"eventId": 1, "portalId": 62515, "occurredAt": 1764000000000, "subscriptionType": "contact.creation", "objectId": {object}}}"#
            )
        };
        for bad in ["1.5", "-5", "0", "1180591620717411303424", "\"seven\"", "null", "true"] {
            let body = format!("[{}]", event(bad));
            let error = hubspot("hubspot", body.as_bytes()).unwrap_err().0;
            assert!(error.contains("objectId") && error.contains("event 0"), "{bad}: {error}");
        }
        assert!(hubspot("hubspot", format!("[{}]", event("\"42\"")).as_bytes()).is_ok(), "a numeric string is an id");
        let hundred = vec![event("7"); 100].join(",");
        assert_eq!(hubspot("hubspot", format!("[{hundred}]").as_bytes()).unwrap().len(), 100);
        let too_many = vec![event("7"); 101].join(",");
        let error = hubspot("hubspot", format!("[{too_many}]").as_bytes()).unwrap_err().0;
        assert!(error.contains("101 events") && error.contains("at most 100"), "{error}");
    }
}
