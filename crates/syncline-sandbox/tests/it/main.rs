//! The HubSpot emulator through its HTTP router: auth, properties, batch upsert/read with
//! HubSpot's validation and conflicts, paging, the rate budget and the ledger. Every body it
//! returns is checked against the component schemas of the official spec files (fidelity).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use syncline_sandbox::{PortalConfig, Sandbox, Tier};
use tower::ServiceExt;

mod associations;
mod manychat;
mod quickbooks;
mod schemas;
mod stripe;
mod webhooks;
mod writes;

const TOKEN: &str = "pat-na1-test";
const PORTAL_ID: u64 = 4_242_424;

fn sandbox(tier: Tier) -> Sandbox {
    let sandbox = Sandbox::new();
    let properties = serde_json::from_value(json!({
        "contacts": [
            {"name": "numero_asociado", "type": "string", "hasUniqueValue": true},
            {"name": "marital_status", "type": "enumeration", "fieldType": "select",
             "options": [{"label": "Soltero", "value": "Soltero"}, {"label": "Casado", "value": "Casado"}]},
            {"name": "salario_bruto", "type": "number", "fieldType": "number"}
        ]
    }))
    .unwrap();
    sandbox
        .add_portal(PortalConfig {
            token: TOKEN.into(),
            tier,
            portal_id: Some(PORTAL_ID),
            properties,
            custom_objects: Vec::new(),
            webhooks: None,
        })
        .unwrap();
    sandbox
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(sandbox: &Sandbox, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(bearer.as_deref().map(|b| ("authorization", b)));
    send_raw(sandbox, method, path, &headers, body.map(|b| b.to_string()).unwrap_or_default()).await
}

/// A request with these headers and body, as a client sends it.
async fn send_raw(sandbox: &Sandbox, method: &str, path: &str, headers: &[(&str, &str)], body: String) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).unwrap();
    let response = sandbox.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    // the admin API's own rejections (axum's) are plain text
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply { status, headers, body }
}

/// Validates `body` against `#/components/schemas/{schema}` of an official spec file. Skips
/// (outside CI) when the shared specs folder is absent.
fn conforms(spec: &str, schema: &str, body: &Value) {
    if let Some(errors) = violations(spec, schema, body) {
        assert!(errors.is_empty(), "{schema} from {spec}: {errors:#?}\nbody: {body:#}");
    }
}

/// What `body` gets wrong against the schema (None when the specs folder is absent).
fn violations(spec: &str, schema: &str, body: &Value) -> Option<Vec<String>> {
    let path = syncline_testkit::spec_file(spec)?;
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": spec["components"]});
    let validator = jsonschema::options().should_validate_formats(true).build(&root).unwrap();
    Some(validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect())
}

#[test]
fn the_fidelity_check_rejects_bodies_unlike_the_spec() {
    let spec = "hubspot/contacts.v3.json";
    let Some(errors) = violations(spec, "BatchResponseSimplePublicUpsertObject", &json!({"status": "DONE", "results": [{"id": 1}]})) else {
        return;
    };
    assert!(errors.len() >= 4, "missing startedAt/completedAt, bad status, bad result: {errors:#?}");
    let errors = violations(spec, "Error", &json!({"message": "x", "correlationId": "c"})).unwrap();
    assert!(errors.iter().any(|e| e.contains("category")), "{errors:#?}");
    let errors = violations(
        spec,
        "SimplePublicObject",
        &json!({"id": "1", "properties": {"a": 1}, "createdAt": "yesterday", "updatedAt": "2026-01-01T00:00:00Z", "archived": false}),
    )
    .unwrap();
    assert_eq!(errors.len(), 2, "a number property value and a bad date-time: {errors:#?}");
}

