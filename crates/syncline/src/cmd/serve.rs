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
    let mut intake = Intake::new(store.clone(), config.webhooks.clone()).with_metrics(prometheus()?);
    let mut banner = format!("serving on http://{address} (state: {})\n", syncline_store::redact_url(&config.state_url));
    for source in &config.webhooks {
        banner.push_str(&format!("  POST /webhooks/{}  ({:?}, {} secret(s))\n", source.name, source.provider, source.secrets.len()));
    }
    banner.push_str("  GET /healthz, /readyz, /metrics\n");
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
        let engine = Arc::new(engine);
        let readiness = engine.clone();
        intake = intake.with_breakers(move || readiness.breakers());
        let mut worker = WorkerConfig::new(format!("{}-{}", std::process::id(), uuid::Uuid::now_v7()));
        worker.lease = config.serve.lease;
        worker.concurrency = config.serve.workers;
        let workers = Workers::new(store.clone(), engine, worker, intake.arrived.clone());
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

/// Installs the Prometheus recorder (histograms with buckets from 1 ms to 30 s) and returns
/// what renders it.
fn prometheus() -> Result<impl Fn() -> String + Send + Sync + 'static, CliError> {
    const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| CliError::failed(format!("cannot set up /metrics: {e}")))?;
    // the recorder leaves draining histogram samples to its owner
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(move || handle.render())
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
