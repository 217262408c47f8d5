//! One connection pool per SQL database, with row decoding into `Value`s, typed parameter
//! binding and error classification for each driver.

use super::dialect::{Dialect, field_type_of};
use super::mssql::MssqlClient;
use super::sqlite::SqliteDb;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use compact_str::ToCompactString;
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, TypeInfo};
use std::sync::Arc;
use std::time::Duration;
use syncline_core::FieldType;
use syncline_core::{ConnectorError, ErrorClass, Text, Value};

/// A connection to one SQL database: PostgreSQL and MySQL/MariaDB pooled by sqlx, SQLite on
/// its own thread (rusqlite), SQL Server through tiberius.
#[derive(Clone, Debug)]
pub enum SqlPool {
    Sqlite(SqliteDb),
    Postgres(PgPool),
    MySql(MySqlPool),
    /// SQL Server: read-only, for sources.
    Mssql(MssqlClient),
}

/// One statement and its parameters; the text is shared, as a sink makes each text once.
pub type Statement = (Arc<str>, Vec<Param>);

/// A parameter converted to the type of the column it is bound to (`None` is a typed NULL).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(Option<i64>),
    Float(Option<f64>),
    Decimal(Option<Decimal>),
    Bool(Option<bool>),
    Text(Option<Text>),
    Date(Option<NaiveDate>),
    Timestamp(Option<NaiveDateTime>),
    TimestampTz(Option<DateTime<Utc>>),
    /// One column's values, bound as one array (PostgreSQL's `UNNEST`; no other driver takes it).
    Column(ColumnValues),
}

/// The values of one column, of one type, for one array parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Decimal(Vec<Option<Decimal>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<Text>>),
    Date(Vec<Option<NaiveDate>>),
    Timestamp(Vec<Option<NaiveDateTime>>),
    TimestampTz(Vec<Option<DateTime<Utc>>>),
}

impl ColumnValues {
    /// The column of `params` (all of one column's type, as `convert` makes them), by value.
    pub fn of(params: impl IntoIterator<Item = Param>, family: FieldType) -> ColumnValues {
        macro_rules! collect {
            ($variant:ident) => {
                ColumnValues::$variant(
                    params.into_iter().map(|p| if let Param::$variant(v) = p { v } else { unreachable!("one type per column") }).collect(),
                )
            };
        }
        match family {
            FieldType::Int => collect!(Int),
            FieldType::Float => collect!(Float),
            FieldType::Decimal => collect!(Decimal),
            FieldType::Bool => collect!(Bool),
            FieldType::Text => collect!(Text),
            FieldType::Date => collect!(Date),
            FieldType::Timestamp => collect!(Timestamp),
            FieldType::TimestampTz => collect!(TimestampTz),
        }
    }
}

/// What [`SqlPool::fetch_then`] does with the rows, where they were read.
pub trait WithRows<T>: FnOnce(Rows) -> Result<T, ConnectorError> + Send + 'static {}
impl<T, F: FnOnce(Rows) -> Result<T, ConnectorError> + Send + 'static> WithRows<T> for F {}

/// Rows as read: shared column names, then one value per column.
#[derive(Debug)]
pub struct Rows {
    pub names: Arc<[Arc<str>]>,
    pub rows: Vec<Vec<Value>>,
    /// Text cells whose bytes are not UTF-8 (SQLite stores whatever it is given): their value
    /// above has replacement characters; here are the bytes as stored.
    pub invalid: Vec<InvalidText>,
}

/// A text cell that is not UTF-8.
#[derive(Debug, Clone)]
pub struct InvalidText {
    pub row: usize,
    pub column: usize,
    pub bytes: Vec<u8>,
}

/// Opens a pool and checks it answers (for `syncline check`).
pub async fn probe(url: &str) -> Result<Dialect, ConnectorError> {
    let pool = SqlPool::connect(url, 1).await?;
    pool.fetch("SELECT 1", &[]).await?;
    Ok(pool.dialect())
}

