//! Inbox workers: claim due events under a lease, run the flow each one starts, then finish it,
//! retry it later with backoff, or give up and keep it as a dead letter with the reason.
//!
//! Data errors (no phone or email, ManyChat's 3011) are dead letters at once: trying again
//! cannot help until a person changes something, and `dlq replay` puts them back. Everything
//! else (5xx, timeouts, 429s that outlasted the policy, a wrong token) is retried up to the
//! flow's `max_attempts`. A worker killed mid-flow leaves its lease to expire; the event is
//! then claimed again, and the send's mark keeps the person from being greeted twice.
//!
//! The events of one object in a claimed batch run one after another, oldest `occurredAt`
//! first (objects run concurrently), so two events about one person never race. A flow marked
//! `ordered` also skips an event older than one it already handled for that object, and audits
//! it as `skipped_stale`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use syncline_core::ErrorClass;
use syncline_store::{InboxEvent, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Counters;
use crate::flow::Engine;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this process's leases (unique per instance).
    pub owner: String,
    /// How long a claimed event stays ours; past it another worker may take it.
    pub lease: Duration,
    /// Events run at once (the connectors' budgets still pace the calls).
    pub concurrency: usize,
    /// How often to look for due events when no delivery wakes us (retries, other instances).
    pub poll: Duration,
    /// First retry delay; doubled each attempt up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl WorkerConfig {
    pub fn new(owner: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            owner: owner.into(),
            lease: Duration::from_secs(60),
            concurrency: 16,
            poll: Duration::from_millis(500),
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(300),
        }
    }
}

/// The workers of one process.
#[derive(Clone)]
pub struct Workers {
    store: Store,
    engine: Arc<Engine>,
    config: WorkerConfig,
    /// Woken by the intake when it stores events, so they run without waiting for a poll.
    arrived: Arc<Notify>,
    /// Flow runs by flow and outcome (`sent`, `already_sent`, `done`, `filtered`, `retried`,
    /// `dead`), and `unrouted` events no flow takes, under the source's name.
    pub runs: Arc<Counters>,
}

impl Workers {
    pub fn new(store: Store, engine: Arc<Engine>, config: WorkerConfig, arrived: Arc<Notify>) -> Workers {
        Workers { store, engine, config, arrived, runs: Arc::new(Counters::new(syncline_core::metric::FLOW_RUNS, "flow")) }
    }

    /// Claims and runs events until `stop` is cancelled; events in hand are finished first.
    pub async fn run(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.run_once().await {
                Ok(0) => {
                    tokio::select! {
                        () = self.arrived.notified() => {}
                        () = tokio::time::sleep(self.config.poll) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim inbox events; trying again");
                    tokio::time::sleep(self.config.poll).await;
                }
            }
        }
    }

    /// One round: claims up to `concurrency` due events and runs them. Returns how many.
    pub async fn run_once(&self) -> Result<usize, syncline_store::StoreError> {
        let events = self.store.inbox_claim(&self.config.owner, self.config.lease, self.config.concurrency).await?;
        let claimed = events.len();
        let payloads: Vec<serde_json::Value> = events.iter().map(|e| serde_json::from_str(&e.payload).unwrap_or_default()).collect();
        let work: Vec<_> =
            events.iter().zip(&payloads).filter_map(|(e, p)| self.engine.flow_for(&e.source, &e.event_type).map(|f| (f, p))).collect();
        self.engine.prefetch(&work).await;
        // in claim order (insertion order), so the oldest claimed object starts first
        let mut by_object: indexmap::IndexMap<String, Vec<(InboxEvent, serde_json::Value)>> = Default::default();
        for (event, payload) in events.into_iter().zip(payloads) {
            let object = event.object_key.as_ref().map_or_else(|| format!("event {}", event.id), |k| format!("{}:{k}", event.source));
            by_object.entry(object).or_default().push((event, payload));
        }
        let groups = by_object.into_values().map(|mut group| {
            group.sort_by(|a, b| (&a.0.occurred_at, a.0.id).cmp(&(&b.0.occurred_at, b.0.id)));
            group
        });
        let run_group = |group: Vec<(InboxEvent, serde_json::Value)>| async move {
            for (event, payload) in group {
                self.handle(event, payload).await;
            }
        };
        futures_util::stream::iter(groups).for_each_concurrent(self.config.concurrency, run_group).await;
        Ok(claimed)
    }

