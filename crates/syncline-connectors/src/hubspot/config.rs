//! A HubSpot profile (the portal, the token, the budget) kept apart from the streams read or
//! written through it (an object type and what is read of it or keyed by).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// HubSpot's API host; the sandbox (or a proxy) is configured with `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// HubSpot batch calls take at most this many inputs (API-CONTRACTS §1.4).
pub const MAX_INPUTS_PER_CALL: usize = 100;

/// The portal's account tier, which sets its burst budget per app (API-CONTRACTS §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Free and Starter: 100 calls per 10 s.
    Free,
    /// Professional and Enterprise: 190 calls per 10 s.
    Professional,
    /// The API Limit Increase pack: 250 calls per 10 s.
    LimitIncrease,
}

impl Tier {
    /// The tier as a config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Professional => "professional",
            Tier::LimitIncrease => "api_limit_increase",
        }
    }

    pub fn per_ten_seconds(self) -> u32 {
        match self {
            Tier::Free => 100,
            Tier::Professional => 190,
            Tier::LimitIncrease => 250,
        }
    }
}

/// The account: where the portal is, the private app's token, and what this app may spend of
/// the portal's budget. One profile serves any number of streams.
#[derive(Clone)]
pub struct HubSpotProfile {
    /// `https://api.hubapi.com`, or the sandbox's URL.
    pub base_url: String,
    /// A private app's access token (sent as `Authorization: Bearer …`).
    pub token: String,
    /// Calls per rolling 10 s this app may spend (the tier's burst, or less to leave room for
    /// other apps on the same portal).
    pub calls_per_ten_seconds: u32,
    /// Calls in flight at once; the rate limiter still paces them.
    pub in_flight: usize,
    /// How long one call (its retries included) may take before it fails.
    pub call_timeout: Duration,
    /// How long a portal that cannot be reached at all is retried before the call fails.
    pub unreachable_for: Duration,
    /// Where the portal's budgets are shared with other processes (None: this process's own).
    pub budgets: crate::http::Budgets,
}

/// The token never shows in logs or panics.
impl std::fmt::Debug for HubSpotProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotProfile")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .field("calls_per_ten_seconds", &self.calls_per_ten_seconds)
            .finish_non_exhaustive()
    }
}

impl HubSpotProfile {
    /// A free-tier profile with four calls in flight.
    pub fn new(base_url: &str, token: &str) -> HubSpotProfile {
        HubSpotProfile {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            calls_per_ten_seconds: Tier::Free.per_ten_seconds(),
            in_flight: 4,
            call_timeout: Duration::from_secs(300),
            unreachable_for: Duration::from_secs(5),
            budgets: None,
        }
    }
}

/// What a HubSpot sink writes: an object type, upserted by a unique property.
#[derive(Debug, Clone)]
pub struct SinkStream {
    /// `contacts`, `companies`, `deals`, `0-421` or a custom object's `2-…` type.
    pub object: String,
    /// The unique property that identifies a record (`email`, `numero_asociado`…); the pipeline's
    /// destination key is its value.
    pub id_property: String,
    /// Inputs per batch call (≤ 100).
    pub inputs_per_call: usize,
    /// What the transforms can put in each field, where that is known (enumeration checks).
    pub produced_values: BTreeMap<String, BTreeSet<String>>,
}

impl SinkStream {
    pub fn new(object: &str, id_property: &str) -> SinkStream {
        SinkStream {
            object: object_name(object),
            id_property: id_property.to_owned(),
            inputs_per_call: MAX_INPUTS_PER_CALL,
            produced_values: BTreeMap::new(),
        }
    }
}

/// Which properties a source reads of each object, besides the id and the creation and
/// modification times (always read).
#[derive(Debug, Clone, PartialEq)]
pub enum Properties {
    /// Exactly these.
    Listed(Vec<String>),
    /// Every property the object type has when the run starts (so one added in HubSpot is read
    /// from the next run on), but these.
    All { except: Vec<String> },
}

