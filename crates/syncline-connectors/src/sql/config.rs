//! Validated settings of the SQL source and sink (the binary parses and checks the YAML).

use std::time::Duration;

/// What a SQL source reads: a table, or a query wrapped as a derived table.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlTable {
    Table(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqlSinkSettings {
    pub url: String,
    pub table: String,
    /// The column the upsert matches on (a primary key or unique index).
    pub key: String,
    /// Create the table, with types taken from the first batch, when it does not exist.
    pub create_table: bool,
}