impl SqlPool {
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqlPool, ConnectorError> {
        let dialect = Dialect::from_url(url).ok_or_else(|| {
            ConnectorError::new(
                ErrorClass::Config,
                format!("unsupported database url {:?}: use sqlite://, postgres:// or mysql://", syncline_core::redact::url(url)),
            )
        })?;
        let timeout = Duration::from_secs(10);
        let failed = |e: sqlx::Error| {
            let class = classify(&e);
            ConnectorError::with_source(
                class,
                format!("cannot connect to {} at {}: {e}", dialect.name(), syncline_core::redact::url(url)),
                e,
            )
        };
        Ok(match dialect {
            Dialect::Sqlite => SqlPool::Sqlite(SqliteDb::open(url).await?),
            // one direct connection first: a pool retries refused connections until its acquire
            // timeout, while a wrong host or port should fail at once
            Dialect::Postgres => {
                sqlx::PgConnection::connect(url).await.map_err(failed)?.close().await.map_err(failed)?;
                SqlPool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(timeout)
                        // no ping before each use (a round trip per statement): a connection the
                        // server dropped fails one statement as transient, which is retried with
                        // backoff, and is replaced
                        .test_before_acquire(false)
                        .connect(url)
                        .await
                        .map_err(failed)?,
                )
            }
            Dialect::MySql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                sqlx::MySqlConnection::connect(&url).await.map_err(failed)?.close().await.map_err(failed)?;
                SqlPool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(timeout)
                        .connect(&url)
                        .await
                        .map_err(failed)?,
                )
            }
            Dialect::Mssql => SqlPool::Mssql(MssqlClient::connect(url).await?),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            SqlPool::Sqlite(_) => Dialect::Sqlite,
            SqlPool::Postgres(_) => Dialect::Postgres,
            SqlPool::MySql(_) => Dialect::MySql,
            SqlPool::Mssql(_) => Dialect::Mssql,
        }
    }

    /// [`SqlPool::fetch`], then `then` on the rows: on SQLite on the connection's own thread
    /// (see [`SqliteDb::fetch_then`]), elsewhere here.
    pub async fn fetch_then<T: Send + 'static>(&self, sql: &str, params: &[Param], then: impl WithRows<T>) -> Result<T, ConnectorError> {
        match self {
            SqlPool::Sqlite(db) => db.fetch_then(sql, params, then).await,
            _ => then(self.fetch(sql, params).await?),
        }
    }

    /// Runs a query and decodes every row.
    pub async fn fetch(&self, sql: &str, params: &[Param]) -> Result<Rows, ConnectorError> {
        macro_rules! fetch_with {
            ($pool:expr, $decode:path) => {{
                let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
                for p in params {
                    query = bind!(query, p.clone());
                }
                let rows = query.fetch_all($pool).await.map_err(|e| query_error(sql, e))?;
                let names: Arc<[Arc<str>]> = rows
                    .first()
                    .map(|r| r.columns().iter().map(|c| Arc::from(c.name())).collect())
                    .unwrap_or_else(|| Arc::from(Vec::new()));
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    let mut values = Vec::with_capacity(names.len());
                    for i in 0..names.len() {
                        values.push($decode(row, i)?);
                    }
                    out.push(values);
                }
                Ok(Rows { names, rows: out, invalid: Vec::new() })
            }};
        }
        match self {
            SqlPool::Sqlite(db) => db.fetch(sql, params).await,
            SqlPool::Postgres(pool) => fetch_with!(pool, decode_postgres),
            SqlPool::MySql(pool) => fetch_with!(pool, decode_mysql),
            SqlPool::Mssql(client) => client.fetch(sql, params).await,
        }
    }

    /// Runs statements in one transaction; returns the rows they return (PostgreSQL's
    /// `RETURNING`; the other databases' statements here return none).
    pub async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<Vec<Value>>, ConnectorError> {
        match self {
            SqlPool::Sqlite(db) => db.execute_all(statements).await.map(|()| Vec::new()),
            SqlPool::Postgres(pool) => {
                // a lone statement is a transaction of its own: no BEGIN and COMMIT round trips
                if statements.len() == 1 {
                    let (sql, params) = statements.into_iter().next().expect("one statement");
                    return run_postgres(pool, &sql, params).await;
                }
                let mut tx = pool.begin().await.map_err(|e| query_error("BEGIN", e))?;
                let mut returned = Vec::new();
                for (sql, params) in statements {
                    returned.extend(run_postgres(&mut *tx, &sql, params).await?);
                }
                tx.commit().await.map_err(|e| query_error("COMMIT", e))?;
                Ok(returned)
            }
            SqlPool::MySql(pool) => {
                let mut tx = pool.begin().await.map_err(|e| query_error("BEGIN", e))?;
                for (sql, params) in statements {
                    let mut query = sqlx::query(AssertSqlSafe(sql.to_string()));
                    for p in params {
                        query = bind!(query, p);
                    }
                    query.execute(&mut *tx).await.map_err(|e| query_error(&sql, e))?;
                }
                tx.commit().await.map_err(|e| query_error("COMMIT", e))?;
                Ok(Vec::new())
            }
            SqlPool::Mssql(_) => Err(source_only()),
        }
    }

    /// Runs one statement without parameters (DDL).
    pub async fn execute(&self, sql: &str) -> Result<(), ConnectorError> {
        let result = match self {
            SqlPool::Sqlite(db) => return db.execute(sql).await,
            SqlPool::Postgres(pool) => pool.execute(AssertSqlSafe(sql.to_owned())).await.map(|_| ()),
            SqlPool::MySql(pool) => pool.execute(AssertSqlSafe(sql.to_owned())).await.map(|_| ()),
            SqlPool::Mssql(_) => return Err(source_only()),
        };
        result.map_err(|e| query_error(sql, e))
    }

    /// The columns a query returns and their families, found without reading a row (the query
    /// runs with `WHERE 1 = 0`).
    pub async fn describe(&self, relation: &str) -> Result<Vec<(String, FieldType)>, ConnectorError> {
        let sql = match self.dialect() {
            Dialect::Mssql => format!("SELECT TOP (0) * FROM {relation}"),
            _ => format!("SELECT * FROM {relation} WHERE 1 = 0"),
        };
        macro_rules! describe_with {
            ($pool:expr) => {{
                use sqlx::Statement;
                let statement = $pool.prepare(AssertSqlSafe(sql.clone()).into_sql_str()).await.map_err(|e| query_error(&sql, e))?;
                Ok(statement.columns().iter().map(|c| (c.name().to_owned(), field_type_of(c.type_info().name()))).collect())
            }};
        }
        match self {
            SqlPool::Sqlite(db) => db.describe(&sql).await,
            SqlPool::Postgres(pool) => describe_with!(pool),
            SqlPool::MySql(pool) => describe_with!(pool),
            SqlPool::Mssql(client) => client.describe(&sql).await,
        }
    }

    /// The columns of a table and their families, or `None` when the table does not exist.
    pub async fn columns(&self, table: &str) -> Result<Option<Vec<(String, FieldType)>>, ConnectorError> {
        let sql = format!("SELECT * FROM {} WHERE 1 = 0", self.dialect().quote(table));
        macro_rules! describe_with {
            ($pool:expr) => {{
                match $pool.prepare(AssertSqlSafe(sql.clone()).into_sql_str()).await {
                    Ok(statement) => {
                        use sqlx::Statement;
                        Ok(Some(statement.columns().iter().map(|c| (c.name().to_owned(), field_type_of(c.type_info().name()))).collect()))
                    }
                    Err(e) if is_missing_table(&e) => Ok(None),
                    Err(e) => Err(query_error(&sql, e)),
                }
            }};
        }
        match self {
            SqlPool::Sqlite(db) => db.columns(table).await,
            SqlPool::Postgres(pool) => describe_with!(pool),
            SqlPool::MySql(pool) => describe_with!(pool),
            SqlPool::Mssql(_) => Err(source_only()),
        }
    }

    pub async fn close(&self) {
        match self {
            SqlPool::Sqlite(_) => {}
            SqlPool::Postgres(pool) => pool.close().await,
            SqlPool::MySql(pool) => pool.close().await,
            SqlPool::Mssql(_) => {}
        }
    }
}

