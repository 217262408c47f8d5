//! `syncline run`: one pipeline or all of them, with progress, history and a summary.
//!
//! Which rows a run reads, and whether its cursor follows (the cursor only moves over rows that
//! were read and acknowledged):
//! - no flag: from the cursor of this pipeline's source and target to the end (`incremental`),
//!   or, with no cursor yet, everything (`full`);
//! - `--full`: everything (`full`), the cursor follows;
//! - `--since T` at or before the cursor: from T to the end (`incremental`), the cursor follows;
//! - `--since T` after the cursor, or with no cursor: the window from T (`window`); the rows
//!   between the cursor and T were not read, so the cursor stays where it was;
//! - `--limit N` stops after N rows; in the modes above the cursor moves over exactly those.

use crate::cli::RunArgs;
use crate::cmd::Session;
use crate::config::{Config, Pipeline};
use crate::config::{SinkSettings, SourceSettings};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use crate::pipeline;
use crate::progress::{Reporter, RunRow, summary};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::StreamExt;
use indicatif::MultiProgress;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use syncline_connectors::hubspot::object_name;
use syncline_connectors::{AnySink, AnySource};
use syncline_core::runner::{PlanAction, PlanEntry, PlanSink, RunError, RunMode, RunOptions, Scope};
use syncline_core::{Cursor, ErrorClass, Input, RunEnd, RunParts, RunStatus, execute};
use syncline_sandbox::{Sandbox, Seed};
use syncline_store::Store;

pub async fn run(config: &Config, store: &Store, args: RunArgs, session: &Session) -> CliResult {
    let pipelines = select(config, &args)?;
    let since = args.since.as_deref().map(|t| parse_time("--since", t)).transpose()?;
    let plan = Arc::new(Mutex::new(Plan::default()));
    if let Some(path) = &args.plan_out {
        let file = std::fs::File::create(path).map_err(|e| CliError::usage(format!("cannot write the plan to {}: {e}", path.display())))?;
        plan.lock().expect("plan").out = Some(std::io::BufWriter::new(file));
    }

    let sandbox = if args.sandbox { Some(start_sandbox(&pipelines).await?) } else { None };
    let common = Common {
        config,
        store,
        args: &args,
        since,
        plan: &plan,
        session,
        portals: pipeline::Portals::with_store(store.clone()),
        bars: MultiProgress::new(),
    };
    let (rows, worst) = run_phases(&common, pipelines).await?;
    let mut plan = Arc::try_unwrap(plan).map_err(|_| CliError::failed("the plan is still in use"))?.into_inner().expect("plan");
    if let Some(out) = plan.out.as_mut() {
        out.flush().map_err(|e| CliError::failed(format!("writing the plan failed: {e}")))?;
    }
    if !session.quiet {
        output::print_table(&summary(&rows));
        if args.dry_run {
            plan.print(args.plan_out.as_deref());
        }
        if !args.dry_run && rows.iter().any(|r| r.counts.rejected + r.counts.failed > 0) {
            output::line(format!(
                "dead letters: `{}` says why, `{}` groups them by rule and field",
                session.hint("dlq list"),
                session.hint("dlq summary")
            ));
            // the run's sandbox stops with it: a replay needs its own
            let replay = if args.sandbox { "dlq replay --sandbox" } else { "dlq replay" };
            output::line(format!("  fix the data or the mapping, then replay them: `{}`", session.hint(replay)));
        }
        output::line(format!("history: `{}`", session.hint("runs")));
        if let Some((sandbox, address)) = &sandbox {
            print_ledger(sandbox, address);
        }
    }
    Ok(worst)
}

