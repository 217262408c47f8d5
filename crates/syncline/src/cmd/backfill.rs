//! `syncline backfill <flow> --since <time>`: puts the events a flow's trigger missed in the
//! inbox, where `syncline serve` runs them (see `syncline_server::backfill`).

use chrono::Utc;
use syncline_connectors::hubspot::{HubSpotApi, HubSpotProfile};
use syncline_server::Provider;
use syncline_server::backfill::{Report, backfill};
use syncline_store::Store;

use crate::cli::BackfillArgs;
use crate::cmd::Session;
use crate::cmd::run::parse_time;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};

pub async fn run(config: &Config, store: &Store, args: BackfillArgs, session: &Session) -> CliResult {
    let quiet = session.quiet;
    let Some(flow) = config.flows.iter().find(|f| f.name == args.flow) else {
        let known: Vec<&str> = config.flows.iter().map(|f| f.name.as_str()).collect();
        if let Some(close) = crate::config::did_you_mean(&args.flow, known.iter().copied()) {
            return Err(CliError::usage(format!("unknown flow {:?}; did you mean {close:?}?", args.flow)));
        }
        let known = if known.is_empty() { "no flows".to_owned() } else { known.join(", ") };
        return Err(CliError::usage(format!("unknown flow {:?}; {} defines: {known}", args.flow, config.file)));
    };
    let source = config.webhooks.iter().find(|s| s.name == flow.source);
    if source.is_some_and(|s| s.provider != Provider::HubSpot) {
        return Err(CliError::usage(format!(
            "flow {}: its source {} is not a HubSpot webhook; backfill searches HubSpot",
            flow.name, flow.source
        )));
    }
    syncline_server::backfill::target(flow).map_err(CliError::usage)?;
    let Some(settings) = &config.connections.hubspot else {
        return Err(CliError::usage(format!("{}: backfill searches HubSpot; add connections.hubspot", config.file)));
    };
    let since = parse_time("--since", &args.since)?.and_utc();
    let until = match &args.until {
        Some(text) => parse_time("--until", text)?.and_utc(),
        None => Utc::now(),
    };
    if until <= since {
        return Err(CliError::usage(format!("--until {until} is not after --since {since}")));
    }
    let settings = HubSpotProfile { budgets: crate::budgets::shared_by(store), ..settings.clone() };
    let hubspot = std::sync::Arc::new(HubSpotApi::new(&settings).map_err(CliError::failed)?);
    let show = |report: &Report| {
        if !quiet {
            eprint!(
                "\r{} found, {} enqueued, {} already in the inbox ({} searches)",
                report.found, report.enqueued, report.already, report.searches
            );
        }
    };
    // a refused token is the config's problem (exit 2), not a failed search
    hubspot.account_id().await.map_err(|e| CliError::connector(&e, "backfill: HubSpot"))?;
    let report = backfill(flow, hubspot, store, since, until, args.dry_run, show).await.map_err(CliError::failed)?;
    if !quiet {
        eprintln!();
    }
    let range = format!("created from {} to {}", since.to_rfc3339(), until.to_rfc3339());
    if args.dry_run {
        crate::output::line(format!("backfill {} (dry run): {} objects {range}; nothing stored", flow.name, report.found));
    } else {
        crate::output::line(format!(
            "backfill {}: {} objects {range}: {} enqueued, {} already in the inbox ({} searches); a running `syncline serve` runs them",
            flow.name, report.found, report.enqueued, report.already, report.searches
        ));
    }
    Ok(Exit::Ok)
}
