//! Custom object schemas: define, read, patch and delete a type `2-<n>`, and use it through the
//! objects API like a standard type. The schemas spec is not among the shared spec files, so
//! `ObjectSchema`'s required keys are checked here as that spec (CRM/Schemas v3) lists them, and
//! its property definitions against the properties spec's `Property`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{PORTAL_ID, TOKEN, conforms, sandbox, send};
use syncline_sandbox::{PortalConfig, Sandbox, Seed, Tier};

const SCHEMAS: &str = "/crm-object-schemas/v3/schemas";

fn cars() -> Value {
    json!({
        "name": "car",
        "labels": {"singular": "Car", "plural": "Cars"},
        "primaryDisplayProperty": "plate",
        "requiredProperties": ["plate"],
        "searchableProperties": ["plate"],
        "associatedObjects": ["CONTACT"],
        "properties": [
            {"name": "plate", "label": "Plate", "type": "string", "fieldType": "text", "hasUniqueValue": true},
            {"name": "year", "label": "Year", "type": "number", "fieldType": "number"},
            {"name": "fuel", "label": "Fuel", "type": "enumeration", "fieldType": "select",
             "options": [{"label": "Gas", "value": "gas", "displayOrder": 1, "hidden": false},
                         {"label": "Electric", "value": "electric", "displayOrder": 2, "hidden": false}]}
        ]
    })
}

/// `ObjectSchema` as the schemas spec requires it.
fn is_object_schema(body: &Value) {
    for key in ["associations", "id", "labels", "name", "properties", "requiredProperties"] {
        assert!(body.get(key).is_some(), "ObjectSchema needs {key}: {body:#}");
    }
    for property in body["properties"].as_array().unwrap() {
        conforms("hubspot/properties.v3.json", "Property", property);
    }
    for association in body["associations"].as_array().unwrap() {
        for key in ["fromObjectTypeId", "id", "toObjectTypeId"] {
            assert!(association[key].is_string(), "AssociationDefinition needs {key}: {association}");
        }
    }
}