/// Runs the pipelines: the links after the objects they join, and inside each phase up to
/// `--jobs` at once, sharing each portal's budget. A config error or an interrupt halts the
/// run: nothing new starts, and the pipelines already running end as they would alone
/// (interrupted, their acknowledged pages committed). Returns the summary rows and the worst exit.
async fn run_phases(common: &Common<'_>, pipelines: Vec<&Pipeline>) -> Result<(Vec<RunRow>, Exit), CliError> {
    let (mut rows, mut worst) = (Vec::new(), Exit::Ok);
    let (links, objects): (Vec<&Pipeline>, Vec<&Pipeline>) = pipelines.into_iter().partition(|p| pipeline::reads_associations(p));
    let halted = AtomicBool::new(false);
    let mut fatal = None;
    for phase in [objects, links] {
        let halted = &halted;
        let runs = futures_util::stream::iter(phase).map(|pipeline| async move {
            let started = Instant::now();
            let result = if halted.load(Ordering::SeqCst) { None } else { Some(run_one(common, pipeline).await) };
            (pipeline, started, result)
        });
        let mut runs = std::pin::pin!(runs.buffered(common.args.jobs.max(1) as usize));
        while let Some((pipeline, started, result)) = runs.next().await {
            let row = match result {
                None => continue,
                Some(Ok(row)) => row,
                Some(Err(error)) if error.code == Exit::Usage || error.code == Exit::Interrupted => {
                    halted.store(true, Ordering::SeqCst);
                    fatal.get_or_insert(error);
                    continue;
                }
                Some(Err(error)) => {
                    eprintln!("error: {}", error.message);
                    RunRow::failed(&pipeline.name, started.elapsed())
                }
            };
            worst = worse(worst, row.exit());
            if row.exit() == Exit::Interrupted {
                halted.store(true, Ordering::SeqCst);
            }
            rows.push(row);
        }
        if halted.load(Ordering::SeqCst) {
            break;
        }
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok((rows, worst)),
    }
}

/// The pipelines a run runs (`run_phases` puts the links after the objects): the one named, or
/// `all`, less the association pipelines with
/// `--skip-associations`, or only those of the pair `--from-object`/`--to-object` name.
fn select<'c>(config: &'c Config, args: &RunArgs) -> Result<Vec<&'c Pipeline>, CliError> {
    let mut pipelines: Vec<&Pipeline> = if args.pipeline == "all" {
        config.pipelines.iter().collect()
    } else {
        vec![config.pipeline(&args.pipeline).ok_or_else(|| unknown_pipeline(config, &args.pipeline))?]
    };
    if args.skip_associations {
        pipelines.retain(|p| !pipeline::reads_associations(p));
    }
    if args.from_object.is_none() && args.to_object.is_none() {
        return Ok(pipelines);
    }
    let wanted = |given: &Option<String>, actual: &str| given.as_deref().is_none_or(|g| object_name(g) == object_name(actual));
    let pair = |p: &Pipeline| match &p.source {
        SourceSettings::HubSpot { stream, .. } => stream.associations.as_deref().map(|to| (stream.object.clone(), object_name(to))),
        SourceSettings::Sql { .. } | SourceSettings::Stripe { .. } => None,
    };
    let pairs: Vec<String> = pipelines.iter().filter_map(|p| pair(p)).map(|(from, to)| format!("{from} → {to}")).collect();
    pipelines.retain(|p| pair(p).is_some_and(|(from, to)| wanted(&args.from_object, &from) && wanted(&args.to_object, &to)));
    if pipelines.is_empty() {
        let known = if pairs.is_empty() { "none".to_owned() } else { pairs.join(", ") };
        return Err(CliError::usage(format!("no association pipeline matches --from-object/--to-object (the pairs: {known})")));
    }
    Ok(pipelines)
}

