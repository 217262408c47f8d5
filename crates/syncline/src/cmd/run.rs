//! `syncline run`: one pipeline or all of them, with progress, history and a summary.

use crate::cli::RunArgs;
use crate::config::SinkSettings;
use crate::config::{Config, Pipeline};
use crate::exit::{CliError, CliResult, Exit};
use crate::pipeline;
use crate::progress::{Reporter, summary};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};
use syncline_connectors::AnySink;
use syncline_core::runner::{Counts, PlanEntry, RunMode, RunOptions, Runner, retry_transient};
use syncline_sandbox::{Sandbox, Seed};
use syncline_store::Store;
use tracing::Instrument;

/// How long a run waits out a database that is down before it fails.
const RETRY_FOR: Duration = Duration::from_secs(300);

pub async fn run(config: &Config, store: &Store, args: RunArgs, quiet: bool) -> CliResult {
    let pipelines: Vec<&Pipeline> = if args.pipeline == "all" {
        config.pipelines.iter().collect()
    } else {
        vec![config.pipeline(&args.pipeline).ok_or_else(|| unknown_pipeline(config, &args.pipeline))?]
    };
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut plan_out = match &args.plan_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| CliError::usage(format!("cannot write the plan to {}: {e}", path.display())))?,
        )),
        None => None,
    };

    let sandbox = if args.sandbox { Some(start_sandbox(&pipelines).await?) } else { None };
    let mut rows = Vec::new();
    let mut worst = Exit::Ok;
    for pipeline in pipelines {
        let started = Instant::now();
        let outcome = run_one(config, store, pipeline, &args, since, plan_out.as_mut(), quiet).await;
        let (exit, mode, counts, status) = match outcome {
            Ok(done) => done,
            Err(error) if error.code == Exit::Usage => return Err(error),
            Err(error) => {
                eprintln!("error: pipeline {}: {}", pipeline.name, error.message);
                (Exit::Failed, String::new(), Counts::default(), "failed".to_owned())
            }
        };
        rows.push((pipeline.name.clone(), mode, counts, started.elapsed(), status));
        worst = worse(worst, exit);
        if exit == Exit::Interrupted {
            break;
        }
    }
    if let Some(mut out) = plan_out {
        out.flush().map_err(|e| CliError::failed(format!("writing the plan failed: {e}")))?;
    }
    if !quiet {
        println!("{}", summary(&rows));
        if rows.iter().any(|r| r.2.rejected + r.2.failed > 0) {
            println!("dead letters: `syncline dlq list` shows why; fix the data or the mapping, then `syncline dlq replay`.");
        }
        println!("history: `syncline runs`");
        if let Some((sandbox, address)) = &sandbox {
            print_ledger(sandbox, address);
        }
    }
    Ok(worst)
}

/// Serves the sandbox's demo portal where the pipelines' HubSpot sinks point (a loopback URL).
async fn start_sandbox(pipelines: &[&Pipeline]) -> Result<(Sandbox, String), CliError> {
    let urls: Vec<&str> = pipelines
        .iter()
        .filter_map(|p| match &p.sink {
            SinkSettings::HubSpot { settings, .. } => Some(settings.base_url.as_str()),
            _ => None,
        })
        .collect();
    let Some(url) = urls.first() else { return Err(CliError::usage("--sandbox: no selected pipeline writes to HubSpot")) };
    if urls.iter().any(|u| u != url) {
        return Err(CliError::usage("--sandbox: the selected pipelines point HubSpot at different URLs"));
    }
    let address = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| a.starts_with("127.0.0.1:") || a.starts_with("localhost:"))
        .ok_or_else(|| CliError::usage(format!("--sandbox: the HubSpot base_url {url} is not http://127.0.0.1:PORT")))?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        CliError::usage(format!(
            "--sandbox: cannot listen on {address} ({e}); if `syncline sandbox` already runs there, leave out --sandbox"
        ))
    })?;
    let sandbox = Sandbox::from_seed(Seed::members_demo()).expect("the demo seed is valid");
    let router = sandbox.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((sandbox, address.to_owned()))
}

/// What the sandbox received during the run: calls by endpoint and status, budget use, effects.
fn print_ledger(sandbox: &Sandbox, address: &str) {
    let ledger = sandbox.ledger();
    let mut calls: BTreeMap<(String, String, u16), usize> = BTreeMap::new();
    for r in &ledger.requests {
        *calls.entry((r.method.clone(), r.path.clone(), r.status)).or_default() += 1;
    }
    println!("sandbox at http://{address} received {} calls:", ledger.requests.len());
    for ((method, path, status), n) in calls {
        println!("  {n:>6} × {method} {path} → {status}");
    }
    let created = ledger.effects.iter().filter(|e| e.kind == "created").count();
    let updated = ledger.effects.iter().filter(|e| e.kind == "updated").count();
    println!("  contacts created {created}, updated {updated}; at most {} calls in any 10 s", ledger.max_rolling(10_000));
    println!("  (the sandbox stops with this command; `syncline sandbox` keeps one running, with its ledger at /__sandbox/ledger)");
}

