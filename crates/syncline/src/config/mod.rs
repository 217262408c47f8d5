//! Loading the config: read the file, parse it into the raw structs, then validate into
//! settings. Only this module (and `main`) reads the environment or files for configuration.

mod error;
mod flows;
mod hubspot;
mod quickbooks;
mod raw;
mod schedule;
mod serve;
mod settings;
mod sql;
mod store;
mod stripe;

pub use error::{ConfigError, did_you_mean};
pub use quickbooks::QuickBooksConnection;
pub use raw::{RawCedulaKind, RawConfig, RawOtherwise, RawTransform, RawType};
pub use schedule::Schedule;
pub use settings::{Config, ConfigErrors, Pipeline, Secret, SinkSettings, SourceSettings, resolve_sqlite, validate};
pub use sql::SourceAt;
pub use store::StateSettings;

use std::path::Path;

/// Reads, parses and validates a config file against the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let (file, text) = read(path)?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&file, &text, &base_dir(path), &env)
}

/// The config's folder, absolute: relative paths in the config are relative to it, and SQLite
/// paths name their database the same way from whatever folder syncline runs in.
fn base_dir(path: &Path) -> std::path::PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

/// What commands that only read the state store need of a config: where the store is and the
/// names it defines. Secrets and connections are not expanded, so `runs`, `dlq list`, `inbox`
/// and `state show` work without the variables a run needs.
#[derive(Debug)]
pub struct StoreConfig {
    pub file: String,
    pub base_dir: std::path::PathBuf,
    pub state: StateSettings,
    pub pipelines: Vec<String>,
}

/// Reads and parses a config file, and validates only its state store.
pub fn load_store(path: &Path) -> Result<StoreConfig, ConfigErrors> {
    let (file, text) = read(path)?;
    let raw = parse_raw(&file, &text)?;
    let base_dir = base_dir(path);
    let env = |name: &str| std::env::var(name).ok();
    let state = store::state_only(&raw, &file, &base_dir, &env)?;
    let pipelines = raw.pipelines.keys().cloned().collect();
    Ok(StoreConfig { file, base_dir, state, pipelines })
}

fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file (pass --config PATH or set SYNCLINE_CONFIG)".to_owned()
        } else {
            e.to_string()
        };
        ConfigError::file(&file, why)
    })?;
    Ok((file, text))
}

/// Parses and validates config text; `env` looks up `${VAR}` references.
pub fn parse(file: &str, text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let raw = parse_raw(file, text)?;
    validate(raw, file, base_dir, env)
}

/// The file as written. Every key the config does not know is reported, each with its line and
/// the closest known key (serde would stop at the first), together with a shape error if any.
fn parse_raw(file: &str, text: &str) -> Result<RawConfig, ConfigErrors> {
    let mut unknown: Vec<String> = Vec::new();
    let parsed: Result<RawConfig, _> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_ignored::deserialize(de, |path| {
            let path = key_path(&path);
            // serde-saphyr's own marker for values that carry their place in the file
            if !path.contains("__serde_saphyr_private") {
                unknown.push(path);
            }
        })
    });
    let mut errors = ConfigErrors::default();
    if !unknown.is_empty() {
        let schema = json_schema();
        for path in &unknown {
            errors.push(ConfigError::unknown_key(file, text, path, |full| known_keys(&schema, full)));
        }
    }
    match parsed {
        Ok(raw) => errors.finish().map(|()| raw),
        Err(e) => {
            errors.push(ConfigError::from_yaml(file, text, &e));
            Err(errors.finish().expect_err("one error at least"))
        }
    }
}

/// A serde_ignored path as the config's dotted key path (`pipelines.members.transforms[1].x`).
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => match key_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => key_path(parent),
    }
}

