//! Flows and the connections they use: validated here (steps, templates and filters compile,
//! triggers name a configured webhook) so a bad flow fails at load with its line.

use super::error::ConfigError;
use super::raw::{RawConfig, RawConnection, RawFlow, RawTier};
use super::settings::Ctx;
use syncline_connectors::hubspot::{self, HubSpotApi, HubSpotSettings, Tier};
use syncline_connectors::manychat::{self, ManyChatApi, ManyChatSettings};
use syncline_server::flow::{Connections, Engine, Flow};

/// The accounts flows call.
#[derive(Debug, Clone, Default)]
pub struct FlowConnections {
    pub hubspot: Option<HubSpotSettings>,
    pub manychat: Option<ManyChatSettings>,
}

impl FlowConnections {
    /// Clients for these accounts (no IO until a flow calls them).
    pub fn open(&self) -> Result<Connections, syncline_core::ConnectorError> {
        Ok(Connections {
            hubspot: self.hubspot.as_ref().map(HubSpotApi::new).transpose()?,
            manychat: self.manychat.as_ref().map(ManyChatApi::new).transpose()?,
        })
    }
}

pub(super) fn connections(ctx: &Ctx, raw: &RawConfig) -> Result<FlowConnections, ConfigError> {
    let Some(raw) = &raw.connections else { return Ok(FlowConnections::default()) };
    let hubspot = match &raw.hubspot {
        Some(c) => {
            let (token, base_url) = connection(ctx, c, "connections.hubspot", hubspot::DEFAULT_BASE_URL)?;
            let mut settings = HubSpotSettings::new(&base_url, &token, "contacts", "hs_object_id");
            settings.calls_per_ten_seconds = ctx.tier(c.tier).per_ten_seconds();
            Some(settings)
        }
        None => None,
    };
    let manychat = match &raw.manychat {
        Some(c) => {
            if c.tier.is_some() {
                return Err(ctx.err(
                    &c.token.referenced,
                    "connections.manychat.tier",
                    "tier is HubSpot's; ManyChat's limits are per method",
                ));
            }
            let (token, base_url) = connection(ctx, c, "connections.manychat", manychat::DEFAULT_BASE_URL)?;
            if !token
                .split_once(':')
                .is_some_and(|(page, key)| page.chars().all(|c| c.is_ascii_digit()) && !page.is_empty() && !key.is_empty())
            {
                return Err(ctx.err(&c.token.referenced, "connections.manychat.token", "a ManyChat token has the form <page_id>:<key>"));
            }
            Some(ManyChatSettings::new(&base_url, &token))
        }
        None => None,
    };
    Ok(FlowConnections { hubspot, manychat })
}

fn connection(ctx: &Ctx, raw: &RawConnection, path: &str, default_url: &str) -> Result<(String, String), ConfigError> {
    let token = ctx.secret(&raw.token, &format!("{path}.token"))?;
    let base_url = match &raw.base_url {
        Some(url) => ctx.http_url(url, &format!("{path}.base_url"))?,
        None => default_url.to_owned(),
    };
    Ok((token, base_url))
}

pub(super) fn flows(
    ctx: &Ctx,
    raw: &RawConfig,
    webhooks: &[syncline_server::Source],
    connections: &FlowConnections,
) -> Result<Vec<Flow>, Vec<ConfigError>> {
    let mut flows = Vec::new();
    let mut errors = Vec::new();
    for (name, f) in &raw.flows {
        match flow(ctx, name, f, webhooks) {
            Ok(flow) => flows.push(flow),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let opened = connections.open().map_err(|e| vec![ConfigError::file(ctx.file, e.to_string())])?;
    if let Err(e) = Engine::new(flows.clone(), opened) {
        let raw_flow = &raw.flows[&e.flow];
        let path = format!("flows.{}", e.flow);
        return Err(vec![match e.step {
            Some(i) => ctx.err(&raw_flow.steps[i].referenced, &format!("{path}.steps[{i}]"), e.message),
            None => match &raw_flow.trigger.filter {
                Some(filter) if e.message.starts_with("filter") => {
                    ctx.err(&filter.referenced, &format!("{path}.trigger.filter"), e.message)
                }
                _ => ctx.err(&raw_flow.trigger.source.referenced, &path, e.message),
            },
        }]);
    }
    Ok(flows)
}

fn flow(ctx: &Ctx, name: &str, f: &RawFlow, webhooks: &[syncline_server::Source]) -> Result<Flow, ConfigError> {
    let path = format!("flows.{name}");
    let source = ctx.expand(&f.trigger.source, &format!("{path}.trigger.source"))?;
    if !webhooks.iter().any(|w| w.name == source) {
        let known: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
        let message = match super::error::did_you_mean(&source, known.iter().copied()) {
            Some(close) => format!("no webhook named {source:?}; did you mean {close:?}?"),
            None => format!("no webhook named {source:?} (webhooks: {})", if known.is_empty() { "none".into() } else { known.join(", ") }),
        };
        return Err(ctx.err(&f.trigger.source.referenced, &format!("{path}.trigger.source"), message));
    }
    Ok(Flow {
        name: name.to_owned(),
        source,
        events: f.trigger.events.clone(),
        filter: f.trigger.filter.as_ref().map(|f| f.value.clone()),
        steps: f.steps.iter().map(|s| s.value.clone()).collect(),
        max_attempts: ctx.positive(&f.max_attempts, &format!("{path}.max_attempts"), 1..=100, 5)? as u32,
        ordered: f.ordered,
    })
}

impl Ctx<'_> {
    pub(super) fn tier(&self, tier: Option<RawTier>) -> Tier {
        match tier.unwrap_or(RawTier::Free) {
            RawTier::Free | RawTier::Starter => Tier::Free,
            RawTier::Professional | RawTier::Enterprise => Tier::Professional,
            RawTier::ApiLimitIncrease => Tier::LimitIncrease,
        }
    }
}
