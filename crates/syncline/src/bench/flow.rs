//! `syncline bench --flow`: the lead → ManyChat flow against the in-process sandbox (a HubSpot
//! portal with the API limit increase, 25 calls/s, so that 20 single-event webhooks/s fit its
//! budget: Professional's 19/s does not), one ManyChat page whose leads are already subscribers), through the real
//! intake, SQLite inbox and workers over loopback. Two figures:
//! - backlog: 1,000 stored events run as fast as the budgets allow; sends per second against
//!   ManyChat's 25/s sendContent limit, and the 429s the sandbox answered;
//! - latency: single-event webhooks at 20 per second; time from the POST to the sandbox's
//!   record of the delivered message (p50, p99, max).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline_connectors::hubspot::{HubSpotApi, HubSpotProfile};
use syncline_connectors::manychat::{ManyChatApi, ManyChatProfile};
use syncline_sandbox::{PageConfig, PortalConfig, Sandbox, Tier};
use syncline_server::flow::{Connections, Engine, Flow};
use syncline_server::signature::sign;
use syncline_server::worker::{WorkerConfig, Workers};
use syncline_server::{DEFAULT_BODY_LIMIT, HubSpotVersion, Intake, Provider, Secret, Source};
use syncline_store::Store;

use super::percentile;
use crate::exit::{CliError, CliResult, Exit};

const SECRET: &str = "bench-secret";
const HUBSPOT_TOKEN: &str = "pat-bench";
const MANYCHAT_TOKEN: &str = "770001:bench";
const BACKLOG: usize = 1_000;
const LATENCY_RATE: u64 = 20;
const LATENCY_SECS: u64 = 10;

fn phone(i: usize) -> String {
    format!("8{:07}", i)
}

fn flow() -> Flow {
    let steps = json!([
        {"hubspot.get": {"properties": ["firstname", "mobilephone", "email"]}},
        {"phone": ["mobilephone"]},
        {"name": ["firstname"]},
        {"require_any": ["mobilephone", "email"]},
        {"manychat.find_or_create_subscriber": {"whatsapp_phone": "mobilephone", "email": "email", "first_name": "firstname"}},
        {"manychat.set_custom_fields": {"hubspot_contact_id": "{{ event.objectId }}"}},
        {"manychat.send_content": {"messages": ["¡Hola {{ contact.firstname }}! Bienvenido."], "message_tag": "ACCOUNT_UPDATE"}}
    ]);
    Flow {
        name: "lead-welcome".into(),
        source: "hubspot".into(),
        events: vec!["contact.creation".into()],
        filter: None,
        steps: serde_json::from_value(steps).expect("the bench flow is well formed"),
        max_attempts: 5,
        ordered: false,
    }
}

fn event(id: u64, n: usize) -> Value {
    json!({"eventId": n, "subscriptionId": 7, "portalId": 62515, "appId": 1, "occurredAt": 1_764_000_000_000u64 + n as u64,
           "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": id, "changeSource": "CRM", "changeFlag": "NEW"})
}

