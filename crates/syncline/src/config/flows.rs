//! Flows and the connections they use: validated here (steps, templates and filters compile,
//! triggers name a configured webhook) so a bad flow fails at load with its line.

use super::error::ConfigError;
use super::raw::{RawConfig, RawFlow, RawSource};
use super::settings::Ctx;
use syncline_connectors::Budgets;
use syncline_connectors::hubspot::{HubSpotApi, HubSpotProfile};
use syncline_connectors::manychat::{self, ManyChatApi, ManyChatProfile};
use syncline_server::flow::{Connections, Engine, Flow};

/// The accounts flows call.
#[derive(Debug, Clone, Default)]
pub struct FlowConnections {
    pub hubspot: Option<HubSpotProfile>,
    pub manychat: Option<ManyChatProfile>,
    pub quickbooks: Option<super::quickbooks::QuickBooksConnection>,
}

impl FlowConnections {
    /// Clients for these accounts (no IO until a flow calls them), spending rate budgets
    /// shared through `budgets`.
    pub fn open(&self, budgets: &Budgets) -> Result<Connections, syncline_core::ConnectorError> {
        let hubspot = self.hubspot.clone().map(|profile| HubSpotProfile { budgets: budgets.clone(), ..profile });
        let manychat = self.manychat.clone().map(|profile| ManyChatProfile { budgets: budgets.clone(), ..profile });
        Ok(Connections {
            hubspot: hubspot.as_ref().map(HubSpotApi::new).transpose()?,
            manychat: manychat.as_ref().map(ManyChatApi::new).transpose()?,
            pipelines: Default::default(),
        })
    }
}

pub(super) fn connections(ctx: &Ctx, raw: &RawConfig) -> Result<FlowConnections, ConfigError> {
    let Some(raw) = &raw.connections else { return Ok(FlowConnections::default()) };
    let hubspot = raw.hubspot.as_ref().map(|c| super::hubspot::connection(ctx, c)).transpose()?;
    let manychat = match &raw.manychat {
        Some(c) => {
            if c.tier.is_some() {
                return Err(ctx.err(
                    &c.token.referenced,
                    "connections.manychat.tier",
                    "tier is HubSpot's; ManyChat's limits are per method",
                ));
            }
            let path = "connections.manychat";
            let token = ctx.secret(&c.token, &format!("{path}.token"))?;
            let base_url = match &c.base_url {
                Some(url) => ctx.http_url(url, &format!("{path}.base_url"))?,
                None => manychat::DEFAULT_BASE_URL.to_owned(),
            };
            if !token
                .split_once(':')
                .is_some_and(|(page, key)| page.chars().all(|c| c.is_ascii_digit()) && !page.is_empty() && !key.is_empty())
            {
                return Err(ctx.err(&c.token.referenced, "connections.manychat.token", "a ManyChat token has the form <page_id>:<key>"));
            }
            Some(ManyChatProfile::new(&base_url, &token))
        }
        None => None,
    };
    let quickbooks = raw.quickbooks.as_ref().map(|q| super::quickbooks::connection(ctx, q)).transpose()?;
    Ok(FlowConnections { hubspot, manychat, quickbooks })
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
        match flow(ctx, name, f, webhooks).and_then(|flow| pipeline_steps(ctx, raw, f, flow)) {
            Ok(flow) => flows.push(flow),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let opened = connections.open(&None).map_err(|e| vec![ConfigError::file(ctx.file, e.to_string())])?;
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

/// A `pipeline` step names a configured pipeline whose source can read a record by key.
fn pipeline_steps(ctx: &Ctx, raw: &RawConfig, f: &RawFlow, flow: Flow) -> Result<Flow, ConfigError> {
    for (i, step) in f.steps.iter().enumerate() {
        let syncline_server::flow::Step::Pipeline(name) = &step.value else { continue };
        let path = format!("flows.{}.steps[{i}].pipeline", flow.name);
        let message = match raw.pipelines.get(name) {
            Some(p) if matches!(p.source, RawSource::Stripe(_)) => continue,
            Some(_) => {
                format!("pipeline {name:?} reads from a source a flow cannot look records up in; a flow's pipeline reads from Stripe")
            }
            None => match super::error::did_you_mean(name, raw.pipelines.keys().map(String::as_str)) {
                Some(close) => format!("no pipeline named {name:?}; did you mean {close:?}?"),
                None => format!("no pipeline named {name:?}"),
            },
        };
        return Err(ctx.err(&step.referenced, &path, message));
    }
    Ok(flow)
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
