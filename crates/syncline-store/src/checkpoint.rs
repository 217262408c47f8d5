//! The runner's view of the store: fingerprints and the one-transaction page commit.

use crate::{Store, StoreError, now, placeholders};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use syncline_core::ConnectorError;
use syncline_core::runner::{BatchCommit, Checkpoint, Scope};

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's parameter limits.
const CHUNK: usize = 500;

impl Checkpoint for Store {
    async fn fingerprints(&self, scope: &Arc<Scope>, keys: Vec<String>) -> Result<HashMap<String, String>, ConnectorError> {
        self.load_fingerprints(scope, keys).await.map_err(StoreError::into_connector_error)
    }

    async fn commit(&self, batch: &Arc<BatchCommit>) -> Result<(), ConnectorError> {
        let result = self.commit_batch(batch).await;
        self.note_commit(&result);
        result.map_err(StoreError::into_connector_error)
    }

    async fn open_dead_letter_keys(&self, pipeline: &str) -> Result<HashSet<String>, ConnectorError> {
        let keys: Vec<(String,)> = sqlx::query_as("SELECT record_key FROM dead_letters WHERE pipeline = $1 AND status = 'open'")
            .bind(pipeline)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from(e).into_connector_error())?;
        Ok(keys.into_iter().map(|(k,)| k).collect())
    }
}

impl Store {
    async fn load_fingerprints(&self, scope: &Arc<Scope>, keys: Vec<String>) -> Result<HashMap<String, String>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        if let Some(writer) = &self.writer {
            let scope = Arc::clone(scope);
            return writer
                .apart(move |conn| {
                    for chunk in keys.chunks(CHUNK) {
                        let mut statement = conn.prepare_cached(&fingerprints_of_sql(chunk.len()))?;
                        let head: [&dyn rusqlite::ToSql; 2] = [&scope.pipeline, &scope.target];
                        let values = head.into_iter().chain(chunk.iter().map(|k| k as &dyn rusqlite::ToSql));
                        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
                        while let Some(row) = rows.next()? {
                            found.insert(row.get(0)?, row.get(1)?);
                        }
                    }
                    Ok(found)
                })
                .await;
        }
        for chunk in keys.chunks(CHUNK) {
            let sql = fingerprints_of_sql(chunk.len());
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(&scope.pipeline).bind(&scope.target);
            for key in chunk {
                query = query.bind(key);
            }
            found.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(found)
    }

