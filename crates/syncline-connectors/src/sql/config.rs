//! Validated settings of the SQL source and sink (the binary parses and checks the YAML).

use std::time::Duration;

/// What a SQL source reads: a table, or a query wrapped as a derived table.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlTable {
    Table(String),
    Query(String),
}

#[derive(Clone, PartialEq)]
pub struct SqlSourceSettings {
    pub url: String,
    pub from: SqlTable,
    /// The column that identifies a row (and breaks watermark ties).
    pub key: String,
    /// The column whose value only grows when a row changes (`lastmodifieddate`).
    pub watermark: String,
    pub page_size: usize,
    /// How far before the committed cursor an incremental run starts reading again, for rows
    /// committed late with an older timestamp. Applies to date/time watermarks.
    pub overlap: Duration,
    /// What rows without a watermark (NULL) get.
    pub null_watermarks: NullWatermarks,
    /// Columns whose text may be other than UTF-8, and what to make of it; in any other column
    /// such text makes its record a dead letter.
    pub text: std::collections::BTreeMap<String, TextMode>,
}

/// How a column whose stored bytes are not UTF-8 is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// Replace what is not UTF-8 with U+FFFD.
    Lossy,
    /// Every value of the column as base64 of its bytes.
    Bytes,
}

/// Rows whose watermark is NULL cannot be placed in `(watermark, key)` order (each database
/// sorts NULLs differently, and a keyset comparison with NULL is never true), so they are
/// handled by one rule on every database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NullWatermarks {
    /// A run refuses to start while any row has no watermark, naming how many (the default:
    /// nothing is ever skipped without a word).
    #[default]
    Refuse,
    /// Full runs (and first runs) read the rows without a watermark first, by key, then the
    /// rest; incremental runs cannot see such a row change.
    First,
}

#[derive(Clone, PartialEq)]
pub struct SqlSinkSettings {
    pub url: String,
    pub table: String,
    /// The column the upsert matches on (a primary key or unique index).
    pub key: String,
    /// Create the table, with types taken from the first batch, when it does not exist.
    pub create_table: bool,
}

/// The URL shows with its secrets hidden, in logs and panics alike.
impl std::fmt::Debug for SqlSourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSourceSettings")
            .field("url", &syncline_core::redact::url(&self.url))
            .field("from", &self.from)
            .field("key", &self.key)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SqlSinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSinkSettings")
            .field("url", &syncline_core::redact::url(&self.url))
            .field("table", &self.table)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SqlSourceSettings {
    /// What this source reads, for keying its cursor: the database without credentials, and the
    /// table (or a digest of the query, so an edited query starts from the beginning).
    pub fn identity(&self) -> String {
        let what = match &self.from {
            SqlTable::Table(table) => table.clone(),
            SqlTable::Query(query) => {
                use sha2::{Digest, Sha256};
                let normalized: Vec<&str> = query.split_whitespace().collect();
                let digest = Sha256::digest(normalized.join(" ").as_bytes());
                format!("query:{}", digest[..6].iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
        };
        format!("{}#{what}", url_identity(&self.url))
    }
}

impl SqlSinkSettings {
    /// What this sink writes to, for keying state: the database without credentials, and the table.
    pub fn identity(&self) -> String {
        format!("{}#{}", url_identity(&self.url), self.table)
    }
}

/// URL options that choose the server or database (SQL Server's named instance, libpq's
/// host/port/dbname overrides).
const PICKS_THE_DATABASE: [&str; 6] = ["instance", "host", "hostaddr", "port", "dbname", "database"];

/// A database URL reduced to what names the database: `scheme://host:port/database` without
/// user, password or options, or a SQLite file's path. State is keyed by it, so it must not
/// change with a password rotation and must never hold one.
pub fn url_identity(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return format!("sqlite://{}", path.split('?').next().unwrap_or_default());
    }
    match url::Url::parse(url) {
        Ok(parsed) => {
            let scheme = match parsed.scheme() {
                "postgresql" => "postgres",
                "mariadb" => "mysql",
                "sqlserver" => "mssql",
                other => other,
            };
            let host = parsed.host_str().unwrap_or("localhost").to_ascii_lowercase();
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            // options that pick another server or database are part of the name; the rest
            // (credentials, TLS, timeouts) are not
            let picks: Vec<String> = parsed
                .query_pairs()
                .filter(|(k, _)| PICKS_THE_DATABASE.contains(&k.to_ascii_lowercase().as_str()))
                .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
                .collect();
            let picks = if picks.is_empty() { String::new() } else { format!("?{}", picks.join("&")) };
            format!("{scheme}://{host}{port}{}{picks}", parsed.path().trim_end_matches('/'))
        }
        // not a URL: keep the scheme only, never the text (it could hold a secret)
        Err(_) => {
            let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()));
            format!("{}://?", scheme.unwrap_or("unknown"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_hold_no_credentials() {
        assert_eq!(url_identity("postgres://u:secret@DB.example:5432/members?sslmode=require"), "postgres://db.example:5432/members");
        assert_eq!(url_identity("postgresql://db/members"), "postgres://db/members");
        assert_eq!(url_identity("sqlite:///data/w.db?mode=ro"), "sqlite:///data/w.db");
        assert_eq!(url_identity("mssql://sa:pw@sql:1433/Socios?encrypt=true"), "mssql://sql:1433/Socios");
        assert_ne!(url_identity("mssql://sa@sql/Socios?instance=PROD"), url_identity("mssql://sa@sql/Socios?instance=TEST"));
        assert_eq!(url_identity("postgres://u:pw@localhost/db?host=/run/pg&sslmode=require"), "postgres://localhost/db?host=/run/pg");
        assert!(!url_identity("not a url with hunter2").contains("hunter2"));
        let query = |q: &str| SqlSourceSettings {
            url: "sqlite:///m.db".into(),
            from: SqlTable::Query(q.into()),
            key: "k".into(),
            watermark: "w".into(),
            page_size: 10,
            overlap: Duration::ZERO,
            null_watermarks: NullWatermarks::Refuse,
            text: Default::default(),
        };
        assert_eq!(query("SELECT *  FROM m").identity(), query("SELECT * FROM\n m").identity(), "whitespace does not count");
        assert_ne!(query("SELECT * FROM m").identity(), query("SELECT * FROM n").identity());
        assert!(query("SELECT * FROM m").identity().starts_with("sqlite:///m.db#query:"));
    }
}
