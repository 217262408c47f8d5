//! Validated settings: what the rest of the binary works with. `validate` does no IO; env
//! lookups come in as a function so tests can pass their own.

use super::error::ConfigError;
use super::raw::*;
use serde_saphyr::Location;
use std::path::{Path, PathBuf};
use std::time::Duration;
use syncline_connectors::hubspot::{DEFAULT_BASE_URL, HubSpotSettings, MAX_INPUTS_PER_CALL};
use syncline_connectors::sql::{NullWatermarks, SqlSinkSettings, SqlSourceSettings, SqlTable, TextMode};
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
    /// Flows `syncline serve` runs on inbox events, checked.
    pub flows: Vec<syncline_server::flow::Flow>,
    pub connections: super::flows::FlowConnections,
}

/// Where the state store is.
#[derive(Clone, PartialEq)]
pub struct StateSettings {
    /// `sqlite://PATH` (absolute) or `postgres://…` (with `schema=` when one was configured).
    pub url: String,
    /// False for the default `<config stem>.state.db`.
    pub explicit: bool,
}

impl std::fmt::Debug for StateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSettings").field("url", &syncline_core::redact::url(&self.url)).field("explicit", &self.explicit).finish()
    }
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub bind: std::net::SocketAddr,
    /// Inbox events run at once.
    pub workers: usize,
    /// How long a claimed event stays this instance's.
    pub lease: Duration,
    /// How long running flows get to finish at shutdown.
    pub drain: Duration,
    /// What one client may hold of the server.
    pub limits: syncline_server::http::HttpLimits,
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
}

/// Where a connection URL (or a token) comes from: the config (after `${VAR}` expansion) or a
/// file.
#[derive(Clone, PartialEq)]
pub enum UrlSource {
    Inline(String),
    File(PathBuf),
}

/// It may hold a password or a token: never shown.
impl std::fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(***)"),
            UrlSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[derive(Debug)]
pub enum SourceSettings {
    /// The URL is filled in from `url` when the pipeline is opened.
    Sql { url: UrlSource, settings: SqlSourceSettings, at: SourceAt },
}

/// Where a source's settings are in the file, for problems found when it is probed.
#[derive(Debug, Clone, Copy)]
pub struct SourceAt {
    /// `table` or `query`.
    pub from: Location,
    pub key: Location,
    pub watermark: Location,
}

#[derive(Debug)]
pub enum SinkSettings {
    Sql {
        url: UrlSource,
        settings: SqlSinkSettings,
    },
    /// The token is filled in from `token` when the pipeline is opened; `produced_values` and
    /// `inputs_per_call` come from the transforms and `batch_size`.
    HubSpot {
        token: UrlSource,
        settings: HubSpotSettings,
    },
}

impl Config {
    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
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

    /// A connection URL: from `url` (a password in it must be a `${VAR}`) or `url_file`.
    fn url(
        &self,
        url: &Option<At<String>>,
        url_file: &Option<At<String>>,
        path: &str,
        parent: &Location,
        role: Role,
    ) -> Result<UrlSource, ConfigError> {
        match (url, url_file) {
            (Some(url), None) => {
                url_secrets_are_references(&url.value).map_err(|why| self.err(&url.referenced, &format!("{path}.url"), why))?;
                let expanded = self.expand(url, &format!("{path}.url"))?;
                let resolved = self.resolve_sqlite(&expanded);
                check_scheme(&resolved, role).map_err(|why| self.err(&url.referenced, &format!("{path}.url"), why))?;
                Ok(UrlSource::Inline(resolved))
            }
            (None, Some(file)) => Ok(UrlSource::File(self.base_dir.join(self.expand(file, &format!("{path}.url_file"))?))),
            (Some(url), Some(_)) => Err(self.err(&url.referenced, path, "give either url or url_file, not both")),
            (None, None) => Err(self.err(parent, path, "missing url (or url_file)")),
        }
    }

