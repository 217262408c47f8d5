//! Builds a configured pipeline's parts: the transform chain, and the source and sink, each
//! from the settings of the connector that owns them.

use crate::config::{
    Pipeline, QuickBooksConnection, RawCedulaKind, RawOtherwise, RawTransform, RawType, Secret, SinkSettings, SourceSettings,
};
use crate::exit::CliError;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use syncline_connectors::hubspot::{
    DetailSource, HubSpotApi, HubSpotProfile, HubSpotSink, HubSpotSource, MAX_INPUTS_PER_CALL, OWNERS, Reference, ReferenceSource,
};
use syncline_connectors::quickbooks::{ItemSink, OAuthApp, QuickBooksApi, TokenManager};
use syncline_connectors::sql::{SqlSink, SqlSource};
use syncline_connectors::stripe::{StripeApi, StripeProfile, StripeSource};
use syncline_connectors::{AnySink, AnySource};
use syncline_core::ConnectorError;
use syncline_core::runner::{RunMode, RunOptions, Scope};
use syncline_core::transform::*;
use syncline_core::{Transform, Value};
use tokio_util::sync::CancellationToken;

/// The pipeline's transforms, in order, as one chain. Reads JSON Schema files.
pub fn transforms(pipeline: &Pipeline, base_dir: &Path) -> Result<Chain, CliError> {
    let mut steps: Vec<Box<dyn Transform>> = Vec::new();
    for (path, step) in &pipeline.transforms {
        steps.push(build(step, base_dir).map_err(|why| CliError::usage(format!("{path}: {why}")))?);
    }
    Ok(Chain(steps))
}

fn build(step: &RawTransform, base_dir: &Path) -> Result<Box<dyn Transform>, String> {
    use RawTransform as R;
    let owned = |v: &[String]| v.to_vec();
    Ok(match step {
        R::Select(fields) => Box::new(Select { fields: fields.iter().map(|f| Arc::from(f.as_str())).collect() }),
        R::Rename(pairs) => Box::new(Rename { pairs: pairs.iter().map(|(from, to)| (from.clone(), Arc::from(to.as_str()))).collect() }),
        R::Constant(pairs) => {
            Box::new(Constant { pairs: pairs.iter().map(|(name, v)| (Arc::from(name.as_str()), Value::from_json(v))).collect() })
        }
        R::Coerce(fields) => Box::new(Coerce { fields: fields.iter().map(|(f, t)| (f.clone(), target_type(*t))).collect() }),
        R::MapValues { field, values, otherwise } => Box::new(MapValues {
            field: field.clone(),
            values: values.iter().map(|(k, v)| (k.clone(), Value::Text(v.as_str().into()))).collect::<HashMap<_, _>>(),
            otherwise: match otherwise {
                RawOtherwise::Reject => Otherwise::Reject,
                RawOtherwise::Keep => Otherwise::Keep,
                RawOtherwise::Null => Otherwise::Null,
            },
        }),
        R::Require(fields) => Box::new(Require { fields: owned(fields) }),
        R::Email(fields) => Box::new(Email { fields: owned(fields) }),
        R::Name(fields) => Box::new(Name { fields: owned(fields) }),
        R::Range { field, min, max } => Box::new(Range { field: field.clone(), min: *min, max: *max }),
        R::Enum { field, values, ignore_case } => {
            Box::new(Enum { field: field.clone(), values: values.clone(), ignore_case: *ignore_case })
        }
        R::Cedula { fields, kinds } => Box::new(Cedula {
            fields: owned(fields),
            kinds: match kinds {
                None => CedulaKind::ALL.to_vec(),
                Some(kinds) => kinds
                    .iter()
                    .map(|k| match k {
                        RawCedulaKind::National => CedulaKind::National,
                        RawCedulaKind::Dimex => CedulaKind::Dimex,
                        RawCedulaKind::Legal => CedulaKind::Legal,
                    })
                    .collect(),
            },
        }),
        R::Phone { fields, placeholders } => Box::new(Phone::new(owned(fields), placeholders)?),
        R::Beneficiaries { fields } => Box::new(Beneficiaries { fields: owned(fields) }),
        R::JsonSchema(file) => {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("json_schema: cannot read {}: {e}", path.display()))?;
            let schema: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("json_schema: {} is not JSON: {e}", path.display()))?;
            Box::new(JsonSchema::new(&schema).map_err(|e| format!("json_schema: {} is not a valid schema: {e}", path.display()))?)
        }
    })
}

