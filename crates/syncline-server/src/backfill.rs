//! `syncline backfill <flow> --since <time>`: after downtime, finds the HubSpot objects created
//! in a time range (the events the flow's `*.creation` trigger would have seen) and puts their
//! events in the inbox under the same dedupe keys webhooks use, so whatever was missed runs once
//! and whatever was already received or backfilled is not stored again.
//!
//! HubSpot's search answers 5 requests a second (paced by the connector's search policy), at
//! most 200 objects a page and 10,000 per query; past that, a new query starts at the last
//! creation time seen. Each event carries the properties the flow's `hubspot.get` would fetch,
//! so running it costs no further HubSpot call.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use syncline_connectors::hubspot::HubSpotApi;
use syncline_store::{NewEvent, Store};

use crate::events::creation_key;
use crate::flow::Flow;

/// Objects per search page (HubSpot's maximum).
const PAGE: usize = 200;
/// Results one search query can page through (HubSpot's maximum).
const MAX_RESULTS: usize = 10_000;

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
    hubspot: &HubSpotApi,
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    dry_run: bool,
    mut progress: impl FnMut(&Report),
) -> Result<Report, BackfillError> {
    let (object, event_type) = target(flow)?;
    let failed = |what: &str, e: &dyn std::fmt::Display| BackfillError(format!("backfill of flow {}: {what}: {e}", flow.name));
    let portal = hubspot.account_id().await.map_err(|e| failed("reading the HubSpot account id", &e))?.to_string();
    let mut wanted: Vec<String> = flow.hubspot_get().filter(|(o, _)| *o == object).map(|(_, p)| p.to_vec()).unwrap_or_default();
    wanted.push("createdate".into());
    let mut report = Report::default();
    // objects already taken, so a new query window starting at the last creation time seen does
    // not count its first objects twice
    let mut seen: HashSet<String> = HashSet::new();
    let mut from = since;
    loop {
        let mut after: Option<String> = None;
        let mut paged = 0;
        let mut last_created = from;
        loop {
            let mut request = json!({
                "filterGroups": [{"filters": [
                    {"propertyName": "createdate", "operator": "GTE", "value": from.timestamp_millis().to_string()},
                    {"propertyName": "createdate", "operator": "LT", "value": until.timestamp_millis().to_string()},
                ]}],
                "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
                "properties": wanted,
                "limit": PAGE,
            });
            if let Some(after) = &after {
                request["after"] = json!(after);
            }
            let page = hubspot.search(&object, &request).await.map_err(|e| failed("searching HubSpot", &e))?;
            report.searches += 1;
            let mut events = Vec::new();
            for found in &page.results {
                let created = found.properties.get("createdate").cloned().flatten().and_then(|c| c.parse::<DateTime<Utc>>().ok());
                let Some(created) = created else {
                    return Err(BackfillError(format!("{object} {}: createdate missing or not a time", found.id)));
                };
                last_created = last_created.max(created);
                if !seen.insert(found.id.clone()) {
                    continue;
                }
                report.found += 1;
                // every wanted property present (null when unset), so the flow skips its fetch
                let properties: Map<String, Value> = wanted
                    .iter()
                    .map(|name| (name.clone(), found.properties.get(name).cloned().flatten().map_or(Value::Null, Value::String)))
                    .collect();
                let payload = json!({
                    "portalId": portal.parse::<u64>().unwrap_or_default(),
                    "subscriptionType": event_type,
                    "objectId": found.id.parse::<u64>().map_or(Value::String(found.id.clone()), Value::from),
                    "occurredAt": created.timestamp_millis(),
                    "backfilled": true,
                    "properties": properties,
                });
                events.push(NewEvent {
                    source: flow.source.clone(),
                    object_key: Some(format!("{portal}:{}", found.id)),
                    dedupe_key: creation_key(&portal, &event_type, &found.id),
                    event_type: event_type.clone(),
                    payload: payload.to_string(),
                    occurred_at: Some(created),
                });
            }
            if !dry_run && !events.is_empty() {
                let accepted = store.inbox_accept(&events).await.map_err(|e| failed("storing events in the inbox", &e))?;
                report.enqueued += accepted.stored as u64;
                report.already += accepted.duplicates as u64;
            }
            progress(&report);
            let Some(next) = page.next_after() else { return Ok(report) };
            after = Some(next.to_owned());
            paged += PAGE;
            if paged + PAGE > MAX_RESULTS {
                break;
            }
        }
        // 10,000 results paged: the next query starts at the last creation time seen
        if last_created == from {
            return Err(BackfillError(format!(
                "more than {MAX_RESULTS} {object} were created at {from}; HubSpot's search cannot page past them"
            )));
        }
        from = last_created;
    }
}
