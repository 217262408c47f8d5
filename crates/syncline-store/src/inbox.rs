//! The webhook inbox: verified events stored durably before the sender gets its 2xx, then
//! claimed by workers under a lease, and finished, retried later or given up on.
//!
//! Each event has a dedupe key; a redelivered event is acknowledged as a duplicate and never
//! stored twice. A claim marks its events `running` under the claimer's lease in one statement,
//! so no two workers hold one event, and it skips events whose object has another event
//! running; on PostgreSQL, claims by several `serve` instances take turns through an advisory
//! lock so each sees the others' running events. A lease that runs out (its worker died) makes
//! the event claimable again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use syncline_core::RecordError;

use crate::{Backend, Store, StoreError, format_time, now, only_given, placeholders};

/// One event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The configured webhook source (`hubspot`, `stripe`…).
    pub source: String,
    pub dedupe_key: String,
    pub event_type: String,
    /// The event's own JSON.
    pub payload: String,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The object it is about (`<portal>:<objectId>` for HubSpot): while one event of an object
    /// runs, no other event of that object is claimed, by any worker or instance.
    pub object_key: Option<String>,
    /// The W3C `traceparent` of the delivery that brought it (its flow continues that trace).
    pub trace_parent: Option<String>,
}

/// What storing one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    pub stored: usize,
    /// Events whose dedupe key was already there (acknowledged, not stored again).
    pub duplicates: usize,
}

/// A claimed event.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEvent {
    pub id: i64,
    pub source: String,
    pub dedupe_key: String,
    pub event_type: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i64,
    pub occurred_at: Option<String>,
    /// The object it is about, as stored (`NewEvent::object_key`).
    pub object_key: Option<String>,
    /// The delivery's trace, as stored (`NewEvent::trace_parent`).
    pub trace_parent: Option<String>,
}

/// One inbox event as `syncline inbox list|show` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxRow {
    pub id: i64,
    pub source: String,
    pub event_type: String,
    pub dedupe_key: String,
    pub status: String,
    pub attempts: i64,
    pub occurred_at: Option<String>,
    pub received_at: String,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    /// The object it is about (its audit trail's subject).
    pub object_key: Option<String>,
    /// Only filled by [`Store::inbox_event`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

type InboxRowTuple =
    (i64, String, String, String, String, i64, Option<String>, String, String, Option<String>, Option<String>, Option<String>);

impl From<InboxRowTuple> for InboxRow {
    fn from(r: InboxRowTuple) -> Self {
        InboxRow {
            id: r.0,
            source: r.1,
            event_type: r.2,
            dedupe_key: r.3,
            status: r.4,
            attempts: r.5,
            occurred_at: r.6,
            received_at: r.7,
            next_attempt_at: r.8,
            last_error: r.9,
            object_key: r.10,
            payload: r.11.and_then(|p| serde_json::from_str(&p).ok()),
        }
    }
}

/// Events per source and status, and the oldest one's arrival (for `/metrics` and `inbox`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxDepth {
    pub source: String,
    /// `pending`, `running`, `done` or `dead`.
    pub status: String,
    pub events: i64,
    pub oldest_received_at: String,
}

const COLUMNS: usize = 9;

/// id, source, dedupe_key, event_type, payload, attempts, occurred_at, object_key, trace_parent.
type ClaimedRow = (i64, String, String, String, String, i64, Option<String>, Option<String>, Option<String>);

/// Stores the deliveries' events with one prepared insert (SQLite, `writer.rs`).
fn accept_prepared(tx: &rusqlite::Transaction<'_>, deliveries: &[&[NewEvent]], received: &str) -> rusqlite::Result<Vec<Accepted>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO inbox (source, dedupe_key, event_type, payload, occurred_at, received_at, next_attempt_at, object_key, trace_parent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8) ON CONFLICT (dedupe_key) DO NOTHING",
    )?;
    let mut accepted = Vec::with_capacity(deliveries.len());
    for events in deliveries {
        let mut stored = 0;
        for e in *events {
            let occurred = e.occurred_at.map(format_time);
            stored += insert.execute(rusqlite::params![
                e.source,
                e.dedupe_key,
                e.event_type,
                e.payload,
                occurred,
                received,
                e.object_key,
                e.trace_parent
            ])?;
        }
        accepted.push(Accepted { stored, duplicates: events.len() - stored });
    }
    Ok(accepted)
}

