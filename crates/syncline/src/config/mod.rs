//! Loading the config: read the file, parse it into the raw structs, then validate into
//! settings. Only this module (and `main`) reads the environment or files for configuration.

mod error;
mod flows;
mod raw;
mod settings;

pub use error::ConfigError;
pub use raw::{RawCedulaKind, RawConfig, RawOtherwise, RawTransform, RawType};
pub use settings::{Config, Pipeline, SinkSettings, SourceSettings, UrlSource, resolve_sqlite, validate};

use std::path::Path;

/// Reads, parses and validates a config file against the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file (pass --config PATH or set SYNCLINE_CONFIG)".to_owned()
        } else {
            e.to_string()
        };
        ConfigError::file(&file, why)
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")), &env)
}

/// Parses and validates config text; `env` looks up `${VAR}` references.
pub fn parse(file: &str, text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::from_yaml(file, text, &e))?;
    validate(raw, file, base_dir, env)
}

/// The JSON Schema of the config file, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a schema serializes")
}
