//! The members example end to end: reject, re-run, fix, replay.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn members_example_end_to_end() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "10000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // 1. first run: 9,500 written, 500 dead letters naming field and rule
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 3, "exit 3 means finished with dead letters: {}", stderr(&out));
    let warehouse = sqlite(&d.join("members-warehouse.db")).await;
    let state = sqlite(&d.join("members-state.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 9500);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'").await, 500);
    let rules: Vec<(String, String, String)> =
        sqlx::query_as("SELECT field, rule, message FROM dead_letters").fetch_all(&state).await.unwrap();
    for (field, rule, message) in &rules {
        assert!(!field.is_empty() && !message.is_empty(), "{field} {rule} {message}");
        assert!(["cedula", "phone", "email", "beneficiaries", "map_values", "require", "enum"].contains(&rule.as_str()), "{rule}");
    }
    // the mapping normalized what it should
    let (phone, cedula, email): (Option<String>, String, String) =
        sqlx::query_as("SELECT phone, no__de_cedula, email FROM members WHERE numero_asociado = 1").fetch_one(&warehouse).await.unwrap();
    assert!(phone.is_some_and(|p| p.starts_with("+506") && p.len() == 12));
    assert_eq!(cedula.len(), 9);
    assert_eq!(email, email.to_lowercase());
    let placeholders = count(&warehouse, "SELECT COUNT(*) FROM members WHERE mobilephone = '+50622120000'").await;
    assert_eq!(placeholders, 0, "placeholder phones become empty");

    // 2. no source change: reads 0 rows
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(d, "members.yaml")["read_count"], 0);

    // 3. fix 100 bad rows at the source: exactly those are read and written, their dead letters resolved
    let source = sqlite(&d.join("members.db")).await;
    let fixable: Vec<(String, String)> =
        sqlx::query_as("SELECT record_key, rule FROM dead_letters WHERE rule IN ('phone', 'cedula') ORDER BY id LIMIT 100")
            .fetch_all(&state)
            .await
            .unwrap();
    assert_eq!(fixable.len(), 100);
    for (key, rule) in &fixable {
        let column = if rule == "phone" { "phone = '8888-7777'" } else { "no__de_cedula = '1-0234-0567'" };
        let sql = format!("UPDATE members SET {column}, lastmodifieddate = '2030-01-01 00:00:00' WHERE numero_asociado = {key}");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&source).await.unwrap();
    }
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = last_run(d, "members.yaml");
    assert_eq!(
        (run["read_count"].as_i64(), run["created_count"].as_i64(), run["rejected_count"].as_i64()),
        (Some(100), Some(100), Some(0))
    );
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 9600);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'resolved'").await, 100);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'").await, 400);

    // 4. a rule change, then replay: the stored records that now pass are written and closed
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    let relaxed = config.replace(r#""5": Unión Libre }"#, r#""5": Unión Libre, "9": Otro }"#);
    assert_ne!(config, relaxed, "the example's marital status map changed shape");
    std::fs::write(d.join("members.yaml"), relaxed).unwrap();
    let marital = count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open' AND rule = 'map_values'").await;
    assert!(marital > 0);
    let out = syncline(d, "members.yaml", &["dlq", "replay"]);
    assert_eq!(code(&out), 3, "the other rejects stay open: {}", stderr(&out));
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'replayed'").await, marital);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'").await, 400 - marital);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open' AND attempts = 2").await, 400 - marital);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members WHERE marital_status = 'Otro'").await, marital);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 9600 + marital);

    // ignore keeps the row as history
    let id = count(&state, "SELECT MIN(id) FROM dead_letters WHERE status = 'open'").await;
    let out = syncline(d, "members.yaml", &["dlq", "ignore", &id.to_string()]);
    assert_eq!(code(&out), 0);
    let out = syncline(d, "members.yaml", &["dlq", "show", &id.to_string()]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["status"], "ignored");
    assert!(shown["payload"]["numero_asociado"].is_number());
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_writes_nothing_and_plans_every_record() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "1000"]).output().unwrap();
    assert_eq!(code(&out), 0);
    // write half, then change 10 of the written rows at the source
    let out = syncline(d, "members.yaml", &["run", "members", "--limit", "500"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let source = sqlite(&d.join("members.db")).await;
    sqlx::query("UPDATE members SET lastname = 'Cambiado' WHERE numero_asociado IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)")
        .execute(&source)
        .await
        .unwrap();
    let state = sqlite(&d.join("members-state.db")).await;
    let cursor_before: (String,) = sqlx::query_as("SELECT cursor FROM cursors").fetch_one(&state).await.unwrap();

    let out = syncline(d, "members.yaml", &["run", "members", "--full", "--dry-run", "--plan-out", "plan.jsonl"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let plan: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("plan.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(plan.len(), 1000);
    let action = |a: &str| plan.iter().filter(|p| p["action"] == a).count();
    assert_eq!(action("rejected"), 50);
    assert_eq!(action("update"), 10);
    assert_eq!(action("create"), 475, "the 475 valid rows past the limit");
    assert_eq!(action("unchanged"), 465);
    let update = plan.iter().find(|p| p["action"] == "update").unwrap();
    let changes = update["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only lastname differs: {update}");
    assert_eq!((changes[0][0].as_str(), changes[0][2].as_str()), (Some("lastname"), Some("Cambiado")));
    assert!(plan.iter().filter(|p| p["action"] == "rejected").all(|p| p["reason"].as_str().is_some_and(|r| !r.is_empty())));

    // nothing written, no cursor moved; the run is in the history as a dry run
    let warehouse = sqlite(&d.join("members-warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members WHERE lastname = 'Cambiado'").await, 0);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 475);
    let cursor_after: (String,) = sqlx::query_as("SELECT cursor FROM cursors").fetch_one(&state).await.unwrap();
    assert_eq!(cursor_before, cursor_after);
    assert_eq!(last_run(d, "members.yaml")["mode"], "dry-run");
}
