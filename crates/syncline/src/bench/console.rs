//! `syncline bench --console`: the operator console's pages on a store holding 100,000 runs and
//! 1,000,000 dead letters (`--runs`, `--dead-letters`), SQLite by default or PostgreSQL with
//! `--store-url` (in a schema of its own, dropped after). Each page is fetched over loopback
//! from the console served in this process, 20 times after one warm-up; the figures are the
//! answer times as a browser would wait for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncline_console::{Access, Host, Job, Replayed, Settings};
use syncline_store::Store;

use crate::cli::BenchArgs;
use crate::exit::{CliError, CliResult, Exit};

const PIPELINES: u64 = 5;
const TIMES: usize = 20;

struct BenchHost;

impl Host for BenchHost {
    fn jobs(&self) -> Vec<Job> {
        (0..PIPELINES).map(|i| Job { name: format!("pipeline-{i}"), kind: "pipeline", schedule: None, next_slot: None }).collect()
    }

    fn replay(&self, _: Vec<i64>) -> std::pin::Pin<Box<dyn Future<Output = Replayed> + Send + '_>> {
        Box::pin(async { Err("the bench replays nothing".to_owned()) })
    }
}

pub async fn run(args: &BenchArgs, dir: &std::path::Path) -> CliResult {
    let (runs, dead_letters) = (args.runs, args.dead_letters);
    let schema = format!("syncline_bench_console_{}", std::process::id());
    let url = match &args.store_url {
        Some(base) if base.starts_with("postgres") => format!("{base}{}schema={schema}", if base.contains('?') { '&' } else { '?' }),
        Some(other) => other.clone(),
        None => format!("sqlite://{}", dir.join("console-bench.db").display()),
    };
    let store = Store::connect(&url).await.map_err(|e| CliError::failed(format!("{}: {e}", syncline_core::redact::url(&url))))?;
    let started = Instant::now();
    fill(&url, &schema, runs, dead_letters).await.map_err(|e| CliError::failed(format!("filling the store: {e}")))?;
    println!("store {:?}: {runs} runs and {dead_letters} dead letters made in {:.1} s", store.backend(), started.elapsed().as_secs_f64());

    let settings = Settings { access: Access::new(None, true), store_label: "bench".into() };
    let router = syncline_console::router(store.clone(), Arc::new(BenchHost), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(CliError::failed)?;
    let base = format!("http://{}", listener.local_addr().map_err(CliError::failed)?);
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(syncline_console::serve(listener, router, stop.clone().cancelled_owned()));
    let client = reqwest::Client::new();
    // the middle run's start, as `fill` wrote it: one a minute from 1,700,000,000 s
    let middle = chrono::DateTime::from_timestamp(1_700_000_000 + (runs / 2) as i64 * 60, 0).expect("a time");
    let middle_run = format!("{}|run-{:08}", middle.format("%Y-%m-%dT%H:%M:%S%.6fZ"), runs / 2);
    let pages = [
        "/".to_owned(),
        "/runs".into(),
        "/runs?pipeline=pipeline-3".into(),
        format!("/runs?before={}", middle_run.replace('|', "%7C")),
        format!("/runs/run-{:08}", runs / 2),
        "/dead-letters".into(),
        "/dead-letters?pipeline=pipeline-2".into(),
        "/dead-letters?rule=phone".into(),
        "/dead-letters?field=email&class=data".into(),
        format!("/dead-letters?status=all&before={}", dead_letters / 2),
        "/dead-letters?status=ignored".into(),
        format!("/dead-letters/{}", dead_letters / 2),
        "/inbox".into(),
        "/live".into(),
        "/api/live".into(),
    ];
    println!("{:<48} {:>8} {:>8} {:>8} {:>9}", "page", "p50 ms", "p99 ms", "max ms", "bytes");
    let mut slowest = Duration::ZERO;
    for page in &pages {
        let (times, bytes) = time_page(&client, &base, page).await?;
        slowest = slowest.max(*times.last().expect("timed"));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p50, p99, max) = (super::percentile(&times, 0.5), super::percentile(&times, 0.99), times[times.len() - 1]);
        println!("{page:<48} {:>8.1} {:>8.1} {:>8.1} {bytes:>9}", ms(p50), ms(p99), ms(max));
    }
    println!("slowest answer of any page: {:.1} ms", slowest.as_secs_f64() * 1000.0);
    stop.cancel();
    let _ = served.await;
    store.close().await;
    if args.store_url.as_deref().is_some_and(|u| u.starts_with("postgres")) {
        super::shared_budget::drop_schema(args.store_url.as_deref().unwrap_or_default(), &schema).await?;
    }
    Ok(Exit::Ok)
}

