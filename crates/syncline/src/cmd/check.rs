//! `syncline check`: proves what `run` and `serve` need, without writing anything — the config
//! (every problem at once), the state store, each source's table, key and watermark, the
//! transforms over the source's first rows, the sink's columns or HubSpot properties for the
//! fields those rows produce, and every API token. One ✓/✗ line per item; a ✗ says how to fix it.
//!
//! Exit 0 when everything is ✓, 2 when a ✗ is the config's (or a refused credential), 1 when
//! the only ✗ are services that failed or could not be reached.

use crate::cmd::Session;
use crate::config::{self, Config, Pipeline, SinkSettings, SourceSettings};
use crate::exit::{CliResult, Exit};
use crate::output;
use crate::pipeline;
use serde_saphyr::Location;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use syncline_connectors::hubspot::{HubSpotApi, HubSpotSettings, HubSpotSink};
use syncline_connectors::manychat::ManyChatApi;
use syncline_connectors::sql::{ColumnFamily, SqlSink};
use syncline_core::{ConnectorError, ErrorClass, Record, Transform};
use syncline_resilience::PolicyConfig;

/// Source rows the transforms are tried on.
const SAMPLE: usize = 200;

/// The findings so far, printed as they come.
#[derive(Default)]
struct Report {
    worst: Option<Exit>,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        output::line(format!("✓ {what}: {}", detail.as_ref()));
    }

    fn problem(&mut self, what: &str, detail: impl AsRef<str>, fix: &str, code: Exit) {
        output::line(format!("✗ {what}: {}", detail.as_ref()));
        if !fix.is_empty() {
            output::line(format!("    fix: {fix}"));
        }
        self.worst = Some(match (self.worst, code) {
            (Some(Exit::Usage), _) | (_, Exit::Usage) => Exit::Usage,
            _ => Exit::Failed,
        });
    }

    /// A connector's failure: a refused credential or a mapping the target cannot take is the
    /// config's; anything else is the service's.
    fn failure(&mut self, what: &str, error: &ConnectorError, fix: &str) {
        let code = if error.class == ErrorClass::Config { Exit::Usage } else { Exit::Failed };
        let fix = match error.class {
            ErrorClass::Unavailable | ErrorClass::Transient { .. } => "make sure it runs and this machine can reach it, then check again",
            _ => fix,
        };
        self.problem(what, error.to_string(), fix, code);
    }
}

pub async fn run(session: &Session) -> CliResult {
    let mut report = Report::default();
    let config = match config::load(&session.config_path) {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors.0 {
                report.problem("config", e.to_string(), "", Exit::Usage);
            }
            return Ok(Exit::Usage);
        }
    };
    report.ok(
        &format!("config {}", config.file),
        format!("{} pipeline(s), {} webhook(s), {} flow(s)", config.pipelines.len(), config.webhooks.len(), config.flows.len()),
    );
    let shown = syncline_store::redact_url(&config.state.url);
    let file = config.state.url.strip_prefix("sqlite://").map(|p| std::path::PathBuf::from(p.split('?').next().unwrap_or(p)));
    let marker = file.as_ref().map(|f| std::path::PathBuf::from(format!("{}.id", f.display())));
    match (&file, &marker) {
        // check creates nothing: a store that is not there yet is made by the first run
        (Some(file), Some(marker)) if !file.exists() && !marker.exists() => {
            report.ok("state store", format!("{shown} (not created yet: the first run creates it)"));
        }
        _ => match super::open_store(&config.state, &config.base_dir, session).await {
            Ok(_) => report.ok("state store", shown),
            Err(e) => report.problem("state store", e.message, "", e.code),
        },
    }
    for p in &config.pipelines {
        check_pipeline(&config, p, &mut report).await;
    }
    check_connections(&config, &mut report).await;
    Ok(report.worst.unwrap_or(Exit::Ok))
}

