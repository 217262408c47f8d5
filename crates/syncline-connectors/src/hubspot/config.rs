//! What the HubSpot sink needs to know: where, who, which object, and the portal's budget.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

#[derive(Clone)]
pub struct HubSpotSettings {
    /// `https://api.hubapi.com`, or the sandbox's URL.
    pub base_url: String,
    /// A private app's access token (sent as `Authorization: Bearer …`).
    pub token: String,
    /// `contacts`, `companies`, `deals`, `0-421` or a custom object's `2-…` type.
    pub object: String,
    /// The unique property that identifies a record (`email`, `numero_asociado`…); the pipeline's
    /// destination key is its value.
    pub id_property: String,
    /// Calls per rolling 10 s this pipeline may spend (the tier's burst, or less to leave room
    /// for other apps on the same portal).
    pub calls_per_ten_seconds: u32,
    /// Inputs per batch call (≤ 100).
    pub inputs_per_call: usize,
    /// Batch calls in flight at once; the rate limiter still paces them.
    pub in_flight: usize,
    /// How long one call (its retries included) may take before its records are dead-lettered.
    pub call_timeout: Duration,
    /// How long a portal that cannot be reached at all is retried before the call fails.
    pub unreachable_for: Duration,
    /// What the transforms can put in each field, where that is known (enumeration checks).
    pub produced_values: BTreeMap<String, BTreeSet<String>>,
}

/// The token never shows in logs or panics.
impl std::fmt::Debug for HubSpotSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotSettings")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .field("object", &self.object)
            .field("id_property", &self.id_property)
            .finish_non_exhaustive()
    }
}

impl HubSpotSettings {
    pub fn new(base_url: &str, token: &str, object: &str, id_property: &str) -> HubSpotSettings {
        HubSpotSettings {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            object: object.to_owned(),
            id_property: id_property.to_owned(),
            calls_per_ten_seconds: Tier::Free.per_ten_seconds(),
            inputs_per_call: MAX_INPUTS_PER_CALL,
            in_flight: 4,
            call_timeout: Duration::from_secs(300),
            unreachable_for: Duration::from_secs(5),
            produced_values: BTreeMap::new(),
        }
    }
}
