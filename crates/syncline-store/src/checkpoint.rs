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
        let scope = &*batch.scope;
        let pipeline = &scope.pipeline;
        let mut tx = self.pool.begin().await?;

        if let Some(cursor) = &batch.cursor {
            sqlx::query(
                "INSERT INTO cursors (pipeline, source, target, cursor, run_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (pipeline, source, target) DO UPDATE SET cursor = excluded.cursor, run_id = excluded.run_id, updated_at = excluded.updated_at",
            )
            .bind(pipeline)
            .bind(&scope.source)
            .bind(&scope.target)
            .bind(cursor.0.to_string())
            .bind(&batch.run_id)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }

        // close first, so a record that passes and is rejected again in one page ends open
        for chunk in batch.passed_keys.chunks(CHUNK) {
            let sql = format!(
                "UPDATE dead_letters SET status = $1, closed_at = $2 WHERE pipeline = $3 AND status = 'open' AND record_key IN ({})",
                placeholders(4, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch.passed_status).bind(&at).bind(pipeline);
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(&mut *tx).await?;
        }

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
                    .bind(pipeline)
                    .bind(&dl.record_key)
                    .bind(dl.class.name())
                    .bind(&dl.field)
                    .bind(&dl.rule)
                    .bind(&dl.message)
                    .bind(dl.payload.to_string())
                    .bind(&batch.run_id)
                    .bind(&at)
                    .bind(&at);
            }
            query.execute(&mut *tx).await?;
        }

        for chunk in batch.fingerprints.chunks(CHUNK) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 5, 5))).collect();
            let sql = format!(
                "INSERT INTO record_hashes (pipeline, target, record_key, fingerprint, updated_at) VALUES {}
                 ON CONFLICT (pipeline, target, record_key) DO UPDATE SET fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, fingerprint) in chunk {
                query = query.bind(pipeline).bind(&scope.target).bind(key).bind(fingerprint).bind(&at);
            }
            query.execute(&mut *tx).await?;
        }

        let c = &batch.counts;
        sqlx::query(
            "UPDATE runs SET read_count = read_count + $1, created_count = created_count + $2, updated_count = updated_count + $3,
               unchanged_count = unchanged_count + $4, rejected_count = rejected_count + $5, failed_count = failed_count + $6,
               updated_at = $7 WHERE id = $8",
        )
        .bind(c.read as i64)
        .bind(c.created as i64)
        .bind(c.updated as i64)
        .bind(c.unchanged as i64)
        .bind(c.rejected as i64)
        .bind(c.failed as i64)
        .bind(&at)
        .bind(&batch.run_id)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(())
    }
}
