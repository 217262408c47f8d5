//! SQL Server as a source, through tiberius (sqlx has no SQL Server driver). The seed users'
//! member database lives there. Only reading is supported: `fetch` runs the same keyset page
//! queries the other databases get, in T-SQL.
//!
//! Not tested against a live server here (none can run on this machine): the URL parsing, the
//! T-SQL text and the parameter mapping are unit-tested; the wire protocol is tiberius's.

use super::pool::{Param, Rows};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use compact_str::ToCompactString;
use rust_decimal::Decimal;
use std::sync::Arc;
use syncline_core::FieldType;
use syncline_core::{ConnectorError, ErrorClass, Value};
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, FromSql, Query};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// One connection, shared; pages are read one at a time anyway.
#[derive(Clone)]
pub struct MssqlClient {
    client: Arc<Mutex<Client<Compat<TcpStream>>>>,
}

impl std::fmt::Debug for MssqlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MssqlClient")
    }
}

/// `mssql://user:password@host[:port][/database][?encrypt=true|false|required&trust_server_certificate=true]`
/// (also `sqlserver://`), as a tiberius config.
pub fn config_from_url(url: &str) -> Result<Config, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
    let mut config = Config::new();
    config.host(parsed.host_str().ok_or("the URL names no host")?);
    config.port(parsed.port().unwrap_or(1433));
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        config.database(decode(database));
    }
    if parsed.username().is_empty() {
        return Err("the URL names no user (SQL Server authentication: mssql://user:${PASSWORD}@host/db)".into());
    }
    config.authentication(AuthMethod::sql_server(decode(parsed.username()), decode(parsed.password().unwrap_or_default())));
    config.application_name("syncline");
    for (key, value) in parsed.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("encrypt", "true" | "on") => config.encryption(EncryptionLevel::On),
            ("encrypt", "required" | "strict") => config.encryption(EncryptionLevel::Required),
            ("encrypt", "false" | "off") => config.encryption(EncryptionLevel::Off),
            ("trust_server_certificate", "true") => config.trust_cert(),
            ("trust_server_certificate", "false") => {}
            ("instance", name) => config.instance_name(name),
            (key, value) => return Err(format!("unknown option {key}={value}; known: encrypt, trust_server_certificate, instance")),
        }
    }
    Ok(config)
}

impl MssqlClient {
    pub async fn connect(url: &str) -> Result<MssqlClient, ConnectorError> {
        let shown = syncline_core::redact::url(url);
        let config =
            config_from_url(url).map_err(|why| ConnectorError::new(ErrorClass::Config, format!("SQL Server URL {shown}: {why}")))?;
        let tcp = TcpStream::connect(config.get_addr()).await.map_err(|e| {
            ConnectorError::with_source(ErrorClass::Unavailable, format!("cannot connect to SQL Server at {shown}: {e}"), e)
        })?;
        tcp.set_nodelay(true).ok();
        let client = Client::connect(config, tcp.compat_write())
            .await
            .map_err(|e| ConnectorError::new(classify(&e), format!("cannot log in to SQL Server at {shown}: {e}")))?;
        Ok(MssqlClient { client: Arc::new(Mutex::new(client)) })
    }

    /// The columns `sql` returns (run as given: callers pass a `TOP (0)` query).
    pub async fn describe(&self, sql: &str) -> Result<Vec<(String, FieldType)>, ConnectorError> {
        use tiberius::ColumnType as T;
        let mut client = self.client.lock().await;
        let mut stream = Query::new(sql.to_owned()).query(&mut client).await.map_err(|e| query_error(sql, e))?;
        let columns = stream.columns().await.map_err(|e| query_error(sql, e))?.unwrap_or_default();
        let described = columns
            .iter()
            .map(|c| {
                let family = match c.column_type() {
                    T::Bit | T::Bitn => FieldType::Bool,
                    T::Int1 | T::Int2 | T::Int4 | T::Int8 | T::Intn => FieldType::Int,
                    T::Float4 | T::Float8 | T::Floatn => FieldType::Float,
                    T::Money | T::Money4 | T::Decimaln | T::Numericn => FieldType::Decimal,
                    T::Daten => FieldType::Date,
                    T::Datetime | T::Datetime4 | T::Datetimen | T::Datetime2 => FieldType::Timestamp,
                    T::DatetimeOffsetn => FieldType::TimestampTz,
                    _ => FieldType::Text,
                };
                (c.name().to_owned(), family)
            })
            .collect();
        drop(stream);
        Ok(described)
    }

    pub async fn fetch(&self, sql: &str, params: &[Param]) -> Result<Rows, ConnectorError> {
        let mut query = Query::new(sql.to_owned());
        for p in params {
            bind(&mut query, p.clone());
        }
        let mut client = self.client.lock().await;
        let stream = query.query(&mut client).await.map_err(|e| query_error(sql, e))?;
        let rows = stream.into_first_result().await.map_err(|e| query_error(sql, e))?;
        let names: Arc<[Arc<str>]> =
            rows.first().map(|r| r.columns().iter().map(|c| Arc::from(c.name())).collect()).unwrap_or_else(|| Arc::from(Vec::new()));
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let values = row
                .into_iter()
                .enumerate()
                .map(|(i, data)| decode(&data).map_err(|e| decode_error(&names, i, e)))
                .collect::<Result<_, _>>()?;
            out.push(values);
        }
        Ok(Rows { names, rows: out, invalid: Vec::new() })
    }
}

