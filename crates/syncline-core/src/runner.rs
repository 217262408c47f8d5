//! The pipeline runner: source pages → transforms → change detection → sink batches → one
//! checkpoint commit per page. The cursor of a page is committed only after every record of the
//! page has an outcome, in the same store transaction as the page's dead letters, and only by a
//! run that read every row from the committed cursor on (`RunMode::moves_cursor`).

use crate::error::{ConnectorError, ErrorClass, RecordError};
use crate::record::{Cursor, Page, Record};
use crate::traits::{Outcome, Sink, Source, Transform};
use crate::value::Value;
use crate::worker::WorkerThread;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a run reads and whether it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Everything, from the start; the cursor follows.
    Full,
    /// From the committed cursor (or from a `--since` at or before it) to the end.
    Incremental,
    /// A window that starts after the committed cursor (`--since` past it, or with no cursor):
    /// the rows between the cursor and the window were not read, so the cursor stays put.
    Window,
    /// Reads and diffs; writes and commits nothing.
    DryRun,
    /// Stored dead letters through the current transforms and sink.
    Replay,
}

impl RunMode {
    pub fn name(self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::Incremental => "incremental",
            RunMode::Window => "window",
            RunMode::DryRun => "dry-run",
            RunMode::Replay => "replay",
        }
    }

    /// Whether the run's pages advance the cursor. Only a run that read every row from the
    /// committed cursor (or from the start) on may move it: the cursor moves only over rows
    /// that were read and acknowledged, so it never jumps over a row no run has read.
    pub fn moves_cursor(self) -> bool {
        matches!(self, RunMode::Full | RunMode::Incremental)
    }
}

/// Whose state a run reads and commits: the pipeline, and the identities of its source and its
/// target (a database URL without credentials and the table; a HubSpot portal and object).
/// A cursor belongs to all three and fingerprints to the pipeline and the target, so a new
/// source or target starts from nothing and a new target gets every record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Scope {
    pub pipeline: String,
    pub source: String,
    pub target: String,
}

/// The one ceiling on each path the runner retries (source reads, writes to sinks that do not
/// retry on their own, store commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimits {
    /// How long transient failures (a dropped connection, a busy database) are retried.
    pub transient: Duration,
    /// How long a service that cannot be reached at all is retried before the run fails.
    pub unavailable: Duration,
}

impl Default for RetryLimits {
    fn default() -> Self {
        RetryLimits { transient: Duration::from_secs(60), unavailable: Duration::from_secs(5) }
    }
}

/// Record counts of a run or of one page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.read += other.read;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.rejected += other.rejected;
        self.failed += other.failed;
    }
}

/// A record that could not be written, with why; stored until replayed, resolved or ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub record_key: String,
    pub class: ErrorClass,
    pub field: String,
    pub rule: String,
    pub message: String,
    /// The record as the source gave it, so a replay runs it through the current transforms.
    pub payload: serde_json::Value,
}

/// Everything one page changes in the state store, committed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct BatchCommit {
    pub run_id: String,
    /// The pipeline (dead letters are the pipeline's), and whose cursor and fingerprints these are.
    pub scope: Arc<Scope>,
    /// Advance the scope's cursor to this (None: leave it).
    pub cursor: Option<Cursor>,
    pub dead_letters: Vec<DeadLetter>,
    /// Destination key → fingerprint of what was written.
    pub fingerprints: Vec<(String, String)>,
    /// Source keys that went through: their open dead letters are closed.
    pub passed_keys: Vec<String>,
    /// The status those dead letters get: `resolved` on a run, `replayed` on a replay.
    pub passed_status: &'static str,
    pub counts: Counts,
}

/// The state store as the runner sees it.
pub trait Checkpoint: Send + Sync {
    /// The fingerprints stored for these destination keys in the scope's target (missing keys
    /// are absent). Owned arguments, so a store may do the work on a thread of its own.
    fn fingerprints(
        &self,
        scope: &Arc<Scope>,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<HashMap<String, String>, ConnectorError>> + Send;

    /// Commits a page, all or nothing. Shared, so a retry sends the same page again.
    fn commit(&self, batch: &Arc<BatchCommit>) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// The source keys of the pipeline's open dead letters.
    fn open_dead_letter_keys(&self, pipeline: &str) -> impl Future<Output = Result<HashSet<String>, ConnectorError>> + Send;
}

/// What a dry run would do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    Create,
    Update,
    Unchanged,
    Rejected,
}