fn member(i: usize) -> Value {
    json!({"id": format!("A{i:05}"), "idProperty": "numero_asociado",
           "properties": {"firstname": format!("Ana {i}"), "email": format!("ana{i}@example.cr"), "marital_status": "Soltero"}})
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_401() {
    let sandbox = sandbox(Tier::Free);
    for token in [None, Some("wrong")] {
        let reply = send(&sandbox, "GET", "/crm/v3/properties/contacts", token, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["category"], "INVALID_AUTHENTICATION");
        conforms("hubspot/contacts.v3.json", "Error", &reply.body);
    }
    assert_eq!(sandbox.ledger().with_status(401), 2);
    assert_eq!(sandbox.ledger().writes(), 0);
}

#[tokio::test]
async fn properties_include_the_portal_definitions() {
    let sandbox = sandbox(Tier::Free);
    let reply = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    conforms("hubspot/properties.v3.json", "CollectionResponsePropertyNoPaging", &reply.body);
    let results = reply.body["results"].as_array().unwrap();
    let marital = results.iter().find(|p| p["name"] == "marital_status").unwrap();
    assert_eq!(marital["type"], "enumeration");
    assert_eq!(marital["options"][1]["value"], "Casado");
    let email = results.iter().find(|p| p["name"] == "email").unwrap();
    assert_eq!(email["hasUniqueValue"], true);
}

/// A property created through the API (201, its definition; 409 for a name taken) is listed
/// and can be written and read.
#[tokio::test]
async fn a_created_property_is_listed_written_and_read() {
    let sandbox = sandbox(Tier::Free);
    let nivel = json!({"name": "nivel", "label": "Nivel", "type": "number", "fieldType": "number", "groupName": "contactinformation"});
    let reply = send(&sandbox, "POST", "/crm/v3/properties/contacts", Some(TOKEN), Some(nivel.clone())).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    conforms("hubspot/properties.v3.json", "Property", &reply.body);
    let taken = send(&sandbox, "POST", "/crm/v3/properties/contacts", Some(TOKEN), Some(nivel)).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    conforms("hubspot/properties.v3.json", "Error", &taken.body);
    let listed = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert!(listed.body["results"].as_array().unwrap().iter().any(|p| p["name"] == "nivel" && p["type"] == "number"));
    let created = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(json!({"properties": {"nivel": "3"}}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let bad = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(json!({"properties": {"nivel": "three"}}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "the new property's values are checked: {}", bad.body);
}

/// Lists in the query as the official SDKs send them (a parameter repeated) or comma-separated;
/// a query that does not parse, an unknown route and a wrong method are HubSpot's JSON errors;
/// an error body's `correlationId` is the answer's `X-HubSpot-Correlation-Id`.
#[tokio::test]
async fn queries_and_errors_are_read_and_answered_as_hubspot_does() {
    let sandbox = sandbox(Tier::Professional);
    send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": [member(1)]}))).await;
    for query in
        ["properties=firstname&properties=email&properties=numero_asociado", "properties=firstname,email&properties=numero_asociado"]
    {
        let reply = send(&sandbox, "GET", &format!("/crm/v3/objects/contacts?{query}"), Some(TOKEN), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        let properties = &reply.body["results"][0]["properties"];
        for name in ["firstname", "email", "numero_asociado"] {
            assert!(properties[name].is_string(), "{query}: {name} in {properties}");
        }
    }
    for (method, path, status) in [
        ("GET", "/crm/v3/objects/contacts?limit=ten", StatusCode::BAD_REQUEST),
        ("GET", "/crm/v3/objects/contacts?archived=perhaps", StatusCode::BAD_REQUEST),
        ("GET", "/crm/v3/objects/contacts/1/nothing-here", StatusCode::NOT_FOUND),
        ("GET", "/crm/v4/nowhere", StatusCode::NOT_FOUND),
        ("PUT", "/crm/v3/objects/contacts/batch/upsert", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/crm/v3/objects/tickets_and_more", StatusCode::BAD_REQUEST),
    ] {
        let reply = send(&sandbox, method, path, Some(TOKEN), None).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert!(reply.body.is_object(), "{method} {path}: a JSON body, not {:?}", reply.body);
        conforms("hubspot/contacts.v3.json", "Error", &reply.body);
        let header = reply.headers.get("x-hubspot-correlation-id").unwrap().to_str().unwrap();
        assert_eq!(reply.body["correlationId"], header, "{method} {path}");
    }
    let reply = send(&sandbox, "GET", "/crm/v3/objects/contacts?limit=ten", Some(TOKEN), None).await;
    assert!(reply.body["message"].as_str().unwrap().contains("limit"), "{}", reply.body);
}

#[tokio::test]
async fn batch_upsert_creates_then_updates_by_id_property() {
    let sandbox = sandbox(Tier::Free);
    let inputs: Vec<Value> = (0..100).map(member).collect();
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    conforms("hubspot/contacts.v3.json", "BatchResponseSimplePublicUpsertObject", &reply.body);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    assert!(results.iter().all(|r| r["new"] == true));
    assert_eq!(results[0]["properties"]["numero_asociado"], Value::Null, "only the written properties come back");
    assert_eq!(results[0]["properties"]["firstname"], "Ana 0");

    let mut changed = member(7);
    changed["properties"]["firstname"] = json!("Ana María");
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": [changed]}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["results"][0]["new"], false);

    let ledger = sandbox.ledger();
    assert_eq!(ledger.calls("/batch/upsert").len(), 2);
    assert_eq!(ledger.calls("/batch/upsert")[0].inputs, 100);
    assert_eq!(ledger.effects.iter().filter(|e| e.kind == "created").count(), 100);
    assert_eq!(ledger.effects.iter().filter(|e| e.kind == "updated").count(), 1);

    // the change is visible through get by idProperty
    let reply =
        send(&sandbox, "GET", "/crm/v3/objects/contacts/A00007?idProperty=numero_asociado&properties=firstname,email", Some(TOKEN), None)
            .await;
    assert_eq!(reply.status, StatusCode::OK);
    conforms("hubspot/contacts.v3.json", "SimplePublicObjectWithAssociations", &reply.body);
    assert_eq!(reply.body["properties"]["firstname"], "Ana María");
    assert_eq!(reply.body["properties"]["email"], "ana7@example.cr");
}

#[tokio::test]
async fn invalid_inputs_are_207_errors_beside_the_written_ones() {
    let sandbox = sandbox(Tier::Free);
    let mut inputs: Vec<Value> = (0..100).map(member).collect();
    for i in [3, 50, 99] {
        inputs[i]["properties"]["marital_status"] = json!("Soltera");
    }
    inputs[10]["properties"]["no_such_property"] = json!("x");
    inputs[11]["properties"]["salario_bruto"] = json!("mucho");
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    conforms("hubspot/contacts.v3.json", "BatchResponseSimplePublicUpsertObjectWithErrors", &reply.body);
    assert_eq!(reply.body["numErrors"], 5);
    assert_eq!(reply.body["results"].as_array().unwrap().len(), 95);
    let errors = reply.body["errors"].as_array().unwrap();
    let of = |id: &str| errors.iter().find(|e| e["context"]["ids"][0] == id).unwrap_or_else(|| panic!("no error for {id}"));
    let bad_option = of("A00003");
    assert_eq!(bad_option["category"], "VALIDATION_ERROR");
    assert!(
        bad_option["message"].as_str().unwrap().contains("Soltera was not one of the allowed options: [Soltero, Casado]"),
        "{bad_option}"
    );
    assert_eq!(bad_option["errors"][0]["in"], "marital_status");
    assert!(of("A00010")["message"].as_str().unwrap().contains("Property \\\"no_such_property\\\" does not exist"), "{}", of("A00010"));
    assert_eq!(of("A00011")["errors"][0]["code"], "INVALID_INTEGER");
    assert_eq!(sandbox.ledger().writes(), 95, "rejected inputs change nothing");
}

#[tokio::test]
async fn a_unique_email_held_by_another_contact_is_a_conflict() {
    let sandbox = sandbox(Tier::Free);
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": [member(1)]}))).await;
    let existing = reply.body["results"][0]["id"].as_str().unwrap().to_owned();
    let mut twin = member(2);
    twin["properties"]["email"] = json!("ana1@example.cr");
    let reply =
        send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": [twin, member(3)]}))).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    let error = &reply.body["errors"][0];
    assert_eq!(error["category"], "CONFLICT");
    assert_eq!(error["message"], format!("Contact already exists. Existing ID: {existing}"));
    assert_eq!(reply.body["results"].as_array().unwrap().len(), 1, "the other input is written");
}

#[tokio::test]
async fn malformed_batches_are_400_and_write_nothing() {
    let sandbox = sandbox(Tier::Free);
    let too_many: Vec<Value> = (0..101).map(member).collect();
    let cases = [
        json!({"inputs": too_many}),
        json!({"inputs": [member(1), member(1)]}),
        json!({"inputs": [{"id": "x", "idProperty": "firstname", "properties": {}}]}),
        json!({"inputs": [{"id": "x", "properties": {}}]}),
        json!({"inputs": "nope"}),
    ];
    for body in cases {
        let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["category"], "VALIDATION_ERROR");
        conforms("hubspot/contacts.v3.json", "Error", &reply.body);
    }
    assert_eq!(sandbox.ledger().writes(), 0);
}

#[tokio::test]
async fn batch_read_by_id_property_reports_the_missing() {
    let sandbox = sandbox(Tier::Free);
    let inputs: Vec<Value> = (0..5).map(member).collect();
    send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    let body = json!({"inputs": [{"id": "A00001"}, {"id": "A00004"}, {"id": "Z9"}], "idProperty": "numero_asociado", "properties": ["firstname", "marital_status"]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/read", Some(TOKEN), Some(body)).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    conforms("hubspot/contacts.v3.json", "BatchResponseSimplePublicObjectWithErrors", &reply.body);
    assert_eq!(reply.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(reply.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(reply.body["errors"][0]["context"]["ids"], json!(["Z9"]));
    assert_eq!(reply.body["results"][0]["properties"]["marital_status"], "Soltero");
}

#[tokio::test]
async fn list_pages_through_every_object() {
    let sandbox = sandbox(Tier::Professional);
    for chunk in 0..3 {
        let inputs: Vec<Value> = (chunk * 100..chunk * 100 + 100).map(member).collect();
        send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    }
    let mut after = String::new();
    let mut seen = Vec::new();
    loop {
        let reply =
            send(&sandbox, "GET", &format!("/crm/v3/objects/contacts?limit=100&properties=numero_asociado{after}"), Some(TOKEN), None)
                .await;
        conforms("hubspot/contacts.v3.json", "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging", &reply.body);
        for result in reply.body["results"].as_array().unwrap() {
            seen.push(result["properties"]["numero_asociado"].as_str().unwrap().to_owned());
        }
        match reply.body["paging"]["next"]["after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 300);
    seen.dedup();
    assert_eq!(seen.len(), 300);
}

#[tokio::test]
async fn the_rolling_budget_answers_429_with_hubspots_body_and_headers() {
    let sandbox = sandbox(Tier::Free);
    for i in 0..100u32 {
        let reply = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let header = |name: &str| reply.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-hubspot-ratelimit-max"), "100");
        assert_eq!(header("x-hubspot-ratelimit-remaining"), (99 - i).to_string());
        assert_eq!(header("x-hubspot-ratelimit-interval-milliseconds"), "10000");
        assert_eq!(header("x-hubspot-ratelimit-daily-remaining"), (249_999 - i).to_string());
    }
    let reply = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(reply.body["errorType"], "RATE_LIMIT");
    assert_eq!(reply.body["message"], "You have reached your ten_secondly_rolling limit.");
    assert_eq!(reply.headers["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(sandbox.ledger().with_status(429), 1);
}

/// Faults are each service's own: ManyChat's 429s leave HubSpot answering.
#[tokio::test]
async fn each_service_has_its_own_faults() {
    let sandbox = sandbox(Tier::Free);
    let page: syncline_sandbox::PageConfig = serde_json::from_value(json!({"token": "900001:key"})).unwrap();
    sandbox.add_page(page).unwrap();
    let reply = send(&sandbox, "PUT", "/__sandbox/faults/manychat", None, Some(json!({"rate_limited": 1.0}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let manychat = send(&sandbox, "GET", "/fb/page/getInfo", Some("900001:key"), None).await;
    assert_eq!(manychat.status, StatusCode::TOO_MANY_REQUESTS);
    let hubspot = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert_eq!(hubspot.status, StatusCode::OK, "HubSpot's faults are its own");
    let faults = send(&sandbox, "GET", "/__sandbox/faults", None, None).await;
    assert_eq!((faults.body["manychat"]["rate_limited"].as_f64(), faults.body["hubspot"]["rate_limited"].as_f64()), (Some(1.0), Some(0.0)));
    // the whole set applies to every service
    send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({"server_errors": 1.0}))).await;
    let hubspot = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert!(hubspot.status.is_server_error(), "{:?}", hubspot.status);
    let manychat = send(&sandbox, "GET", "/fb/page/getInfo", Some("900001:key"), None).await;
    assert!(manychat.status.is_server_error(), "{:?}", manychat.status);
}

#[tokio::test]
async fn scripted_faults_answer_before_or_after_the_write() {
    let sandbox = sandbox(Tier::Free);
    let upsert = || json!({"inputs": [member(1)]});

    let reply = send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({"rate_limited": 1.0, "retry_after_secs": 3}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(upsert())).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers["retry-after"], "3");
    assert_eq!(reply.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(sandbox.ledger().writes(), 0, "a 429 applies nothing");

    send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({"down_for_secs": 60}))).await;
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(upsert())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    conforms("hubspot/contacts.v3.json", "Error", &reply.body);
    assert_eq!(sandbox.ledger().writes(), 0);

    send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({"lost_after_write": 1.0}))).await;
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(upsert())).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(sandbox.ledger().writes(), 1, "the write happened although its answer was lost");

    let reply = send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({"rate_limit": 0.5}))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "a misspelt fault is refused");

    send(&sandbox, "PUT", "/__sandbox/faults", None, Some(json!({}))).await;
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(upsert())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["results"][0]["new"], false, "the lost write is there to update");
}

async fn seed_members(sandbox: &Sandbox, count: usize) {
    for start in (0..count).step_by(100) {
        let inputs: Vec<Value> = (start..(start + 100).min(count)).map(member).collect();
        let reply = send(sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn search_filters_sorts_and_pages() {
    let sandbox = sandbox(Tier::Professional);
    seed_members(&sandbox, 300).await;
    let request = json!({
        "filterGroups": [
            {"filters": [{"propertyName": "numero_asociado", "operator": "LT", "value": "A00010"}]},
            {"filters": [{"propertyName": "email", "operator": "IN", "values": ["ANA250@example.cr", "ana299@example.cr"]},
                         {"propertyName": "marital_status", "operator": "EQ", "value": "soltero"}]},
        ],
        "sorts": [{"propertyName": "numero_asociado", "direction": "DESCENDING"}],
        "properties": ["numero_asociado"],
        "limit": 5,
    });
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(request.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    conforms("hubspot/contacts.v3.json", "CollectionResponseWithTotalSimplePublicObject", &reply.body);
    assert_eq!(reply.body["total"], 12, "10 below A00010, ORed with 2 by email");
    let ids: Vec<&str> =
        reply.body["results"].as_array().unwrap().iter().map(|r| r["properties"]["numero_asociado"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A00299", "A00250", "A00009", "A00008", "A00007"]);
    assert!(reply.body["results"][0]["properties"]["hs_object_id"].is_string(), "search returns the ids");
    assert!(!reply.headers.contains_key("x-hubspot-ratelimit-remaining"), "search carries no rate-limit headers");
    let mut next = request;
    next["after"] = reply.body["paging"]["next"]["after"].clone();
    next["limit"] = json!(10);
    let page2 = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(next)).await;
    assert_eq!(page2.body["results"].as_array().unwrap().len(), 7);
    assert!(page2.body.get("paging").is_none(), "the last page has no paging");

    let tokens = json!({"filterGroups": [{"filters": [
        {"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "ana"},
        {"propertyName": "salario_bruto", "operator": "NOT_HAS_PROPERTY"},
        {"propertyName": "createdate", "operator": "GTE", "value": "946684800000"}]}]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(tokens)).await;
    assert_eq!(reply.body["total"], 300, "{}", reply.body);
}

#[tokio::test]
async fn search_has_its_own_limits() {
    let sandbox = sandbox(Tier::Professional);
    seed_members(&sandbox, 10).await;
    let search = |body: Value| send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(body));
    let too_many_groups: Vec<Value> = (0..6).map(|_| json!({"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]})).collect();
    assert_eq!(search(json!({"filterGroups": too_many_groups})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(search(json!({"limit": 201})).await.status, StatusCode::BAD_REQUEST);
    let past = search(json!({"limit": 200, "after": "9900"})).await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
    assert!(past.body["message"].as_str().unwrap().contains("10000"), "{}", past.body);
    assert_eq!(
        search(json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]})).await.status,
        StatusCode::BAD_REQUEST
    );
    // 4 searches so far this second (each spends, answered or not): the 6th is refused
    assert_eq!(search(json!({})).await.status, StatusCode::OK);
    let refused = search(json!({})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["policyName"], "SECONDLY");
    assert!(!refused.headers.contains_key("x-hubspot-ratelimit-max"));
    // the ten-second bucket was not touched by searches
    let plain = send(&sandbox, "GET", "/crm/v3/properties/contacts", Some(TOKEN), None).await;
    assert_eq!(plain.headers["x-hubspot-ratelimit-remaining"], "188", "190 less the one upsert call and this one");
}

#[tokio::test]
async fn new_writes_reach_search_after_the_configured_delay() {
    let sandbox = sandbox(Tier::Professional);
    sandbox.set_faults(serde_json::from_value(json!({"search_delay_ms": 60_000})).unwrap());
    seed_members(&sandbox, 3).await;
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(reply.body["total"], 0, "not indexed yet");
    sandbox.set_faults(Default::default());
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(reply.body["total"], 3);
}
