//! The Stripe → QuickBooks example through the real binary against the sandbox: every product
//! becomes one item (a name already held gets the product's id after it), a rerun writes
//! nothing, renamed and archived products change exactly their items, and a price in another
//! currency or a name QuickBooks cannot take is a dead letter that says why.

use base64::Engine;
use serde_json::json;
use syncline_sandbox::{DEMO_QUICKBOOKS_CLIENT, DEMO_QUICKBOOKS_REALM, DEMO_STRIPE_KEY, DEMO_STRIPE_WEBHOOK_SECRET, Seed, Tier};

use super::hubspot::{Hub, hub_with};
use super::*;

fn run(dir: &std::path::Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    syncline(dir, hub).args(args).output().unwrap()
}

/// The example in `dir`, pointed at the sandbox.
fn syncline(dir: &std::path::Path, hub: &Hub) -> std::process::Command {
    let mut command = bin();
    command
        .current_dir(dir)
        .env("STRIPE_BASE_URL", &hub.url)
        .env("QBO_BASE_URL", &hub.url)
        .env("STRIPE_KEY", DEMO_STRIPE_KEY)
        .env("QBO_CLIENT_SECRET", DEMO_QUICKBOOKS_CLIENT.1)
        .env("STRIPE_WEBHOOK_SECRET", DEMO_STRIPE_WEBHOOK_SECRET)
        .env("SYNCLINE_TOKEN_KEY", base64::engine::general_purpose::STANDARD.encode([9u8; 32]))
        .arg("--config")
        .arg(dir.join("stripe-to-quickbooks.yaml"));
    command
}

async fn stripe(hub: &Hub, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let reply = reqwest::Client::new()
        .post(format!("{}{path}", hub.url))
        .bearer_auth(DEMO_STRIPE_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
    reply.json().await.unwrap()
}

/// Every item, by name: (active, unit price).
fn items(hub: &Hub) -> std::collections::BTreeMap<String, (bool, f64)> {
    let items = hub.sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).unwrap();
    items
        .iter()
        .map(|i| (i["Name"].as_str().unwrap().to_owned(), (i["Active"] == true, i["UnitPrice"].as_f64().unwrap_or_default())))
        .collect()
}

fn batch_calls(hub: &Hub) -> usize {
    hub.sandbox.ledger().calls("/batch").len()
}

/// The demo sandbox, its Stripe account without limits.
fn hub() -> Hub {
    let mut seed = Seed::members_demo();
    seed.stripe[0].rate_limit = Some(0);
    hub_with(seed, Tier::Unlimited)
}

/// The example in a new folder, with `on_name_taken` set, connected to the sandbox's company.
async fn connected(hub: &Hub, on_name_taken: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(examples().join("stripe-to-quickbooks.yaml")).unwrap();
    let example = example.replace("on_name_taken: suffix", &format!("on_name_taken: {on_name_taken}"));
    std::fs::write(dir.path().join("stripe-to-quickbooks.yaml"), example).unwrap();
    let consent = format!(
        "{}/connect/oauth2?client_id=sandbox-client&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcallback&response_type=code",
        hub.url
    );
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = no_follow.get(consent).send().await.unwrap().headers()["location"].to_str().unwrap().to_owned();
    let out = run(dir.path(), hub, &["auth", "quickbooks", "--redirect", &redirect]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    dir
}

/// Item names, lowercased, each with how many items hold it.
fn name_counts(hub: &Hub) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for item in hub.sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).unwrap() {
        *counts.entry(item["Name"].as_str().unwrap().to_lowercase()).or_default() += 1;
    }
    counts
}

