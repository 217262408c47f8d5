//! Sync history and cursors.

use crate::{Store, StoreError, now};
use serde::Serialize;
use syncline_core::runner::RunMode;
use syncline_core::runner::{Counts, Scope};
use syncline_core::{ConnectorError, Cursor, History, RunEnd};

/// One row of sync history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub mode: String,
    /// `running`, `succeeded`, `rejects` (finished with dead letters), `failed`, `interrupted`;
    /// a serve's flow runs end `stopped`.
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
    /// What the source checked of its read (`Source::audit`).
    pub audit: Option<String>,
}

type Row = (String, String, String, String, String, Option<String>, i64, i64, i64, i64, i64, i64, Option<String>, Option<String>);

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
            audit: r.13,
        }
    }
}

const COLUMNS: &str = "id, pipeline, mode, status, started_at, finished_at, read_count, created_count, updated_count, unchanged_count, rejected_count, failed_count, error, audit";

/// A committed cursor and whose it is: the pipeline reading `source` into `target` (both empty
/// for cursors stored before state was tied to them; no run uses those).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CursorRow {
    pub pipeline: String,
    pub source: String,
    pub target: String,
    pub cursor: serde_json::Value,
    pub run_id: Option<String>,
    pub updated_at: String,
}

/// How many change-detection fingerprints a pipeline keeps for one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FingerprintCount {
    pub pipeline: String,
    pub target: String,
    pub records: i64,
    pub updated_at: String,
}

impl Store {
    pub async fn start_run(&self, id: &str, pipeline: &str, mode: &str) -> Result<(), StoreError> {
        let at = now();
        sqlx::query("INSERT INTO runs (id, pipeline, mode, status, started_at, updated_at) VALUES ($1, $2, $3, 'running', $4, $4)")
            .bind(id)
            .bind(pipeline)
            .bind(mode)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Settles a run's mode once it is known (see `syncline run`'s `--since`).
    pub async fn set_run_mode(&self, id: &str, mode: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET mode = $1 WHERE id = $2").bind(mode).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes a run. Counts of committed pages were added as they committed; `counts` here
    /// only fills in what a dry run (which commits nothing) saw.
    pub async fn finish_run(&self, id: &str, end: RunEnd<'_>) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, finished_at = $2, error = $3, audit = $4 WHERE id = $5")
            .bind(end.status.name())
            .bind(now())
            .bind(end.error)
            .bind(end.audit)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if let Some(counts) = end.dry_run_counts {
            self.set_run_counts(id, counts).await?;
        }
        Ok(())
    }

    /// Replaces a run's counts (a dry run's, which commit nothing; a serve's flow work) and
    /// notes that it is alive.
    pub async fn set_run_counts(&self, id: &str, c: &Counts) -> Result<(), StoreError> {
        update_counts(id, c, CountsUpdate::Replace, &now()).execute(&self.pool).await?;
        Ok(())
    }

    /// Runs of `pipeline` still marked `running` that have shown no sign of life since
    /// `silent_for` become `interrupted` (their process is gone).
    pub async fn mark_silent_interrupted(&self, pipeline: &str, silent_for: std::time::Duration) -> Result<u64, StoreError> {
        let before = crate::format_time(chrono::Utc::now() - chrono::Duration::from_std(silent_for).unwrap_or_default());
        let done = sqlx::query(
            "UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE pipeline = $2 AND status = 'running' AND COALESCE(updated_at, started_at) < $3",
        )
        .bind(now())
        .bind(pipeline)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
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

    /// A page of runs, newest first, started before `before` (a run's `started_at` and `id`,
    /// the previous page's last) if given.
    pub async fn run_page(&self, pipeline: Option<&str>, before: Option<(&str, &str)>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let (at, id) = before.unzip();
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE ($1 IS NULL OR pipeline = $1)
             AND ($2 IS NULL OR started_at < $2 OR (started_at = $2 AND id < $3))
             ORDER BY started_at DESC, id DESC LIMIT $4"
        );
        let rows =
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(pipeline).bind(at).bind(id).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(RunRow::from).collect())
    }

    /// The runs still running, oldest first.
    pub async fn running_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE status = 'running' ORDER BY started_at, id");
        let rows = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
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

