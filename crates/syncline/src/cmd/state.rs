//! `syncline state`: what a pipeline has stored (in Meltano's sense) — `show` its cursors, one per
//! source and target, and its change-detection fingerprints per target; `set` a cursor by hand;
//! `clear` all of it. The changes ask first (or take `--yes`) and leave an audit row.

use crate::cli::{StateCommand, StateSetArgs};
use crate::cmd::Session;
use crate::config::{Config, StoreConfig};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use crate::pipeline;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use syncline_core::Cursor;
use syncline_core::runner::Scope;
use syncline_store::Store;

fn failed(e: syncline_store::StoreError) -> CliError {
    CliError::failed(format!("state store: {e}"))
}

/// `show` and `clear`, which need only the store.
pub async fn run(config: &StoreConfig, store: &Store, command: StateCommand, session: &Session) -> CliResult {
    match command {
        StateCommand::Show { pipeline, json } => {
            if let Some(name) = &pipeline {
                known(config, store, name).await?;
            }
            show(store, pipeline.as_deref(), json).await
        }
        StateCommand::Clear { pipeline, yes } => {
            known(config, store, &pipeline).await?;
            let cursors = store.cursors(Some(&pipeline)).await.map_err(failed)?;
            let fingerprints: i64 = store.fingerprint_counts(Some(&pipeline)).await.map_err(failed)?.iter().map(|f| f.records).sum();
            if cursors.is_empty() && fingerprints == 0 {
                output::line(format!("{pipeline}: nothing stored"));
                return Ok(Exit::Ok);
            }
            let question = format!(
                "forget {} cursor(s) and {fingerprints} fingerprint(s) of {pipeline}? its next run reads everything and writes every record",
                cursors.len()
            );
            if !confirm(&question, yes)? {
                output::line("nothing changed");
                return Ok(Exit::Ok);
            }
            let (cursors, hashes) = store.clear_state(&pipeline).await.map_err(failed)?;
            output::line(format!(
                "{pipeline}: removed {cursors} cursor(s) and {hashes} fingerprint(s); `{}` reads and writes everything",
                session.hint(&format!("run {pipeline}"))
            ));
            Ok(Exit::Ok)
        }
        StateCommand::Set(_) => unreachable!("set needs the whole config"),
    }
}

/// A pipeline the config defines, or one the store still has state of.
async fn known(config: &StoreConfig, store: &Store, name: &str) -> Result<(), CliError> {
    if config.pipelines.iter().any(|p| p == name) || !store.cursors(Some(name)).await.map_err(failed)?.is_empty() {
        return Ok(());
    }
    Err(match crate::config::did_you_mean(name, config.pipelines.iter().map(String::as_str)) {
        Some(close) => CliError::usage(format!("unknown pipeline {name:?}; did you mean {close:?}?")),
        None => CliError::usage(format!("unknown pipeline {name:?}; {} defines: {}", config.file, config.pipelines.join(", "))),
    })
}

async fn show(store: &Store, pipeline: Option<&str>, json: bool) -> CliResult {
    let cursors = store.cursors(pipeline).await.map_err(failed)?;
    let fingerprints = store.fingerprint_counts(pipeline).await.map_err(failed)?;
    if json {
        for c in &cursors {
            output::line(
                serde_json::json!({"kind": "cursor", "pipeline": c.pipeline, "source": c.source, "target": c.target, "cursor": c.cursor, "run_id": c.run_id, "updated_at": c.updated_at}),
            );
        }
        for f in &fingerprints {
            output::line(
                serde_json::json!({"kind": "fingerprints", "pipeline": f.pipeline, "target": f.target, "records": f.records, "updated_at": f.updated_at}),
            );
        }
        return Ok(Exit::Ok);
    }
    if cursors.is_empty() && fingerprints.is_empty() {
        output::line("nothing stored yet: the next run reads everything");
        return Ok(Exit::Ok);
    }
    let unknown = |text: &str| if text.is_empty() { "(from before 0.2; the next run adopts it)".to_owned() } else { text.to_owned() };
    if !cursors.is_empty() {
        let mut table = output::table(&["pipeline", "source", "target", "cursor", "updated"]);
        for c in &cursors {
            table.add_row([
                c.pipeline.clone(),
                unknown(&c.source),
                unknown(&c.target),
                describe(&c.cursor),
                c.updated_at.get(..19).unwrap_or(&c.updated_at).replace('T', " "),
            ]);
        }
        output::print_table(&table);
    }
    if !fingerprints.is_empty() {
        let mut table = output::table(&["pipeline", "target", "fingerprints", "updated"]);
        for f in &fingerprints {
            table.add_row([
                f.pipeline.clone(),
                unknown(&f.target),
                f.records.to_string(),
                f.updated_at.get(..19).unwrap_or(&f.updated_at).replace('T', " "),
            ]);
        }
        output::print_table(&table);
    }
    Ok(Exit::Ok)
}

/// A SQL cursor as `watermark, key`; anything else as its JSON.
fn describe(cursor: &serde_json::Value) -> String {
    let part = |name: &str| cursor.get(name).and_then(|p| p.get("value")).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    match (part("watermark"), part("key")) {
        (Some(watermark), Some(key)) => format!("{watermark}, key {key}"),
        _ => cursor.to_string(),
    }
}

/// `set`: the cursor of the pipeline's current source and target.
pub async fn set(config: &Config, store: &Store, args: StateSetArgs, session: &Session) -> CliResult {
    let p = config
        .pipeline(&args.pipeline)
        .ok_or_else(|| CliError::usage(format!("unknown pipeline {:?} in {}", args.pipeline, config.file)))?;
    let cursor: serde_json::Value =
        serde_json::from_str(&args.cursor).map_err(|e| CliError::usage(format!("the cursor is not JSON: {e}")))?;
    let cursor = Cursor(cursor);
    let source = pipeline::source(p, &config.base_dir, None).await?;
    source.check_cursor(&cursor).map_err(|e| CliError::usage(format!("the cursor does not fit the pipeline's source: {e}")))?;
    let sink = pipeline::sink(p, &config.base_dir, p.batch_size).await?;
    let target = sink.identity().await.map_err(|e| CliError::connector(&e, format!("pipeline {}: sink", p.name)))?;
    let source_identity = source.identity().await.map_err(|e| CliError::connector(&e, format!("pipeline {}: source", p.name)))?;
    let scope = Arc::new(Scope { pipeline: p.name.clone(), source: source_identity, target });
    let before = store.cursor(&scope).await.map_err(failed)?;
    let question = format!(
        "set the cursor of {} ({} → {}) from {} to {}? rows up to it are then not read again",
        p.name,
        scope.source,
        scope.target,
        before.as_ref().map_or("none".to_owned(), |c| describe(&c.0)),
        describe(&cursor.0)
    );
    if !confirm(&question, args.yes)? {
        output::line("nothing changed");
        return Ok(Exit::Ok);
    }
    store.set_cursor(&scope, &cursor).await.map_err(failed)?;
    output::line(format!("{}: cursor set; `{}` shows it", p.name, session.hint(&format!("state show {}", p.name))));
    Ok(Exit::Ok)
}

/// Asks on the terminal; with `--yes` does not ask; without a terminal to ask on, refuses.
fn confirm(question: &str, yes: bool) -> Result<bool, CliError> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{question}\nthis changes stored state: add --yes to confirm (there is no terminal to ask on)"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| CliError::failed(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