/// Done-when 2: 40 products whose names are held by items made by hand (some in another case)
/// are resolved by the configured rule, twice over, and no name is ever held twice.
#[tokio::test(flavor = "multi_thread")]
async fn names_held_by_other_items_follow_the_configured_rule() {
    for rule in ["suffix", "link"] {
        let hub = hub();
        let ids = hub.sandbox.generate_products(DEMO_STRIPE_KEY, 60).unwrap();
        for k in 0..40 {
            let name = if k % 3 == 0 { format!("PLAN {k}") } else { format!("Plan {k}") };
            hub.sandbox.write_quickbooks_item(DEMO_QUICKBOOKS_REALM, json!({"Name": name, "Type": "NonInventory"})).unwrap();
        }
        let dir = connected(&hub, rule).await;
        for _ in 0..2 {
            let out = run(dir.path(), &hub, &["run", "products_to_items", "--full", "--resend"]);
            assert_eq!(code(&out), 0, "{rule}: {}{}", stdout(&out), stderr(&out));
        }
        let counts = name_counts(&hub);
        assert!(counts.values().all(|n| *n == 1), "{rule}: a name held twice: {counts:?}");
        let items = hub.sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).unwrap();
        if rule == "suffix" {
            assert_eq!(items.len(), 100, "40 by hand, 60 made");
            assert!((0..40).all(|k| counts.contains_key(&format!("plan {k} ({})", ids[k].to_lowercase()))), "{counts:?}");
        } else {
            assert_eq!(items.len(), 60, "the 40 taken as the products', 20 made");
            let priced = items.iter().filter(|i| i["Type"] == "Service" && i["UnitPrice"].as_f64().unwrap_or_default() > 0.0).count();
            assert_eq!(priced, 60, "every item now carries its product's fields");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn products_become_items_once_and_follow_their_changes() {
    let hub = hub();
    let ids = hub.sandbox.generate_products(DEMO_STRIPE_KEY, 120).unwrap();
    // an item someone made by hand holds a product's name
    hub.sandbox.write_quickbooks_item(DEMO_QUICKBOOKS_REALM, json!({"Name": "Plan 5", "Type": "NonInventory"})).unwrap();
    let dir = connected(&hub, "suffix").await;
    let d = dir.path();

    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let landed = items(&hub);
    assert_eq!(landed.len(), 121, "120 products, and the item made by hand");
    assert_eq!(landed["Plan 7"], (true, (500 + 7 * 37) as f64 / 100.0), "the default price, in dollars");
    assert!(
        landed.contains_key(&format!("Plan 5 ({})", ids[5])),
        "the taken name gets the product's id: {:?}",
        landed.keys().take(5).collect::<Vec<_>>()
    );
    // both budgets at once: single writes (460 a minute) beside batch calls of 30 (40 a minute),
    // split so both end together
    let singles = hub.sandbox.ledger().calls("/item").len();
    assert_eq!((singles, batch_calls(&hub)), (30, 3), "120 operations: 30 single writes, 90 in 3 batch calls");

    let writes = hub.sandbox.ledger().writes();
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(hub.sandbox.ledger().writes(), writes, "a rerun writes nothing");

    for id in &ids[..10] {
        stripe(&hub, &format!("/v1/products/{id}"), &[("name", &format!("Renamed {id}"))]).await;
    }
    for id in &ids[10..15] {
        stripe(&hub, &format!("/v1/products/{id}"), &[("active", "false")]).await;
    }
    let euro = stripe(
        &hub,
        "/v1/products",
        &[("name", "Euro plan"), ("default_price_data[currency]", "eur"), ("default_price_data[unit_amount]", "900")],
    )
    .await;
    let long_name = "L".repeat(120);
    stripe(&hub, "/v1/products", &[("name", &long_name)]).await;
    let writes = hub.sandbox.ledger().writes();
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 3, "done, with dead letters: {}{}", stdout(&out), stderr(&out));
    let summary = last_run(d, "stripe-to-quickbooks.yaml");
    assert_eq!((summary["updated_count"].as_u64(), summary["rejected_count"].as_u64()), (Some(15), Some(2)), "{summary}");
    assert_eq!(hub.sandbox.ledger().writes() - writes, 15, "exactly the changed products' items were written");
    let landed = items(&hub);
    assert!(ids[..10].iter().all(|id| landed.contains_key(&format!("Renamed {id}"))));
    let inactive = hub.sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).unwrap().iter().filter(|i| i["Active"] == false).count();
    assert_eq!(inactive, 5, "the archived products' items are inactive");
    let dlq = run(d, &hub, &["dlq", "list"]);
    let listed = stdout(&dlq);
    assert!(listed.contains(euro["id"].as_str().unwrap()) && listed.contains("EUR"), "{listed}");
    assert!(listed.contains("2050") || listed.contains("Max:100"), "{listed}");

    // the ledger says what was decided for each product, and why
    let updates = run(d, &hub, &["events", "--type", "updated", "--json"]);
    let updates: Vec<serde_json::Value> = stdout(&updates).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(updates.len(), 15, "10 renamed and 5 archived");
    let renamed = updates.iter().find(|e| e["subject"] == ids[0].as_str()).expect("the first renamed product");
    assert_eq!(renamed["detail"]["fields"]["Name"], json!(["Plan 0", format!("Renamed {}", ids[0])]), "{renamed}");
    let euro_trail = run(d, &hub, &["events", "--product", euro["id"].as_str().unwrap()]);
    assert!(stdout(&euro_trail).contains("dead_letter") && stdout(&euro_trail).contains("EUR"), "{}", stdout(&euro_trail));
    let all = run(d, &hub, &["events", "--limit", "1000"]);
    assert!(
        stdout(&all).contains("created 120") && stdout(&all).contains("write calls (waits for the rate budget included) p50"),
        "{}",
        stdout(&all).lines().last().unwrap_or_default()
    );

    // 20 items changed by hand in QuickBooks: reconcile shows them, then repairs exactly them
    let by_hand: Vec<serde_json::Value> = hub
        .sandbox
        .quickbooks_items(DEMO_QUICKBOOKS_REALM)
        .unwrap()
        .into_iter()
        .filter(|i| i["Name"].as_str().is_some_and(|n| n.len() == 8 && n.starts_with("Plan 1")))
        .collect();
    assert_eq!(by_hand.len(), 20);
    for item in &by_hand {
        hub.sandbox.write_quickbooks_item(DEMO_QUICKBOOKS_REALM, json!({"Id": item["Id"], "SyncToken": item["SyncToken"], "sparse": true, "UnitPrice": 0.5, "Description": "edited by hand"})).unwrap();
    }
    let writes = hub.sandbox.ledger().writes();
    let shown = run(d, &hub, &["reconcile", "products_to_items"]);
    assert!(stdout(&shown).contains("update 20"), "{}{}", stdout(&shown), stderr(&shown));
    assert_eq!(hub.sandbox.ledger().writes(), writes, "showing writes nothing");
    let applied = run(d, &hub, &["reconcile", "products_to_items", "--apply"]);
    assert_eq!(code(&applied), 3, "the two dead letters are still refused: {}{}", stdout(&applied), stderr(&applied));
    assert_eq!(hub.sandbox.ledger().writes() - writes, 20, "exactly the items changed by hand are repaired");
    assert!(hub.sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).unwrap().iter().all(|i| i["Description"] != "edited by hand"));
    let again = run(d, &hub, &["reconcile", "products_to_items"]);
    assert!(stdout(&again).contains("update 0"), "{}", stdout(&again));
}

