//! The lead → ManyChat flow as a user runs it (`examples/lead-welcome.yaml`): contacts are
//! created in the sandbox's HubSpot, whose app posts their signed `contact.creation` webhooks to
//! `syncline serve` with 20 % duplicates and in shuffled order, retrying while serve is down;
//! serve is SIGKILLed at random moments while it works and started again; the sandbox's ManyChat
//! ledger must show exactly one welcome per contact, with the right text.
//!
//! The full scale (5,000 contacts, 5 kills) takes about four minutes at ManyChat's 25
//! sends/s; CI runs 200 contacts and 3 kills, and the full run is
//! `SYNCLINE_LEAD_FLOW_CONTACTS=5000 SYNCLINE_LEAD_FLOW_KILLS=5 cargo test --release -p syncline --test it lead_flow`.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline_sandbox::{PageConfig, PortalConfig, Sandbox, Tier, WebhookSettings};

use crate::{bin, examples};

const SECRET: &str = "lead-flow-secret";
const HUBSPOT_TOKEN: &str = "pat-lead-flow";
const MANYCHAT_TOKEN: &str = "990001:lead-flow";

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The HubSpot app's webhook settings: `contact.creation` to `target`, plus `knobs`.
fn webhooks(target: &str, knobs: Value) -> WebhookSettings {
    let mut settings =
        json!({"target_url": target, "client_secret": SECRET, "app_id": 1, "subscriptions": [{"eventType": "contact.creation"}]});
    settings.as_object_mut().unwrap().extend(knobs.as_object().unwrap().clone());
    serde_json::from_value(settings).unwrap()
}

/// The sandbox, served from this test process on a port of its own: a HubSpot portal whose app
/// delivers with `webhooks`, and a ManyChat page where `contacts` leads are subscribers.
fn sandbox(contacts: usize, webhooks: WebhookSettings) -> (Sandbox, String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sandbox = Sandbox::new();
    let portal = PortalConfig {
        token: HUBSPOT_TOKEN.into(),
        tier: Tier::LimitIncrease,
        portal_id: Some(62515),
        properties: Default::default(),
        custom_objects: Vec::new(),
        webhooks: Some(webhooks),
    };
    sandbox.add_portal(portal).unwrap();
    // the leads wrote to the page on WhatsApp before (click-to-WhatsApp ads): they are
    // subscribers already, inside the 24-hour window
    let subscribers: Vec<Value> = (0..contacts)
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
    runtime.spawn(sandbox.clone().serve(listener));
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

/// `syncline` on the example flow, its state in `dir`, serving at `bind`, pointed at the sandbox.
fn syncline(dir: &std::path::Path, sandbox: &str, bind: &str) -> std::process::Command {
    let url = format!("http://{sandbox}");
    let mut command = bin();
    command
        .current_dir(dir)
        .env("HUBSPOT_APP_SECRET", SECRET)
        .env("HUBSPOT_BASE_URL", &url)
        .env("HUBSPOT_TOKEN", HUBSPOT_TOKEN)
        .env("MANYCHAT_BASE_URL", &url)
        .env("MANYCHAT_TOKEN", MANYCHAT_TOKEN)
        .env("SERVE_BIND", bind)
        .env("SERVE_LEASE", "2s")
        .env("SYNCLINE_STATE", format!("sqlite://{}", dir.join("state.db").display()))
        // everything syncline logs, to check no secret is among it (RELIABILITY row 24)
        .env("SYNCLINE_LOG", "debug")
        .args(["--config", examples().join("lead-welcome.yaml").to_str().unwrap()]);
    command
}

/// `syncline serve` (see `syncline`), once it listens.
fn serve(dir: &std::path::Path, sandbox: &str, bind: &str) -> Child {
    let log = std::fs::File::options().create(true).append(true).open(dir.join("serve.log")).unwrap();
    let (child, address) = crate::start_serve(syncline(dir, sandbox, bind).arg("serve").stderr(log));
    assert_eq!(address, bind);
    child
}

/// Creates contacts number `range` in HubSpot, in batches of 100; returns their ids.
fn create_contacts(sandbox: &str, range: std::ops::Range<usize>) -> Vec<u64> {
    let mut ids = Vec::new();
    for chunk in range.collect::<Vec<_>>().chunks(100) {
        let inputs: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"properties": {"firstname": format!("  lead   {} ", name(i)), "mobilephone": phone(i)}}))
            .collect();
        let body = json!({"inputs": inputs}).to_string();
        let (status, body) = crate::sandbox::http(sandbox, "POST", "/crm/v3/objects/contacts/batch/create", HUBSPOT_TOKEN, &body);
        assert!(status.contains("201"), "{status} {body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        ids.extend(created["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().parse::<u64>().unwrap()));
    }
    ids
}

