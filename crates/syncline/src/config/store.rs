//! The state store's settings: where it is, and the default beside the config.

use super::error::ConfigError;
use super::raw::RawConfig;
use super::settings::{Ctx, url_secrets_are_references};
use std::path::Path;

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

/// Only the state store, for commands that read nothing else.
pub(super) fn state_only(
    raw: &RawConfig,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StateSettings, ConfigError> {
    state(&Ctx::new(file, base_dir, env), raw)
}

/// Where the state store is: the configured URL, or `<config stem>.state.db` beside the config
/// so two configs in one folder never share cursors by accident.
pub(super) fn state(ctx: &Ctx, raw: &RawConfig) -> Result<StateSettings, ConfigError> {
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
