//! The operator console: what ran, what was rejected and why, what waits in the inbox, and what
//! runs now — as server-rendered HTML pages, with the store as the one source of what they show.
//!
//! `syncline serve` serves it on its own admin address beside the webhooks; `syncline console`
//! serves it alone. Everything it needs beyond the store comes from its [`Host`] (the binary):
//! the configured pipelines and flows, the health of their connections, and replaying dead
//! letters the way `syncline dlq replay` does. Templates, styles and the one script are compiled
//! into the binary; nothing is loaded from elsewhere.

mod actions;
pub mod auth;
mod pages;
mod usage;
mod view;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use syncline_store::Store;

pub use auth::Access;

/// A configured pipeline or flow, as the overview lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub name: String,
    /// `pipeline` or `flow`.
    pub kind: &'static str,
    /// The schedule as the config gives it, if any.
    pub schedule: Option<String>,
    /// Its next slot (RFC 3339), if scheduled.
    pub next_slot: Option<String>,
}

/// What replaying dead letters did, in a sentence per pipeline or flow.
pub type Replayed = Result<Vec<String>, String>;

/// What the console asks of the program that serves it.
pub trait Host: Send + Sync + 'static {
    /// The configured pipelines and flows.
    fn jobs(&self) -> Vec<Job>;

    /// The health of the connections in use (breakers, 429s); empty where nothing is connected.
    fn health(&self) -> Vec<syncline_resilience::Health> {
        Vec::new()
    }

    /// Runs these open dead letters again through their pipeline's current transforms and sink
    /// (a flow's go back to the inbox), as `syncline dlq replay --id …` does.
    fn replay(&self, ids: Vec<i64>) -> Pin<Box<dyn Future<Output = Replayed> + Send + '_>>;
}

/// How the console presents itself.
#[derive(Debug, Clone)]
pub struct Settings {
    pub access: Access,
    /// The state store, as shown (its URL with secrets masked).
    pub store_label: String,
}

/// The console's shared state.
pub(crate) struct App {
    pub store: Store,
    pub host: Arc<dyn Host>,
    pub settings: Settings,
    pub views: view::Views,
    /// The rate budgets' use over the last minutes.
    pub usage: usage::Usage,
}

/// Rows per page of every list.
pub(crate) const PAGE: i64 = 50;

/// The console's routes. Read-only pages are `GET`; actions are `POST` and need the admin token.
pub fn router(store: Store, host: Arc<dyn Host>, settings: Settings) -> Router {
    let app = Arc::new(App { store, host, settings, views: view::Views::new(), usage: usage::Usage::default() });
    // the budgets' charts need samples taken while nobody looks
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(usage::keep_sampling(Arc::downgrade(&app)));
    }
    Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/dead-letters", get(pages::dead_letters))
        .route("/dead-letters/{id}", get(pages::dead_letter))
        .route("/dead-letters/replay", post(actions::replay))
        .route("/dead-letters/ignore", post(actions::ignore))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/{id}", get(pages::inbox_event))
        .route("/live", get(pages::live))
        .route("/api/live", get(pages::live_json))
        .route("/login", get(pages::login).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/assets/{name}", get(view::asset))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(view::security_headers))
        .with_state(app)
}

/// Serves the console on `listener` until `shutdown`, with the same connection limits as the
/// webhook server.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    syncline_server::http::serve(listener, router, syncline_server::http::HttpLimits::default(), shutdown).await
}
