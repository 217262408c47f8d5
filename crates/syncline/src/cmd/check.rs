//! `syncline check`: the config first (no IO), then every connection it names.

use crate::config;
use crate::exit::{CliResult, Exit};
use crate::pipeline;
use std::path::Path;
use syncline_connectors::sql::probe;
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
        let config::SinkSettings::Sql { url: sink_url, .. } = &p.sink;
        for (what, url) in [("source", url), ("sink", sink_url)] {
            let outcome = match pipeline::resolve_url(url, &config.base_dir) {
                Ok(url) => {
                    probe(&url).await.map(|d| format!("{} at {}", d.name(), syncline_store::redact_url(&url))).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.message),
            };
            match outcome {
                Ok(detail) => report(true, format!("{}: {what}", p.name), detail),
                Err(why) => report(false, format!("{}: {what}", p.name), why),
            }
        }
    }
    Ok(if all_ok { Exit::Ok } else { Exit::Usage })
}
