//! What a source's rows may hold that a read must not get wrong. F2: rows whose watermark is
//! NULL are never skipped without a word, on any database — by default a run refuses to start
//! and says how many; with `null_watermarks: first` they are read first, then the rest. F3: text
//! that is not UTF-8 is never altered without a word.

use super::*;
use sqlx::{AssertSqlSafe, Connection};

fn config(source: &str, extra: &str) -> String {
    format!(
        "state: sqlite://state.db
pipelines:
  copy:
    source:
      sql:
        url: {source}
        table: items
        key: k
        watermark: w
        page_size: 7{extra}
    sink:
      sql:
        url: sqlite://target.db
        table: items
        key: k
        create_table: true
"
    )
}

/// 100 rows; `w` is NULL for every `k % 10 = 0`.
fn rows() -> Vec<String> {
    (1..=100)
        .map(|k| {
            let w = if k % 10 == 0 { "NULL".to_owned() } else { format!("'2024-01-01 00:{:02}:{:02}'", k / 60, k % 60) };
            format!("INSERT INTO items (k, name, w) VALUES ({k}, 'row {k}', {w})")
        })
        .collect()
}

async fn on(source_url: &str, dir: &Path) {
    std::fs::write(dir.join("copy.yaml"), config(source_url, "")).unwrap();
    let out = syncline(dir, "copy.yaml", &["run", "copy"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let error = stderr(&out);
    assert!(
        error.contains("copy.yaml:9:20") && error.contains("10 row(s) have no w (NULL)") && error.contains("null_watermarks: first"),
        "{error}"
    );
    assert!(!dir.join("target.db").exists(), "nothing written");
    let out = syncline(dir, "copy.yaml", &["check"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("10 row(s) have no w"), "{}", stdout(&out));

    std::fs::write(dir.join("copy.yaml"), config(source_url, "\n        null_watermarks: first")).unwrap();
    let out = syncline(dir, "copy.yaml", &["run", "copy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(dir, "copy.yaml")["read_count"], 100);
    let target = sqlite(&dir.join("target.db")).await;
    assert_eq!(count(&target, "SELECT COUNT(*) FROM items").await, 100, "every row, the ten without a watermark included");
    assert_eq!(count(&target, "SELECT COUNT(*) FROM items WHERE w IS NULL").await, 10);
    let out = syncline(dir, "copy.yaml", &["run", "copy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(dir, "copy.yaml")["read_count"], 0, "the cursor is past them all");
    let out = syncline(dir, "copy.yaml", &["run", "copy", "--full"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(dir, "copy.yaml")["read_count"], 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn null_watermarks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("source.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE items (k INTEGER PRIMARY KEY, name TEXT, w TEXT)").execute(&pool).await.unwrap();
    for sql in rows() {
        sqlx::query(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    on("sqlite://source.db", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn null_watermarks_on_postgres() {
    let Some(db) = syncline_testkit::postgres().await else { return };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE items (k BIGINT PRIMARY KEY, name TEXT, w TIMESTAMP NULL)").execute(&mut conn).await.unwrap();
    for sql in rows() {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    on(&db.url, dir.path()).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn null_watermarks_on_mariadb() {
    let Some(db) = syncline_testkit::mysql().await else { return };
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE items (k BIGINT PRIMARY KEY, name TEXT, w DATETIME(6) NULL)").execute(&mut conn).await.unwrap();
    for sql in rows() {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    on(&db.url, dir.path()).await;
    db.drop().await;
}

/// F3: a SQLite TEXT value whose bytes are not UTF-8 (`4A 6F 73 C3 28 FF`) is not written
/// altered: its record becomes a dead letter naming the field and the byte, into a SQL table
/// and into HubSpot alike; a column configured `lossy` or `bytes` takes it as configured.
#[tokio::test(flavor = "multi_thread")]
async fn text_that_is_not_utf8_is_a_dead_letter_unless_configured() {
    let hub = crate::hubspot::hub(syncline_sandbox::Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", d.join("source.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE people (numero_asociado INTEGER PRIMARY KEY, firstname TEXT, w TEXT)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO people VALUES (1, 'Ana', '2024-01-01 00:00:01'), (2, CAST(X'4A6F73C328FF' AS TEXT), '2024-01-01 00:00:02')")
        .execute(&pool)
        .await
        .unwrap();
    let pipeline = |sink: &str, text: &str| {
        format!(
            "state: sqlite://state.db\npipelines:\n  people:\n    source:\n      sql: {{url: sqlite://source.db, table: people, key: numero_asociado, watermark: w{text}}}\n    transforms:\n      - select: [numero_asociado, firstname]\n    sink:\n{sink}"
        )
    };
    let sql_sink = "      sql: {url: sqlite://target.db, table: people, key: numero_asociado, create_table: true}\n";
    let hubspot_sink = format!(
        "      hubspot: {{base_url: \"{}\", token: \"${{HUBSPOT_TOKEN:-sandbox-token}}\", id_property: numero_asociado}}\n",
        hub.url
    );
    for (name, sink) in [("sql.yaml", sql_sink.to_owned()), ("hub.yaml", hubspot_sink.clone())] {
        std::fs::write(d.join(name), pipeline(&sink, "")).unwrap();
        let out = syncline(d, name, &["run", "people", "--full"]);
        assert_eq!(code(&out), 3, "{name}: {}", stderr(&out));
        let list = syncline(d, name, &["dlq", "list", "--json"]);
        let letter: serde_json::Value = serde_json::from_str(stdout(&list).lines().next().expect("a dead letter")).unwrap();
        assert_eq!(
            (letter["record_key"].as_str(), letter["field"].as_str(), letter["rule"].as_str()),
            (Some("2"), Some("firstname"), Some("utf8"))
        );
        let message = letter["message"].as_str().unwrap();
        assert!(message.contains("at byte 3") && message.contains("C3 28 FF") && message.contains("lossy"), "{message}");
        let ignore = syncline(d, name, &["dlq", "ignore", &letter["id"].to_string()]);
        assert_eq!(code(&ignore), 0);
    }
    let target = sqlite(&d.join("target.db")).await;
    assert_eq!(count(&target, "SELECT COUNT(*) FROM people").await, 1, "only Ana");
    assert_eq!(hub.contacts().len(), 1, "only Ana");

    // configured: lossy into the table, bytes into HubSpot
    std::fs::write(d.join("sql.yaml"), pipeline(sql_sink, ", text: {firstname: lossy}")).unwrap();
    assert_eq!(code(&syncline(d, "sql.yaml", &["run", "people", "--full"])), 0);
    let (name,): (String,) = sqlx::query_as("SELECT firstname FROM people WHERE numero_asociado = 2").fetch_one(&target).await.unwrap();
    assert_eq!(name, "Jos\u{FFFD}(\u{FFFD}");
    std::fs::write(d.join("hub.yaml"), pipeline(&hubspot_sink, ", text: {firstname: bytes}")).unwrap();
    let out = syncline(d, "hub.yaml", &["run", "people", "--full"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let contacts = hub.contacts();
    assert_eq!(contacts["2"]["firstname"], "Sm9zwyj/", "base64 of the bytes as stored");
    assert_eq!(contacts["1"]["firstname"], "QW5h", "every value of a bytes column is base64");
}

/// F4: a row inserted with a watermark older than the cursor is invisible to incremental runs;
/// `verify_counts` notices the source holds rows no run has read, says so with the fix, and
/// `--full` reads them.
#[tokio::test(flavor = "multi_thread")]
async fn verify_counts_notices_rows_a_watermark_cannot_see() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "500"]).output().unwrap();
    assert_eq!(code(&out), 0);
    let config = std::fs::read_to_string(d.join("members.yaml"))
        .unwrap()
        .replace("    batch_size: 1000", "    batch_size: 1000\n    verify_counts: true");
    std::fs::write(d.join("members.yaml"), config).unwrap();
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(!stderr(&out).contains("verify_counts"), "the first run is a full one: {}", stderr(&out));
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert!(!stderr(&out).contains("never read"), "475 written and 25 dead letters are the 500 rows: {}", stderr(&out));

    // a row committed late, with a watermark from before the cursor
    let source = sqlite(&d.join("members.db")).await;
    sqlx::query(
        "INSERT INTO members SELECT 9999, no__de_cedula, firstname, lastname, email, phone, mobilephone, date_of_birth, marital_status, provincia, canton, distrito, salario_bruto, salario_neto, nombre_beneficiario_1, porcentaje__beneficiario_1_, nombre_beneficiario_2, porcentaje__beneficiario_2_, nombre_beneficiario_3, porcentaje__beneficiario_3_, '2023-06-01 00:00:00' FROM members WHERE numero_asociado = 1",
    )
    .execute(&source)
    .await
    .unwrap();
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(d, "members.yaml")["read_count"], 0, "the watermark cannot see it");
    let warning = stderr(&out);
    assert!(
        warning.contains("verify_counts") && warning.contains("1 row(s) were never read") && warning.contains("run members --full"),
        "{warning}"
    );
    let out = syncline(d, "members.yaml", &["run", "members", "--full"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let warehouse = sqlite(&d.join("members-warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members WHERE numero_asociado = 9999").await, 1);
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert!(!stderr(&out).contains("never read"), "{}", stderr(&out));
}

/// A pipeline without transforms keeps no second copy of each record, so the record written is
/// what a dead letter carries: a row whose value does not fit the target's column is filed
/// under its source key, names the field, and holds every field as read; the other rows land.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_that_does_not_fit_its_column_is_a_dead_letter_holding_the_row_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", d.join("source.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, qty TEXT, w TEXT)").execute(&source).await.unwrap();
    sqlx::query(
        "INSERT INTO items VALUES (1, '5', '2024-01-01 00:00:01'), (2, 'many', '2024-01-01 00:00:02'), (3, '7', '2024-01-01 00:00:03')",
    )
    .execute(&source)
    .await
    .unwrap();
    let target = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", d.join("target.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, w TEXT)").execute(&target).await.unwrap();
    let config = "state: sqlite://state.db\npipelines:\n  items:\n    source:\n      sql: {url: sqlite://source.db, table: items, key: id, watermark: w}\n    sink:\n      sql: {url: sqlite://target.db, table: items, key: id}\n";
    std::fs::write(d.join("items.yaml"), config).unwrap();
    let out = syncline(d, "items.yaml", &["run", "items", "--full"]);
    assert_eq!(code(&out), 3, "one rejected: {}{}", stdout(&out), stderr(&out));
    let list = syncline(d, "items.yaml", &["dlq", "list", "--json"]);
    let letters: Vec<serde_json::Value> = stdout(&list).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0]["record_key"].as_str(), letters[0]["field"].as_str()), (Some("2"), Some("qty")), "{}", letters[0]);
    assert!(letters[0]["message"].as_str().unwrap().contains("\"many\" does not fit a whole-number column"), "{}", letters[0]);
    let shown = syncline(d, "items.yaml", &["dlq", "show", &letters[0]["id"].to_string()]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["payload"], serde_json::json!({"id": 2, "qty": "many", "w": "2024-01-01 00:00:02"}), "{shown}");
    assert_eq!(count(&target, "SELECT COUNT(*) FROM items").await, 2, "the rows that fit landed");
}
