//! `syncline check`: the config first (no IO), then every connection it names.

use crate::config;
use crate::exit::{CliResult, Exit};
use crate::pipeline;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use syncline_connectors::hubspot::{HubSpotApi, HubSpotSink};
use syncline_connectors::sql::probe;
use syncline_resilience::PolicyConfig;
use syncline_store::Store;

fn line(ok: bool, what: &str, detail: &str) {
    let mark = if ok { "✓" } else { "✗" };
    if detail.is_empty() { println!("{mark} {what}") } else { println!("{mark} {what}: {detail}") }
}

pub async fn run(path: &Path) -> CliResult {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(e) => {
            line(false, "config", &e.to_string());
            return Ok(Exit::Usage);
        }
    };
    line(true, &format!("config {}", config.file), &format!("{} pipeline(s)", config.pipelines.len()));
    let mut all_ok = true;
    let mut report = |ok: bool, what: String, detail: String| {
        all_ok &= ok;
        line(ok, &what, &detail);
    };
    match Store::connect(&config.state_url).await {
        Ok(store) => report(store.ping().await.is_ok(), "state store".into(), syncline_store::redact_url(&config.state_url)),
        Err(e) => report(false, "state store".into(), e.to_string()),
    }
    for p in &config.pipelines {
        match pipeline::transforms(p, &config.base_dir) {
            Ok(chain) => report(true, format!("{}: transforms", p.name), format!("{} step(s)", chain.0.len())),
            Err(e) => report(false, format!("{}: transforms", p.name), e.message),
        }
        let config::SourceSettings::Sql { url, .. } = &p.source;
        let source = probe_url(url, &config.base_dir).await;
        report(source.is_ok(), format!("{}: source", p.name), source.unwrap_or_else(|why| why));
        let sink = match &p.sink {
            config::SinkSettings::Sql { url, .. } => probe_url(url, &config.base_dir).await,
            config::SinkSettings::HubSpot { .. } => probe_hubspot(p).await,
        };
        report(sink.is_ok(), format!("{}: sink", p.name), sink.unwrap_or_else(|why| why));
    }
    Ok(if all_ok { Exit::Ok } else { Exit::Usage })
}

async fn probe_url(url: &config::UrlSource, base_dir: &Path) -> Result<String, String> {
    let url = pipeline::resolve_url(url, base_dir).map_err(|e| e.message)?;
    probe(&url).await.map(|d| format!("{} at {}", d.name(), syncline_store::redact_url(&url))).map_err(|e| e.to_string())
}

/// Reads the portal's property definitions (with a short retry policy) and runs the sink's
/// pre-flight on the fields the transforms are known to produce.
async fn probe_hubspot(p: &config::Pipeline) -> Result<String, String> {
    let settings = pipeline::hubspot_settings(p, p.batch_size).map_err(|e| e.message)?;
    let quick =
        PolicyConfig { name: "hubspot".into(), max_attempts: 2, overall_timeout: Duration::from_secs(15), ..PolicyConfig::default() };
    let api = HubSpotApi::with_policy(&settings, quick).map_err(|e| e.to_string())?;
    let where_ = format!("HubSpot {} at {}", settings.object, settings.base_url);
    let mut sink = HubSpotSink::with_api(settings, Arc::new(api));
    let shape = pipeline::shape(p);
    let fields: Vec<&str> = shape.fields.iter().flatten().map(String::as_str).collect();
    sink.preflight(fields.iter().copied()).await.map_err(|e| format!("{where_}: {e}"))?;
    Ok(match fields.len() {
        0 => format!(
            "{where_}; idProperty checked (add a `select` step to check the mapped properties here; `run` checks them before writing)"
        ),
        n => format!("{where_}; {n} mapped properties exist and take these values"),
    })
}
