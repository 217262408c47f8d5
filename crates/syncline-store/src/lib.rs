//! The state store: sync history (`runs`), cursors, dead letters, change-detection fingerprints,
//! the audit trail (`events`), idempotency records, the webhook inbox and OAuth tokens. One
//! schema on SQLite (embedded default) or PostgreSQL (shared by several instances), reached
//! through sqlx's `Any` driver so every query is written once.

mod checkpoint;
mod dead_letters;
mod error;
mod inbox;
mod leases;
mod rate_budgets;
mod runs;
mod schedules;
mod tokens;
mod writer;

pub use dead_letters::{DeadLetterFilter, DeadLetterGroup, DeadLetterRow};
pub use error::StoreError;
pub use inbox::{Accepted, InboxDepth, InboxEvent, InboxRow, NewEvent};
pub use leases::LeaseHolder;
pub use rate_budgets::BudgetUpdate;
pub use runs::{CursorRow, FingerprintCount, RunRow};
pub use schedules::ScheduleRow;
pub use tokens::{RefreshLock, SealedTokens};

use chrono::{SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, SqlSafeStr};
use std::borrow::Cow;
use std::time::Duration;

/// Which audit entries `find_events` returns (empty strings match everything).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: String,
    pub subject: String,
    pub since: String,
    pub limit: i64,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub subject: String,
    pub run_id: Option<String>,
    pub detail: serde_json::Value,
}

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the state store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Why the last commit failed, and when, until one succeeds again (for readiness).
    failing: std::sync::Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
    /// The SQLite store's own connection for intake's and a page's commits (`writer.rs`); `None` on PostgreSQL.
    writer: Option<std::sync::Arc<writer::SqliteWriter>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "flow_versions", include_str!("../migrations/sqlite/0002_flow_versions.sql")),
    (3, "inbox_object_key", include_str!("../migrations/sqlite/0003_inbox_object_key.sql")),
    (4, "state_scopes", include_str!("../migrations/sqlite/0004_state_scopes.sql")),
    (5, "store_info", include_str!("../migrations/sqlite/0005_store_info.sql")),
    (6, "run_audit", include_str!("../migrations/sqlite/0006_run_audit.sql")),
    (7, "remote_ids", include_str!("../migrations/sqlite/0007_remote_ids.sql")),
    (8, "run_leases", include_str!("../migrations/sqlite/0008_run_leases.sql")),
    (9, "rate_budgets", include_str!("../migrations/sqlite/0009_rate_budgets.sql")),
    (10, "schedules", include_str!("../migrations/sqlite/0010_schedules.sql")),
    (11, "console_indexes", include_str!("../migrations/sqlite/0011_console_indexes.sql")),
    (12, "inbox_trace_parent", include_str!("../migrations/sqlite/0012_inbox_trace_parent.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "flow_versions", include_str!("../migrations/postgres/0002_flow_versions.sql")),
    (3, "inbox_object_key", include_str!("../migrations/postgres/0003_inbox_object_key.sql")),
    (4, "state_scopes", include_str!("../migrations/postgres/0004_state_scopes.sql")),
    (5, "store_info", include_str!("../migrations/postgres/0005_store_info.sql")),
    (6, "run_audit", include_str!("../migrations/postgres/0006_run_audit.sql")),
    (7, "remote_ids", include_str!("../migrations/postgres/0007_remote_ids.sql")),
    (8, "run_leases", include_str!("../migrations/postgres/0008_run_leases.sql")),
    (9, "rate_budgets", include_str!("../migrations/postgres/0009_rate_budgets.sql")),
    (10, "schedules", include_str!("../migrations/postgres/0010_schedules.sql")),
    (11, "console_indexes", include_str!("../migrations/postgres/0011_console_indexes.sql")),
    (12, "inbox_trace_parent", include_str!("../migrations/postgres/0012_inbox_trace_parent.sql")),
];

impl Store {
    /// Opens (creating where needed) and migrates the store at `url`: `sqlite://path` or
    /// `postgres://…`, whose tables live in the schema `?schema=` names (default `syncline`,
    /// created when missing).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let mut schema = None;
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") { format!("sqlite://{path}") } else { format!("sqlite://{path}{sep}mode=rwc") };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (url, named) = take_schema(url);
            schema = Some(named.clone().unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()));
            if named.is_none() {
                refuse_moved_tables(&url).await?;
            }
            (Backend::Postgres, url)
        } else {
            return Err(StoreError::Url(syncline_core::redact::url(url)));
        };
        if backend == Backend::Sqlite {
            refuse_unreadable_file(&url).await?;
        }
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // WAL lets readers (`syncline runs`) work beside a writer; FULL makes every commit
            // survive power loss, which the inbox needs and the cursors are cheap enough for.
            options = options
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                // SQLite keeps a transaction whose COMMIT failed (a full disk) open, and its lock
                // with it: every other writer would wait out busy_timeout and fail until a
                // restart. No transaction is open on a connection going back to the pool, so a
                // ROLLBACK that succeeds here ended such a one, and the connection is closed.
                .after_release(|conn, _| Box::pin(async move { Ok(conn.execute("ROLLBACK").await.is_err()) }));
        } else {
            let schema = schema.expect("postgres has a schema");
            let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
            create_schema(&url, &schema, &quoted).await?;
            options = options.max_connections(8).after_connect(move |conn, _| {
                let set = format!("SET search_path TO {quoted}");
                Box::pin(async move {
                    conn.execute(AssertSqlSafe(set)).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(|e| StoreError::connect(&url, e))?;
        let mut store = Store { pool, backend, failing: Default::default(), writer: None };
        store.migrate().await?;
        if backend == Backend::Sqlite {
            store.writer = writer::SqliteWriter::open(&url)?.map(std::sync::Arc::new);
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The id this store was given when it was created (`store_info`).
    pub async fn id(&self) -> Result<String, StoreError> {
        let (id,): (String,) = sqlx::query_as("SELECT id FROM store_info").fetch_one(&self.pool).await?;
        Ok(id)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let source = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations: Vec<Migration> = source
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, AssertSqlSafe(*sql).into_sql_str(), false)
            })
            .collect();
        let migrator = Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; later calls fail (used at shutdown, and by tests to take the
    /// store away from a running server).
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close();
        }
        self.pool.close().await;
    }

    /// Whether the store answers (for `check` and `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Notes how a commit went, so readiness knows the store can (again) write.
    pub(crate) fn note_commit<T>(&self, result: &Result<T, StoreError>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        *failing = result.as_ref().err().map(|e| (e.to_string(), std::time::Instant::now()));
    }

    /// Whether the store can commit: yes while the last commit went through; no for a few
    /// seconds after one failed (a full disk: the next real commit tells); after that, if nothing
    /// has committed since, a small write decides, so readiness recovers on its own with the disk
    /// even when no traffic comes to try it.
    pub async fn writable(&self) -> Result<(), String> {
        const TRUST_THE_FAILURE_FOR: std::time::Duration = std::time::Duration::from_secs(5);
        let last = self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((why, at)) = last else { return Ok(()) };
        if at.elapsed() < TRUST_THE_FAILURE_FOR {
            return Err(format!("cannot commit: {why}"));
        }
        let probe = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE store_info SET schema_version = schema_version").execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        };
        let result = probe.await;
        self.note_commit(&result);
        result.map_err(|e| format!("cannot commit: {why} (and a write probe failed too: {e})"))
    }

    /// Appends to the audit trail.
    pub async fn append_event(
        &self,
        kind: &str,
        subject: &str,
        run_id: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(now())
            .bind(kind)
            .bind(subject)
            .bind(run_id)
            .bind(detail.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends several entries to the audit trail in one transaction: (kind, subject, detail).
    pub async fn append_events(&self, run_id: Option<&str>, entries: &[(String, String, serde_json::Value)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        for (kind, subject, detail) in entries {
            sqlx::query("INSERT INTO events (at, kind, subject, run_id, detail) VALUES ($1, $2, $3, $4, $5)")
                .bind(&at)
                .bind(kind)
                .bind(subject)
                .bind(run_id)
                .bind(detail.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries, newest first: of a kind (`created` matches `quickbooks.item.created`), of
    /// a subject, from a time on (RFC 3339), at most `limit`.
    pub async fn find_events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let rows: Vec<(i64, String, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT id, at, kind, subject, run_id, detail FROM events \
             WHERE ($1 = '' OR kind = $1 OR kind LIKE $2) AND ($3 = '' OR subject = $3) AND ($4 = '' OR at >= $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(&filter.kind)
        .bind(format!("%.{}", filter.kind))
        .bind(&filter.subject)
        .bind(&filter.since)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at, kind, subject, run_id, detail)| EventRow {
                id,
                at,
                kind,
                subject,
                run_id,
                detail: serde_json::from_str(&detail).unwrap_or_default(),
            })
            .collect())
    }

    /// The audit trail of one subject, oldest first.
    pub async fn events(&self, subject: &str) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT at, kind, detail FROM events WHERE subject = $1 ORDER BY id")
            .bind(subject)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(at, kind, detail)| (at, kind, serde_json::from_str(&detail).unwrap_or_default())).collect())
    }

    /// Records the result of an operation under an idempotency key, unless one is already
    /// stored and unexpired; returns the result that holds (the earlier one if any).
    pub async fn remember(&self, key: &str, result: &serde_json::Value, ttl: Duration) -> Result<serde_json::Value, StoreError> {
        let now_at = Utc::now();
        let expires = now_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(30));
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM idempotency WHERE key = $1 AND expires_at <= $2")
            .bind(key)
            .bind(format_time(now_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO idempotency (key, result, created_at, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(result.to_string())
            .bind(format_time(now_at))
            .bind(format_time(expires))
            .execute(&mut *tx)
            .await?;
        let (stored,): (String,) = sqlx::query_as("SELECT result FROM idempotency WHERE key = $1").bind(key).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(serde_json::from_str(&stored).unwrap_or_default())
    }
}

/// Where syncline's tables live in a PostgreSQL store unless the URL says `?schema=`.
pub const DEFAULT_SCHEMA: &str = "syncline";

/// The URL without its `schema` parameter (which is syncline's, not the driver's), and the schema.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

/// Creates the schema when it is missing. Looked up first: PostgreSQL checks the CREATE privilege
/// before `IF NOT EXISTS`, and a role that may not create schemas must still open one a DBA made.
async fn create_schema(url: &str, name: &str, quoted: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(|e| StoreError::connect(url, e))?;
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)").bind(name).fetch_one(&mut conn).await?;
    if !exists {
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))).await?;
    }
    conn.close().await?;
    Ok(())
}

/// A SQLite file that is not a database (a garbage header, a half-written copy) is named with
/// SQLite's reason at once, instead of the pool retrying it until its acquire timeout.
async fn refuse_unreadable_file(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let file = url.trim_start_matches("sqlite://").split('?').next().unwrap_or_default().to_owned();
    let unreadable = |e: sqlx::Error| {
        let reason = match &e {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        StoreError::Unreadable { file: file.clone(), reason }
    };
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(unreadable)?;
    sqlx::query("SELECT COUNT(*) FROM sqlite_master").execute(&mut conn).await.map_err(unreadable)?;
    conn.close().await.map_err(unreadable)?;
    Ok(())
}

/// Before 0.2 the tables lived in `public`. Opening the default schema then would start from an
/// empty store (every cursor gone), so that case is refused with the fix.
async fn refuse_moved_tables(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(|e| StoreError::connect(url, e))?;
    let (old, new): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.cursors') IS NOT NULL AND to_regclass('public.inbox') IS NOT NULL,
                to_regclass('syncline._sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    if old && !new {
        return Err(StoreError::Moved(format!(
            "the state store at {} keeps its tables in schema public (syncline before 0.2); the default schema is now `{DEFAULT_SCHEMA}`. \
             Keep them where they are with `state_schema: public` in the config (or ?schema=public in the URL)",
            syncline_core::redact::url(url)
        )));
    }
    Ok(())
}

/// Now, as stored: UTC, millisecond precision, sortable text.
pub(crate) fn now() -> String {
    format_time(Utc::now())
}

pub(crate) fn format_time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `$first, $first+1, …` placeholders for `n` values.
/// The conditions of a list's filter, only those given: `column = $n` for each text that is
/// set, then `id < $n` for `before` — so each filter can use its index (an
/// `$n IS NULL OR column = $n` makes the planners scan). The caller binds `texts`, then `before`
/// if set; its next parameter is `$(texts.len() + before.is_some() + 1)`.
pub(crate) fn only_given<'a>(equal: &[(&str, Option<&'a str>)], before: Option<i64>) -> (Vec<String>, Vec<&'a str>) {
    let mut conditions = Vec::new();
    let mut texts = Vec::new();
    for (column, value) in equal {
        if let Some(value) = value {
            texts.push(*value);
            conditions.push(format!("{column} = ${}", texts.len()));
        }
    }
    if before.is_some() {
        conditions.push(format!("id < ${}", texts.len() + 1));
    }
    (conditions, texts)
}

pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
