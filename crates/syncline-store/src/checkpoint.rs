//! The runner's view of the store: fingerprints and the one-transaction page commit.

use crate::{Store, StoreError, now, placeholders};
use std::collections::{HashMap, HashSet};
use syncline_core::ConnectorError;
use syncline_core::runner::{BatchCommit, Checkpoint, Scope};

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's parameter limits.
const CHUNK: usize = 500;

impl Checkpoint for Store {
    async fn fingerprints(&self, scope: &Scope, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        self.load_fingerprints(scope, keys).await.map_err(StoreError::into_connector_error)
    }

    async fn commit(&self, batch: &BatchCommit) -> Result<(), ConnectorError> {
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
    async fn load_fingerprints(&self, scope: &Scope, keys: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "SELECT record_key, fingerprint FROM record_hashes WHERE pipeline = $1 AND target = $2 AND record_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(&scope.pipeline).bind(&scope.target);
            for key in chunk {
                query = query.bind(key);
            }
            found.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(found)
    }

    /// Commits one page: cursor, dead letters, fingerprints, closed dead letters and the run's
    /// counters, all or nothing.
    pub async fn commit_batch(&self, batch: &BatchCommit) -> Result<(), StoreError> {
        let at = now();
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

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

async fn save_cursor(tx: &mut Tx<'_>, batch: &BatchCommit, cursor: &syncline_core::Cursor, at: &str) -> Result<(), StoreError> {
    let scope = &*batch.scope;
    sqlx::query(
        "INSERT INTO cursors (pipeline, source, target, cursor, run_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (pipeline, source, target) DO UPDATE SET cursor = excluded.cursor, run_id = excluded.run_id, updated_at = excluded.updated_at",
    )
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
        let sql = format!(
            "UPDATE dead_letters SET status = $1, closed_at = $2 WHERE pipeline = $3 AND status = 'open' AND record_key IN ({})",
            placeholders(4, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch.passed_status).bind(at).bind(&batch.scope.pipeline);
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
        let rows: Vec<String> = (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 10, 10))).collect();
        let sql = format!(
            "INSERT INTO dead_letters (pipeline, record_key, class, field, rule, message, payload, run_id, first_seen_at, last_seen_at) VALUES {}
             ON CONFLICT (pipeline, record_key) WHERE status = 'open' DO UPDATE SET
               class = excluded.class, field = excluded.field, rule = excluded.rule, message = excluded.message,
               payload = excluded.payload, run_id = excluded.run_id, last_seen_at = excluded.last_seen_at,
               attempts = dead_letters.attempts + 1",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
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
        let rows: Vec<String> = (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 5, 5))).collect();
        let sql = format!(
            "INSERT INTO record_hashes (pipeline, target, record_key, fingerprint, updated_at) VALUES {}
             ON CONFLICT (pipeline, target, record_key) DO UPDATE SET fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
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
