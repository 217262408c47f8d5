//! `syncline inbox`: what the webhook inbox holds — by source and status, event by event, or
//! one event with its payload.

use crate::cli::{InboxArgs, InboxCommand, InboxStatus};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use syncline_store::Store;

pub async fn run(store: &Store, args: InboxArgs) -> CliResult {
    let failed = |e: syncline_store::StoreError| CliError::failed(format!("state store: {e}"));
    match args.command {
        None => {
            let depth = store.inbox_depth().await.map_err(failed)?;
            if depth.is_empty() {
                output::line("the inbox is empty");
                return Ok(Exit::Ok);
            }
            let mut table = output::table(&["source", "status", "events", "oldest received"]);
            for row in depth {
                table.add_row([row.source, row.status, row.events.to_string(), row.oldest_received_at]);
            }
            output::print_table(&table);
        }
        Some(InboxCommand::List { source, status, limit, json }) => {
            let status = match status {
                InboxStatus::Pending => Some("pending"),
                InboxStatus::Running => Some("running"),
                InboxStatus::Done => Some("done"),
                InboxStatus::Dead => Some("dead"),
                InboxStatus::All => None,
            };
            let rows = store.inbox_events(source.as_deref(), status, None, limit).await.map_err(failed)?;
            if json {
                output::json_lines(&rows);
                return Ok(Exit::Ok);
            }
            if rows.is_empty() {
                output::line("no inbox events match");
                return Ok(Exit::Ok);
            }
            let mut table = output::table(&["id", "source", "event", "status", "tries", "received", "last error"]);
            for r in &rows {
                table.add_row([
                    r.id.to_string(),
                    r.source.clone(),
                    r.event_type.clone(),
                    r.status.clone(),
                    r.attempts.to_string(),
                    r.received_at.get(..19).unwrap_or(&r.received_at).replace('T', " "),
                    r.last_error.as_deref().unwrap_or("").chars().take(60).collect(),
                ]);
            }
            output::print_table(&table);
        }
        Some(InboxCommand::Show { id }) => {
            let row = store.inbox_event(id).await.map_err(|e| match e {
                syncline_store::StoreError::NotFound(why) => CliError::usage(why),
                other => failed(other),
            })?;
            output::line(serde_json::to_string_pretty(&row).expect("json"));
        }
    }
    Ok(Exit::Ok)
}
