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

/// F1: a password in a URL parameter, literal or through a default, is refused like one in the
/// user info; secrets take no default either.
#[test]
fn passwords_in_parameters_and_defaults_are_refused() {
    rejects(
        "state: postgres://postgres@127.0.0.1:5432/test?password=CANARY43\npipelines: {}\nwebhooks:\n  h: {provider: hubspot, secrets: [\"${S}\"]}\n",
        &["runs"],
        &["syncline.yaml:1:8", "state", "a password written in the config is not allowed"],
    );
    let first = rejects(
        &GOOD.replace("url: sqlite://source.db", "url: postgres://u:${PW:-CANARY44}@127.0.0.1/db"),
        &["run", "copy"],
        &["pipelines.copy.source.sql.url", "a default for a password is not allowed"],
    );
    assert!(!first.contains("CANARY44"), "{first}");
    let hubspot = GOOD.replace(
        "      sql:\n        url: sqlite://target.db\n        table: items\n        key: id\n        create_table: true\n",
        "      hubspot: {token: \"${T:-pat-na1-CANARY45}\", id_property: id}\n",
    );
    assert_ne!(hubspot, GOOD);
    let error = rejects(&hubspot, &["run", "copy"], &["pipelines.copy.sink.hubspot.token", "a default for a secret is not allowed"]);
    assert!(!error.contains("CANARY45"), "{error}");
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
        &GOOD.replace("url: sqlite://target.db", "url: mssql://sa@127.0.0.1:1/db"),
        &["run", "copy"],
        &["syncline.yaml:12:14", "pipelines.copy.sink.sql.url", "SQL Server is supported as a source only"],
    );
    // as a source it is accepted, and an unreachable server is reported by check
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("syncline.yaml"),
        GOOD.replace("url: sqlite://source.db", "url: mssql://sa:${MSSQL_PASSWORD}@127.0.0.1:1/db"),
    )
    .unwrap();
    let out = bin().current_dir(dir.path()).env("MSSQL_PASSWORD", "x").args(["--config", "syncline.yaml", "check"]).output().unwrap();
    assert_eq!(code(&out), 1, "unreachable: {}", stdout(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("✗ copy: source") && l.contains("cannot connect to SQL Server")), "{text}");
    assert!(!text.contains(":x@"), "the password must be masked: {text}");
}

/// F1 under the real binary: a password given to the state URL as `?password=${PGPW}` shows in
/// none of `check`, `runs`, the `serve` banner, a failed store's error, or the debug logs.
#[test]
fn a_password_in_a_url_parameter_is_never_shown() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = runtime.block_on(syncline_testkit::postgres()) else { return };
    let admin = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let with_password = |url: &str| format!("{url}{}password=${{PGPW}}", if url.contains('?') { '&' } else { '?' });
    let config = |state: &str| {
        format!(
            "state: {state}\nwebhooks:\n  hubspot: {{provider: hubspot, secrets: [\"${{APP_SECRET}}\"]}}\nserve: {{bind: \"127.0.0.1:0\"}}\n"
        )
    };
    let run = |name: &str, state: &str, args: &[&str]| {
        std::fs::write(dir.path().join(name), config(state)).unwrap();
        bin()
            .current_dir(dir.path())
            .env("PGPW", "CANARY42")
            .env("APP_SECRET", "s")
            .args(["-vv", "--config", name])
            .args(args)
            .output()
            .unwrap()
    };
    let good = with_password(&admin);
    let down = with_password("postgres://postgres@127.0.0.1:9/test");
    let mut seen = String::new();
    for (name, state, args) in [
        ("good.yaml", &good, &["check"][..]),
        ("good.yaml", &good, &["runs"]),
        ("down.yaml", &down, &["runs"]),
        ("down.yaml", &down, &["check"]),
    ] {
        let out = run(name, state, args);
        seen.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
    }
    assert!(seen.contains("password=***"), "the URL is shown, masked: {seen}");
    let mut serve = bin();
    serve
        .current_dir(dir.path())
        .env("PGPW", "CANARY42")
        .env("APP_SECRET", "s")
        .args(["--config", "good.yaml", "serve"])
        .stderr(std::process::Stdio::null());
    let mut child = serve.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut banner).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.contains("serving on") && banner.contains("password=***"), "{banner}");
    seen.push_str(&banner);
    assert!(!seen.contains("CANARY42"), "the password leaked: {seen}");
    runtime.block_on(db.drop());
}