impl PlanAction {
    pub fn name(self) -> &'static str {
        match self {
            PlanAction::Create => "create",
            PlanAction::Update => "update",
            PlanAction::Unchanged => "unchanged",
            PlanAction::Rejected => "rejected",
        }
    }
}

/// One line of a dry-run plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEntry {
    pub key: String,
    pub action: PlanAction,
    /// Field → [old, new] for updates (and [null, new] for creates), where the sink can read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<(String, serde_json::Value, serde_json::Value)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a dry run's plan lines go.
pub type PlanSink<'a> = Box<dyn FnMut(&PlanEntry) + Send + 'a>;

/// Told about progress after every page.
pub trait Progress: Send {
    fn update(&mut self, total: &Counts);
}

impl Progress for () {
    fn update(&mut self, _: &Counts) {}
}

/// How one run behaves.
pub struct RunOptions {
    pub run_id: String,
    pub scope: Arc<Scope>,
    pub mode: RunMode,
    /// Records per sink call.
    pub batch_size: usize,
    /// Stop after reading this many records.
    pub limit: Option<u64>,
    /// The mapped field that identifies a record at the destination.
    pub sink_key: Arc<str>,
    /// Skip records whose fingerprint equals the last one written to the same target.
    pub change_detection: bool,
    /// Write every record even when its fingerprint is unchanged (fingerprints are still kept).
    pub resend: bool,
    /// How long failures are retried before the run fails.
    pub retry: RetryLimits,
    /// Cancelled on Ctrl-C / SIGTERM: the run stops reading and writing at once, commits the
    /// pages the sink already acknowledged, and returns [`RunError::Interrupted`].
    pub stop: CancellationToken,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub counts: Counts,
    pub plan: Vec<PlanEntry>,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the source failed: {0}")]
    Source(#[source] ConnectorError),
    #[error("writing to the sink failed: {0}")]
    Sink(#[source] ConnectorError),
    #[error("committing to the state store failed: {0}")]
    State(#[source] ConnectorError),
    #[error("stopped by a signal")]
    Interrupted,
    #[error("{0}")]
    Internal(String),
}

/// Drives one pipeline run.
pub struct Runner<'a, K: Sink, C: Checkpoint> {
    pub options: RunOptions,
    pub transform: Arc<dyn Transform>,
    pub sink: K,
    pub checkpoint: &'a C,
    pub progress: Box<dyn Progress + 'a>,
    /// Receives the plan lines of a dry run as they are made.
    pub plan: Option<PlanSink<'a>>,
    pub total: Counts,
    /// Where the time went, stage by stage.
    pub timings: Timings,
    /// Source keys with an open dead letter (loaded at the first page, kept up to date).
    open_keys: Option<HashSet<String>>,
}

/// Busy time per stage. The stages overlap, so these add up to more than the wall time when
/// the pipeline keeps both cores busy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub read: Duration,
    pub transform: Duration,
    pub write: Duration,
    pub commit: Duration,
}

/// A record that passed the transforms, with what is needed to account for it.
struct Mapped {
    /// The record's key at the source (its dead letters are filed under it).
    source_key: String,
    /// The record as read, for a dead letter's payload; `None` when the transforms change
    /// nothing, and the record written is the one read.
    source: Option<Record>,
    mapped: Record,
    dest_key: String,
    fingerprint: String,
}

impl<'a, K: Sink, C: Checkpoint> Runner<'a, K, C> {
    pub fn new(options: RunOptions, transform: Arc<dyn Transform>, sink: K, checkpoint: &'a C) -> Self {
        Runner {
            options,
            transform,
            sink,
            checkpoint,
            progress: Box::new(()),
            plan: None,
            total: Counts::default(),
            timings: Timings::default(),
            open_keys: None,
        }
    }

