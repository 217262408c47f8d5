//! `syncline dlq`: list, summarize, show, replay and ignore dead letters.

use crate::cli::DlqCommand;
use crate::cmd::Session;
use crate::config::{Config, Pipeline};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use crate::pipeline;
use crate::progress::{Reporter, RunRow, summary};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use syncline_connectors::AnySource;
use syncline_core::runner::{RunError, RunMode, Scope};
use syncline_core::{Input, RunParts, RunStatus, execute};
use syncline_store::{DeadLetterFilter, Store};

/// The commands that only read or mark the store.
pub async fn run(store: &Store, command: DlqCommand, session: &Session) -> CliResult {
    match command {
        DlqCommand::List { pipeline, status, limit, json } => {
            let filter =
                DeadLetterFilter { pipeline, status: status.stored().map(str::to_owned), limit: Some(limit), ..Default::default() };
            list(store, &filter, json, session).await
        }
        DlqCommand::Summary { pipeline, json } => summarize(store, pipeline.as_deref(), json, session).await,
        DlqCommand::Show { id } => {
            let row = store.dead_letter(id).await.map_err(|e| match e {
                syncline_store::StoreError::NotFound(why) => CliError::usage(why),
                other => failed(other),
            })?;
            output::line(serde_json::to_string_pretty(&row).expect("json"));
            Ok(Exit::Ok)
        }
        DlqCommand::Ignore { ids } => ignore(store, &ids, session).await,
        DlqCommand::Replay { .. } => unreachable!("replay needs the whole config"),
    }
}

fn failed(e: syncline_store::StoreError) -> CliError {
    CliError::failed(format!("state store: {e}"))
}

/// `dlq list`: a table (or JSON lines) of the dead letters that match.
async fn list(store: &Store, filter: &DeadLetterFilter, json: bool, session: &Session) -> CliResult {
    let rows = store.dead_letters(filter).await.map_err(failed)?;
    if json {
        output::json_lines(&rows);
        return Ok(Exit::Ok);
    }
    let mut table = output::table(&["id", "pipeline", "key", "class", "field", "rule", "reason", "tries", "status", "last seen"]);
    for d in &rows {
        table.add_row([
            d.id.to_string(),
            d.pipeline.clone(),
            d.record_key.clone(),
            d.class.clone(),
            d.field.clone(),
            d.rule.clone(),
            d.message.chars().take(70).collect(),
            d.attempts.to_string(),
            d.status.clone(),
            d.last_seen_at.get(..19).unwrap_or(&d.last_seen_at).replace('T', " "),
        ]);
    }
    if rows.is_empty() {
        output::line("no dead letters match");
    } else {
        output::print_table(&table);
    }
    if !session.quiet {
        let open: i64 = store.open_dead_letter_counts().await.map_err(failed)?.iter().map(|c| c.1).sum();
        output::line(format!(
            "{} shown; {open} open in all. `{}` for one with its record, `{}` by rule and field",
            rows.len(),
            session.hint("dlq show ID"),
            session.hint("dlq summary")
        ));
    }
    Ok(Exit::Ok)
}

/// `dlq summary`: open dead letters grouped by pipeline, rule and field.
async fn summarize(store: &Store, pipeline: Option<&str>, json: bool, session: &Session) -> CliResult {
    let groups = store.dead_letter_summary(pipeline).await.map_err(failed)?;
    if json {
        output::json_lines(&groups);
        return Ok(Exit::Ok);
    }
    if groups.is_empty() {
        output::line("no open dead letters");
        return Ok(Exit::Ok);
    }
    let mut table = output::table(&["pipeline", "rule", "field", "class", "open", "for example"]);
    for g in &groups {
        table.add_row([
            g.pipeline.clone(),
            g.rule.clone(),
            g.field.clone(),
            g.class.clone(),
            g.count.to_string(),
            g.example.chars().take(60).collect(),
        ]);
    }
    output::print_table(&table);
    if !session.quiet {
        output::line(format!(
            "fix the data at the source (the next run picks it up) or the mapping, then `{}`",
            session.hint("dlq replay")
        ));
    }
    Ok(Exit::Ok)
}