async fn post(client: &reqwest::Client, url: &str, events: &[Value]) -> Result<(), String> {
    let body = serde_json::to_vec(events).expect("json");
    let response = client
        .post(url)
        .header("x-hubspot-signature", sign::hubspot_v1(SECRET, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().as_u16() == 200 { Ok(()) } else { Err(format!("status {}", response.status())) }
}

/// Creates `count` contacts (numbered from `first`) in the sandbox's portal, without spending
/// its budget (the figures are about the flow); their ids.
fn contacts(sandbox: &Sandbox, first: usize, count: usize) -> Result<Vec<u64>, CliError> {
    let contacts: Vec<BTreeMap<String, String>> = (first..first + count)
        .map(|i| BTreeMap::from([("firstname".to_owned(), "Lead".to_owned()), ("mobilephone".to_owned(), phone(i))]))
        .collect();
    sandbox.import(HUBSPOT_TOKEN, "contacts", &contacts, chrono::Utc::now()).map_err(CliError::failed)
}

/// The parts the bench drives: the sandbox, the intake's URL, the store and the workers.
struct World {
    sandbox: Sandbox,
    url: String,
    store: Store,
    workers: Workers,
    client: reqwest::Client,
}

pub async fn run(dir: &Path) -> CliResult {
    let world = world(dir).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    backlog(&world, stop.clone()).await?;
    latency(&world).await?;
    stop.cancel();
    world.store.close().await;
    Ok(Exit::Ok)
}

/// A sandbox with the portal and a page of subscribers, a store, the intake `serve` runs and
/// the workers (not started).
async fn world(dir: &Path) -> Result<World, CliError> {
    let total = BACKLOG + (LATENCY_RATE * LATENCY_SECS) as usize;
    let sandbox = Sandbox::new();
    let portal = PortalConfig {
        token: HUBSPOT_TOKEN.into(),
        tier: Tier::LimitIncrease,
        portal_id: Some(62515),
        properties: Default::default(),
        custom_objects: Vec::new(),
        webhooks: None,
    };
    sandbox.add_portal(portal).map_err(CliError::failed)?;
    let subscribers: Vec<Value> = (0..total)
        .map(|i| json!({"first_name": "Lead", "whatsapp_phone": format!("+506{}", phone(i)), "last_interaction_hours_ago": 1.0}))
        .collect();
    let page: PageConfig = serde_json::from_value(
        json!({"token": MANYCHAT_TOKEN, "custom_fields": [{"name": "hubspot_contact_id"}], "subscribers": subscribers}),
    )
    .map_err(CliError::failed)?;
    sandbox.add_page(page).map_err(CliError::failed)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(CliError::failed)?;
    let base = format!("http://{}", listener.local_addr().map_err(CliError::failed)?);
    let router = sandbox.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let _ = std::fs::remove_file(dir.join("flow-state.db"));
    let store = Store::connect(&format!("sqlite://{}", dir.join("flow-state.db").display())).await.map_err(CliError::failed)?;
    let source = Source {
        name: "hubspot".into(),
        provider: Provider::HubSpot,
        secrets: vec![Secret::new(SECRET)],
        hubspot_versions: vec![HubSpotVersion::V1],
        public_url: None,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    let intake = Intake::new(store.clone(), vec![source]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(CliError::failed)?;
    let url = format!("http://{}/webhooks/hubspot", listener.local_addr().map_err(CliError::failed)?);
    let server = intake.clone();
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });

    let client = reqwest::Client::new();
    let mut profile = HubSpotProfile::new(&base, HUBSPOT_TOKEN);
    profile.calls_per_ten_seconds = 250;
    let connections = Connections {
        hubspot: Some(HubSpotApi::new(&profile).map_err(CliError::failed)?),
        manychat: Some(ManyChatApi::new(&ManyChatProfile::new(&base, MANYCHAT_TOKEN)).map_err(CliError::failed)?),
        pipelines: Default::default(),
    };
    let engine = Arc::new(Engine::new(vec![flow()], connections).map_err(CliError::failed)?);
    let workers = Workers::new(store.clone(), engine, WorkerConfig::new("bench"), intake.arrived.clone());
    Ok(World { sandbox, url, store, workers, client })
}

/// Every event stored first, then the workers start: sends per second through the backlog.
async fn backlog(world: &World, stopped: tokio_util::sync::CancellationToken) -> Result<(), CliError> {
    let World { sandbox, url, workers, client, .. } = world;
    eprintln!("backlog: {BACKLOG} contacts and their webhooks, then the workers …");
    let ids = contacts(sandbox, 0, BACKLOG)?;
    let events: Vec<Value> = ids.iter().enumerate().map(|(n, id)| event(*id, n)).collect();
    for delivery in events.chunks(100) {
        post(client, url, delivery).await.map_err(CliError::failed)?;
    }
    let before = sandbox.ledger().requests.len();
    let running = workers.clone();
    tokio::spawn(async move { running.run(stopped).await });
    let deadline = Instant::now() + Duration::from_secs(300);
    while sandbox.delivered().len() < BACKLOG && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = sandbox.ledger();
    let sends: Vec<i64> = ledger.messages.iter().map(|m| m.at_ms).collect();
    let (first, last) = (sends.first().copied().unwrap_or(0), sends.last().copied().unwrap_or(0));
    let rate = (sends.len().saturating_sub(1)) as f64 / ((last - first).max(1) as f64 / 1000.0);
    let backlog_calls = &ledger.requests[before..];
    let limited = backlog_calls.iter().filter(|r| r.status == 429).count();
    let hubspot_calls = backlog_calls.iter().filter(|r| r.path.starts_with("/crm/")).count();
    println!(
        "backlog: {} messages sent in {:.1} s = {rate:.1} sends/s (ManyChat sendContent limit 25/s); {limited} × 429; {hubspot_calls} HubSpot calls for {BACKLOG} contacts",
        sends.len(),
        (last - first) as f64 / 1000.0
    );
    Ok(())
}

/// The workers idle; single-event deliveries at a steady rate: webhook → message latency.
async fn latency(world: &World) -> Result<(), CliError> {
    let World { sandbox, url, client, .. } = world;
    eprintln!("latency: {LATENCY_RATE} webhooks/s for {LATENCY_SECS} s …");
    let ids = contacts(sandbox, BACKLOG, (LATENCY_RATE * LATENCY_SECS) as usize)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / LATENCY_RATE));
    let mut posted = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        ticker.tick().await;
        let at = chrono::Utc::now().timestamp_millis();
        post(client, url, &[event(*id, BACKLOG + n)]).await.map_err(CliError::failed)?;
        posted.push(at);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox.delivered().len() < BACKLOG + ids.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = sandbox.delivered();
    // messages arrive in the order their webhooks were posted (one at a time, 50 ms apart)
    let mut latencies: Vec<i64> = delivered[BACKLOG..].iter().zip(&posted).map(|(m, at)| m.at_ms - at).collect();
    latencies.sort_unstable();
    if latencies.is_empty() {
        return Err(CliError::failed("no message was delivered in the latency phase"));
    }
    let limited = sandbox.ledger().requests.iter().filter(|r| r.status == 429).count();
    println!(
        "webhook → ManyChat send at {LATENCY_RATE}/s: p50 {} ms, p99 {} ms, max {} ms over {} messages; {limited} × 429 in all",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len()
    );
    Ok(())
}
