//! A run's lease on its pipeline (the store's `run_leases`): taken before the run touches any
//! of the pipeline's state, renewed while it goes on, given back at its end. A second run of the
//! pipeline — another terminal, another instance — exits at once naming the holder, or with
//! `--wait` queues behind it; a holder killed without warning blocks nobody beyond the lease.

use std::time::Duration;

use syncline_store::{LeaseHolder, Store};

use crate::cmd::Session;
use crate::exit::CliError;

/// How long a lease lasts unless renewed, `SYNCLINE_RUN_LEASE_SECS` (default 30): the longest
/// a killed run keeps the next one waiting. Renewed every third of it.
fn ttl() -> Duration {
    let secs = std::env::var("SYNCLINE_RUN_LEASE_SECS").ok().and_then(|s| s.parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(secs.unwrap_or(30))
}

/// Names this process in the lease, so a second run can say who holds it.
fn holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into());
    format!("process {} on {host} ({})", std::process::id(), &uuid::Uuid::now_v7().simple().to_string()[24..])
}

pub struct RunLease {
    store: Store,
    pipeline: String,
    holder: String,
    renewing: tokio::task::JoinHandle<()>,
}

impl RunLease {
    /// Takes `pipeline`'s lease, or says who holds it (exit 1); with `wait`, waits for it.
    pub async fn take(store: &Store, pipeline: &str, wait: bool, session: &Session) -> Result<RunLease, CliError> {
        let holder = holder();
        let mut told = false;
        loop {
            let held = match RunLease::attempt(store, pipeline, &holder).await? {
                Ok(lease) => return Ok(lease),
                Err(held) => held,
            };
            if !wait {
                return Err(CliError::failed(format!(
                    "pipeline {pipeline} is running already: {} holds it since {} (until {} unless it renews it); \
                     wait for that run with `run {pipeline} --wait`",
                    held.holder, held.since, held.until
                )));
            }
            if !told && !session.quiet {
                eprintln!("{pipeline}: waiting for the run that {} began at {} …", held.holder, held.since);
                told = true;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = session.stop.cancelled() => return Err(CliError::interrupted()),
            }
        }
    }

    /// Takes `pipeline`'s lease if it is free (None: another run holds it).
    pub async fn try_take(store: &Store, pipeline: &str) -> Result<Option<RunLease>, CliError> {
        Ok(RunLease::attempt(store, pipeline, &holder()).await?.ok())
    }

    /// One try: the lease, renewed from now on, or who holds it.
    async fn attempt(store: &Store, pipeline: &str, holder: &str) -> Result<Result<RunLease, LeaseHolder>, CliError> {
        let ttl = ttl();
        let taken = store.take_run_lease(pipeline, holder, ttl).await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
        if let Some(held) = taken {
            return Ok(Err(held));
        }
        let (renewer, name, owner) = (store.clone(), pipeline.to_owned(), holder.to_owned());
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match renewer.renew_run_lease(&name, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(pipeline = %name, "the run's lease was taken over (it expired); another run may start"),
                    Err(e) => tracing::warn!(pipeline = %name, error = %e, "cannot renew the run's lease; trying again"),
                }
            }
        });
        Ok(Ok(RunLease { store: store.clone(), pipeline: pipeline.to_owned(), holder: holder.to_owned(), renewing }))
    }

    /// Gives the lease back (a run that cannot leaves it to expire).
    pub async fn release(self) {
        self.renewing.abort();
        if let Err(e) = self.store.release_run_lease(&self.pipeline, &self.holder).await {
            tracing::warn!(pipeline = %self.pipeline, error = %e, "cannot give the run's lease back; it expires by itself");
        }
    }
}