/// `dlq ignore`: marks dead letters ignored; every id must exist.
async fn ignore(store: &Store, ids: &[i64], session: &Session) -> CliResult {
    let found = store.dead_letters(&DeadLetterFilter { ids: ids.to_vec(), ..Default::default() }).await.map_err(failed)?;
    let missing: Vec<String> = ids.iter().filter(|id| !found.iter().any(|d| d.id == **id)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(CliError::usage(format!("no dead letter with id {}; `{}` lists them", missing.join(", "), session.hint("dlq list"))));
    }
    let changed = store.ignore_dead_letters(ids).await.map_err(failed)?;
    output::line(format!("{changed} of {} dead letter(s) marked ignored", ids.len()));
    for d in found.iter().filter(|d| d.status != "open") {
        output::line(format!("  {} was already {}", d.id, d.status));
    }
    Ok(Exit::Ok)
}

/// What `dlq replay` is asked to replay, and whether to serve the sandbox meanwhile.
pub struct Replay {
    pub pipeline: Option<String>,
    pub ids: Vec<i64>,
    pub sandbox: bool,
}

/// Runs open dead letters through the current transforms and sink, pipeline by pipeline; a
/// flow's go back to the inbox for `serve`. With `sandbox`, the demo portal is served where the
/// pipelines' HubSpot sinks point for the length of the replay, and what it received is printed.
pub async fn replay(config: &Config, store: &Store, Replay { pipeline, ids, sandbox }: Replay, session: &Session) -> CliResult {
    if let Some(name) = &pipeline
        && config.pipeline(name).is_none()
        && !config.flows.iter().any(|f| &f.name == name)
    {
        return Err(CliError::usage(format!("{} defines no pipeline or flow {name:?}", config.file)));
    }
    let filter = DeadLetterFilter { pipeline, status: Some("open".into()), ids: ids.clone(), ..Default::default() };
    let rows = store.dead_letters(&filter).await.map_err(failed)?;
    let missing: Vec<String> = ids.iter().filter(|id| !rows.iter().any(|d| d.id == **id)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(CliError::usage(format!(
            "no open dead letter with id {}; `{}` lists them",
            missing.join(", "),
            session.hint("dlq list")
        )));
    }
    if rows.is_empty() {
        output::line("no open dead letters to replay");
        return Ok(Exit::Ok);
    }
    let sandbox = if sandbox {
        let names: BTreeSet<&str> = rows.iter().map(|d| d.pipeline.as_str()).collect();
        let pipelines: Vec<&Pipeline> = config.pipelines.iter().filter(|p| names.contains(p.name.as_str())).collect();
        Some(super::run::start_sandbox(&pipelines).await?)
    } else {
        None
    };
    let replayed = replay_open(config, store, &rows, session).await?;
    for (flow, requeued) in &replayed.requeued {
        output::line(format!("flow {flow}: {requeued} event(s) back in the inbox; `{}` runs them", session.hint("serve")));
    }
    let summaries = replayed.runs;
    let exit = summaries
        .iter()
        .map(RunRow::exit)
        .find(|e| *e == Exit::Interrupted)
        .unwrap_or_else(|| if summaries.iter().any(|r| r.exit() == Exit::Rejects) { Exit::Rejects } else { Exit::Ok });
    if !session.quiet && !summaries.is_empty() {
        output::print_table(&summary(&summaries));
    }
    if let Some((sandbox, address)) = &sandbox
        && !session.quiet
    {
        super::run::print_ledger(sandbox, address);
    }
    Ok(exit)
}

/// What a replay did: a flow's dead letters put back in the inbox, a pipeline's run again.
pub struct Replayed {
    /// Events back in the inbox, per flow.
    pub requeued: Vec<(String, u64)>,
    /// One replay run per pipeline, in name order; the last is interrupted if one was.
    pub runs: Vec<RunRow>,
}