/// Serves the sandbox's demo portal where the pipelines' HubSpot sinks point (a loopback URL).
pub(super) async fn start_sandbox(pipelines: &[&Pipeline]) -> Result<(Sandbox, String), CliError> {
    let urls: Vec<&str> = pipelines
        .iter()
        .flat_map(|p| {
            let source = match &p.source {
                SourceSettings::HubSpot { profile, .. } => Some(profile.base_url.as_str()),
                SourceSettings::Stripe { profile, .. } => Some(profile.base_url.as_str()),
                SourceSettings::Sql { .. } => None,
            };
            let sink = match &p.sink {
                SinkSettings::HubSpot { profile, .. } => Some(profile.base_url.as_str()),
                SinkSettings::QuickBooks { connection, .. } => connection.as_ref().map(|c| c.profile.base_url.as_str()),
                SinkSettings::Sql { .. } => None,
            };
            source.into_iter().chain(sink)
        })
        .collect();
    let Some(url) = urls.first() else { return Err(CliError::usage("--sandbox: no selected pipeline reads or writes HubSpot")) };
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
pub(super) fn print_ledger(sandbox: &Sandbox, address: &str) {
    let ledger = sandbox.ledger();
    let mut calls: BTreeMap<(String, String, u16), usize> = BTreeMap::new();
    for r in &ledger.requests {
        *calls.entry((r.method.clone(), r.path.clone(), r.status)).or_default() += 1;
    }
    output::line(format!("sandbox at http://{address} received {} calls:", ledger.requests.len()));
    for ((method, path, status), n) in calls {
        output::line(format!("  {n:>6} × {method} {path} → {status}"));
    }
    let created = ledger.effects.iter().filter(|e| e.kind == "created").count();
    let updated = ledger.effects.iter().filter(|e| e.kind == "updated").count();
    output::line(format!("  contacts created {created}, updated {updated}; at most {} calls in any 10 s", ledger.max_rolling(10_000)));
    output::line("  (this sandbox stops with the command, and the next --sandbox run starts an empty one;");
    output::line("   `syncline sandbox` keeps one running, with its ledger at /__sandbox/ledger)");
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

pub(super) fn unknown_pipeline(config: &Config, name: &str) -> CliError {
    let known: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
    match crate::config::did_you_mean(name, known.iter().copied()) {
        Some(close) => CliError::usage(format!("unknown pipeline {name:?}; did you mean {close:?}?")),
        None => CliError::usage(format!("unknown pipeline {name:?}; {} defines: {}, or all", config.file, known.join(", "))),
    }
}

/// A time given on the command line: RFC 3339, `YYYY-MM-DDTHH:MM:SS` (UTC) or a date.
pub fn parse_time(flag: &str, text: &str) -> Result<NaiveDateTime, CliError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
        .map_err(|_| CliError::usage(format!("{flag} {text:?}: expected RFC 3339 (2024-05-01T10:00:00Z) or a date (2024-05-01)")))
}

/// Where a run starts, and whether its cursor follows: see the module's notes.
fn mode_and_start(
    args: &RunArgs,
    since: Option<NaiveDateTime>,
    cursor: Option<Cursor>,
    source: &mut AnySource,
) -> (RunMode, Option<Cursor>) {
    let (mode, start) = match (args.full, since) {
        (true, _) => (RunMode::Full, None),
        (false, Some(since)) => match cursor {
            Some(cursor) if source.starts_at_or_before(since, &cursor) => {
                // from `since`, and everything after the cursor whatever `since` compares like
                source.resume_after(cursor);
                (RunMode::Incremental, None)
            }
            _ => (RunMode::Window, None),
        },
        // with no cursor yet, it reads everything from the start: a full run
        (false, None) if cursor.is_none() => (RunMode::Full, None),
        (false, None) => (RunMode::Incremental, cursor),
    };
    (if args.dry_run { RunMode::DryRun } else { mode }, start)
}

/// Waits for `work` unless the command is interrupted first.
async fn unless_stopped<T>(session: &Session, work: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::select! {
        result = work => result,
        () = session.stop.cancelled() => Err(CliError::interrupted()),
    }
}

/// A pipeline opened and checked, ready to run.
struct Ready {
    transforms: syncline_core::transform::Chain,
    source: AnySource,
    sink: AnySink,
    scope: Arc<Scope>,
    mode: RunMode,
    start: Option<Cursor>,
    batch_size: usize,
}

/// What every pipeline of one `run` shares: the command, the store, the plan of a dry run, the
/// HubSpot clients (one budget per portal) and the terminal's progress bars.
struct Common<'a> {
    config: &'a Config,
    store: &'a Store,
    args: &'a RunArgs,
    since: Option<NaiveDateTime>,
    plan: &'a Arc<Mutex<Plan>>,
    session: &'a Session,
    portals: pipeline::Portals,
    bars: MultiProgress,
}

