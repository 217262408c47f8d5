//! The Stripe emulator through its HTTP router: products and prices with `expand`, paging both
//! ways, events, idempotency, errors and test mode's rate limit. Bodies are checked against the
//! component schemas of Stripe's official OpenAPI file (`stripe/spec3.2023-09-12.yaml`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Value, json};
use syncline_sandbox::{Sandbox, StripeAccountConfig};

use super::{Reply, send_raw};

const KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

fn sandbox(rate_limit: Option<usize>) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.add_stripe_account(StripeAccountConfig { rate_limit, ..StripeAccountConfig::new(KEY) }).unwrap();
    sandbox
}

async fn stripe(sandbox: &Sandbox, method: &str, path: &str, form: &str) -> Reply {
    stripe_keyed(sandbox, method, path, form, None).await
}

async fn stripe_keyed(sandbox: &Sandbox, method: &str, path: &str, form: &str, idempotency_key: Option<&str>) -> Reply {
    let bearer = format!("Bearer {KEY}");
    let mut headers = vec![("authorization", bearer.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    headers.extend(idempotency_key.map(|k| ("idempotency-key", k)));
    let (path, body) =
        if method == "GET" && !form.is_empty() { (format!("{path}?{form}"), String::new()) } else { (path.to_owned(), form.to_owned()) };
    send_raw(sandbox, method, &path, &headers, body).await
}

/// Stripe's component schemas, with OpenAPI 3.0's `nullable` written as JSON Schema's null type
/// (None when the shared specs folder is absent).
fn components() -> Option<&'static Value> {
    static COMPONENTS: OnceLock<Option<Value>> = OnceLock::new();
    COMPONENTS
        .get_or_init(|| {
            let path = syncline_testkit::spec_file("stripe/spec3.2023-09-12.yaml")?;
            let spec: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let mut components = spec["components"].clone();
            nullable_to_null(&mut components);
            Some(components)
        })
        .as_ref()
}

fn nullable_to_null(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            fields.values_mut().for_each(nullable_to_null);
            if fields.remove("nullable") == Some(Value::Bool(true)) {
                let inner = Value::Object(std::mem::take(fields));
                fields.insert("anyOf".into(), json!([inner, {"type": "null"}]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_null),
        _ => {}
    }
}

/// Asserts `body` is a valid `#/components/schemas/{schema}` of Stripe's spec.
fn conforms(schema: &str, body: &Value) {
    let Some(components) = components() else { return };
    let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": components});
    let validator = jsonschema::options().build(&root).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{schema}: {errors:#?}\nbody: {body:#}");
}

#[test]
fn the_fidelity_check_rejects_a_product_unlike_the_spec() {
    let Some(components) = components() else { return };
    let root = json!({"$ref": "#/components/schemas/product", "components": components});
    let validator = jsonschema::options().build(&root).unwrap();
    assert!(!validator.is_valid(&json!({"id": "prod_1", "object": "product", "name": 5})), "a numeric name and missing fields");
}

#[tokio::test]
async fn products_with_default_prices_are_created_expanded_and_listed_newest_first() {
    let sandbox = sandbox(Some(0));
    let created = stripe(&sandbox, "POST", "/v1/products", "name=Gold+plan&description=Monthly&metadata[sku]=G-1&default_price_data[currency]=usd&default_price_data[unit_amount]=2000&default_price_data[recurring][interval]=month").await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.headers.contains_key("request-id"));
    conforms("product", &created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("prod_") && created.body["default_price"].as_str().unwrap().starts_with("price_"));
    let price =
        stripe(&sandbox, "GET", &format!("/v1/prices/{}", created.body["default_price"].as_str().unwrap()), "expand[]=product").await;
    conforms("price", &price.body);
    assert_eq!(
        (price.body["unit_amount"].as_i64(), price.body["type"].as_str(), price.body["product"]["id"].as_str()),
        (Some(2000), Some("recurring"), Some(id.as_str()))
    );
    for n in 0..24 {
        stripe(
            &sandbox,
            "POST",
            "/v1/products",
            &format!("name=P{n}&default_price_data[currency]=crc&default_price_data[unit_amount]={n}00"),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after.as_ref().map(|a| format!("&starting_after={a}")).unwrap_or_default();
        let page = stripe(&sandbox, "GET", "/v1/products", &format!("limit=10&expand[]=data.default_price{cursor}")).await;
        assert_eq!(
            (page.status.as_u16(), page.body["object"].as_str(), page.body["url"].as_str()),
            (200, Some("list"), Some("/v1/products"))
        );
        for product in page.body["data"].as_array().unwrap() {
            conforms("product", product);
            assert_eq!(product["default_price"]["object"], "price", "expanded: {product}");
            seen.push(product["id"].as_str().unwrap().to_owned());
        }
        if page.body["has_more"] != true {
            break;
        }
        after = seen.last().cloned();
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25, "no product twice");
    assert_eq!(seen.last(), Some(&id), "the first product made is listed last");
    let newer = stripe(&sandbox, "GET", "/v1/products", &format!("limit=3&ending_before={}", seen[5])).await;
    let ids: Vec<&str> = newer.body["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![seen[2].as_str(), seen[3].as_str(), seen[4].as_str()], "the three just newer, still newest first");
}

#[tokio::test]
async fn changes_make_events_with_what_they_changed() {
    let sandbox = sandbox(Some(0));
    let product =
        stripe(&sandbox, "POST", "/v1/products", "name=Silver&default_price_data[currency]=usd&default_price_data[unit_amount]=900")
            .await
            .body;
    let id = product["id"].as_str().unwrap();
    let updated = stripe(&sandbox, "POST", &format!("/v1/products/{id}"), "name=Silver+plus&metadata[tier]=2").await;
    assert_eq!(updated.body["name"], "Silver plus");
    let same = stripe(&sandbox, "POST", &format!("/v1/products/{id}"), "name=Silver+plus").await;
    assert_eq!(same.status, 200);
    let events = stripe(&sandbox, "GET", "/v1/events", "type=product.*").await.body;
    let kinds: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["product.updated", "product.created"], "an update that changes nothing makes no event");
    let update = &events["data"][0];
    conforms("event", update);
    assert_eq!(update["data"]["previous_attributes"]["name"], "Silver");
    assert_eq!(update["data"]["previous_attributes"]["metadata"], json!({}));
    let all = stripe(&sandbox, "GET", "/v1/events", "types[]=price.created&types[]=product.created").await.body;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let archived = stripe(&sandbox, "POST", &format!("/v1/products/{id}"), "active=false").await;
    assert_eq!(archived.body["active"], false);
    let listed = stripe(&sandbox, "GET", "/v1/products", "active=true").await.body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "the archived product is filtered out");
    let found = stripe(&sandbox, "GET", "/v1/products/search", "query=name~'silver'+AND+active:'false'").await.body;
    assert_eq!((found["object"].as_str(), found["data"][0]["id"].as_str()), (Some("search_result"), Some(id)));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_other_parameters() {
    let sandbox = sandbox(Some(0));
    let first = stripe_keyed(&sandbox, "POST", "/v1/products", "name=Bronze", Some("key-1")).await;
    let again = stripe_keyed(&sandbox, "POST", "/v1/products", "name=Bronze", Some("key-1")).await;
    assert_eq!(first.body, again.body);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let other = stripe_keyed(&sandbox, "POST", "/v1/products", "name=Copper", Some("key-1")).await;
    assert_eq!((other.status.as_u16(), other.body["error"]["type"].as_str()), (400, Some("idempotency_error")));
    conforms("error", &other.body);
    assert_eq!(sandbox.stripe_products(KEY).unwrap().len(), 1, "one product for the one key");
    let refused = stripe_keyed(&sandbox, "POST", "/v1/products", "", Some("key-2")).await;
    assert_eq!(refused.status, 400);
    let retried = stripe_keyed(&sandbox, "POST", "/v1/products", "name=Tin", Some("key-2")).await;
    assert_eq!(retried.status, 200, "a request refused by validation saves nothing under its key");
}

#[tokio::test]
async fn bad_requests_get_stripes_errors_naming_the_parameter() {
    let sandbox = sandbox(Some(0));
    let cases = [
        ("POST", "/v1/products", "description=x", 400, "parameter_missing", "name"),
        ("POST", "/v1/products", "name=A&colour=red", 400, "parameter_unknown", "colour"),
        ("POST", "/v1/products", "name=A&default_price_data[currency]=usd", 400, "parameter_missing", "default_price_data[unit_amount]"),
        ("GET", "/v1/products", "limit=101", 400, "parameter_invalid_integer", "limit"),
        ("GET", "/v1/products", "starting_after=prod_nope", 400, "resource_missing", "starting_after"),
        ("GET", "/v1/products/prod_nope", "", 404, "resource_missing", "id"),
        ("GET", "/v1/products", "expand[]=data.tax_code", 400, "parameter_invalid", "expand"),
    ];
    for (method, path, form, status, code, param) in cases {
        let reply = stripe(&sandbox, method, path, form).await;
        assert_eq!(reply.status.as_u16(), status, "{method} {path} {form}: {}", reply.body);
        assert_eq!(
            (reply.body["error"]["code"].as_str(), reply.body["error"]["param"].as_str()),
            (Some(code), Some(param)),
            "{}",
            reply.body
        );
        conforms("error", &reply.body);
    }
    let product =
        stripe(&sandbox, "POST", "/v1/products", "name=Kept&default_price_data[currency]=usd&default_price_data[unit_amount]=100")
            .await
            .body;
    let id = product["id"].as_str().unwrap();
    let deleted = stripe(&sandbox, "DELETE", &format!("/v1/products/{id}"), "").await;
    assert_eq!(
        (deleted.status.as_u16(), deleted.body["error"]["code"].as_str()),
        (400, Some("resource_in_use")),
        "a product with prices is archived, not deleted"
    );
    let default = product["default_price"].as_str().unwrap();
    let archive = stripe(&sandbox, "POST", &format!("/v1/prices/{default}"), "active=false").await;
    assert_eq!(archive.status, 400, "the default price cannot be archived: {}", archive.body);
    let bare = stripe(&sandbox, "POST", "/v1/products", "name=Bare").await.body;
    let gone = stripe(&sandbox, "DELETE", &format!("/v1/products/{}", bare["id"].as_str().unwrap()), "").await;
    conforms("deleted_product", &gone.body);
    let unknown_key = send_raw(&sandbox, "GET", "/v1/products", &[("authorization", "Bearer sk_test_other")], String::new()).await;
    assert_eq!(unknown_key.status, 401);
    // `curl -u sk_test_…:` sends the key as HTTP Basic's user name
    let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{KEY}:")));
    let as_user = send_raw(&sandbox, "GET", "/v1/products", &[("authorization", basic.as_str())], String::new()).await;
    assert_eq!(as_user.status, 200);
}

#[tokio::test]
async fn test_mode_allows_25_requests_a_second_then_answers_stripes_429() {
    let sandbox = sandbox(None);
    let mut statuses = Vec::new();
    for _ in 0..26 {
        statuses.push(stripe(&sandbox, "GET", "/v1/products", "").await.status.as_u16());
    }
    assert!(statuses[..25].iter().all(|s| *s == 200), "{statuses:?}");
    let refused = stripe(&sandbox, "GET", "/v1/products", "").await;
    assert_eq!((refused.status.as_u16(), refused.body["error"]["code"].as_str()), (429, Some("rate_limit")));
    conforms("error", &refused.body);
}

/// Webhook endpoints as Stripe's spec has them (the secret shown on create only), and their
/// delivery: every event posted signed, a refused post retried, some events held back so later
/// ones overtake them, some posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_get_every_event_signed_retried_some_twice_and_out_of_order() {
    use std::sync::{Arc, Mutex};
    let sandbox = Sandbox::new();
    let delivery =
        syncline_sandbox::StripeDelivery { duplicate: 0.3, hold: 0.3, hold_ms: 400, retry_delay_ms: 50, seed: 9, ..Default::default() };
    sandbox
        .add_stripe_account(StripeAccountConfig { rate_limit: Some(0), webhook_delivery: delivery, ..StripeAccountConfig::new(KEY) })
        .unwrap();

    // a receiver that refuses each event's first post, and keeps what it accepted
    let received: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let refused: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (kept, seen) = (received.clone(), refused.clone());
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| async move {
            let event: Value = serde_json::from_str(&body).unwrap();
            let id = event["id"].as_str().unwrap().to_owned();
            if seen.lock().unwrap().insert(id) {
                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            let signature = headers["stripe-signature"].to_str().unwrap().to_owned();
            kept.lock().unwrap().push((signature, body, event));
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let delivering = sandbox.spawn_stripe_delivery();

    let made = stripe(&sandbox, "POST", "/v1/webhook_endpoints", &format!("url={url}&enabled_events[]=product.updated")).await.body;
    conforms("webhook_endpoint", &made);
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = stripe(&sandbox, "GET", "/v1/webhook_endpoints", "").await.body;
    assert!(listed["data"][0].get("secret").is_none(), "shown on create only");
    let refused_create = stripe(&sandbox, "POST", "/v1/webhook_endpoints", &format!("url={url}")).await;
    assert_eq!(refused_create.body["error"]["param"], "enabled_events");

    let product = stripe(&sandbox, "POST", "/v1/products", "name=P").await.body;
    let id = product["id"].as_str().unwrap();
    for n in 0..20 {
        stripe(&sandbox, "POST", &format!("/v1/products/{id}"), &format!("name=P{n}")).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let settled = |c: &syncline_sandbox::WebhookCounts| c.emitted == 20 && c.delivered + c.given_up == c.emitted + c.duplicated;
    while !settled(&sandbox.stripe_webhook_counts()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    delivering.abort();
    let counts = sandbox.stripe_webhook_counts();
    assert!(settled(&counts) && counts.given_up == 0 && counts.duplicated > 0, "{counts:?}");
    let received = received.lock().unwrap();
    let names: Vec<&str> = received.iter().map(|(_, _, e)| e["data"]["object"]["name"].as_str().unwrap()).collect();
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(distinct.len(), 20, "every update, and only product.updated: {names:?}");
    let order: Vec<usize> = names.iter().map(|name| name[1..].parse().unwrap()).collect();
    assert!(order.windows(2).any(|w| w[0] > w[1]), "held-back updates come after later ones: {order:?}");
    for (signature, body, event) in received.iter() {
        conforms("event", event);
        let t: i64 = signature.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
        assert_eq!(*signature, syncline_sandbox::stripe_signature(&secret, body.as_bytes(), t));
    }
}