/// Replays these open dead letters, pipeline by pipeline; a flow's go back to the inbox for
/// `serve` (the CLI's `dlq replay` and the console's Replay button).
pub async fn replay_open(
    config: &Config,
    store: &Store,
    rows: &[syncline_store::DeadLetterRow],
    session: &Session,
) -> Result<Replayed, CliError> {
    let mut by_pipeline: BTreeMap<String, Vec<syncline_core::Record>> = BTreeMap::new();
    let mut by_flow: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        if config.flows.iter().any(|f| f.name == row.pipeline) {
            by_flow.entry(row.pipeline.clone()).or_default().push(row.record_key.clone());
        } else {
            by_pipeline.entry(row.pipeline.clone()).or_default().push(row.record());
        }
    }
    // a flow's dead letters are inbox events: back in the inbox, `syncline serve` runs them, and
    // a send that already happened is not repeated (its mark is checked first)
    let mut requeued = Vec::new();
    for (flow, keys) in by_flow {
        requeued.push((flow.clone(), store.inbox_requeue(&flow, &keys).await.map_err(failed)?));
    }
    let mut runs: Vec<RunRow> = Vec::new();
    for (name, records) in by_pipeline {
        let row = replay_pipeline(config, store, &name, records, session).await?;
        let interrupted = row.status == RunStatus::Interrupted;
        runs.push(row);
        if interrupted {
            break;
        }
    }
    Ok(Replayed { requeued, runs })
}

/// The console's replay: the open ones of `ids` (others are skipped), told in a sentence per
/// pipeline or flow.
pub async fn replay_ids(config: &Config, store: &Store, ids: Vec<i64>, session: &Session) -> Result<Vec<String>, CliError> {
    let filter = DeadLetterFilter { status: Some("open".into()), ids, ..Default::default() };
    let rows = store.dead_letters(&filter).await.map_err(failed)?;
    let replayed = replay_open(config, store, &rows, session).await?;
    let mut lines: Vec<String> =
        replayed.requeued.iter().map(|(flow, n)| format!("{flow}: {n} event(s) back in the inbox for serve")).collect();
    for run in &replayed.runs {
        let c = &run.counts;
        lines.push(format!(
            "{}: {} replayed — {} created, {} updated, {} unchanged, {} rejected again ({})",
            run.pipeline,
            c.read,
            c.created,
            c.updated,
            c.unchanged,
            c.rejected + c.failed,
            run.status.name()
        ));
    }
    Ok(lines)
}

/// Replays one pipeline's dead letters through its current transforms and sink, as a run of
/// mode `replay` in the history.
async fn replay_pipeline(
    config: &Config,
    store: &Store,
    name: &str,
    records: Vec<syncline_core::Record>,
    session: &Session,
) -> Result<RunRow, CliError> {
    let p = config
        .pipeline(name)
        .ok_or_else(|| CliError::usage(format!("dead letters belong to pipeline {name:?}, which {} no longer defines", config.file)))?;
    let started = Instant::now();
    let transforms = pipeline::transforms(p, &config.base_dir)?;
    let sink = pipeline::sink(p, &config.base_dir, p.batch_size).await?;
    let target = sink.identity().await.map_err(|e| CliError::connector(&e, format!("replay of {name}: sink")))?;
    let run_id = uuid::Uuid::now_v7().to_string();
    store.start_run(&run_id, name, RunMode::Replay.name()).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
    // no source is read: a replay commits no cursor, only fingerprints for its target
    let scope = Arc::new(Scope { pipeline: name.to_owned(), source: String::new(), target });
    let options = pipeline::run_options(p, run_id, scope, RunMode::Replay, p.batch_size, session.stop.clone());
    let mut reporter = Reporter::new(name, Some(records.len() as u64), session.quiet, &indicatif::MultiProgress::new());
    let parts = RunParts { options, transform: Arc::new(transforms), sink, input: Input::<AnySource>::Records(records) };
    let report = execute(parts, store, &mut reporter, None).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
    reporter.finish();
    match report.error {
        None | Some(RunError::Interrupted) => {}
        Some(RunError::Sink(e)) => return Err(CliError::connector(&e, format!("replay of {name}"))),
        Some(e) => return Err(CliError::failed(format!("replay of {name}: {e}"))),
    }
    Ok(RunRow { pipeline: name.to_owned(), mode: "replay".into(), counts: report.counts, took: started.elapsed(), status: report.status })
}
