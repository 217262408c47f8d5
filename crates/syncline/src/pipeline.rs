//! Builds a configured pipeline's parts: the transform chain, the source and the sink.

use crate::config::{Pipeline, RawCedulaKind, RawOtherwise, RawTransform, RawType, SinkSettings, SourceSettings, UrlSource};
use crate::exit::CliError;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use syncline_connectors::sql::{SqlSink, SqlSource};
use syncline_core::transform::*;
use syncline_core::{Transform, Value};

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
            values: values.iter().map(|(k, v)| (k.clone(), Value::Text(v.clone()))).collect::<HashMap<_, _>>(),
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
            let validator =
                jsonschema::validator_for(&schema).map_err(|e| format!("json_schema: {} is not a valid schema: {e}", path.display()))?;
            Box::new(JsonSchema { validator })
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

/// The URL itself: as configured, or read from its file.
pub fn resolve_url(url: &UrlSource, base_dir: &Path) -> Result<String, CliError> {
    match url {
        UrlSource::Inline(url) => Ok(url.clone()),
        UrlSource::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("cannot read url_file {}: {e}", path.display())))?;
            Ok(crate::config::resolve_sqlite(text.trim(), base_dir))
        }
    }
}

/// Opens the pipeline's source; a database that cannot be reached is a usage error (exit 2).
pub async fn source(pipeline: &Pipeline, base_dir: &Path, since: Option<NaiveDateTime>) -> Result<SqlSource, CliError> {
    match &pipeline.source {
        SourceSettings::Sql { url, settings } => {
            let mut settings = settings.clone();
            settings.url = resolve_url(url, base_dir)?;
            SqlSource::open(settings, since).await.map_err(|e| CliError::usage(format!("pipeline {}: source: {e}", pipeline.name)))
        }
    }
}

pub async fn sink(pipeline: &Pipeline, base_dir: &Path) -> Result<SqlSink, CliError> {
    match &pipeline.sink {
        SinkSettings::Sql { url, settings } => {
            let mut settings = settings.clone();
            settings.url = resolve_url(url, base_dir)?;
            SqlSink::open(settings).await.map_err(|e| CliError::usage(format!("pipeline {}: sink: {e}", pipeline.name)))
        }
    }
}

/// The mapped field that keys the destination.
pub fn sink_key(pipeline: &Pipeline) -> Arc<str> {
    match &pipeline.sink {
        SinkSettings::Sql { settings, .. } => Arc::from(settings.key.as_str()),
    }
}
