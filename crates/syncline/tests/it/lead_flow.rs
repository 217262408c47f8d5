//! The lead → ManyChat flow as a user runs it (`examples/lead-welcome.yaml`): the sandbox's
//! HubSpot holds the new contacts, `syncline serve` receives their signed `contact.creation`
//! webhooks with duplicates and in shuffled order, is SIGKILLed several times while it works and
//! started again, and the sandbox's ManyChat ledger must show exactly one welcome per contact,
//! with the right text.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline_sandbox::{PageConfig, PortalConfig, Sandbox, Tier};
use syncline_server::signature::sign;

use crate::{bin, examples};

const SECRET: &str = "lead-flow-secret";
const HUBSPOT_TOKEN: &str = "pat-lead-flow";
const MANYCHAT_TOKEN: &str = "990001:lead-flow";
const CONTACTS: usize = 200;
const KILLS: usize = 3;

/// The sandbox, served from this test process on a port of its own.
fn sandbox() -> (Sandbox, String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sandbox = Sandbox::new();
    let portal = PortalConfig {
        token: HUBSPOT_TOKEN.into(),
        tier: Tier::LimitIncrease,
        portal_id: Some(62515),
        properties: Default::default(),
        custom_objects: Vec::new(),
        webhooks: None,
    };
    sandbox.add_portal(portal).unwrap();
    // the leads wrote to the page on WhatsApp before (click-to-WhatsApp ads): they are
    // subscribers already, inside the 24-hour window
    let subscribers: Vec<Value> = (0..CONTACTS)
        .map(
            |i| json!({"first_name": format!("Lead{i}"), "whatsapp_phone": format!("+506{}", phone(i)), "last_interaction_hours_ago": 1.0}),
        )
        .collect();
    let page: PageConfig = serde_json::from_value(
        json!({"token": MANYCHAT_TOKEN, "custom_fields": [{"name": "hubspot_contact_id"}], "subscribers": subscribers}),
    )
    .unwrap();
    sandbox.add_page(page).unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = sandbox.router();
    runtime.spawn(async move { axum::serve(listener, router).await });
    (sandbox, address, runtime)
}

/// A name without digits (names are sanitized): `ab`, `ac`… by number.
fn name(i: usize) -> String {
    let letter = |n: usize| char::from(b'a' + (n % 26) as u8);
    format!("{}{}", letter(i / 26), letter(i))
}

fn phone(i: usize) -> String {
    format!("8{:07}", 1_000_000 + i)
}

/// `syncline serve` on the example flow, pointed at the sandbox; returns it and its address.
fn serve(dir: &std::path::Path, sandbox: &str) -> (Child, String) {
    let url = format!("http://{sandbox}");
    let mut child = bin()
        .current_dir(dir)
        .env("HUBSPOT_APP_SECRET", SECRET)
        .env("HUBSPOT_URL", &url)
        .env("HUBSPOT_TOKEN", HUBSPOT_TOKEN)
        .env("MANYCHAT_URL", &url)
        .env("MANYCHAT_TOKEN", MANYCHAT_TOKEN)
        .env("SERVE_BIND", "127.0.0.1:0")
        .env("SERVE_LEASE", "2s")
        .env("LEAD_WELCOME_STATE", format!("sqlite://{}", dir.join("state.db").display()))
        .env("RUST_LOG", "warn")
        .args(["--config", examples().join("lead-welcome.yaml").to_str().unwrap(), "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let address = banner.strip_prefix("serving on http://").and_then(|r| r.split_whitespace().next()).map(str::to_owned);
    let address = address.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("unexpected banner {banner:?}")
    });
    (child, address)
}

/// Posts a delivery signed v1 and v3 as HubSpot does; false when serve did not answer 200.
fn deliver(address: &str, events: &[Value]) -> bool {
    let body = serde_json::to_vec(events).unwrap();
    let url = format!("http://{address}/webhooks/hubspot");
    let now = chrono::Utc::now().timestamp_millis();
    let headers = [
        ("X-HubSpot-Signature", sign::hubspot_v1(SECRET, &body)),
        ("X-HubSpot-Signature-Version", "v1".to_owned()),
        ("X-HubSpot-Signature-v3", sign::hubspot_v3(SECRET, "POST", &url, &body, now)),
        ("X-HubSpot-Request-Timestamp", now.to_string()),
        ("Content-Type", "application/json".to_owned()),
    ];
    // a killed server refuses the connection or drops it: HubSpot retries, and so do we
    let attempt = std::panic::catch_unwind(|| crate::sandbox::request(address, "POST", "/webhooks/hubspot", &headers, &body));
    attempt.is_ok_and(|(status, _)| status.contains(" 200"))
}