    /// Relative SQLite paths are relative to the config file.
    fn resolve_sqlite(&self, url: &str) -> String {
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

/// Whether a URL is read from or written to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Source,
    Sink,
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
fn url_secrets_are_references(url: &str) -> Result<(), String> {
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

fn parse_duration(text: &str) -> Result<Duration, String> {
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
    let ctx = Ctx { file, base_dir, env };
    let mut errors = ConfigErrors::default();
    let state = errors.take(state(&ctx, &raw));
    if raw.pipelines.is_empty() && raw.webhooks.is_empty() {
        errors.push(ConfigError::file(file, "nothing to do: add at least one pipeline (pipelines:) or webhook (webhooks:)"));
    }
    let webhooks: Vec<_> = raw.webhooks.iter().filter_map(|(name, w)| errors.take(webhook(&ctx, name, w))).collect();
    let connections = errors.take(super::flows::connections(&ctx, &raw)).unwrap_or_default();
    let flows = match errors.is_empty() {
        // flows are checked against the webhooks and connections, so only once those are sound
        true => super::flows::flows(&ctx, &raw, &webhooks, &connections).unwrap_or_else(|e| {
            errors.extend(e);
            Vec::new()
        }),
        false => Vec::new(),
    };
    let serve = errors.take(serve(&ctx, raw.serve.as_ref()));
    let mut pipelines = Vec::new();
    for (name, p) in raw.pipelines {
        match pipeline(&ctx, name, p) {
            Ok(pipeline) => pipelines.push(pipeline),
            Err(e) => errors.extend(e),
        }
    }
    errors.finish()?;
    let (state, serve) = (state.expect("no errors"), serve.expect("no errors"));
    Ok(Config { file: file.to_owned(), base_dir: base_dir.to_owned(), state, pipelines, webhooks, serve, flows, connections })
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

/// Only the state store, for commands that read nothing else.
pub(super) fn state_only(
    raw: &RawConfig,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StateSettings, ConfigError> {
    state(&Ctx { file, base_dir, env }, raw)
}

/// Where the state store is: the configured URL, or `<config stem>.state.db` beside the config
/// so two configs in one folder never share cursors by accident.
fn state(ctx: &Ctx, raw: &RawConfig) -> Result<StateSettings, ConfigError> {
    let Some(state) = &raw.state else {
        let stem = Path::new(ctx.file).file_stem().and_then(|s| s.to_str()).unwrap_or("syncline");
        let path = ctx.base_dir.join(format!("{stem}.state.db"));
        if let Some(schema) = &raw.state_schema {
            return Err(ctx.err(&schema.referenced, "state_schema", "applies to a postgres:// state store; this config uses SQLite"));
        }
        return Ok(StateSettings { url: format!("sqlite://{}", path.display()), explicit: false });
    };
    url_secrets_are_references(&state.value).map_err(|why| ctx.err(&state.referenced, "state", why))?;
    let mut url = ctx.resolve_sqlite(&ctx.expand(state, "state")?);
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !(url.starts_with("sqlite:") || postgres) {
        return Err(ctx.err(&state.referenced, "state", format!("{url:?} is not a state store; use sqlite://PATH or postgres://…")));
    }
    if let Some(schema) = &raw.state_schema {
        let name = ctx.expand(schema, "state_schema")?;
        if !postgres {
            return Err(ctx.err(&schema.referenced, "state_schema", "applies to a postgres:// state store only"));
        }
        if url.contains("schema=") {
            return Err(ctx.err(
                &schema.referenced,
                "state_schema",
                "the state URL already names a schema (?schema=…); give one or the other",
            ));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ctx.err(&schema.referenced, "state_schema", format!("{name:?} is not a schema name (letters, digits and _)")));
        }
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("schema={name}"));
    }
    Ok(StateSettings { url, explicit: true })
}

fn serve(ctx: &Ctx, raw: Option<&RawServe>) -> Result<ServeSettings, ConfigError> {
    let lease = match raw.and_then(|s| s.lease.as_ref()) {
        Some(lease) => {
            let text = ctx.expand(lease, "serve.lease")?;
            let lease_time = parse_duration(&text).map_err(|why| ctx.err(&lease.referenced, "serve.lease", why))?;
            if lease_time < Duration::from_secs(1) {
                return Err(ctx.err(&lease.referenced, "serve.lease", "must be at least 1s"));
            }
            lease_time
        }
        None => Duration::from_secs(60),
    };
    let duration = |value: Option<&At<String>>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
        let path = format!("serve.{name}");
        match value {
            Some(v) => parse_duration(&ctx.expand(v, &path)?).map_err(|why| ctx.err(&v.referenced, &path, why)),
            None => Ok(default),
        }
    };
    let drain = duration(raw.and_then(|s| s.drain.as_ref()), "drain", Duration::from_secs(1))?;
    let defaults = syncline_server::http::HttpLimits::default();
    let limits = syncline_server::http::HttpLimits {
        header_timeout: duration(raw.and_then(|s| s.header_timeout.as_ref()), "header_timeout", defaults.header_timeout)?,
        body_chunk_timeout: duration(raw.and_then(|s| s.body_chunk_timeout.as_ref()), "body_chunk_timeout", defaults.body_chunk_timeout)?,
        body_timeout: duration(raw.and_then(|s| s.body_timeout.as_ref()), "body_timeout", defaults.body_timeout)?,
        max_connections: ctx.positive(
            &raw.and_then(|s| s.max_connections.clone()),
            "serve.max_connections",
            1..=100_000,
            defaults.max_connections as u64,
        )?,
        max_connections_per_client: ctx.positive(
            &raw.and_then(|s| s.max_connections_per_client.clone()),
            "serve.max_connections_per_client",
            1..=100_000,
            defaults.max_connections_per_client as u64,
        )?,
    };
    let workers = ctx.positive(&raw.and_then(|s| s.workers.clone()), "serve.workers", 1..=256, 16)?;
    let bind = match raw.and_then(|s| s.bind.as_ref()) {
        Some(bind) => {
            let text = ctx.expand(bind, "serve.bind")?;
            text.parse()
                .map_err(|_| ctx.err(&bind.referenced, "serve.bind", format!("{text:?} is not an address:port such as 0.0.0.0:8080")))?
        }
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    Ok(ServeSettings { bind, workers, lease, drain, limits })
}

/// One pipeline: every problem in it, or its settings.
fn pipeline(ctx: &Ctx, name: String, p: RawPipeline) -> Result<Pipeline, Vec<ConfigError>> {
    let path = format!("pipelines.{name}");
    if name == "all" || name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        let message = "pipeline names use letters, digits, _ and - (and `all` is reserved)";
        return Err(vec![ConfigError { file: ctx.file.into(), at: None, path, message: message.into() }]);
    }
    let mut errors = ConfigErrors::default();
    let source = errors.take(source(ctx, &path, &p.source));
    let sink = errors.take(sink(ctx, &path, &p.sink));
    let retry = errors.take(retry(ctx, &path, p.retry.as_ref()));
    let batch_size = sink
        .as_ref()
        .and_then(|(_, default, max, _)| errors.take(ctx.positive(&p.batch_size, &format!("{path}.batch_size"), 1..=*max, *default)));
    let mut transforms = Vec::new();
    for (i, step) in p.transforms.into_iter().enumerate() {
        let tpath = format!("{path}.transforms[{i}]");
        match check_transform(&step.value) {
            Ok(()) => transforms.push((tpath, step.value)),
            Err(why) => errors.push(ctx.err(&step.referenced, &tpath, why)),
        }
    }
    errors.finish().map_err(|e| e.0)?;
    let ((sink, _, _, default_detection), source) = (sink.expect("no errors"), source.expect("no errors"));
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
    })
}

