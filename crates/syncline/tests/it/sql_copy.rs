//! MariaDB → PostgreSQL: a full copy, then an incremental run that reads exactly the changed
//! rows, including 50 sharing one timestamp across a page boundary.

use super::*;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection};

const ROWS: i64 = 50_000;

fn config(source: &str, target: &str) -> String {
    format!(
        "state: sqlite://state.db
pipelines:
  copy:
    source:
      sql:
        url: {source}
        table: items
        key: id
        watermark: updated_at
        page_size: 120
    sink:
      sql:
        url: {target}
        table: items
        key: id
        create_table: true
    batch_size: 1000
"
    )
}

/// A checksum over every row, formatted the same way on both databases.
async fn mysql_checksum(url: &str) -> (i64, String) {
    let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT CONCAT_WS('|', id, name, amount, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f'), flag, COALESCE(note, '-')) FROM items ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    (rows.len() as i64, digest(rows))
}

async fn postgres_checksum(url: &str) -> (i64, String) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws('|', id, name, amount, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US'), flag::int, COALESCE(note, '-')) FROM items ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    (rows.len() as i64, digest(rows))
}

fn digest(rows: Vec<(String,)>) -> String {
    let mut hasher = Sha256::new();
    for (row,) in rows {
        hasher.update(row.as_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_postgres_full_then_incremental() {
    let Some(source) = syncline_testkit::mysql().await else { return };
    let Some(target) = syncline_testkit::postgres().await else {
        source.drop().await;
        return;
    };
    let mut my = sqlx::MySqlConnection::connect(&source.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, amount DECIMAL(12,2), updated_at DATETIME(6) NOT NULL, flag BOOLEAN NOT NULL, note TEXT NULL, INDEX by_change (updated_at, id))",
    )
    .execute(&mut my)
    .await
    .unwrap();
    // groups of 7 rows share a timestamp, so ties straddle page boundaries everywhere
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                let note = if i % 10 == 0 { "NULL".to_owned() } else { format!("'note {i}'") };
                format!(
                    "({i}, 'item {i}', {}.{:02}, TIMESTAMP('2024-01-01') + INTERVAL {} SECOND, {}, {note})",
                    i * 3,
                    i % 100,
                    i / 7,
                    i % 2
                )
            })
            .collect();
        sqlx::query(AssertSqlSafe(format!("INSERT INTO items VALUES {}", values.join(", ")))).execute(&mut my).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("syncline.yaml"), config(&source.url, &target.url)).unwrap();
    let out = syncline(d, "syncline.yaml", &["-q", "run", "copy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // PostgreSQL's upsert tells inserted rows from updated ones itself (`xmax = 0`, aggregated)
    let full = last_run(d, "syncline.yaml");
    assert_eq!((full["created_count"].as_i64(), full["updated_count"].as_i64()), (Some(ROWS), Some(0)), "{full}");
    let (n, checksum) = postgres_checksum(&target.url).await;
    assert_eq!(n, ROWS);
    assert_eq!((n, checksum), mysql_checksum(&source.url).await, "the copy equals the source");

    // 450 rows changed at distinct times, then 50 sharing one later timestamp: in (updated_at, id)
    // order they sit at positions 451–500, across the page boundary at 480
    sqlx::query("UPDATE items SET name = CONCAT(name, ' v2'), amount = amount + 1, updated_at = TIMESTAMP('2025-01-01') + INTERVAL id SECOND WHERE id % 100 = 7 AND id <= 45000")
        .execute(&mut my)
        .await
        .unwrap();
    sqlx::query("UPDATE items SET note = 'shared', flag = NOT flag, updated_at = TIMESTAMP('2026-01-01') WHERE id % 1000 = 500")
        .execute(&mut my)
        .await
        .unwrap();
    let (changed,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM items WHERE updated_at >= '2025-01-01'").fetch_one(&mut my).await.unwrap();
    assert_eq!(changed, 500);

    let out = syncline(d, "syncline.yaml", &["-q", "run", "copy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = last_run(d, "syncline.yaml");
    assert_eq!(run["read_count"], 500, "the incremental run reads exactly the changed rows: {run}");
    assert_eq!(run["updated_count"], 500);
    assert_eq!(postgres_checksum(&target.url).await, mysql_checksum(&source.url).await, "the target matches the source");

    // nothing changed: nothing read
    let out = syncline(d, "syncline.yaml", &["-q", "run", "copy"]);
    assert_eq!(code(&out), 0);
    assert_eq!(last_run(d, "syncline.yaml")["read_count"], 0);

    my.close().await.unwrap();
    source.drop().await;
    target.drop().await;
}
