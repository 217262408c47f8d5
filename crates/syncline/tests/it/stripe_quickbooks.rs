//! The Stripe → QuickBooks example through the real binary against the sandbox: every product
//! becomes one item (a name already held gets the product's id after it), a rerun writes
//! nothing, renamed and archived products change exactly their items, and a price in another
//! currency or a name QuickBooks cannot take is a dead letter that says why.

use base64::Engine;
use serde_json::json;
use syncline_sandbox::{DEMO_QUICKBOOKS_CLIENT, DEMO_QUICKBOOKS_REALM, DEMO_STRIPE_KEY, Seed, Tier};

use super::hubspot::{Hub, hub_with};
use super::*;

fn run(dir: &std::path::Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    bin()
        .current_dir(dir)
        .env("STRIPE_BASE_URL", &hub.url)
        .env("QBO_BASE_URL", &hub.url)
        .env("STRIPE_KEY", DEMO_STRIPE_KEY)
        .env("QBO_CLIENT_SECRET", DEMO_QUICKBOOKS_CLIENT.1)
        .env("SYNCLINE_TOKEN_KEY", base64::engine::general_purpose::STANDARD.encode([9u8; 32]))
        .arg("--config")
        .arg(dir.join("stripe-to-quickbooks.yaml"))
        .args(args)
        .output()
        .unwrap()
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
    assert_eq!(batch_calls(&hub), 4, "120 operations, 30 a call");

    let calls = batch_calls(&hub);
    let out = run(d, &hub, &["run", "products_to_items"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(batch_calls(&hub), calls, "a rerun writes nothing");

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