/// Where a setting is, as `file:line:col: path`.
fn at(config: &Config, location: &Location, path: &str) -> String {
    config::ConfigError::at(&config.file, location, path, "").to_string().trim_end_matches(": ").to_owned()
}

async fn check_pipeline(config: &Config, p: &Pipeline, report: &mut Report) {
    let name = &p.name;
    let chain = match pipeline::transforms(p, &config.base_dir) {
        Ok(chain) => {
            report.ok(&format!("{name}: transforms"), format!("{} step(s)", chain.0.len()));
            Some(chain)
        }
        Err(e) => {
            report.problem(&format!("{name}: transforms"), &e.message, "fix the step, or the file it names", Exit::Usage);
            None
        }
    };
    // a source that cannot be read still leaves the sink to check, against what `select` names
    let fields = match check_source(config, p, chain.as_ref(), report).await {
        Some(fields) => fields,
        None => pipeline::shape(p).fields.unwrap_or_default(),
    };
    match &p.sink {
        SinkSettings::Sql { .. } => check_sql_sink(config, p, &fields, report).await,
        SinkSettings::HubSpot { .. } => check_hubspot_sink(p, &fields, report).await,
    }
}

/// The source's table, key and watermark, then the transforms over its first rows. Returns the
/// fields the transforms produce (empty when the source has no rows yet), or None when the
/// source cannot be read.
async fn check_source(
    config: &Config,
    p: &Pipeline,
    chain: Option<&syncline_core::transform::Chain>,
    report: &mut Report,
) -> Option<Vec<String>> {
    let SourceSettings::Sql { at: place, .. } = &p.source;
    let what = format!("{}: source", p.name);
    let mut source = match pipeline::source(p, &config.base_dir, None).await {
        Ok(source) => source,
        Err(e) => {
            let code = if e.code == Exit::Usage { Exit::Usage } else { Exit::Failed };
            let message = e.message.trim_start_matches(&format!("pipeline {}: source: ", p.name));
            report.problem(&what, message, "check the source's url (and that the database runs)", code);
            return None;
        }
    };
    let settings = source.settings().clone();
    let spath = format!("pipelines.{}.source.sql", p.name);
    let columns = match source.columns().await {
        Ok(columns) => columns,
        Err(e) => {
            let location = at(
                config,
                &place.from,
                &format!(
                    "{spath}.{}",
                    if matches!(settings.from, syncline_connectors::sql::SqlTable::Table(_)) { "table" } else { "query" }
                ),
            );
            report.problem(
                &what,
                format!("{location}: {}", e.message),
                "name a table (or write a query) the source database has",
                Exit::Usage,
            );
            return None;
        }
    };
    let find = |name: &str| columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(name));
    let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let missing = |role: &str, column: &str| {
        let close = config::did_you_mean(column, names.iter().copied()).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        format!("no {role} column {column:?} among {} column(s){close}", names.len())
    };
    let mut sound = true;
    if find(&settings.key).is_none() {
        let detail = format!("{}: {}", at(config, &place.key, &format!("{spath}.key")), missing("key", &settings.key));
        report.problem(&what, detail, "name the column that identifies a row", Exit::Usage);
        sound = false;
    }
    match find(&settings.watermark) {
        None => {
            let detail =
                format!("{}: {}", at(config, &place.watermark, &format!("{spath}.watermark")), missing("watermark", &settings.watermark));
            report.problem(&what, detail, "name the column that grows whenever a row changes (e.g. lastmodifieddate)", Exit::Usage);
            sound = false;
        }
        Some((column, ColumnFamily::Bool)) => {
            let detail =
                format!("{}: watermark column {column:?} is a boolean", at(config, &place.watermark, &format!("{spath}.watermark")));
            report.problem(&what, detail, "a watermark must grow with every change: a date/time, a number or ISO 8601 text", Exit::Usage);
            sound = false;
        }
        Some(_) => {}
    }
    if !sound {
        return None;
    }
    match (source.rows_without_watermark().await, settings.null_watermarks) {
        (Ok((0, _)), _) => {}
        (Ok((n, keys)), syncline_connectors::sql::NullWatermarks::Refuse) => {
            let detail = format!(
                "{}: {n} row(s) have no {} (NULL), e.g. key(s) {}; a run refuses to start",
                at(config, &place.watermark, &format!("{spath}.watermark")),
                settings.watermark,
                keys.join(", ")
            );
            report.problem(&what, detail, "give them a value, or set null_watermarks: first to read them first in full runs", Exit::Usage);
            return None;
        }
        (Ok((n, _)), _) => report.ok(&what, format!("{n} row(s) without a watermark are read first in full runs")),
        (Err(e), _) => report.failure(&what, &e, ""),
    }
    let family = |name: &str| find(name).map(|(_, f)| format!("{f:?}").to_lowercase()).unwrap_or_default();
    report.ok(
        &what,
        format!(
            "{} {} ({} columns): key {} ({}), watermark {} ({})",
            source.pool().dialect().name(),
            source.identity(),
            columns.len(),
            settings.key,
            family(&settings.key),
            settings.watermark,
            family(&settings.watermark)
        ),
    );
    let chain = chain?;
    let rows = match source.sample(SAMPLE).await {
        Ok(rows) => rows,
        Err(e) => {
            report.failure(&what, &e, "");
            return None;
        }
    };
    Some(try_transforms(p, chain, rows, report))
}