fn target_type(t: RawType) -> TargetType {
    use RawType as T;
    match t {
        T::String => TargetType::String,
        T::Int => TargetType::Int,
        T::Float => TargetType::Float,
        T::Decimal => TargetType::Decimal,
        T::Bool => TargetType::Bool,
        T::Date => TargetType::Date,
        T::Datetime => TargetType::Datetime,
    }
}

/// The URL itself: as configured, or read from its file (a relative SQLite path in it follows
/// the config).
pub fn resolve_url(url: &Secret, base_dir: &Path) -> Result<String, CliError> {
    match url {
        Secret::Inline(url) => Ok(url.clone()),
        Secret::File(_) => Ok(crate::config::resolve_sqlite(&url.read().map_err(CliError::usage)?, base_dir)),
    }
}

/// The HubSpot clients of one command, one per portal URL and token: pipelines that run at once
/// against the same portal share its client, so their calls come out of one budget (one
/// `Policy`), as HubSpot counts them. The first pipeline's budget settings make the client.
///
/// It also carries the command's state store, for sinks that keep what they learn there (the
/// ids QuickBooks gave the items written, the OAuth tokens).
#[derive(Clone, Default)]
pub struct Portals {
    clients: Arc<std::sync::Mutex<HashMap<PortalKey, Arc<HubSpotApi>>>>,
    store: Option<syncline_store::Store>,
}

/// A portal as a client reaches it: its URL and the token.
type PortalKey = (String, String);

impl Portals {
    /// Clients for a command that has a state store.
    pub fn with_store(store: syncline_store::Store) -> Portals {
        Portals { clients: Arc::default(), store: Some(store) }
    }

    fn api(&self, profile: &HubSpotProfile) -> Result<Arc<HubSpotApi>, ConnectorError> {
        let mut clients = self.clients.lock().expect("portals");
        let key = (profile.base_url.clone(), profile.token.clone());
        if let Some(api) = clients.get(&key) {
            return Ok(api.clone());
        }
        let budgets = self.store.as_ref().and_then(crate::budgets::shared_by);
        let api = Arc::new(HubSpotApi::new(&HubSpotProfile { budgets, ..profile.clone() })?);
        clients.insert(key, api.clone());
        Ok(api)
    }
}

/// Opens the pipeline's source: a database that cannot be reached is a failure (exit 1), a URL
/// or credentials it refuses a config error (exit 2). `since` starts the read at a time.
pub async fn source(pipeline: &Pipeline, base_dir: &Path, since: Option<NaiveDateTime>) -> Result<AnySource, CliError> {
    source_in(&Portals::default(), pipeline, base_dir, since).await
}

/// [`source`], its HubSpot client shared with the other pipelines of `portals`.
pub async fn source_in(
    portals: &Portals,
    pipeline: &Pipeline,
    base_dir: &Path,
    since: Option<NaiveDateTime>,
) -> Result<AnySource, CliError> {
    let opening = |e: ConnectorError| CliError::connector(&e, format!("pipeline {}: source", pipeline.name));
    match &pipeline.source {
        SourceSettings::Sql { url, settings, .. } => {
            let mut settings = settings.clone();
            settings.url = resolve_url(url, base_dir)?;
            SqlSource::open(settings, since).await.map(AnySource::Sql).map_err(opening)
        }
        SourceSettings::HubSpot { token, profile, stream } => {
            let api = portals.api(&hubspot_profile(pipeline, token, profile)?).map_err(opening)?;
            let since = since.map(|t| t.and_utc());
            Ok(match (&stream.associations, &stream.pipelines) {
                (Some(_), _) => AnySource::HubSpotDetails(DetailSource::new(api, stream, since)),
                (None, None) if !stream.history.is_empty() => AnySource::HubSpotDetails(DetailSource::new(api, stream, since)),
                (None, Some(object)) => AnySource::HubSpotReference(ReferenceSource::new(api, Reference::Pipelines(object.clone()))),
                (None, None) if stream.object == OWNERS => AnySource::HubSpotReference(ReferenceSource::new(api, Reference::Owners)),
                (None, None) => AnySource::HubSpot(HubSpotSource::new(api, stream.clone(), since)),
            })
        }
        SourceSettings::Stripe { key, profile } => {
            let api = StripeApi::new(&stripe_profile(pipeline, key, profile)?).map_err(opening)?;
            Ok(AnySource::Stripe(StripeSource::new(Arc::new(api), since.map(|t| t.and_utc()))))
        }
    }
}