/// Messages per ManyChat subscriber, asserting each text is the welcome of the subscriber's
/// contact and no one got two.
fn welcomed(sandbox: &Sandbox) -> usize {
    let delivered = sandbox.delivered();
    let mut per_subscriber: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for message in &delivered {
        per_subscriber.entry(message.subscriber_id).or_default().push(message.texts.join("|"));
    }
    let twice: Vec<_> = per_subscriber.iter().filter(|(_, m)| m.len() > 1).collect();
    assert!(twice.is_empty(), "greeted more than once: {twice:?}");
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
    delivered.len()
}

/// Waits until `n` welcomes were sent (or a deadline), then a little longer for any extra one.
fn wait_for_welcomes(sandbox: &Sandbox, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 10);
    while sandbox.delivered().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
}

/// With OTLP on, each HubSpot delivery is a `webhook` trace that the flow runs of its events
/// continue (stored through the inbox), with the flows' API calls under them; no secret leaves.
#[test]
fn a_deliverys_trace_continues_into_its_flow_events() {
    let otlp = crate::traces::receiver();
    let bind = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (sandbox, address, _runtime) = sandbox(3, webhooks(&format!("http://{bind}/webhooks/hubspot"), json!({})));
    let dir = tempfile::tempdir().unwrap();
    let mut command = syncline(dir.path(), &address, &bind);
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url).env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
    let (mut child, _) = crate::start_serve(command.arg("serve").stderr(std::process::Stdio::null()));
    create_contacts(&address, 0..3);
    wait_for_welcomes(&sandbox, 3);
    // SIGTERM: serve ends cleanly and flushes its spans
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let spans = otlp.spans();
    let deliveries: Vec<_> = spans.iter().filter(|s| s.name == "webhook").collect();
    let flows: Vec<_> = spans.iter().filter(|s| s.name == "flow").collect();
    assert!(!deliveries.is_empty(), "{spans:#?}");
    assert_eq!(flows.len(), 3, "one flow span per event: {flows:#?}");
    for flow in &flows {
        let delivery = deliveries.iter().find(|d| d.id == flow.parent).unwrap_or_else(|| panic!("a flow under its delivery: {flow:?}"));
        assert_eq!(flow.trace, delivery.trace);
        assert_eq!(delivery.attributes.get("source").map(String::as_str), Some("hubspot"));
        assert_eq!(flow.attributes.get("flow").map(String::as_str), Some("lead-welcome"));
    }
    // the flows' ManyChat sends are in the same traces, under their flow
    let sends: Vec<_> =
        spans.iter().filter(|s| s.name == "api_call" && s.attributes.get("service").is_some_and(|v| v == "ManyChat")).collect();
    assert!(!sends.is_empty());
    let by_id: BTreeMap<&str, &crate::traces::Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    for send in &sends {
        let mut at = *send;
        while let Some(parent) = by_id.get(at.parent.as_str()).filter(|p| p.name != "flow") {
            at = parent;
        }
        assert!(flows.iter().any(|f| f.id == at.parent), "a send under a flow: {send:?}");
    }
    let exported = otlp.bodies.lock().unwrap().iter().map(ToString::to_string).collect::<String>();
    for secret in [SECRET, HUBSPOT_TOKEN, MANYCHAT_TOKEN] {
        assert!(!exported.contains(secret), "{secret} was exported");
    }
}