fn source_only() -> ConnectorError {
    ConnectorError::new(ErrorClass::Config, "SQL Server is supported as a source only")
}

/// Binds one `Param` with the type its column has. A macro, not a function: it expands once
/// per driver (PostgreSQL, MySQL), where each `bind` has that driver's types.
macro_rules! bind {
    ($query:expr, $param:expr) => {{
        match $param {
            Param::Int(v) => $query.bind(v),
            Param::Float(v) => $query.bind(v),
            Param::Bool(v) => $query.bind(v),
            Param::Text(v) => $query.bind(v.map(String::from)),
            Param::Decimal(v) => $query.bind(v),
            Param::Date(v) => $query.bind(v),
            Param::Timestamp(v) => $query.bind(v),
            Param::TimestampTz(v) => $query.bind(v),
            Param::Column(_) => unreachable!("only PostgreSQL binds whole columns"),
        }
    }};
}
use bind;

/// Runs one statement on PostgreSQL (on the pool, or in a transaction); the rows it returns.
async fn run_postgres<'c>(on: impl sqlx::PgExecutor<'c>, sql: &str, params: Vec<Param>) -> Result<Vec<Vec<Value>>, ConnectorError> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for p in params {
        query = bind_postgres(query, p);
    }
    let rows = query.fetch_all(on).await.map_err(|e| query_error(sql, e))?;
    rows.iter().map(|row| (0..row.columns().len()).map(|i| decode_postgres(row, i)).collect()).collect()
}