    /// Reads the source from `start` to its end, writing and committing page by page.
    ///
    /// Four stages run at once, joined by one-page queues so memory stays bounded: the reader
    /// fetches a page while the transforms run on the one before (on a blocking thread, so they
    /// use the second core), the writer sends the one before that to the sink, and the
    /// committer commits the page the sink has acknowledged. Pages move in order, so cursors
    /// are committed in order and never before their records are written.
    ///
    /// When `options.stop` is cancelled, the reader and the writer stop at once (a write in
    /// flight is abandoned: its records are read again next time, and writes are idempotent),
    /// the committer commits what the sink already acknowledged, and the run returns
    /// [`RunError::Interrupted`] with `total` holding what was committed.
    pub async fn run<S: Source>(&mut self, source: &mut S, start: Option<Cursor>) -> Result<Counts, RunError> {
        let (pages_tx, pages_rx) = mpsc::channel::<Page>(1);
        let (prepared_tx, prepared_rx) = mpsc::channel::<Prepared>(1);
        let (commits_tx, commits_rx) = mpsc::channel::<BatchCommit>(1);
        let (retry, limit, stop) = (self.options.retry, self.options.limit, self.options.stop.clone());
        let reader = read_stage(source, start, limit, (retry, &stop), pages_tx);
        let thread = |name: &str| WorkerThread::start(name).map_err(|e| RunError::Internal(format!("{name}: {e}")));
        let stage = TransformStage {
            transform: Arc::clone(&self.transform),
            sink_key: self.options.sink_key.clone(),
            change_detection: self.options.change_detection,
            thread: thread("syncline-transform")?,
        };
        let mapper = stage.run(pages_rx, prepared_tx);
        // the committer owns the progress reporter and the running total while the stages run
        let mut commits = Commits {
            checkpoint: self.checkpoint,
            dry_run: self.options.mode == RunMode::DryRun,
            progress: std::mem::replace(&mut self.progress, Box::new(())),
            total: self.total,
        };
        let committer = commits.run(commits_rx, (retry, &stop));
        let writer = self.write_stage(prepared_rx, commits_tx, thread("syncline-free")?);
        let result = tokio::try_join!(reader, mapper, writer, committer);
        self.progress = commits.progress;
        self.total = commits.total;
        let (read_busy, transform_busy, (), commit_busy) = result?;
        self.timings.read += read_busy;
        self.timings.transform += transform_busy;
        self.timings.commit += commit_busy;
        if self.options.stop.is_cancelled() {
            return Err(RunError::Interrupted);
        }
        Ok(self.total)
    }

