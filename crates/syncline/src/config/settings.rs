//! Validated settings: what the rest of the binary works with, and the helpers every part of
//! the config uses (`${VAR}` expansion, secrets, durations, ranges). Each part validates in its
//! own module: `store.rs`, `serve.rs`, `flows.rs`, and one per connector (`sql.rs`,
//! `hubspot.rs`). `validate` does no IO; env lookups come in as a function so tests can pass
//! their own.

use super::error::ConfigError;
use super::raw::*;
use super::serve::ServeSettings;
use super::sql::SourceAt;
use super::store::StateSettings;
use serde_saphyr::Location;
use std::path::{Path, PathBuf};
use std::time::Duration;
use syncline_connectors::hubspot::{HubSpotProfile, SinkStream, SourceStream};
use syncline_connectors::sql::{SqlSinkSettings, SqlSourceSettings};
use syncline_connectors::stripe::StripeProfile;
use syncline_core::runner::RetryLimits;
use syncline_core::transform::normalize_phone;

/// A validated config.
#[derive(Debug)]
pub struct Config {
    pub file: String,
    pub base_dir: PathBuf,
    pub state: StateSettings,
    pub pipelines: Vec<Pipeline>,
    /// Webhook endpoints for `syncline serve`.
    pub webhooks: Vec<syncline_server::Source>,
    pub serve: ServeSettings,
    pub console: super::serve::ConsoleSettings,
    /// Flows `syncline serve` runs on inbox events, checked.
    pub flows: Vec<syncline_server::flow::Flow>,
    pub connections: super::flows::FlowConnections,
}

#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub source: SourceSettings,
    /// Transform steps, checked; built into transforms (reading schema files) when run.
    pub transforms: Vec<(String, RawTransform)>,
    pub sink: SinkSettings,
    pub batch_size: usize,
    pub change_detection: bool,
    pub retry: RetryLimits,
    pub verify_counts: bool,
    /// When `serve` runs it by itself.
    pub schedule: Option<super::schedule::Schedule>,
}

/// A secret (a connection URL or a token): as the config gives it (after `${VAR}` expansion),
/// or the file that holds it, read when it is needed.
#[derive(Clone, PartialEq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

/// It may hold a password or a token: never shown.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(***)"),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Secret {
    /// The secret itself: as given, or the file's contents without surrounding whitespace.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(text) => Ok(text.clone()),
            Secret::File(path) => {
                std::fs::read_to_string(path).map(|text| text.trim().to_owned()).map_err(|e| format!("cannot read {}: {e}", path.display()))
            }
        }
    }
}

/// What a pipeline reads: one variant per source connector.
#[derive(Debug)]
pub enum SourceSettings {
    /// The URL is filled in from `url` when the pipeline is opened.
    Sql { url: Secret, settings: SqlSourceSettings, at: SourceAt },
    /// The token is filled in from `token` when the pipeline is opened.
    HubSpot { token: Secret, profile: HubSpotProfile, stream: SourceStream },
    /// The key is filled in from `key` when the pipeline is opened; a `requests_per_second`
    /// of 0 means the key's mode's rate.
    Stripe { key: Secret, profile: StripeProfile },
}

/// Where a pipeline writes: one variant per sink connector.
#[derive(Debug)]
pub enum SinkSettings {
    Sql {
        url: Secret,
        settings: SqlSinkSettings,
    },
    /// The token is filled in from `token` when the pipeline is opened; the stream's
    /// `produced_values` and `inputs_per_call` come from the transforms and `batch_size`.
    HubSpot {
        token: Secret,
        profile: HubSpotProfile,
        stream: SinkStream,
    },
    /// Items of the company in `connections.quickbooks` (filled in once connections are read).
    QuickBooks {
        items: syncline_connectors::quickbooks::ItemSettings,
        batches_per_minute: u32,
        connection: Option<super::quickbooks::QuickBooksConnection>,
    },
}

impl SinkSettings {
    /// The default and largest `batch_size`, and whether change detection is on by default:
    /// HubSpot calls spend the portal's budget, SQL upserts that change nothing cost nothing.
    fn defaults(&self) -> (u64, u64, bool) {
        match self {
            SinkSettings::Sql { .. } => (500, 10_000, false),
            SinkSettings::HubSpot { .. } => (super::hubspot::BATCH, super::hubspot::BATCH, true),
            SinkSettings::QuickBooks { .. } => (super::quickbooks::BATCH, 10_000, true),
        }
    }
}

