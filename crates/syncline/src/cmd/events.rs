//! `syncline events`: the audit trail — what each sink decided for each record (a QuickBooks
//! item created, updated with which fields, unchanged, refused) and each inbox event a flow
//! handled or skipped as stale, newest first, with counts by
//! decision and the write calls' p50/p95/p99 durations (a call's wait for the rate budget
//! included: at QuickBooks' 40 batch calls a minute, that is most of it).

use std::collections::BTreeMap;

use syncline_store::{EventFilter, EventRow, Store};

use crate::cli::EventsArgs;
use crate::exit::{CliError, CliResult, Exit};
use crate::output;

pub async fn run(store: &Store, args: EventsArgs) -> CliResult {
    let since = match &args.since {
        Some(text) => super::run::parse_time("--since", text)?.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => String::new(),
    };
    let filter = EventFilter {
        kind: args.kind.clone().unwrap_or_default(),
        subject: args.product.clone().unwrap_or_default(),
        since,
        limit: args.limit,
    };
    let events = store.find_events(&filter).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
    if args.json {
        output::json_lines(&events);
        return Ok(Exit::Ok);
    }
    if events.is_empty() {
        output::line("no events match");
        return Ok(Exit::Ok);
    }
    let mut table = output::table(&["at", "decision", "record", "detail"]);
    for e in &events {
        table.add_row([e.at.get(..19).unwrap_or(&e.at).replace('T', " "), e.kind.clone(), e.subject.clone(), summary(e)]);
    }
    output::print_table(&table);
    output::line(statistics(&events));
    Ok(Exit::Ok)
}

/// One line of what an entry says: the item and the fields changed, or why it was refused.
fn summary(e: &EventRow) -> String {
    let d = &e.detail;
    if let Some(message) = d["message"].as_str() {
        return message.to_owned();
    }
    if let Some(flow) = d["flow"].as_str() {
        let what = match d["outcome"].as_str() {
            Some(outcome) => format!("→ {outcome}"),
            None => format!("skipped: an event of {} ran already", d["newer_run"].as_str().unwrap_or("later")),
        };
        let event = d["dedupe_key"].as_str().unwrap_or_default();
        return format!("{} {event} {what} (flow {flow})", d["event_type"].as_str().unwrap_or("event"));
    }
    let fields: Vec<String> = d["fields"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v.as_array() {
            Some(change) if change.len() == 2 => format!("{k}: {} → {}", change[0], change[1]),
            _ => format!("{k}: {v}"),
        })
        .collect();
    let item = d["item"].as_str().map(|i| format!("item {i}")).unwrap_or_default();
    [item, fields.join(", ")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ")
}

/// Counts by decision, and the write calls' durations.
fn statistics(events: &[EventRow]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        *counts.entry(e.kind.rsplit('.').next().unwrap_or(&e.kind)).or_default() += 1;
    }
    let counted: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut ms: Vec<u64> = events.iter().filter_map(|e| e.detail["ms"].as_u64()).collect();
    ms.sort_unstable();
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let durations = if ms.is_empty() {
        String::new()
    } else {
        format!(" · write calls (waits for the rate budget included) p50 {} ms, p95 {} ms, p99 {} ms", at(0.5), at(0.95), at(0.99))
    };
    format!("{} events: {}{durations}", events.len(), counted.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, detail: serde_json::Value) -> EventRow {
        EventRow { id: 1, at: "2026-11-30T10:00:00Z".into(), kind: kind.into(), subject: "prod_1".into(), run_id: None, detail }
    }

    #[test]
    fn entries_read_as_what_changed_and_add_up() {
        let updated = row("quickbooks.item.updated", json!({"item": "7", "fields": {"UnitPrice": [20, 25]}, "ms": 40}));
        assert_eq!(summary(&updated), "item 7: UnitPrice: 20 → 25");
        let refused = row("quickbooks.item.dead_letter", json!({"message": "QuickBooks 2050: too long"}));
        assert_eq!(summary(&refused), "QuickBooks 2050: too long");
        let handled = row(
            "flow.handled",
            json!({"flow": "product_changes", "outcome": "updated", "dedupe_key": "stripe:evt_1", "event_type": "product.updated", "flow_ms": 900}),
        );
        assert_eq!(summary(&handled), "product.updated stripe:evt_1 → updated (flow product_changes)");
        let stale = row(
            "flow.skipped_stale",
            json!({"flow": "product_changes", "dedupe_key": "stripe:evt_0", "event_type": "product.updated", "newer_run": "2026-11-30T10:00:01Z"}),
        );
        assert_eq!(
            summary(&stale),
            "product.updated stripe:evt_0 skipped: an event of 2026-11-30T10:00:01Z ran already (flow product_changes)"
        );
        let events = vec![updated, refused, row("quickbooks.item.created", json!({"item": "8", "ms": 10})), handled, stale];
        assert_eq!(
            statistics(&events),
            "5 events: created 1 · dead_letter 1 · handled 1 · skipped_stale 1 · updated 1 · write calls (waits for the rate budget included) p50 40 ms, p95 40 ms, p99 40 ms"
        );
    }
}
