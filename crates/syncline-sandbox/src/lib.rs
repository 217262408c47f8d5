//! Local emulators of the SaaS APIs syncline talks to, for tests, benchmarks, demos and users'
//! dry runs. Today: ManyChat's page, subscriber and sending API (`manychat/`), and HubSpot's CRM
//! objects (single and batch reads and writes, search, standard and custom object types), custom
//! object schemas and properties APIs, and signed webhook delivery of changes (`hubspot/webhooks.rs`),
//! with tokens mapped to portals, the portal's rolling rate budget with HubSpot's headers and
//! 429 bodies, and a ledger of every request and applied effect; Stripe's products, prices and
//! events (`stripe/`); QuickBooks Online's items, accounts, query language, batch and OAuth
//! token endpoint (`quickbooks/`).
//!
//! Written from `API-CONTRACTS.md` and the official specs, sharing nothing with the connectors.

mod emulate;
mod faults;
pub mod hubspot;
mod ledger;
pub mod manychat;
pub mod quickbooks;
pub mod stripe;
mod window;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::get;

pub use faults::{Faults, Service};
pub use hubspot::{Labels, Portal, PortalConfig, Property, SchemaEgg, Subscription, Tier, WebhookAttempt, WebhookCounts, WebhookSettings};
pub use ledger::{Effect, Ledger, RequestLine, Window};
pub use manychat::{Delivered, PageConfig};
pub use quickbooks::RealmConfig;
pub use stripe::{StripeAccountConfig, StripeDelivery, StripeWebhook, stripe_signature};

/// The demo ManyChat page's token (`<page_id>:<key>`).
pub const DEMO_MANYCHAT_TOKEN: &str = "1000001:sandbox-key";

/// The demo HubSpot portal's private app token.
pub const DEMO_HUBSPOT_TOKEN: &str = "sandbox-token";

/// The demo Stripe account's secret key (test mode: 25 requests per second).
pub const DEMO_STRIPE_KEY: &str = "sk_test_sandbox";

/// The signing secret of the demo Stripe account's webhook endpoint (`syncline sandbox
/// --stripe-webhook`).
pub const DEMO_STRIPE_WEBHOOK_SECRET: &str = "whsec_sandbox";

/// The demo QuickBooks company's realm id, its app's client id and secret, and a refresh token
/// that works until the first refresh rotates it.
pub const DEMO_QUICKBOOKS_REALM: &str = "9130350000000001";
pub const DEMO_QUICKBOOKS_CLIENT: (&str, &str) = ("sandbox-client", "sandbox-secret");
pub const DEMO_QUICKBOOKS_REFRESH_TOKEN: &str = "sandbox-refresh-token";

/// What a sandbox starts with (`syncline sandbox --seed FILE`, YAML or JSON).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// HubSpot portals, each reached with its own token.
    #[serde(default)]
    pub hubspot: Vec<PortalConfig>,
    /// ManyChat pages, each reached with its own `<page_id>:<key>` token.
    #[serde(default)]
    pub manychat: Vec<PageConfig>,
    /// Stripe accounts, each reached with its own secret key.
    #[serde(default)]
    pub stripe: Vec<StripeAccountConfig>,
    /// QuickBooks companies, each with its OAuth app.
    #[serde(default)]
    pub quickbooks: Vec<RealmConfig>,
}