fn bind(query: &mut Query<'_>, param: Param) {
    match param {
        Param::Int(v) => query.bind(v),
        Param::Float(v) => query.bind(v),
        Param::Bool(v) => query.bind(v),
        Param::Text(v) => query.bind(v.map(String::from)),
        Param::Decimal(v) => query.bind(v),
        Param::Date(v) => query.bind(v),
        Param::Timestamp(v) => query.bind(v),
        Param::TimestampTz(v) => query.bind(v),
        Param::Column(_) => unreachable!("only PostgreSQL binds whole columns"),
    }
}

/// One cell as a `Value`.
pub fn decode(data: &ColumnData<'static>) -> Result<Value, tiberius::error::Error> {
    Ok(match data {
        ColumnData::U8(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I16(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I32(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I64(v) => v.map(Value::Int).unwrap_or(Value::Null),
        ColumnData::F32(v) => v.map(|v| Value::Float(v.into())).unwrap_or(Value::Null),
        ColumnData::F64(v) => v.map(Value::Float).unwrap_or(Value::Null),
        ColumnData::Bit(v) => v.map(Value::Bool).unwrap_or(Value::Null),
        ColumnData::String(v) => v.as_ref().map(|s| Value::Text(s.to_compact_string())).unwrap_or(Value::Null),
        ColumnData::Guid(v) => v.map(|g| Value::Text(g.to_compact_string())).unwrap_or(Value::Null),
        ColumnData::Binary(v) => v.as_ref().map(|b| Value::Text(String::from_utf8_lossy(b).into_owned().into())).unwrap_or(Value::Null),
        ColumnData::Numeric(_) => Decimal::from_sql(data)?.map(|d| Value::Decimal(d.to_compact_string())).unwrap_or(Value::Null),
        ColumnData::Xml(v) => v.as_ref().map(|x| Value::Text(x.to_compact_string())).unwrap_or(Value::Null),
        ColumnData::Date(_) => NaiveDate::from_sql(data)?.map(Value::Date).unwrap_or(Value::Null),
        ColumnData::DateTimeOffset(_) => DateTime::<Utc>::from_sql(data)?.map(Value::TimestampTz).unwrap_or(Value::Null),
        ColumnData::Time(_) => chrono::NaiveTime::from_sql(data)?.map(|t| Value::Text(t.to_compact_string())).unwrap_or(Value::Null),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            NaiveDateTime::from_sql(data)?.map(Value::Timestamp).unwrap_or(Value::Null)
        }
    })
}

fn decode_error(names: &[Arc<str>], i: usize, e: tiberius::error::Error) -> ConnectorError {
    let column = names.get(i).map(|n| n.to_string()).unwrap_or_default();
    ConnectorError::new(ErrorClass::Config, format!("cannot read column {column:?}: {e}; cast it in the source query"))
}

fn classify(e: &tiberius::error::Error) -> ErrorClass {
    use tiberius::error::Error::*;
    match e {
        Io { .. } | Tls(_) | Routing { .. } => ErrorClass::Transient { retry_after: None },
        // 1205 deadlock victim, 40613/40197/40501 Azure SQL unavailable or throttled
        Server(token) if matches!(token.code(), 1205 | 40613 | 40197 | 40501 | 49918 | 49919 | 49920) => {
            ErrorClass::Transient { retry_after: None }
        }
        _ => ErrorClass::Config,
    }
}

fn query_error(sql: &str, e: tiberius::error::Error) -> ConnectorError {
    let shown: String = sql.chars().take(120).collect();
    ConnectorError::new(classify(&e), format!("{e} (in: {shown})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let config =
            config_from_url("mssql://sync%40ro:p%3Ass@db.example:14330/Miembros?encrypt=required&trust_server_certificate=true").unwrap();
        assert_eq!(config.get_addr(), "db.example:14330");
        let debug = format!("{config:?}");
        assert!(debug.contains("Miembros") && debug.contains("sync@ro"), "{debug}");
        assert!(!debug.contains("p:ss"), "the password must not be printed: {debug}");
        assert_eq!(config_from_url("mssql://sa:x@h").unwrap().get_addr(), "h:1433");
        assert!(config_from_url("mssql://h/db").unwrap_err().contains("no user"));
        assert!(config_from_url("mssql://u:p@h/db?colour=blue").unwrap_err().contains("unknown option colour=blue"));
    }

    #[test]
    fn cells() {
        assert_eq!(decode(&ColumnData::I32(Some(7))).unwrap(), Value::Int(7));
        assert_eq!(decode(&ColumnData::String(None)).unwrap(), Value::Null);
        assert_eq!(decode(&ColumnData::String(Some("Ana".into()))).unwrap(), Value::Text("Ana".into()));
        assert_eq!(decode(&ColumnData::Bit(Some(true))).unwrap(), Value::Bool(true));
        let dec = decode(&ColumnData::Numeric(Some(tiberius::numeric::Numeric::new_with_scale(12345, 2)))).unwrap();
        assert_eq!(dec, Value::Decimal("123.45".into()));
    }
}
