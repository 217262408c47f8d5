//! What the machine allows, measured in the same sitting as syncline's own figure, so a figure
//! reads as a share of the hardware's pace rather than as an absolute that differs from machine
//! to machine:
//! - `copy_members`: the members table copied through the same SQLite build (rusqlite, the
//!   bundled libsqlite3), one prepared upsert bound straight from the read row, commits of 1,000
//!   rows, `synchronous = FULL` as the sink — no transforms, no state, no second thread;
//! - `insert_events`: intake's events inserted into the store's own inbox table (same schema and
//!   indexes) with one prepared insert, committed per group of deliveries as intake's group
//!   commit does at best, `synchronous = FULL`.

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Instant;

/// Rows per transaction of the bare copy (the members pipeline's batch size).
const COMMIT_ROWS: usize = 1_000;

fn fail(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("bare copy: {what}: {e}")
}

fn open_durable(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(fail("open the target"))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(fail("pragmas"))?;
    Ok(conn)
}

/// Copies table `members` of `source` into a new table of the same columns in `target` by
/// upsert on `numero_asociado`; returns the rows copied and the seconds it took.
pub fn copy_members(source: &Path, target: &Path) -> Result<(u64, f64), String> {
    let _ = std::fs::remove_file(target);
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail("open the source"))?;
    let mut to = open_durable(target)?;
    let started = Instant::now();
    let mut read = from.prepare("SELECT * FROM members ORDER BY numero_asociado").map_err(fail("read"))?;
    let columns: Vec<String> = read.column_names().into_iter().map(str::to_owned).collect();
    let defs: Vec<String> = columns
        .iter()
        .map(|c| if c == "numero_asociado" { format!("{c} INTEGER NOT NULL PRIMARY KEY") } else { format!("{c} TEXT") })
        .collect();
    to.execute_batch(&format!("CREATE TABLE members ({})", defs.join(", "))).map_err(fail("create"))?;
    let updates: Vec<String> = columns.iter().skip(1).map(|c| format!("{c} = excluded.{c}")).collect();
    let upsert = format!(
        "INSERT INTO members ({}) VALUES ({}) ON CONFLICT (numero_asociado) DO UPDATE SET {}",
        columns.join(", "),
        vec!["?"; columns.len()].join(", "),
        updates.join(", ")
    );
    let mut rows = read.query([]).map_err(fail("read"))?;
    let mut copied = 0u64;
    let mut tx = to.transaction().map_err(fail("begin"))?;
    loop {
        let mut statement = tx.prepare_cached(&upsert).map_err(fail("prepare"))?;
        let mut in_tx = 0;
        while in_tx < COMMIT_ROWS {
            let Some(row) = rows.next().map_err(fail("read"))? else { break };
            for i in 0..columns.len() {
                statement.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(row.get_ref_unwrap(i))).map_err(fail("bind"))?;
            }
            statement.raw_execute().map_err(fail("upsert"))?;
            in_tx += 1;
        }
        drop(statement);
        tx.commit().map_err(fail("commit"))?;
        copied += in_tx as u64;
        if in_tx < COMMIT_ROWS {
            break;
        }
        tx = to.transaction().map_err(fail("begin"))?;
    }
    Ok((copied, started.elapsed().as_secs_f64()))
}

/// One inbox row of intake: source, dedupe key, event type, payload, occurred at, object key.
pub type EventRow = (String, String, String, String, String, String);

/// Inserts `deliveries` (each a list of events) into the inbox table of the store at `store`
/// (made by its migrations), `per_commit` deliveries per transaction; returns events/s.
pub fn insert_events(store: &Path, deliveries: &[Vec<EventRow>], per_commit: usize) -> Result<f64, String> {
    let mut conn = open_durable(store)?;
    let sql = "INSERT INTO inbox (source, dedupe_key, event_type, payload, occurred_at, received_at, next_attempt_at, object_key) \
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) ON CONFLICT (dedupe_key) DO NOTHING";
    let received = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let started = Instant::now();
    let mut events = 0usize;
    for group in deliveries.chunks(per_commit.max(1)) {
        let tx = conn.transaction().map_err(fail("begin"))?;
        {
            let mut insert = tx.prepare_cached(sql).map_err(fail("prepare"))?;
            for (source, key, kind, payload, occurred, object) in group.iter().flatten() {
                insert.execute(rusqlite::params![source, key, kind, payload, occurred, received, object]).map_err(fail("insert"))?;
                events += 1;
            }
        }
        tx.commit().map_err(fail("commit"))?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}
