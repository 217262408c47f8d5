//! `syncline serve`: webhook intake into the durable inbox, and workers that run the configured
//! flows on it.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::cmd::Session;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use syncline_server::Intake;
use syncline_server::flow::Engine;
use syncline_server::worker::{WorkerConfig, Workers};
use syncline_store::Store;

pub async fn run(shared: Arc<Config>, store: &Store, args: ServeArgs, session: &Session) -> CliResult {
    let config = &*shared;
    if config.webhooks.is_empty() && config.pipelines.iter().all(|p| p.schedule.is_none()) {
        return Err(CliError::usage(format!(
            "{}: nothing to serve; add a `webhooks:` section, or a `schedule:` to a pipeline",
            config.file
        )));
    }
    let bind = args.bind.unwrap_or(config.serve.bind);
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| CliError::usage(format!("cannot listen on {bind}: {e}")))?;
    let address = listener.local_addr().map_err(CliError::failed)?;
    let mut intake = Intake::new(store.clone(), config.webhooks.clone()).with_metrics(prometheus(config)?).with_limits(config.serve.limits);
    let mut banner = banner(config, address);
    // the workers stop claiming at the signal and finish the events in hand
    let stopped = session.stop.clone();
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let mut health: Option<Arc<dyn Fn() -> Vec<syncline_resilience::Health> + Send + Sync>> = None;
    let workers = if config.flows.is_empty() {
        None
    } else {
        let mut connections = config.connections.open(&crate::budgets::shared_by(store)).map_err(CliError::failed)?;
        for name in config.flows.iter().flat_map(|f| f.steps.iter()).filter_map(|s| match s {
            syncline_server::flow::Step::Pipeline(name) => Some(name),
            _ => None,
        }) {
            let pipeline = config.pipeline(name).ok_or_else(|| CliError::usage(format!("no pipeline named {name}")))?;
            let opened = crate::flow_pipeline::FlowPipeline::open(pipeline, &config.base_dir, store).await?;
            connections.pipelines.insert(name.clone(), Arc::new(opened));
        }
        let engine = Engine::new(config.flows.clone(), connections).map_err(|e| CliError::usage(format!("flow {}: {e}", e.flow)))?;
        let engine = Arc::new(engine);
        let readiness = engine.clone();
        intake = intake.with_health(move || readiness.health());
        let readiness = engine.clone();
        health = Some(Arc::new(move || readiness.health()));
        let mut worker = WorkerConfig::new(owner.clone());
        worker.lease = config.serve.lease;
        worker.concurrency = config.serve.workers;
        let workers = Workers::new(store.clone(), engine, worker, intake.arrived.clone());
        let history = workers.history(config.flows.iter().map(|f| f.name.clone()).collect()).await;
        let running = workers.clone();
        Some((tokio::spawn(async move { running.run(stopped).await }), history))
    };
    let console = super::console::start(shared.clone(), store, health, session).await;
    if let Some((line, _)) = &console {
        banner.push_str(line);
    }
    // a closed stdout must not stop the server
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    tracing::info!(%address, "serving webhooks");
    // schedules run beside the server, and a scheduled run in hand ends with it (interrupted,
    // its acknowledged pages committed)
    let (served, ()) =
        tokio::join!(intake.serve(listener, session.stop.clone().cancelled_owned()), super::schedule::run(config, store, session));
    served.map_err(CliError::failed)?;
    if let Some((_, console)) = console {
        let _ = console.await;
    }
    // in-flight deliveries were answered (or never acknowledged); flows in hand get `drain` to
    // finish, and what is left goes back to the inbox at once for another worker or the next
    // start (a send that did happen is not repeated: its mark is checked first)
    if let Some((mut workers, history)) = workers {
        if tokio::time::timeout(config.serve.drain, &mut workers).await.is_err() {
            workers.abort();
            // the aborted task must be gone before its events are handed back
            let _ = workers.await;
            let handed = store.inbox_hand_back(&owner).await.unwrap_or_default();
            tracing::warn!(events = handed, "flows still running at shutdown went back to the inbox");
        }
        // a server's normal end is a signal: its flow runs are `stopped`
        history.finish(syncline_core::RunStatus::Stopped).await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// What `serve` says it serves, first line `serving on http://<address>`.
fn banner(config: &Config, address: std::net::SocketAddr) -> String {
    let mut banner = format!("serving on http://{address} (state: {})\n", syncline_core::redact::url(&config.state.url));
    for source in &config.webhooks {
        banner.push_str(&format!("  POST /webhooks/{}  ({:?}, {} secret(s))\n", source.name, source.provider, source.secrets.len()));
    }
    banner.push_str("  GET /healthz, /readyz, /metrics\n");
    for pipeline in &config.pipelines {
        if let Some(schedule) = &pipeline.schedule {
            banner.push_str(&format!("  schedule {}: {schedule}\n", pipeline.name));
        }
    }
    for flow in &config.flows {
        let events = if flow.events.is_empty() { "every event".to_owned() } else { flow.events.join(", ") };
        banner.push_str(&format!("  flow {}: {} from {} ({} steps)\n", flow.name, events, flow.source, flow.steps.len()));
    }
    banner
}

/// Installs the Prometheus recorder (histograms with buckets from 1 ms to 30 s), describes every
/// metric and starts each configured series at zero, and returns what renders them.
fn prometheus(config: &Config) -> Result<impl Fn() -> String + Send + Sync + 'static, CliError> {
    const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| CliError::failed(format!("cannot set up /metrics: {e}")))?;
    let sources: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
    let flows: Vec<&str> = config.flows.iter().map(|f| f.name.as_str()).collect();
    syncline_core::metric::describe_and_initialize(&sources, &flows);
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