/// Runs the transforms over sample rows; returns the fields the passing ones have, in order.
fn try_transforms(p: &Pipeline, chain: &syncline_core::transform::Chain, rows: Vec<Record>, report: &mut Report) -> Vec<String> {
    let what = format!("{}: transforms on the first rows", p.name);
    if rows.is_empty() {
        report.ok(&what, "the source has no rows yet; the sink is checked against the fields a `select` names");
        return pipeline::shape(p).fields.unwrap_or_default();
    }
    let (total, mut passed) = (rows.len(), 0);
    let mut fields: Vec<String> = Vec::new();
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        match chain.apply(row) {
            Ok(record) => {
                passed += 1;
                for (name, _) in &record.fields {
                    if !fields.iter().any(|f| f == &**name) {
                        fields.push(name.to_string());
                    }
                }
            }
            Err(e) => *rejected.entry(format!("{} {}", e.rule, e.field)).or_default() += 1,
        }
    }
    let reasons: Vec<String> = rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let detail = match reasons.is_empty() {
        true => format!("{passed} of {total} pass, producing {} field(s)", fields.len()),
        false => format!(
            "{passed} of {total} pass ({} rejected: {}; rejects become dead letters, not failures)",
            total - passed,
            reasons.join(", ")
        ),
    };
    if passed == 0 {
        report.problem(
            &what,
            detail,
            "every row is rejected: check the rules against the data (`run --dry-run` shows each reason)",
            Exit::Usage,
        );
    } else {
        report.ok(&what, detail);
    }
    fields
}