impl Seed {
    /// A free-tier portal (token `sandbox-token`) with the member properties of the seed users'
    /// HubSpot: `numero_asociado` (unique), cédula, marital status and province options,
    /// salaries and beneficiaries.
    pub fn members_demo() -> Seed {
        let options = |values: &[&str]| values.iter().map(|v| serde_json::json!({"label": v, "value": v})).collect::<Vec<_>>();
        let mut properties = vec![
            serde_json::json!({"name": "numero_asociado", "type": "string", "hasUniqueValue": true}),
            serde_json::json!({"name": "no__de_cedula", "type": "string"}),
            serde_json::json!({"name": "marital_status", "type": "enumeration", "fieldType": "select",
                "options": options(&["Soltero", "Casado", "Divorciado", "Viudo", "Unión Libre"])}),
            serde_json::json!({"name": "provincia", "type": "enumeration", "fieldType": "select",
                "options": options(&["San José", "Alajuela", "Cartago", "Heredia", "Guanacaste", "Puntarenas", "Limón"])}),
            serde_json::json!({"name": "canton", "type": "string"}),
            serde_json::json!({"name": "distrito", "type": "string"}),
            serde_json::json!({"name": "salario_bruto", "type": "number", "fieldType": "number"}),
            serde_json::json!({"name": "salario_neto", "type": "number", "fieldType": "number"}),
        ];
        for n in 1..=3 {
            properties.push(serde_json::json!({"name": format!("nombre_beneficiario_{n}"), "type": "string"}));
            properties.push(serde_json::json!({"name": format!("porcentaje__beneficiario_{n}_"), "type": "number", "fieldType": "number"}));
        }
        let portal = serde_json::json!({"token": DEMO_HUBSPOT_TOKEN, "tier": "free", "properties": {"contacts": properties}});
        let page = PageConfig {
            token: DEMO_MANYCHAT_TOKEN.into(),
            name: "Members (sandbox)".into(),
            tags: Vec::new(),
            custom_fields: vec![manychat::FieldSeed { name: "hubspot_contact_id".into(), kind: "text".into() }],
            subscribers: Vec::new(),
            rate_limits: true,
        };
        Seed {
            hubspot: vec![serde_json::from_value(portal).expect("the demo seed is well formed")],
            manychat: vec![page],
            stripe: vec![StripeAccountConfig::new(DEMO_STRIPE_KEY)],
            quickbooks: vec![RealmConfig {
                refresh_token: Some(DEMO_QUICKBOOKS_REFRESH_TOKEN.into()),
                ..RealmConfig::new(DEMO_QUICKBOOKS_REALM, DEMO_QUICKBOOKS_CLIENT.0, DEMO_QUICKBOOKS_CLIENT.1)
            }],
        }
    }

    /// The members demo portal with a custom object "divisions" (`division_name`, `codigo`,
    /// associated with contacts), for the warehouse demo (`Sandbox::generate_warehouse`).
    pub fn warehouse_demo() -> Seed {
        let mut seed = Seed::members_demo();
        let divisions = serde_json::json!({
            "name": "divisions",
            "labels": {"singular": "Division", "plural": "Divisions"},
            "primaryDisplayProperty": "division_name",
            "requiredProperties": ["division_name"],
            "properties": [
                {"name": "division_name", "label": "Division name", "type": "string", "fieldType": "text"},
                {"name": "codigo", "label": "Code", "type": "string", "fieldType": "text", "hasUniqueValue": true}
            ],
            "associatedObjects": ["CONTACT", "DEAL"]
        });
        seed.hubspot[0].custom_objects.push(serde_json::from_value(divisions).expect("the divisions schema is well formed"));
        seed
    }
}

/// What [`Sandbox::generate_warehouse`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarehouseDemo {
    pub contacts: u64,
    pub deals: u64,
    pub appointments: u64,
    pub divisions: u64,
}

/// An object type and id as the portal keys them.
fn node(portal: &Portal, (kind, id): (&str, u64)) -> Result<(String, u64), String> {
    Ok((portal.object_type(kind).ok_or_else(|| format!("no object type {kind}"))?, id))
}

