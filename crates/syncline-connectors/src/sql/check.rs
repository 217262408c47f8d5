//! What `syncline check` probes of SQL sources and sinks, without writing: the source's
//! relation, key and watermark columns and rows without a watermark; the sink's table and a
//! column for every field. Problems name the setting at fault, so the caller can point at its
//! line in the config.

use super::config::NullWatermarks;
use super::sink::SqlSink;
use super::source::SqlSource;
use syncline_core::FieldType;
use syncline_core::{ConnectorError, ErrorClass};

/// The source setting a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSetting {
    /// `table` or `query`.
    From,
    Key,
    Watermark,
}

/// Something `run` would trip over, and how to fix it.
#[derive(Debug)]
pub struct Problem {
    /// The setting at fault; `None` when the database failed or could not be reached.
    pub setting: Option<SourceSetting>,
    pub message: String,
    pub fix: &'static str,
    pub class: ErrorClass,
}

impl Problem {
    fn config(setting: SourceSetting, message: String, fix: &'static str) -> Problem {
        Problem { setting: Some(setting), message, fix, class: ErrorClass::Config }
    }

    fn failed(error: ConnectorError) -> Problem {
        Problem { setting: None, message: error.message, fix: "", class: error.class }
    }
}

/// Probes a source's columns and rows without a watermark; what it found, as a line.
pub async fn source(source: &SqlSource) -> Result<String, Vec<Problem>> {
    let settings = source.settings();
    let columns = source.columns().await.map_err(|e| {
        let fix = "name a table (or write a query) the source database has";
        vec![Problem::config(SourceSetting::From, e.message, fix)]
    })?;
    let find = |name: &str| columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(name));
    let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let missing = |role: &str, column: &str| {
        let close =
            syncline_core::did_you_mean(column, names.iter().copied()).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        format!("no {role} column {column:?} among {} column(s){close}", names.len())
    };
    let mut problems = Vec::new();
    if find(&settings.key).is_none() {
        problems.push(Problem::config(SourceSetting::Key, missing("key", &settings.key), "name the column that identifies a row"));
    }
    match find(&settings.watermark) {
        None => problems.push(Problem::config(
            SourceSetting::Watermark,
            missing("watermark", &settings.watermark),
            "name the column that grows whenever a row changes (e.g. lastmodifieddate)",
        )),
        Some((column, FieldType::Bool)) => problems.push(Problem::config(
            SourceSetting::Watermark,
            format!("watermark column {column:?} is a boolean"),
            "a watermark must grow with every change: a date/time, a number or ISO 8601 text",
        )),
        Some(_) => {}
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let without = match source.rows_without_watermark().await.map_err(|e| vec![Problem::failed(e)])? {
        (0, _) => String::new(),
        (n, keys) if settings.null_watermarks == NullWatermarks::Refuse => {
            let message =
                format!("{n} row(s) have no {} (NULL), e.g. key(s) {}; a run refuses to start", settings.watermark, keys.join(", "));
            let fix = "give them a value, or set null_watermarks: first to read them first in full runs";
            return Err(vec![Problem::config(SourceSetting::Watermark, message, fix)]);
        }
        (n, _) => format!("; {n} row(s) without a watermark are read first in full runs"),
    };
    let family = |name: &str| find(name).map(|(_, f)| format!("{f:?}").to_lowercase()).unwrap_or_default();
    Ok(format!(
        "{} {} ({} columns): key {} ({}), watermark {} ({}){without}",
        source.pool().dialect().name(),
        source.identity(),
        columns.len(),
        settings.key,
        family(&settings.key),
        settings.watermark,
        family(&settings.watermark)
    ))
}

/// Probes a sink's table for a column per field (the key included); with `create_table` a
/// missing field's column is added by the run.
pub async fn sink(sink: &SqlSink, fields: &[String]) -> Result<String, Problem> {
    let settings = sink.settings();
    let place = format!("{} {}", sink.pool().dialect().name(), sink.identity());
    let problem = |message: String, fix| Problem { setting: None, message, fix, class: ErrorClass::Config };
    match sink.table_columns().await.map_err(Problem::failed)? {
        None if settings.create_table => Ok(format!("{place}: the table does not exist yet; the first batch creates it")),
        None => Err(problem(format!("{place}: the table does not exist"), "create it, or set create_table: true")),
        Some(columns) => {
            let has = |name: &str| columns.iter().any(|(c, _)| c == name);
            let mut absent: Vec<&str> = fields.iter().map(String::as_str).filter(|f| !has(f)).collect();
            if !has(&settings.key) && !absent.contains(&settings.key.as_str()) {
                absent.insert(0, &settings.key);
            }
            if absent.is_empty() {
                return Ok(format!("{place}: every field has a column ({} checked)", fields.len()));
            }
            let listed: Vec<String> = absent.iter().map(|f| format!("{f:?}")).collect();
            if settings.create_table && has(&settings.key) {
                return Ok(format!("{place}: no column yet for {}; the next run adds them", listed.join(", ")));
            }
            Err(problem(
                format!("{place}: no column for {}", listed.join(", ")),
                "add the columns, or drop or rename the fields with a `select` or `rename` transform",
            ))
        }
    }
}
