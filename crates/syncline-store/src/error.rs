//! Store errors.

use syncline_core::{ConnectorError, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported state store url {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    #[error("cannot open the state store at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("state store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    NotFound(String),
    /// A stored value this version cannot read.
    #[error("the state store holds a value it cannot read: {0}")]
    Corrupt(String),
    /// The store's tables are somewhere else than configured (an older default); using the
    /// configured place would start from nothing.
    #[error("{0}")]
    Moved(String),
    /// The SQLite file is there but cannot be read as a database.
    #[error(
        "the state store {file} cannot be read ({reason}); restore it from a backup, or move it away and pass --init to start a new, empty store"
    )]
    Unreadable { file: String, reason: String },
    /// A write through the SQLite store's own connection (`writer.rs`) failed.
    #[error("state store write failed: {0}")]
    Write(rusqlite::Error),
    #[error("the state store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn connect(url: &str, source: sqlx::Error) -> Self {
        StoreError::Connect { url: syncline_core::redact::url(url), source }
    }

    /// Store trouble seen by the runner: a lost connection is worth waiting out.
    pub fn into_connector_error(self) -> ConnectorError {
        let class = match &self {
            StoreError::Query(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => {
                ErrorClass::Transient { retry_after: None }
            }
            StoreError::Query(sqlx::Error::Database(db)) if db.message().contains("locked") || db.message().contains("busy") => {
                ErrorClass::Transient { retry_after: None }
            }
            StoreError::Closed => ErrorClass::Transient { retry_after: None },
            StoreError::Write(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::SystemIoFailure)
                ) =>
            {
                ErrorClass::Transient { retry_after: None }
            }
            _ => ErrorClass::Internal,
        };
        ConnectorError::new(class, self.to_string())
    }
}
