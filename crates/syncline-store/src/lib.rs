//! The state store: sync history (`runs`), cursors, dead letters, change-detection fingerprints,
//! the audit trail (`events`), idempotency records, the webhook inbox and OAuth tokens. One
//! schema on SQLite (embedded default) or PostgreSQL (shared by several instances), reached
//! through sqlx's `Any` driver so every query is written once.

mod checkpoint;
mod dead_letters;
mod error;
mod inbox;
mod runs;

pub use dead_letters::{DeadLetterFilter, DeadLetterRow};
pub use error::StoreError;
pub use inbox::{Accepted, InboxDepth, InboxEvent, NewEvent};
pub use runs::{CursorRow, RunRow};

use chrono::{SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, SqlSafeStr};
use std::borrow::Cow;
use std::time::Duration;

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
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "flow_versions", include_str!("../migrations/postgres/0002_flow_versions.sql")),
    (3, "inbox_object_key", include_str!("../migrations/postgres/0003_inbox_object_key.sql")),
];

impl Store {
    /// Opens (creating where needed) and migrates the store at `url`: `sqlite://path` or
    /// `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") { format!("sqlite://{path}") } else { format!("sqlite://{path}{sep}mode=rwc") };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // WAL lets readers (`syncline runs`) work beside a writer; FULL makes every commit
            // survive power loss, which the inbox needs and the cursors are cheap enough for.
            options = options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
        } else {
            options = options.max_connections(8);
        }
        let pool = options.connect(&url).await.map_err(|e| StoreError::connect(&url, e))?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
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
        self.pool.close().await;
    }

    /// Whether the store answers (for `check` and `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

/// Now, as stored: UTC, millisecond precision, sortable text.
pub(crate) fn now() -> String {
    format_time(Utc::now())
}

pub(crate) fn format_time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `$first, $first+1, …` placeholders for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A database URL with its password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
