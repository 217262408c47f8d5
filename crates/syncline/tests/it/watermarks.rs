//! F2: rows whose watermark is NULL are never skipped without a word, on any database: by
//! default a run refuses to start and says how many; with `null_watermarks: first` they are
//! read first, then the rest, and every row arrives.

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
