//! Schedules: `serve` runs each scheduled pipeline at its slots, on exactly one of the
//! instances sharing the store. Every instance looks once a second. A slot is due when it is
//! later than the one the store last marked for the pipeline; the instance that takes the
//! pipeline's run lease reads the mark again under it (another may have just run the slot),
//! runs, and marks the slot with its run before giving the lease back. So each slot runs once;
//! a run killed midway leaves its slot unmarked, for another instance once the lease expires;
//! after downtime only the latest missed slot runs; and a schedule seen for the first time
//! starts with its next slot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use syncline_store::Store;

use super::Session;
use super::lease::RunLease;
use crate::config::{Config, Pipeline, Schedule};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use crate::pipeline::Portals;

/// Runs the config's schedules until `session.stop`, each pipeline on its own, so a long run
/// of one does not hold back another's slot.
pub async fn run(config: &Config, store: &Store, session: &Session) {
    // a scheduled run prints nothing: its history row and the log say how it went
    let quiet =
        Session { config_path: session.config_path.clone(), quiet: true, init: false, expect_state: true, stop: session.stop.clone() };
    let scheduler = Scheduler { config, store, session: &quiet, portals: Portals::with_store(store.clone()) };
    let scheduled = config.pipelines.iter().filter_map(|p| p.schedule.as_ref().map(|s| (p, s)));
    futures_util::future::join_all(scheduled.map(|(pipeline, schedule)| scheduler.keep(pipeline, schedule))).await;
}

/// What every scheduled run of a process shares: the clients (so one budget per portal).
struct Scheduler<'a> {
    config: &'a Config,
    store: &'a Store,
    session: &'a Session,
    portals: Portals,
}

impl Scheduler<'_> {
    /// Looks at `pipeline`'s schedule every second until the stop, running what is due.
    async fn keep(&self, pipeline: &Pipeline, schedule: &Schedule) {
        while !self.session.stop.is_cancelled() {
            if let Err(error) = self.run_if_due(pipeline, schedule, Utc::now()).await {
                tracing::warn!(pipeline = %pipeline.name, error = %error.message, "schedule: cannot check or run the pipeline; trying again");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = self.session.stop.cancelled() => return,
            }
        }
    }

    /// Runs `pipeline` if a slot of its schedule is due at `now` and no run holds it.
    async fn run_if_due(&self, pipeline: &Pipeline, schedule: &Schedule, now: DateTime<Utc>) -> Result<(), CliError> {
        let Some(due) = schedule.latest_at_or_before(now) else { return Ok(()) };
        let marked = self.store.schedule(&pipeline.name).await.map_err(failed)?;
        let Some(marked) = marked else {
            tracing::info!(pipeline = %pipeline.name, %schedule, next = ?schedule.next_after(now), "schedule: first seen; it starts with its next slot");
            return self.store.mark_schedule(&pipeline.name, due, None).await.map_err(failed);
        };
        if marked.slot >= due {
            return Ok(());
        }
        // held: a run is going (this slot's on another instance, or one a person started)
        let Some(lease) = RunLease::try_take(self.store, &pipeline.name).await? else { return Ok(()) };
        let result = self.run_slot(pipeline, due).await;
        lease.release().await;
        result
    }

    /// Under the lease: runs the slot unless another instance just did, and marks it.
    async fn run_slot(&self, pipeline: &Pipeline, due: DateTime<Utc>) -> Result<(), CliError> {
        let store = self.store;
        if store.schedule(&pipeline.name).await.map_err(failed)?.is_some_and(|marked| marked.slot >= due) {
            return Ok(());
        }
        tracing::info!(pipeline = %pipeline.name, slot = %due, "schedule: running");
        let outcome = super::run::scheduled(self.config, store, &self.portals, pipeline, self.session).await;
        let interrupted = match &outcome {
            Ok(row) => row.exit() == Exit::Interrupted,
            Err(error) => error.code == Exit::Interrupted,
        };
        if interrupted {
            // stopped by a shutdown: the slot stays due, for another instance or the next start
            tracing::info!(pipeline = %pipeline.name, slot = %due, "schedule: run interrupted; the slot stays due");
            return Ok(());
        }
        let run = store.runs(Some(&pipeline.name), 1).await.map_err(failed)?.into_iter().next();
        store.mark_schedule(&pipeline.name, due, run.as_ref().map(|r| r.id.as_str())).await.map_err(failed)?;
        match outcome {
            Ok(row) => tracing::info!(pipeline = %pipeline.name, slot = %due, status = row.status.name(), "schedule: run ended"),
            Err(error) => tracing::warn!(pipeline = %pipeline.name, slot = %due, error = %error.message, "schedule: run failed"),
        }
        Ok(())
    }
}

fn failed(error: syncline_store::StoreError) -> CliError {
    CliError::failed(format!("state store: {error}"))
}

/// `syncline schedules`: each scheduled pipeline's next slot, its last and how that run went.
pub async fn list(config: &Config, store: &Store) -> CliResult {
    let scheduled: Vec<(&Pipeline, &Schedule)> = config.pipelines.iter().filter_map(|p| p.schedule.as_ref().map(|s| (p, s))).collect();
    if scheduled.is_empty() {
        output::line(format!("no pipeline in {} has a schedule (add `schedule: {{cron: \"*/15 * * * *\"}}` to one)", config.file));
        return Ok(Exit::Ok);
    }
    let now = Utc::now();
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut table = output::table(&["pipeline", "schedule", "next", "last slot", "last run", "status"]);
    for (pipeline, schedule) in scheduled {
        let marked = store.schedule(&pipeline.name).await.map_err(failed)?;
        let run = match marked.as_ref().and_then(|m| m.run_id.as_deref()) {
            Some(id) => Some(store.run(id).await.map_err(failed)?),
            None => None,
        };
        let last = match &marked {
            Some(m) if m.run_id.is_none() => format!("{} (passed over)", time(m.slot)),
            Some(m) => time(m.slot),
            None => "-".into(),
        };
        // a slot due and not yet marked runs within a second of serve seeing it
        let due = schedule.latest_at_or_before(now).filter(|due| marked.as_ref().is_some_and(|m| m.slot < *due));
        let next = match due {
            Some(due) => format!("{} (due)", time(due)),
            None => schedule.next_after(now).map_or("-".into(), time),
        };
        table.add_row([
            pipeline.name.clone(),
            schedule.to_string(),
            next,
            last,
            run.as_ref().map_or("-".into(), |r| r.started_at.get(..19).unwrap_or(&r.started_at).replace('T', " ")),
            run.map_or("-".into(), |r| r.status),
        ]);
    }
    output::print_table(&table);
    Ok(Exit::Ok)
}