/// Opens the pipeline's source and sink, finds whose state it uses, decides where it starts,
/// and checks the HubSpot mapping. Every step gives way to an interrupt.
async fn prepare(common: &Common<'_>, pipeline: &Pipeline) -> Result<Ready, CliError> {
    let Common { config, store, args, since, session, portals, .. } = common;
    let (args, since, session) = (*args, *since, *session);
    let name = &pipeline.name;
    let transforms = pipeline::transforms(pipeline, &config.base_dir)?;
    let mut source = unless_stopped(session, pipeline::source_in(portals, pipeline, &config.base_dir, since)).await?;
    unless_stopped(session, refuse_rows_without_watermark(config, pipeline, &source)).await?;
    let batch_size = args.batch_size.map_or(pipeline.batch_size, |b| b as usize);
    let mut sink = unless_stopped(session, pipeline::sink_in(portals, pipeline, &config.base_dir, batch_size)).await?;
    let identity = async { sink.identity().await.map_err(|e| CliError::connector(&e, format!("pipeline {name}: sink"))) };
    let target = unless_stopped(session, identity).await?;
    let identity = async { source.identity().await.map_err(|e| CliError::connector(&e, format!("pipeline {name}: source"))) };
    let source_identity = unless_stopped(session, identity).await?;
    let fields = async { source.fields().await.map_err(|e| CliError::connector(&e, format!("pipeline {name}: source"))) };
    sink.declare(&unless_stopped(session, fields).await?);
    if let Some(replaces) = source.replaces() {
        sink.replace_groups(replaces).map_err(|e| CliError::connector(&e, format!("pipeline {name}: sink")))?;
    }
    let scope = Arc::new(Scope { pipeline: name.clone(), source: source_identity, target });
    let failed = |e: syncline_store::StoreError| CliError::failed(format!("state store: {e}"));
    if !args.dry_run {
        let (cursors, fingerprints) = store.adopt_unscoped_state(&scope).await.map_err(failed)?;
        if cursors + fingerprints > 0 && !session.quiet {
            eprintln!(
                "{name}: state from before it was tied to a target ({cursors} cursor, {fingerprints} fingerprints) now belongs to {} → {}; \
                 if it was written for another target, `{}` and run again",
                scope.source,
                scope.target,
                session.hint(&format!("state clear {name}"))
            );
        }
    }
    let cursor = store.cursor(&scope).await.map_err(failed)?;
    let (mode, start) = mode_and_start(args, since, cursor, &mut source);
    if let AnySink::HubSpot(hubspot) = &mut sink {
        // the fields a `select` fixes are checked now; any others at the first write
        let shape = pipeline::shape(pipeline);
        let fields: Vec<&str> = shape.fields.iter().flatten().map(String::as_str).collect();
        let preflight = async {
            hubspot.preflight(fields.iter().copied()).await.map_err(|e| CliError::connector(&e, format!("pipeline {name}: sink")))
        };
        unless_stopped(session, preflight).await?;
    }
    Ok(Ready { transforms, source, sink, scope, mode, start, batch_size })
}

/// A source that failed: when the query the config asked for is wrong, said where the config
/// asks for it (its table or query line); otherwise as the database said.
fn source_failed(config: &Config, pipeline: &Pipeline, error: &syncline_core::ConnectorError) -> CliError {
    if error.class != ErrorClass::Config {
        return CliError::connector(error, format!("pipeline {}: reading the source failed", pipeline.name));
    }
    let SourceSettings::Sql { at, settings, .. } = &pipeline.source else {
        return CliError::usage(format!("pipeline {}: reading the source failed: {error}", pipeline.name));
    };
    let key = if matches!(settings.from, syncline_connectors::sql::SqlTable::Table(_)) { "table" } else { "query" };
    let place = crate::config::ConfigError::at(&config.file, &at.from, &format!("pipelines.{}.source.sql.{key}", pipeline.name), "");
    CliError::usage(format!("{}: reading the source failed: {error}", place.to_string().trim_end_matches(": ")))
}

