//! Sync history and cursors.

use crate::{Store, StoreError, now};
use serde::Serialize;
use syncline_core::Cursor;
use syncline_core::runner::Counts;

/// One row of sync history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub mode: String,
    /// `running`, `succeeded`, `rejects` (finished with dead letters), `failed`, `interrupted`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub read_count: i64,
    pub created_count: i64,
    pub updated_count: i64,
    pub unchanged_count: i64,
    pub rejected_count: i64,
    pub failed_count: i64,
    pub error: Option<String>,
}

type Row = (String, String, String, String, String, Option<String>, i64, i64, i64, i64, i64, i64, Option<String>);

impl From<Row> for RunRow {
    fn from(r: Row) -> Self {
        RunRow {
            id: r.0,
            pipeline: r.1,
            mode: r.2,
            status: r.3,
            started_at: r.4,
            finished_at: r.5,
            read_count: r.6,
            created_count: r.7,
            updated_count: r.8,
            unchanged_count: r.9,
            rejected_count: r.10,
            failed_count: r.11,
            error: r.12,
        }
    }
}

const COLUMNS: &str = "id, pipeline, mode, status, started_at, finished_at, read_count, created_count, updated_count, unchanged_count, rejected_count, failed_count, error";

/// A pipeline's committed cursor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CursorRow {
    pub pipeline: String,
    pub cursor: serde_json::Value,
    pub run_id: Option<String>,
    pub updated_at: String,
}

impl Store {
    pub async fn start_run(&self, id: &str, pipeline: &str, mode: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO runs (id, pipeline, mode, status, started_at) VALUES ($1, $2, $3, 'running', $4)")
            .bind(id)
            .bind(pipeline)
            .bind(mode)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes a run. Counts of committed pages were added as they committed; `counts` here
    /// only fills in what a dry run (which commits nothing) saw.
    pub async fn finish_run(&self, id: &str, status: &str, error: Option<&str>, dry_run_counts: Option<&Counts>) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, finished_at = $2, error = $3 WHERE id = $4")
            .bind(status)
            .bind(now())
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if let Some(c) = dry_run_counts {
            sqlx::query("UPDATE runs SET read_count = $1, created_count = $2, updated_count = $3, unchanged_count = $4, rejected_count = $5, failed_count = $6 WHERE id = $7")
                .bind(c.read as i64)
                .bind(c.created as i64)
                .bind(c.updated as i64)
                .bind(c.unchanged as i64)
                .bind(c.rejected as i64)
                .bind(c.failed as i64)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Runs still marked `running` whose process is gone become `interrupted` (called at start).
    pub async fn mark_interrupted(&self, pipeline: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE pipeline = $2 AND status = 'running'")
            .bind(now())
            .bind(pipeline)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The newest runs first.
    pub async fn runs(&self, pipeline: Option<&str>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE ($1 IS NULL OR pipeline = $1) ORDER BY started_at DESC, id DESC LIMIT $2");
        let rows = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(pipeline).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(RunRow::from).collect())
    }

    pub async fn run(&self, id: &str) -> Result<RunRow, StoreError> {
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM runs WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(RunRow::from)
            .ok_or_else(|| StoreError::NotFound(format!("no run {id}")))
    }

    pub async fn cursor(&self, pipeline: &str) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT cursor FROM cursors WHERE pipeline = $1").bind(pipeline).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|(json,)| serde_json::from_str(&json).ok()).map(Cursor))
    }

    pub async fn cursors(&self) -> Result<Vec<CursorRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>, String)> =
            sqlx::query_as("SELECT pipeline, cursor, run_id, updated_at FROM cursors ORDER BY pipeline").fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(pipeline, cursor, run_id, updated_at)| CursorRow {
                pipeline,
                cursor: serde_json::from_str(&cursor).unwrap_or_default(),
                run_id,
                updated_at,
            })
            .collect())
    }

    /// Forgets a pipeline's cursor and fingerprints, so its next run reads and writes
    /// everything. Returns (cursors removed, fingerprints removed).
    pub async fn reset(&self, pipeline: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let cursors = sqlx::query("DELETE FROM cursors WHERE pipeline = $1").bind(pipeline).execute(&mut *tx).await?.rows_affected();
        let hashes = sqlx::query("DELETE FROM record_hashes WHERE pipeline = $1").bind(pipeline).execute(&mut *tx).await?.rows_affected();
        sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, 'state_reset', $2, NULL, $3)")
            .bind(now())
            .bind(pipeline)
            .bind(serde_json::json!({ "cursors": cursors, "fingerprints": hashes }).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((cursors, hashes))
    }
}
