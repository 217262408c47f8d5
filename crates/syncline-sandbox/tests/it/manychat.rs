//! The ManyChat emulator: tokens, envelopes, subscribers, tags, custom fields, content
//! validation, the 24-hour rule (3011), per-method limits and the ledger of delivered messages.

use serde_json::{Value, json};
use syncline_sandbox::{PageConfig, Sandbox};

use super::send;

const TOKEN: &str = "777001:key-abc";

fn page(rate_limits: bool) -> Sandbox {
    let sandbox = Sandbox::new();
    let config: PageConfig = serde_json::from_value(json!({
        "token": TOKEN,
        "tags": ["vip"],
        "custom_fields": [{"name": "hubspot_contact_id"}, {"name": "score", "type": "number"}],
        "subscribers": [{"first_name": "Ana", "last_name": "Mora", "whatsapp_phone": "+50688887777", "last_interaction_hours_ago": 2.0}],
        "rate_limits": rate_limits,
    }))
    .unwrap();
    sandbox.add_page(config).unwrap();
    sandbox
}

async fn post(sandbox: &Sandbox, path: &str, body: Value) -> (u16, Value) {
    let reply = send(sandbox, "POST", path, Some(TOKEN), Some(body)).await;
    (reply.status.as_u16(), reply.body)
}

async fn get(sandbox: &Sandbox, path: &str) -> (u16, Value) {
    let reply = send(sandbox, "GET", path, Some(TOKEN), None).await;
    (reply.status.as_u16(), reply.body)
}

fn text(body: &str) -> Value {
    json!({"version": "v2", "content": {"messages": [{"type": "text", "text": body}]}})
}