/// With `null_watermarks: refuse` (the default), rows whose watermark is NULL stop the run
/// before it starts: a keyset read cannot place them, and skipping them would lose them.
async fn refuse_rows_without_watermark(config: &Config, pipeline: &Pipeline, source: &AnySource) -> Result<(), CliError> {
    let AnySource::Sql(source) = source else { return Ok(()) };
    if source.settings().null_watermarks != syncline_connectors::sql::NullWatermarks::Refuse {
        return Ok(());
    }
    let (count, keys) = source.rows_without_watermark().await.map_err(|e| source_failed(config, pipeline, &e))?;
    if count == 0 {
        return Ok(());
    }
    let SourceSettings::Sql { at, settings, .. } = &pipeline.source else { return Ok(()) };
    let place =
        crate::config::ConfigError::at(&config.file, &at.watermark, &format!("pipelines.{}.source.sql.watermark", pipeline.name), "");
    Err(CliError::usage(format!(
        "{}: {count} row(s) have no {} (NULL), e.g. key(s) {}: a run would not reach them. Give them a value, \
         or set null_watermarks: first to read them first in full runs",
        place.to_string().trim_end_matches(": "),
        settings.watermark,
        keys.join(", ")
    )))
}

/// Runs one pipeline and records it in the history, from its first step: a run that cannot
/// reach its source or sink, or is interrupted while connecting, is there too. Returns its
/// summary row.
/// One pipeline's run under its lease: no other process runs the pipeline meanwhile, so no two
/// runs interleave their cursors, dead letters and history rows.
/// One run of `pipeline` for its schedule (the scheduler holds the lease): incremental (or a
/// `reconcile --apply`, as the schedule says), quiet,
/// in the sync history like any other, its clients from `portals` (one budget per portal for all
/// the scheduled runs of a process).
pub async fn scheduled(
    config: &Config,
    store: &Store,
    portals: &pipeline::Portals,
    pipeline: &Pipeline,
    session: &Session,
) -> Result<RunRow, CliError> {
    let reconcile = pipeline.schedule.as_ref().is_some_and(|s| s.reconcile);
    let args = if reconcile {
        crate::cli::ReconcileArgs { pipeline: pipeline.name.clone(), apply: true, plan_out: None }.run()
    } else {
        RunArgs {
            pipeline: pipeline.name.clone(),
            full: false,
            since: None,
            dry_run: false,
            jobs: 1,
            skip_associations: false,
            from_object: None,
            to_object: None,
            plan_out: None,
            batch_size: None,
            limit: None,
            resend: false,
            sandbox: false,
            wait: false,
        }
    };
    let plan = Arc::new(Mutex::new(Plan::default()));
    let portals = portals.clone();
    let bars = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let common = Common { config, store, args: &args, since: None, plan: &plan, session, portals, bars };
    run_held(&common, pipeline).await
}

async fn run_one(common: &Common<'_>, pipeline: &Pipeline) -> Result<RunRow, CliError> {
    let lease = super::lease::RunLease::take(common.store, &pipeline.name, common.args.wait, common.session).await?;
    let result = run_held(common, pipeline).await;
    lease.release().await;
    result
}

