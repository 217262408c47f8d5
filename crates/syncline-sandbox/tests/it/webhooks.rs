//! HubSpot's webhook delivery, received by a real HTTP endpoint in this test: which changes
//! become events, batching, signatures, retries with `attemptNumber`, the in-flight limit, and
//! the configured duplication, shuffling and drops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use syncline_sandbox::{Sandbox, Tier, WebhookSettings};

use crate::{TOKEN, send};

const SECRET: &str = "app-secret";

/// One received delivery: its headers and events.
type Received = (HeaderMap, Vec<Value>);

/// A receiver that records every delivery, answers `fail_first` requests with 500, and holds
/// each request `hold` to measure how many are in flight.
#[derive(Clone, Default)]
struct Receiver {
    deliveries: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    hold: Duration,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(r.hold).await;
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    // v1 is SHA-256 over the secret and the exact bytes posted
    let v1 = hex::encode(sha2::Sha256::new().chain_update(SECRET).chain_update(&body).finalize());
    assert_eq!(headers["x-hubspot-signature"], v1.as_str());
    let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
    r.deliveries.lock().unwrap().push((headers, events));
    if r.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

async fn start(receiver: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/hubspot", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/webhooks/hubspot", axum::routing::post(receive)).with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn settings(url: &str, extra: Value) -> WebhookSettings {
    let mut settings = json!({
        "target_url": url, "client_secret": SECRET, "retry_delay_ms": 50,
        "subscriptions": [{"eventType": "contact.creation"}, {"eventType": "contact.propertyChange", "propertyName": "lastname"},
                          {"eventType": "contact.deletion"}],
    });
    settings.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(settings).unwrap()
}

async fn create_contacts(sandbox: &Sandbox, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let inputs: Vec<Value> = chunk.iter().map(|i| json!({"properties": {"firstname": format!("c{i}")}})).collect();
        let reply = send(sandbox, "POST", "/crm/v3/objects/contacts/batch/create", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        ids.extend(reply.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().parse::<u64>().unwrap()));
    }
    ids
}