/// [`bind!`] for PostgreSQL, which also binds a whole column as one array.
fn bind_postgres<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    param: Param,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match param {
        Param::Column(ColumnValues::Int(v)) => query.bind(v),
        Param::Column(ColumnValues::Float(v)) => query.bind(v),
        Param::Column(ColumnValues::Decimal(v)) => query.bind(v),
        Param::Column(ColumnValues::Bool(v)) => query.bind(v),
        Param::Column(ColumnValues::Text(v)) => query.bind(v.into_iter().map(|t| t.map(String::from)).collect::<Vec<_>>()),
        Param::Column(ColumnValues::Date(v)) => query.bind(v),
        Param::Column(ColumnValues::Timestamp(v)) => query.bind(v),
        Param::Column(ColumnValues::TimestampTz(v)) => query.bind(v),
        value => bind!(query, value),
    }
}

fn decode_error(row_column: &str, type_name: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::new(
        ErrorClass::Config,
        format!(
            "cannot read column {row_column:?} of type {type_name}: {e}; cast it in the source query (e.g. CAST({row_column} AS TEXT))"
        ),
    )
}

fn decode_postgres(row: &PgRow, i: usize) -> Result<Value, ConnectorError> {
    let column = &row.columns()[i];
    let type_name = column.type_info().name().to_owned();
    let err = |e: sqlx::Error| decode_error(column.name(), &type_name, e);
    let value = match type_name.as_str() {
        "BOOL" => row.try_get::<Option<bool>, _>(i).map_err(err)?.map(Value::Bool),
        "INT2" => row.try_get::<Option<i16>, _>(i).map_err(err)?.map(|v| Value::Int(v.into())),
        "INT4" => row.try_get::<Option<i32>, _>(i).map_err(err)?.map(|v| Value::Int(v.into())),
        "INT8" => row.try_get::<Option<i64>, _>(i).map_err(err)?.map(Value::Int),
        "FLOAT4" => row.try_get::<Option<f32>, _>(i).map_err(err)?.map(|v| Value::Float(v.into())),
        "FLOAT8" => row.try_get::<Option<f64>, _>(i).map_err(err)?.map(Value::Float),
        "NUMERIC" => row.try_get::<Option<Decimal>, _>(i).map_err(err)?.map(|d| Value::Decimal(d.to_compact_string())),
        "DATE" => row.try_get::<Option<NaiveDate>, _>(i).map_err(err)?.map(Value::Date),
        "TIMESTAMP" => row.try_get::<Option<NaiveDateTime>, _>(i).map_err(err)?.map(Value::Timestamp),
        "TIMESTAMPTZ" => row.try_get::<Option<DateTime<Utc>>, _>(i).map_err(err)?.map(Value::TimestampTz),
        "JSON" | "JSONB" | "UUID" => return Err(decode_error(column.name(), &type_name, "unsupported type")),
        _ => row.try_get::<Option<&str>, _>(i).map_err(err)?.map(Value::from),
    };
    Ok(value.unwrap_or(Value::Null))
}

