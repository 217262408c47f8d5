//! SQLite for sources and sinks, through rusqlite on blocking threads.
//!
//! Why not sqlx here (the state store uses it): sqlx-sqlite sends every statement to a worker
//! thread and copies every cell (`sqlite3_value_dup`) before decoding it. `syncline bench`
//! measured 18 µs per member row to read and 18 µs to upsert that way, against ~2 µs each with
//! cached prepared statements on one connection. Both crates link the same bundled SQLite
//! (libsqlite3-sys), so there is one SQLite in the binary.

use super::dialect::field_type_of;
use super::pool::{InvalidText, Param, Rows, Statement, WithRows};
use compact_str::ToCompactString;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncline_core::FieldType;
use syncline_core::worker::WorkerThread;
use syncline_core::{ConnectorError, ErrorClass, Value};

/// One SQLite connection, used one call at a time on a thread of its own (see
/// [`WorkerThread`] for why not tokio's blocking pool).
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
    thread: WorkerThread,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteDb")
    }
}

/// The file path of a `sqlite://PATH[?mode=ro|rw|rwc]` URL, and whether to open read-only.
fn path_of(url: &str) -> Result<(String, bool), String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).ok_or("not a sqlite:// url")?;
    let (path, query) = rest.split_once('?').map_or((rest, ""), |(p, q)| (p, q));
    if path.is_empty() {
        return Err("the url names no file".into());
    }
    let read_only = query.split('&').any(|kv| kv == "mode=ro");
    Ok((path.to_owned(), read_only))
}

