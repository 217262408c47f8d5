//! Run leases: a pipeline runs in at most one process at a time, on SQLite and PostgreSQL
//! alike. A run takes its pipeline's lease (one upsert that only replaces a lease expired or
//! its own), renews it while it runs and releases it at its end; a holder that dies leaves it
//! to expire.

use std::time::Duration;

use chrono::Utc;

use crate::{Store, StoreError, format_time};

/// Who holds a pipeline's lease, since when, and until when unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub since: String,
    pub until: String,
}

impl Store {
    /// Takes `pipeline`'s lease for `holder` for `ttl`: None when taken, or who holds it.
    pub async fn take_run_lease(&self, pipeline: &str, holder: &str, ttl: Duration) -> Result<Option<LeaseHolder>, StoreError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        // times compare as text: one format, UTC, milliseconds
        let taken = sqlx::query(
            "INSERT INTO run_leases (pipeline, holder, since, until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (pipeline) DO UPDATE SET holder = excluded.holder, since = excluded.since, until = excluded.until \
             WHERE run_leases.until < excluded.since OR run_leases.holder = excluded.holder",
        )
        .bind(pipeline)
        .bind(holder)
        .bind(format_time(now))
        .bind(format_time(until))
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(None);
        }
        let held: Option<(String, String, String)> = sqlx::query_as("SELECT holder, since, until FROM run_leases WHERE pipeline = $1")
            .bind(pipeline)
            .fetch_optional(&self.pool)
            .await?;
        match held {
            Some((holder, since, until)) => Ok(Some(LeaseHolder { holder, since, until })),
            // released between the two statements: try again
            None => Box::pin(self.take_run_lease(pipeline, holder, ttl)).await,
        }
    }

    /// Extends `holder`'s lease by `ttl` from now; false when it holds it no longer.
    pub async fn renew_run_lease(&self, pipeline: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let until = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let renewed = sqlx::query("UPDATE run_leases SET until = $1 WHERE pipeline = $2 AND holder = $3")
            .bind(format_time(until))
            .bind(pipeline)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives `holder`'s lease back.
    pub async fn release_run_lease(&self, pipeline: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM run_leases WHERE pipeline = $1 AND holder = $2").bind(pipeline).bind(holder).execute(&self.pool).await?;
        Ok(())
    }
}