    /// Runs one event in its own span (flow, event id, dedupe key, attempt, object), attached
    /// to the future so every line logged while it runs — the engine's and the connectors' —
    /// carries this event's fields, however the events of other objects interleave with it.
    async fn handle(&self, event: InboxEvent, payload: serde_json::Value) {
        let flow = self.engine.flow_for(&event.source, &event.event_type).map_or("-", |f| f.name.as_str());
        let object = event.object_key.as_deref().unwrap_or("-");
        let span = tracing::info_span!("flow", flow, event = event.id, key = %event.dedupe_key, attempt = event.attempts, object);
        // the event continues the trace of the delivery that brought it
        if let Some(parent) = &event.trace_parent {
            crate::trace::continue_from(&span, parent);
        }
        self.handle_in_span(event, payload).instrument(span).await
    }

    async fn handle_in_span(&self, event: InboxEvent, payload: serde_json::Value) {
        let owner = &self.config.owner;
        let Some(flow) = self.engine.flow_for(&event.source, &event.event_type) else {
            self.runs.add(&event.source, "unrouted", 1);
            self.release(self.store.inbox_finish(event.id, owner).await, &event);
            return;
        };
        // an ordered flow: this object's version (the newest occurredAt handled) decides
        let occurred = event.occurred_at.as_deref().and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok());
        let ordering = event.object_key.clone().zip(occurred).filter(|_| flow.ordered);
        if let Some((object, at)) = &ordering {
            match self.store.flow_version(&flow.name, object).await {
                Ok(Some(newer)) if newer > *at => {
                    tracing::info!("skipped: a later event of the object ran already");
                    self.runs.add(&flow.name, "skipped_stale", 1);
                    self.release(self.store.inbox_skip_stale(&event, owner, &flow.name, object, newer).await, &event);
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let at = chrono::Utc::now() + chrono::Duration::from_std(self.config.retry_base).unwrap_or_default();
                    let why = format!("cannot read the order of {object}: {e}");
                    self.release(self.store.inbox_retry(event.id, owner, &why, at).await, &event);
                    return;
                }
            }
        }
        let started = std::time::Instant::now();
        let result = self.engine.run(flow, payload).await;
        let ms = started.elapsed().as_millis() as u64;
        metrics::histogram!(syncline_core::metric::FLOW_DURATION, "flow" => flow.name.clone()).record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                self.runs.add(&flow.name, outcome.name(), 1);
                tracing::info!(outcome = outcome.name(), ms, "event handled");
                // the audit trail keeps every event handled and what came of it
                let subject = event.object_key.as_deref().unwrap_or(&event.dedupe_key);
                let detail = serde_json::json!({
                    "flow": flow.name, "outcome": outcome.name(), "dedupe_key": event.dedupe_key, "event_type": event.event_type,
                    "occurred_at": event.occurred_at, "flow_ms": ms,
                });
                let version = ordering.as_ref().map(|(object, at)| (flow.name.as_str(), object.as_str(), *at));
                let audit = Some(("flow.handled", subject, &detail));
                self.release(self.store.inbox_finish_with(event.id, owner, version, audit).await, &event);
            }
            Err(failure) => {
                let worth_retrying = !matches!(failure.class, ErrorClass::Data | ErrorClass::Conflict);
                if worth_retrying && event.attempts < i64::from(flow.max_attempts) {
                    let wait = self.backoff(event.attempts, &failure.class);
                    tracing::warn!(outcome = "retried", ms, error = %failure, retry_in = ?wait, "event failed; will retry");
                    self.runs.add(&flow.name, "retried", 1);
                    let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    self.release(self.store.inbox_retry(event.id, owner, &failure.to_string(), at).await, &event);
                } else {
                    tracing::error!(outcome = "dead", ms, error = %failure, attempts = event.attempts, "event failed; kept as a dead letter");
                    self.runs.add(&flow.name, "dead", 1);
                    self.release(self.store.inbox_give_up(&event, owner, &flow.name, &failure).await, &event);
                }
            }
        }
    }

    /// Records this process's flow work in the sync history: a `runs` row per flow (mode
    /// `serve`), its counts brought up to date every few seconds until [`FlowHistory::finish`].
    /// Rows a killed process left `running` (silent for a minute) become `interrupted` first.
    pub async fn history(&self, flows: Vec<String>) -> FlowHistory {
        let mut rows = Vec::new();
        for flow in flows {
            let _ = self.store.mark_silent_interrupted(&flow, Duration::from_secs(60)).await;
            let id = uuid::Uuid::now_v7().to_string();
            match self.store.start_run(&id, &flow, "serve").await {
                Ok(()) => rows.push((flow, id)),
                Err(e) => tracing::warn!(%flow, error = %e, "cannot record the flow's run in the history"),
            }
        }
        let history = FlowHistory { store: self.store.clone(), runs: self.runs.clone(), rows: Arc::new(rows), ticker: None };
        let ticking = history.clone();
        FlowHistory {
            ticker: Some(Arc::new(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    ticking.save().await;
                }
            }))),
            ..history
        }
    }

    /// Exponential from `retry_base`, at least what the server asked for.
    fn backoff(&self, attempts: i64, class: &ErrorClass) -> Duration {
        let doubled = self.config.retry_base.saturating_mul(1 << attempts.clamp(1, 16).saturating_sub(1));
        let asked = match class {
            ErrorClass::Transient { retry_after: Some(wait) } => *wait,
            _ => Duration::ZERO,
        };
        doubled.min(self.config.retry_cap).max(asked)
    }

    fn release(&self, result: Result<bool, syncline_store::StoreError>, event: &InboxEvent) {
        match result {
            Ok(true) => {}
            // the lease ran out and another worker holds the event now; it will run it again
            Ok(false) => tracing::warn!(key = %event.dedupe_key, "lease lost before the event was released"),
            // the lease will expire and the event run again; the send's mark prevents a repeat
            Err(e) => tracing::error!(key = %event.dedupe_key, error = %e, "cannot record the event's outcome"),
        }
    }
}