fn decode_mysql(row: &MySqlRow, i: usize) -> Result<Value, ConnectorError> {
    let column = &row.columns()[i];
    let type_name = column.type_info().name().to_owned();
    let err = |e: sqlx::Error| decode_error(column.name(), &type_name, e);
    let value = match type_name.as_str() {
        "BOOLEAN" => row.try_get::<Option<bool>, _>(i).map_err(err)?.map(Value::Bool),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => row.try_get::<Option<i64>, _>(i).map_err(err)?.map(Value::Int),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "BIGINT UNSIGNED" => row
            .try_get::<Option<u64>, _>(i)
            .map_err(err)?
            .map(|v| i64::try_from(v).map(Value::Int).unwrap_or_else(|_| Value::Decimal(v.to_compact_string()))),
        "FLOAT" => row.try_get::<Option<f32>, _>(i).map_err(err)?.map(|v| Value::Float(v.into())),
        "DOUBLE" => row.try_get::<Option<f64>, _>(i).map_err(err)?.map(Value::Float),
        "DECIMAL" => row.try_get::<Option<Decimal>, _>(i).map_err(err)?.map(|d| Value::Decimal(d.to_compact_string())),
        "DATE" => row.try_get::<Option<NaiveDate>, _>(i).map_err(err)?.map(Value::Date),
        "DATETIME" => row.try_get::<Option<NaiveDateTime>, _>(i).map_err(err)?.map(Value::Timestamp),
        "TIMESTAMP" => row.try_get::<Option<DateTime<Utc>>, _>(i).map_err(err)?.map(Value::TimestampTz),
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "VARBINARY" | "BINARY" => {
            row.try_get::<Option<Vec<u8>>, _>(i).map_err(err)?.map(|b| Value::Text(String::from_utf8_lossy(&b).into_owned().into()))
        }
        _ => row.try_get::<Option<&str>, _>(i).map_err(err)?.map(Value::from),
    };
    Ok(value.unwrap_or(Value::Null))
}

/// Decides what a database error means for the run: connection trouble and lock conflicts are
/// transient; constraint and data errors reject records; the rest is a configuration problem
/// (a missing table or column, a syntax error in the configured query).
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error::*;
    let transient = ErrorClass::Transient { retry_after: None };
    match error {
        // nothing answers at that address: not worth waiting long for (retry.unreachable)
        Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            ) =>
        {
            ErrorClass::Unavailable
        }
        Io(_) | Tls(_) | PoolTimedOut | PoolClosed | WorkerCrashed | Protocol(_) => transient,
        Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // PostgreSQL SQLSTATE classes 08 (connection), 40 (rollback), 53 (resources), 57P (shutdown)
                c if c.starts_with("08") || c.starts_with("40") || c.starts_with("53") || c.starts_with("57P") => transient,
                c if c.starts_with("23") || c.starts_with("22") => ErrorClass::Data,
                // MySQL: deadlock, lock wait timeout, too many connections, server gone
                "1213" | "1205" | "1040" | "2006" | "2013" => transient,
                "1062" | "1048" | "1264" | "1265" | "1366" | "1406" | "1292" => ErrorClass::Data,
                // SQLite: BUSY, LOCKED (extended codes keep the primary code in the low byte)
                c if c.parse::<i32>().is_ok_and(|n| n & 0xff == 5 || n & 0xff == 6)
                    && matches!(db.kind(), sqlx::error::ErrorKind::Other) =>
                {
                    transient
                }
                _ => match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation => ErrorClass::Data,
                    _ => ErrorClass::Config,
                },
            }
        }
        _ => ErrorClass::Internal,
    }
}

fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code == "42P01" || code == "1146" || code == "42S02" || db.message().contains("no such table")
        }
        _ => false,
    }
}

fn query_error(sql: &str, e: sqlx::Error) -> ConnectorError {
    let mut shown: String = sql.chars().take(120).collect();
    if shown.len() < sql.len() {
        shown.push('…');
    }
    ConnectorError::with_source(classify(&e), format!("{} (in: {shown})", describe(&e)), e)
}

/// A database error as the database's own message and code: never the server's internal source
/// file and line, which say nothing about the config.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} ({code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}
