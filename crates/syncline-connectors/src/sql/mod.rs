//! SQL databases as sources (keyset pages over a watermark) and sinks (upsert by key):
//! SQLite, PostgreSQL and MySQL/MariaDB through sqlx; SQL Server (source only) through tiberius.

mod config;
mod dialect;
mod mssql;
mod pool;
mod sink;
mod source;

pub use config::{SqlSinkSettings, SqlSourceSettings, SqlTable};
pub use dialect::Dialect;
pub use pool::{SqlPool, probe};
pub use sink::SqlSink;
pub use source::SqlSource;