    /// The writer stage: each prepared page through change detection and the sink, then on to
    /// the committer. A stop abandons the write in flight (its records are read again next
    /// time, and writes are idempotent). What a written page leaves is freed on `freer` at once
    /// (some 40,000 frees for 2,000 member rows), not on the thread the stages share, and not
    /// held while its commit waits.
    async fn write_stage(
        &mut self,
        mut prepared: mpsc::Receiver<Prepared>,
        commits: mpsc::Sender<BatchCommit>,
        freer: WorkerThread,
    ) -> Result<(), RunError> {
        let stop = self.options.stop.clone();
        while let Some(page) = prepared.recv().await {
            let (commit, spent) = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                commit = self.write_page(page) => commit?,
            };
            freer.spawn(move || drop(spent));
            if commits.send(commit).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Runs stored dead-letter payloads again; those that pass are marked `replayed`.
    pub async fn replay(&mut self, records: Vec<Record>) -> Result<Counts, RunError> {
        let page_size = self.options.batch_size.max(1) * 10;
        let mut source = MemorySource { records: records.into_iter(), page_size };
        self.run(&mut source, None).await
    }

    /// The writer stage: change detection and the sink; returns what the page commits.
    async fn write_page(&mut self, prepared: Prepared) -> Result<(BatchCommit, Spent), RunError> {
        let dry_run = self.options.mode == RunMode::DryRun;
        let mut commit = BatchCommit {
            run_id: self.options.run_id.clone(),
            scope: self.options.scope.clone(),
            cursor: prepared.cursor.filter(|_| self.options.mode.moves_cursor()),
            passed_status: if self.options.mode == RunMode::Replay { "replayed" } else { "resolved" },
            ..BatchCommit::default()
        };
        commit.counts.read = prepared.read;
        if self.open_keys.is_none() {
            let keys = self.checkpoint.open_dead_letter_keys(&self.options.scope.pipeline).await.map_err(RunError::State)?;
            self.open_keys = Some(keys);
        }
        for (source, error) in prepared.rejected {
            commit.counts.rejected += 1;
            self.emit_plan(&source.key, PlanAction::Rejected, Vec::new(), Some(error.to_string()));
            commit.dead_letters.push(dead_letter(&source, &error));
        }
        let mut mapped = prepared.mapped;
        let mut stored = HashMap::new();
        if self.options.change_detection && !self.options.resend && !mapped.is_empty() {
            let keys: Vec<String> = mapped.iter().map(|m| m.dest_key.clone()).collect();
            stored = self.checkpoint.fingerprints(&self.options.scope, keys).await.map_err(RunError::State)?;
            let mut changed = Vec::with_capacity(mapped.len());
            for m in mapped {
                if stored.get(&m.dest_key) == Some(&m.fingerprint) {
                    commit.counts.unchanged += 1;
                    self.emit_plan(&m.dest_key, PlanAction::Unchanged, Vec::new(), None);
                    self.passed(&mut commit, &m.source_key);
                } else {
                    changed.push(m);
                }
            }
            mapped = changed;
        }

        let writing = Instant::now();
        let mut spent = Spent::default();
        if dry_run {
            self.plan_against_sink(mapped, &stored, &mut commit).await?;
        } else {
            for chunk in mapped.chunks_mut(self.options.batch_size.max(1)) {
                let batch: Vec<Record> = chunk.iter_mut().map(|m| std::mem::take(&mut m.mapped)).collect();
                let outcomes =
                    write_isolating(&mut self.sink, &batch, self.options.retry, &self.options.stop).await.map_err(RunError::Sink)?;
                for ((m, outcome), written) in chunk.iter_mut().zip(outcomes).zip(&batch) {
                    self.record_outcome(&mut commit, m, outcome, written);
                }
                spent.written.push(batch);
            }
            spent.mapped = mapped;
        }

        self.timings.write += writing.elapsed();
        if let Some(open) = self.open_keys.as_mut() {
            open.extend(commit.dead_letters.iter().map(|d| d.record_key.clone()));
        }
        Ok((commit, spent))
    }

    /// What the sink did with one record, into the page's commit: counted, and its fingerprint
    /// (moved, as the record is done with) or its dead letter.
    fn record_outcome(&mut self, commit: &mut BatchCommit, m: &mut Mapped, outcome: Outcome, written: &Record) {
        let error = match outcome {
            Outcome::Created | Outcome::Updated | Outcome::Unchanged => {
                match outcome {
                    Outcome::Created => commit.counts.created += 1,
                    Outcome::Updated => commit.counts.updated += 1,
                    _ => commit.counts.unchanged += 1,
                }
                self.passed(commit, &m.source_key);
                if self.options.change_detection {
                    commit.fingerprints.push((std::mem::take(&mut m.dest_key), std::mem::take(&mut m.fingerprint)));
                }
                return;
            }
            Outcome::Rejected(error) => {
                commit.counts.rejected += 1;
                error
            }
            Outcome::Failed(error) => {
                commit.counts.failed += 1;
                error
            }
        };
        commit.dead_letters.push(m.dead_letter(written, &error));
    }

    /// A record went through: its open dead letter, if it has one, is closed by the commit.
    /// Only keys known to have one are sent, so a run without dead letters updates nothing.
    fn passed(&mut self, commit: &mut BatchCommit, source_key: &str) {
        if self.open_keys.as_mut().is_some_and(|open| open.remove(source_key)) {
            commit.passed_keys.push(source_key.to_owned());
        }
    }

    /// Dry run: compare with the sink's current values where it can read them.
    async fn plan_against_sink(
        &mut self,
        mapped: Vec<Mapped>,
        stored: &HashMap<String, String>,
        commit: &mut BatchCommit,
    ) -> Result<(), RunError> {
        if mapped.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = mapped.iter().map(|m| m.mapped.clone()).collect();
        let (retry, stop) = (self.options.retry, self.options.stop.clone());
        let current = retry_transient(retry, &stop, async || self.sink.current(&records).await).await.map_err(RunError::Sink)?;
        let Some(current) = current else {
            // the sink cannot be read: a stored fingerprint is the best evidence of existence
            for m in &mapped {
                if stored.contains_key(&m.dest_key) {
                    commit.counts.updated += 1;
                    self.emit_plan(&m.dest_key, PlanAction::Update, Vec::new(), None);
                } else {
                    commit.counts.created += 1;
                    self.emit_plan(&m.dest_key, PlanAction::Create, Vec::new(), None);
                }
            }
            return Ok(());
        };
        let by_key: HashMap<&str, &Record> = current.iter().map(|r| (r.key.as_str(), r)).collect();
        for m in &mapped {
            match by_key.get(m.dest_key.as_str()) {
                None => {
                    let changes = m.mapped.fields.iter().map(|(n, v)| (n.to_string(), serde_json::Value::Null, v.to_json())).collect();
                    commit.counts.created += 1;
                    self.emit_plan(&m.dest_key, PlanAction::Create, changes, None);
                }
                Some(old) => {
                    let changes: Vec<_> = m
                        .mapped
                        .fields
                        .iter()
                        .filter_map(|(n, new)| {
                            let old = old.get(n).cloned().unwrap_or(Value::Null);
                            (!same_value(&old, new)).then(|| (n.to_string(), old.to_json(), new.to_json()))
                        })
                        .collect();
                    if changes.is_empty() {
                        commit.counts.unchanged += 1;
                        self.emit_plan(&m.dest_key, PlanAction::Unchanged, Vec::new(), None);
                    } else {
                        commit.counts.updated += 1;
                        self.emit_plan(&m.dest_key, PlanAction::Update, changes, None);
                    }
                }
            }
        }
        Ok(())
    }

    fn emit_plan(
        &mut self,
        key: &str,
        action: PlanAction,
        changes: Vec<(String, serde_json::Value, serde_json::Value)>,
        reason: Option<String>,
    ) {
        if let Some(plan) = self.plan.as_mut() {
            plan(&PlanEntry { key: key.to_owned(), action, changes, reason });
        }
    }
}

/// The reader stage: pages from `start` until the source ends, the limit is reached or the
/// run is stopped, each retried while it fails transiently. Returns its busy time.
async fn read_stage<S: Source>(
    source: &mut S,
    start: Option<Cursor>,
    limit: Option<u64>,
    (retry, stop): (RetryLimits, &CancellationToken),
    pages: mpsc::Sender<Page>,
) -> Result<Duration, RunError> {
    let started = Instant::now();
    let mut busy = Duration::ZERO;
    let (mut cursor, mut read, mut number) = (start, 0u64, 0u64);
    loop {
        let fetch = Instant::now();
        number += 1;
        // a span per page read (traces nest the source's API calls under it)
        let span = tracing::debug_span!("page", number, records = tracing::field::Empty);
        let next = retry_transient(retry, stop, async || source.next_page(cursor.as_ref()).await).instrument(span.clone());
        let page = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            page = next => page.map_err(RunError::Source)?,
        };
        if let Some(page) = &page {
            span.record("records", page.records.len());
        }
        busy += fetch.elapsed();
        let Some(mut page) = page.filter(|p| !p.records.is_empty() || !p.rejected.is_empty()) else { break };
        let mut last = page.cursor.is_none();
        if let Some(limit) = limit {
            let room = limit.saturating_sub(read) as usize;
            if page.records.len() >= room {
                last = true;
                if page.records.len() > room {
                    // the page's cursor would skip the records cut off
                    page.records.truncate(room);
                    page.cursor = page.records.last().and_then(|r| source.cursor_after(r));
                }
            }
        }
        read += page.records.len() as u64;
        cursor = page.cursor.clone();
        if pages.send(page).await.is_err() || last {
            break; // the writer stopped, or this was the last page
        }
    }
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "reader done");
    Ok(busy)
}

