//! The SQLite store's hottest paths — intake's group commit, a page's commit and the fingerprints
//! a page is compared with — on one rusqlite connection that keeps its prepared statements,
//! beside sqlx's pool for everything else.
//!
//! Why by hand: sqlx's SQLite driver sends each statement to a worker thread and re-encodes
//! every argument through its `Any` layer; `syncline bench --intake` found a third of intake's
//! CPU there (`SqliteArguments::bind` alone 17 %). Both crates link the same bundled SQLite, and
//! WAL mode lets this connection write beside the pool's: `BEGIN IMMEDIATE` takes the write lock
//! first (waiting out `busy_timeout`, as the pool's writers do), so no transaction of either side
//! is refused halfway for a snapshot that moved.

use crate::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncline_core::worker::{WorkerError, WorkerThread};

pub(crate) struct SqliteWriter {
    /// `None` once the store is closed: later writes fail, as the pool's do.
    conn: Mutex<Option<Connection>>,
    /// Where [`SqliteWriter::apart`] runs its work.
    thread: WorkerThread,
}

impl SqliteWriter {
    /// The writer for the file a `sqlite://PATH?…` url names; `None` for an in-memory or
    /// read-only store (the pool alone serves those).
    pub(crate) fn open(url: &str) -> Result<Option<SqliteWriter>, StoreError> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory" || kv == "mode=ro") {
            return Ok(None);
        }
        let conn = Connection::open(path).map_err(StoreError::Write)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(StoreError::Write)?;
        // as the pool's connections: every commit survives power loss
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(StoreError::Write)?;
        let thread = WorkerThread::start("syncline-store").map_err(|_| StoreError::Closed)?;
        Ok(Some(SqliteWriter { conn: Mutex::new(Some(conn)), thread }))
    }

    /// Runs `work` in one immediate transaction and commits it. The caller's task waits on
    /// this thread (SQLite work is short, and the data stays borrowed rather than copied): on a
    /// multi-threaded runtime the other tasks move to another thread meanwhile.
    pub(crate) fn transaction<T>(&self, work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let run = || self.with_connection(|conn| immediate(conn, work));
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    /// Runs `work` on the connection on the writer's own thread, for work that owns its data.
    /// The runner's stages are futures of one task: a commit that held that task's thread
    /// through its fsync would stall the reader and the writer with it.
    pub(crate) async fn apart<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = Arc::clone(self);
        match self.thread.run(move || writer.with_connection(work)).await {
            Ok(done) => done,
            // a panic in `work` is raised here again; a thread that is gone is a closed store
            Err(WorkerError::Panicked(panic)) => std::panic::resume_unwind(panic),
            Err(WorkerError::Gone) => Err(StoreError::Closed),
        }
    }

    /// `work` on the connection, here and now; `Closed` once the store is closed.
    fn with_connection<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = guard.as_mut().ok_or(StoreError::Closed)?;
        work(conn).map_err(StoreError::Write)
    }

    pub(crate) fn close(&self) {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// `work` in one immediate transaction, committed.
pub(crate) fn immediate<T>(conn: &mut Connection, work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = work(&tx)?;
    tx.commit()?;
    Ok(out)
}
