//! Associations v4 through the router: links made by the one-record and batch calls, read back
//! in batches and per record in the spec's shapes, labels, removal, and the links an archive or
//! merge changes. The batch calls spend none of the ten-second budget.

use serde_json::{Value, json};
use syncline_sandbox::Tier;

use super::{TOKEN, conforms, sandbox, send};

const SPEC: &str = "hubspot/associations.v4.json";

fn ids(sandbox: &syncline_sandbox::Sandbox, kind: &str, n: usize) -> Vec<u64> {
    let objects: Vec<_> = (0..n)
        .map(|i| {
            let name = if kind == "contacts" { "email" } else { "dealname" };
            std::collections::BTreeMap::from([(name.to_owned(), format!("{kind}{i}@example.com"))])
        })
        .collect();
    sandbox.import(TOKEN, kind, &objects, chrono::Utc::now()).unwrap()
}

fn to_ids(result: &Value) -> Vec<String> {
    result["to"].as_array().unwrap().iter().map(|t| t["toObjectId"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn links_are_made_read_labelled_and_removed_as_hubspot_does() {
    let sandbox = sandbox(Tier::Free);
    let contacts = ids(&sandbox, "contacts", 3);
    let deals = ids(&sandbox, "deals", 2);
    let (c0, c1, c2, d0, d1) = (contacts[0], contacts[1], contacts[2], deals[0], deals[1]);

    // the one-record default link, then a batch of them
    let put = send(&sandbox, "PUT", &format!("/crm/v4/objects/contacts/{c0}/associations/default/deals/{d0}"), Some(TOKEN), None).await;
    assert_eq!(put.status, 200, "{}", put.body);
    conforms(SPEC, "BatchResponsePublicDefaultAssociation", &put.body);
    let inputs = json!({"inputs": [{"from": {"id": c1.to_string()}, "to": {"id": d0.to_string()}}, {"from": {"id": c1.to_string()}, "to": {"id": d1.to_string()}}]});
    let batch = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/associate/default", Some(TOKEN), Some(inputs)).await;
    assert_eq!(batch.status, 200, "{}", batch.body);

    // read back from both sides: the documented unlabeled types (contact→deal 4, deal→contact 3)
    let read = |ids: Vec<u64>| json!({"inputs": ids.iter().map(|id| json!({"id": id.to_string()})).collect::<Vec<_>>()});
    let back = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/read", Some(TOKEN), Some(read(vec![c0, c1, c2]))).await;
    assert_eq!(back.status, 207, "c2 has no links: an error beside the results: {}", back.body);
    conforms(SPEC, "BatchResponsePublicAssociationMultiWithLabelWithErrors", &back.body);
    let results = back.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(to_ids(&results[1]), vec![d0.to_string(), d1.to_string()]);
    assert_eq!(results[0]["to"][0]["associationTypes"][0], json!({"category": "HUBSPOT_DEFINED", "typeId": 4}));
    assert_eq!(back.body["errors"][0]["context"]["fromObjectId"], json!([c2.to_string()]));
    let inverse = send(&sandbox, "POST", "/crm/v4/associations/deals/contacts/batch/read", Some(TOKEN), Some(read(vec![d0]))).await;
    assert_eq!(inverse.status, 200, "{}", inverse.body);
    conforms(SPEC, "BatchResponsePublicAssociationMultiWithLabel", &inverse.body);
    assert_eq!(to_ids(&inverse.body["results"][0]), vec![c0.to_string(), c1.to_string()]);
    assert_eq!(inverse.body["results"][0]["to"][0]["associationTypes"][0]["typeId"], 3);

    // a label, then a labelled link beside the unlabeled one
    let label = send(
        &sandbox,
        "POST",
        "/crm/associations/v4/contacts/deals/labels",
        Some(TOKEN),
        Some(json!({"label": "Titular", "name": "titular"})),
    )
    .await;
    assert_eq!(label.status, 200, "{}", label.body);
    let type_id = label.body["results"][0]["typeId"].as_u64().unwrap();
    let labels = send(&sandbox, "GET", "/crm/associations/v4/contacts/deals/labels", Some(TOKEN), None).await;
    assert_eq!(labels.body["results"].as_array().unwrap().len(), 2, "{}", labels.body);
    let create = json!({"inputs": [{"from": {"id": c0.to_string()}, "to": {"id": d0.to_string()},
        "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": type_id}]}]});
    let created = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/create", Some(TOKEN), Some(create)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    conforms(SPEC, "BatchResponseLabelsBetweenObjectPair", &created.body);
    assert_eq!(created.body["results"][0]["labels"], json!(["Titular"]));
    let listed = send(&sandbox, "GET", &format!("/crm/v4/objects/contacts/{c0}/associations/deals?limit=500"), Some(TOKEN), None).await;
    assert_eq!(listed.status, 200);
    conforms(SPEC, "CollectionResponseMultiAssociatedObjectWithLabelForwardPaging", &listed.body);
    let types = listed.body["results"][0]["associationTypes"].as_array().unwrap();
    assert_eq!(types.len(), 2, "{}", listed.body);
    assert!(types.iter().any(|t| t["label"] == "Titular" && t["category"] == "USER_DEFINED"));
    let wrong = json!({"inputs": [{"from": {"id": c0.to_string()}, "to": {"id": d0.to_string()},
        "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 9999}]}]});
    let refused = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/create", Some(TOKEN), Some(wrong)).await;
    assert_eq!(refused.status, 207, "an unknown type is named: {}", refused.body);
    assert!(refused.body["errors"][0]["message"].as_str().unwrap().contains("9999"));

    // removal: one pair by the one-record call, one by batch archive; an archived deal's go too
    let gone = send(&sandbox, "DELETE", &format!("/crm/v4/objects/contacts/{c0}/associations/deals/{d0}"), Some(TOKEN), None).await;
    assert_eq!(gone.status, 204);
    let archive = json!({"inputs": [{"from": {"id": c1.to_string()}, "to": [{"id": d1.to_string()}]}]});
    assert_eq!(send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/archive", Some(TOKEN), Some(archive)).await.status, 204);
    assert_eq!(sandbox.links(TOKEN, "contacts", "deals").unwrap(), [(c1, d0, 4)].into());
    assert_eq!(send(&sandbox, "DELETE", &format!("/crm/v3/objects/deals/{d0}"), Some(TOKEN), None).await.status, 204);
    assert!(sandbox.links(TOKEN, "contacts", "deals").unwrap().is_empty(), "an archived deal's links went with it");

    // a merge moves the links of the contact merged away
    sandbox.associate(TOKEN, ("contacts", c2), ("deals", d1)).unwrap();
    let merge = json!({"primaryObjectId": c0.to_string(), "objectIdToMerge": c2.to_string()});
    let merged = send(&sandbox, "POST", "/crm/v3/objects/contacts/merge", Some(TOKEN), Some(merge)).await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(sandbox.links(TOKEN, "contacts", "deals").unwrap(), [(c0, d1, 4)].into());

    // more than 1,000 inputs is a 400; and no batch call spent the ten-second budget
    let many = read((0..1001).collect());
    let refused = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/read", Some(TOKEN), Some(many)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let remaining = |reply: &super::Reply| reply.headers["x-hubspot-ratelimit-remaining"].to_str().unwrap().parse::<u64>().unwrap();
    let before = send(&sandbox, "GET", "/crm/associations/v4/contacts/deals/labels", Some(TOKEN), None).await;
    let batch = send(&sandbox, "POST", "/crm/v4/associations/contacts/deals/batch/read", Some(TOKEN), Some(read(vec![c0]))).await;
    let after = send(&sandbox, "GET", "/crm/associations/v4/contacts/deals/labels", Some(TOKEN), None).await;
    assert_eq!(remaining(&batch), remaining(&before), "the batch read spent nothing");
    assert_eq!(remaining(&after), remaining(&before) - 1, "the labels read spent one call");
}

/// Owners and pipelines, the reference data, in the spec's shapes: owners paged, live or
/// archived; deals start with HubSpot's default pipeline; one can be added and archived.
#[tokio::test]
async fn owners_and_pipelines_are_served_as_hubspot_does() {
    let sandbox = sandbox(Tier::Free);
    for n in 0..3 {
        sandbox.add_owner(TOKEN, &format!("owner{n}@example.cr"), "Ana", &format!("Mora {n}")).unwrap();
    }
    let page = send(&sandbox, "GET", "/crm/v3/owners?limit=2", Some(TOKEN), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    conforms("hubspot/owners.v3.json", "CollectionResponsePublicOwnerForwardPaging", &page.body);
    assert_eq!(page.body["results"].as_array().unwrap().len(), 2);
    let after = page.body["paging"]["next"]["after"].as_str().unwrap().to_owned();
    let rest = send(&sandbox, "GET", &format!("/crm/v3/owners?limit=2&after={after}"), Some(TOKEN), None).await;
    assert_eq!(rest.body["results"][0]["email"], "owner2@example.cr");
    assert!(rest.body.get("paging").is_none(), "the last page has no paging: {}", rest.body);
    let archived = send(&sandbox, "GET", "/crm/v3/owners?archived=true", Some(TOKEN), None).await;
    assert_eq!(archived.body["results"], json!([]));

    let pipelines = send(&sandbox, "GET", "/crm/v3/pipelines/deals", Some(TOKEN), None).await;
    assert_eq!(pipelines.status, 200);
    conforms("hubspot/pipelines.v3.json", "CollectionResponsePipelineNoPaging", &pipelines.body);
    assert_eq!(pipelines.body["results"][0]["id"], "default");
    assert_eq!(pipelines.body["results"][0]["stages"].as_array().unwrap().len(), 7);
    let new = json!({"label": "Créditos", "displayOrder": 1, "stages": [
        {"label": "Solicitud", "displayOrder": 0, "metadata": {"probability": "0.3"}},
        {"label": "Aprobado", "displayOrder": 1, "metadata": {"probability": "1.0", "isClosed": "true"}}]});
    let created = send(&sandbox, "POST", "/crm/v3/pipelines/deals", Some(TOKEN), Some(new)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    conforms("hubspot/pipelines.v3.json", "Pipeline", &created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(send(&sandbox, "GET", "/crm/v3/pipelines/deals", Some(TOKEN), None).await.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(send(&sandbox, "DELETE", &format!("/crm/v3/pipelines/deals/{id}"), Some(TOKEN), None).await.status, 204);
    assert_eq!(send(&sandbox, "GET", "/crm/v3/pipelines/deals", Some(TOKEN), None).await.body["results"].as_array().unwrap().len(), 1);
    let unknown = send(&sandbox, "GET", "/crm/v3/pipelines/dealz", Some(TOKEN), None).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
}