impl Config {
    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(file: &'a str, base_dir: &'a Path, env: &'a dyn Fn(&str) -> Option<String>) -> Ctx<'a> {
        Ctx { file, base_dir, env }
    }

    pub(super) fn err(&self, at: &Location, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, at, path, message)
    }

    /// Expands `${VAR}` / `${VAR:-default}` in a string value.
    pub(super) fn expand(&self, value: &At<String>, path: &str) -> Result<String, ConfigError> {
        interpolate(&value.value, self.env).map_err(|why| self.err(&value.referenced, path, why))
    }

    /// A secret given as `${VAR}` (one written in the file, or as a `${VAR:-default}`, is
    /// refused), expanded and not empty.
    pub(super) fn secret(&self, value: &At<String>, path: &str) -> Result<String, ConfigError> {
        secret_reference(&value.value).map_err(|why| self.err(&value.referenced, path, why))?;
        let expanded = self.expand(value, path)?;
        if expanded.is_empty() {
            return Err(self.err(&value.referenced, path, format!("{} is empty", value.value)));
        }
        Ok(expanded)
    }

    /// An `http(s)://` URL, expanded.
    pub(super) fn http_url(&self, value: &At<String>, path: &str) -> Result<String, ConfigError> {
        let expanded = self.expand(value, path)?;
        if !(expanded.starts_with("https://") || expanded.starts_with("http://")) {
            return Err(self.err(&value.referenced, path, format!("{expanded:?} is not an http(s) URL")));
        }
        Ok(expanded)
    }

    /// A secret given in the file as `name` (checked and expanded by `inline`) or in the file
    /// named by `{name}_file`: exactly one of the two.
    pub(super) fn secret_or_file(
        &self,
        value: &Option<At<String>>,
        file: &Option<At<String>>,
        path: &str,
        name: &str,
        parent: &Location,
        inline: impl FnOnce(&At<String>, &str) -> Result<String, ConfigError>,
    ) -> Result<Secret, ConfigError> {
        match (value, file) {
            (Some(value), None) => Ok(Secret::Inline(inline(value, &format!("{path}.{name}"))?)),
            (None, Some(file)) => Ok(Secret::File(self.base_dir.join(self.expand(file, &format!("{path}.{name}_file"))?))),
            (Some(value), Some(_)) => Err(self.err(&value.referenced, path, format!("give either {name} or {name}_file, not both"))),
            (None, None) => Err(self.err(parent, path, format!("missing {name} (or {name}_file)"))),
        }
    }

    /// Relative SQLite paths are relative to the config file.
    pub(super) fn resolve_sqlite(&self, url: &str) -> String {
        resolve_sqlite(url, self.base_dir)
    }

    pub(super) fn positive(
        &self,
        value: &Option<At<u64>>,
        path: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default as usize),
            Some(v) if range.contains(&v.value) => Ok(v.value as usize),
            Some(v) => Err(self.err(&v.referenced, path, format!("must be {}..={}, got {}", range.start(), range.end(), v.value))),
        }
    }
}

/// Makes a relative `sqlite://` path absolute against `base`.
pub fn resolve_sqlite(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else { return url.to_owned() };
    let (path, query) = rest.split_once('?').map_or((rest, None), |(p, q)| (p, Some(q)));
    if path.is_empty() || path.starts_with('/') || path.starts_with(':') {
        return url.to_owned();
    }
    let full = base.join(path);
    match query {
        Some(q) => format!("sqlite://{}?{q}", full.display()),
        None => format!("sqlite://{}", full.display()),
    }
}

/// Tokens of the sandbox's demo accounts: public constants, not secrets, so the examples may
/// fall back to them (`${HUBSPOT_TOKEN:-sandbox-token}`) and run with nothing set.
const DEMO_TOKENS: [&str; 2] = [syncline_sandbox::DEMO_HUBSPOT_TOKEN, syncline_sandbox::DEMO_MANYCHAT_TOKEN];

/// A secret as the config must write it: exactly one `${VAR}`. A literal is refused, and so is
/// a `${VAR:-default}` (a literal in disguise) unless the default is a sandbox demo token.
fn secret_reference(text: &str) -> Result<(), String> {
    let body = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).filter(|b| !b.contains(['{', '}', '$']));
    let Some(body) = body else {
        return Err("a secret written in the config is not allowed; give it as ${VAR} (or, where offered, a *_file)".into());
    };
    match body.split_once(":-") {
        None => Ok(()),
        Some((_, default)) if DEMO_TOKENS.contains(&default) => Ok(()),
        Some((name, _)) => Err(format!(
            "a default for a secret is not allowed (it would be a secret written in the config); set {name}, and write ${{{name}}}"
        )),
    }
}