/// One page fetched `TIMES` times after a warm-up: the sorted answer times and its size.
async fn time_page(client: &reqwest::Client, base: &str, page: &str) -> Result<(Vec<Duration>, usize), CliError> {
    let mut times = Vec::with_capacity(TIMES);
    let mut bytes = 0;
    for i in 0..=TIMES {
        let started = Instant::now();
        let answer = client.get(format!("{base}{page}")).send().await.map_err(CliError::failed)?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(CliError::failed)?;
        if !status.is_success() {
            return Err(CliError::failed(format!("{page}: {status}: {}", String::from_utf8_lossy(&body))));
        }
        if i > 0 {
            times.push(started.elapsed());
        }
        bytes = body.len();
    }
    times.sort_unstable();
    Ok((times, bytes))
}

/// Runs one a minute from 2023-11-14 over five pipelines; dead letters of seven rules spread
/// over them, one in fifty ignored and one in ten resolved, the rest open.
async fn fill(url: &str, schema: &str, runs: u64, dead_letters: u64) -> Result<(), sqlx::Error> {
    let (runs, dead_letters) = (runs as i64, dead_letters as i64);
    if url.starts_with("postgres") {
        use sqlx::Executor;
        let base = url.split('?').next().unwrap_or(url);
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(base).await?;
        pool.execute(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}"))).await?;
        let series = "generate_series(1, $1) AS i";
        sqlx::query(sqlx::AssertSqlSafe(runs_sql(
            series,
            "'run-' || lpad(i::text, 8, '0')",
            "to_char(to_timestamp(1700000000 + i * 60) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )))
        .bind(runs)
        .execute(&pool)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(dead_letters_sql(series, "'run-' || lpad((i % $2 + 1)::text, 8, '0')", "i::text")))
            .bind(dead_letters)
            .bind(runs)
            .execute(&pool)
            .await?;
        // as autovacuum would have by the time a store holds this much
        pool.execute("VACUUM ANALYZE").await?;
        pool.close().await;
    } else {
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(url).await?;
        let series = "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) SELECT i FROM n)";
        sqlx::query(sqlx::AssertSqlSafe(runs_sql(
            series,
            "printf('run-%08d', i)",
            "strftime('%Y-%m-%dT%H:%M:%f000Z', 1700000000 + i * 60, 'unixepoch')",
        )))
        .bind(runs)
        .execute(&pool)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(dead_letters_sql(series, "printf('run-%08d', i % $2 + 1)", "CAST(i AS TEXT)")))
            .bind(dead_letters)
            .bind(runs)
            .execute(&pool)
            .await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

fn runs_sql(series: &str, id: &str, at: &str) -> String {
    format!(
        "INSERT INTO runs (id, pipeline, mode, status, started_at, finished_at, read_count, created_count, updated_count,
                           unchanged_count, rejected_count, failed_count, error)
         SELECT {id}, 'pipeline-' || (i % {PIPELINES}), 'incremental', CASE WHEN i % 10 = 0 THEN 'rejects' ELSE 'succeeded' END,
                {at}, {at}, 1000, 900, 50, 40, 10, 0, NULL
         FROM {series}"
    )
}

fn dead_letters_sql(series: &str, run: &str, key: &str) -> String {
    let rules = "CASE i % 7 WHEN 0 THEN 'cedula' WHEN 1 THEN 'phone' WHEN 2 THEN 'email' WHEN 3 THEN 'beneficiaries'
                 WHEN 4 THEN 'map_values' WHEN 5 THEN 'require' ELSE 'enum' END";
    let fields = "CASE i % 7 WHEN 0 THEN 'no__de_cedula' WHEN 1 THEN 'phone' WHEN 2 THEN 'email' WHEN 3 THEN 'porcentajes'
                  WHEN 4 THEN 'marital_status' WHEN 5 THEN 'firstname' ELSE 'provincia' END";
    format!(
        "INSERT INTO dead_letters (pipeline, record_key, class, field, rule, message, payload, status, attempts, run_id,
                                   first_seen_at, last_seen_at)
         SELECT 'pipeline-' || (i % {PIPELINES}), {key}, 'data', {fields}, {rules}, 'value ' || {key} || ' breaks the rule',
                '{{\"numero_asociado\": ' || {key} || ', \"firstname\": \"Ana\", \"phone\": \"1000\"}}',
                CASE WHEN i % 50 = 0 THEN 'ignored' WHEN i % 10 = 0 THEN 'resolved' ELSE 'open' END, 1, {run},
                '2023-11-14T22:13:20Z', '2023-11-14T22:13:20Z'
         FROM {series}"
    )
}