#[test]
fn every_lead_is_welcomed_exactly_once_through_kills_duplicates_and_shuffling() {
    let contacts = scale("SYNCLINE_LEAD_FLOW_CONTACTS", 200);
    let kills = scale("SYNCLINE_LEAD_FLOW_KILLS", 3);
    // serve keeps one address across restarts, as an app's target URL does
    let bind = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let knobs = json!({
        "duplicate": 0.2, "shuffle": true, "seed": 2026,
        // while serve is down deliveries are refused; retry soon and long enough to outlast it
        "retry_delay_ms": 250, "max_attempts": 30,
    });
    let (sandbox, sandbox_address, runtime) = sandbox(contacts, webhooks(&format!("http://{bind}/webhooks/hubspot"), knobs));
    let mut rng = fastrand::Rng::with_seed(2026);
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), &sandbox_address, &bind);

    // the new contacts, created in HubSpot in batches of 100; the app delivers their events
    let ids = create_contacts(&sandbox_address, 0..contacts);

    // kill it without warning at random moments while it works, and start it again
    let deadline = Instant::now() + Duration::from_secs(60 + contacts as u64 / 10);
    for k in 0..kills {
        let threshold = (k + 1) * contacts / (kills + 1) + rng.usize(0..=contacts / (4 * (kills + 1)));
        while sandbox.delivered().len() < threshold && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
        child.kill().unwrap();
        child.wait().unwrap();
        // down for a moment: HubSpot's deliveries in that time are refused and retried
        std::thread::sleep(Duration::from_millis(rng.u64(100..1_000)));
        child = serve(dir.path(), &sandbox_address, &bind);
    }

    assert_eq!(ids.len(), contacts);
    wait_for_welcomes(&sandbox, contacts);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(welcomed(&sandbox), contacts, "one welcome per contact");

    // a restarted process does not know what the killed one spent in the current window, so a
    // few 429s right after a restart are expected (and retried); none otherwise
    let limited: Vec<String> = sandbox.ledger().requests.iter().filter(|r| r.status == 429).map(|r| r.path.clone()).collect();
    assert!(limited.len() <= 5 * kills, "429s beyond restarts: {limited:?}");
    let counts = sandbox.ledger().webhook_counts;
    assert!(counts.duplicated > 0 && counts.given_up == 0 && counts.dropped == 0, "{counts:?}");
    eprintln!("lead_flow: {contacts} contacts, {kills} kills, {counts:?}, {} × 429", limited.len());
    drop(runtime);
}