/// The transform stage: each page through the transforms on a thread of its own, so they use
/// the second core while the reader and writer wait on IO.
struct TransformStage {
    transform: Arc<dyn Transform>,
    sink_key: Arc<str>,
    change_detection: bool,
    thread: WorkerThread,
}

impl TransformStage {
    async fn run(self, mut pages: mpsc::Receiver<Page>, prepared: mpsc::Sender<Prepared>) -> Result<Duration, RunError> {
        let mut busy = Duration::ZERO;
        while let Some(page) = pages.recv().await {
            let (transform, sink_key, change_detection) = (Arc::clone(&self.transform), self.sink_key.clone(), self.change_detection);
            let (page, took) = self
                .thread
                .run(move || {
                    let started = Instant::now();
                    (prepare(page, &*transform, &sink_key, change_detection), started.elapsed())
                })
                .await
                .map_err(|e| RunError::Internal(format!("the transform stage stopped: {e}")))?;
            busy += took;
            if prepared.send(page).await.is_err() {
                break;
            }
        }
        Ok(busy)
    }
}

/// The commit stage: each acknowledged page's cursor, dead letters and fingerprints in one
/// store transaction, in page order; the progress reporter hears of each.
struct Commits<'a, C> {
    checkpoint: &'a C,
    dry_run: bool,
    progress: Box<dyn Progress + 'a>,
    total: Counts,
}