/// A QuickBooks client for the configured company, its tokens kept in `store` (sealed under
/// the key `SYNCLINE_TOKEN_KEY` names).
pub fn quickbooks_api(connection: &QuickBooksConnection, store: &syncline_store::Store) -> Result<QuickBooksApi, CliError> {
    let cipher = crate::vault::TokenCipher::from_env(&|name| std::env::var(name).ok()).map_err(CliError::usage)?;
    let secret =
        connection.client_secret.read().map_err(|why| CliError::usage(format!("connections.quickbooks.client_secret_file: {why}")))?;
    let profile = &connection.profile;
    let app = OAuthApp::new(&profile.token_url, &profile.client_id, &secret).map_err(|e| CliError::connector(&e, "QuickBooks"))?;
    let vault = crate::vault::StoreVault::new(store.clone(), "quickbooks", cipher);
    let tokens = Arc::new(TokenManager::new(app, vault, &format!("quickbooks:{}", profile.realm_id)));
    QuickBooksApi::new(profile, tokens).map_err(|e| CliError::connector(&e, "QuickBooks"))
}

/// A Stripe profile with its key read, at the key's mode's rate unless the config set one.
pub fn stripe_profile(pipeline: &Pipeline, key: &Secret, profile: &StripeProfile) -> Result<StripeProfile, CliError> {
    let mut profile = profile.clone();
    profile.key = key.read().map_err(|why| CliError::usage(format!("pipeline {}: key_file: {why}", pipeline.name)))?;
    if profile.requests_per_second == 0 {
        profile.requests_per_second = StripeProfile::mode_rate(&profile.key);
    }
    profile.call_timeout = pipeline.retry.transient;
    profile.unreachable_for = pipeline.retry.unavailable;
    Ok(profile)
}

/// Opens the pipeline's sink; `batch_size` is the pipeline's (or the command line's).
pub async fn sink(pipeline: &Pipeline, base_dir: &Path, batch_size: usize) -> Result<AnySink, CliError> {
    sink_in(&Portals::default(), pipeline, base_dir, batch_size).await
}

/// [`sink`], its HubSpot client shared with the other pipelines of `portals`.
pub async fn sink_in(portals: &Portals, pipeline: &Pipeline, base_dir: &Path, batch_size: usize) -> Result<AnySink, CliError> {
    let opening = |e: ConnectorError| CliError::connector(&e, format!("pipeline {}: sink", pipeline.name));
    match &pipeline.sink {
        SinkSettings::Sql { url, settings } => {
            let key = match &pipeline.source {
                SourceSettings::HubSpot { stream, .. } => stream.row_key(),
                SourceSettings::Stripe { .. } => Some("id"),
                SourceSettings::Sql { .. } => None,
            };
            if let Some(key) = key.filter(|key| *key != settings.key) {
                let message = format!("pipeline {}: sink.sql.key: these rows are keyed by {key}, not {}", pipeline.name, settings.key);
                return Err(CliError::usage(message));
            }
            let mut settings = settings.clone();
            settings.url = resolve_url(url, base_dir)?;
            SqlSink::open(settings).await.map(AnySink::Sql).map_err(opening)
        }
        SinkSettings::HubSpot { token, profile, stream } => {
            let mut stream = stream.clone();
            stream.inputs_per_call = batch_size.clamp(1, MAX_INPUTS_PER_CALL);
            stream.produced_values = shape(pipeline).values;
            let api = portals.api(&hubspot_profile(pipeline, token, profile)?).map_err(opening)?;
            Ok(AnySink::HubSpot(HubSpotSink::new(api, stream)))
        }
        SinkSettings::QuickBooks { items, batches_per_minute, connection } => {
            let connection = connection.as_ref().expect("validated: a QuickBooks sink has its connection");
            let store = portals.store.as_ref().ok_or_else(|| {
                CliError::usage(format!(
                    "pipeline {}: sink: a QuickBooks sink is written by `syncline run` (it keeps its items' ids in the state store)",
                    pipeline.name
                ))
            })?;
            let mut connection = connection.clone();
            connection.profile.batches_per_minute = *batches_per_minute;
            connection.profile.call_timeout = pipeline.retry.transient;
            connection.profile.unreachable_for = pipeline.retry.unavailable;
            let api = Arc::new(quickbooks_api(&connection, store)?);
            let links = crate::vault::StoreLinks::new(store.clone());
            Ok(AnySink::QuickBooks(ItemSink::new(api, links.clone(), links, &connection.profile.realm_id, items.clone())))
        }
    }
}

/// Whether the pipeline reads HubSpot associations (links) rather than objects or rows.
pub fn reads_associations(pipeline: &Pipeline) -> bool {
    matches!(&pipeline.source, SourceSettings::HubSpot { stream, .. } if stream.associations.is_some())
}

