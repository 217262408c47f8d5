//! `syncline check` proves what `run` needs: each problem a run would meet is a ✗ line with
//! where it is and how to fix it, and a config that runs checks clean.

use super::*;
use crate::hubspot::hub;
use syncline_sandbox::Tier;

/// A source table, a SQL sink table and a HubSpot pipeline, each with one problem at a time.
const CONFIG: &str = "\
state: sqlite://state.db
pipelines:
  copy:
    source:
      sql:
        url: sqlite://source.db
        table: people
        key: id
        watermark: updated
    transforms:
      - rename: {nick: apodo}
    sink:
      sql:
        url: sqlite://target.db
        table: people
        key: id
  to-hubspot:
    source:
      sql:
        url: sqlite://source.db
        table: people
        key: id
        watermark: updated
    transforms:
      - rename: {id: numero_asociado}
    sink:
      hubspot:
        base_url: ${HUBSPOT_BASE_URL}
        token: ${HUBSPOT_TOKEN:-sandbox-token}
        id_property: numero_asociado
";

async fn fixture(dir: &Path) {
    let source = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.join("source.db").display())).await.unwrap();
    for sql in [
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, nick TEXT, updated TEXT)",
        "INSERT INTO people VALUES (1, 'a@example.cr', 'Ani', '2024-01-01 00:00:01'), (2, 'b@example.cr', NULL, '2024-01-01 00:00:02')",
    ] {
        sqlx::query(sql).execute(&source).await.unwrap();
    }
    let target = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.join("target.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, apodo TEXT, updated TEXT)").execute(&target).await.unwrap();
}

fn check(dir: &Path, hub_url: &str, config: &str) -> (i32, String) {
    std::fs::write(dir.join("check.yaml"), config).unwrap();
    let out = bin().current_dir(dir).env("HUBSPOT_BASE_URL", hub_url).args(["--config", "check.yaml", "check"]).output().unwrap();
    (code(&out), format!("{}{}", stdout(&out), stderr(&out)))
}

/// The ✗ line about `what` and the fix under it.
#[track_caller]
fn problem<'a>(text: &'a str, what: &str, expect: &[&str]) -> &'a str {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(&format!("✗ {what}"))).unwrap_or_else(|| panic!("no ✗ {what} in:\n{text}"));
    for fragment in expect {
        assert!(lines[at].contains(fragment), "{fragment:?} not in {:?}", lines[at]);
    }
    let fix = lines.get(at + 1).copied().unwrap_or_default();
    assert!(fix.trim_start().starts_with("fix: "), "a fix follows: {fix:?}");
    fix
}

#[tokio::test(flavor = "multi_thread")]
async fn check_proves_what_run_needs() {
    let hub = hub(Tier::Free);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d).await;

    // a good config: only ✓, exit 0 — and every probe wrote nothing
    let good = CONFIG.replace(
        "      - rename: {id: numero_asociado}",
        "      - rename: {id: numero_asociado}\n      - select: [numero_asociado, email]",
    );
    let (status, text) = check(d, &hub.url, &good);
    assert_eq!(status, 0, "{text}");
    assert!(!text.contains('✗') && text.lines().filter(|l| l.starts_with('✓')).count() >= 8, "{text}");
    assert!(text.contains("✓ to-hubspot: transforms on the first rows: 2 of 2 pass"), "{text}");
    assert_eq!(hub.upserts(), 0);

    // a key column the table does not have: where it is configured, and the closest column
    let (status, text) = check(d, &hub.url, &good.replacen("key: id\n        watermark", "key: ident\n        watermark", 1));
    assert_eq!(status, 2, "{text}");
    problem(
        &text,
        "copy: source",
        &["check.yaml:8:14", "pipelines.copy.source.sql.key", "no key column \"ident\"", "did you mean \"id\"?"],
    );

    // a watermark that is not there
    let (status, text) = check(d, &hub.url, &good.replacen("watermark: updated", "watermark: lastmodifieddate", 1));
    assert_eq!(status, 2, "{text}");
    problem(&text, "copy: source", &["check.yaml:9:20", "no watermark column \"lastmodifieddate\""]);

    // a table that is not there: the database's own message at the config's line
    let (status, text) = check(d, &hub.url, &good.replacen("table: people", "table: customer", 1));
    assert_eq!(status, 2, "{text}");
    problem(&text, "copy: source", &["check.yaml:7:16", "pipelines.copy.source.sql.table", "customer"]);

    // a field the transforms produce that the sink table has no column for
    let (status, text) = check(d, &hub.url, &good.replace("      - rename: {nick: apodo}", "      - rename: {nick: alias}"));
    assert_eq!(status, 2, "{text}");
    let fix = problem(&text, "copy: sink", &["no column for \"alias\""]);
    assert!(fix.contains("select") && fix.contains("rename"), "{fix}");

    // a mapped field HubSpot has no property for, found from the first rows (no select needed)
    let (status, text) = check(d, &hub.url, CONFIG);
    assert_eq!(status, 2, "{text}");
    let fix = problem(&text, "to-hubspot: sink", &["\"nick\" is not a contacts property"]);
    assert!(fix.contains("create the properties"), "{fix}");
    assert_eq!(hub.upserts(), 0, "check writes nothing");

    // the token HubSpot refuses
    std::fs::write(d.join("check.yaml"), &good).unwrap();
    let out = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", &hub.url)
        .env("HUBSPOT_TOKEN", "pat-revoked")
        .args(["--config", "check.yaml", "check"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    problem(&stdout(&out), "to-hubspot: sink", &["401"]);
}

/// A table missing on PostgreSQL: the message is the database's, at the config's line, never
/// a line of PostgreSQL's own source code.
#[tokio::test(flavor = "multi_thread")]
async fn database_errors_point_at_the_config() {
    let Some(db) = syncline_testkit::postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d).await;
    let config = CONFIG.replacen("url: sqlite://source.db\n        table: people", &format!("url: {}\n        table: customer", db.url), 1);
    let (status, text) = check(d, "http://127.0.0.1:9", &config);
    assert_eq!(status, 2, "{text}");
    problem(&text, "copy: source", &["check.yaml:7:16", "relation \"customer\" does not exist", "42P01"]);
    assert!(!text.contains("at line"), "no server source line: {text}");
    // and `run` says the same
    let out = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
        .args(["--config", "check.yaml", "run", "copy"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let error = stderr(&out);
    assert!(
        error.contains("check.yaml:7:16: pipelines.copy.source.sql.table") && error.contains("relation \"customer\" does not exist"),
        "{error}"
    );
    assert!(!error.contains("at line"), "{error}");
    db.drop().await;
}