/// What each live product should be as an item, by product id: (name, active, price in dollars).
fn wanted_items(hub: &Hub) -> std::collections::BTreeMap<String, (String, bool, f64)> {
    let products = hub.sandbox.stripe_products(DEMO_STRIPE_KEY).unwrap();
    products
        .into_iter()
        .map(|(id, p)| {
            let price = p["default_price"]["unit_amount"].as_f64().unwrap_or_default() / 100.0;
            (id, (p["name"].as_str().unwrap().to_owned(), p["active"] == true, price))
        })
        .collect()
}

/// Whether every product's item matches it, by name.
fn items_match_products(hub: &Hub) -> bool {
    let landed = items(hub);
    wanted_items(hub).values().all(|(name, active, price)| landed.get(name) == Some(&(*active, *price)))
}

/// Done-when 4: Stripe posts its events to `serve` with 20 % duplicates and some held back so
/// later changes overtake them, and serve is SIGKILLed mid-flow and started again. The items end
/// equal to Stripe's products (by the test's reading and by `reconcile`), no name is held twice,
/// and the older events that came after newer ones are audited as skipped.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_through_duplicates_disorder_and_a_kill_leave_items_equal_to_products() {
    let mut seed = Seed::members_demo();
    seed.stripe[0].rate_limit = Some(0);
    seed.stripe[0].webhook_delivery = syncline_sandbox::StripeDelivery {
        duplicate: 0.2,
        hold: 0.3,
        // long enough that round 2 (below) is handled before round 1's held-back events come
        hold_ms: 10_000,
        // while serve is down deliveries are refused; retry soon and long enough to outlast it
        retry_delay_ms: 250,
        max_attempts: 12,
        seed: 2026,
        ..Default::default()
    };
    let hub = hub_with(seed, Tier::Unlimited);
    let ids = hub.sandbox.generate_products(DEMO_STRIPE_KEY, 200).unwrap();
    let dir = connected(&hub, "suffix").await;
    let d = dir.path();
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    // serve keeps one address across restarts, as a webhook endpoint's URL does
    let bind = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let endpoint =
        stripe(&hub, "/v1/webhook_endpoints", &[("url", &format!("http://{bind}/webhooks/stripe")), ("enabled_events[]", "*")]).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let serve = || {
        let log = std::fs::File::options().create(true).append(true).open(d.join("serve.log")).unwrap();
        let mut command = syncline(d, &hub);
        command.env("STRIPE_WEBHOOK_SECRET", &secret).env("SERVE_BIND", &bind).env("SERVE_LEASE", "2s").arg("serve").stderr(log);
        start_serve(&mut command).0
    };
    let mut child = serve();

    // round 1: 100 renamed (20 of them with a new default price), 50 archived, 10 new
    for (i, id) in ids[..100].iter().enumerate() {
        if i < 20 {
            let price =
                stripe(&hub, "/v1/prices", &[("product", id), ("currency", "usd"), ("unit_amount", &(9_000 + i).to_string())]).await;
            stripe(&hub, &format!("/v1/products/{id}"), &[("default_price", price["id"].as_str().unwrap())]).await;
        }
        stripe(&hub, &format!("/v1/products/{id}"), &[("name", &format!("Hooked {i} r1"))]).await;
    }
    for id in &ids[100..150] {
        stripe(&hub, &format!("/v1/products/{id}"), &[("active", "false")]).await;
    }
    for i in 0..10 {
        let form = [
            ("name", format!("New plan {i}")),
            ("default_price_data[currency]", "usd".into()),
            ("default_price_data[unit_amount]", "4200".into()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        stripe(&hub, "/v1/products", &form).await;
    }
    let round_1 = std::time::Instant::now();

    // killed without warning while it works, then started again
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while items(&hub).keys().filter(|n| n.ends_with(" r1")).count() < 30 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    child = serve();

    // round 2, in a later second: 60 of them renamed again; held-back round-1 events come after
    tokio::time::sleep(std::time::Duration::from_millis(1_100).saturating_sub(round_1.elapsed())).await;
    for (i, id) in ids[..60].iter().enumerate() {
        stripe(&hub, &format!("/v1/products/{id}"), &[("name", &format!("Hooked {i} r2"))]).await;
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let settled = |c: &syncline_sandbox::WebhookCounts| c.delivered + c.given_up == c.emitted + c.duplicated;
    while !(items_match_products(&hub) && settled(&hub.sandbox.stripe_webhook_counts())) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // a little longer, for any write that should not come
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // the services the flow calls, as /readyz sees them
    let (status, ready) = crate::sandbox::request(&bind, "GET", "/readyz", &[], b"");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert!(status.contains(" 200"), "{status} {ready}");
    let dependencies = &ready["dependencies"];
    assert_eq!(dependencies[format!("quickbooks:{DEMO_QUICKBOOKS_REALM} tokens")]["status"], "healthy", "{ready}");
    assert!(["stripe", "quickbooks", "quickbooks-batch"].iter().all(|d| dependencies[*d].is_object()), "{ready}");
    let _ = child.kill();
    let _ = child.wait();

    let counts = hub.sandbox.stripe_webhook_counts();
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
    assert!(counts.duplicated > 0 && counts.given_up == 0, "{counts:?}");
    let wanted = wanted_items(&hub);
    let landed = items(&hub);
    let wrong: Vec<_> = wanted.iter().filter(|(_, (name, active, price))| landed.get(name) != Some(&(*active, *price))).collect();
    assert!(wrong.is_empty(), "items unlike their products: {wrong:?}\n{}", log.lines().rev().take(40).collect::<Vec<_>>().join("\n"));
    assert_eq!(landed.len(), 210, "one item per product, none twice");
    assert!(name_counts(&hub).values().all(|n| *n == 1));
    let check = run(d, &hub, &["reconcile", "products_to_items"]);
    assert!(stdout(&check).contains("update 0") && stdout(&check).contains("create 0"), "{}{}", stdout(&check), stderr(&check));

    let stale = run(d, &hub, &["events", "--type", "skipped_stale", "--json"]);
    let skipped: Vec<serde_json::Value> = stdout(&stale).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!skipped.is_empty(), "held-back events arrived after newer ones: {}", stderr(&stale));
    assert!(
        skipped.iter().all(|e| ids[..60].contains(&e["subject"].as_str().unwrap().to_owned()) && e["detail"]["flow"] == "product_changes"),
        "{skipped:?}"
    );
    // one product's trail: each of its events, what came of it, and what changed in its item
    let trail = run(d, &hub, &["events", "--product", &ids[0], "--json"]);
    let kinds: Vec<String> = stdout(&trail)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.iter().any(|k| k == "flow.handled") && kinds.iter().any(|k| k == "quickbooks.item.updated"), "{kinds:?}");
    eprintln!("stripe webhooks: {counts:?}, {} stale events skipped", skipped.len());
}