impl<C: Checkpoint> Commits<'_, C> {
    /// Commits until the writer is done. Acknowledged pages are committed even after a stop;
    /// only the retries end. Returns its busy time.
    async fn run(
        &mut self,
        mut commits: mpsc::Receiver<BatchCommit>,
        (retry, stop): (RetryLimits, &CancellationToken),
    ) -> Result<Duration, RunError> {
        let mut busy = Duration::ZERO;
        while let Some(commit) = commits.recv().await {
            let commit = Arc::new(commit);
            if !self.dry_run {
                let committing = Instant::now();
                retry_transient(retry, stop, async || self.checkpoint.commit(&commit).await).await.map_err(RunError::State)?;
                busy += committing.elapsed();
            }
            self.total.add(&commit.counts);
            self.progress.update(&self.total);
        }
        Ok(busy)
    }
}

/// What a page leaves once written: its records, freed on a thread of their own.
#[derive(Default)]
struct Spent {
    mapped: Vec<Mapped>,
    written: Vec<Vec<Record>>,
}

/// A page after the transforms: what the writer stage needs.
struct Prepared {
    cursor: Option<Cursor>,
    read: u64,
    rejected: Vec<(Record, RecordError)>,
    mapped: Vec<Mapped>,
}

/// The transform stage: runs every record of a page through the transforms (pure CPU work).
fn prepare(page: Page, transform: &dyn Transform, sink_key: &str, change_detection: bool) -> Prepared {
    let mut prepared = Prepared {
        cursor: page.cursor,
        read: (page.records.len() + page.rejected.len()) as u64,
        rejected: page.rejected,
        mapped: Vec::with_capacity(page.records.len()),
    };
    // a copy of each record as read is kept for its dead letter, unless the transforms change
    // nothing (then the record written is the one read)
    let identity = transform.is_identity();
    for read in page.records {
        let (source, mapped) = if identity {
            (None, read)
        } else {
            match transform.apply(read.clone()) {
                Ok(mapped) => (Some(read), mapped),
                Err(error) => {
                    prepared.rejected.push((read, error));
                    continue;
                }
            }
        };
        let source_key = source.as_ref().map_or_else(|| mapped.key.clone(), |s| s.key.clone());
        let dest_key = match destination_key(&mapped, sink_key) {
            Ok(key) => key,
            Err(error) => {
                prepared.rejected.push((source.unwrap_or(mapped), error));
                continue;
            }
        };
        let fingerprint = if change_detection { fingerprint(&mapped) } else { String::new() };
        let mut mapped = mapped;
        mapped.key = dest_key.clone();
        prepared.mapped.push(Mapped { source_key, source, mapped, dest_key, fingerprint });
    }
    prepared
}

/// The mapped record's key in the destination: its `sink_key` field, which must not be blank.
pub fn destination_key(mapped: &Record, sink_key: &str) -> Result<String, RecordError> {
    match mapped.get(sink_key).and_then(Value::as_text) {
        Some(key) if !key.trim().is_empty() => Ok(key.into_owned()),
        _ => Err(RecordError::data(sink_key, "key", "the destination key is empty")),
    }
}

/// Pages out of records held in memory (dead letters being replayed).
struct MemorySource {
    records: std::vec::IntoIter<Record>,
    page_size: usize,
}

impl Source for MemorySource {
    async fn next_page(&mut self, _after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        let records: Vec<Record> = self.records.by_ref().take(self.page_size).collect();
        Ok((!records.is_empty()).then_some(Page { records, cursor: None, rejected: Vec::new() }))
    }
}

/// Values that a sink stores alike compare equal: an integer read back from a TEXT column, or
/// the decimal `1200.50` read back as the number `1200.5`.
fn same_value(old: &Value, new: &Value) -> bool {
    if old == new || old.as_text() == new.as_text() {
        return true;
    }
    let number = |v: &Value| v.as_text().and_then(|t| t.trim().parse::<f64>().ok());
    matches!((number(old), number(new)), (Some(a), Some(b)) if a == b)
}