fn source(ctx: &Ctx, path: &str, raw: &RawSource) -> Result<SourceSettings, ConfigError> {
    match raw {
        RawSource::Sql(s) => {
            let spath = format!("{path}.source.sql");
            let url = ctx.url(&s.url, &s.url_file, &spath, &s.key.referenced, Role::Source)?;
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
                text: s
                    .text
                    .iter()
                    .map(|(field, mode)| {
                        let mode = match mode {
                            RawTextMode::Lossy => TextMode::Lossy,
                            RawTextMode::Bytes => TextMode::Bytes,
                        };
                        (field.clone(), mode)
                    })
                    .collect(),
            };
            let at = SourceAt { from: from_at, key: s.key.referenced, watermark: s.watermark.referenced };
            Ok(SourceSettings::Sql { url, settings, at })
        }
    }
}

/// The sink, its default and largest batch size, and whether change detection is on by default.
fn sink(ctx: &Ctx, path: &str, raw: &RawSink) -> Result<(SinkSettings, u64, u64, bool), ConfigError> {
    match raw {
        RawSink::Sql(s) => {
            let spath = format!("{path}.sink.sql");
            let url = ctx.url(&s.url, &s.url_file, &spath, &s.table.referenced, Role::Sink)?;
            let settings = SqlSinkSettings {
                url: String::new(),
                table: ctx.expand(&s.table, &format!("{spath}.table"))?,
                key: ctx.expand(&s.key, &format!("{spath}.key"))?,
                create_table: s.create_table,
            };
            Ok((SinkSettings::Sql { url, settings }, 500, 10_000, false))
        }
        RawSink::Hubspot(h) => {
            let spath = format!("{path}.sink.hubspot");
            let token = match (&h.token, &h.token_file) {
                (Some(token), None) => UrlSource::Inline(ctx.secret(token, &format!("{spath}.token"))?),
                (None, Some(file)) => UrlSource::File(ctx.base_dir.join(ctx.expand(file, &format!("{spath}.token_file"))?)),
                (Some(token), Some(_)) => return Err(ctx.err(&token.referenced, &spath, "give either token or token_file, not both")),
                (None, None) => return Err(ctx.err(&h.id_property.referenced, &spath, "missing token (or token_file)")),
            };
            let base_url = match &h.base_url {
                Some(url) => ctx.http_url(url, &format!("{spath}.base_url"))?,
                None => DEFAULT_BASE_URL.to_owned(),
            };
            let object = match &h.object {
                Some(object) => ctx.expand(object, &format!("{spath}.object"))?,
                None => "contacts".to_owned(),
            };
            let id_property = ctx.expand(&h.id_property, &format!("{spath}.id_property"))?;
            let mut settings = HubSpotSettings::new(&base_url, "", &object, &id_property);
            let tier = ctx.tier(h.tier);
            let burst = u64::from(tier.per_ten_seconds());
            settings.calls_per_ten_seconds = ctx.positive(&h.calls_per_10s, &format!("{spath}.calls_per_10s"), 1..=burst, burst)? as u32;
            settings.in_flight = ctx.positive(&h.in_flight, &format!("{spath}.in_flight"), 1..=32, 4)?;
            let batch = MAX_INPUTS_PER_CALL as u64;
            Ok((SinkSettings::HubSpot { token, settings }, batch, batch, true))
        }
    }
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

/// One webhook endpoint: secrets only as `${VAR}`, never written in the file.
fn webhook(ctx: &Ctx, name: &str, raw: &RawWebhook) -> Result<syncline_server::Source, ConfigError> {
    let path = format!("webhooks.{name}");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ConfigError { file: ctx.file.into(), at: None, path, message: "webhook names use letters, digits, _ and -".into() });
    }
    if raw.secrets.is_empty() {
        return Err(ConfigError {
            file: ctx.file.into(),
            at: None,
            path: format!("{path}.secrets"),
            message: "at least one signing secret is needed".into(),
        });
    }
    let mut secrets = Vec::new();
    for (i, secret) in raw.secrets.iter().enumerate() {
        secrets.push(syncline_server::Secret::new(ctx.secret(secret, &format!("{path}.secrets[{i}]"))?));
    }
    let public_url = raw.public_url.as_ref().map(|url| ctx.http_url(url, &format!("{path}.public_url"))).transpose()?;
    let default_limit = syncline_server::DEFAULT_BODY_LIMIT as u64;
    Ok(syncline_server::Source {
        name: name.to_owned(),
        provider: match raw.provider {
            RawProvider::Hubspot => syncline_server::Provider::HubSpot,
            RawProvider::Stripe => syncline_server::Provider::Stripe,
        },
        secrets,
        hubspot_versions: raw.versions.clone().unwrap_or_else(|| {
            use syncline_server::HubSpotVersion::*;
            vec![V1, V2, V3]
        }),
        public_url,
        body_limit: ctx.positive(&raw.body_limit, &format!("{path}.body_limit"), 1024..=64 * 1024 * 1024, default_limit)?,
    })
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