async fn check_sql_sink(config: &Config, p: &Pipeline, fields: &[String], report: &mut Report) {
    let what = format!("{}: sink", p.name);
    let sink = match pipeline::sink(p, &config.base_dir, p.batch_size).await {
        Ok(syncline_connectors::AnySink::Sql(sink)) => sink,
        Ok(_) => return,
        Err(e) => {
            let code = if e.code == Exit::Usage { Exit::Usage } else { Exit::Failed };
            let message = e.message.trim_start_matches(&format!("pipeline {}: sink: ", p.name));
            return report.problem(&what, message, "check the sink's url (and that the database runs)", code);
        }
    };
    let settings = sink.settings().clone();
    let place = format!("{} {}", sink.pool().dialect().name(), sink.identity());
    match sink_columns(&sink).await {
        Err(e) => report.failure(&what, &e, ""),
        Ok(None) if settings.create_table => report.ok(&what, format!("{place}: the table does not exist yet; the first batch creates it")),
        Ok(None) => {
            report.problem(&what, format!("{place}: the table does not exist"), "create it, or set create_table: true", Exit::Usage)
        }
        Ok(Some(columns)) => {
            let has = |name: &str| columns.iter().any(|(c, _)| c == name);
            let mut absent: Vec<&str> = fields.iter().map(String::as_str).filter(|f| !has(f)).collect();
            if !has(&settings.key) && !absent.contains(&settings.key.as_str()) {
                absent.insert(0, &settings.key);
            }
            match absent.is_empty() {
                true => report.ok(&what, format!("{place}: every field has a column ({} checked)", fields.len())),
                false => report.problem(
                    &what,
                    format!("{place}: no column for {}", absent.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")),
                    "add the columns, or drop or rename the fields with a `select` or `rename` transform",
                    Exit::Usage,
                ),
            }
        }
    }
}

async fn sink_columns(sink: &SqlSink) -> Result<Option<Vec<(String, ColumnFamily)>>, ConnectorError> {
    sink.table_columns().await
}

/// A HubSpot client that gives up quickly (check should not wait out an outage).
fn quick_api(settings: &HubSpotSettings) -> Result<HubSpotApi, ConnectorError> {
    let quick = PolicyConfig {
        name: "hubspot".into(),
        max_attempts: 2,
        overall_timeout: Duration::from_secs(15),
        unavailable_for: Duration::from_secs(2),
        ..PolicyConfig::default()
    };
    HubSpotApi::with_policy(settings, quick)
}

async fn check_hubspot_sink(p: &Pipeline, fields: &[String], report: &mut Report) {
    let what = format!("{}: sink", p.name);
    let settings = match pipeline::hubspot_settings(p, p.batch_size) {
        Ok(settings) => settings,
        Err(e) => return report.problem(&what, &e.message, "", Exit::Usage),
    };
    let api = match quick_api(&settings) {
        Ok(api) => Arc::new(api),
        Err(e) => return report.failure(&what, &e, ""),
    };
    let place = format!("HubSpot {} at {}", settings.object, settings.base_url);
    let portal = match api.account_id().await {
        Ok(portal) => portal,
        Err(e) => return report.failure(&what, &e, "set the sink's token to a private app token of the portal, with the CRM scopes"),
    };
    let mut sink = HubSpotSink::with_api(settings, api);
    let mapped: Vec<&str> = fields.iter().map(String::as_str).collect();
    match sink.preflight(mapped.iter().copied()).await {
        Ok(()) => report.ok(
            &what,
            format!("{place}, portal {portal}: the token works; {} mapped properties exist and take these values", mapped.len()),
        ),
        Err(e) => report.failure(
            &what,
            &e,
            "create the properties (or options) in HubSpot, or rename or drop the fields with a `select` or `rename` transform",
        ),
    }
}

/// The accounts flows call: each token is tried.
async fn check_connections(config: &Config, report: &mut Report) {
    if let Some(settings) = &config.connections.hubspot {
        let result = match quick_api(settings) {
            Ok(api) => api.account_id().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(portal) => report.ok("connections.hubspot", format!("{}: portal {portal}, the token works", settings.base_url)),
            Err(e) => {
                report.failure("connections.hubspot", &e, "set the token to a private app token of the portal (crm.objects.contacts.read)")
            }
        }
    }
    if let Some(settings) = &config.connections.manychat {
        let result = match ManyChatApi::new(settings) {
            Ok(api) => api.page_name().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(page) => report.ok("connections.manychat", format!("{}: page {page:?}, the token works", settings.base_url)),
            Err(e) => report.failure(
                "connections.manychat",
                &e,
                "set the token to the page's API key, <page_id>:<key> (ManyChat → Settings → API)",
            ),
        }
    }
    for webhook in &config.webhooks {
        report.ok(&format!("webhooks.{}", webhook.name), format!("{} signing secret(s) set", webhook.secrets.len()));
    }
}
