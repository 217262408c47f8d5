//! The QuickBooks emulator through its HTTP router: OAuth grants and rotation, items written
//! and queried with QuickBooks' faults, batch, and the per-second limit. Item, fault and batch
//! bodies are checked against the element names of Intuit's XSDs (`quickbooks/*.xsd`).

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Value, json};
use syncline_sandbox::{RealmConfig, Sandbox};

use super::{Reply, send_raw};

const REALM: &str = "4620816365";
const CLIENT: (&str, &str) = ("app-client", "app-secret");

fn sandbox(rate_limits: bool) -> Sandbox {
    let sandbox = Sandbox::new();
    let config = RealmConfig {
        refresh_token: Some("refresh-0".into()),
        access_token: Some("access-0".into()),
        rate_limits,
        ..RealmConfig::new(REALM, CLIENT.0, CLIENT.1)
    };
    sandbox.add_realm(config).unwrap();
    sandbox
}

async fn qbo(sandbox: &Sandbox, method: &str, path: &str, body: Option<Value>) -> Reply {
    let path = format!("/v3/company/{REALM}/{path}");
    let headers = [("authorization", "Bearer access-0"), ("content-type", "application/json"), ("accept", "application/json")];
    send_raw(sandbox, method, &path, &headers, body.map(|b| b.to_string()).unwrap_or_default()).await
}

async fn query(sandbox: &Sandbox, text: &str) -> Reply {
    let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
    qbo(sandbox, "GET", &format!("query?query={encoded}&minorversion=75"), None).await
}

async fn token(sandbox: &Sandbox, client: (&str, &str), form: &str) -> Reply {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1)));
    let headers =
        [("authorization", basic.as_str()), ("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")];
    send_raw(sandbox, "POST", "/oauth2/v1/tokens/bearer", &headers, form.to_owned()).await
}

/// The element and attribute names a complex type of an XSD declares (None when the specs
/// folder is absent).
fn xsd_names(file: &str, complex_type: &str) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(syncline_testkit::spec_file(&format!("quickbooks/{file}"))?).unwrap();
    let start = text.find(&format!("<xs:complexType name=\"{complex_type}\"")).unwrap_or_else(|| panic!("{complex_type} in {file}"));
    let block = &text[start..start + text[start..].find("</xs:complexType>").unwrap()];
    let names = block.split("name=\"").skip(2).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect();
    Some(names)
}

/// Asserts every key of an item is an element or attribute of the XSD's `Item` or of
/// `IntuitEntity`, which it extends.
fn item_conforms(item: &Value) {
    let (Some(own), Some(base)) = (xsd_names("Finance.xsd", "Item"), xsd_names("IntuitBaseTypes.xsd", "IntuitEntity")) else { return };
    let unknown: Vec<&String> = item.as_object().unwrap().keys().filter(|k| !own.contains(*k) && !base.contains(*k)).collect();
    assert!(unknown.is_empty(), "not in the XSD's Item: {unknown:?}");
}

/// Asserts a body is `{"Fault": {"Error": [...], "type"}, "time"}` with the XSD's names, and
/// returns the first error's code.
fn fault_code(body: &Value) -> String {
    if let (Some(fault), Some(error)) = (xsd_names("IntuitRestServiceDef.xsd", "Fault"), xsd_names("IntuitRestServiceDef.xsd", "Error")) {
        assert!(body["Fault"].as_object().unwrap().keys().all(|k| fault.contains(k)), "{body}");
        for e in body["Fault"]["Error"].as_array().unwrap() {
            assert!(e.as_object().unwrap().keys().all(|k| error.contains(k)), "{e}");
        }
    }
    body["Fault"]["Error"][0]["code"].as_str().unwrap_or_else(|| panic!("no fault code in {body}")).to_owned()
}

