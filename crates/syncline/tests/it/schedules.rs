//! Issue 18, done-when 1: three `serve` instances on one PostgreSQL store run a pipeline
//! scheduled every period; the sync history shows exactly one finished run per slot. Killing the
//! instance that holds a run mid-way leads to one more run of that slot, on another instance,
//! after the lease expires.
//!
//! The period is 10 s for 6 slots here, to keep CI short; `SYNCLINE_TEST_SCHEDULE_SECONDS=60
//! SYNCLINE_TEST_SCHEDULE_SLOTS=10` runs the every minute for ten minutes.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::DurationRound;

use super::*;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn serve(dir: &Path, state: &str) -> Child {
    let mut command = bin();
    command
        .current_dir(dir)
        .env("STATE_URL", state)
        .env("SYNCLINE_RUN_LEASE_SECS", "2")
        .args(["--config", "members.yaml", "serve", "--bind", "127.0.0.1:0"])
        .stderr(Stdio::null());
    start_serve(&mut command).0
}

#[test]
fn three_instances_run_each_slot_once_and_a_killed_run_once_more() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let Some(db) = runtime.block_on(syncline_testkit::postgres()) else { return };
    let period = setting("SYNCLINE_TEST_SCHEDULE_SECONDS", 10);
    let slots = setting("SYNCLINE_TEST_SCHEDULE_SLOTS", 6);
    let cron = if period >= 60 { format!("*/{} * * * *", period / 60) } else { format!("*/{period} * * * * *") };

    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "50000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let yaml = std::fs::read_to_string(d.join("members.yaml")).unwrap().replace("state: sqlite://members-state.db", "state: ${STATE_URL}");
    std::fs::write(d.join("members.yaml"), format!("{yaml}    schedule:\n      cron: \"{cron}\"\n")).unwrap();
    let store = runtime.block_on(syncline_store::Store::connect(&db.url)).unwrap();

    let mut instances: Vec<Child> = (0..3).map(|_| serve(d, &db.url)).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(period * slots + period / 2);
    // the first run (all 50,000 rows) is killed on whichever instance holds it, mid-way
    let mut killed = None;
    while killed.is_none() && Instant::now() < end {
        let running = runtime.block_on(store.runs(Some("members"), 1)).unwrap().into_iter().find(|r| r.status == "running");
        let lease = runtime.block_on(holder_pid(&db.url));
        if let (Some(_), Some(pid)) = (running, lease) {
            std::thread::sleep(Duration::from_millis(300));
            let holder = instances.iter_mut().find(|c| c.id() == pid).expect("the lease names one of the instances");
            holder.kill().unwrap();
            holder.wait().unwrap();
            killed = Some(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = killed.expect("a run to kill");
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    for child in &mut instances {
        let _ = child.kill();
        let _ = child.wait();
    }

    let mut runs = runtime.block_on(store.runs(Some("members"), 1_000)).unwrap();
    runs.reverse();
    let slot_of = |started: &str| chrono::DateTime::parse_from_rfc3339(started).unwrap().timestamp() / period as i64;
    let finished: Vec<i64> =
        runs.iter().filter(|r| r.status == "succeeded" || r.status == "rejects").map(|r| slot_of(&r.started_at)).collect();
    let cut: Vec<&str> = runs.iter().filter(|r| r.status == "interrupted" || r.status == "running").map(|r| r.status.as_str()).collect();
    eprintln!(
        "schedules: {} runs ({} finished, slots {finished:?}), killed process {killed}, cut short: {cut:?}",
        runs.len(),
        finished.len()
    );
    let mut distinct = finished.clone();
    distinct.dedup();
    assert_eq!(distinct, finished, "one finished run per slot");
    assert!(finished.windows(2).all(|w| w[1] == w[0] + 1), "no slot missed: {finished:?}");
    assert!(finished.len() as u64 >= slots - 1, "{} slots ran in {} periods", finished.len(), slots);
    assert_eq!(cut.len(), 1, "the killed run, and no other, was cut short");
    let cut_slot = runs.iter().find(|r| r.status == "interrupted" || r.status == "running").map(|r| slot_of(&r.started_at));
    assert!(cut_slot.is_some_and(|slot| finished.contains(&slot)), "the killed run's slot ran once more, to the end");
    runtime.block_on(store.close());
    runtime.block_on(db.drop());
}

/// The process id in the members pipeline's run lease, if one is held.
async fn holder_pid(url: &str) -> Option<u32> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.ok()?;
    let holder: Option<(String,)> =
        sqlx::query_as("SELECT holder FROM syncline.run_leases WHERE pipeline = 'members'").fetch_optional(&mut conn).await.ok()?;
    holder?.0.strip_prefix("process ")?.split_whitespace().next()?.parse().ok()
}

/// After downtime, a schedule that missed many slots runs once, for the latest of them.
#[test]
fn after_downtime_a_missed_schedule_runs_once() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "1000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let yaml = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    std::fs::write(d.join("members.yaml"), format!("{yaml}    schedule:\n      cron: \"0 * * * *\"\n")).unwrap();
    // the last slot that ran was three hours ago: two and a bit hours of slots were missed
    let url = format!("sqlite://{}", d.join("members-state.db").display());
    let store = runtime.block_on(syncline_store::Store::connect(&url)).unwrap();
    let hour = chrono::Duration::hours(1);
    let latest = chrono::Utc::now().duration_trunc(hour).unwrap();
    runtime.block_on(store.mark_schedule("members", latest - hour * 3, None)).unwrap();

    let mut command = bin();
    command.current_dir(d).args(["--config", "members.yaml", "serve", "--bind", "127.0.0.1:0"]).stderr(Stdio::null());
    let (mut serve, _) = start_serve(&mut command);
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = || runtime.block_on(store.runs(Some("members"), 10)).unwrap().iter().filter(|r| r.finished_at.is_some()).count();
    while finished() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    serve.kill().unwrap();
    serve.wait().unwrap();

    let runs = runtime.block_on(store.runs(Some("members"), 10)).unwrap();
    assert_eq!(runs.len(), 1, "one run for the missed slots: {runs:?}");
    let marked = runtime.block_on(store.schedule("members")).unwrap().unwrap();
    assert_eq!(marked.slot, latest, "marked with the latest slot");
    assert_eq!(marked.run_id.as_deref(), Some(runs[0].id.as_str()));
    let out = syncline(d, "members.yaml", &["schedules"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("0 * * * * (UTC)") && stdout(&out).contains("rejects"), "{}", stdout(&out));
}
