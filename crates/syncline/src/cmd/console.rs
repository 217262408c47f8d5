//! The operator console: `syncline console` serves it alone; `serve` starts it beside the
//! webhooks on its own address. This is what the console asks of the binary (its `Host`): the
//! configured pipelines and flows, the connections' health, and replay as `dlq replay` does it.

use std::net::SocketAddr;
use std::sync::Arc;

use syncline_console::{Access, Host, Job, Replayed, Settings};
use syncline_resilience::Health;
use syncline_store::Store;

use crate::cli::ConsoleArgs;
use crate::cmd::Session;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};

type HealthOf = Arc<dyn Fn() -> Vec<Health> + Send + Sync>;

struct ConsoleHost {
    config: Arc<Config>,
    store: Store,
    health: Option<HealthOf>,
    /// Replays run quietly (no progress bars) and stop with the process.
    session: Session,
}

impl Host for ConsoleHost {
    fn jobs(&self) -> Vec<Job> {
        let now = chrono::Utc::now();
        let pipelines = self.config.pipelines.iter().map(|p| Job {
            name: p.name.clone(),
            kind: "pipeline",
            schedule: p.schedule.as_ref().map(ToString::to_string),
            next_slot: p.schedule.as_ref().and_then(|s| s.next_after(now)).map(|at| at.to_rfc3339()),
        });
        let flows = self.config.flows.iter().map(|f| Job { name: f.name.clone(), kind: "flow", schedule: None, next_slot: None });
        pipelines.chain(flows).collect()
    }

    fn health(&self) -> Vec<Health> {
        self.health.as_ref().map(|h| h()).unwrap_or_default()
    }

    fn replay(&self, ids: Vec<i64>) -> std::pin::Pin<Box<dyn Future<Output = Replayed> + Send + '_>> {
        // a replay is a pipeline run, whose future the compiler cannot prove `Send` for every
        // lifetime; it runs on this worker thread instead (the runtime lends the others)
        Box::pin(async move {
            let replay = super::dlq::replay_ids(&self.config, &self.store, ids, &self.session);
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(replay)).map_err(|e| e.message)
        })
    }
}

/// The console's router for this config and store.
fn router(config: Arc<Config>, store: &Store, bind: SocketAddr, health: Option<HealthOf>, session: &Session) -> axum::Router {
    let quiet = Session {
        config_path: session.config_path.clone(),
        quiet: true,
        init: false,
        expect_state: true,
        stop: session.stop.child_token(),
    };
    let access = Access::new(config.console.token.clone(), bind.ip().is_loopback());
    let settings = Settings { access, store_label: syncline_core::redact::url(&config.state.url) };
    let host = ConsoleHost { config, store: store.clone(), health, session: quiet };
    syncline_console::router(store.clone(), Arc::new(host), settings)
}

/// Binds the console's address; says why it cannot.
async fn listen(bind: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), CliError> {
    let listener =
        tokio::net::TcpListener::bind(bind).await.map_err(|e| CliError::usage(format!("console: cannot listen on {bind}: {e}")))?;
    let address = listener.local_addr().map_err(CliError::failed)?;
    Ok((listener, address))
}

/// `syncline console`: the console alone, until SIGTERM or Ctrl-C.
pub async fn run(config: Arc<Config>, store: &Store, args: ConsoleArgs, session: &Session) -> CliResult {
    let bind = args.bind.unwrap_or(config.console.bind);
    let (listener, address) = listen(bind).await?;
    let router = router(config.clone(), store, address, None, session);
    crate::output::line(console_banner(&config, address));
    syncline_console::serve(listener, router, session.stop.clone().cancelled_owned()).await.map_err(CliError::failed)?;
    Ok(Exit::Ok)
}

/// What `serve` starts beside its webhooks: the console served until `stop`, or `None` (with
/// the reason logged) when its address is taken — the webhooks matter more than the console.
pub async fn start(
    config: Arc<Config>,
    store: &Store,
    health: Option<HealthOf>,
    session: &Session,
) -> Option<(String, tokio::task::JoinHandle<()>)> {
    if !config.console.enabled {
        return None;
    }
    let (listener, address) = match listen(config.console.bind).await {
        Ok(bound) => bound,
        Err(e) => {
            tracing::warn!(error = %e.message, "the console is not served; set console.bind to a free address");
            return Some((format!("  console: not served ({}; set console.bind)\n", e.message), tokio::spawn(async {})));
        }
    };
    let router = router(config.clone(), store, address, health, session);
    let banner = console_banner(&config, address);
    let stop = session.stop.clone();
    let served = tokio::spawn(async move {
        if let Err(e) = syncline_console::serve(listener, router, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "the console stopped");
        }
    });
    Some((format!("  {banner}\n"), served))
}

fn console_banner(config: &Config, address: SocketAddr) -> String {
    let acts = if config.console.token.is_some() { "sign in with console.token to act" } else { "read-only: set console.token to act" };
    let reads = if address.ip().is_loopback() { "" } else { "; every page needs the token off loopback" };
    format!("console on http://{address} ({acts}{reads})")
}
