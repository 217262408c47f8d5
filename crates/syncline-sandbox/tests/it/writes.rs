//! Single and batch writes on the objects API: create (201), update, archive (204), batch
//! create with and without `objectWriteTraceId`, batch update and archive, the `archived` query
//! parameter, and appointments (`0-421`). Every body is checked against the official specs.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{TOKEN, conforms, member, sandbox, send};
use syncline_sandbox::Tier;

const SPEC: &str = "hubspot/objects.v3.json";

fn contact(n: usize) -> Value {
    json!({"properties": {"email": format!("ana{n}@example.cr"), "firstname": format!("Ana {n}"), "marital_status": "Soltero"}})
}

#[tokio::test]
async fn create_update_and_archive_one_contact() {
    let sandbox = sandbox(Tier::Free);
    let created = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(contact(1))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    conforms(SPEC, "SimplePublicObject", &created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["properties"]["email"], "ana1@example.cr");
    assert_eq!(created.body["properties"]["hs_object_id"], id.as_str());
    let first_modified = created.body["properties"]["lastmodifieddate"].as_str().unwrap().to_owned();

    let twin = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(contact(1))).await;
    assert_eq!(twin.status, StatusCode::CONFLICT);
    conforms(SPEC, "Error", &twin.body);
    assert_eq!(twin.body["message"], format!("Contact already exists. Existing ID: {id}"));

    let bad = json!({"properties": {"email": "b@example.cr", "marital_status": "Soltera", "nope": "x"}});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(bad)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    conforms(SPEC, "Error", &reply.body);
    let fields: Vec<&str> = reply.body["errors"].as_array().unwrap().iter().map(|e| e["in"].as_str().unwrap()).collect();
    assert_eq!(fields, ["marital_status", "nope"]);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let patch = json!({"properties": {"firstname": "Ana María", "marital_status": ""}});
    let updated = send(&sandbox, "PATCH", &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), Some(patch)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    conforms(SPEC, "SimplePublicObject", &updated.body);
    assert_eq!(updated.body["properties"]["firstname"], "Ana María");
    assert!(updated.body["properties"]["lastmodifieddate"].as_str().unwrap() > first_modified.as_str(), "the stamp moves on");
    let by_email = "/crm/v3/objects/contacts/ana1@example.cr?idProperty=email";
    let reply = send(&sandbox, "PATCH", by_email, Some(TOKEN), Some(json!({"properties": {"lastname": "Mora"}}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(&sandbox, "GET", &format!("{by_email}&properties=firstname,lastname,marital_status"), Some(TOKEN), None).await;
    assert_eq!(reply.body["properties"]["lastname"], "Mora");
    assert_eq!(reply.body["properties"]["marital_status"], Value::Null, "an empty string cleared it");
    let missing = send(&sandbox, "PATCH", "/crm/v3/objects/contacts/999999", Some(TOKEN), Some(json!({"properties": {}}))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    conforms(SPEC, "Error", &missing.body);
    let read_only = json!({"properties": {"lastmodifieddate": "2030-01-01T00:00:00Z"}});
    let reply = send(&sandbox, "PATCH", &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), Some(read_only)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["errors"][0]["code"], "READ_ONLY_VALUE");

    let reply = send(&sandbox, "DELETE", &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.body, json!(""), "204 has no body");
    let gone = send(&sandbox, "GET", &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let archived = send(&sandbox, "GET", &format!("/crm/v3/objects/contacts/{id}?archived=true"), Some(TOKEN), None).await;
    assert_eq!(archived.status, StatusCode::OK);
    conforms(SPEC, "SimplePublicObjectWithAssociations", &archived.body);
    assert_eq!(archived.body["archived"], true);
    assert!(archived.body["archivedAt"].is_string());
    let again = send(&sandbox, "DELETE", &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "archiving twice is still 204");

    let reborn = send(&sandbox, "POST", "/crm/v3/objects/contacts", Some(TOKEN), Some(contact(1))).await;
    assert_eq!(reborn.status, StatusCode::CREATED, "an archived contact's email is free again");
    assert_ne!(reborn.body["id"], id.as_str());
    let kinds: Vec<&str> = sandbox.ledger().effects.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["created", "updated", "updated", "archived", "created"]);
}

#[tokio::test]
async fn batch_create_reports_per_input_errors_only_with_trace_ids() {
    let sandbox = sandbox(Tier::Free);
    let path = "/crm/v3/objects/contacts/batch/create";
    let mut inputs: Vec<Value> = (0..10).map(contact).collect();
    inputs[4]["properties"]["marital_status"] = json!("Soltera");
    let untraced = send(&sandbox, "POST", path, Some(TOKEN), Some(json!({"inputs": inputs.clone()}))).await;
    assert_eq!(untraced.status, StatusCode::BAD_REQUEST, "{}", untraced.body);
    conforms(SPEC, "Error", &untraced.body);
    assert!(untraced.body["message"].as_str().unwrap().contains("Soltera"), "{}", untraced.body);
    assert_eq!(sandbox.ledger().writes(), 0, "one bad input fails the whole untraced batch");

    let twins = json!({"inputs": [contact(50), contact(50)]});
    let reply = send(&sandbox, "POST", path, Some(TOKEN), Some(twins)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "two inputs claiming one email");
    assert_eq!(sandbox.ledger().writes(), 0);

    for (i, input) in inputs.iter_mut().enumerate() {
        input["objectWriteTraceId"] = json!(format!("trace-{i}"));
    }
    let traced = send(&sandbox, "POST", path, Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    assert_eq!(traced.status, StatusCode::MULTI_STATUS, "{}", traced.body);
    conforms(SPEC, "BatchResponseSimplePublicObjectWithErrors", &traced.body);
    assert_eq!(traced.body["numErrors"], 1);
    assert_eq!(traced.body["errors"][0]["context"]["objectWriteTraceId"], json!(["trace-4"]));
    assert_eq!(traced.body["errors"][0]["errors"][0]["in"], "marital_status");
    let results = traced.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|r| r["objectWriteTraceId"].as_str().is_some_and(|t| t != "trace-4")));

    let clean = json!({"inputs": [contact(20), contact(21)]});
    let reply = send(&sandbox, "POST", path, Some(TOKEN), Some(clean)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    conforms(SPEC, "BatchResponseSimplePublicObject", &reply.body);
    assert_eq!(sandbox.ledger().writes(), 11);
    assert_eq!(sandbox.ledger().calls("/batch/create").iter().map(|c| c.inputs).collect::<Vec<_>>(), [10, 2, 10, 2]);
}

#[tokio::test]
async fn batch_update_and_archive() {
    let sandbox = sandbox(Tier::Free);
    let inputs: Vec<Value> = (0..5).map(member).collect();
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    let ids: Vec<String> = reply.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();

    let update = json!({"inputs": [
        {"id": ids[0], "properties": {"firstname": "Uno"}, "objectWriteTraceId": "t0"},
        {"id": "A00001", "idProperty": "numero_asociado", "properties": {"firstname": "Dos"}},
        {"id": ids[2], "properties": {"salario_bruto": "mucho"}},
        {"id": "424242", "properties": {"firstname": "Nadie"}},
        {"id": ids[3], "properties": {"email": "ana4@example.cr"}},
    ]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/update", Some(TOKEN), Some(update)).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{}", reply.body);
    conforms(SPEC, "BatchResponseSimplePublicObjectWithErrors", &reply.body);
    let categories: Vec<&str> = reply.body["errors"].as_array().unwrap().iter().map(|e| e["category"].as_str().unwrap()).collect();
    assert_eq!(categories, ["VALIDATION_ERROR", "OBJECT_NOT_FOUND", "CONFLICT"]);
    assert_eq!(reply.body["results"][0]["objectWriteTraceId"], "t0");
    assert_eq!(reply.body["results"][1]["properties"]["firstname"], "Dos");
    let twice = json!({"inputs": [{"id": ids[0], "properties": {}}, {"id": ids[0], "properties": {}}]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/update", Some(TOKEN), Some(twice)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let archive = json!({"inputs": [{"id": ids[0]}, {"id": ids[1]}, {"id": "424242"}]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/archive", Some(TOKEN), Some(archive)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let archived_effects = sandbox.ledger().effects.iter().filter(|e| e.kind == "archived").count();
    assert_eq!(archived_effects, 2, "an unknown id is passed over");

    let live = send(&sandbox, "GET", "/crm/v3/objects/contacts?limit=100", Some(TOKEN), None).await;
    assert_eq!(live.body["results"].as_array().unwrap().len(), 3);
    let gone = send(&sandbox, "GET", "/crm/v3/objects/contacts?archived=true", Some(TOKEN), None).await;
    conforms(SPEC, "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging", &gone.body);
    let gone_ids: Vec<&str> = gone.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(gone_ids, [ids[0].as_str(), ids[1].as_str()]);

    let read = json!({"inputs": [{"id": ids[0]}, {"id": ids[2]}], "properties": ["firstname"]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/read?archived=true", Some(TOKEN), Some(read.clone())).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    assert_eq!(reply.body["results"][0]["properties"]["firstname"], "Uno");
    assert_eq!(reply.body["errors"][0]["context"]["ids"], json!([ids[2]]), "a live object is not in the archived read");
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/read", Some(TOKEN), Some(read)).await;
    assert_eq!(reply.body["errors"][0]["context"]["ids"], json!([ids[0]]));

    let search = send(&sandbox, "POST", "/crm/v3/objects/contacts/search", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(search.body["total"], 3, "search sees live objects only");
    let upsert = json!({"inputs": [member(0)]});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/contacts/batch/upsert", Some(TOKEN), Some(upsert)).await;
    assert_eq!(reply.body["results"][0]["new"], true, "upserting an archived key creates a new contact");
}

#[tokio::test]
async fn appointments_are_object_type_0_421() {
    let sandbox = sandbox(Tier::Free);
    let properties = send(&sandbox, "GET", "/crm/v3/properties/0-421", Some(TOKEN), None).await;
    conforms("hubspot/properties.v3.json", "CollectionResponsePropertyNoPaging", &properties.body);
    let names: Vec<&str> = properties.body["results"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["hs_object_id", "hs_createdate", "hs_lastmodifieddate", "hs_appointment_start"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let body = json!({"properties": {"hs_appointment_name": "Revisión", "hs_appointment_start": "2026-12-01T15:00:00Z"}});
    let created = send(&sandbox, "POST", "/crm/v3/objects/0-421", Some(TOKEN), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    conforms(SPEC, "SimplePublicObject", &created.body);
    assert!(created.body["properties"]["hs_lastmodifieddate"].is_string());
    let bad = json!({"properties": {"hs_appointment_start": "next tuesday"}});
    let reply = send(&sandbox, "POST", "/crm/v3/objects/appointments", Some(TOKEN), Some(bad)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["errors"][0]["code"], "INVALID_DATETIME");
    let list = send(&sandbox, "GET", "/crm/v3/objects/appointments?properties=hs_appointment_name", Some(TOKEN), None).await;
    assert_eq!(list.body["results"][0]["properties"]["hs_appointment_name"], "Revisión");
    assert_eq!(sandbox.objects(TOKEN, "0-421").len(), 1);
    let unknown = send(&sandbox, "GET", "/crm/v3/objects/2-999", Some(TOKEN), None).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body["message"].as_str().unwrap().contains("2-999"));
}
