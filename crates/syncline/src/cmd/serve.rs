//! `syncline serve`: webhook intake into the durable inbox, and workers that run the configured
//! flows on it; `syncline inbox`: what it holds.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use syncline_server::Intake;
use syncline_server::flow::Engine;
use syncline_server::worker::{WorkerConfig, Workers};
use syncline_store::Store;

/// How long in-flight flows get to finish after SIGTERM; what is left is released when its
/// lease runs out.
const DRAIN: Duration = Duration::from_secs(30);

pub async fn run(config: &Config, store: &Store, args: ServeArgs) -> CliResult {
    if config.webhooks.is_empty() {
        return Err(CliError::usage(format!("{}: no webhooks to serve; add a `webhooks:` section", config.file)));
    }
    let bind = args.bind.unwrap_or(config.serve.bind);
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| CliError::usage(format!("cannot listen on {bind}: {e}")))?;
    let address = listener.local_addr().map_err(CliError::failed)?;
    let intake = Intake::new(store.clone(), config.webhooks.clone());
    let mut banner = format!("serving on http://{address} (state: {})\n", syncline_store::redact_url(&config.state_url));
    for source in &config.webhooks {
        banner.push_str(&format!("  POST /webhooks/{}  ({:?}, {} secret(s))\n", source.name, source.provider, source.secrets.len()));
    }
    banner.push_str("  GET /healthz, /readyz\n");
    for flow in &config.flows {
        let events = if flow.events.is_empty() { "every event".to_owned() } else { flow.events.join(", ") };
        banner.push_str(&format!("  flow {}: {} from {} ({} steps)\n", flow.name, events, flow.source, flow.steps.len()));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = if config.flows.is_empty() {
        None
    } else {
        let connections = config.connections.open().map_err(CliError::failed)?;
        let engine = Engine::new(config.flows.clone(), connections).map_err(|e| CliError::usage(format!("flow {}: {e}", e.flow)))?;
        let mut worker = WorkerConfig::new(format!("{}-{}", std::process::id(), uuid::Uuid::now_v7()));
        worker.lease = config.serve.lease;
        worker.concurrency = config.serve.workers;
        let workers = Workers::new(store.clone(), Arc::new(engine), worker, intake.arrived.clone());
        let running = workers.clone();
        Some(tokio::spawn(async move { running.run(stopped).await }))
    };
    // a closed stdout must not stop the server
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    tracing::info!(%address, "serving webhooks");
    axum::serve(listener, intake.router()).with_graceful_shutdown(shutdown()).await.map_err(CliError::failed)?;
    // in-flight deliveries were answered (or never acknowledged); flows in hand get to finish
    let _ = stop.send(true);
    if let Some(workers) = workers
        && tokio::time::timeout(DRAIN, workers).await.is_err()
    {
        tracing::warn!("flows still running after {DRAIN:?}; their events run again when their leases run out");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

pub async fn inbox(store: &Store) -> CliResult {
    let depth = store.inbox_depth().await.map_err(CliError::failed)?;
    if depth.is_empty() {
        println!("the inbox is empty");
        return Ok(Exit::Ok);
    }
    let mut table = crate::progress::table(&["source", "status", "events", "oldest received"]);
    for row in depth {
        table.add_row([row.source, row.status, row.events.to_string(), row.oldest_received_at]);
    }
    println!("{table}");
    Ok(Exit::Ok)
}
