//! HubSpot CRM as a sink: batch upserts by a unique property, through the shared resilience
//! `Policy` (the portal's rolling 10-second budget, retries, circuit breaker), with a pre-flight
//! check of the mapped properties and batch reads for dry-run plans.

mod api;
mod config;
mod sink;

pub use api::{HubSpotApi, PropertyDef};
pub use config::{DEFAULT_BASE_URL, HubSpotSettings, MAX_INPUTS_PER_CALL, Tier};
pub use sink::HubSpotSink;