async fn run_held(common: &Common<'_>, pipeline: &Pipeline) -> Result<RunRow, CliError> {
    let Common { config, store, args, since, plan, session, .. } = *common;
    let name = &pipeline.name;
    let started = Instant::now();
    let failed = |e: syncline_store::StoreError| CliError::failed(format!("state store: {e}"));
    store.mark_interrupted(name).await.map_err(failed)?;
    let run_id = uuid::Uuid::now_v7().to_string();
    // the mode is settled once the cursor is known (a --since at or before it is incremental)
    let provisional = match (args.dry_run, args.full, since) {
        (true, ..) => RunMode::DryRun,
        (false, true, _) => RunMode::Full,
        (false, false, Some(_)) => RunMode::Window,
        (false, false, None) => RunMode::Incremental,
    };
    store.start_run(&run_id, name, provisional.name()).await.map_err(failed)?;
    let ready = match prepare(common, pipeline).await {
        Ok(ready) => ready,
        Err(error) => {
            let status = if error.code == Exit::Interrupted { RunStatus::Interrupted } else { RunStatus::Failed };
            store.finish_run(&run_id, RunEnd { error: Some(&error.message), ..RunEnd::new(status) }).await.map_err(failed)?;
            return Err(error);
        }
    };
    let Ready { transforms, mut source, sink, scope, mode, start, batch_size } = ready;
    if mode != provisional {
        store.set_run_mode(&run_id, mode.name()).await.map_err(failed)?;
    }
    let total = unless_stopped(session, async { Ok(source.estimate(start.as_ref()).await.ok()) }).await.ok().flatten();
    let mut reporter = Reporter::new(name, total.map(|n| args.limit.map_or(n, |l| n.min(l))), session.quiet, &common.bars);
    let options = RunOptions {
        limit: args.limit,
        resend: args.resend,
        ..pipeline::run_options(pipeline, run_id, scope.clone(), mode, batch_size, session.stop.clone())
    };
    let plan = (mode == RunMode::DryRun).then(|| {
        let plan = plan.clone();
        Box::new(move |entry: &PlanEntry| plan.lock().expect("plan").add(entry)) as PlanSink
    });
    tracing::info!(pipeline = %name, mode = mode.name(), source = %scope.source, target = %scope.target, "run started");
    let parts = RunParts { options, transform: Arc::new(transforms), sink, input: Input::Source { source: &mut source, start } };
    let report = execute(parts, store, &mut reporter, plan).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
    reporter.finish();
    if pipeline.verify_counts && mode == RunMode::Incremental && report.error.is_none() {
        verify_counts(config, store, pipeline, &scope, &source, session).await;
    }
    match report.error {
        Some(RunError::Interrupted) => eprintln!("{name}: interrupted; what the target acknowledged is committed"),
        Some(RunError::Source(e)) => return Err(source_failed(config, pipeline, &e)),
        Some(RunError::Sink(e) | RunError::State(e)) if e.class == ErrorClass::Config => {
            return Err(CliError::usage(format!("pipeline {name}: {e}")));
        }
        Some(error) => return Err(CliError::failed(format!("pipeline {name}: {error}"))),
        None => {}
    }
    if let Some(audit) = report.audit.as_deref().filter(|_| !session.quiet) {
        eprintln!("{name}: {audit}");
    }
    Ok(RunRow {
        pipeline: name.clone(),
        mode: mode.name().to_owned(),
        counts: report.counts,
        took: started.elapsed(),
        status: report.status,
    })
}

/// `verify_counts`: a watermark cannot see a row inserted late with an old value (or one whose
/// watermark moved back), so after an incremental run the source's row count is compared with
/// what the target holds (its rows, or the records change detection knows) plus open dead
/// letters. More in the source means rows no run has read: warned about, with the fix, and
/// audited. Fewer is fine (rows deleted at the source stay in the target).
async fn verify_counts(config: &Config, store: &Store, pipeline: &Pipeline, scope: &Scope, source: &AnySource, session: &Session) {
    let name = &pipeline.name;
    let known = async {
        let held = match (&pipeline.sink, pipeline.change_detection) {
            (_, true) => store
                .fingerprint_counts(Some(name))
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|f| f.target == scope.target)
                .map(|f| f.records as u64)
                .sum(),
            (SinkSettings::Sql { .. }, false) => {
                match pipeline::sink(pipeline, &config.base_dir, pipeline.batch_size).await.map_err(|e| e.message)? {
                    AnySink::Sql(sink) => sink.count_rows().await.map_err(|e| e.to_string())?,
                    AnySink::HubSpot(_) | AnySink::QuickBooks(_) => unreachable!("a SQL sink"),
                }
            }
            (SinkSettings::HubSpot { .. } | SinkSettings::QuickBooks { .. }, false) => {
                return Err("the target's records are counted by change detection, which is off".to_owned());
            }
        };
        let open: i64 =
            store.open_dead_letter_counts().await.map_err(|e| e.to_string())?.iter().filter(|(p, _)| p == name).map(|(_, n)| *n).sum();
        Ok::<_, String>(held + open as u64)
    };
    let (in_source, known) = match (source.count().await, known.await) {
        (Ok(in_source), Ok(known)) => (in_source, known),
        (Err(e), _) => return tracing::warn!(pipeline = %name, error = %e, "verify_counts: cannot count the source"),
        (_, Err(why)) => return tracing::warn!(pipeline = %name, %why, "verify_counts: cannot count the target"),
    };
    if in_source <= known {
        tracing::info!(pipeline = %name, in_source, known, "verify_counts: every source row has been read");
        return;
    }
    let missing = in_source - known;
    eprintln!(
        "{name}: verify_counts: the source has {in_source} rows, but the target holds {known} with the open dead letters: \
         {missing} row(s) were never read — inserted with a watermark older than the cursor, or changed to one. \
         `{}` reads them (a larger `overlap` catches late commits from now on)",
        session.hint(&format!("run {name} --full"))
    );
    let detail = serde_json::json!({"source": in_source, "known": known, "target": scope.target});
    let _ = store.append_event("count_mismatch", name, None, &detail).await;
}

