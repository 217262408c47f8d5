//! `syncline runs`: sync history — pipeline runs, replays, and each `serve`'s flow work.

use crate::cli::RunsArgs;
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use syncline_store::Store;

pub async fn run(store: &Store, args: RunsArgs) -> CliResult {
    let runs = store.runs(args.pipeline.as_deref(), args.limit).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
    if args.json {
        output::json_lines(&runs);
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        output::line("no runs yet");
        return Ok(Exit::Ok);
    }
    let mut table =
        output::table(&["pipeline", "mode", "started", "took", "read", "created", "updated", "unchanged", "rejected", "failed", "status"]);
    for r in &runs {
        table.add_row([
            r.pipeline.clone(),
            r.mode.clone(),
            r.started_at.get(..19).unwrap_or(&r.started_at).replace('T', " "),
            duration(&r.started_at, r.finished_at.as_deref()),
            r.read_count.to_string(),
            r.created_count.to_string(),
            r.updated_count.to_string(),
            r.unchanged_count.to_string(),
            r.rejected_count.to_string(),
            r.failed_count.to_string(),
            r.status.clone(),
        ]);
    }
    output::print_table(&table);
    for r in runs.iter().filter(|r| r.audit.is_some()) {
        let started = r.started_at.get(..19).unwrap_or(&r.started_at).replace('T', " ");
        output::line(format!("{} {started}: {}", r.pipeline, r.audit.as_deref().unwrap_or_default()));
    }
    Ok(Exit::Ok)
}

fn duration(started: &str, finished: Option<&str>) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (parse(started), finished.and_then(parse)) {
        (Some(s), Some(f)) => format!("{:.1}s", (f - s).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    }
}