/// A product deleted in Stripe leaves its item inactive (QuickBooks keeps items). And a process
/// killed after QuickBooks made an item but before its id was stored left only the intent to
/// make it: the next run takes that item as the product's instead of making `<name> (<id>)`.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_product_leaves_its_item_inactive_and_an_unfinished_create_makes_no_second_item() {
    let hub = hub();
    hub.sandbox.generate_products(DEMO_STRIPE_KEY, 5).unwrap();
    let bare = stripe(&hub, "/v1/products", &[("name", "No price yet")]).await;
    let bare = bare["id"].as_str().unwrap().to_owned();
    let dir = connected(&hub, "suffix").await;
    let d = dir.path();
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(items(&hub)["No price yet"], (true, 0.0));

    let deleted =
        reqwest::Client::new().delete(format!("{}/v1/products/{bare}", hub.url)).bearer_auth(DEMO_STRIPE_KEY).send().await.unwrap();
    assert!(deleted.status().is_success());
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(items(&hub)["No price yet"], (false, 0.0), "made inactive, not deleted");

    // the crash: QuickBooks has the item, the store only the intent to make it
    let made = stripe(&hub, "/v1/products", &[("name", "Made before the crash")]).await;
    let made = made["id"].as_str().unwrap().to_owned();
    hub.sandbox
        .write_quickbooks_item(
            DEMO_QUICKBOOKS_REALM,
            json!({"Name": "Made before the crash", "Type": "Service", "IncomeAccountRef": {"value": "79"}}),
        )
        .unwrap();
    let store = syncline_store::Store::connect(&format!("sqlite://{}", d.join("stripe-quickbooks-state.db").display())).await.unwrap();
    let target = format!("quickbooks:{DEMO_QUICKBOOKS_REALM}/items");
    store.save_remote_ids(&target, &[(made.clone(), "pending:made before the crash".into())]).await.unwrap();
    store.close().await;
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let counts = name_counts(&hub);
    assert_eq!(counts.get("made before the crash"), Some(&1));
    assert!(!counts.keys().any(|n| n.contains(&made.to_lowercase())), "no second item: {counts:?}");
}
