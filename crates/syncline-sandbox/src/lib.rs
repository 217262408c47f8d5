//! Local emulators of the SaaS APIs syncline talks to, for tests, benchmarks, demos and users'
//! dry runs. Today: HubSpot's CRM objects (batch upsert/read, list, get) and properties APIs,
//! with tokens mapped to portals, the portal's rolling rate budget with HubSpot's headers and
//! 429 bodies, and a ledger of every request and applied effect.
//!
//! Written from `API-CONTRACTS.md` and the official specs, sharing nothing with the connectors.

pub mod hubspot;
mod ledger;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;

pub use hubspot::{Portal, PortalConfig, Property, Tier};
pub use ledger::{Effect, Ledger, RequestLine};

/// Everything the emulators hold; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Sandbox {
    inner: Arc<Mutex<SandboxState>>,
}

#[derive(Default)]
pub(crate) struct SandboxState {
    pub(crate) portals: Vec<Portal>,
    pub(crate) ledger: Ledger,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// Adds a HubSpot portal reachable with `config.token`.
    pub fn add_portal(&self, config: PortalConfig) {
        self.lock().portals.push(Portal::new(config));
    }

    /// The HTTP API: HubSpot under `/crm/…`, the sandbox's own admin API under `/__sandbox/…`.
    pub fn router(&self) -> Router {
        Router::new().merge(hubspot::routes()).route("/__sandbox/ledger", get(ledger_json)).with_state(self.clone())
    }

    /// A copy of the ledger (for tests in the same process).
    pub fn ledger(&self) -> Ledger {
        self.lock().ledger.clone()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SandboxState> {
        // a handler that panicked mid-request leaves plain data; keep serving
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn ledger_json(State(sandbox): State<Sandbox>) -> axum::Json<Ledger> {
    axum::Json(sandbox.ledger())
}