#[test]
fn every_lead_is_welcomed_exactly_once_through_kills_duplicates_and_shuffling() {
    let (sandbox, sandbox_address, runtime) = sandbox();
    let mut rng = fastrand::Rng::with_seed(2026);

    // the new contacts, created in HubSpot in batches of 100
    let mut ids = Vec::new();
    for chunk in (0..CONTACTS).collect::<Vec<_>>().chunks(100) {
        let inputs: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"properties": {"firstname": format!("  lead   {} ", name(i)), "mobilephone": phone(i)}}))
            .collect();
        let (status, body) = crate::sandbox::http(
            &sandbox_address,
            "POST",
            "/crm/v3/objects/contacts/batch/create",
            HUBSPOT_TOKEN,
            &json!({"inputs": inputs}).to_string(),
        );
        assert!(status.contains("201"), "{status} {body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        ids.extend(created["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().parse::<u64>().unwrap()));
    }
    ids.sort_unstable();

    // their creation events, 20 % of them twice (a redelivery with a higher attemptNumber),
    // shuffled, in deliveries of 1 to 100
    let mut events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| json!({"eventId": 5_000 + n, "subscriptionId": 7, "portalId": 62515, "appId": 1, "occurredAt": 1_764_000_000_000u64 + n as u64,
                               "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": id, "changeSource": "CRM", "changeFlag": "NEW"}))
        .collect();
    let duplicates: Vec<Value> = events
        .iter()
        .filter(|_| rng.f64() < 0.2)
        .map(|e| {
            json!(
                e.as_object()
                    .unwrap()
                    .clone()
                    .into_iter()
                    .chain([("attemptNumber".to_owned(), json!(1))])
                    .collect::<serde_json::Map<_, _>>()
            )
        })
        .collect();
    events.extend(duplicates);
    rng.shuffle(&mut events);
    let mut deliveries = Vec::new();
    let mut rest = &events[..];
    while !rest.is_empty() {
        let size = rng.usize(1..=100).min(rest.len());
        deliveries.push(rest[..size].to_vec());
        rest = &rest[size..];
    }

    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut address) = serve(dir.path(), &sandbox_address);
    let kill_after: Vec<usize> = (0..KILLS).map(|k| (k + 1) * deliveries.len() / (KILLS + 1)).collect();
    let mut kills = 0;
    for (n, delivery) in deliveries.iter().enumerate() {
        while !deliver(&address, delivery) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if kill_after.contains(&n) {
            // let it get into its flows, then kill it without warning and start it again
            std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            (child, address) = serve(dir.path(), &sandbox_address);
        }
    }
    assert_eq!(kills, KILLS);

    // wait until every contact has its welcome, then a little longer for any second one
    let deadline = Instant::now() + Duration::from_secs(120);
    while sandbox.delivered().len() < CONTACTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();

    let delivered = sandbox.delivered();
    let mut per_subscriber: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for message in &delivered {
        per_subscriber.entry(message.subscriber_id).or_default().push(message.texts.join("|"));
    }
    let twice: Vec<_> = per_subscriber.iter().filter(|(_, m)| m.len() > 1).collect();
    assert!(twice.is_empty(), "greeted more than once: {twice:?}");
    assert_eq!(delivered.len(), CONTACTS, "one welcome per contact");
    for (i, (subscriber, messages)) in per_subscriber.iter().enumerate() {
        let info = sandbox.subscriber(MANYCHAT_TOKEN, *subscriber).unwrap();
        let number: usize = info["whatsapp_phone"].as_str().unwrap().trim_start_matches("+506").parse().unwrap();
        let expected = format!(
            "¡Hola lead {}! Gracias por tu interés. Te escribimos por aquí para ayudarte con tu afiliación.",
            name(number - 81_000_000)
        );
        assert_eq!(messages[0], expected, "message {i}");
        assert_eq!(info["tags"][0]["name"], "lead-welcome-sent");
    }
    // a restarted process does not know what the killed one spent in the current window, so a
    // few 429s right after a restart are expected (and retried); none otherwise
    let limited: Vec<String> = sandbox.ledger().requests.iter().filter(|r| r.status == 429).map(|r| r.path.clone()).collect();
    assert!(limited.len() <= 5 * KILLS, "429s beyond restarts: {limited:?}");
    drop(runtime);
}