#[test]
fn the_fidelity_check_knows_the_xsds_names() {
    let Some(item) = xsd_names("Finance.xsd", "Item") else { return };
    assert!(item.contains("UnitPrice") && item.contains("IncomeAccountRef") && !item.contains("Colour"), "{item:?}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_an_old_one_is_invalid_grant() {
    let sandbox = sandbox(true);
    let first = token(&sandbox, CLIENT, "grant_type=refresh_token&refresh_token=refresh-0").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.headers.contains_key("intuit_tid"));
    assert_eq!((first.body["token_type"].as_str(), first.body["expires_in"].as_u64()), (Some("bearer"), Some(3600)));
    let rotated = first.body["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, "refresh-0");
    let old = token(&sandbox, CLIENT, "grant_type=refresh_token&refresh_token=refresh-0").await;
    assert_eq!((old.status.as_u16(), old.body["error"].as_str()), (400, Some("invalid_grant")));
    let wrong_client = token(&sandbox, ("app-client", "guess"), &format!("grant_type=refresh_token&refresh_token={rotated}")).await;
    assert_eq!((wrong_client.status.as_u16(), wrong_client.body["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(sandbox.token_refreshes(REALM).unwrap(), 1);
    let access = first.body["access_token"].as_str().unwrap();
    let headers = [("authorization", format!("Bearer {access}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let info = send_raw(&sandbox, "GET", &format!("/v3/company/{REALM}/companyinfo/{REALM}"), &headers, String::new()).await;
    assert_eq!(info.status, 200, "{}", info.body);
    sandbox.expire_access_tokens(REALM).unwrap();
    let expired = send_raw(&sandbox, "GET", &format!("/v3/company/{REALM}/companyinfo/{REALM}"), &headers, String::new()).await;
    assert_eq!((expired.status.as_u16(), fault_code(&expired.body)), (401, "3200".to_owned()));
}

#[tokio::test]
async fn the_consent_redirect_gives_a_code_for_one_exchange() {
    let sandbox = sandbox(true);
    let consent = send_raw(&sandbox, "GET", "/connect/oauth2?client_id=app-client&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&response_type=code&scope=com.intuit.quickbooks.accounting&state=xyz", &[], String::new()).await;
    assert_eq!(consent.status, 302);
    let location = consent.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost/cb?") && location.contains(&format!("realmId={REALM}")) && location.contains("state=xyz"),
        "{location}"
    );
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let form = format!("grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb");
    let granted = token(&sandbox, CLIENT, &form).await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert!(granted.body["refresh_token"].is_string());
    let again = token(&sandbox, CLIENT, &form).await;
    assert_eq!(again.body["error"], "invalid_grant", "a code is used once");
}

#[tokio::test]
async fn items_are_written_queried_and_refused_with_quickbooks_faults() {
    let sandbox = sandbox(false);
    let created = qbo(
        &sandbox,
        "POST",
        "item?minorversion=75",
        Some(json!({"Name": "Gold plan", "Type": "Service", "IncomeAccountRef": {"value": "79"}, "UnitPrice": 20, "Sku": "prod_1"})),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.body["time"].is_string() && created.headers.contains_key("intuit_tid"));
    let item = &created.body["Item"];
    item_conforms(item);
    let id = item["Id"].as_str().unwrap().to_owned();
    let found = query(&sandbox, "select * from Item where Sku = 'prod_1'").await;
    assert_eq!(
        (found.body["QueryResponse"]["Item"][0]["Id"].as_str(), found.body["QueryResponse"]["startPosition"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    let inactive =
        qbo(&sandbox, "POST", "item?minorversion=75", Some(json!({"Id": id, "SyncToken": "0", "sparse": true, "Active": false}))).await;
    assert_eq!((inactive.body["Item"]["Active"].as_bool(), inactive.body["Item"]["SyncToken"].as_str()), (Some(false), Some("1")));
    assert_eq!(query(&sandbox, "select * from Item").await.body["QueryResponse"], json!({}), "queries return active items unless asked");
    let all = query(&sandbox, "select count(*) from Item where Active IN (true, false)").await;
    assert_eq!(all.body["QueryResponse"]["totalCount"], 1);
    let cases = [
        (json!({"Id": id, "SyncToken": "0", "sparse": true, "UnitPrice": 1}), "5010"),
        (json!({"Name": "GOLD PLAN", "Type": "NonInventory"}), "6240"),
        (json!({"Name": "x".repeat(101), "Type": "NonInventory"}), "2050"),
        (json!({"Name": "Silver", "Type": "Service", "IncomeAccountRef": {"value": "80"}}), "610"),
        (json!({"Name": "Silver", "Type": "Service"}), "2020"),
    ];
    for (body, code) in cases {
        let refused = qbo(&sandbox, "POST", "item?minorversion=75", Some(body.clone())).await;
        assert_eq!((refused.status.as_u16(), fault_code(&refused.body)), (400, code.to_owned()), "{body}");
    }
    assert_eq!(fault_code(&query(&sandbox, "select * from Item where Colour = 'red'").await.body), "4001");
    assert_eq!(fault_code(&query(&sandbox, "select * from Item where Name = 'a' or Name = 'b'").await.body), "4000");
    let old_minor = qbo(&sandbox, "GET", &format!("item/{id}?minorversion=65"), None).await;
    assert_eq!(old_minor.status, 400);
    let other_realm = send_raw(&sandbox, "GET", "/v3/company/999/item/1", &[("authorization", "Bearer access-0")], String::new()).await;
    assert_eq!(other_realm.status, 403);
    assert_eq!(sandbox.ledger().writes(), 2, "one create and one update reached the realm");
}

#[tokio::test]
async fn a_batch_runs_up_to_30_operations_each_answered_by_its_bid() {
    let sandbox = sandbox(false);
    let mut requests: Vec<Value> = (0..29)
        .map(|k| json!({"bId": format!("b{k}"), "operation": "create", "Item": {"Name": format!("Item {k}"), "Type": "NonInventory"}}))
        .collect();
    requests.push(json!({"bId": "dup", "operation": "create", "Item": {"Name": "Item 3", "Type": "NonInventory"}}));
    let reply = qbo(&sandbox, "POST", "batch?minorversion=75", Some(json!({"BatchItemRequest": requests}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let responses = reply.body["BatchItemResponse"].as_array().unwrap();
    assert_eq!(responses.len(), 30);
    if let Some(names) = xsd_names("IntuitRestServiceDef.xsd", "BatchItemResponse") {
        assert!(names.contains("bId") && names.contains("Fault") && names.contains("QueryResponse"), "{names:?}");
    }
    assert!(responses[..29].iter().all(|r| r["Item"]["Id"].is_string()));
    assert_eq!((responses[29]["bId"].as_str(), responses[29]["Fault"]["Error"][0]["code"].as_str()), (Some("dup"), Some("6240")));
    let many: Vec<Value> = (0..31).map(|k| json!({"bId": format!("q{k}"), "Query": "select * from Item"})).collect();
    assert_eq!(qbo(&sandbox, "POST", "batch", Some(json!({"BatchItemRequest": many}))).await.status, 400);
    assert_eq!(sandbox.quickbooks_items(REALM).unwrap().len(), 29);
}

#[tokio::test]
async fn a_realm_answers_ten_requests_a_second_then_quickbooks_429() {
    let sandbox = sandbox(true);
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(qbo(&sandbox, "GET", &format!("companyinfo/{REALM}"), None).await.status.as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[10], 429);
    let refused = qbo(&sandbox, "GET", &format!("companyinfo/{REALM}"), None).await;
    assert_eq!((fault_code(&refused.body), refused.body["Fault"]["type"].as_str()), ("3001".to_owned(), Some("SERVICE")));
}