#[test]
fn tokens_must_name_a_page_and_a_key() {
    for bad in ["no-colon", "abc:key", "123:"] {
        let config = PageConfig { token: bad.into(), ..serde_json::from_value(json!({"token": "1:x"})).unwrap() };
        assert!(Sandbox::new().add_page(config).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn unknown_tokens_are_refused_with_an_error_envelope() {
    let sandbox = page(true);
    let reply = send(&sandbox, "GET", "/fb/page/getInfo", Some("777001:wrong"), None).await;
    assert_eq!(reply.status.as_u16(), 401);
    assert_eq!(reply.body["status"], "error");
    let (status, info) = get(&sandbox, "/fb/page/getInfo").await;
    assert_eq!((status, info["status"].as_str(), info["data"]["id"].as_u64()), (200, Some("success"), Some(777001)));
}

#[tokio::test]
async fn subscribers_are_created_found_tagged_and_given_fields() {
    let sandbox = page(true);
    // a lookup that finds nobody is a success without data
    let (status, miss) = get(&sandbox, "/fb/subscriber/findBySystemField?email=luis@example.com").await;
    assert_eq!((status, &miss["data"]), (200, &Value::Null));
    let (status, refused) = post(&sandbox, "/fb/subscriber/createSubscriber", json!({"first_name": "Luis"})).await;
    assert_eq!(status, 400);
    assert!(refused["details"]["messages"][0]["message"].as_str().unwrap().contains("phone, whatsapp_phone or email"));
    let (status, refused) =
        post(&sandbox, "/fb/subscriber/createSubscriber", json!({"email": "luis@example.com", "has_opt_in_sms": true})).await;
    assert_eq!(status, 400, "{refused}");

    let (status, created) = post(
        &sandbox,
        "/fb/subscriber/createSubscriber",
        json!({"first_name": "Luis", "last_name": "Solís", "email": "luis@example.com", "whatsapp_phone": "+50670001111",
               "has_opt_in_email": true}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id: u64 = created["data"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(created["data"]["last_interaction"], Value::Null);
    let (_, again) = post(&sandbox, "/fb/subscriber/createSubscriber", json!({"email": "LUIS@example.com"})).await;
    assert!(again["details"]["messages"][0]["message"].as_str().unwrap().contains("already exists"), "{again}");

    let (_, by_phone) = get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B50670001111").await;
    assert_eq!(by_phone["data"]["id"], created["data"]["id"], "a phone lookup finds the WhatsApp number");
    let (status, _) = get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B1&email=a@b.c").await;
    assert_eq!(status, 400, "exactly one of email or phone");

    assert_eq!(post(&sandbox, "/fb/subscriber/addTagByName", json!({"subscriber_id": id, "tag_name": "vip"})).await.0, 200);
    assert_eq!(post(&sandbox, "/fb/subscriber/addTagByName", json!({"subscriber_id": id, "tag_name": "nope"})).await.0, 400);
    let fields = json!({"subscriber_id": id, "fields": [{"field_name": "HubSpot_Contact_ID", "field_value": "901"}, {"field_name": "score", "field_value": 7}]});
    assert_eq!(post(&sandbox, "/fb/subscriber/setCustomFields", fields).await.0, 200);
    let wrong = json!({"subscriber_id": id, "fields": [{"field_name": "score", "field_value": "seven"}]});
    let (status, body) = post(&sandbox, "/fb/subscriber/setCustomFields", wrong).await;
    assert!(status == 400 && body.to_string().contains("score"), "{body}");
    let many: Vec<Value> = (0..21).map(|_| json!({"field_name": "score", "field_value": 1})).collect();
    let (status, body) = post(&sandbox, "/fb/subscriber/setCustomFields", json!({"subscriber_id": id, "fields": many})).await;
    assert!(status == 400 && body.to_string().contains("at most 20"), "{body}");

    let (_, info) = get(&sandbox, &format!("/fb/subscriber/getInfo?subscriber_id={id}")).await;
    let info = &info["data"];
    assert_eq!(info["tags"], json!([{"id": 100, "name": "vip"}]));
    let values: Vec<(&str, &Value)> =
        info["custom_fields"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), &f["value"])).collect();
    assert_eq!(values, [("hubspot_contact_id", &json!("901")), ("score", &json!(7))]);
    assert_eq!(info["name"], "Luis Solís");
}

#[tokio::test]
async fn content_is_validated_and_the_24_hour_rule_needs_a_tag() {
    let sandbox = page(false);
    let (_, created) = post(&sandbox, "/fb/subscriber/createSubscriber", json!({"email": "new@example.com"})).await;
    let new_id: u64 = created["data"]["id"].as_str().unwrap().parse().unwrap();
    let (_, ana) = get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B50688887777").await;
    let ana_id: u64 = ana["data"]["id"].as_str().unwrap().parse().unwrap();

    let eleven: Vec<Value> = (0..11).map(|i| json!({"type": "text", "text": format!("m{i}")})).collect();
    let six: Vec<Value> = (0..6).map(|_| json!({"action": "add_tag", "tag_name": "x"})).collect();
    let bad = json!({"version": "v1", "content": {"messages": eleven, "actions": six}});
    let (status, body) = post(&sandbox, "/fb/sending/sendContent", json!({"subscriber_id": ana_id, "data": bad})).await;
    assert_eq!(status, 400);
    let messages: Vec<&str> = body["details"]["messages"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert!(messages.iter().any(|m| m.contains("v2")) && messages.iter().any(|m| m.contains("at most 10")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("at most 5")), "{messages:?}");

    // never interacted: without a message tag the send fails with 3011
    let (status, body) = post(&sandbox, "/fb/sending/sendContent", json!({"subscriber_id": new_id, "data": text("hola")})).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(3011)), "{body}");
    let mut tagged = text("¡Bienvenido!");
    tagged["content"]["actions"] = json!([{"action": "add_tag", "tag_name": "welcomed"}]);
    let body = json!({"subscriber_id": new_id, "data": tagged, "message_tag": "ACCOUNT_UPDATE"});
    assert_eq!(post(&sandbox, "/fb/sending/sendContent", body).await.0, 200);
    // inside the window no tag is needed
    assert_eq!(post(&sandbox, "/fb/sending/sendContent", json!({"subscriber_id": ana_id, "data": text("hola Ana")})).await.0, 200);

    let delivered = sandbox.delivered();
    let texts: Vec<(u64, &str, Option<&str>)> =
        delivered.iter().map(|d| (d.subscriber_id, d.texts[0].as_str(), d.message_tag.as_deref())).collect();
    assert_eq!(texts, [(new_id, "¡Bienvenido!", Some("ACCOUNT_UPDATE")), (ana_id, "hola Ana", None)]);
    let marked = sandbox.subscriber(TOKEN, new_id).unwrap();
    assert_eq!(marked["tags"][0]["name"], "welcomed", "the message's own action tagged the subscriber");
}

#[tokio::test]
async fn each_method_has_its_own_limit_per_second() {
    let sandbox = page(true);
    let (_, ana) = get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B50688887777").await;
    let id: u64 = ana["data"]["id"].as_str().unwrap().parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(post(&sandbox, "/fb/sending/sendContent", json!({"subscriber_id": id, "data": text("x")})).await.0);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // the 30 calls may straddle a second boundary; at least the 26th of one second is refused
    assert!((25..30).contains(&ok) && ok + limited == 30, "{statuses:?}");
    assert_eq!(sandbox.delivered().len(), ok, "a 429 delivers nothing");
    // other methods keep their own budget
    assert_eq!(post(&sandbox, "/fb/subscriber/addTagByName", json!({"subscriber_id": id, "tag_name": "vip"})).await.0, 200);
    let mut finds = 0;
    for _ in 0..60 {
        finds += usize::from(get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B50688887777").await.0 == 200);
    }
    assert!((49..60).contains(&finds), "findBySystemField allows 50/s: {finds}");
}

#[tokio::test]
async fn flows_are_limited_per_subscriber_per_hour() {
    let sandbox = page(false);
    let (_, ana) = get(&sandbox, "/fb/subscriber/findBySystemField?phone=%2B50688887777").await;
    let id: u64 = ana["data"]["id"].as_str().unwrap().parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..101 {
        statuses.push(post(&sandbox, "/fb/sending/sendFlow", json!({"subscriber_id": id, "flow_ns": "content2024"})).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 100);
    assert_eq!(statuses[100], 429);
    assert_eq!(sandbox.delivered()[0].kind, "flow");
}
