use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use syncline_server::signature::sign;
use syncline_server::{DEFAULT_BODY_LIMIT, HubSpotVersion, Intake, Provider, Secret, Source};
use syncline_store::Store;
use tower::ServiceExt;

const HUBSPOT_SECRET: &str = "hubspot-app-secret";
const STRIPE_SECRET: &str = "whsec_intake";
const HUBSPOT_URL: &str = "http://hooks.test/webhooks/hubspot";

struct Server {
    intake: Intake,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("state.db").display())).await.unwrap();
    let source = |name: &str, provider, secret: &str| Source {
        name: name.into(),
        provider,
        secrets: vec![Secret::new(secret)],
        hubspot_versions: vec![HubSpotVersion::V1, HubSpotVersion::V2, HubSpotVersion::V3],
        public_url: None,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    let sources = vec![source("hubspot", Provider::HubSpot, HUBSPOT_SECRET), source("stripe", Provider::Stripe, STRIPE_SECRET)];
    Server { intake: Intake::new(store.clone(), sources), store, _dir: dir }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn post(server: &Server, path: &str, headers: &[(&str, String)], body: Body) -> Reply {
    let mut request = Request::builder().method("POST").uri(path).header("host", "hooks.test");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = server.intake.router().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

fn event(object: u64, attempt: u64) -> Value {
    json!({"eventId": 100 + object, "subscriptionId": 7, "portalId": 62515, "appId": 54321, "occurredAt": 1_764_000_000_000u64 + object,
           "subscriptionType": "contact.creation", "attemptNumber": attempt, "objectId": object, "changeSource": "CRM", "changeFlag": "NEW"})
}

/// A HubSpot delivery signed v3 (and v1, as HubSpot sends both).
async fn deliver(server: &Server, events: &[Value]) -> Reply {
    let body = serde_json::to_vec(events).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let headers = [
        ("x-hubspot-signature", sign::hubspot_v1(HUBSPOT_SECRET, &body)),
        ("x-hubspot-signature-v3", sign::hubspot_v3(HUBSPOT_SECRET, "POST", HUBSPOT_URL, &body, now)),
        ("x-hubspot-request-timestamp", now.to_string()),
        ("content-type", "application/json".into()),
    ];
    post(server, "/webhooks/hubspot", &headers, Body::from(body)).await
}

async fn stored(server: &Server) -> i64 {
    server.store.inbox_depth().await.unwrap().iter().map(|d| d.events).sum()
}

#[tokio::test]
async fn a_signed_delivery_is_stored_once_per_event() {
    let server = server().await;
    let first: Vec<Value> = (1..=3).map(|i| event(i, 0)).collect();
    let reply = deliver(&server, &first).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"stored": 3, "duplicates": 0}));
    // HubSpot retries with a new attemptNumber and may batch differently: same events, same keys
    let retried: Vec<Value> = (2..=4).map(|i| event(i, 1)).collect();
    let reply = deliver(&server, &retried).await;
    assert_eq!(reply.body, json!({"stored": 1, "duplicates": 2}));
    let claimed = server.store.inbox_claim("t", std::time::Duration::from_secs(5), 10).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert_eq!(claimed[0].event_type, "contact.creation");
    assert_eq!(claimed[0].dedupe_key, "hubspot:62515:contact.creation:1");
    let payload: Value = serde_json::from_str(&claimed[0].payload).unwrap();
    assert_eq!(payload["objectId"], 1);
    let counts = server.intake.counters.snapshot();
    assert!(counts.contains(&("hubspot".into(), "stored", 4)) && counts.contains(&("hubspot".into(), "duplicate", 2)), "{counts:?}");
}