/// A dry run's plan: every line to `--plan-out`, and a summary for people.
#[derive(Default)]
struct Plan {
    out: Option<std::io::BufWriter<std::fs::File>>,
    actions: BTreeMap<PlanAction, u64>,
    /// Field → records in which it would change.
    fields: BTreeMap<String, u64>,
    /// Rule → records it rejects.
    reasons: BTreeMap<String, u64>,
    first: Vec<PlanEntry>,
}

/// Changes shown in the printed plan; `--plan-out` has them all.
const FIRST_CHANGES: usize = 10;

impl Plan {
    fn add(&mut self, entry: &PlanEntry) {
        if let Some(out) = self.out.as_mut() {
            // a full disk shows up when the plan is flushed at the end
            if serde_json::to_writer(&mut *out, entry).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }
        *self.actions.entry(entry.action).or_default() += 1;
        if entry.action == PlanAction::Update {
            for (field, _, _) in &entry.changes {
                *self.fields.entry(field.clone()).or_default() += 1;
            }
        }
        if let Some(reason) = &entry.reason {
            // a rejection reads "field: rule: message"
            let mut parts = reason.splitn(3, ": ");
            let (field, rule) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            *self.reasons.entry(format!("{rule} ({field})")).or_default() += 1;
        }
        // updates say more than creates: they fill the first lines, creates the rest
        let shown_updates = self.first.iter().filter(|e| e.action == PlanAction::Update).count();
        match entry.action {
            PlanAction::Update if shown_updates < FIRST_CHANGES => {
                self.first.insert(shown_updates, entry.clone());
                self.first.truncate(FIRST_CHANGES);
            }
            PlanAction::Create if self.first.len() < FIRST_CHANGES => self.first.push(entry.clone()),
            _ => {}
        }
    }

    fn print(&self, plan_out: Option<&std::path::Path>) {
        let count = |action| self.actions.get(&action).copied().unwrap_or(0);
        output::line(format!(
            "plan (dry run, nothing written): create {} · update {} · unchanged {} · rejected {}",
            count(PlanAction::Create),
            count(PlanAction::Update),
            count(PlanAction::Unchanged),
            count(PlanAction::Rejected)
        ));
        if !self.fields.is_empty() {
            let mut fields: Vec<(&String, &u64)> = self.fields.iter().collect();
            fields.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let listed: Vec<String> = fields.iter().take(12).map(|(f, n)| format!("{f} {n}")).collect();
            let more = if fields.len() > 12 { format!(" … and {} more", fields.len() - 12) } else { String::new() };
            output::line(format!("  updates by field: {}{more}", listed.join(", ")));
        }
        if !self.reasons.is_empty() {
            let listed: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            output::line(format!("  rejected by rule (field): {}", listed.join(", ")));
        }
        for entry in &self.first {
            let text = match (entry.action, entry.changes.is_empty()) {
                (_, true) => "(the target cannot be read to compare)".to_owned(),
                (PlanAction::Create, false) => format!("new, {} fields", entry.changes.len()),
                _ => {
                    entry.changes.iter().map(|(f, old, new)| format!("{f}: {} → {}", short(old), short(new))).collect::<Vec<_>>().join(", ")
                }
            };
            output::line(format!("  {} {}: {}", entry.action.name(), entry.key, cut(&text, 150)));
        }
        let shown = self.first.len() as u64;
        let changing = count(PlanAction::Create) + count(PlanAction::Update);
        match plan_out {
            Some(path) => output::line(format!("  every record's line: {}", path.display())),
            None if changing > shown => {
                output::line(format!("  {shown} of {changing} changes shown; add --plan-out plan.jsonl for all of them"))
            }
            None => {}
        }
    }
}

fn short(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "∅".to_owned(),
        serde_json::Value::String(s) => cut(&format!("{s:?}"), 40),
        other => cut(&other.to_string(), 40),
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_owned() } else { format!("{}…", text.chars().take(max - 1).collect::<String>()) }
}
