//! How `syncline serve` listens and runs flows, and its webhook endpoints.

use super::error::ConfigError;
use super::raw::{At, RawConsole, RawProvider, RawServe, RawWebhook};
use super::settings::{Ctx, parse_duration};
use std::time::Duration;

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

pub(super) fn serve(ctx: &Ctx, raw: Option<&RawServe>) -> Result<ServeSettings, ConfigError> {
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

/// The operator console's address and admin token.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub bind: std::net::SocketAddr,
    pub token: Option<String>,
    /// Whether `serve` starts it.
    pub enabled: bool,
}

pub(super) fn console(ctx: &Ctx, raw: Option<&RawConsole>) -> Result<ConsoleSettings, ConfigError> {
    let bind = match raw.and_then(|c| c.bind.as_ref()) {
        Some(bind) => {
            let text = ctx.expand(bind, "console.bind")?;
            text.parse()
                .map_err(|_| ctx.err(&bind.referenced, "console.bind", format!("{text:?} is not an address:port such as 127.0.0.1:8081")))?
        }
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8081)),
    };
    let token = raw.and_then(|c| c.token.as_ref()).map(|t| ctx.secret(t, "console.token")).transpose()?;
    Ok(ConsoleSettings { bind, token, enabled: raw.and_then(|c| c.enabled).unwrap_or(true) })
}

/// One webhook endpoint: secrets only as `${VAR}`, never written in the file.
pub(super) fn webhook(ctx: &Ctx, name: &str, raw: &RawWebhook) -> Result<syncline_server::Source, ConfigError> {
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
