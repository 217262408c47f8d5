//! `syncline backfill <flow> --since <time>`: after downtime, finds the HubSpot objects created
//! in a time range (the events the flow's `*.creation` trigger would have seen) and puts their
//! events in the inbox under the same dedupe keys webhooks use, so whatever was missed runs once
//! and whatever was already received or backfilled is not stored again.
//!
//! The objects are read by the HubSpot connector's source, in (creation time, id) order within
//! the range (its search pacing and paging are the connector's). Each event carries the
//! properties the flow's `hubspot.get` would fetch, so running it costs no further HubSpot call.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use syncline_connectors::hubspot::{HubSpotApi, HubSpotSource, SourceStream, time_properties};
use syncline_core::{Record, Source};
use syncline_store::{NewEvent, Store};

use crate::events::creation_key;
use crate::flow::Flow;

/// What a backfill found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Objects created in the range.
    pub found: u64,
    /// Events stored in the inbox (new to it).
    pub enqueued: u64,
    /// Events the inbox already had (received by webhook, or backfilled before).
    pub already: u64,
    /// Search requests made.
    pub searches: u64,
}

/// Why a flow cannot be backfilled, or the search or store failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackfillError(pub String);

/// The object type and event type a flow's trigger backfills, or why it cannot.
pub fn target(flow: &Flow) -> Result<(String, String), BackfillError> {
    let creation = flow.events.iter().find(|e| e.ends_with(".creation"));
    let Some(event_type) = creation else {
        let events = if flow.events.is_empty() { "every event".to_owned() } else { flow.events.join(", ") };
        return Err(BackfillError(format!(
            "flow {} is triggered by {events}; backfill finds objects created in a time range, so it serves flows triggered by \
             a *.creation event (HubSpot's search does not return past property changes or deletions)",
            flow.name
        )));
    };
    let singular = event_type.trim_end_matches(".creation");
    let object = match singular {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        "ticket" => "tickets",
        "product" => "products",
        "line_item" => "line_items",
        other => return Err(BackfillError(format!("flow {}: cannot backfill {other} objects (event {event_type})", flow.name))),
    };
    Ok((object.to_owned(), event_type.clone()))
}

/// Enqueues the creation events of the objects created in `[since, until)` (or counts them
/// only, with `dry_run`), calling `progress` after each page.
pub async fn backfill(
    flow: &Flow,
    hubspot: Arc<HubSpotApi>,
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    dry_run: bool,
    mut progress: impl FnMut(&Report),
) -> Result<Report, BackfillError> {
    let (object, event_type) = target(flow)?;
    let failed = |what: &str, e: &dyn std::fmt::Display| BackfillError(format!("backfill of flow {}: {what}: {e}", flow.name));
    let portal = hubspot.account_id().await.map_err(|e| failed("reading the HubSpot account id", &e))?;
    let (created, _) = time_properties(&object);
    let mut wanted: Vec<String> = flow.hubspot_get().filter(|(o, _)| *o == object).map(|(_, p)| p.to_vec()).unwrap_or_default();
    wanted.push(created.to_owned());
    let stream = SourceStream::new(&object, &wanted);
    let mut source = HubSpotSource::created_between(hubspot, stream, since, until);
    let mut report = Report::default();
    let mut cursor = None;
    loop {
        let page = source.next_page(cursor.as_ref()).await.map_err(|e| failed("searching HubSpot", &e));
        report.searches = source.searches;
        let Some(page) = page? else { return Ok(report) };
        report.found += page.records.len() as u64;
        let events: Vec<NewEvent> = page
            .records
            .iter()
            .map(|record| creation_event(flow, portal, &event_type, &wanted, created, record))
            .collect::<Result<_, _>>()?;
        if !dry_run {
            let accepted = store.inbox_accept(&events).await.map_err(|e| failed("storing events in the inbox", &e))?;
            report.enqueued += accepted.stored as u64;
            report.already += accepted.duplicates as u64;
        }
        progress(&report);
        cursor = page.cursor;
    }
}

/// The `*.creation` event a webhook would have delivered for this object, with every wanted
/// property present (null when unset), so the flow skips its fetch.
fn creation_event(
    flow: &Flow,
    portal: u64,
    event_type: &str,
    wanted: &[String],
    created: &str,
    record: &Record,
) -> Result<NewEvent, BackfillError> {
    let id = &record.key;
    let at = record.get(created).and_then(|v| v.as_text()).and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let Some(at) = at else {
        return Err(BackfillError(format!("object {id}: {created} missing or not a time")));
    };
    let properties: Map<String, Value> =
        wanted.iter().map(|name| (name.clone(), record.get(name).map_or(Value::Null, syncline_core::Value::to_json))).collect();
    let payload = json!({
        "portalId": portal,
        "subscriptionType": event_type,
        "objectId": id.parse::<u64>().map_or(Value::String(id.clone()), Value::from),
        "occurredAt": at.timestamp_millis(),
        "backfilled": true,
        "properties": properties,
    });
    let portal = portal.to_string();
    Ok(NewEvent {
        source: flow.source.clone(),
        object_key: Some(format!("{portal}:{id}")),
        dedupe_key: creation_key(&portal, event_type, id),
        event_type: event_type.to_owned(),
        payload: payload.to_string(),
        occurred_at: Some(at),
        trace_parent: None,
    })
}
