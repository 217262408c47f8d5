//! `syncline check`: proves what `run` and `serve` need, without writing anything — the config
//! (every problem at once), the state store, each source's table, key and watermark, the
//! transforms over the source's first rows, the sink's columns or HubSpot properties for the
//! fields those rows produce, and every API token. One ✓/✗ line per item; a ✗ says how to fix it.
//!
//! Exit 0 when everything is ✓, 2 when a ✗ is the config's (or a refused credential), 1 when
//! the only ✗ are services that failed or could not be reached.

use crate::cmd::Session;
use crate::config::{self, Config, Pipeline, SinkSettings, SourceAt, SourceSettings};
use crate::exit::{CliResult, Exit};
use crate::output;
use crate::pipeline;
use serde_saphyr::Location;
use std::collections::BTreeMap;
use syncline_connectors::sql::check::SourceSetting;
use syncline_connectors::{AnySink, AnySource, hubspot, manychat, sql};
use syncline_core::{ConnectorError, ErrorClass, Record, Source, Transform};

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
    let shown = syncline_core::redact::url(&config.state.url);
    let file = config.state.url.strip_prefix("sqlite://").map(|p| std::path::PathBuf::from(p.split('?').next().unwrap_or(p)));
    let marker = file.as_ref().map(|f| std::path::PathBuf::from(format!("{}.id", f.display())));
    let store = match (&file, &marker) {
        // check creates nothing: a store that is not there yet is made by the first run
        (Some(file), Some(marker)) if !file.exists() && !marker.exists() => {
            report.ok("state store", format!("{shown} (not created yet: the first run creates it)"));
            None
        }
        _ => match super::open_store(&config.state, &config.base_dir, session).await {
            Ok(store) => {
                report.ok("state store", shown);
                Some(store)
            }
            Err(e) => {
                report.problem("state store", e.message, "", e.code);
                None
            }
        },
    };
    for p in &config.pipelines {
        check_pipeline(&config, p, &mut report).await;
    }
    check_connections(&config, store.as_ref(), &mut report).await;
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
    let what = format!("{name}: sink");
    let probed = match &p.sink {
        SinkSettings::Sql { .. } => check_sql_sink(config, p, &fields).await,
        SinkSettings::HubSpot { token, profile, stream } => match pipeline::hubspot_profile(p, token, profile) {
            Ok(profile) => {
                let mut stream = stream.clone();
                stream.produced_values = pipeline::shape(p).values;
                hubspot::check::sink(&profile, stream, &fields).await
            }
            Err(e) => return report.problem(&what, &e.message, "", Exit::Usage),
        },
        SinkSettings::QuickBooks { .. } => Ok("items of the company in connections.quickbooks (its tokens are probed there)".to_owned()),
    };
    match probed {
        Ok(detail) => report.ok(&what, detail),
        Err((error, fix)) => report.failure(&what, &error, fix),
    }
}

/// The source (a SQL source's table, key and watermark; a HubSpot source's properties), then
/// the transforms over its first rows. Returns the fields the transforms produce (empty when the
/// source has no rows yet), or None when the source cannot be read.
async fn check_source(
    config: &Config,
    p: &Pipeline,
    chain: Option<&syncline_core::transform::Chain>,
    report: &mut Report,
) -> Option<Vec<String>> {
    let what = format!("{}: source", p.name);
    let source = match pipeline::source(p, &config.base_dir, None).await {
        Ok(source) => source,
        Err(e) => {
            let code = if e.code == Exit::Usage { Exit::Usage } else { Exit::Failed };
            let message = e.message.trim_start_matches(&format!("pipeline {}: source: ", p.name));
            report.problem(&what, message, "check the source's url or token (and that the service runs)", code);
            return None;
        }
    };
    let (probed, rows) = match (&p.source, source) {
        (SourceSettings::Sql { at, .. }, AnySource::Sql(mut source)) => match sql::check::source(&source).await {
            Ok(detail) => (detail, source.sample(SAMPLE).await),
            Err(problems) => {
                for problem in problems {
                    sql_problem(config, p, at, problem, report);
                }
                return None;
            }
        },
        (SourceSettings::HubSpot { token, profile, stream }, mut source) => {
            let profile = pipeline::hubspot_profile(p, token, profile).ok()?;
            match hubspot::check::source(&profile, stream).await {
                Ok(detail) => (detail, source.next_page(None).await.map(|page| page.map(|p| p.records).unwrap_or_default())),
                Err((error, fix)) => {
                    report.failure(&what, &error, fix);
                    return None;
                }
            }
        }
        (SourceSettings::Stripe { key, profile }, mut source) => {
            let profile = pipeline::stripe_profile(p, key, profile).ok()?;
            match syncline_connectors::stripe::check::connection(&profile).await {
                Ok(detail) => (detail, source.next_page(None).await.map(|page| page.map(|p| p.records).unwrap_or_default())),
                Err((error, fix)) => {
                    report.failure(&what, &error, fix);
                    return None;
                }
            }
        }
        _ => unreachable!("a source is opened from its own settings"),
    };
    report.ok(&what, probed);
    let chain = chain?;
    match rows {
        Ok(rows) => Some(try_transforms(p, chain, rows, report)),
        Err(e) => {
            report.failure(&what, &e, "");
            None
        }
    }
}