impl SqliteDb {
    pub async fn open(url: &str) -> Result<SqliteDb, ConnectorError> {
        let (path, read_only) = path_of(url).map_err(|why| ConnectorError::new(ErrorClass::Config, format!("{url}: {why}")))?;
        let shown = url.to_owned();
        let thread = WorkerThread::start("syncline-sqlite").map_err(|e| ConnectorError::new(ErrorClass::Internal, e.to_string()))?;
        let opened = thread.clone();
        on(&opened, move || {
            let flags = if read_only {
                OpenFlags::SQLITE_OPEN_READ_ONLY
            } else {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&path, flags).map_err(|e| error(&format!("cannot open SQLite at {shown}"), e))?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| error("busy_timeout", e))?;
            if !read_only {
                use_wal(&conn).map_err(|e| error("PRAGMA journal_mode = WAL", e))?;
                // FULL: a committed batch survives power loss before its cursor commits
                conn.execute_batch("PRAGMA synchronous = FULL;").map_err(|e| error("pragmas", e))?;
            }
            conn.set_prepared_statement_cache_capacity(64);
            Ok(SqliteDb { conn: Arc::new(Mutex::new(conn)), thread })
        })
        .await
    }

    /// Runs a query and decodes every row.
    pub async fn fetch(&self, sql: &str, params: &[Param]) -> Result<Rows, ConnectorError> {
        self.fetch_then(sql, params, Ok).await
    }

    /// Runs a query, decodes every row, and hands them to `then` on the connection's thread:
    /// rows made into records there are freed by the thread that made them, which takes the
    /// memory back at once (mimalloc), and the work is off the thread the run's stages share.
    pub async fn fetch_then<T: Send + 'static>(&self, sql: &str, params: &[Param], then: impl WithRows<T>) -> Result<T, ConnectorError> {
        let (conn, sql, params) = (Arc::clone(&self.conn), sql.to_owned(), params.to_vec());
        on(&self.thread, move || {
            let conn = conn.lock().map_err(|_| poisoned())?;
            let mut statement = conn.prepare_cached(&sql).map_err(|e| error(&sql, e))?;
            bind_all(&mut statement, &params).map_err(|e| error(&sql, e))?;
            let names: Arc<[Arc<str>]> = statement.column_names().into_iter().map(Arc::from).collect();
            let width = names.len();
            let mut rows = statement.raw_query();
            let (mut out, mut invalid) = (Vec::new(), Vec::new());
            while let Some(row) = rows.next().map_err(|e| error(&sql, e))? {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    values.push(match row.get_ref(i).map_err(|e| error(&sql, e))? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => Value::Int(n),
                        ValueRef::Real(x) => Value::Float(x),
                        ValueRef::Text(t) | ValueRef::Blob(t) => match std::str::from_utf8(t) {
                            Ok(text) => Value::Text(text.into()),
                            // SQLite keeps any bytes in TEXT: never altered without a word
                            Err(_) => {
                                invalid.push(InvalidText { row: out.len(), column: i, bytes: t.to_vec() });
                                Value::Text(String::from_utf8_lossy(t).into_owned().into())
                            }
                        },
                    });
                }
                out.push(values);
            }
            drop(rows);
            drop(statement);
            drop(conn);
            then(Rows { names, rows: out, invalid })
        })
        .await
    }

    /// Runs statements in one transaction.
    pub async fn execute_all(&self, statements: Vec<Statement>) -> Result<(), ConnectorError> {
        let conn = Arc::clone(&self.conn);
        on(&self.thread, move || {
            let mut conn = conn.lock().map_err(|_| poisoned())?;
            let tx = conn.transaction().map_err(|e| error("BEGIN", e))?;
            run_all(&tx, statements)?;
            tx.commit().map_err(|e| error("COMMIT", e))
        })
        .await
    }

    /// Writes rows by key in one transaction, then runs `after` in it: each row is tried with
    /// `insert` (`… ON CONFLICT DO NOTHING`), and a row whose key exists goes through `upsert`.
    /// SQLite's change count says which rows were new, so no query of the keys goes first.
    /// Returns that, row by row.
    pub async fn write_rows(
        &self,
        (insert, upsert): (Arc<str>, Arc<str>),
        rows: Vec<Vec<Param>>,
        after: Vec<Statement>,
    ) -> Result<Vec<bool>, ConnectorError> {
        let conn = Arc::clone(&self.conn);
        on(&self.thread, move || {
            let mut conn = conn.lock().map_err(|_| poisoned())?;
            let tx = conn.transaction().map_err(|e| error("BEGIN", e))?;
            let mut created = Vec::with_capacity(rows.len());
            {
                let mut inserting = tx.prepare_cached(&insert).map_err(|e| error(&insert, e))?;
                let mut upserting = tx.prepare_cached(&upsert).map_err(|e| error(&upsert, e))?;
                for row in &rows {
                    let new = execute(&mut inserting, row).map_err(|e| error(&insert, e))? > 0;
                    if !new {
                        execute(&mut upserting, row).map_err(|e| error(&upsert, e))?;
                    }
                    created.push(new);
                }
            }
            drop(rows);
            run_all(&tx, after)?;
            tx.commit().map_err(|e| error("COMMIT", e))?;
            Ok(created)
        })
        .await
    }

    pub async fn execute(&self, sql: &str) -> Result<(), ConnectorError> {
        let (conn, sql) = (Arc::clone(&self.conn), sql.to_owned());
        on(&self.thread, move || conn.lock().map_err(|_| poisoned())?.execute_batch(&sql).map_err(|e| error(&sql, e))).await
    }

    /// The columns of a table and their families, or `None` when it does not exist.
    /// The columns `sql` returns, by their declared types (without running it).
    pub async fn describe(&self, sql: &str) -> Result<Vec<(String, FieldType)>, ConnectorError> {
        let (conn, sql) = (Arc::clone(&self.conn), sql.to_owned());
        on(&self.thread, move || {
            let conn = conn.lock().map_err(|_| poisoned())?;
            let statement = conn.prepare(&sql).map_err(|e| error(&sql, e))?;
            Ok(statement.columns().iter().map(|c| (c.name().to_owned(), c.decl_type().map_or(FieldType::Text, field_type_of))).collect())
        })
        .await
    }

    pub async fn columns(&self, table: &str) -> Result<Option<Vec<(String, FieldType)>>, ConnectorError> {
        let (conn, table) = (Arc::clone(&self.conn), table.to_owned());
        on(&self.thread, move || {
            let conn = conn.lock().map_err(|_| poisoned())?;
            let sql = "SELECT name, type FROM pragma_table_info(?1)";
            let mut statement = conn.prepare_cached(sql).map_err(|e| error(sql, e))?;
            let columns = statement
                .query_map([&table], |row| Ok((row.get::<_, String>(0)?, field_type_of(&row.get::<_, String>(1)?))))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| error(sql, e))?;
            Ok((!columns.is_empty()).then_some(columns))
        })
        .await
    }
}