impl Mapped {
    /// The dead letter of this record, `written` as the sink was given it.
    fn dead_letter(&self, written: &Record, error: &RecordError) -> DeadLetter {
        let mut letter = dead_letter(self.source.as_ref().unwrap_or(written), error);
        letter.record_key = self.source_key.clone();
        letter
    }
}

fn dead_letter(source: &Record, error: &RecordError) -> DeadLetter {
    DeadLetter {
        record_key: source.key.clone(),
        class: error.class.clone(),
        field: error.field.clone(),
        rule: error.rule.clone(),
        message: error.message.clone(),
        payload: source.to_json(),
    }
}

/// A stable fingerprint of a record's fields (names and values, in order).
pub fn fingerprint(record: &Record) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in &record.fields {
        hasher.update(name.as_bytes());
        hasher.update([0x1f, value_tag(value)]);
        if let Some(text) = value.as_text() {
            hasher.update(text.as_bytes());
        }
        hasher.update([0x1e]);
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn value_tag(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) | Value::Decimal(_) => 2,
        _ => 3,
    }
}

/// Writes a batch; when the sink rejects the whole batch for one bad record (a `Data` or
/// `Conflict` error), splits it in halves until the bad records are isolated and rejected alone.
/// A sink with its own retry policy is called once per batch: its policy is the one ceiling.
async fn write_isolating<K: Sink>(
    sink: &mut K,
    batch: &[Record],
    retry: RetryLimits,
    stop: &CancellationToken,
) -> Result<Vec<Outcome>, ConnectorError> {
    // a span per batch written (traces nest the sink's API calls under it)
    let span = tracing::debug_span!("batch", records = batch.len());
    let written = if sink.retries_itself() {
        sink.write(batch).instrument(span).await
    } else {
        retry_transient(retry, stop, async || sink.write(batch).await).instrument(span).await
    };
    match written {
        Ok(outcomes) => Ok(outcomes),
        Err(error) if matches!(error.class, ErrorClass::Data | ErrorClass::Conflict) => {
            if batch.len() == 1 {
                let rule = if error.class == ErrorClass::Conflict { "conflict" } else { "sink" };
                return Ok(vec![Outcome::Rejected(RecordError {
                    class: error.class.clone(),
                    field: "-".into(),
                    rule: rule.into(),
                    message: error.message,
                })]);
            }
            let (left, right) = batch.split_at(batch.len() / 2);
            let mut outcomes = Box::pin(write_isolating(sink, left, retry, stop)).await?;
            outcomes.extend(Box::pin(write_isolating(sink, right, retry, stop)).await?);
            Ok(outcomes)
        }
        Err(error) => Err(error),
    }
}

/// Retries failures worth retrying with capped exponential backoff: transient ones for up to
/// `limits.transient`, an unreachable service for up to `limits.unavailable`; any other class
/// is returned at once, and so is the last failure once `stop` is cancelled. (The HTTP
/// connectors have the full resilience Policy; this is the SQL and state-store equivalent: a
/// database that drops a connection pauses the run instead of failing it.) The error returned
/// after the ceiling says how long it was retried and why it stopped.
pub async fn retry_transient<T, F>(limits: RetryLimits, stop: &CancellationToken, mut call: F) -> Result<T, ConnectorError>
where
    F: AsyncFnMut() -> Result<T, ConnectorError>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match call().await {
            Err(error) if matches!(error.class, ErrorClass::Transient { .. } | ErrorClass::Unavailable) => error,
            other => return other,
        };
        let (ceiling, setting) = match error.class {
            ErrorClass::Unavailable => (limits.unavailable, "retry.unreachable"),
            _ => (limits.transient, "retry.transient"),
        };
        let wait = match &error.class {
            ErrorClass::Transient { retry_after: Some(after) } => (*after).max(delay),
            _ => delay,
        };
        if stop.is_cancelled() || started.elapsed() + wait > ceiling {
            if attempts == 1 || stop.is_cancelled() {
                return Err(error);
            }
            let message =
                format!("{} (gave up after {attempts} attempts in {:.1?}; {setting} is {ceiling:?})", error.message, started.elapsed());
            return Err(ConnectorError { message, ..error });
        }
        tracing::debug!(error = %error, wait_ms = wait.as_millis() as u64, "failure worth retrying; retrying");
        tokio::select! {
            () = stop.cancelled() => return Err(error),
            () = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

impl<P: Progress + ?Sized> Progress for &mut P {
    fn update(&mut self, total: &Counts) {
        (**self).update(total)
    }
}