#[tokio::test]
async fn a_custom_object_is_defined_then_used_like_a_standard_one() {
    let sandbox = sandbox(Tier::Professional);
    let created = send(&sandbox, "POST", SCHEMAS, Some(TOKEN), Some(cars())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    is_object_schema(&created.body);
    let type_id = created.body["objectTypeId"].as_str().unwrap().to_owned();
    assert!(type_id.starts_with("2-"), "{type_id}");
    let qualified = format!("p{PORTAL_ID}_car");
    assert_eq!(created.body["fullyQualifiedName"], qualified.as_str());
    assert_eq!(created.body["associations"][0]["toObjectTypeId"], "0-1");

    let twice = send(&sandbox, "POST", SCHEMAS, Some(TOKEN), Some(cars())).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    conforms("hubspot/properties.v3.json", "Error", &twice.body);

    let all = send(&sandbox, "GET", SCHEMAS, Some(TOKEN), None).await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 1);
    for name in [&type_id, &qualified] {
        let one = send(&sandbox, "GET", &format!("{SCHEMAS}/{name}"), Some(TOKEN), None).await;
        assert_eq!(one.status, StatusCode::OK);
        is_object_schema(&one.body);
    }

    let objects = format!("/crm/v3/objects/{type_id}");
    let missing_plate = send(&sandbox, "POST", &objects, Some(TOKEN), Some(json!({"properties": {"year": "2020"}}))).await;
    assert_eq!(missing_plate.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_plate.body["errors"][0]["in"], "plate");
    let bad_fuel = send(&sandbox, "POST", &objects, Some(TOKEN), Some(json!({"properties": {"plate": "X", "fuel": "diesel"}}))).await;
    assert_eq!(bad_fuel.body["errors"][0]["code"], "INVALID_OPTION");
    let inputs: Vec<Value> = (0..3).map(|i| json!({"properties": {"plate": format!("CR-{i}"), "fuel": "electric"}})).collect();
    let reply = send(&sandbox, "POST", &format!("{objects}/batch/create"), Some(TOKEN), Some(json!({"inputs": inputs}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    conforms("hubspot/objects.v3.json", "BatchResponseSimplePublicObject", &reply.body);
    let upsert = json!({"inputs": [{"id": "CR-1", "idProperty": "plate", "properties": {"year": "2021"}},
                                   {"id": "CR-9", "idProperty": "plate", "properties": {"year": "2022"}}]});
    let reply = send(&sandbox, "POST", &format!("/crm/v3/objects/{qualified}/batch/upsert"), Some(TOKEN), Some(upsert)).await;
    assert_eq!(reply.status, StatusCode::OK, "the fully qualified name reaches the type too: {}", reply.body);
    let news: Vec<bool> = reply.body["results"].as_array().unwrap().iter().map(|r| r["new"].as_bool().unwrap()).collect();
    assert_eq!(news, [false, true]);
    let search =
        json!({"filterGroups": [{"filters": [{"propertyName": "year", "operator": "GTE", "value": "2021"}]}], "properties": ["plate"]});
    let reply = send(&sandbox, "POST", &format!("{objects}/search"), Some(TOKEN), Some(search)).await;
    assert_eq!(reply.body["total"], 2, "{}", reply.body);
    assert!(reply.body["results"][0]["properties"]["hs_lastmodifieddate"].is_string());
    let properties = send(&sandbox, "GET", &format!("/crm/v3/properties/{type_id}"), Some(TOKEN), None).await;
    conforms("hubspot/properties.v3.json", "CollectionResponsePropertyNoPaging", &properties.body);
    assert_eq!(sandbox.objects(TOKEN, &type_id).len(), 4);

    let patch = json!({"labels": {"singular": "Vehicle", "plural": "Vehicles"}, "requiredProperties": ["plate", "year"]});
    let reply = send(&sandbox, "PATCH", &format!("{SCHEMAS}/{type_id}"), Some(TOKEN), Some(patch)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for key in ["id", "labels", "name", "requiredProperties"] {
        assert!(reply.body.get(key).is_some(), "ObjectTypeDefinition needs {key}");
    }
    assert_eq!(reply.body["labels"]["singular"], "Vehicle");
    let no_year = send(&sandbox, "POST", &objects, Some(TOKEN), Some(json!({"properties": {"plate": "CR-7"}}))).await;
    assert_eq!(no_year.status, StatusCode::BAD_REQUEST, "the patched requirement holds");
    let unknown = json!({"requiredProperties": ["colour"]});
    let reply = send(&sandbox, "PATCH", &format!("{SCHEMAS}/{type_id}"), Some(TOKEN), Some(unknown)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let refused = send(&sandbox, "DELETE", &format!("{SCHEMAS}/{type_id}"), Some(TOKEN), None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "records remain");
    assert!(refused.body["message"].as_str().unwrap().contains("4 records"), "{}", refused.body);
    let ids: Vec<Value> = sandbox.objects(TOKEN, &type_id).keys().map(|id| json!({"id": id.to_string()})).collect();
    let reply = send(&sandbox, "POST", &format!("{objects}/batch/archive"), Some(TOKEN), Some(json!({"inputs": ids}))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let deleted = send(&sandbox, "DELETE", &format!("{SCHEMAS}/{type_id}"), Some(TOKEN), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(send(&sandbox, "GET", &format!("{SCHEMAS}/{type_id}"), Some(TOKEN), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(&sandbox, "GET", &objects, Some(TOKEN), None).await.status, StatusCode::BAD_REQUEST, "the type is gone");
    let archived = send(&sandbox, "GET", &format!("{SCHEMAS}?archived=true"), Some(TOKEN), None).await;
    assert_eq!(archived.body["results"][0]["archived"], true);
    let purged = send(&sandbox, "DELETE", &format!("{SCHEMAS}/{type_id}?archived=true"), Some(TOKEN), None).await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT);
    let again = send(&sandbox, "POST", SCHEMAS, Some(TOKEN), Some(cars())).await;
    assert_eq!(again.status, StatusCode::CREATED, "the name is free again");
    assert_ne!(again.body["objectTypeId"], type_id.as_str());
}

#[tokio::test]
async fn schemas_hubspot_would_refuse_are_400_naming_the_problem() {
    let sandbox = sandbox(Tier::Professional);
    let mut cases = Vec::new();
    let mut unknown_required = cars();
    unknown_required["requiredProperties"] = json!(["vin"]);
    cases.push((unknown_required, "vin"));
    let mut no_options = cars();
    no_options["properties"][2]["options"] = json!([]);
    cases.push((no_options, "fuel"));
    let mut bad_type = cars();
    bad_type["properties"][1]["type"] = json!("integer");
    cases.push((bad_type, "integer"));
    let mut bad_name = cars();
    bad_name["name"] = json!("My Car");
    cases.push((bad_name, "My Car"));
    let mut bad_association = cars();
    bad_association["associatedObjects"] = json!(["SPACESHIP"]);
    cases.push((bad_association, "SPACESHIP"));
    for (egg, named) in cases {
        let reply = send(&sandbox, "POST", SCHEMAS, Some(TOKEN), Some(egg)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        conforms("hubspot/properties.v3.json", "Error", &reply.body);
        assert!(reply.body["message"].as_str().unwrap().contains(named), "{named}: {}", reply.body);
    }
    let all = send(&sandbox, "GET", SCHEMAS, Some(TOKEN), None).await;
    assert_eq!(all.body["results"], json!([]));
}

#[test]
fn a_seed_can_define_custom_objects_and_a_bad_one_is_named() {
    let mut seed = Seed::members_demo();
    seed.hubspot[0].custom_objects = vec![serde_json::from_value(cars()).unwrap()];
    seed.hubspot[0].portal_id = Some(10_000_000);
    let sandbox = Sandbox::from_seed(seed).unwrap();
    assert!(sandbox.objects("sandbox-token", "p10000000_car").is_empty(), "the type exists and is empty");

    let mut egg = cars();
    egg["requiredProperties"] = json!(["vin"]);
    let portal = PortalConfig {
        token: "t".into(),
        tier: Tier::Enterprise,
        portal_id: None,
        properties: Default::default(),
        custom_objects: vec![serde_json::from_value(egg).unwrap()],
        webhooks: None,
    };
    let error = Sandbox::from_seed(Seed { hubspot: vec![portal], ..Seed::default() }).err().unwrap();
    assert!(error.contains("hubspot portal 1") && error.contains("custom object car") && error.contains("vin"), "{error}");
}