    /// The cursor committed for this pipeline, source and target.
    pub async fn cursor(&self, scope: &Scope) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT cursor FROM cursors WHERE pipeline = $1 AND source = $2 AND target = $3")
            .bind(&scope.pipeline)
            .bind(&scope.source)
            .bind(&scope.target)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(json,)| serde_json::from_str(&json).ok()).map(Cursor))
    }

    /// Every committed cursor (of one pipeline, if given).
    pub async fn cursors(&self, pipeline: Option<&str>) -> Result<Vec<CursorRow>, StoreError> {
        let rows: Vec<(String, String, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT pipeline, source, target, cursor, run_id, updated_at FROM cursors
             WHERE ($1 IS NULL OR pipeline = $1) ORDER BY pipeline, updated_at DESC",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(pipeline, source, target, cursor, run_id, updated_at)| CursorRow {
                pipeline,
                source,
                target,
                cursor: serde_json::from_str(&cursor).unwrap_or_default(),
                run_id,
                updated_at,
            })
            .collect())
    }

    /// The fingerprints kept per pipeline and target (of one pipeline, if given).
    pub async fn fingerprint_counts(&self, pipeline: Option<&str>) -> Result<Vec<FingerprintCount>, StoreError> {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT pipeline, target, COUNT(*), MAX(updated_at) FROM record_hashes
             WHERE ($1 IS NULL OR pipeline = $1) GROUP BY pipeline, target ORDER BY pipeline, target",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(pipeline, target, records, updated_at)| FingerprintCount { pipeline, target, records, updated_at })
            .collect())
    }

    /// Sets the cursor of a pipeline, source and target by hand (`syncline state set`), with an
    /// audit row saying what it was before.
    pub async fn set_cursor(&self, scope: &Scope, cursor: &Cursor) -> Result<Option<Cursor>, StoreError> {
        let before = self.cursor(scope).await?;
        let at = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO cursors (pipeline, source, target, cursor, run_id, updated_at) VALUES ($1, $2, $3, $4, NULL, $5)
             ON CONFLICT (pipeline, source, target) DO UPDATE SET cursor = excluded.cursor, run_id = NULL, updated_at = excluded.updated_at",
        )
        .bind(&scope.pipeline)
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(cursor.0.to_string())
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "source": scope.source, "target": scope.target, "before": before.as_ref().map(|c| &c.0), "after": cursor.0 });
        sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, 'state_set', $2, NULL, $3)")
            .bind(&at)
            .bind(&scope.pipeline)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before)
    }

    /// State from before cursors were tied to a source and target (stored with both empty) is
    /// adopted by the first source and target that run the pipeline after the upgrade, when they
    /// have none of their own: that run continues where the old ones stopped instead of reading
    /// and writing everything again. Audited. Returns (cursors, fingerprints) adopted.
    pub async fn adopt_unscoped_state(&self, scope: &Scope) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let cursors = sqlx::query(
            "UPDATE cursors SET source = $1, target = $2 WHERE pipeline = $3 AND source = '' AND target = ''
             AND NOT EXISTS (SELECT 1 FROM cursors AS own WHERE own.pipeline = $3 AND own.source = $1 AND own.target = $2)",
        )
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(&scope.pipeline)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let hashes = sqlx::query(
            "UPDATE record_hashes SET target = $1 WHERE pipeline = $2 AND target = ''
             AND NOT EXISTS (SELECT 1 FROM record_hashes AS own WHERE own.pipeline = $2 AND own.target = $1)",
        )
        .bind(&scope.target)
        .bind(&scope.pipeline)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if cursors + hashes > 0 {
            let detail = serde_json::json!({ "source": scope.source, "target": scope.target, "cursors": cursors, "fingerprints": hashes });
            sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, 'state_adopted', $2, NULL, $3)")
                .bind(now())
                .bind(&scope.pipeline)
                .bind(detail.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((cursors, hashes))
    }

    /// Forgets a pipeline's cursors and fingerprints (every source and target), so its next run
    /// reads and writes everything; dead letters and history stay. Returns (cursors removed,
    /// fingerprints removed).
    pub async fn clear_state(&self, pipeline: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let cursors = sqlx::query("DELETE FROM cursors WHERE pipeline = $1").bind(pipeline).execute(&mut *tx).await?.rows_affected();
        let hashes = sqlx::query("DELETE FROM record_hashes WHERE pipeline = $1").bind(pipeline).execute(&mut *tx).await?.rows_affected();
        sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, 'state_clear', $2, NULL, $3)")
            .bind(now())
            .bind(pipeline)
            .bind(serde_json::json!({ "cursors": cursors, "fingerprints": hashes }).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((cursors, hashes))
    }
}

/// Whether `update_counts` replaces a run's counts or adds to them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountsUpdate {
    Replace,
    Add,
}

/// The `UPDATE runs` that sets run `id`'s counts (or adds `c` to them), marking it alive at `at`.
pub(crate) fn update_counts<'q>(
    id: &'q str,
    c: &Counts,
    how: CountsUpdate,
    at: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    count_values(c).into_iter().fold(sqlx::query(sqlx::AssertSqlSafe(counts_sql(how))), |query, n| query.bind(n)).bind(at).bind(id)
}

/// `update_counts`' statement: the six counts `$1`…`$6`, then `updated_at` and the run's id.
pub(crate) fn counts_sql(how: CountsUpdate) -> String {
    let columns = ["read_count", "created_count", "updated_count", "unchanged_count", "rejected_count", "failed_count"];
    let set: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| match how {
            CountsUpdate::Replace => format!("{column} = ${}", i + 1),
            CountsUpdate::Add => format!("{column} = {column} + ${}", i + 1),
        })
        .collect();
    format!("UPDATE runs SET {}, updated_at = $7 WHERE id = $8", set.join(", "))
}

/// The counts in `counts_sql`'s order.
pub(crate) fn count_values(c: &Counts) -> [i64; 6] {
    [c.read, c.created, c.updated, c.unchanged, c.rejected, c.failed].map(|n| n as i64)
}

/// The store as the runner's history (`syncline_core::execute`).
impl History for Store {
    async fn record_start(&self, run_id: &str, pipeline: &str, mode: RunMode) -> Result<(), ConnectorError> {
        self.start_run(run_id, pipeline, mode.name()).await.map_err(StoreError::into_connector_error)
    }

    async fn record_mode(&self, run_id: &str, mode: RunMode) -> Result<(), ConnectorError> {
        self.set_run_mode(run_id, mode.name()).await.map_err(StoreError::into_connector_error)
    }

    async fn record_end(&self, run_id: &str, end: RunEnd<'_>) -> Result<(), ConnectorError> {
        self.finish_run(run_id, end).await.map_err(StoreError::into_connector_error)
    }
}