/// A serve's flow work in the sync history (see [`Workers::history`]). In a flow's row, `read`
/// counts events run, `created` messages sent (or records a `pipeline` step created), `updated`
/// flows done without a send (or records updated), `unchanged` events already sent, filtered
/// out, stale or whose record was unchanged, `rejected` dead letters and `failed` retries.
#[derive(Clone)]
pub struct FlowHistory {
    store: Store,
    runs: Arc<Counters>,
    rows: Arc<Vec<(String, String)>>,
    ticker: Option<Arc<tokio::task::JoinHandle<()>>>,
}

impl FlowHistory {
    async fn save(&self) {
        let snapshot = self.runs.snapshot();
        for (flow, id) in self.rows.iter() {
            let mut counts = syncline_core::runner::Counts::default();
            for (_, outcome, n) in snapshot.iter().filter(|(f, ..)| f == flow) {
                counts.read += n;
                match *outcome {
                    "sent" | "created" => counts.created += n,
                    "done" | "updated" => counts.updated += n,
                    "already_sent" | "filtered" | "skipped_stale" | "unchanged" => counts.unchanged += n,
                    "dead" => counts.rejected += n,
                    _ => counts.failed += n,
                }
            }
            if let Err(e) = self.store.set_run_counts(id, &counts).await {
                tracing::debug!(%flow, error = %e, "cannot update the flow's run in the history");
            }
        }
    }

    /// Saves the final counts and closes the rows with `status`.
    pub async fn finish(self, status: syncline_core::RunStatus) {
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        self.save().await;
        for (_, id) in self.rows.iter() {
            let _ = self.store.finish_run(id, syncline_core::RunEnd::new(status)).await;
        }
    }
}