/// What a HubSpot source reads: an object type and the properties wanted of each object.
#[derive(Debug, Clone)]
pub struct SourceStream {
    /// `contacts`, `companies`, `deals`, `0-421`, `2-…`.
    pub object: String,
    pub properties: Properties,
    /// Whether each record also carries the object as HubSpot sent it, as JSON text in `_raw`.
    pub raw: bool,
    /// Whether a read that reaches the end also marks what left HubSpot: archived objects get
    /// `_deleted_at`, objects merged into another `_merged_into` (live ones carry both, empty).
    pub deletes: bool,
    /// Objects modified this recently are left for the next run: HubSpot's search sees a
    /// write a few moments after it is made, and a cursor must not pass one it cannot see yet.
    pub settle: Duration,
    /// Only objects created in `[from, until)` (backfill); `None`: every object.
    pub created: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Read the objects' associations with this object type instead of the objects.
    pub associations: Option<String>,
    /// Read this object type's pipelines and their stages instead of objects.
    pub pipelines: Option<String>,
    /// Read every value these properties had (`propertiesWithHistory`) instead of the objects.
    pub history: Vec<String>,
}

impl SourceStream {
    /// These properties of each object, without the raw JSON.
    pub fn new(object: &str, properties: &[String]) -> SourceStream {
        SourceStream {
            object: object_name(object),
            properties: Properties::Listed(properties.to_vec()),
            raw: false,
            deletes: false,
            settle: DEFAULT_SETTLE,
            created: None,
            associations: None,
            pipelines: None,
            history: Vec::new(),
        }
    }
}

/// The field of a source record that holds the object as HubSpot sent it.
pub const RAW_FIELD: &str = "_raw";
/// When an object was archived in HubSpot (empty while it is live).
pub const DELETED_FIELD: &str = "_deleted_at";
/// The object a merged object became part of (empty for one that was not merged away).
pub const MERGED_FIELD: &str = "_merged_into";

/// How long a write takes to show in search, with room to spare.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);

/// HubSpot's standard object types as a path may name them: the plural, the objectTypeId or the
/// singular (`contacts`, `0-1`, `contact`).
const STANDARD_TYPES: [(&str, &str, &str); 7] = [
    ("contacts", "0-1", "contact"),
    ("companies", "0-2", "company"),
    ("deals", "0-3", "deal"),
    ("tickets", "0-5", "ticket"),
    ("products", "0-7", "product"),
    ("line_items", "0-8", "line_item"),
    ("appointments", "0-421", "appointment"),
];

/// The name under which a source reads the portal's owners (`object: owners`).
pub const OWNERS: &str = "owners";

/// The destination key of a link row.
pub const ASSOCIATION_KEY: &str = "association_id";

/// The destination key of a property-history row, an owner and a pipeline stage.
pub const ROW_KEY: &str = "id";

impl SourceStream {
    /// The key of the rows a source of this stream makes, where they are not objects (keyed by
    /// `hs_object_id`, the sink's choice): links, property values, owners, pipeline stages.
    pub fn row_key(&self) -> Option<&'static str> {
        let reference = self.pipelines.is_some() || self.object == OWNERS;
        match (&self.associations, self.history.is_empty()) {
            (Some(_), _) => Some(ASSOCIATION_KEY),
            (None, false) => Some(ROW_KEY),
            (None, true) => reference.then_some(ROW_KEY),
        }
    }
}

/// The standard object types by their plural names.
pub fn standard_objects() -> impl Iterator<Item = &'static str> {
    STANDARD_TYPES.iter().map(|(plural, ..)| *plural)
}

/// A standard object type by its plural name, however it was written; any other name (a custom
/// `2-…` type) as given. State keys, time properties and messages use this one spelling.
pub fn object_name(name: &str) -> String {
    let name = name.trim();
    STANDARD_TYPES
        .iter()
        .find(|(plural, id, singular)| [*plural, *id, *singular].iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map_or_else(|| name.to_owned(), |(plural, ..)| (*plural).to_owned())
}

/// The creation and modification time properties of an object type: contacts keep the older
/// names (API-CONTRACTS §1.2).
pub fn time_properties(object: &str) -> (&'static str, &'static str) {
    match object_name(object).as_str() {
        "contacts" => ("createdate", "lastmodifieddate"),
        "companies" | "deals" | "tickets" | "products" | "line_items" => ("createdate", "hs_lastmodifieddate"),
        _ => ("hs_createdate", "hs_lastmodifieddate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_have_one_spelling() {
        for name in ["contacts", "contact", "0-1", "Contacts"] {
            assert_eq!(object_name(name), "contacts");
        }
        assert_eq!(object_name("0-421"), "appointments");
        assert_eq!(object_name("2-12345"), "2-12345");
        assert_eq!(time_properties("contact"), ("createdate", "lastmodifieddate"));
        assert_eq!(time_properties("deal"), ("createdate", "hs_lastmodifieddate"));
    }
}
