//! Flows run by inbox workers against the sandbox's HubSpot and ManyChat over real HTTP: the
//! welcome is rendered and sent once per person, a crash between the send and the commit does
//! not send again, and data errors (no phone or email, ManyChat's 3011) end as dead letters
//! that a replay sends once after the fix.

use std::sync::Arc;

use serde_json::{Value, json};
use syncline_connectors::hubspot::{HubSpotApi, HubSpotProfile};
use syncline_connectors::manychat::{ManyChatApi, ManyChatProfile};
use syncline_sandbox::{PageConfig, PortalConfig, Sandbox, Tier};
use syncline_server::flow::{Connections, Engine, Flow};
use syncline_server::worker::{WorkerConfig, Workers};
use syncline_store::{DeadLetterFilter, NewEvent, Store};

const HUBSPOT_TOKEN: &str = "pat-flows";
const MANYCHAT_TOKEN: &str = "880001:flows-key";

struct World {
    sandbox: Sandbox,
    base_url: String,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let sandbox = Sandbox::new();
    let portal = PortalConfig {
        token: HUBSPOT_TOKEN.into(),
        tier: Tier::Professional,
        portal_id: Some(62515),
        properties: Default::default(),
        custom_objects: Vec::new(),
        webhooks: None,
    };
    sandbox.add_portal(portal).unwrap();
    let page: PageConfig =
        serde_json::from_value(json!({"token": MANYCHAT_TOKEN, "custom_fields": [{"name": "hubspot_contact_id"}]})).unwrap();
    sandbox.add_page(page).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let router = sandbox.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("state.db").display())).await.unwrap();
    World { sandbox, base_url, store, _dir: dir }
}

fn welcome(message_tag: Option<&str>) -> Flow {
    let steps = json!([
        {"hubspot.get": {"properties": ["firstname", "lastname", "email", "phone"]}},
        {"phone": ["phone"]},
        {"name": ["firstname", "lastname"]},
        {"require_any": ["phone", "email"]},
        {"manychat.find_or_create_subscriber": {"whatsapp_phone": "phone", "email": "email", "first_name": "firstname", "last_name": "lastname"}},
        {"manychat.set_custom_fields": {"hubspot_contact_id": "{{ event.objectId }}"}},
        {"manychat.send_content": {"messages": ["¡Hola {{ contact.firstname | default('amigo') }}! Bienvenido."], "message_tag": message_tag}}
    ]);
    Flow {
        name: "lead-welcome".into(),
        source: "hubspot".into(),
        events: vec!["contact.creation".into()],
        filter: None,
        steps: serde_json::from_value(steps).unwrap(),
        max_attempts: 3,
        ordered: false,
    }
}

fn workers(world: &World, flow: Flow) -> Workers {
    let hubspot = HubSpotApi::new(&HubSpotProfile::new(&world.base_url, HUBSPOT_TOKEN)).unwrap();
    let manychat = ManyChatApi::new(&ManyChatProfile::new(&world.base_url, MANYCHAT_TOKEN)).unwrap();
    let engine = Engine::new(vec![flow], Connections { hubspot: Some(hubspot), manychat: Some(manychat), ..Default::default() }).unwrap();
    let mut config = WorkerConfig::new("test-worker");
    config.retry_base = std::time::Duration::ZERO;
    Workers::new(world.store.clone(), Arc::new(engine), config, Arc::default())
}