/// Every secret in a URL (its password, and secret-named parameters such as `password=`) must
/// be a `${VAR}` of its own, without a default.
pub(super) fn url_secrets_are_references(url: &str) -> Result<(), String> {
    for span in syncline_core::redact::secret_spans(url) {
        let part = &url[span];
        let reference = part.starts_with("${") && part.ends_with('}') && !part[2..part.len() - 1].contains(['{', '}', '$']);
        if !reference {
            return Err("a password written in the config is not allowed, in the user info or in a parameter such as password=; \
                        use ${VAR} for it (e.g. postgres://user:${PGPASSWORD}@host/db) or url_file"
                .into());
        }
        if part.contains(":-") {
            return Err("a default for a password is not allowed (it would be a password written in the config); use ${VAR}".into());
        }
    }
    Ok(())
}

/// Expands `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`. Written by hand because
/// shell-style expanders also rewrite bare `$NAME` and `~`, which corrupts SQL text and URLs.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body_start.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("${{{body}}} is not a valid variable reference (use ${{NAME}} or ${{NAME:-default}})"));
        }
        match (env(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("environment variable {name} is not set (referenced as ${{{name}}})")),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration; use e.g. 30s, 5m, 2h"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s, m, h or d")),
    })
}

/// Validates a parsed config into settings, reporting every problem found, not only the first.
pub fn validate(raw: RawConfig, file: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let ctx = Ctx::new(file, base_dir, env);
    let mut errors = ConfigErrors::default();
    let state = errors.take(super::store::state(&ctx, &raw));
    // a config that only connects an OAuth app has something to do: `syncline auth`
    let oauth = raw.connections.as_ref().is_some_and(|c| c.quickbooks.is_some());
    if raw.pipelines.is_empty() && raw.webhooks.is_empty() && !oauth {
        errors.push(ConfigError::file(file, "nothing to do: add at least one pipeline (pipelines:) or webhook (webhooks:)"));
    }
    let webhooks: Vec<_> = raw.webhooks.iter().filter_map(|(name, w)| errors.take(super::serve::webhook(&ctx, name, w))).collect();
    let connections = errors.take(super::flows::connections(&ctx, &raw)).unwrap_or_default();
    let flows = match errors.is_empty() {
        // flows are checked against the webhooks and connections, so only once those are sound
        true => super::flows::flows(&ctx, &raw, &webhooks, &connections).unwrap_or_else(|e| {
            errors.extend(e);
            Vec::new()
        }),
        false => Vec::new(),
    };
    let serve = errors.take(super::serve::serve(&ctx, raw.serve.as_ref()));
    let console = errors.take(super::serve::console(&ctx, raw.console.as_ref()));
    let mut pipelines = Vec::new();
    for (name, p) in raw.pipelines {
        match pipeline(&ctx, name, p) {
            Ok(mut pipeline) => {
                // a QuickBooks sink writes to the company the connection names
                if let SinkSettings::QuickBooks { connection, .. } = &mut pipeline.sink {
                    *connection = connections.quickbooks.clone();
                    if connection.is_none() {
                        let message = format!(
                            "pipelines.{}.sink.quickbooks: add connections.quickbooks (the company, and the OAuth app connected to it)",
                            pipeline.name
                        );
                        errors.push(ConfigError::file(file, message));
                    }
                }
                pipelines.push(pipeline);
            }
            Err(e) => errors.extend(e),
        }
    }
    errors.finish()?;
    let (state, serve, console) = (state.expect("no errors"), serve.expect("no errors"), console.expect("no errors"));
    Ok(Config { file: file.to_owned(), base_dir: base_dir.to_owned(), state, pipelines, webhooks, serve, console, flows, connections })
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        self.0.extend(errors);
    }

    /// The value, or None with the error kept.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when nothing was found; the errors sorted by line otherwise.
    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            return Ok(());
        }
        self.0.sort_by_key(|e| e.at.unwrap_or((u64::MAX, 0)));
        self.0.dedup();
        Err(self)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))?;
        if self.0.len() > 1 {
            write!(f, "\n({} problems)", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One pipeline: every problem in it, or its settings.
fn pipeline(ctx: &Ctx, name: String, p: RawPipeline) -> Result<Pipeline, Vec<ConfigError>> {
    let path = format!("pipelines.{name}");
    if name == "all" || name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        let message = "pipeline names use letters, digits, _ and - (and `all` is reserved)";
        return Err(vec![ConfigError { file: ctx.file.into(), at: None, path, message: message.into() }]);
    }
    let mut errors = ConfigErrors::default();
    let source = errors.take(match &p.source {
        RawSource::Sql(s) => super::sql::source(ctx, &path, s),
        RawSource::Hubspot(h) => super::hubspot::source(ctx, &path, h),
        RawSource::Stripe(s) => super::stripe::source(ctx, &path, s),
    });
    let sink = errors.take(match &p.sink {
        RawSink::Sql(s) => super::sql::sink(ctx, &path, s),
        RawSink::Hubspot(h) => super::hubspot::sink(ctx, &path, h),
        RawSink::Quickbooks(q) => super::quickbooks::sink(ctx, &path, q),
    });
    let retry = errors.take(retry(ctx, &path, p.retry.as_ref()));
    let schedule = p.schedule.as_ref().and_then(|raw| match super::schedule::parse(ctx, &format!("{path}.schedule"), raw) {
        Ok(schedule) => Some(schedule),
        Err(found) => {
            found.into_iter().for_each(|e| errors.push(e));
            None
        }
    });
    let defaults = sink.as_ref().map(SinkSettings::defaults);
    let batch_size =
        defaults.and_then(|(default, max, _)| errors.take(ctx.positive(&p.batch_size, &format!("{path}.batch_size"), 1..=max, default)));
    let mut transforms = Vec::new();
    for (i, step) in p.transforms.into_iter().enumerate() {
        let tpath = format!("{path}.transforms[{i}]");
        match check_transform(&step.value) {
            Ok(()) => transforms.push((tpath, step.value)),
            Err(why) => errors.push(ctx.err(&step.referenced, &tpath, why)),
        }
    }
    errors.finish().map_err(|e| e.0)?;
    let (sink, source, (_, _, default_detection)) = (sink.expect("no errors"), source.expect("no errors"), defaults.expect("no errors"));
    let (batch_size, retry) = (batch_size.expect("no errors"), retry.expect("no errors"));
    Ok(Pipeline {
        name,
        source,
        transforms,
        sink,
        batch_size,
        change_detection: p.change_detection.unwrap_or(default_detection),
        retry,
        verify_counts: p.verify_counts,
        schedule,
    })
}

fn retry(ctx: &Ctx, path: &str, raw: Option<&RawRetry>) -> Result<RetryLimits, ConfigError> {
    let mut limits = RetryLimits { transient: Duration::from_secs(300), unavailable: Duration::from_secs(5) };
    let Some(raw) = raw else { return Ok(limits) };
    for (value, name, slot) in
        [(&raw.unreachable, "unreachable", &mut limits.unavailable), (&raw.transient, "transient", &mut limits.transient)]
    {
        if let Some(value) = value {
            let key = format!("{path}.retry.{name}");
            *slot = parse_duration(&ctx.expand(value, &key)?).map_err(|why| ctx.err(&value.referenced, &key, why))?;
        }
    }
    if limits.unavailable > limits.transient
        && let Some(value) = &raw.unreachable
    {
        let message = format!(
            "{:?} is longer than retry.transient ({:?}), which bounds every call; raise retry.transient too",
            limits.unavailable, limits.transient
        );
        return Err(ctx.err(&value.referenced, &format!("{path}.retry.unreachable"), message));
    }
    Ok(limits)
}

/// Checks what can be checked of a transform step without IO.
fn check_transform(step: &RawTransform) -> Result<(), String> {
    let non_empty =
        |fields: &[String], what: &str| if fields.is_empty() { Err(format!("{what}: list at least one field")) } else { Ok(()) };
    match step {
        RawTransform::Select(f) => non_empty(f, "select"),
        RawTransform::Require(f) => non_empty(f, "require"),
        RawTransform::Email(f) => non_empty(f, "email"),
        RawTransform::Name(f) => non_empty(f, "name"),
        RawTransform::Beneficiaries { fields } => non_empty(fields, "beneficiaries.fields"),
        RawTransform::Cedula { fields, kinds } => {
            non_empty(fields, "cedula.fields")?;
            if kinds.as_ref().is_some_and(Vec::is_empty) {
                Err("cedula.kinds: list at least one of national, dimex, legal".into())
            } else {
                Ok(())
            }
        }
        RawTransform::Phone { fields, placeholders } => {
            non_empty(fields, "phone.fields")?;
            for p in placeholders {
                normalize_phone(p).map_err(|why| format!("phone.placeholders: {p:?} {why}"))?;
            }
            Ok(())
        }
        RawTransform::Range { field: _, min, max } => match (min, max) {
            (None, None) => Err("range: give min, max or both".into()),
            (Some(lo), Some(hi)) if lo > hi => Err(format!("range: min {lo} is above max {hi}")),
            _ => Ok(()),
        },
        RawTransform::Enum { values, .. } if values.is_empty() => Err("enum.values: list at least one value".into()),
        RawTransform::MapValues { values, .. } if values.is_empty() => Err("map_values.values: give at least one mapping".into()),
        RawTransform::JsonSchema(path) if path.trim().is_empty() => Err("json_schema: give the schema file's path".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |name: &str| match name {
            "HOST" => Some("db.local".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(interpolate("postgres://${HOST}/x", &env).unwrap(), "postgres://db.local/x");
        assert_eq!(interpolate("${MISSING:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("SELECT $1, $${X}", &env).unwrap(), "SELECT $1, ${X}");
        assert!(interpolate("${MISSING}", &env).unwrap_err().contains("MISSING is not set"));
        assert!(interpolate("${A B}", &env).unwrap_err().contains("not a valid variable"));
        assert!(interpolate("${OPEN", &env).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn passwords_must_be_references() {
        let ok = |url: &str| url_secrets_are_references(url).is_ok();
        assert!(!ok("postgres://u:hunter2@h/db"));
        assert!(ok("postgres://u:${PW}@h/db"));
        assert!(ok("postgres://u@h/db") && ok("sqlite://x.db") && ok("${DATABASE_URL}"));
        // F1: a password in a parameter, literal or defaulted
        assert!(!ok("postgres://postgres@127.0.0.1:5432/test?password=CANARY43"));
        assert!(ok("postgres://postgres@127.0.0.1:5432/test?password=${PGPW}"));
        assert!(!ok("postgres://u:${PW:-x}@h/db"));
        assert!(!ok("postgres://h/db?sslpassword=${PW:-hunter2}"));
        assert!(!ok("mssql://sa:${A}x@h/db"), "a reference and a literal");
    }

    #[test]
    fn settings_never_show_their_secrets() {
        let env = |name: &str| match name {
            "PW" => Some("CANARY46".to_owned()),
            "TOKEN" => Some("pat-CANARY47".to_owned()),
            _ => None,
        };
        let text = "state: postgres://u:${PW}@h/db\npipelines:\n  m:\n    source:\n      sql: {url: \"postgres://u@h/db?password=${PW}\", table: t, key: k, watermark: w}\n    sink:\n      hubspot: {token: \"${TOKEN}\", id_property: k}\n";
        let config = super::super::parse("c.yaml", text, Path::new("/tmp"), &env).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("CANARY46") && !shown.contains("CANARY47"), "{shown}");
    }

    #[test]
    fn secrets_are_references_without_defaults() {
        assert!(secret_reference("${HUBSPOT_APP_SECRET}").is_ok());
        assert!(secret_reference("hunter2").is_err());
        assert!(secret_reference("pre-${X}").is_err());
        let error = secret_reference("${TOKEN:-pat-na1-123}").unwrap_err();
        assert!(error.contains("default") && error.contains("set TOKEN"), "{error}");
        assert!(secret_reference("${HUBSPOT_TOKEN:-sandbox-token}").is_ok(), "the sandbox's demo token is public");
        assert!(secret_reference("${MANYCHAT_TOKEN:-1000001:sandbox-key}").is_ok());
    }

    #[test]
    fn relative_sqlite_paths_follow_the_config() {
        let base = Path::new("/etc/syncline");
        assert_eq!(resolve_sqlite("sqlite://state.db", base), "sqlite:///etc/syncline/state.db");
        assert_eq!(resolve_sqlite("sqlite:///abs.db?mode=ro", base), "sqlite:///abs.db?mode=ro");
        assert_eq!(resolve_sqlite("postgres://h/db", base), "postgres://h/db");
        assert_eq!(resolve_sqlite("sqlite::memory:", base), "sqlite::memory:");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
