//! What `syncline check` probes of HubSpot, without writing: that the token opens the portal,
//! that a source's properties exist, and that a sink's mapped properties exist, take API writes
//! and have an option for every value the transforms can produce.

use std::sync::Arc;
use std::time::Duration;

use syncline_core::ConnectorError;
use syncline_resilience::PolicyConfig;

use super::api::HubSpotApi;
use super::config::{HubSpotProfile, SinkStream, SourceStream};
use super::sink::HubSpotSink;

/// A failed probe and how to fix it.
type Problem = (ConnectorError, &'static str);

/// A client that gives up quickly: `check` should not wait out an outage.
pub fn quick_api(profile: &HubSpotProfile) -> Result<HubSpotApi, ConnectorError> {
    let quick = PolicyConfig {
        name: "hubspot".into(),
        max_attempts: 2,
        overall_timeout: Duration::from_secs(15),
        unavailable_for: Duration::from_secs(2),
        ..PolicyConfig::default()
    };
    HubSpotApi::with_policy(profile, quick)
}

/// The portal the token opens.
pub async fn portal(api: &HubSpotApi) -> Result<u64, Problem> {
    api.account_id().await.map_err(|e| (e, "set the token to a private app token of the portal, with the CRM scopes"))
}

/// The source's properties exist on its object.
pub async fn source(profile: &HubSpotProfile, stream: &SourceStream) -> crate::Probe {
    let api = quick_api(profile).map_err(|e| (e, ""))?;
    let portal = portal(&api).await?;
    let fix = "name properties the object has (HubSpot → Settings → Properties shows their internal names)";
    if stream.object == super::config::OWNERS && stream.associations.is_none() && stream.history.is_empty() {
        let page = api.owners(None, false).await.map_err(|e| (e, "give the private app the crm.objects.owners.read scope"))?;
        let more = if page.paging.is_some() { "+" } else { "" };
        return Ok(format!(
            "HubSpot owners at {}, portal {portal}: the token works; {}{more} owners",
            profile.base_url,
            page.results.len()
        ));
    }
    if let Some(object) = &stream.pipelines {
        let list =
            api.pipelines(object).await.map_err(|e| (super::source::unknown_type(object, e), "name an object type with pipelines"))?;
        let stages: usize = list.results.iter().map(|p| p.stages.len()).sum();
        let place = format!("HubSpot {object} pipelines at {}", profile.base_url);
        return Ok(format!("{place}, portal {portal}: the token works; {} pipelines, {stages} stages", list.results.len()));
    }
    let defined = api.properties(&stream.object).await.map_err(|e| (super::source::unknown_type(&stream.object, e), fix))?;
    if let Some(to) = &stream.associations {
        let to = super::config::object_name(to);
        api.properties(&to).await.map_err(|e| (super::source::unknown_type(&to, e), "name an object type the portal has"))?;
        let place = format!("HubSpot {} → {to} associations at {}", stream.object, profile.base_url);
        return Ok(format!("{place}, portal {portal}: the token works; both object types exist"));
    }
    if !stream.history.is_empty() {
        let mut listed = stream.clone();
        listed.properties = super::config::Properties::Listed(stream.history.clone());
        super::source::resolve(&listed, &defined).map_err(|e| (e, fix))?;
        let place = format!("HubSpot {} history at {}", stream.object, profile.base_url);
        return Ok(format!("{place}, portal {portal}: the token works; the history of {} is read", stream.history.join(", ")));
    }
    let read = super::source::resolve(stream, &defined).map_err(|e| (e, fix))?;
    Ok(format!("HubSpot {} at {}, portal {portal}: the token works; {} properties are read", stream.object, profile.base_url, read.len()))
}

/// The sink's mapped fields fit the object's properties (`HubSpotSink::preflight`).
pub async fn sink(profile: &HubSpotProfile, stream: SinkStream, fields: &[String]) -> crate::Probe {
    let api = Arc::new(quick_api(profile).map_err(|e| (e, ""))?);
    let portal = portal(&api).await?;
    let place = format!("HubSpot {} at {}", stream.object, profile.base_url);
    let mut sink = HubSpotSink::new(api, stream);
    let fix = "create the properties (or options) in HubSpot, or rename or drop the fields with a `select` or `rename` transform";
    sink.preflight(fields.iter().map(String::as_str)).await.map_err(|e| (e, fix))?;
    Ok(format!("{place}, portal {portal}: the token works; {} mapped properties exist and take these values", fields.len()))
}

/// `connections.hubspot`: the token opens the portal.
pub async fn connection(profile: &HubSpotProfile) -> crate::Probe {
    let api = quick_api(profile).map_err(|e| (e, ""))?;
    let portal =
        api.account_id().await.map_err(|e| (e, "set the token to a private app token of the portal (crm.objects.contacts.read)"))?;
    Ok(format!("{}: portal {portal}, the token works", profile.base_url))
}
