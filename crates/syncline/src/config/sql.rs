//! SQL sources and sinks: the connection URL (a password only as `${VAR}`, or the URL from a
//! file), the table or query, and how rows are read or upserted.

use super::error::ConfigError;
use super::raw::{At, RawNullWatermarks, RawSqlSink, RawSqlSource, RawTextMode};
use super::settings::{Ctx, Secret, SinkSettings, SourceSettings, parse_duration, url_secrets_are_references};
use serde_saphyr::Location;
use std::time::Duration;
use syncline_connectors::sql::{NullWatermarks, SqlSinkSettings, SqlSourceSettings, SqlTable, TextMode};

/// Where a SQL source's settings are in the file, for problems found when it is probed.
#[derive(Debug, Clone, Copy)]
pub struct SourceAt {
    /// `table` or `query`.
    pub from: Location,
    pub key: Location,
    pub watermark: Location,
}

/// Whether a URL is read from or written to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Source,
    Sink,
}

pub(super) fn source(ctx: &Ctx, path: &str, s: &RawSqlSource) -> Result<SourceSettings, ConfigError> {
    let spath = format!("{path}.source.sql");
    let url = url(ctx, &s.url, &s.url_file, &spath, &s.key.referenced, Role::Source)?;
    let (from, from_at) = match (&s.table, &s.query) {
        (Some(t), None) => (SqlTable::Table(ctx.expand(t, &format!("{spath}.table"))?), t.referenced),
        (None, Some(q)) => {
            (SqlTable::Query(ctx.expand(q, &format!("{spath}.query"))?.trim().trim_end_matches(';').to_owned()), q.referenced)
        }
        (Some(t), Some(_)) => return Err(ctx.err(&t.referenced, &spath, "give either table or query, not both")),
        (None, None) => return Err(ctx.err(&s.key.referenced, &spath, "missing table (or query)")),
    };
    let overlap = match &s.overlap {
        Some(o) => parse_duration(&o.value).map_err(|why| ctx.err(&o.referenced, &format!("{spath}.overlap"), why))?,
        None => Duration::ZERO,
    };
    let text_mode = |mode: &RawTextMode| match mode {
        RawTextMode::Lossy => TextMode::Lossy,
        RawTextMode::Bytes => TextMode::Bytes,
    };
    let settings = SqlSourceSettings {
        url: String::new(),
        from,
        key: ctx.expand(&s.key, &format!("{spath}.key"))?,
        watermark: ctx.expand(&s.watermark, &format!("{spath}.watermark"))?,
        page_size: ctx.positive(&s.page_size, &format!("{spath}.page_size"), 1..=100_000, 1000)?,
        overlap,
        null_watermarks: match s.null_watermarks {
            None | Some(RawNullWatermarks::Refuse) => NullWatermarks::Refuse,
            Some(RawNullWatermarks::First) => NullWatermarks::First,
        },
        text: s.text.iter().map(|(field, mode)| (field.clone(), text_mode(mode))).collect(),
    };
    let at = SourceAt { from: from_at, key: s.key.referenced, watermark: s.watermark.referenced };
    Ok(SourceSettings::Sql { url, settings, at })
}

/// A SQL sink: upserts of up to 10,000 rows (500 by default), no change detection by default
/// (an upsert that changes nothing costs nothing).
pub(super) fn sink(ctx: &Ctx, path: &str, s: &RawSqlSink) -> Result<SinkSettings, ConfigError> {
    let spath = format!("{path}.sink.sql");
    let url = url(ctx, &s.url, &s.url_file, &spath, &s.table.referenced, Role::Sink)?;
    let settings = SqlSinkSettings {
        url: String::new(),
        table: ctx.expand(&s.table, &format!("{spath}.table"))?,
        key: ctx.expand(&s.key, &format!("{spath}.key"))?,
        create_table: s.create_table,
    };
    Ok(SinkSettings::Sql { url, settings })
}

/// A connection URL: from `url` (a password in it must be a `${VAR}`; a relative SQLite path
/// follows the config) or from `url_file`.
fn url(
    ctx: &Ctx,
    url: &Option<At<String>>,
    url_file: &Option<At<String>>,
    path: &str,
    parent: &Location,
    role: Role,
) -> Result<Secret, ConfigError> {
    ctx.secret_or_file(url, url_file, path, "url", parent, |url, key| {
        url_secrets_are_references(&url.value).map_err(|why| ctx.err(&url.referenced, key, why))?;
        let resolved = ctx.resolve_sqlite(&ctx.expand(url, key)?);
        check_scheme(&resolved, role).map_err(|why| ctx.err(&url.referenced, key, why))?;
        Ok(resolved)
    })
}

fn check_scheme(url: &str, role: Role) -> Result<(), String> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb" => Ok(()),
        "mssql" | "sqlserver" if role == Role::Source => Ok(()),
        "mssql" | "sqlserver" => Err("SQL Server is supported as a source only".into()),
        _ if !url.contains(':') => {
            Err(format!("{url:?} is not a database url; expected sqlite://PATH, postgres://…, mysql://… or mssql://…"))
        }
        other => Err(format!("unsupported database {other:?}; expected sqlite, postgres, mysql or (sources) mssql")),
    }
}