/// Creates a contact in the sandbox's HubSpot and returns its id.
async fn contact(world: &World, properties: Value) -> u64 {
    let response = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/contacts", world.base_url))
        .bearer_auth(HUBSPOT_TOKEN)
        .json(&json!({"properties": properties}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap()
}

fn creation(id: u64, event_id: u64) -> NewEvent {
    let payload = json!({"eventId": event_id, "portalId": 62515, "subscriptionType": "contact.creation", "objectId": id, "occurredAt": 1_764_000_000_000u64 + id});
    NewEvent {
        source: "hubspot".into(),
        dedupe_key: format!("hubspot:62515:contact.creation:{id}::{event_id}"),
        event_type: "contact.creation".into(),
        payload: payload.to_string(),
        occurred_at: None,
        object_key: Some(format!("62515:{id}")),
        trace_parent: None,
    }
}

async fn drain(workers: &Workers) {
    while workers.run_once().await.unwrap() > 0 {}
}

fn sent(world: &World) -> Vec<(u64, String)> {
    world.sandbox.delivered().iter().map(|d| (d.subscriber_id, d.texts.join("|"))).collect()
}

#[tokio::test]
async fn leads_are_welcomed_once_each() {
    let world = world().await;
    let ana = contact(&world, json!({"firstname": "  ana   maría ", "lastname": "Mora", "phone": "8888-7777"})).await;
    let luis = contact(&world, json!({"email": "luis@example.com", "phone": "12"})).await;
    world.store.inbox_accept(&[creation(ana, 1), creation(luis, 2)]).await.unwrap();
    let workers = workers(&world, welcome(Some("ACCOUNT_UPDATE")));
    drain(&workers).await;

    let messages = sent(&world);
    let texts: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(texts, ["¡Hola ana maría! Bienvenido.", "¡Hola amigo! Bienvenido."]);
    let ana_subscriber = world.sandbox.subscriber(MANYCHAT_TOKEN, messages[0].0).unwrap();
    assert_eq!(ana_subscriber["whatsapp_phone"], "+50688887777", "the phone was normalized");
    assert_eq!(ana_subscriber["custom_fields"][0]["value"], ana.to_string());
    // the field set right before the message travelled in it: no setCustomFields call
    assert!(world.sandbox.ledger().calls("/setCustomFields").is_empty() && world.sandbox.ledger().calls("/sendContent").len() == 2);
    assert_eq!(ana_subscriber["tags"][0]["name"], "lead-welcome-sent", "the message marked its subscriber");
    let luis_subscriber = world.sandbox.subscriber(MANYCHAT_TOKEN, messages[1].0).unwrap();
    assert_eq!(
        (luis_subscriber["email"].as_str(), &luis_subscriber["whatsapp_phone"]),
        (Some("luis@example.com"), &Value::Null),
        "an invalid phone is dropped"
    );

    // the same person again under another dedupe key (a backfill, a second creation event):
    // the mark is there, nothing is sent
    world.store.inbox_accept(&[creation(ana, 99)]).await.unwrap();
    drain(&workers).await;
    assert_eq!(sent(&world).len(), 2);
    let runs = workers.runs.snapshot();
    assert!(runs.contains(&("lead-welcome".into(), "sent", 2)) && runs.contains(&("lead-welcome".into(), "already_sent", 1)), "{runs:?}");
    // the claimed events' contacts came in one batch read (and the cache), not a GET each
    let ledger = world.sandbox.ledger();
    assert_eq!(ledger.calls("/batch/read").len(), 1);
    assert!(!ledger.requests.iter().any(|r| r.method == "GET" && r.path.starts_with("/crm/")), "{:?}", ledger.requests);
    let done = world.store.inbox_depth().await.unwrap();
    assert_eq!(done.iter().map(|d| (d.status.as_str(), d.events)).collect::<Vec<_>>(), [("done", 3)]);
}

#[tokio::test]
async fn a_crash_between_send_and_commit_does_not_send_twice() {
    let world = world().await;
    let id = contact(&world, json!({"firstname": "Eva", "email": "eva@example.com"})).await;
    world.store.inbox_accept(&[creation(id, 5)]).await.unwrap();
    let flow = welcome(Some("ACCOUNT_UPDATE"));
    let workers = workers(&world, flow.clone());
    // a worker claims the event and sends, then dies before recording the outcome
    let claimed = world.store.inbox_claim("dead-worker", std::time::Duration::from_millis(1), 10).await.unwrap();
    let hubspot = HubSpotApi::new(&HubSpotProfile::new(&world.base_url, HUBSPOT_TOKEN)).unwrap();
    let manychat = ManyChatApi::new(&ManyChatProfile::new(&world.base_url, MANYCHAT_TOKEN)).unwrap();
    let engine =
        Engine::new(vec![flow.clone()], Connections { hubspot: Some(hubspot), manychat: Some(manychat), ..Default::default() }).unwrap();
    let payload: Value = serde_json::from_str(&claimed[0].payload).unwrap();
    assert_eq!(engine.run(&flow, payload).await.unwrap().name(), "sent");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // its lease runs out; another worker takes the event over and finds the mark
    drain(&workers).await;
    assert_eq!(sent(&world).len(), 1, "one message, not two");
    assert_eq!(workers.runs.snapshot(), [("lead-welcome".to_owned(), "already_sent", 1)]);
}

#[tokio::test]
async fn data_errors_are_dead_letters_and_a_replay_sends_once() {
    let world = world().await;
    let nobody = contact(&world, json!({"firstname": "Sin Datos"})).await;
    let stranger = contact(&world, json!({"firstname": "Leo", "email": "leo@example.com"})).await;
    world.store.inbox_accept(&[creation(nobody, 1), creation(stranger, 2)]).await.unwrap();
    // without a message tag, a subscriber who never wrote cannot be reached: ManyChat's 3011
    let untagged = workers(&world, welcome(None));
    drain(&untagged).await;
    assert!(sent(&world).is_empty());

    let filter = DeadLetterFilter { pipeline: Some("lead-welcome".into()), ..Default::default() };
    let letters = world.store.dead_letters(&filter).await.unwrap();
    let reasons: Vec<(&str, &str, i64)> = letters.iter().map(|l| (l.rule.as_str(), l.class.as_str(), l.attempts)).collect();
    assert_eq!(reasons, [("require_any", "data", 1), ("manychat.send_content", "data", 1)], "dead at once, not retried");
    assert!(letters[0].message.contains("none of phone, email"), "{}", letters[0].message);
    assert!(letters[1].message.contains("code 3011"), "{}", letters[1].message);

    // the fix: the flow now sends with a message tag; replaying the 3011 sends once
    let fixed = workers(&world, welcome(Some("ACCOUNT_UPDATE")));
    let key = letters[1].record_key.clone();
    assert_eq!(world.store.inbox_requeue("lead-welcome", &[key.clone(), key]).await.unwrap(), 1);
    drain(&fixed).await;
    drain(&fixed).await;
    assert_eq!(sent(&world).iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["¡Hola Leo! Bienvenido."]);
    let open = DeadLetterFilter { status: Some("open".into()), ..filter };
    assert_eq!(world.store.dead_letters(&open).await.unwrap().len(), 1, "the lead without phone or email stays open");
}

/// RELIABILITY row 12: property changes of several objects, five each, arrive shuffled and are
/// claimed in small rounds; an `ordered` flow ends with each object's latest value, and every
/// event older than one already handled is skipped and audited `skipped_stale`.
#[tokio::test]
async fn an_ordered_flow_ends_with_the_latest_change_of_each_object_and_audits_stale_ones() {
    const OBJECTS: u64 = 12;
    const UPDATES: u64 = 5;
    for seed in 1..=3 {
        let world = world().await;
        let steps = json!([
            {"hubspot.get": {"properties": ["mobilephone"]}},
            {"phone": ["mobilephone"]},
            {"manychat.find_or_create_subscriber": {"whatsapp_phone": "mobilephone"}},
            {"manychat.set_custom_fields": {"hubspot_contact_id": "{{ event.propertyValue }}"}}
        ]);
        let flow = Flow {
            name: "sync-lastname".into(),
            source: "hubspot".into(),
            events: vec!["contact.propertyChange".into()],
            filter: None,
            steps: serde_json::from_value(steps).unwrap(),
            max_attempts: 3,
            ordered: true,
        };
        let workers = workers(&world, flow);
        let phone = |object: u64| format!("8{:07}", 2_000_000 + object);
        let mut events: Vec<NewEvent> = (0..OBJECTS)
            .flat_map(|object| (0..UPDATES).map(move |update| (object, update)))
            .map(|(object, update)| {
                let occurred = 1_764_000_000_000i64 + (update * 1_000 + object) as i64;
                let payload = json!({"eventId": object * 10 + update, "portalId": 62515, "objectId": 5_000 + object, "occurredAt": occurred,
                                     "subscriptionType": "contact.propertyChange", "propertyName": "lastname", "propertyValue": format!("v{update}"),
                                     "properties": {"mobilephone": phone(object)}});
                NewEvent {
                    source: "hubspot".into(),
                    dedupe_key: format!("hubspot:62515:contact.propertyChange:{object}:lastname:{update}"),
                    event_type: "contact.propertyChange".into(),
                    payload: payload.to_string(),
                    occurred_at: chrono::DateTime::from_timestamp_millis(occurred),
                    object_key: Some(format!("62515:{}", 5_000 + object)),
                    trace_parent: None,
                }
            })
            .collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut events);
        // deliveries of a few events, each followed by a worker round: later rounds meet events
        // older than ones already run
        let mut rest = &events[..];
        while !rest.is_empty() {
            let size = rng.usize(1..=8).min(rest.len());
            world.store.inbox_accept(&rest[..size]).await.unwrap();
            rest = &rest[size..];
            workers.run_once().await.unwrap();
        }
        drain(&workers).await;

        let mut latest = std::collections::BTreeMap::new();
        for n in 1..=OBJECTS {
            let subscriber = world.sandbox.subscriber(MANYCHAT_TOKEN, 880_001 * 1_000_000 + n).unwrap();
            let field = subscriber["custom_fields"].as_array().unwrap().iter().find(|f| f["name"] == "hubspot_contact_id").unwrap();
            latest.insert(subscriber["whatsapp_phone"].as_str().unwrap().to_owned(), field["value"].clone());
        }
        assert_eq!(latest.len() as u64, OBJECTS, "one subscriber per object (seed {seed})");
        assert!(latest.values().all(|v| v == "v4"), "the latest change wins (seed {seed}): {latest:?}");
        let runs = workers.runs.snapshot();
        let count = |outcome: &str| runs.iter().find(|(f, o, _)| f == "sync-lastname" && *o == outcome).map_or(0, |r| r.2);
        let filter = syncline_store::EventFilter { kind: "skipped_stale".into(), limit: 100_000, ..Default::default() };
        let audited = world.store.find_events(&filter).await.unwrap();
        assert!(audited.iter().all(|e| e.kind == "flow.skipped_stale" && e.detail["flow"] == "sync-lastname"));
        assert_eq!(audited.len() as u64, count("skipped_stale"), "every skip is audited (seed {seed})");
        assert_eq!(count("done") + count("skipped_stale"), OBJECTS * UPDATES, "every event handled once (seed {seed}): {runs:?}");
        assert!(count("skipped_stale") > 0, "shuffled deliveries meet stale events (seed {seed})");
    }
}

/// Log lines written into a shared buffer, one JSON object each, with the spans they were
/// written in.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Two objects' events run concurrently (each object's in order); every line logged while an
/// event runs — inside the engine too — carries that event's span, never the other object's.
#[tokio::test]
async fn every_log_line_carries_its_own_events_span() {
    let world = world().await;
    // each contact's phone problem is in its own field, so a line names its object by itself
    let ana = contact(&world, json!({"firstname": "Ana", "email": "ana@example.com", "phone": "12"})).await;
    let ben = contact(&world, json!({"firstname": "Ben", "email": "ben@example.com", "mobilephone": "34"})).await;
    let events: Vec<NewEvent> = (0..3).flat_map(|n| [creation(ana, 10 + n), creation(ben, 20 + n)]).collect();
    world.store.inbox_accept(&events).await.unwrap();
    let mut flow = welcome(None);
    flow.steps = serde_json::from_value(json!([
        {"hubspot.get": {"properties": ["firstname", "email", "phone", "mobilephone"]}},
        {"phone": ["phone", "mobilephone"]},
        {"manychat.find_or_create_subscriber": {"email": "email", "first_name": "firstname"}},
        {"manychat.send_content": {"messages": ["Hola {{ contact.firstname }}"], "message_tag": "ACCOUNT_UPDATE"}}
    ]))
    .unwrap();
    let workers = workers(&world, flow);

    // Callsites cache whether any subscriber wants them. Tests on other threads of this process
    // log with no subscriber, and one of them can cache "never" for a line this test waits for,
    // racing the rebuild `set_default` asks for; a global subscriber that wants every line (and
    // writes it nowhere) keeps each callsite enabled, so the scoped one below sees them all.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG).with_writer(std::io::sink).finish(),
    );
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    drain(&workers).await;
    drop(guard);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let flow_span = |line: &Value| line["spans"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "flow")).cloned();
    let object_of = |span: &Value| span["object"].as_str().unwrap().rsplit(':').next().unwrap().parse::<u64>().unwrap();
    let mut handled = Vec::new();
    let mut dropped = 0;
    for line in &lines {
        let message = line["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("dropped a phone") {
            dropped += 1;
            let span = flow_span(line).unwrap_or_else(|| panic!("a line of the engine without its event's span: {line}"));
            let owner = if line["fields"]["field"] == "phone" { ana } else { ben };
            assert_eq!(object_of(&span), owner, "{line}");
        }
        // the line that ends each event: its outcome (sent, already_sent, retried, dead …)
        if line["fields"]["outcome"].is_string() {
            let span = flow_span(line).unwrap_or_else(|| panic!("{line}"));
            handled.push((object_of(&span), span["event"].as_u64().unwrap()));
        }
    }
    assert_eq!(dropped, 6, "each event dropped its contact's phone once:\n{text}");
    handled.sort_unstable();
    // the dedupe key names the object: hubspot:<portal>:contact.creation:<object>::<event>
    let rows = world.store.inbox_events(None, None, None, 100).await.unwrap();
    let mut expected: Vec<(u64, u64)> =
        rows.iter().map(|e| (e.dedupe_key.split(':').nth(3).unwrap().parse().unwrap(), e.id as u64)).collect();
    expected.sort_unstable();
    assert_eq!(handled, expected, "each event's own line, in its own span:\n{text}");
}