/// A HubSpot profile with its token read, whose policy is this call path's one retry ceiling:
/// the pipeline's `retry` limits.
pub fn hubspot_profile(pipeline: &Pipeline, token: &Secret, profile: &HubSpotProfile) -> Result<HubSpotProfile, CliError> {
    let mut profile = profile.clone();
    profile.token = token.read().map_err(|why| CliError::usage(format!("pipeline {}: token_file: {why}", pipeline.name)))?;
    profile.call_timeout = pipeline.retry.transient;
    profile.unreachable_for = pipeline.retry.unavailable;
    Ok(profile)
}

/// A run's options as the pipeline sets them: its write size, destination key, change
/// detection and retry limits; no `--limit`, no `--resend`.
pub fn run_options(
    pipeline: &Pipeline,
    run_id: String,
    scope: Arc<Scope>,
    mode: RunMode,
    batch_size: usize,
    stop: CancellationToken,
) -> RunOptions {
    RunOptions {
        run_id,
        scope,
        mode,
        batch_size: write_size(pipeline, batch_size),
        limit: None,
        sink_key: sink_key(pipeline),
        change_detection: pipeline.change_detection,
        resend: false,
        retry: pipeline.retry,
        stop,
    }
}

/// The mapped field that keys the destination.
pub fn sink_key(pipeline: &Pipeline) -> Arc<str> {
    match &pipeline.sink {
        SinkSettings::Sql { settings, .. } => Arc::from(settings.key.as_str()),
        SinkSettings::HubSpot { stream, .. } => Arc::from(stream.id_property.as_str()),
        // the source's key (a Stripe product's id) finds the record's item
        SinkSettings::QuickBooks { .. } => Arc::from("id"),
    }
}

/// Records handed to the sink per write: a SQL sink writes `batch_size` rows per statement
/// group; the HubSpot sink splits what it gets into calls of `batch_size` and keeps `in_flight`
/// of them going, so it gets several calls' worth at a time.
pub fn write_size(pipeline: &Pipeline, batch_size: usize) -> usize {
    match &pipeline.sink {
        SinkSettings::Sql { .. } => batch_size,
        SinkSettings::HubSpot { profile, .. } => batch_size * profile.in_flight * 5,
        SinkSettings::QuickBooks { .. } => batch_size,
    }
}

/// What the transforms are known to produce, found without running them: the final fields
/// when a `select` fixes them, and the closed set of values of fields an `enum`, `map_values`
/// or `constant` step sets (the HubSpot pre-flight checks those against enumeration options).
#[derive(Debug, Default, PartialEq)]
pub struct Shape {
    pub fields: Option<Vec<String>>,
    pub values: BTreeMap<String, BTreeSet<String>>,
}

pub fn shape(pipeline: &Pipeline) -> Shape {
    let mut shape = Shape::default();
    for (_, step) in &pipeline.transforms {
        match step {
            RawTransform::Select(fields) => {
                shape.values.retain(|name, _| fields.contains(name));
                shape.fields = Some(fields.clone());
            }
            RawTransform::Rename(pairs) => {
                if let Some(fields) = shape.fields.as_mut() {
                    for name in fields.iter_mut() {
                        if let Some(to) = pairs.get(name) {
                            *name = to.clone();
                        }
                    }
                }
                for (from, to) in pairs {
                    match shape.values.remove(from) {
                        Some(values) => shape.values.insert(to.clone(), values),
                        None => shape.values.remove(to),
                    };
                }
            }
            RawTransform::Constant(pairs) => {
                for (name, value) in pairs {
                    if let Some(fields) = shape.fields.as_mut().filter(|f| !f.contains(name)) {
                        fields.push(name.clone());
                    }
                    match Value::from_json(value).as_text() {
                        Some(text) => shape.values.insert(name.clone(), BTreeSet::from([text.into_owned()])),
                        None => shape.values.remove(name),
                    };
                }
            }
            RawTransform::MapValues { field, values, otherwise } => match otherwise {
                RawOtherwise::Keep => {
                    shape.values.remove(field);
                }
                RawOtherwise::Reject | RawOtherwise::Null => {
                    shape.values.insert(field.clone(), values.values().cloned().collect());
                }
            },
            RawTransform::Enum { field, values, .. } => {
                let allowed: BTreeSet<String> = values.iter().cloned().collect();
                let narrowed = match shape.values.remove(field) {
                    Some(before) => before.intersection(&allowed).cloned().collect(),
                    None => allowed,
                };
                shape.values.insert(field.clone(), narrowed);
            }
            _ => {}
        }
    }
    shape
}