async fn wait_for(what: impl Fn() -> bool) {
    for _ in 0..200 {
        if what() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for webhook deliveries");
}

fn events(receiver: &Receiver) -> Vec<Value> {
    receiver.deliveries.lock().unwrap().iter().flat_map(|(_, events)| events.clone()).collect()
}

#[tokio::test]
async fn changes_are_delivered_signed_in_batches_of_at_most_100() {
    let sandbox = crate::sandbox(Tier::Free);
    let receiver = Receiver::default();
    let url = start(receiver.clone()).await;
    sandbox.set_webhooks(TOKEN, Some(settings(&url, json!({})))).unwrap();
    let delivery = sandbox.spawn_webhook_delivery();

    let ids = create_contacts(&sandbox, 250).await;
    // a subscribed property change, one that is not subscribed, and an archive
    let path = format!("/crm/v3/objects/contacts/{}", ids[0]);
    send(&sandbox, "PATCH", &path, Some(TOKEN), Some(json!({"properties": {"lastname": "Mora", "firstname": "Ana"}}))).await;
    send(&sandbox, "DELETE", &format!("/crm/v3/objects/contacts/{}", ids[1]), Some(TOKEN), None).await;
    // the receiver has the events before its answer reaches the sandbox, which counts them then
    wait_for(|| events(&receiver).len() == 252 && sandbox.ledger().webhook_counts.delivered == 252).await;

    let deliveries = receiver.deliveries.lock().unwrap().clone();
    assert!(deliveries.iter().all(|(_, events)| !events.is_empty() && events.len() <= 100));
    for (headers, events) in &deliveries {
        assert_eq!(headers["x-hubspot-signature-version"], "v1");
        assert!(headers.contains_key("x-hubspot-signature-v3") && headers.contains_key("x-hubspot-request-timestamp"));
        assert!(events.iter().all(|e| e["attemptNumber"] == 0 && e["portalId"] == crate::PORTAL_ID));
    }
    let all = events(&receiver);
    let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in &all {
        by_type.entry(event["subscriptionType"].as_str().unwrap().to_owned()).or_default().push(event);
    }
    assert_eq!(by_type["contact.creation"].len(), 250);
    // deliveries run concurrently, so they may arrive in any order; each is in order inside
    for (_, events) in &deliveries {
        let order: Vec<u64> = events.iter().map(|e| e["eventId"].as_u64().unwrap()).collect();
        assert!(order.is_sorted(), "{order:?}");
    }
    let mut created: Vec<u64> = by_type["contact.creation"].iter().map(|e| e["objectId"].as_u64().unwrap()).collect();
    created.sort_unstable();
    assert_eq!(created, ids);
    let change = by_type["contact.propertyChange"][0];
    assert_eq!((change["propertyName"].as_str(), change["propertyValue"].as_str()), (Some("lastname"), Some("Mora")));
    assert_eq!(by_type["contact.deletion"][0]["objectId"], ids[1]);
    let event_ids: std::collections::BTreeSet<u64> = all.iter().map(|e| e["eventId"].as_u64().unwrap()).collect();
    assert_eq!(event_ids.len(), all.len(), "without duplication every event is sent once");
    assert_eq!(sandbox.ledger().webhook_counts.delivered, 252);
    delivery.abort();
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_a_higher_attempt_number_until_it_gives_up() {
    let sandbox = crate::sandbox(Tier::Free);
    let receiver = Receiver::default();
    receiver.fail_first.store(2, Ordering::SeqCst);
    let url = start(receiver.clone()).await;
    sandbox.set_webhooks(TOKEN, Some(settings(&url, json!({"max_attempts": 3})))).unwrap();
    let delivery = sandbox.spawn_webhook_delivery();
    create_contacts(&sandbox, 5).await;
    wait_for(|| sandbox.ledger().webhook_counts.delivered == 5).await;
    let attempts: Vec<u64> = events(&receiver).iter().map(|e| e["attemptNumber"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);

    // a receiver that is down: the delivery runs out of attempts and the ledger says so
    sandbox.set_webhooks(TOKEN, Some(settings("http://127.0.0.1:9/down", json!({"max_attempts": 2})))).unwrap();
    create_contacts(&sandbox, 3).await;
    wait_for(|| sandbox.ledger().webhook_counts.given_up == 3).await;
    let ledger = sandbox.ledger();
    let last = ledger.webhook_attempts.last().unwrap();
    assert_eq!((last.attempt_number, last.status), (1, None));
    assert!(last.error.as_deref().is_some_and(|e| e.contains("gave up")), "{last:?}");
    delivery.abort();
}

#[tokio::test]
async fn at_most_the_configured_deliveries_are_in_flight() {
    let sandbox = crate::sandbox(Tier::Free);
    let receiver = Receiver { hold: Duration::from_millis(100), ..Receiver::default() };
    let url = start(receiver.clone()).await;
    sandbox.set_webhooks(TOKEN, Some(settings(&url, json!({"max_batch": 1})))).unwrap();
    let delivery = sandbox.spawn_webhook_delivery();
    create_contacts(&sandbox, 40).await;
    wait_for(|| events(&receiver).len() == 40).await;
    assert_eq!(receiver.max_in_flight.load(Ordering::SeqCst), 10, "HubSpot's 10 in flight, reached and never passed");
    delivery.abort();
}

#[tokio::test]
async fn duplication_shuffling_and_drops_are_applied_and_counted() {
    let sandbox = crate::sandbox(Tier::Free);
    let receiver = Receiver::default();
    let url = start(receiver.clone()).await;
    let knobs = json!({"duplicate": 0.2, "drop": 0.1, "shuffle": true, "seed": 7});
    sandbox.set_webhooks(TOKEN, Some(settings(&url, knobs))).unwrap();
    let delivery = sandbox.spawn_webhook_delivery();
    let ids = create_contacts(&sandbox, 500).await;
    let counts = || sandbox.ledger().webhook_counts;
    wait_for(|| counts().emitted == 500 && counts().delivered == 500 - counts().dropped + counts().duplicated).await;
    let counts = counts();
    assert!((20..=80).contains(&counts.dropped) && (60..=140).contains(&counts.duplicated), "{counts:?}");

    let all = events(&receiver);
    let objects: Vec<u64> = all.iter().map(|e| e["objectId"].as_u64().unwrap()).collect();
    let distinct: std::collections::BTreeSet<u64> = objects.iter().copied().collect();
    assert_eq!(distinct.len() as u64, 500 - counts.dropped, "each dropped event is missing, each other one arrives");
    assert!(distinct.iter().all(|id| ids.contains(id)));
    assert_ne!(objects[..distinct.len().min(50)], ids[..50], "shuffled");
    // a duplicate is the same event again: same eventId and occurredAt, so receivers can dedupe
    let mut seen: BTreeMap<u64, &Value> = BTreeMap::new();
    for event in &all {
        if let Some(first) = seen.insert(event["eventId"].as_u64().unwrap(), event) {
            assert_eq!((first["objectId"].clone(), first["occurredAt"].clone()), (event["objectId"].clone(), event["occurredAt"].clone()));
        }
    }
    let sizes: Vec<usize> = receiver.deliveries.lock().unwrap().iter().map(|(_, e)| e.len()).collect();
    assert!(sizes.iter().any(|&n| n < 100) && sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    delivery.abort();
}

#[tokio::test]
async fn webhook_settings_are_checked_and_set_through_the_admin_api() {
    let sandbox = crate::sandbox(Tier::Free);
    let bad = json!({"token": TOKEN, "settings": {"target_url": "ftp://x", "client_secret": "s", "subscriptions": [{"eventType": "contact.creation"}]}});
    let reply = send(&sandbox, "PUT", "/__sandbox/webhooks", None, Some(bad)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["error"].as_str().unwrap().contains("target_url"), "{}", reply.body);
    let good = json!({"token": TOKEN, "settings": {"target_url": "http://127.0.0.1:1/x", "client_secret": "s", "subscriptions": [{"eventType": "contact.creation"}]}});
    let reply = send(&sandbox, "PUT", "/__sandbox/webhooks", None, Some(good)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let unknown = json!({"token": "nope", "settings": null});
    assert_eq!(send(&sandbox, "PUT", "/__sandbox/webhooks", None, Some(unknown)).await.status, StatusCode::BAD_REQUEST);
}
