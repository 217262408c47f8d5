//! Bad input: each is a clear error naming where, exit 2 (1 for a database that cannot be
//! reached), and nothing written.

use super::*;

const GOOD: &str = "\
state: sqlite://state.db
pipelines:
  copy:
    source:
      sql:
        url: sqlite://source.db
        table: items
        key: id
        watermark: updated_at
    sink:
      sql:
        url: sqlite://target.db
        table: items
        key: id
        create_table: true
";

/// Writes `config` to a fresh folder, runs `args`, and checks exit 2 with `expect` in the
/// first error line and nothing written to the state store or the target.
#[track_caller]
fn rejects(config: &str, args: &[&str], expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncline.yaml"), config).unwrap();
    let out = syncline(dir.path(), "syncline.yaml", args);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "exit 2 expected for {args:?}; stderr: {err}");
    let first = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in {err:?}"));
    for fragment in expect {
        assert!(first.contains(fragment), "{first:?} lacks {fragment:?}");
    }
    assert!(!dir.path().join("target.db").exists(), "nothing may be written");
    first.to_owned()
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = syncline(dir.path(), "nope.yaml", &["run", "copy"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("nope.yaml: no such file"), "{}", stderr(&out));
}

#[test]
fn yaml_syntax_error() {
    rejects(
        &GOOD.replace("table: items\n        key: id\n        watermark", "table: [items\n        key: id\n        watermark"),
        &["run", "copy"],
        &["syncline.yaml:"],
    );
}

#[test]
fn unknown_key() {
    let first = rejects(
        &GOOD.replace("create_table: true", "create_table: true\n        bogus: 1"),
        &["run", "copy"],
        &["syncline.yaml:16:9", "pipelines.copy.sink.sql.bogus", "unknown key `bogus`"],
    );
    assert!(first.contains("expected one of") && first.contains("create_table"), "{first}");
    let close = rejects(
        &GOOD.replace("create_table: true", "create_tabel: true"),
        &["run", "copy"],
        &["syncline.yaml:15:9", "pipelines.copy.sink.sql.create_tabel", "did you mean `create_table`?"],
    );
    assert!(!close.contains("expected one of"), "{close}");
}

#[test]
fn wrong_type() {
    rejects(
        &format!("{GOOD}    batch_size: lots\n"),
        &["run", "copy"],
        &["syncline.yaml:16:17", "pipelines.copy.batch_size", "invalid u64"],
    );
}

#[test]
fn out_of_range() {
    rejects(
        &format!("{GOOD}    batch_size: 50000\n"),
        &["run", "copy"],
        &["syncline.yaml:16:17", "pipelines.copy.batch_size", "must be 1..=10000, got 50000"],
    );
}

#[test]
fn undefined_variable() {
    rejects(
        &GOOD.replace("url: sqlite://source.db", "url: ${SYNCLINE_TEST_UNDEFINED_URL}"),
        &["run", "copy"],
        &["syncline.yaml:6:14", "pipelines.copy.source.sql.url", "SYNCLINE_TEST_UNDEFINED_URL is not set"],
    );
}

#[test]
fn inline_secret() {
    let first = rejects(
        &GOOD.replace("url: sqlite://target.db", "url: postgres://app:hunter2@db.example/warehouse"),
        &["run", "copy"],
        &["pipelines.copy.sink.sql.url", "use ${VAR}"],
    );
    assert!(!first.contains("hunter2"), "the secret leaked: {first}");
}

#[test]
fn unknown_pipeline() {
    rejects(GOOD, &["run", "nope"], &["unknown pipeline \"nope\"", "copy"]);
}

#[test]
fn batch_size_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncline.yaml"), GOOD).unwrap();
    let out = syncline(dir.path(), "syncline.yaml", &["run", "copy", "--batch-size", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).lines().next().unwrap_or_default().contains("--batch-size"), "{}", stderr(&out));
    assert!(!dir.path().join("state.db").exists());
}

#[test]
fn unreachable_database() {
    let config = GOOD.replace("url: sqlite://source.db", "url: postgres://nobody@127.0.0.1:1/none");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncline.yaml"), &config).unwrap();
    let started = std::time::Instant::now();
    let out = syncline(dir.path(), "syncline.yaml", &["run", "copy"]);
    assert_eq!(code(&out), 1, "a database that cannot be reached is a failure, not a config error: {}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "fails within seconds");
    let error = stderr(&out);
    assert!(
        error.contains("pipeline copy: source") && error.contains("cannot connect to PostgreSQL at postgres://nobody@127.0.0.1:1/none"),
        "{error}"
    );
    assert!(!dir.path().join("target.db").exists(), "nothing may be written");
    let out = syncline(dir.path(), "syncline.yaml", &["check"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("✗ copy: source") && l.contains("cannot connect")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("✓ copy: sink")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("✓ state store")), "{text}");
}

#[test]
fn check_reports_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncline.yaml"), GOOD.replace("key: id\n        watermark", "key: id\n        watermarks")).unwrap();
    let out = syncline(dir.path(), "syncline.yaml", &["check"]);
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).starts_with("✗ config: "), "{}", stdout(&out));
}

#[test]
fn schema_is_json_schema() {
    let out = bin().arg("schema").output().unwrap();
    assert_eq!(code(&out), 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(schema["properties"]["pipelines"].is_object(), "{schema}");
    assert!(stdout(&out).contains("beneficiaries"));
}

#[test]
fn sql_server_is_a_source_only() {
    rejects(
        &GOOD.replace("url: sqlite://target.db", "url: mssql://sa:${MSSQL_PASSWORD:-x}@127.0.0.1:1/db"),
        &["run", "copy"],
        &["syncline.yaml:12:14", "pipelines.copy.sink.sql.url", "SQL Server is supported as a source only"],
    );
    // as a source it is accepted, and an unreachable server is reported by check
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("syncline.yaml"),
        GOOD.replace("url: sqlite://source.db", "url: mssql://sa:${MSSQL_PASSWORD:-x}@127.0.0.1:1/db"),
    )
    .unwrap();
    let out = syncline(dir.path(), "syncline.yaml", &["check"]);
    assert_eq!(code(&out), 1, "unreachable: {}", stdout(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("✗ copy: source") && l.contains("cannot connect to SQL Server")), "{text}");
    assert!(!text.contains(":x@"), "the password must be masked: {text}");
}
