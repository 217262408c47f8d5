//! `syncline bench --intake`: durable webhook intake on the embedded store (SQLite,
//! `synchronous=FULL`), over real TCP on loopback. Two figures: events/s when HubSpot-style
//! deliveries of 100 events arrive as fast as they are answered, and the time to 2xx (p50, p99,
//! max) at a steady 1,000 single-event deliveries per second.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use syncline_server::signature::sign;
use syncline_server::{DEFAULT_BODY_LIMIT, HubSpotVersion, Intake, Provider, Secret, Source};
use syncline_store::Store;

use crate::exit::{CliError, CliResult, Exit};

const SECRET: &str = "bench-secret";
const BURST_DELIVERIES: usize = 2_000;
const EVENTS_PER_DELIVERY: usize = 100;
const CONCURRENCY: usize = 16;
const STEADY_RATE: u64 = 1_000;
const STEADY_SECS: u64 = 10;

/// A signed delivery of `count` contact.creation events starting at object `first`.
fn delivery(first: usize, count: usize) -> (Vec<u8>, String) {
    let events: Vec<_> = (first..first + count)
        .map(|i| {
            json!({"eventId": i, "subscriptionId": 7, "portalId": 62515, "appId": 1, "occurredAt": 1_764_000_000_000u64 + i as u64,
                   "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": i + 1, "changeSource": "CRM", "changeFlag": "NEW"})
        })
        .collect();
    let body = serde_json::to_vec(&events).expect("json");
    let signature = sign::hubspot_v1(SECRET, &body);
    (body, signature)
}

async fn send(client: &reqwest::Client, url: &str, (body, signature): (Vec<u8>, String)) -> Result<Duration, String> {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("x-hubspot-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 => Ok(started.elapsed()),
        status => Err(format!("status {status}")),
    }
}

/// The inbox rows of the burst's deliveries as intake makes them (made before the clock starts).
fn bare_rows(bodies: &[(Vec<u8>, String)]) -> Result<Vec<Vec<super::bare::EventRow>>, CliError> {
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default();
    bodies
        .iter()
        .map(|(body, _)| {
            let events = syncline_server::events::hubspot("hubspot", body).map_err(CliError::failed)?;
            Ok(events
                .into_iter()
                .map(|e| (e.source, e.dedupe_key, e.event_type, e.payload, time(e.occurred_at), e.object_key.unwrap_or_default()))
                .collect())
        })
        .collect()
}

/// Events/s of the bare insert into a fresh store's inbox.
async fn bare_insert(dir: &Path, rows: Vec<Vec<super::bare::EventRow>>) -> Result<f64, CliError> {
    let path = dir.join("intake-bare.db");
    let _ = std::fs::remove_file(&path);
    // the store's migrations make the table, with every index intake writes
    Store::connect(&format!("sqlite://{}", path.display())).await.map_err(CliError::failed)?.close().await;
    tokio::task::spawn_blocking(move || super::bare::insert_events(&path, &rows, CONCURRENCY))
        .await
        .map_err(CliError::failed)?
        .map_err(CliError::failed)
}

/// A share `p` of the latencies, in milliseconds.
fn ms(sorted: &[Duration], p: f64) -> f64 {
    super::percentile(sorted, p).as_secs_f64() * 1000.0
}

pub async fn run(dir: &Path) -> CliResult {
    let _ = std::fs::remove_file(dir.join("intake-state.db"));
    let store = Store::connect(&format!("sqlite://{}", dir.join("intake-state.db").display())).await.map_err(CliError::failed)?;
    let source = Source {
        name: "hubspot".into(),
        provider: Provider::HubSpot,
        secrets: vec![Secret::new(SECRET)],
        hubspot_versions: vec![HubSpotVersion::V1, HubSpotVersion::V3],
        public_url: None,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    // the server `syncline serve` runs, with its limits
    let intake = Intake::new(store.clone(), vec![source]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(CliError::failed)?;
    let url = format!("http://{}/webhooks/hubspot", listener.local_addr().map_err(CliError::failed)?);
    tokio::spawn(async move {
        let _ = intake.serve(listener, std::future::pending()).await;
    });
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY * 2).build().map_err(CliError::failed)?;

    eprintln!("burst: {BURST_DELIVERIES} deliveries of {EVENTS_PER_DELIVERY} events, {CONCURRENCY} at a time …");
    let bodies: Vec<_> = (0..BURST_DELIVERIES).map(|d| delivery(d * EVENTS_PER_DELIVERY, EVENTS_PER_DELIVERY)).collect();
    let rows = bare_rows(&bodies)?;
    let started = Instant::now();
    let results: Vec<Result<Duration, String>> =
        futures_util::stream::iter(bodies.into_iter().map(|b| send(&client, &url, b))).buffer_unordered(CONCURRENCY).collect().await;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let stored: i64 = store.inbox_depth().await.map_err(CliError::failed)?.iter().map(|d| d.events).sum();
    let events = (BURST_DELIVERIES - failed) * EVENTS_PER_DELIVERY;
    println!(
        "durable intake: {events} events in {elapsed:.2} s = {:.0} events/s ({:.0} deliveries/s), {failed} failed, {stored} rows in the inbox",
        events as f64 / elapsed,
        (BURST_DELIVERIES - failed) as f64 / elapsed
    );
    let bare = bare_insert(dir, rows).await?;
    println!(
        "bare insert:    {bare:.0} events/s (the same events into the same inbox table, one prepared insert, \
         {CONCURRENCY} deliveries per commit, synchronous = FULL, no HTTP or parsing) · intake is {:.2} × that",
        events as f64 / elapsed / bare
    );

    eprintln!("steady: {STEADY_RATE} single-event deliveries per second for {STEADY_SECS} s …");
    let first = BURST_DELIVERIES * EVENTS_PER_DELIVERY;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..(STEADY_RATE * STEADY_SECS) as usize {
        ticker.tick().await;
        let (client, url, body) = (client.clone(), url.clone(), delivery(first + i, 1));
        tasks.spawn(async move { send(&client, &url, body).await });
    }
    let mut latencies = Vec::new();
    let mut failures: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        match result.map_err(CliError::failed)? {
            Ok(latency) => latencies.push(latency),
            Err(why) => *failures.entry(why).or_default() += 1,
        }
    }
    // what the failures were: a 503 is intake shedding load (a sender past its cap of
    // connections, e.g. when a slow fsync held answers back), which a sender retries
    let failures = match failures.values().sum::<usize>() {
        0 => "0 failed".to_owned(),
        n => format!("{n} failed ({})", failures.iter().map(|(why, k)| format!("{k} × {why}")).collect::<Vec<_>>().join(", ")),
    };
    latencies.sort();
    if latencies.is_empty() {
        return Err(CliError::failed("every steady delivery failed"));
    }
    println!(
        "time to 2xx at {STEADY_RATE}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} deliveries, {failures}",
        ms(&latencies, 0.50),
        ms(&latencies, 0.99),
        ms(&latencies, 1.0),
        latencies.len()
    );
    store.close().await;
    Ok(Exit::Ok)
}