#[tokio::test]
async fn forged_or_unsigned_deliveries_are_401_and_store_nothing() {
    let server = server().await;
    let body = serde_json::to_vec(&[event(1, 0)]).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("x-hubspot-signature", sign::hubspot_v1("wrong-secret", &body))],
        vec![("x-hubspot-signature", sign::hubspot_v1(HUBSPOT_SECRET, b"[]"))],
        vec![
            ("x-hubspot-signature-v3", sign::hubspot_v3(HUBSPOT_SECRET, "POST", "http://elsewhere/webhooks/hubspot", &body, now)),
            ("x-hubspot-request-timestamp", now.to_string()),
        ],
        vec![
            ("x-hubspot-signature-v3", sign::hubspot_v3(HUBSPOT_SECRET, "POST", HUBSPOT_URL, &body, now - 301_000)),
            ("x-hubspot-request-timestamp", (now - 301_000).to_string()),
        ],
    ];
    for headers in cases {
        let reply = post(&server, "/webhooks/hubspot", &headers, Body::from(body.clone())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(reply.body["error"].is_string());
    }
    let t = chrono::Utc::now().timestamp();
    let stripe_body = br#"{"id":"evt_1","object":"event","type":"product.created","created":1764000000}"#;
    let forged = [("stripe-signature", format!("t={t},v1={}", sign::stripe_v1("whsec_other", stripe_body, t)))];
    assert_eq!(post(&server, "/webhooks/stripe", &forged, Body::from(&stripe_body[..])).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored(&server).await, 0);
    assert_eq!(post(&server, "/webhooks/nope", &[], Body::empty()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_bodies_are_413_before_they_are_read() {
    let server = server().await;
    let ten_mib = vec![b' '; 10 * 1024 * 1024];
    let declared = [("content-length", ten_mib.len().to_string())];
    let reply = post(&server, "/webhooks/hubspot", &declared, Body::from(ten_mib)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // chunked, without a length: cut off at the limit while reading
    let chunks = (0..160).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let reply = post(&server, "/webhooks/hubspot", &[], Body::from_stream(futures_util::stream::iter(chunks))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(stored(&server).await, 0);
}

#[tokio::test]
async fn a_malformed_body_after_a_good_signature_is_400_naming_the_problem() {
    let server = server().await;
    let sign_v1 = |body: &[u8]| vec![("x-hubspot-signature", sign::hubspot_v1(HUBSPOT_SECRET, body))];
    let mut missing = event(2, 0);
    missing.as_object_mut().unwrap().remove("objectId");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"[{\"eventId\": 1,".to_vec(), "not JSON"),
        (vec![0xff, 0xfe, b'[', b']'], "not UTF-8"),
        (b"{\"eventId\": 1}".to_vec(), "JSON array"),
        (serde_json::to_vec(&[event(1, 0), missing]).unwrap(), "event 1: missing or empty field objectId"),
        (serde_json::to_vec(&vec![event(3, 0); 101]).unwrap(), "101 events in one delivery"),
        (
            br#"[{"eventId": 1, "portalId": 62515, "occurredAt": 1764000000000, "subscriptionType": "contact.creation", "objectId": -5}]"#
                .to_vec(),
            "objectId -5 is not a positive integer",
        ),
    ];
    for (body, named) in cases {
        let reply = post(&server, "/webhooks/hubspot", &sign_v1(&body), Body::from(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.body["error"].as_str().unwrap().contains(named), "{named}: {}", reply.body);
    }
    assert_eq!(stored(&server).await, 0, "a delivery with one bad event stores none of it");
}

#[tokio::test]
async fn stripe_events_are_stored_by_their_id() {
    let server = server().await;
    let body = br#"{"id":"evt_9","object":"event","type":"product.updated","created":1764000000,"data":{"object":{"id":"prod_1"}}}"#;
    for expected in [json!({"stored": 1, "duplicates": 0}), json!({"stored": 0, "duplicates": 1})] {
        let t = chrono::Utc::now().timestamp();
        let header = [("stripe-signature", format!("t={t},v1={}", sign::stripe_v1(STRIPE_SECRET, body, t)))];
        let reply = post(&server, "/webhooks/stripe", &header, Body::from(&body[..])).await;
        assert_eq!(reply.body, expected);
    }
    let claimed = server.store.inbox_claim("t", std::time::Duration::from_secs(5), 10).await.unwrap();
    assert_eq!((claimed[0].dedupe_key.as_str(), claimed[0].event_type.as_str()), ("stripe:evt_9", "product.updated"));
}

#[tokio::test]
async fn a_store_that_cannot_commit_answers_503_and_acknowledges_nothing() {
    let server = server().await;
    let health = server.intake.router().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.store.close().await;
    let reply = deliver(&server, &[event(1, 0)]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["retry-after"], "5");
    let ready = server.intake.router().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let alive = server.intake.router().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_says_how_each_dependency_is_doing_and_fails_while_every_one_is_down() {
    let server = server().await;
    use syncline_resilience::{Health, Level};
    let mut limited = Health::healthy("quickbooks");
    limited.note(Level::Degraded, "3 × 429 in the last 5 minutes");
    let mut open = Health::healthy("stripe");
    open.note(Level::Unhealthy, "circuit breaker open: calls are refused until it probes again");
    let states = std::sync::Arc::new(std::sync::Mutex::new(vec![Health::healthy("hubspot"), limited]));
    let shared = states.clone();
    let intake = server.intake.clone().with_health(move || shared.lock().unwrap().clone());
    let ready = || async {
        let response = intake.router().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body: Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        (status, body)
    };
    let (status, body) = ready().await;
    assert_eq!(status, StatusCode::OK, "degraded is still ready");
    let expected = json!({"status": "degraded", "store": "ok", "dependencies": {
        "hubspot": {"status": "healthy", "reasons": []},
        "quickbooks": {"status": "degraded", "reasons": ["3 × 429 in the last 5 minutes"]},
    }});
    assert_eq!(body, expected);
    states.lock().unwrap()[0] = open.clone();
    let (status, body) = ready().await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("degraded")), "one service down, another working: {body}");
    states.lock().unwrap()[1] = open;
    let (status, body) = ready().await;
    assert_eq!((status, &body["status"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("unhealthy")), "{body}");
}
