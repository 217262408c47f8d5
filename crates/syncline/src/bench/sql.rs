//! SQL → PostgreSQL: `--rows` generated rows of an eight-column table in the source database
//! (MariaDB/MySQL or PostgreSQL), copied by one full run of a pipeline into a PostgreSQL table
//! made by the sink; then the same rows copied with nothing but `COPY` into an empty table of
//! the same columns and key, and syncline's pace as a share of that. Every table is the
//! bench's own (`bench_sql_*`) and is dropped at the end.

use std::path::Path;
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use super::{MemoryProbe, cpu_seconds, print_read_figures, run_full};
use crate::cli::BenchArgs;
use crate::config;
use crate::exit::{CliError, CliResult, Exit};

const SOURCE: &str = "bench_sql_items";
const TARGET: &str = "bench_sql_copy";
const BARE: &str = "bench_sql_bare";
const COLUMNS: &str = "id, name, email, amount, updated_at, flag, note, city";

fn config_yaml(source: &str, target: &str) -> String {
    format!(
        "state: sqlite://sql-bench-state.db
pipelines:
  copy:
    source:
      sql: {{url: \"{source}\", table: {SOURCE}, key: id, watermark: updated_at, page_size: 2000}}
    sink:
      sql: {{url: \"{target}\", table: {TARGET}, key: id, create_table: true}}
    batch_size: 1000
"
    )
}

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    let source = args.source_url.clone().unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_owned());
    let target = args.warehouse_url.clone().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let source_is_mysql = source.starts_with("mysql:") || source.starts_with("mariadb:");
    if !target.starts_with("postgres") || !(source_is_mysql || source.starts_with("postgres")) {
        return Err(CliError::usage(
            "bench --sql copies from MySQL/MariaDB or PostgreSQL (--source-url) into PostgreSQL (--warehouse-url)",
        ));
    }
    let _ = std::fs::remove_file(dir.join("sql-bench-state.db"));
    let shown = |url: &str| syncline_core::redact::url(url);
    eprintln!("generating {} rows in {} …", args.rows, shown(&source));
    let generated = Instant::now();
    drop_tables(&source, &target).await?;
    generate(&source, args.rows).await.map_err(|e| CliError::failed(format!("generating the rows: {e}")))?;
    eprintln!("generated in {:.1}s; copying them into {}", generated.elapsed().as_secs_f64(), shown(&target));

    let config = config::parse("sql-bench.yaml", &config_yaml(&source, &target), dir, &|_: &str| None)?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (started, cpu_before) = (Instant::now(), cpu_seconds("self"));
    let mut probe = MemoryProbe { started, next_mark: 1_000, marks: Vec::new() };
    let report = run_full(&config, "copy", dir, &mut probe).await?;
    let (took, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds("self") - cpu_before);
    let from = if source_is_mysql { "MariaDB/MySQL" } else { "PostgreSQL" };
    println!("bench: {from} → PostgreSQL, {} rows × 8 columns, one full run (pages of 2,000, batches of 1,000)", args.rows);
    print_read_figures(&report, took, (cpu, None), &probe);

    eprintln!("measuring the bare COPY of the same rows …");
    let bare = Instant::now();
    let copied = bare_copy(&source, &target, source_is_mysql).await.map_err(|e| CliError::failed(format!("the bare copy: {e}")))?;
    let bare_took = bare.elapsed().as_secs_f64();
    let bare_rate = copied as f64 / bare_took;
    let how = if source_is_mysql { "a streamed SELECT written as COPY text" } else { "COPY … TO STDOUT piped into COPY … FROM STDIN" };
    println!(
        "bare copy        {copied} rows in {bare_took:.2} s = {bare_rate:.0} rows/s ({how}, one transaction, into an empty table with the same key)"
    );
    println!("ratio            {:.2} × the bare copy", report.counts.read as f64 / took / bare_rate);
    drop_tables(&source, &target).await?;
    if report.counts.read != args.rows || copied != args.rows {
        return Err(CliError::failed(format!("copied {} and {copied} of {} rows", report.counts.read, args.rows)));
    }
    Ok(Exit::Ok)
}

async fn drop_tables(source: &str, target: &str) -> Result<(), CliError> {
    for (url, table) in [(source, SOURCE), (target, TARGET), (target, BARE)] {
        let pool = syncline_connectors::sql::SqlPool::connect(url, 1).await.map_err(CliError::failed)?;
        pool.execute(&format!("DROP TABLE IF EXISTS {table}")).await.map_err(CliError::failed)?;
    }
    Ok(())
}

/// `rows` rows in the source, made by the server itself: ids 1…rows, seven rows to a
/// timestamp (so ties straddle pages), a tenth of the notes NULL.
async fn generate(url: &str, rows: u64) -> Result<(), sqlx::Error> {
    if url.starts_with("postgres") {
        let mut conn = pg(url).await?;
        let create = format!(
            "CREATE TABLE {SOURCE} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT, amount NUMERIC(12,2), \
             updated_at TIMESTAMP NOT NULL, flag BOOLEAN NOT NULL, note TEXT, city TEXT)"
        );
        sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut conn).await?;
        let fill = format!(
            "INSERT INTO {SOURCE} SELECT n, 'item ' || n, 'user' || n || '@example.com', n * 3 + (n % 100) / 100.0, \
             TIMESTAMP '2024-01-01' + (n / 7) * INTERVAL '1 second', n % 2 = 1, CASE WHEN n % 10 = 0 THEN NULL ELSE 'note ' || n END, \
             (ARRAY['San José', 'Alajuela', 'Cartago', 'Heredia', 'Guanacaste', 'Puntarenas', 'Limón'])[1 + n % 7] \
             FROM generate_series(1, {rows}) AS n;
             CREATE INDEX ON {SOURCE} (updated_at, id); ANALYZE {SOURCE}"
        );
        sqlx::raw_sql(AssertSqlSafe(fill)).execute(&mut conn).await?;
        return Ok(());
    }
    let mut conn = mysql(url).await?;
    let create = format!(
        "CREATE TABLE {SOURCE} (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(100), amount DECIMAL(12,2), \
         updated_at DATETIME(6) NOT NULL, flag BOOLEAN NOT NULL, note TEXT NULL, city VARCHAR(50), INDEX by_change (updated_at, id))"
    );
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut conn).await?;
    // in slices of 100,000 numbers, five digits crossed (MySQL and MariaDB alike), so no one
    // statement holds a huge undo log
    let digit = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let mut from = 1;
    while from <= rows {
        let to = (from + 99_999).min(rows);
        let fill = format!(
            "INSERT INTO {SOURCE} SELECT n, CONCAT('item ', n), CONCAT('user', n, '@example.com'), n * 3 + (n % 100) / 100, \
             TIMESTAMP('2024-01-01') + INTERVAL (n DIV 7) SECOND, n % 2, IF(n % 10 = 0, NULL, CONCAT('note ', n)), \
             ELT(1 + n % 7, 'San José', 'Alajuela', 'Cartago', 'Heredia', 'Guanacaste', 'Puntarenas', 'Limón') \
             FROM (SELECT {from} + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS n \
                   FROM {digit} a, {digit} b, {digit} c, {digit} e, {digit} f) AS s WHERE n <= {to}"
        );
        sqlx::raw_sql(AssertSqlSafe(fill)).execute(&mut conn).await?;
        from = to + 1;
    }
    Ok(())
}