fn worse(a: Exit, b: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Ok => 0,
        Exit::Rejects => 1,
        Exit::Failed => 2,
        Exit::Usage => 3,
        Exit::Interrupted => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn unknown_pipeline(config: &Config, name: &str) -> CliError {
    let known: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
    CliError::usage(format!("unknown pipeline {name:?}; {} defines: {}, or all", config.file, known.join(", ")))
}

/// `--since`: RFC 3339, `YYYY-MM-DDTHH:MM:SS` (UTC) or a date.
pub fn parse_since(text: &str) -> Result<NaiveDateTime, CliError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
        .map_err(|_| CliError::usage(format!("--since {text:?}: expected RFC 3339 (2024-05-01T10:00:00Z) or a date (2024-05-01)")))
}

/// Runs one pipeline; returns its exit, mode, counts and status.
async fn run_one(
    config: &Config,
    store: &Store,
    pipeline: &Pipeline,
    args: &RunArgs,
    since: Option<NaiveDateTime>,
    plan_out: Option<&mut std::io::BufWriter<std::fs::File>>,
    quiet: bool,
) -> Result<(Exit, String, Counts, String), CliError> {
    let transforms = pipeline::transforms(pipeline, &config.base_dir)?;
    let mut source = pipeline::source(pipeline, &config.base_dir, since).await?;
    let batch_size = args.batch_size.map_or(pipeline.batch_size, |b| b as usize);
    let mut sink = pipeline::sink(pipeline, &config.base_dir, batch_size).await?;
    if let AnySink::HubSpot(hubspot) = &mut sink {
        // the fields a `select` fixes are checked now; any others at the first write
        let shape = pipeline::shape(pipeline);
        let fields = shape.fields.iter().flatten().map(String::as_str);
        let fields: Vec<&str> = fields.collect();
        // an outage pauses the run as a database outage does; a config error stops it at once
        retry_transient(RETRY_FOR, async || hubspot.preflight(fields.iter().copied()).await)
            .await
            .map_err(|e| CliError::failed(format!("sink: {e}")))?;
    }
    let failed = |e: syncline_store::StoreError| CliError::failed(format!("state store: {e}"));

    let mode = match (args.dry_run, args.full || since.is_some()) {
        (true, _) => RunMode::DryRun,
        (false, true) => RunMode::Full,
        (false, false) => RunMode::Incremental,
    };
    let start = if args.full || since.is_some() { None } else { store.cursor(&pipeline.name).await.map_err(failed)? };
    store.mark_interrupted(&pipeline.name).await.map_err(failed)?;
    let run_id = uuid::Uuid::now_v7().to_string();
    store.start_run(&run_id, &pipeline.name, mode.name()).await.map_err(failed)?;

    let total = source.estimate(start.as_ref()).await.ok().map(|n| args.limit.map_or(n, |l| n.min(l)));
    let mut reporter = Reporter::new(&pipeline.name, total, quiet);
    let options = RunOptions {
        run_id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        mode,
        batch_size: pipeline::write_size(pipeline, batch_size),
        limit: args.limit,
        sink_key: pipeline::sink_key(pipeline),
        change_detection: pipeline.change_detection,
        retry_for: RETRY_FOR,
    };
    let mut runner = Runner::new(options, std::sync::Arc::new(transforms), sink, store);
    runner.progress = Box::new(&mut reporter);
    if let Some(out) = plan_out {
        runner.plan = Some(Box::new(move |entry: &PlanEntry| {
            // a full disk shows up when the plan is flushed at the end
            if serde_json::to_writer(&mut *out, entry).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }));
    }
    let span = tracing::info_span!("run", run_id = %run_id, pipeline = %pipeline.name);
    tracing::info!(parent: &span, mode = mode.name(), "run started");
    let result = tokio::select! {
        result = runner.run(&mut source, start).instrument(span.clone()) => Some(result),
        _ = shutdown_signal() => None,
    };
    let counts = runner.total;
    drop(runner);
    reporter.finish();
    let dry = (mode == RunMode::DryRun).then_some(&counts);
    let (exit, status, error) = match result {
        None => (Exit::Interrupted, "interrupted", Some("stopped by a signal".to_owned())),
        Some(Err(e)) => (Exit::Failed, "failed", Some(e.to_string())),
        Some(Ok(c)) if c.rejected + c.failed > 0 => (Exit::Rejects, "rejects", None),
        Some(Ok(_)) => (Exit::Ok, "succeeded", None),
    };
    store.finish_run(&run_id, status, error.as_deref(), dry).await.map_err(failed)?;
    tracing::info!(parent: &span, status, read = counts.read, rejected = counts.rejected, "run finished");
    if let Some(error) = error {
        if exit == Exit::Failed {
            return Err(CliError::failed(error));
        }
        eprintln!("{}: {error}", pipeline.name);
    }
    Ok((exit, mode.name().to_owned(), counts, status.to_owned()))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
