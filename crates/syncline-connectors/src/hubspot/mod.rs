//! HubSpot CRM: a profile (the portal, the token, the budget) and the streams read or written
//! through it. The sink batch-upserts by a unique property, with a pre-flight check of the
//! mapped properties and batch reads for dry-run plans; the source pages any object type, by
//! list for full reads and by search from a cursor for incremental ones. Every call goes through
//! the shared resilience `Policy` (the portal's rolling 10-second budget, retries, breaker).

mod api;
pub mod check;
mod config;
mod details;
mod reference;
mod sink;
mod source;

pub use api::{HubSpotApi, PropertyDef, SEARCH_MAX_RESULTS, SEARCH_PAGE, SimpleObject};
pub use config::{
    ASSOCIATION_KEY, DEFAULT_BASE_URL, DEFAULT_SETTLE, DELETED_FIELD, HubSpotProfile, MAX_INPUTS_PER_CALL, MERGED_FIELD, OWNERS,
    Properties, RAW_FIELD, ROW_KEY, SinkStream, SourceStream, Tier, object_name, time_properties,
};
pub use details::DetailSource;
pub use reference::{Reference, ReferenceSource};
pub use sink::HubSpotSink;
pub use source::HubSpotSource;