/// The keys the schema allows beside the last part of `path` (for "did you mean").
fn known_keys(schema: &serde_json::Value, path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split(['.', '[']).filter(|p| !p.is_empty()).collect();
    let mut here = vec![schema];
    for part in &parts[..parts.len().saturating_sub(1)] {
        let index = part.ends_with(']');
        here = here
            .into_iter()
            .flat_map(|s| alternatives(schema, s))
            .filter_map(|s| match index {
                true => s.get("items"),
                false => s.get("properties").and_then(|p| p.get(*part)).or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
            })
            .collect();
    }
    let mut keys: Vec<String> = here
        .into_iter()
        .flat_map(|s| alternatives(schema, s))
        .filter_map(|s| s.get("properties").and_then(|p| p.as_object()))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A schema with its `$ref` followed and its `anyOf`/`oneOf` alternatives spread out.
fn alternatives<'a>(root: &'a serde_json::Value, schema: &'a serde_json::Value) -> Vec<&'a serde_json::Value> {
    if let Some(reference) = schema.get("$ref").and_then(|r| r.as_str()) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return root.get("$defs").and_then(|d| d.get(name)).map(|s| alternatives(root, s)).unwrap_or_default();
    }
    let mut all = vec![schema];
    for key in ["anyOf", "oneOf", "allOf"] {
        for alternative in schema.get(key).and_then(|a| a.as_array()).into_iter().flatten() {
            all.extend(alternatives(root, alternative));
        }
    }
    all
}