/// Runs `statements` in order, each prepared once per connection (the statement cache).
fn run_all(tx: &rusqlite::Transaction<'_>, statements: Vec<Statement>) -> Result<(), ConnectorError> {
    for (sql, params) in statements {
        let mut statement = tx.prepare_cached(&sql).map_err(|e| error(&sql, e))?;
        execute(&mut statement, &params).map_err(|e| error(&sql, e))?;
    }
    Ok(())
}

/// Binds `params` in order and runs the statement; the rows it changed.
fn execute(statement: &mut rusqlite::CachedStatement<'_>, params: &[Param]) -> rusqlite::Result<usize> {
    bind_all(statement, params)?;
    statement.raw_execute()
}

/// Binds `params` as placeholders 1, 2, …
fn bind_all(statement: &mut rusqlite::CachedStatement<'_>, params: &[Param]) -> rusqlite::Result<()> {
    for (i, p) in params.iter().enumerate() {
        bind(statement, i + 1, p)?;
    }
    Ok(())
}

fn bind(statement: &mut rusqlite::CachedStatement<'_>, at: usize, param: &Param) -> rusqlite::Result<()> {
    // SQLite has no decimal, date or time types: those are stored as ISO 8601 / canonical text,
    // which sorts and compares correctly
    match param {
        Param::Int(v) => statement.raw_bind_parameter(at, v),
        Param::Float(v) => statement.raw_bind_parameter(at, v),
        Param::Bool(v) => statement.raw_bind_parameter(at, v),
        Param::Text(v) => statement.raw_bind_parameter(at, v.as_deref()),
        // written inline (no allocation: each is under 24 bytes), and copied by SQLite as bound
        Param::Decimal(v) => statement.raw_bind_parameter(at, v.map(|d| d.to_compact_string()).as_deref()),
        // chrono's own ISO writers (`%Y-%m-%d`, `%Y-%m-%d %H:%M:%S%.f` and the same with `T` and
        // `Z`), several times faster than formatting by a pattern
        Param::Date(v) => statement.raw_bind_parameter(at, v.map(|d| d.to_compact_string()).as_deref()),
        Param::Timestamp(v) => statement.raw_bind_parameter(at, v.map(|t| t.to_compact_string()).as_deref()),
        Param::TimestampTz(v) => statement.raw_bind_parameter(at, v.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        Param::Column(_) => unreachable!("only PostgreSQL binds whole columns"),
    }
}

/// How long a connection waits for another one's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts the file in WAL mode (it stays so). Pipelines run at once open a new warehouse file at
/// once, and each connection asks for the switch: SQLite refuses all but one with SQLITE_BUSY
/// at once, without waiting out `busy_timeout` (waiting there could deadlock), so the refused
/// ones try again here until the timeout. A file already in WAL mode answers at once.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())) {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// `work` on the connection's thread.
async fn on<T: Send + 'static>(
    thread: &WorkerThread,
    work: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    thread.run(work).await.map_err(|e| ConnectorError::new(ErrorClass::Internal, format!("the SQLite task stopped: {e}")))?
}

fn poisoned() -> ConnectorError {
    ConnectorError::new(ErrorClass::Internal, "the SQLite connection was poisoned by an earlier panic")
}

