//! Safe state: `--since` and `--limit` never leave a gap, and cursors and fingerprints belong to
//! the target they were written for, so a new target gets every record.

use super::*;
use crate::hubspot::{Hub, hub};
use syncline_sandbox::Tier;

/// The runs of the members pipeline, oldest first: (mode, read, status).
fn history(dir: &Path, config: &str) -> Vec<(String, i64, String)> {
    let out = syncline(dir, config, &["runs", "--json", "--limit", "100"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut runs: Vec<(String, i64, String)> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| (r["mode"].as_str().unwrap().to_owned(), r["read_count"].as_i64().unwrap(), r["status"].as_str().unwrap().to_owned()))
        .collect();
    runs.reverse();
    runs
}

/// The reproduction: a run cut short by --limit, then --since past the cursor. Every
/// valid row ends in the target, and the --since run is labelled `window`.
#[tokio::test(flavor = "multi_thread")]
async fn since_past_the_cursor_reads_a_window_and_leaves_no_gap() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "5000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let out = syncline(d, "members.yaml", &["run", "members", "--limit", "300"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let cursor = || {
        let out = syncline(d, "members.yaml", &["state", "show", "members", "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let line = stdout(&out).lines().find(|l| l.contains("\"cursor\"")).map(str::to_owned).expect("a cursor");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["cursor"]["key"]["value"].as_i64().unwrap()
    };
    assert_eq!(cursor(), 300);

    // row 2,500 was changed at 00:41:40: the window starts after it, far past the cursor
    let out = syncline(d, "members.yaml", &["run", "members", "--since", "2024-01-01T00:41:41Z"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stdout(&out).contains("window"), "the summary names the mode: {}", stdout(&out));
    assert_eq!(cursor(), 300, "a window does not move the cursor over rows it did not read");

    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(cursor(), 5000);
    let warehouse = sqlite(&d.join("members-warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 4750, "every valid row, none skipped");
    let runs = history(d, "members.yaml");
    let modes: Vec<(&str, i64)> = runs.iter().map(|(m, read, _)| (m.as_str(), *read)).collect();
    assert_eq!(modes, [("full", 300), ("window", 2500), ("incremental", 4700)], "the first run, with no cursor, reads from the start");

    // a --since at or before the cursor continues to the end and moves the cursor as it goes
    let out = syncline(d, "members.yaml", &["run", "members", "--since", "2024-01-01T01:00:00Z"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(history(d, "members.yaml").last().map(|r| (r.0.as_str(), r.1)), Some(("incremental", 1401)), "rows 3,600 to 5,000");
    assert_eq!(cursor(), 5000);
}

/// Portal A, then a fresh portal B with the same state file: B receives every record. Back on A,
/// nothing is sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_hubspot_portal_gets_every_record() {
    let (a, b) = (hub(Tier::LimitIncrease), hub(Tier::LimitIncrease));
    let dir = crate::hubspot::members_to_hubspot("api_limit_increase", "2000", "0.05");
    let d = dir.path();
    let into = |hub: &Hub, args: &[&str]| crate::hubspot::run(d, hub, "hub.yaml", args);

    let out = into(&a, &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(a.contacts().len(), 1900);
    let out = into(&b, &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(b.contacts().len(), 1900, "the new portal got every record, though the cursor of A is at the end");
    assert_eq!(b.contacts(), a.contacts());

    // --full into A again: unchanged there, nothing sent
    let upserts = a.upserts();
    let out = into(&a, &["run", "members", "--full"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(a.upserts(), upserts, "A has them all");
    assert_eq!(last_run(d, "hub.yaml")["unchanged_count"], 1900);
    // --resend writes them anyway
    let out = into(&a, &["run", "members", "--full", "--resend"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(a.upserts(), upserts + 19);
    assert_eq!(last_run(d, "hub.yaml")["updated_count"], 1900);

    // two cursors now, one per portal, and fingerprints per portal
    let out = crate::hubspot::run(d, &a, "hub.yaml", &["state", "show", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let targets: std::collections::BTreeSet<&str> =
        lines.iter().filter(|l| l["kind"] == "cursor").map(|l| l["target"].as_str().unwrap()).collect();
    assert_eq!(targets.len(), 2, "{lines:?}");
    assert!(targets.iter().all(|t| t.starts_with("hubspot:portal/") && t.ends_with("/contacts")), "{targets:?}");
    assert!(lines.iter().filter(|l| l["kind"] == "fingerprints").all(|l| l["records"] == 1900), "{lines:?}");
}

/// The same for a SQL target: pointing the sink at another database starts it from nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_sql_target_gets_every_row() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "2000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let into = |target: &str| {
        bin()
            .current_dir(d)
            .env("MEMBERS_TARGET_URL", format!("sqlite://{target}"))
            .args(["--config", "members.yaml", "run", "members"])
            .output()
            .unwrap()
    };
    assert_eq!(code(&into("first.db")), 3);
    assert_eq!(code(&into("second.db")), 3);
    for target in ["first.db", "second.db"] {
        let pool = sqlite(&d.join(target)).await;
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM members").await, 1900, "{target}");
    }
    // and the first one, again: its own cursor is at the end
    assert_eq!(code(&into("first.db")), 0);
    assert_eq!(last_run(d, "members.yaml")["read_count"], 0);
}

/// `state clear` asks first: without a terminal to ask on it wants --yes, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn state_clear_asks_first() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "100"]).output().unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(code(&syncline(d, "members.yaml", &["run", "members"])), 3);
    let out = syncline(d, "members.yaml", &["state", "clear", "members"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(code(&syncline(d, "members.yaml", &["run", "members"])), 0, "the cursor is still there");
    assert_eq!(last_run(d, "members.yaml")["read_count"], 0);
    let out = syncline(d, "members.yaml", &["state", "clear", "members", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("removed 1 cursor(s)"), "{}", stdout(&out));
    assert_eq!(code(&syncline(d, "members.yaml", &["run", "members"])), 3);
    assert_eq!(last_run(d, "members.yaml")["read_count"], 100, "read everything again");
    let out = syncline(d, "members.yaml", &["state", "clear", "membres", "--yes"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("did you mean \"members\""), "{}", stderr(&out));
}

/// A date watermark stored as text, and a `--since` on the cursor's own day: the text
/// comparison (`"2024-05-01" < "2024-05-01 00:00:00"`) must not hide the rows after the cursor
/// while the cursor moves past them.
#[tokio::test(flavor = "multi_thread")]
async fn since_on_a_text_date_watermark_reads_everything_after_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", d.join("source.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, day DATE)").execute(&source).await.unwrap();
    for id in 1..=1100 {
        let day = if id <= 1000 { "2024-05-01" } else { "2024-05-02" };
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO items VALUES ({id}, '{day}')"))).execute(&source).await.unwrap();
    }
    let config = "state: sqlite://state.db\npipelines:\n  days:\n    source:\n      sql: {url: sqlite://source.db, table: items, key: id, watermark: day, page_size: 100}\n    sink:\n      sql: {url: sqlite://target.db, table: items, key: id, create_table: true}\n";
    std::fs::write(d.join("days.yaml"), config).unwrap();
    assert_eq!(code(&syncline(d, "days.yaml", &["run", "days", "--limit", "500"])), 0);
    let out = syncline(d, "days.yaml", &["run", "days", "--since", "2024-05-01"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_run(d, "days.yaml")["mode"], "incremental", "the day of the cursor: the run continues it");
    let target = sqlite(&d.join("target.db")).await;
    assert_eq!(count(&target, "SELECT COUNT(*) FROM items").await, 1100, "rows 501–1000 share the cursor's day and are read");
    assert_eq!(code(&syncline(d, "days.yaml", &["run", "days"])), 0);
    assert_eq!(last_run(d, "days.yaml")["read_count"], 0);
}

/// F7: a state store that went missing, was emptied, swapped or corrupted next to a config that
/// has run before is refused with the file, why, and the fix — never silently started afresh
/// (which re-sent every row and lost the dead-letter history).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_or_broken_state_store_is_refused_until_init() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "200"]).output().unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(code(&syncline(d, "members.yaml", &["run", "members"])), 3);
    let (state, marker) = (d.join("members-state.db"), d.join("members-state.db.id"));
    assert!(marker.exists(), "the store's id is noted beside it");
    // the store as it is on disk: the database file and its write-ahead log
    let wal = d.join("members-state.db-wal");
    let saved = (std::fs::read(&state).unwrap(), std::fs::read(&wal).ok());
    let put_back = |(db, log): &(Vec<u8>, Option<Vec<u8>>)| {
        std::fs::write(&state, db).unwrap();
        match log {
            Some(log) => std::fs::write(&wal, log).unwrap(),
            None => {
                let _ = std::fs::remove_file(&wal);
            }
        }
        let _ = std::fs::remove_file(d.join("members-state.db-shm"));
    };
    let refused = |what: &str| {
        for args in [&["run", "members"][..], &["runs"], &["dlq", "list"]] {
            let out = syncline(d, "members.yaml", args);
            assert_eq!(code(&out), 2, "{what}, {args:?}: {}", stderr(&out));
            let error = stderr(&out);
            assert!(error.contains("members-state.db") && error.contains("--init"), "{what}: {error}");
        }
    };

    // emptied (a 0-byte file), then deleted: refused, and nothing is created in its place
    put_back(&(Vec::new(), None));
    refused("empty");
    assert_eq!(std::fs::metadata(&state).unwrap().len(), 0, "the empty file was not turned into a new store");
    std::fs::remove_file(&state).unwrap();
    refused("missing");
    assert!(!state.exists());

    // a garbage header: SQLite's reason within a second, not a pool timeout
    let unreadable = b"this is not a SQLite database, just 64 bytes of something else!!".to_vec();
    put_back(&(unreadable.clone(), None));
    let started = std::time::Instant::now();
    let out = syncline(d, "members.yaml", &["runs"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("members-state.db") && stderr(&out).contains("file is not a database") && stderr(&out).contains("--init"),
        "{}",
        stderr(&out)
    );

    // another store's file in its place
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("members.yaml"), other.path().join("members.yaml")).unwrap();
    std::fs::copy(d.join("members.db"), other.path().join("members.db")).unwrap();
    std::fs::copy(d.join("member.schema.json"), other.path().join("member.schema.json")).unwrap();
    assert_eq!(code(&syncline(other.path(), "members.yaml", &["run", "members", "--limit", "10"])), 0);
    let other_store =
        (std::fs::read(other.path().join("members-state.db")).unwrap(), std::fs::read(other.path().join("members-state.db-wal")).ok());
    put_back(&other_store);
    let out = syncline(d, "members.yaml", &["runs"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is not the one this config used"), "{}", stderr(&out));

    // the right file back: everything as it was
    put_back(&saved);
    let out = syncline(d, "members.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "nothing to read again: {}", stderr(&out));
    assert_eq!(last_run(d, "members.yaml")["read_count"], 0);
    // --init starts again, knowingly; an unreadable file is kept aside, not deleted
    put_back(&(unreadable.clone(), None));
    let out = syncline(d, "members.yaml", &["--init", "run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(last_run(d, "members.yaml")["read_count"], 200);
    let aside: Vec<_> =
        std::fs::read_dir(d).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".unreadable-")).collect();
    assert_eq!(aside.len(), 1, "the unreadable file is kept");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), unreadable);
    // --expect-state never creates one
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("members.yaml"), fresh.path().join("members.yaml")).unwrap();
    let out = syncline(fresh.path(), "members.yaml", &["--expect-state", "runs"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("there is no state store"), "{}", stderr(&out));
    assert!(!fresh.path().join("members-state.db").exists());
}