/// A SQL source problem, at the line of the setting it is about.
fn sql_problem(config: &Config, p: &Pipeline, place: &SourceAt, problem: sql::check::Problem, report: &mut Report) {
    let what = format!("{}: source", p.name);
    let spath = format!("pipelines.{}.source.sql", p.name);
    let SourceSettings::Sql { settings, .. } = &p.source else { return };
    let from = if matches!(settings.from, sql::SqlTable::Table(_)) { "table" } else { "query" };
    let location = match problem.setting {
        Some(SourceSetting::From) => Some(at(config, &place.from, &format!("{spath}.{from}"))),
        Some(SourceSetting::Key) => Some(at(config, &place.key, &format!("{spath}.key"))),
        Some(SourceSetting::Watermark) => Some(at(config, &place.watermark, &format!("{spath}.watermark"))),
        None => None,
    };
    match location {
        Some(location) => report.problem(&what, format!("{location}: {}", problem.message), problem.fix, Exit::Usage),
        None => report.failure(&what, &ConnectorError::new(problem.class, problem.message), problem.fix),
    }
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

async fn check_sql_sink(config: &Config, p: &Pipeline, fields: &[String]) -> syncline_connectors::Probe {
    let sink = match pipeline::sink(p, &config.base_dir, p.batch_size).await {
        Ok(AnySink::Sql(sink)) => sink,
        Ok(_) => unreachable!("a SQL sink's settings open a SQL sink"),
        Err(e) => {
            let error = ConnectorError::new(if e.code == Exit::Usage { ErrorClass::Config } else { ErrorClass::Unavailable }, e.message);
            return Err((error, "check the sink's url (and that the database runs)"));
        }
    };
    sql::check::sink(&sink, fields).await.map_err(|problem| (ConnectorError::new(problem.class, problem.message), problem.fix))
}

/// The accounts flows call: each token is tried.
async fn check_connections(config: &Config, store: Option<&syncline_store::Store>, report: &mut Report) {
    if let Some(profile) = &config.connections.hubspot {
        match hubspot::check::connection(profile).await {
            Ok(detail) => report.ok("connections.hubspot", detail),
            Err((error, fix)) => report.failure("connections.hubspot", &error, fix),
        }
    }
    if let Some(profile) = &config.connections.manychat {
        match manychat::check::connection(profile).await {
            Ok(detail) => report.ok("connections.manychat", detail),
            Err((error, fix)) => report.failure("connections.manychat", &error, fix),
        }
    }
    if let Some(connection) = &config.connections.quickbooks {
        let what = "connections.quickbooks";
        let api = match store {
            None => Err(crate::exit::CliError::usage(
                "no tokens yet: the state store is not created; run `syncline auth quickbooks` to connect the app",
            )),
            Some(store) => pipeline::quickbooks_api(connection, store),
        };
        match api {
            Err(e) => report.problem(what, e.message, "", e.code),
            Ok(api) => match syncline_connectors::quickbooks::check::connection(&api, &connection.profile.base_url).await {
                Ok(detail) => report.ok(what, detail),
                Err((error, fix)) => report.failure(what, &error, fix),
            },
        }
    }
    for webhook in &config.webhooks {
        report.ok(&format!("webhooks.{}", webhook.name), format!("{} signing secret(s) set", webhook.secrets.len()));
    }
}