/// SQLite errors by class: busy/locked are transient, constraint violations reject data.
fn error(context: &str, e: rusqlite::Error) -> ConnectorError {
    use rusqlite::ErrorCode::*;
    let class = match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => ErrorClass::Transient { retry_after: None },
        Some(ConstraintViolation | TypeMismatch | TooBig) => ErrorClass::Data,
        Some(DiskFull | SystemIoFailure) => ErrorClass::Transient { retry_after: None },
        _ => ErrorClass::Config,
    };
    let shown: String = context.chars().take(120).collect();
    ConnectorError::new(class, format!("{e} (in: {shown})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ISO writers `bind` uses spell dates and times as the patterns SQLite tables have
    /// always held (`%.f`: no fraction, or 3, 6 or 9 digits).
    #[test]
    fn times_are_spelled_as_the_patterns_spell_them() {
        let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        assert_eq!(day.to_string(), day.format("%Y-%m-%d").to_string());
        for nanos in [0, 7_000_000, 123_456_000, 123_456_789, 999_999_999] {
            let t = day.and_hms_nano_opt(9, 5, 3, nanos).unwrap();
            assert_eq!(t.to_string(), t.format("%Y-%m-%d %H:%M:%S%.f").to_string());
            let utc = t.and_utc();
            assert_eq!(utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), utc.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
        }
    }

    #[test]
    fn paths() {
        assert_eq!(path_of("sqlite:///tmp/a.db"), Ok(("/tmp/a.db".into(), false)));
        assert_eq!(path_of("sqlite://rel.db?mode=ro"), Ok(("rel.db".into(), true)));
        assert_eq!(path_of("sqlite:x.db?mode=rwc"), Ok(("x.db".into(), false)));
        assert!(path_of("sqlite://").is_err());
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC)").await.unwrap();
        assert_eq!(db.columns("t").await.unwrap().unwrap()[2], ("amount".into(), FieldType::Decimal));
        assert_eq!(db.columns("missing").await.unwrap(), None);
        let insert: Arc<str> = "INSERT INTO t VALUES (?, ?, ?)".into();
        db.execute_all(vec![
            (insert.clone(), vec![Param::Int(Some(1)), Param::Text(Some("Ana".into())), Param::Decimal(Some("12.5".parse().unwrap()))]),
            (insert, vec![Param::Int(Some(2)), Param::Text(None), Param::Decimal(None)]),
        ])
        .await
        .unwrap();
        let rows = db.fetch("SELECT * FROM t WHERE id >= ? ORDER BY id", &[Param::Int(Some(1))]).await.unwrap();
        assert_eq!(&*rows.names[1], "name");
        assert_eq!(
            rows.rows,
            vec![vec![Value::Int(1), Value::Text("Ana".into()), Value::Float(12.5)], vec![Value::Int(2), Value::Null, Value::Null]]
        );
        let err = db.fetch("SELECT * FROM nope", &[]).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Config);
    }

    /// Pipelines run at once open a new file at once, each creating its tables and writing:
    /// every one gets its connection (none refused with "database is locked"), in many rounds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn connections_opened_at_once_on_a_new_file_all_open() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("t.db").display());
            let opening = (0..8).map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    let db = SqliteDb::open(&url).await?;
                    db.execute(&format!("CREATE TABLE IF NOT EXISTS t{i} (id INTEGER PRIMARY KEY)")).await?;
                    db.execute_all(vec![(format!("INSERT INTO t{i} VALUES (?)").into(), vec![Param::Int(Some(i))])]).await
                })
            });
            for opened in opening.collect::<Vec<_>>() {
                opened.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let db = SqliteDb::open(&url).await.unwrap();
            let mode = db.fetch("PRAGMA journal_mode", &[]).await.unwrap();
            assert_eq!(mode.rows, vec![vec![Value::Text("wal".into())]]);
        }
    }
}
