//! `syncline serve`: webhook intake into the durable inbox; `syncline inbox`: what it holds.

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use syncline_server::Intake;
use syncline_store::Store;

pub async fn run(config: &Config, store: &Store, args: ServeArgs) -> CliResult {
    if config.webhooks.is_empty() {
        return Err(CliError::usage(format!("{}: no webhooks to serve; add a `webhooks:` section", config.file)));
    }
    let bind = args.bind.unwrap_or(config.serve_bind);
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| CliError::usage(format!("cannot listen on {bind}: {e}")))?;
    let address = listener.local_addr().map_err(CliError::failed)?;
    let intake = Intake::new(store.clone(), config.webhooks.clone());
    let mut banner = format!("serving on http://{address} (state: {})\n", syncline_store::redact_url(&config.state_url));
    for source in &config.webhooks {
        banner.push_str(&format!("  POST /webhooks/{}  ({:?}, {} secret(s))\n", source.name, source.provider, source.secrets.len()));
    }
    banner.push_str("  GET /healthz, /readyz\n");
    // a closed stdout must not stop the server
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    tracing::info!(%address, "serving webhooks");
    axum::serve(listener, intake.router()).with_graceful_shutdown(shutdown()).await.map_err(CliError::failed)?;
    // in-flight deliveries were answered (or never acknowledged); nothing is held in memory
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
