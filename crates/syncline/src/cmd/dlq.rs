//! `syncline dlq`: list, show, replay and ignore dead letters.

use crate::cli::DlqCommand;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::pipeline;
use crate::progress::{Reporter, summary};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use syncline_core::runner::{RunMode, RunOptions, Runner};
use syncline_store::{DeadLetterFilter, Store};

pub async fn run(config: &Config, store: &Store, command: DlqCommand, quiet: bool) -> CliResult {
    match command {
        DlqCommand::List { pipeline, status, limit, json } => {
            let status = (status != "all").then_some(status);
            let rows = store
                .dead_letters(&DeadLetterFilter { pipeline, status, ids: Vec::new(), limit: Some(limit) })
                .await
                .map_err(CliError::failed)?;
            if json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row).expect("json"));
                }
                return Ok(Exit::Ok);
            }
            let mut table =
                crate::progress::table(&["id", "pipeline", "key", "class", "field", "rule", "reason", "attempts", "status", "last seen"]);
            for d in &rows {
                let reason: String = d.message.chars().take(70).collect();
                table.add_row([
                    d.id.to_string(),
                    d.pipeline.clone(),
                    d.record_key.clone(),
                    d.class.clone(),
                    d.field.clone(),
                    d.rule.clone(),
                    reason,
                    d.attempts.to_string(),
                    d.status.clone(),
                    d.last_seen_at.clone(),
                ]);
            }
            println!("{table}");
            if !quiet {
                let counts = store.open_dead_letter_counts().await.map_err(CliError::failed)?;
                let open: i64 = counts.iter().map(|c| c.1).sum();
                println!("{} shown; {open} open in all. `syncline dlq show ID` for the payload.", rows.len());
            }
            Ok(Exit::Ok)
        }
        DlqCommand::Show { id } => {
            let row = store.dead_letter(id).await.map_err(CliError::usage)?;
            println!("{}", serde_json::to_string_pretty(&row).expect("json"));
            Ok(Exit::Ok)
        }
        DlqCommand::Ignore { ids } => {
            let changed = store.ignore_dead_letters(&ids).await.map_err(CliError::failed)?;
            println!("{changed} of {} dead letter(s) marked ignored", ids.len());
            Ok(Exit::Ok)
        }
        DlqCommand::Replay { pipeline, ids } => replay(config, store, pipeline, ids, quiet).await,
    }
}

/// Runs open dead letters through the current transforms and sink, pipeline by pipeline.
async fn replay(config: &Config, store: &Store, pipeline: Option<String>, ids: Vec<i64>, quiet: bool) -> CliResult {
    let filter = DeadLetterFilter { pipeline, status: Some("open".into()), ids, limit: None };
    let rows = store.dead_letters(&filter).await.map_err(CliError::failed)?;
    if rows.is_empty() {
        println!("no open dead letters to replay");
        return Ok(Exit::Ok);
    }
    let mut by_pipeline: BTreeMap<String, Vec<syncline_core::Record>> = BTreeMap::new();
    let mut by_flow: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        if config.flows.iter().any(|f| f.name == row.pipeline) {
            by_flow.entry(row.pipeline.clone()).or_default().push(row.record_key.clone());
        } else {
            by_pipeline.entry(row.pipeline.clone()).or_default().push(row.record());
        }
    }
    // a flow's dead letters are inbox events: back in the inbox, `syncline serve` runs them, and
    // a send that already happened is not repeated (its mark is checked first)
    for (flow, keys) in by_flow {
        let requeued = store.inbox_requeue(&flow, &keys).await.map_err(CliError::failed)?;
        println!("flow {flow}: {requeued} event(s) back in the inbox; `syncline serve` runs them");
    }
    let mut summaries = Vec::new();
    let mut exit = Exit::Ok;
    for (name, records) in by_pipeline {
        let p = config
            .pipeline(&name)
            .ok_or_else(|| CliError::usage(format!("dead letters belong to pipeline {name:?}, which {} no longer defines", config.file)))?;
        let transforms = pipeline::transforms(p, &config.base_dir)?;
        let sink = pipeline::sink(p, &config.base_dir, p.batch_size).await?;
        let run_id = uuid::Uuid::now_v7().to_string();
        store.start_run(&run_id, &name, RunMode::Replay.name()).await.map_err(CliError::failed)?;
        let started = Instant::now();
        let options = RunOptions {
            run_id: run_id.clone(),
            pipeline: name.clone(),
            mode: RunMode::Replay,
            batch_size: pipeline::write_size(p, p.batch_size),
            limit: None,
            sink_key: pipeline::sink_key(p),
            change_detection: p.change_detection,
            retry_for: Duration::from_secs(300),
        };
        let mut reporter = Reporter::new(&name, Some(records.len() as u64), quiet);
        let mut runner = Runner::new(options, std::sync::Arc::new(transforms), sink, store);
        runner.progress = Box::new(&mut reporter);
        let result = runner.replay(records).await;
        drop(runner);
        reporter.finish();
        let (status, error) = match &result {
            Err(e) => ("failed", Some(e.to_string())),
            Ok(c) if c.rejected + c.failed > 0 => ("rejects", None),
            Ok(_) => ("succeeded", None),
        };
        store.finish_run(&run_id, status, error.as_deref(), None).await.map_err(CliError::failed)?;
        match result {
            Err(e) => return Err(CliError::failed(format!("replay of {name}: {e}"))),
            Ok(c) => {
                if c.rejected + c.failed > 0 {
                    exit = Exit::Rejects;
                }
                summaries.push((name, "replay".to_owned(), c, started.elapsed(), status.to_owned()));
            }
        }
    }
    if !quiet {
        println!("{}", summary(&summaries));
    }
    Ok(exit)
}