/// The source's rows into an empty PostgreSQL table of the same columns and key with `COPY`:
/// from PostgreSQL, `COPY … TO STDOUT` piped as it comes; from MySQL, a streamed `SELECT` (its
/// text protocol, so each value arrives as text) written out as `COPY`'s text format.
async fn bare_copy(source: &str, target: &str, source_is_mysql: bool) -> Result<u64, sqlx::Error> {
    let mut to = pg(target).await?;
    let create = format!(
        "CREATE TABLE {BARE} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT, amount NUMERIC(12,2), \
         updated_at TIMESTAMP NOT NULL, flag BOOLEAN NOT NULL, note TEXT, city TEXT)"
    );
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut to).await?;
    let mut sink = to.copy_in_raw(&format!("COPY {BARE} ({COLUMNS}) FROM STDIN")).await?;
    let select = format!("SELECT {COLUMNS} FROM {SOURCE} ORDER BY updated_at, id");
    if source_is_mysql {
        let mut from = mysql(source).await?;
        let mut rows = sqlx::raw_sql(AssertSqlSafe(select)).fetch(&mut from);
        let mut chunk = Vec::with_capacity(1 << 20);
        while let Some(row) = rows.try_next().await? {
            for i in 0..8 {
                if i > 0 {
                    chunk.push(b'\t');
                }
                match row.try_get_unchecked::<Option<&str>, _>(i)? {
                    None => chunk.extend_from_slice(b"\\N"),
                    Some(text) => copy_text(&mut chunk, text),
                }
            }
            chunk.push(b'\n');
            if chunk.len() >= 1 << 20 {
                sink.send(std::mem::take(&mut chunk)).await?;
                chunk.reserve(1 << 20);
            }
        }
        sink.send(chunk).await?;
    } else {
        let mut from = pg(source).await?;
        let mut out = from.copy_out_raw(&format!("COPY ({select}) TO STDOUT")).await?;
        while let Some(bytes) = out.try_next().await? {
            sink.send(bytes).await?;
        }
    }
    sink.finish().await
}

/// `text` as a value of `COPY`'s text format: backslash, tab, newline and carriage return
/// escaped.
fn copy_text(out: &mut Vec<u8>, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

/// A connection that does not log its statements: the bench's are slow on purpose.
async fn pg(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    url.parse::<sqlx::postgres::PgConnectOptions>()?.disable_statement_logging().connect().await
}

async fn mysql(url: &str) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    url.replacen("mariadb://", "mysql://", 1).parse::<sqlx::mysql::MySqlConnectOptions>()?.disable_statement_logging().connect().await
}