    /// Commits one page: cursor, dead letters, fingerprints, closed dead letters and the run's
    /// counters, all or nothing. On SQLite through the store's own connection, each statement
    /// prepared once (`writer.rs`); the SQL text is the same for both.
    pub async fn commit_batch(&self, batch: &Arc<BatchCommit>) -> Result<(), StoreError> {
        let at = now();
        if let Some(writer) = &self.writer {
            let batch = Arc::clone(batch);
            return writer.apart(move |conn| crate::writer::immediate(conn, |tx| commit_prepared(tx, &batch, &at))).await;
        }
        let mut tx = self.pool.begin().await?;
        if let Some(cursor) = &batch.cursor {
            save_cursor(&mut tx, batch, cursor, &at).await?;
        }
        // close first, so a record that passes and is rejected again in one page ends open
        close_dead_letters(&mut tx, batch, &at).await?;
        save_dead_letters(&mut tx, batch, &at).await?;
        save_fingerprints(&mut tx, batch, &at).await?;
        add_run_counts(&mut tx, batch, &at).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The fingerprints stored for `keys` keys: `$1` pipeline, `$2` target, the keys.
fn fingerprints_of_sql(keys: usize) -> String {
    format!(
        "SELECT record_key, fingerprint FROM record_hashes WHERE pipeline = $1 AND target = $2 AND record_key IN ({})",
        placeholders(3, keys)
    )
}

const CURSOR_SQL: &str = "INSERT INTO cursors (pipeline, source, target, cursor, run_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (pipeline, source, target) DO UPDATE SET cursor = excluded.cursor, run_id = excluded.run_id, updated_at = excluded.updated_at";

/// Closes the open dead letters of `keys` keys: `$1` status, `$2` when, `$3` pipeline, the keys.
fn close_sql(keys: usize) -> String {
    format!(
        "UPDATE dead_letters SET status = $1, closed_at = $2 WHERE pipeline = $3 AND status = 'open' AND record_key IN ({})",
        placeholders(4, keys)
    )
}

/// Ten values per dead letter: pipeline, key, class, field, rule, message, payload, run id,
/// first and last seen.
fn dead_letters_sql(rows: usize) -> String {
    let rows: Vec<String> = (0..rows).map(|i| format!("({})", placeholders(1 + i * 10, 10))).collect();
    format!(
        "INSERT INTO dead_letters (pipeline, record_key, class, field, rule, message, payload, run_id, first_seen_at, last_seen_at) VALUES {}
         ON CONFLICT (pipeline, record_key) WHERE status = 'open' DO UPDATE SET
           class = excluded.class, field = excluded.field, rule = excluded.rule, message = excluded.message,
           payload = excluded.payload, run_id = excluded.run_id, last_seen_at = excluded.last_seen_at,
           attempts = dead_letters.attempts + 1",
        rows.join(", ")
    )
}

/// Five values per fingerprint: pipeline, target, key, fingerprint, when.
fn fingerprints_sql(rows: usize) -> String {
    let rows: Vec<String> = (0..rows).map(|i| format!("({})", placeholders(1 + i * 5, 5))).collect();
    format!(
        "INSERT INTO record_hashes (pipeline, target, record_key, fingerprint, updated_at) VALUES {}
         ON CONFLICT (pipeline, target, record_key) DO UPDATE SET fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
        rows.join(", ")
    )
}

/// A page's commit on SQLite's own connection: the statements `commit_batch` runs on the pool,
/// the same text, bound by position (`$n` numbers every value once, in order).
fn commit_prepared(tx: &rusqlite::Transaction<'_>, batch: &BatchCommit, at: &str) -> rusqlite::Result<()> {
    use rusqlite::ToSql;
    fn run<'v>(tx: &rusqlite::Transaction<'_>, sql: &str, values: impl Iterator<Item = &'v dyn ToSql>) -> rusqlite::Result<()> {
        let mut statement = tx.prepare_cached(sql)?;
        for (i, value) in values.enumerate() {
            statement.raw_bind_parameter(i + 1, value)?;
        }
        statement.raw_execute().map(drop)
    }
    let scope = &*batch.scope;
    if let Some(cursor) = &batch.cursor {
        let text = cursor.0.to_string();
        let values: [&dyn ToSql; 6] = [&scope.pipeline, &scope.source, &scope.target, &text, &batch.run_id, &at];
        run(tx, CURSOR_SQL, values.into_iter())?;
    }
    for chunk in batch.passed_keys.chunks(CHUNK) {
        let head: [&dyn ToSql; 3] = [&batch.passed_status, &at, &scope.pipeline];
        run(tx, &close_sql(chunk.len()), head.into_iter().chain(chunk.iter().map(|k| k as &dyn ToSql)))?;
    }
    for chunk in batch.dead_letters.chunks(CHUNK / 10) {
        let texts: Vec<(String, String)> = chunk.iter().map(|dl| (dl.class.name().to_string(), dl.payload.to_string())).collect();
        let values = chunk.iter().zip(&texts).flat_map(|(dl, (class, payload))| {
            let row: [&dyn ToSql; 10] =
                [&scope.pipeline, &dl.record_key, class, &dl.field, &dl.rule, &dl.message, payload, &batch.run_id, &at, &at];
            row
        });
        run(tx, &dead_letters_sql(chunk.len()), values)?;
    }
    for chunk in batch.fingerprints.chunks(CHUNK) {
        let values = chunk.iter().flat_map(|(key, fingerprint)| {
            let row: [&dyn ToSql; 5] = [&scope.pipeline, &scope.target, key, fingerprint, &at];
            row
        });
        run(tx, &fingerprints_sql(chunk.len()), values)?;
    }
    let counts = crate::runs::count_values(&batch.counts);
    let values = counts.iter().map(|n| n as &dyn ToSql).chain([&at as &dyn ToSql, &batch.run_id as &dyn ToSql]);
    run(tx, &crate::runs::counts_sql(crate::runs::CountsUpdate::Add), values)
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

async fn save_cursor(tx: &mut Tx<'_>, batch: &BatchCommit, cursor: &syncline_core::Cursor, at: &str) -> Result<(), StoreError> {
    let scope = &*batch.scope;
    sqlx::query(CURSOR_SQL)
        .bind(&scope.pipeline)
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(cursor.0.to_string())
        .bind(&batch.run_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The open dead letters of keys that went through get the batch's `passed_status`.
async fn close_dead_letters(tx: &mut Tx<'_>, batch: &BatchCommit, at: &str) -> Result<(), StoreError> {
    for chunk in batch.passed_keys.chunks(CHUNK) {
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(close_sql(chunk.len()))).bind(batch.passed_status).bind(at).bind(&batch.scope.pipeline);
        for key in chunk {
            query = query.bind(key);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// New dead letters, or another attempt of an open one for the same key.
async fn save_dead_letters(tx: &mut Tx<'_>, batch: &BatchCommit, at: &str) -> Result<(), StoreError> {
    for chunk in batch.dead_letters.chunks(CHUNK / 10) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(dead_letters_sql(chunk.len())));
        for dl in chunk {
            query = query
                .bind(&batch.scope.pipeline)
                .bind(&dl.record_key)
                .bind(dl.class.name())
                .bind(&dl.field)
                .bind(&dl.rule)
                .bind(&dl.message)
                .bind(dl.payload.to_string())
                .bind(&batch.run_id)
                .bind(at)
                .bind(at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn save_fingerprints(tx: &mut Tx<'_>, batch: &BatchCommit, at: &str) -> Result<(), StoreError> {
    let scope = &*batch.scope;
    for chunk in batch.fingerprints.chunks(CHUNK) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(fingerprints_sql(chunk.len())));
        for (key, fingerprint) in chunk {
            query = query.bind(&scope.pipeline).bind(&scope.target).bind(key).bind(fingerprint).bind(at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn add_run_counts(tx: &mut Tx<'_>, batch: &BatchCommit, at: &str) -> Result<(), StoreError> {
    crate::runs::update_counts(&batch.run_id, &batch.counts, crate::runs::CountsUpdate::Add, at).execute(&mut **tx).await?;
    Ok(())
}