/// Done-when 5: serve is down while 500 contacts are created and HubSpot gives up on their
/// webhooks; `backfill --since` enqueues exactly those (the contacts welcomed before by webhook
/// are already in the inbox under the same keys), serve welcomes them once, and a second
/// backfill enqueues and sends nothing.
#[test]
fn backfill_delivers_what_was_missed_while_serve_was_down_and_nothing_twice() {
    const BEFORE: usize = 20;
    const MISSED: usize = 500;
    let bind = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // HubSpot tries each delivery once here: a refused one is lost, as after its 24 h of retries
    let knobs = json!({"max_attempts": 1});
    let (sandbox, sandbox_address, runtime) = sandbox(BEFORE + MISSED, webhooks(&format!("http://{bind}/webhooks/hubspot"), knobs));
    let dir = tempfile::tempdir().unwrap();
    let since = chrono::Utc::now().to_rfc3339();

    let mut child = serve(dir.path(), &sandbox_address, &bind);
    create_contacts(&sandbox_address, 0..BEFORE);
    wait_for_welcomes(&sandbox, BEFORE);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(welcomed(&sandbox), BEFORE);

    create_contacts(&sandbox_address, BEFORE..BEFORE + MISSED);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox.ledger().webhook_counts.given_up < MISSED as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sandbox.ledger().webhook_counts.given_up, MISSED as u64, "HubSpot lost the webhooks sent while serve was down");

    let said = std::cell::RefCell::new(String::new());
    let backfill = |extra: &[&str]| {
        let output = syncline(dir.path(), &sandbox_address, &bind)
            .args(["backfill", "lead-welcome", "--since", &since])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stdout}{stderr}");
        said.borrow_mut().push_str(&format!("{stdout}{stderr}"));
        stdout
    };
    let dry = backfill(&["--dry-run"]);
    assert!(dry.contains(&format!("{} objects", BEFORE + MISSED)) && dry.contains("nothing stored"), "{dry}");
    let first = backfill(&[]);
    let expected = format!("{} objects created from", BEFORE + MISSED);
    assert!(first.contains(&expected) && first.contains(&format!("{MISSED} enqueued, {BEFORE} already in the inbox")), "{first}");

    let mut child = serve(dir.path(), &sandbox_address, &bind);
    wait_for_welcomes(&sandbox, BEFORE + MISSED);
    assert_eq!(welcomed(&sandbox), BEFORE + MISSED, "each missed lead welcomed once, the others not again");
    // backfilled events carry the contact's properties: no HubSpot read per event
    let reads = sandbox.ledger().requests.iter().filter(|r| r.path.starts_with("/crm/v3/objects/contacts") && r.method == "GET").count()
        + sandbox.ledger().calls("/batch/read").len();
    assert!(reads <= BEFORE, "{reads} HubSpot reads for {BEFORE} webhook events and {MISSED} backfilled ones");

    // what the second serve did, as Prometheus reads it; and a forged delivery is counted
    let forged = crate::sandbox::request(&bind, "POST", "/webhooks/hubspot", &[("X-HubSpot-Signature", "00".into())], b"[]");
    assert!(forged.0.contains(" 401"), "{forged:?}");
    let (status, ready) = crate::sandbox::request(&bind, "GET", "/readyz", &[], b"");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert!(status.contains(" 200"), "{status} {ready}");
    // paced at 25/s, a send meets a 429 only when this shared machine delays some sends into
    // the next ones' second; /readyz must then say so, and nothing else
    let refused = sandbox.ledger().requests.iter().filter(|r| r.path.ends_with("/sendContent") && r.status == 429).count();
    let send_content = &ready["dependencies"]["manychat sendContent"];
    if refused == 0 {
        assert_eq!(send_content["status"], "healthy", "{ready}");
    } else {
        assert_eq!(send_content["status"], "degraded", "{ready}");
        assert_eq!(send_content["reasons"], json!([format!("{refused} × 429 in the last 5 minutes")]), "{ready}");
    }
    assert_eq!(ready["dependencies"]["hubspot"]["status"], "healthy", "{ready}");
    let (status, text) = crate::sandbox::request(&bind, "GET", "/metrics", &[], b"");
    assert!(status.contains(" 200"), "{status}");
    let sent = metric(&text, "manychat_api_requests_total", &[("operation", "sendContent"), ("status", "200")]);
    assert_eq!(sent, MISSED as f64, "{text}");
    assert_eq!(metric(&text, "syncline_flow_runs_total", &[("flow", "lead-welcome"), ("outcome", "sent")]), MISSED as f64);
    let timed = metric(&text, "syncline_flow_duration_seconds_count", &[("flow", "lead-welcome")]);
    assert!(timed >= MISSED as f64, "every event's flow is timed: {timed}");
    assert_eq!(metric(&text, "syncline_inbox_events", &[("source", "hubspot"), ("status", "done")]), (BEFORE + MISSED) as f64);
    assert_eq!(metric(&text, "syncline_webhook_signature_failures_total", &[("source", "hubspot")]), 1.0);
    assert_eq!(metric(&text, "syncline_webhooks_total", &[("source", "hubspot"), ("outcome", "unauthorized")]), 1.0);
    assert!(metric(&text, "manychat_api_request_duration_seconds_count", &[("operation", "sendContent")]) >= MISSED as f64);
    assert!(metric(&text, "syncline_rate_limit_waits_total", &[("policy", "manychat sendContent")]) > 0.0, "{text}");
    // every metric says what it is, and series that saw nothing yet are there at zero
    for name in ["syncline_webhooks_total", "syncline_flow_runs_total", "manychat_api_requests_total", "syncline_inbox_events"] {
        assert!(text.contains(&format!("# HELP {name} ")), "# HELP {name}: {text}");
    }
    assert_eq!(metric(&text, "syncline_webhooks_total", &[("source", "hubspot"), ("outcome", "too_large")]), 0.0);
    assert_eq!(metric(&text, "syncline_flow_runs_total", &[("flow", "lead-welcome"), ("outcome", "dead")]), 0.0);

    let second = backfill(&[]);
    assert!(second.contains(&format!("0 enqueued, {} already in the inbox", BEFORE + MISSED)), "{second}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(welcomed(&sandbox), BEFORE + MISSED, "a second backfill sends nothing");
    let _ = child.kill();
    let _ = child.wait();
    // each serve's flow work is in the history, which reads without the app secret or tokens
    let runs = bin()
        .env("SYNCLINE_STATE", format!("sqlite://{}", dir.path().join("state.db").display()))
        .args(["--config", examples().join("lead-welcome.yaml").to_str().unwrap(), "runs", "--pipeline", "lead-welcome", "--json"])
        .output()
        .unwrap();
    assert_eq!(crate::code(&runs), 0, "runs needs no secret: {}", crate::stderr(&runs));
    let rows: Vec<serde_json::Value> = crate::stdout(&runs).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.iter().all(|r| r["mode"] == "serve"), "{rows:?}");
    assert!(rows.iter().map(|r| r["created_count"].as_i64().unwrap()).sum::<i64>() >= MISSED as i64, "the sends are counted: {rows:?}");

    // RELIABILITY row 24: the app secret and both tokens appear nowhere syncline writes — its
    // debug logs, its answers and metrics, the backfill's output, the state store
    let logs = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(logs.contains("DEBUG") || logs.contains("debug"), "debug logs were written");
    let state = String::from_utf8_lossy(&std::fs::read(dir.path().join("state.db")).unwrap()).into_owned();
    let everything = [logs, text, forged.1, said.into_inner(), state];
    for secret in [SECRET, HUBSPOT_TOKEN, MANYCHAT_TOKEN] {
        assert!(everything.iter().all(|output| !output.contains(secret)), "{secret} leaked");
    }
    drop(runtime);
}

/// The value of the sample of `name` with all of `labels`, from Prometheus' text format.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let line = text.lines().find(|line| {
        line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            && labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
    });
    let line = line.unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
