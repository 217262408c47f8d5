//! Stripe products into a table through the real binary against the sandbox's Stripe: a full
//! run lands every product with its default price; the next, incremental, run catches up from
//! the account's events — renamed, archived, repriced, new and deleted products — and nothing
//! else.

use std::collections::BTreeMap;

use syncline_sandbox::{DEMO_STRIPE_KEY, Seed, Tier};

use super::hubspot::{Hub, hub_with};
use super::*;

const CONFIG: &str = r#"
state: sqlite://state.db
pipelines:
  stripe_products:
    source:
      stripe:
        base_url: ${STRIPE_BASE_URL}
        key: ${STRIPE_KEY}
    sink:
      sql:
        url: "sqlite://warehouse.db"
        table: stripe_products
        key: id
        create_table: true
"#;

fn run(dir: &std::path::Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    bin()
        .current_dir(dir)
        .env("STRIPE_BASE_URL", &hub.url)
        .env("STRIPE_KEY", DEMO_STRIPE_KEY)
        .arg("--config")
        .arg(dir.join("stripe.yaml"))
        .args(args)
        .output()
        .unwrap()
}

async fn stripe(hub: &Hub, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let client = reqwest::Client::new();
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let request = client.request(method, format!("{}{path}", hub.url)).bearer_auth(DEMO_STRIPE_KEY);
    let reply = request.header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
    reply.json().await.unwrap()
}

/// A row as the test reads it back.
#[derive(Debug)]
struct Row {
    name: Option<String>,
    active: Option<bool>,
    unit_amount: Option<i64>,
    deleted: bool,
}

/// Every row, by id (`_deleted_at` is a column once a deleted product was read).
async fn rows(pool: &sqlx::SqlitePool, deletes: bool) -> BTreeMap<String, Row> {
    let deleted = if deletes { "_deleted_at IS NOT NULL" } else { "FALSE" };
    let sql = format!("SELECT id, name, active, unit_amount, {deleted} AS deleted FROM stripe_products");
    type Columns = (String, Option<String>, Option<bool>, Option<i64>, bool);
    let rows: Vec<Columns> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(id, name, active, unit_amount, deleted)| (id, Row { name, active, unit_amount, deleted })).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn products_land_whole_then_follow_the_accounts_events() {
    let mut seed = Seed::members_demo();
    seed.stripe[0].rate_limit = Some(0);
    let hub = hub_with(seed, Tier::Unlimited);
    let ids = hub.sandbox.generate_products(DEMO_STRIPE_KEY, 250).unwrap();
    // the full run's cursor is the newest event's second, whose events the next run reads
    // again: a later product makes that second hold one product, not the 250
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let marker = hub.sandbox.generate_products(DEMO_STRIPE_KEY, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("stripe.yaml"), CONFIG).unwrap();

    let out = run(d, &hub, &["run", "stripe_products"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    let landed = rows(&warehouse, false).await;
    let products = hub.sandbox.stripe_products(DEMO_STRIPE_KEY).unwrap();
    assert_eq!(landed.len(), 251);
    for (id, product) in &products {
        let row = &landed[id];
        let expected = (product["name"].as_str(), Some(true), product["default_price"]["unit_amount"].as_i64());
        assert_eq!((row.name.as_deref(), row.active, row.unit_amount), expected);
    }
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM stripe_products WHERE metadata_sku LIKE 'SKU-%' AND currency = 'usd'").await, 251);

    // changes: 10 renamed, 5 archived, 2 repriced, 3 new, 1 new then deleted
    for id in &ids[..10] {
        stripe(&hub, reqwest::Method::POST, &format!("/v1/products/{id}"), &[("name", &format!("Renamed {id}"))]).await;
    }
    for id in &ids[10..15] {
        stripe(&hub, reqwest::Method::POST, &format!("/v1/products/{id}"), &[("active", "false")]).await;
    }
    for id in &ids[15..17] {
        let price =
            stripe(&hub, reqwest::Method::POST, "/v1/prices", &[("product", id), ("currency", "usd"), ("unit_amount", "4242")]).await;
        stripe(&hub, reqwest::Method::POST, &format!("/v1/products/{id}"), &[("default_price", price["id"].as_str().unwrap())]).await;
    }
    for n in 0..3 {
        stripe(
            &hub,
            reqwest::Method::POST,
            "/v1/products",
            &[("name", &format!("New {n}")), ("default_price_data[currency]", "usd"), ("default_price_data[unit_amount]", "100")],
        )
        .await;
    }
    let gone = stripe(&hub, reqwest::Method::POST, "/v1/products", &[("name", "Short-lived")]).await;
    let gone = gone["id"].as_str().unwrap().to_owned();
    stripe(&hub, reqwest::Method::DELETE, &format!("/v1/products/{gone}"), &[]).await;

    let out = run(d, &hub, &["run", "stripe_products"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let summary = last_run(d, "stripe.yaml");
    assert_eq!(summary["mode"], "incremental", "{summary}");
    let landed = rows(&warehouse, true).await;
    assert_eq!(landed.len(), 255, "251 + 3 new + the deleted one's tombstone");
    assert!(ids[..10].iter().all(|id| landed[id].name == Some(format!("Renamed {id}"))));
    assert!(ids[10..15].iter().all(|id| landed[id].active == Some(false)), "archived products are inactive");
    assert!(ids[15..17].iter().all(|id| landed[id].unit_amount == Some(4242)), "the new default price is read");
    assert!(landed[&gone].deleted, "the deleted product is marked _deleted_at");
    assert_eq!(summary["read_count"], 22, "only the products the events name, and the marker of the cursor's second: {summary}");
    assert_eq!(landed[&marker[0]].name.as_deref(), Some("Plan 250"));
}
