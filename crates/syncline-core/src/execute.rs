//! One pipeline run from its history row's start to its end, the same for every command that
//! runs one (`run`, `dlq replay`, `bench`): the runner over a source or stored records, then
//! the row closed with how the run ended.

use std::future::Future;
use std::sync::Arc;

use crate::error::ConnectorError;
use crate::record::{Cursor, Record};
use crate::runner::{Checkpoint, Counts, PlanSink, Progress, RunError, RunMode, RunOptions, Runner, Timings};
use crate::traits::{Sink, Source, Transform};

/// How a run ended, as the sync history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Still going (or its process died: the next run of the pipeline marks it interrupted).
    Running,
    Succeeded,
    /// Finished, with dead letters.
    Rejects,
    Failed,
    /// Stopped by a signal, after committing what the target acknowledged.
    Interrupted,
    /// A serve's flow work, closed when the server stopped.
    Stopped,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Rejects => "rejects",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Stopped => "stopped",
        }
    }

    /// How a run with these counts, or this error, ended.
    pub fn of(result: &Result<Counts, RunError>) -> RunStatus {
        match result {
            Err(RunError::Interrupted) => RunStatus::Interrupted,
            Err(_) => RunStatus::Failed,
            Ok(counts) if counts.rejected + counts.failed > 0 => RunStatus::Rejects,
            Ok(_) => RunStatus::Succeeded,
        }
    }
}

/// The sync history as a run sees it: one row per run, started before the run connects (so a
/// run that cannot reach its source is there too) and closed when it ends.
pub trait History: Send + Sync {
    fn record_start(&self, run_id: &str, pipeline: &str, mode: RunMode) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Settles the mode once it is known (a `--since` at or before the cursor is incremental).
    fn record_mode(&self, run_id: &str, mode: RunMode) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Closes the row.
    fn record_end(&self, run_id: &str, end: RunEnd<'_>) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

/// How a run ended, as its history row keeps it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub status: RunStatus,
    /// Why it stopped early.
    pub error: Option<&'a str>,
    /// What the source checked of its read.
    pub audit: Option<&'a str>,
    /// A dry run's counts (it commits no pages, so they are recorded here).
    pub dry_run_counts: Option<&'a Counts>,
}

impl RunEnd<'_> {
    /// An end with this status and nothing more to say.
    pub fn new(status: RunStatus) -> RunEnd<'static> {
        RunEnd { status, error: None, audit: None, dry_run_counts: None }
    }
}

/// What a run reads: a source from a cursor, or records held in memory (dead letters replayed).
pub enum Input<'a, S> {
    Source { source: &'a mut S, start: Option<Cursor> },
    Records(Vec<Record>),
}

/// Everything a run is made of.
pub struct RunParts<'a, S, K> {
    pub options: RunOptions,
    pub transform: Arc<dyn Transform>,
    pub sink: K,
    pub input: Input<'a, S>,
}

/// How a run went.
#[derive(Debug)]
pub struct RunReport {
    pub status: RunStatus,
    /// What was committed (a dry run: what it saw).
    pub counts: Counts,
    pub timings: Timings,
    /// Why it stopped early, if it did.
    pub error: Option<RunError>,
    /// What the source checked of its read (`Source::audit`).
    pub audit: Option<String>,
}

/// Runs `parts` — whose history row `parts.options.run_id` is started — reporting `progress`
/// after every page and dry-run lines to `plan`, and closes the row with how it ended. `Err`
/// only when the row cannot be closed.
pub async fn execute<S: Source, K: Sink, C: Checkpoint + History>(
    parts: RunParts<'_, S, K>,
    store: &C,
    progress: &mut (dyn Progress + '_),
    plan: Option<PlanSink<'_>>,
) -> Result<RunReport, ConnectorError> {
    let RunParts { options, transform, sink, input } = parts;
    let (run_id, mode) = (options.run_id.clone(), options.mode);
    let span = tracing::info_span!("run", run_id = %run_id, pipeline = %options.scope.pipeline, mode = mode.name());
    let mut runner = Runner::new(options, transform, sink, store);
    runner.progress = Box::new(progress);
    runner.plan = plan;
    let (result, audit) = {
        use tracing::Instrument;
        let run = async {
            match input {
                Input::Source { source, start } => {
                    let result = runner.run(source, start).await;
                    let audit = result.as_ref().ok().and_then(|_| source.audit());
                    (result, audit)
                }
                Input::Records(records) => (runner.replay(records).await, None),
            }
        };
        run.instrument(span.clone()).await
    };
    let (counts, timings) = (runner.total, runner.timings);
    drop(runner);
    let status = RunStatus::of(&result);
    let error = result.err();
    let message = error.as_ref().map(ToString::to_string);
    let dry = (mode == RunMode::DryRun).then_some(&counts);
    store.record_end(&run_id, RunEnd { status, error: message.as_deref(), audit: audit.as_deref(), dry_run_counts: dry }).await?;
    tracing::info!(parent: &span, status = status.name(), read = counts.read, rejected = counts.rejected, "run finished");
    Ok(RunReport { status, counts, timings, error, audit })
}