/// `at` plus `k` hours, as HubSpot writes times.
fn store_iso(at: chrono::DateTime<chrono::Utc>, k: u64) -> String {
    (at + chrono::Duration::hours(k as i64 % 2_000)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Everything the emulators hold; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Sandbox {
    inner: Arc<Mutex<SandboxState>>,
}

#[derive(Default)]
pub(crate) struct SandboxState {
    pub(crate) portals: Vec<Portal>,
    pub(crate) pages: Vec<manychat::Page>,
    pub(crate) stripe: Vec<stripe::Account>,
    pub(crate) realms: Vec<quickbooks::Realm>,
    pub(crate) ledger: Ledger,
    pub(crate) faults: faults::ServiceFaults,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// A sandbox with the seed's portals, or what is wrong with the seed (naming the portal).
    pub fn from_seed(seed: Seed) -> Result<Sandbox, String> {
        let sandbox = Sandbox::new();
        for (i, portal) in seed.hubspot.into_iter().enumerate() {
            sandbox.add_portal(portal).map_err(|e| format!("hubspot portal {}: {e}", i + 1))?;
        }
        for (i, page) in seed.manychat.into_iter().enumerate() {
            sandbox.add_page(page).map_err(|e| format!("manychat page {}: {e}", i + 1))?;
        }
        for (i, account) in seed.stripe.into_iter().enumerate() {
            sandbox.add_stripe_account(account).map_err(|e| format!("stripe account {}: {e}", i + 1))?;
        }
        for (i, realm) in seed.quickbooks.into_iter().enumerate() {
            sandbox.add_realm(realm).map_err(|e| format!("quickbooks realm {}: {e}", i + 1))?;
        }
        Ok(sandbox)
    }

    /// Adds a HubSpot portal reachable with `config.token`; fails on a custom object schema or
    /// property list HubSpot would refuse.
    pub fn add_portal(&self, config: PortalConfig) -> Result<(), String> {
        let mut state = self.lock();
        let taken: Vec<u64> = state.portals.iter().map(|p| p.id).collect();
        let id = config.portal_id.unwrap_or_else(|| {
            loop {
                let id = fastrand::u64(10_000_000..100_000_000);
                if !taken.contains(&id) {
                    break id;
                }
            }
        });
        let portal = Portal::new(config, id)?;
        state.portals.push(portal);
        Ok(())
    }

    /// Adds a ManyChat page reachable with `config.token`.
    pub fn add_page(&self, config: PageConfig) -> Result<(), String> {
        let page = manychat::Page::new(config)?;
        self.lock().pages.push(page);
        Ok(())
    }

    /// Every message ManyChat pages delivered, in order (for tests in the same process).
    pub fn delivered(&self) -> Vec<Delivered> {
        self.lock().ledger.messages.clone()
    }

    /// A ManyChat subscriber as `getInfo` returns it, by id (for tests in the same process).
    pub fn subscriber(&self, token: &str, id: u64) -> Option<serde_json::Value> {
        let state = self.lock();
        let page = state.pages.iter().find(|p| p.config.token == token)?;
        page.subscribers.iter().find(|s| s.id == id).map(|s| page.subscriber_json(s))
    }

    /// Replaces the scripted faults of every service (and restarts their random draws from the
    /// seed).
    pub fn set_faults(&self, faults: Faults) {
        for service in Service::ALL {
            self.set_service_faults(service, faults.clone());
        }
    }

    /// Replaces one service's scripted faults; the others keep theirs.
    pub fn set_service_faults(&self, service: Service, faults: Faults) {
        *self.lock().faults.of(service) = faults::FaultState::new(faults);
    }

    /// The HTTP API: HubSpot under `/crm/…`, ManyChat under `/fb/…`, the sandbox's own admin
    /// API under `/__sandbox/…`.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(hubspot::routes())
            .merge(manychat::routes())
            .merge(stripe::routes())
            .merge(quickbooks::routes())
            .route("/__sandbox/ledger", get(ledger_json))
            .route("/__sandbox/budget", get(budget_json))
            .route("/__sandbox/faults", get(faults_json).put(put_faults))
            .route("/__sandbox/faults/{service}", axum::routing::put(put_service_faults))
            .route("/__sandbox/webhooks", axum::routing::put(put_webhooks))
            .fallback(hubspot::no_route)
            .method_not_allowed_fallback(hubspot::wrong_method)
            .layer(axum::middleware::from_fn(refuse_long_uris))
            .with_state(self.clone())
    }

    /// Serves the HTTP API on `listener` and delivers the portals' webhooks, until the future is
    /// dropped or the listener fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let delivery = self.spawn_webhook_delivery();
        let stripe_delivery = self.spawn_stripe_delivery();
        let served = axum::serve(listener, self.router()).await;
        delivery.abort();
        stripe_delivery.abort();
        served
    }

    /// The properties of every live object of `object_type` in the portal of `token`, by HubSpot
    /// id (for tests in the same process: "the final state equals the fault-free run").
    pub fn objects(&self, token: &str, object_type: &str) -> BTreeMap<u64, BTreeMap<String, String>> {
        let state = self.lock();
        let Some(portal) = state.portals.iter().find(|p| p.config.token == token) else { return BTreeMap::new() };
        let Some(kind) = portal.object_type(object_type) else { return BTreeMap::new() };
        portal.stores.get(&kind).map(|s| s.live().map(|o| (o.id, o.properties.clone())).collect()).unwrap_or_default()
    }

    /// Creates objects in the portal of `token` as if written at `at` (for tests in the same
    /// process that need many objects, or many at one millisecond, without spending the budget).
    /// Returns their ids, or what HubSpot would refuse.
    pub fn import(
        &self,
        token: &str,
        object_type: &str,
        objects: &[BTreeMap<String, String>],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<u64>, String> {
        let mut state = self.lock();
        let portal = state.portals.iter_mut().find(|p| p.config.token == token).ok_or("no portal has this token")?;
        let kind = portal.object_type(object_type).ok_or_else(|| format!("no object type {object_type}"))?;
        objects
            .iter()
            .map(|properties| match portal.create_at(&kind, properties, at) {
                Ok(id) => Ok(id),
                Err(hubspot::Refused::Conflict(holder)) => Err(format!("object {holder} already holds a unique value of {properties:?}")),
                Err(hubspot::Refused::NotFound) => Err("not found".to_owned()),
            })
            .collect()
    }

    /// Adds `count` generated members to the demo portal of `token` as contacts with ten
    /// properties each, modified over the past day, a thousand per millisecond stamp
    /// (`syncline sandbox --contacts`, benchmarks).
    pub fn generate_contacts(&self, token: &str, count: u64) -> Result<(), String> {
        const PROVINCES: [&str; 7] = ["San José", "Alajuela", "Cartago", "Heredia", "Guanacaste", "Puntarenas", "Limón"];
        const STATUSES: [&str; 4] = ["Soltero", "Casado", "Divorciado", "Viudo"];
        let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
        let chunks = count.div_ceil(1000).max(1);
        let mut n = 0u64;
        for chunk in 0..chunks {
            let at = day_ago + chrono::Duration::milliseconds((chunk * 86_000_000 / chunks) as i64);
            let members: Vec<BTreeMap<String, String>> = (0..1000.min(count - n))
                .map(|i| {
                    let k = n + i;
                    BTreeMap::from([
                        ("email".to_owned(), format!("socio{k}@example.cr")),
                        ("firstname".to_owned(), format!("Nombre{k}")),
                        ("lastname".to_owned(), format!("Apellido{}", k % 9_973)),
                        ("phone".to_owned(), format!("+506 8{:03} {:04}", k % 1000, k % 10_000)),
                        ("date_of_birth".to_owned(), format!("19{:02}-{:02}-{:02}", 50 + k % 50, 1 + k % 12, 1 + k % 28)),
                        ("numero_asociado".to_owned(), format!("A{k:07}")),
                        ("no__de_cedula".to_owned(), format!("1{:04}{:04}", k % 10_000, (k / 10_000) % 10_000)),
                        ("marital_status".to_owned(), STATUSES[(k % 4) as usize].to_owned()),
                        ("provincia".to_owned(), PROVINCES[(k % 7) as usize].to_owned()),
                        ("salario_bruto".to_owned(), format!("{}.{:02}", 350_000 + k % 2_000_000, k % 100)),
                    ])
                })
                .collect();
            n += members.len() as u64;
            self.import(token, "contacts", &members, at)?;
        }
        Ok(())
    }

    /// Links two objects of the portal of `token` with their unlabeled association type, as
    /// HubSpot's `PUT …/associations/default/…` does (both are modified).
    pub fn associate(&self, token: &str, from: (&str, u64), to: (&str, u64)) -> Result<(), String> {
        self.with_portal(token, |portal| {
            let (a, b) = (node(portal, from)?, node(portal, to)?);
            portal.associate(&a, &b, None)
        })
    }

    /// Removes every association between two objects; false when there was none.
    pub fn dissociate(&self, token: &str, from: (&str, u64), to: (&str, u64)) -> Result<bool, String> {
        self.with_portal(token, |portal| {
            let (a, b) = (node(portal, from)?, node(portal, to)?);
            Ok(portal.dissociate(&a, &b))
        })
    }

    /// Every link from objects of `from` to objects of `to` as (from id, to id, type id), live
    /// objects only (for tests: "the warehouse holds exactly these").
    pub fn links(&self, token: &str, from: &str, to: &str) -> Result<std::collections::BTreeSet<(u64, u64, u32)>, String> {
        self.with_portal(token, |portal| {
            let from = portal.object_type(from).ok_or_else(|| format!("no object type {from}"))?;
            let to = portal.object_type(to).ok_or_else(|| format!("no object type {to}"))?;
            let ids: Vec<u64> = portal.stores.get(&from).map(|s| s.live().map(|o| o.id).collect()).unwrap_or_default();
            let mut links = std::collections::BTreeSet::new();
            for id in ids {
                for (other, types) in portal.associations.of(&(from.clone(), id), &to) {
                    links.extend(types.iter().map(|t| (id, other, t.type_id)));
                }
            }
            Ok(links)
        })
    }

    /// Adds an owner to the portal of `token`: its owner id.
    pub fn add_owner(&self, token: &str, email: &str, first_name: &str, last_name: &str) -> Result<u64, String> {
        self.with_portal(token, |portal| Ok(portal.add_owner(email, first_name, last_name, Some("Ventas"))))
    }

    /// Runs `f` on the portal of `token`.
    fn with_portal<T>(&self, token: &str, f: impl FnOnce(&mut Portal) -> Result<T, String>) -> Result<T, String> {
        let mut state = self.lock();
        let portal = state.portals.iter_mut().find(|p| p.config.token == token).ok_or("no portal has this token")?;
        f(portal)
    }

    /// Fills the warehouse demo portal of `token` (see [`Seed::warehouse_demo`]): `contacts`
    /// generated members, two deals for every five contacts, an appointment for every ten and
    /// a division for every 25, five owners, each deal linked to one contact (every third to two), each
    /// appointment to one, and every contact to a division (`syncline sandbox --demo
    /// warehouse --contacts N`).
    pub fn generate_warehouse(&self, token: &str, contacts: u64) -> Result<WarehouseDemo, String> {
        self.generate_contacts(token, contacts)?;
        let contact_ids: Vec<u64> = self.objects(token, "contacts").into_keys().collect();
        let n = contact_ids.len() as u64;
        let at = chrono::Utc::now() - chrono::Duration::hours(12);
        let make = |count: u64, f: &dyn Fn(u64) -> Vec<(&'static str, String)>| -> Vec<BTreeMap<String, String>> {
            (0..count).map(|k| f(k).into_iter().map(|(name, value)| (name.to_owned(), value)).collect()).collect()
        };
        let divisions = self.import(
            token,
            "p_divisions",
            &make((n / 25).max(1), &|k| vec![("division_name", format!("División {k}")), ("codigo", format!("D{k:04}"))]),
            at,
        )?;
        let deals = self.import(
            token,
            "deals",
            &make(n * 2 / 5, &|k| {
                vec![
                    ("dealname", format!("Préstamo {k}")),
                    ("amount", format!("{}.{:02}", 100_000 + k * 37 % 5_000_000, k % 100)),
                    ("pipeline", "default".into()),
                    ("dealstage", ["appointmentscheduled", "qualifiedtobuy", "closedwon"][(k % 3) as usize].into()),
                ]
            }),
            at,
        )?;
        let appointments = self.import(
            token,
            "appointments",
            &make(n / 10, &|k| vec![("hs_appointment_name", format!("Cita {k}")), ("hs_appointment_start", store_iso(at, k))]),
            at,
        )?;
        self.with_portal(token, |portal| {
            for (first, last) in [("Ana", "Mora"), ("Luis", "Vargas"), ("Sofía", "Rojas"), ("Diego", "Solís"), ("María", "Jiménez")] {
                let email = format!("{}.{}@example.cr", first.to_lowercase(), last.to_lowercase());
                portal.add_owner(&email, first, last, Some("Ventas"));
            }
            let division_type = portal.object_type("p_divisions").expect("imported above");
            let contact = |k: u64| ("contacts".to_owned(), contact_ids[(k % n) as usize]);
            for (k, id) in deals.iter().enumerate() {
                let k = k as u64;
                portal.associate(&("deals".into(), *id), &contact(k * 5 / 2), None)?;
                if k.is_multiple_of(3) {
                    portal.associate(&("deals".into(), *id), &contact(k * 5 / 2 + 1), None)?;
                }
            }
            for (k, id) in appointments.iter().enumerate() {
                portal.associate(&("appointments".into(), *id), &contact(k as u64 * 10), None)?;
            }
            for (k, id) in contact_ids.iter().enumerate() {
                portal.associate(&("contacts".into(), *id), &(division_type.clone(), divisions[k % divisions.len()]), None)?;
            }
            Ok(())
        })?;
        Ok(WarehouseDemo {
            contacts: n,
            deals: deals.len() as u64,
            appointments: appointments.len() as u64,
            divisions: divisions.len() as u64,
        })
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

/// What an emulator needs of a request besides its body: the token and the ledger's line.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Call { method: parts.method.clone(), uri: parts.uri.clone(), headers: parts.headers.clone() })
    }
}

/// The longest request target HubSpot's front servers take: a longer one (a list read naming
/// hundreds of properties) is refused with their HTML 414, before any API sees it — as the taps
/// that list every property meet on real portals.
const MAX_URI: usize = 16_000;

async fn refuse_long_uris(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length <= MAX_URI {
        return next.run(request).await;
    }
    let body = "<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n<center><h1>414 Request-URI Too Large</h1></center>\r\n</body>\r\n</html>\r\n";
    (axum::http::StatusCode::URI_TOO_LONG, [(axum::http::header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Each service's faults.
async fn faults_json(State(sandbox): State<Sandbox>) -> axum::Json<BTreeMap<&'static str, Faults>> {
    let mut state = sandbox.lock();
    let faults = &mut state.faults;
    axum::Json(Service::ALL.into_iter().map(|s| (s.name(), faults.faults(s).clone())).collect())
}

/// `PUT /__sandbox/faults/{hubspot|manychat|stripe|quickbooks}`: one service's faults.
async fn put_service_faults(
    State(sandbox): State<Sandbox>,
    axum::extract::Path(service): axum::extract::Path<Service>,
    axum::Json(faults): axum::Json<Faults>,
) -> axum::Json<Faults> {
    sandbox.set_service_faults(service, faults.clone());
    axum::Json(faults)
}

async fn put_faults(State(sandbox): State<Sandbox>, axum::Json(faults): axum::Json<Faults>) -> axum::Json<Faults> {
    sandbox.set_faults(faults.clone());
    axum::Json(faults)
}

/// `PUT /__sandbox/webhooks` body: a portal's token and its webhook settings (null removes them).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhooksBody {
    token: String,
    settings: Option<WebhookSettings>,
}

async fn put_webhooks(State(sandbox): State<Sandbox>, axum::Json(body): axum::Json<WebhooksBody>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match sandbox.set_webhooks(&body.token, body.settings.clone()) {
        Ok(()) => axum::Json(body.settings).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e}))).into_response(),
    }
}

/// Budget use per 10-second window, the most calls in any rolling 10 s, and calls by endpoint
/// and status.
async fn budget_json(State(sandbox): State<Sandbox>) -> axum::Json<serde_json::Value> {
    let ledger = sandbox.ledger();
    let mut by_call: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    for r in &ledger.requests {
        *by_call.entry(format!("{} {}", r.method, r.path)).or_default().entry(r.status).or_default() += 1;
    }
    axum::Json(serde_json::json!({
        "window_ms": 10_000,
        "max_rolling": ledger.max_rolling(10_000),
        "windows": ledger.windows(10_000),
        "calls": by_call,
    }))
}

async fn ledger_json(State(sandbox): State<Sandbox>) -> axum::Json<Ledger> {
    axum::Json(sandbox.ledger())
}