/// The JSON Schema of the config file, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let env = |_: &str| Some("x".to_owned());
        match parse("c.yaml", text, Path::new("/tmp"), &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_unknown_key_is_reported_with_a_suggestion() {
        let text = "stat: sqlite://s.db\npipelines:\n  m:\n    source:\n      sql:\n        url: sqlite://a.db\n        table: t\n        key: k\n        watermark: w\n        page_sise: 5\n    sink:\n      sql: {url: sqlite://b.db, table: t, key: k}\n    batch_sise: 3\n";
        let found = errors(text);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(found[0], "c.yaml:1:1: stat: unknown key `stat`; did you mean `state`?");
        assert_eq!(found[1], "c.yaml:10:9: pipelines.m.source.sql.page_sise: unknown key `page_sise`; did you mean `page_size`?");
        assert_eq!(found[2], "c.yaml:13:5: pipelines.m.batch_sise: unknown key `batch_sise`; did you mean `batch_size`?");
    }

    #[test]
    fn validation_problems_come_together() {
        let text = "pipelines:\n  m:\n    source:\n      sql:\n        url: sqlite://a.db\n        table: t\n        key: k\n        watermark: w\n        page_size: 0\n    sink:\n      sql: {url: sqlite://b.db, table: t, key: k}\n    batch_size: 0\n    transforms:\n      - select: []\n";
        let found = errors(text);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].contains("page_size: must be 1..=100000, got 0"), "{}", found[0]);
        assert!(found[1].contains("batch_size: must be 1..=10000, got 0"), "{}", found[1]);
        assert!(found[2].contains("transforms[0]: select: list at least one field"), "{}", found[2]);
    }

    #[test]
    fn retry_ceilings_must_nest() {
        let text = "pipelines:\n  m:\n    source:\n      sql: {url: sqlite://a.db, table: t, key: k, watermark: w}\n    sink:\n      sql: {url: sqlite://b.db, table: t, key: k}\n    retry:\n      unreachable: 10m\n      transient: 1m\n";
        let found = errors(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("c.yaml:8:20: pipelines.m.retry.unreachable") && found[0].contains("raise retry.transient"),
            "{}",
            found[0]
        );
        assert!(errors(&text.replace("10m", "30s")).is_empty());
    }

    #[test]
    fn a_bad_schedule_is_named_where_it_is() {
        let text = "pipelines:\n  m:\n    source:\n      sql: {url: sqlite://a.db, table: t, key: k, watermark: w}\n    sink:\n      sql: {url: sqlite://b.db, table: t, key: k}\n    schedule:\n      cron: \"*/15 * * *\"\n      timezone: America/Costa_Rika\n";
        let found = errors(text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("c.yaml:8:13: pipelines.m.schedule.cron: \"*/15 * * *\" is not a cron schedule"), "{}", found[0]);
        assert!(
            found[1].starts_with(
                "c.yaml:9:17: pipelines.m.schedule.timezone: unknown time zone \"America/Costa_Rika\"; did you mean \"America/Costa_Rica\"?"
            ),
            "{}",
            found[1]
        );
        let good = text.replace("*/15 * * *", "0 2 * * *").replace("Costa_Rika", "Costa_Rica");
        assert!(errors(&good).is_empty(), "{:?}", errors(&good));
    }

    proptest::proptest! {
        /// RELIABILITY row 24 for configs: a secret written into any secret-bearing field —
        /// as a literal, or hidden behind a `${VAR:-default}` — is refused without being
        /// repeated; given through the environment it loads, and the loaded config's debug form
        /// and every URL as shown keep it hidden.
        #[test]
        fn no_config_prints_a_secret_it_was_given(secret in "[A-Za-z0-9]{6,14}", place in 0..6usize, literal in proptest::bool::ANY) {
            let secret = format!("S3CR{secret}");
            let written = if literal { secret.clone() } else { format!("${{UNSET_{place}:-{secret}}}") };
            let (state, source, token, hook) = match place {
                0 => (format!("postgres://u:{written}@h/db"), "sqlite://a.db".to_owned(), "${TOKEN}".to_owned(), "${HOOK}".to_owned()),
                1 => (format!("postgres://u@h/db?password={written}"), "sqlite://a.db".to_owned(), "${TOKEN}".to_owned(), "${HOOK}".to_owned()),
                2 => ("sqlite://s.db".to_owned(), format!("mysql://u:{written}@h/db"), "${TOKEN}".to_owned(), "${HOOK}".to_owned()),
                3 => ("sqlite://s.db".to_owned(), format!("postgres://h/db?sslpassword={written}"), "${TOKEN}".to_owned(), "${HOOK}".to_owned()),
                4 => ("sqlite://s.db".to_owned(), "sqlite://a.db".to_owned(), written.clone(), "${HOOK}".to_owned()),
                _ => ("sqlite://s.db".to_owned(), "sqlite://a.db".to_owned(), "${TOKEN}".to_owned(), written.clone()),
            };
            let text = format!(
                "state: \"{state}\"\npipelines:\n  m:\n    source:\n      sql: {{url: \"{source}\", table: t, key: k, watermark: w}}\n    sink:\n      hubspot: {{token: \"{token}\", id_property: k}}\nwebhooks:\n  h: {{provider: hubspot, secrets: [\"{hook}\"]}}\n"
            );
            let env = |name: &str| match name {
                "TOKEN" | "HOOK" => Some("from-env".to_owned()),
                _ => None,
            };
            let refused = parse("c.yaml", &text, Path::new("/tmp"), &env).expect_err("a secret in the config is refused");
            let shown = refused.to_string();
            proptest::prop_assert!(!shown.contains(&secret), "{shown}");
            // the same fields through the environment: accepted, and never shown
            let given = text.replace(&written, "${GIVEN}");
            let env = |name: &str| match name {
                "GIVEN" => Some(secret.clone()),
                "TOKEN" | "HOOK" => Some("from-env".to_owned()),
                _ => None,
            };
            let config = parse("c.yaml", &given, Path::new("/tmp"), &env).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let shown = format!("{config:?} {}", syncline_core::redact::url(&config.state.url));
            proptest::prop_assert!(!shown.contains(&secret), "{shown}");
        }
    }

    #[test]
    fn unknown_transforms_get_a_suggestion() {
        let text = "pipelines:\n  m:\n    source:\n      sql: {url: sqlite://a.db, table: t, key: k, watermark: w}\n    sink:\n      sql: {url: sqlite://b.db, table: t, key: k}\n    transforms:\n      - emial: [a]\n";
        let found = errors(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("did you mean `email`?"), "{}", found[0]);
    }
}