impl Store {
    /// Stores a delivery's events in one transaction: all of them are durable when this returns
    /// Ok, or none is. Events already stored (same dedupe key) count as duplicates.
    pub async fn inbox_accept(&self, events: &[NewEvent]) -> Result<Accepted, StoreError> {
        let mut accepted = self.inbox_accept_many(&[events]).await?;
        Ok(accepted.pop().expect("one delivery in, one count out"))
    }

    /// Stores several deliveries in one transaction (group commit: one durable commit, one
    /// fsync, for all of them), with what each stored. All are durable when this returns Ok, or
    /// none is.
    pub async fn inbox_accept_many(&self, deliveries: &[&[NewEvent]]) -> Result<Vec<Accepted>, StoreError> {
        let result = self.accept_in_one_transaction(deliveries).await;
        self.note_commit(&result);
        result
    }

    async fn accept_in_one_transaction(&self, deliveries: &[&[NewEvent]]) -> Result<Vec<Accepted>, StoreError> {
        let received = now();
        if let Some(writer) = &self.writer {
            return writer.transaction(|tx| accept_prepared(tx, deliveries, &received));
        }
        let mut tx = self.pool.begin().await?;
        let mut accepted = Vec::with_capacity(deliveries.len());
        for events in deliveries {
            let mut stored = 0;
            // 100 events × 9 values stays far below both backends' bound-parameter limits
            for chunk in events.chunks(100) {
                let rows: Vec<String> = (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * COLUMNS, COLUMNS))).collect();
                let sql = format!(
                    "INSERT INTO inbox (source, dedupe_key, event_type, payload, occurred_at, received_at, next_attempt_at, object_key, trace_parent) VALUES {} \
                     ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                    rows.join(", ")
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for event in chunk {
                    query = query
                        .bind(&event.source)
                        .bind(&event.dedupe_key)
                        .bind(&event.event_type)
                        .bind(&event.payload)
                        .bind(event.occurred_at.map(format_time))
                        .bind(&received)
                        .bind(&received)
                        .bind(&event.object_key)
                        .bind(&event.trace_parent);
                }
                stored += query.fetch_all(&mut *tx).await?.len();
            }
            accepted.push(Accepted { stored, duplicates: events.len() - stored });
        }
        tx.commit().await?;
        Ok(accepted)
    }

    /// Claims up to `limit` events that are due (pending and past their next attempt, or running
    /// under an expired lease) for `owner`, for `lease`. Each claim counts as an attempt. An
    /// event whose object has another event running under a live lease is left for later, so
    /// one object's events never run at once; a claim may take several events of one object,
    /// which the caller runs in order.
    pub async fn inbox_claim(&self, owner: &str, lease: Duration, limit: usize) -> Result<Vec<InboxEvent>, StoreError> {
        let now = Utc::now();
        let until = format_time(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX));
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // claims take turns across instances (they are short), so each sees the others'
            // running events before choosing; SQLite has one writer at a time anyway
            sqlx::query("SELECT pg_advisory_xact_lock(72217001)").execute(&mut *tx).await?;
        }
        let sql = "UPDATE inbox SET status = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM inbox AS due WHERE ((status = 'pending' AND next_attempt_at <= $3) \
                          OR (status = 'running' AND lease_until < $3)) \
                          AND (object_key IS NULL OR NOT EXISTS (SELECT 1 FROM inbox AS busy WHERE busy.object_key = due.object_key \
                               AND busy.status = 'running' AND busy.lease_until >= $3)) \
                          ORDER BY id LIMIT $4) \
             RETURNING id, source, dedupe_key, event_type, payload, attempts, occurred_at, object_key, trace_parent";
        let rows: Vec<ClaimedRow> =
            sqlx::query_as(sql).bind(owner).bind(until).bind(format_time(now)).bind(limit as i64).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut events: Vec<InboxEvent> = rows
            .into_iter()
            .map(|r| InboxEvent {
                id: r.0,
                source: r.1,
                dedupe_key: r.2,
                event_type: r.3,
                payload: r.4,
                attempts: r.5,
                occurred_at: r.6,
                object_key: r.7,
                trace_parent: r.8,
            })
            .collect();
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Marks a claimed event done. False when `owner` no longer holds it (its lease ran out and
    /// another worker took it), in which case nothing changes.
    pub async fn inbox_finish(&self, id: i64, owner: &str) -> Result<bool, StoreError> {
        self.inbox_release(id, owner, "done", None, None).await
    }

    /// The newest `occurredAt` an ordered `flow` has run for `object`, if any.
    pub async fn flow_version(&self, flow: &str, object: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT occurred_at FROM flow_versions WHERE flow = $1 AND object_key = $2")
            .bind(flow)
            .bind(object)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(at,)| at.parse().ok()))
    }

    /// Marks a claimed event done in one transaction with what else its run settled: for an
    /// ordered flow, the newest `occurred_at` it ran for the object (`version`: flow, object,
    /// time); and an entry of the audit trail (kind, subject, detail), so the trail holds every
    /// event handled. False when `owner` no longer holds the event.
    pub async fn inbox_finish_with(
        &self,
        id: i64,
        owner: &str,
        version: Option<(&str, &str, DateTime<Utc>)>,
        audit: Option<(&str, &str, &serde_json::Value)>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !finish_in(&mut tx, id, owner).await? {
            return Ok(false);
        }
        if let Some((kind, subject, detail)) = audit {
            sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, $2, $3, NULL, $4)")
                .bind(now())
                .bind(kind)
                .bind(subject)
                .bind(detail.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let Some((flow, object, occurred_at)) = version else {
            tx.commit().await?;
            return Ok(true);
        };
        sqlx::query(
            "INSERT INTO flow_versions (flow, object_key, occurred_at) VALUES ($1, $2, $3) \
             ON CONFLICT (flow, object_key) DO UPDATE SET occurred_at = excluded.occurred_at \
             WHERE flow_versions.occurred_at < excluded.occurred_at",
        )
        .bind(flow)
        .bind(object)
        .bind(format_time(occurred_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a claimed event done without running it, because `flow` already ran an event of
    /// `object` that occurred later (`newer`), and audits it as `flow.skipped_stale` (subject
    /// the object, so `syncline events --product` finds it), in one transaction. False when
    /// `owner` no longer holds the event.
    pub async fn inbox_skip_stale(
        &self,
        event: &InboxEvent,
        owner: &str,
        flow: &str,
        object: &str,
        newer: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let detail = serde_json::json!({
            "flow": flow, "dedupe_key": event.dedupe_key, "event_type": event.event_type, "occurred_at": event.occurred_at,
            "newer_run": format_time(newer),
        });
        self.inbox_finish_with(event.id, owner, None, Some(("flow.skipped_stale", object, &detail))).await
    }

    /// Puts a claimed event back to be tried again at `at`, keeping why the attempt failed.
    pub async fn inbox_retry(&self, id: i64, owner: &str, error: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inbox_release(id, owner, "pending", Some(error), Some(at)).await
    }

    /// Gives up on a claimed event (`dead`) and records it as a dead letter of `flow` in the
    /// same transaction, keyed by its dedupe key, with why (`dlq list` shows it, `dlq replay`
    /// puts it back). False when `owner` no longer holds it.
    pub async fn inbox_give_up(&self, event: &InboxEvent, owner: &str, flow: &str, why: &RecordError) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(
            "UPDATE inbox SET status = 'dead', last_error = $1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(why.to_string())
        .bind(event.id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO dead_letters (pipeline, record_key, class, field, rule, message, payload, attempts, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (pipeline, record_key) WHERE status = 'open' DO UPDATE SET \
               class = excluded.class, field = excluded.field, rule = excluded.rule, message = excluded.message, \
               payload = excluded.payload, last_seen_at = excluded.last_seen_at, attempts = excluded.attempts",
        )
        .bind(flow)
        .bind(&event.dedupe_key)
        .bind(why.class.name())
        .bind(&why.field)
        .bind(&why.rule)
        .bind(&why.message)
        .bind(&event.payload)
        .bind(event.attempts)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts dead events back in the inbox (by dedupe key) with fresh attempts, and marks their
    /// open dead letters of `flow` replayed, in one transaction. Returns the events requeued.
    pub async fn inbox_requeue(&self, flow: &str, dedupe_keys: &[String]) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let mut requeued = 0;
        for chunk in dedupe_keys.chunks(500) {
            let sql = format!(
                "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL \
                 WHERE status = 'dead' AND dedupe_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&at);
            for key in chunk {
                query = query.bind(key);
            }
            requeued += query.execute(&mut *tx).await?.rows_affected();
            let sql = format!(
                "UPDATE dead_letters SET status = 'replayed', closed_at = $1 WHERE pipeline = $2 AND status = 'open' AND record_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&at).bind(flow);
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(requeued)
    }

    async fn inbox_release(
        &self,
        id: i64,
        owner: &str,
        status: &str,
        error: Option<&str>,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE inbox SET status = $1, last_error = COALESCE($2, last_error), next_attempt_at = COALESCE($3, next_attempt_at), \
             lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(status)
        .bind(error)
        .bind(at.map(format_time))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Events newest first, of one source and status if given, with ids below `before` if given.
    pub async fn inbox_events(
        &self,
        source: Option<&str>,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let (conditions, texts) = only_given(&[("source", source), ("status", status)], before);
        let filters = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "SELECT id, source, event_type, dedupe_key, status, attempts, occurred_at, received_at, next_attempt_at, last_error, object_key, NULL
             FROM inbox{filters} ORDER BY id DESC LIMIT ${}",
            texts.len() + usize::from(before.is_some()) + 1
        );
        let mut query = sqlx::query_as::<_, InboxRowTuple>(sqlx::AssertSqlSafe(sql));
        for text in texts {
            query = query.bind(text);
        }
        if let Some(before) = before {
            query = query.bind(before);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(InboxRow::from).collect())
    }

    /// One event with its payload.
    pub async fn inbox_event(&self, id: i64) -> Result<InboxRow, StoreError> {
        let row: Option<InboxRowTuple> = sqlx::query_as(
            "SELECT id, source, event_type, dedupe_key, status, attempts, occurred_at, received_at, next_attempt_at, last_error, object_key, payload
             FROM inbox WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(InboxRow::from).ok_or_else(|| StoreError::NotFound(format!("no inbox event {id}")))
    }

    /// Hands the events `owner` still runs back to the inbox at once (a worker stopping before
    /// they finished), so another worker need not wait for the lease to run out. The attempt
    /// they were on does not count. Returns how many.
    pub async fn inbox_hand_back(&self, owner: &str) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE inbox SET status = 'pending', lease_owner = NULL, lease_until = NULL, attempts = attempts - 1, next_attempt_at = $1
             WHERE lease_owner = $2 AND status = 'running'",
        )
        .bind(now())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Events per source and status.
    pub async fn inbox_depth(&self) -> Result<Vec<InboxDepth>, StoreError> {
        let rows: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT source, status, COUNT(*), MIN(received_at) FROM inbox GROUP BY source, status ORDER BY source, status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| InboxDepth { source: r.0, status: r.1, events: r.2, oldest_received_at: r.3 }).collect())
    }
}

/// Marks a claimed event done inside `tx`; false when `owner` no longer holds it.
async fn finish_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: i64, owner: &str) -> Result<bool, StoreError> {
    let released = sqlx::query(
        "UPDATE inbox SET status = 'done', lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .execute(&mut **tx)
    .await?;
    Ok(released.rows_affected() == 1)
}
