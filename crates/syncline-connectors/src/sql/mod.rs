//! SQL databases as sources (keyset pages over a watermark) and sinks (upsert by key):
//! PostgreSQL and MySQL/MariaDB through sqlx, SQLite through rusqlite, and SQL Server (source
//! only) through tiberius.

pub mod check;
mod config;
mod dialect;
mod mssql;
mod pool;
mod sink;
mod source;
mod sqlite;

pub use config::url_identity;
pub use config::{NullWatermarks, SqlSinkSettings, SqlSourceSettings, SqlTable, TextMode};
pub use dialect::{Dialect, field_type_of};
pub use pool::{SqlPool, probe};
pub use sink::{SqlSink, same_in_column};
pub use source::{SqlSource, decode_cursor};
