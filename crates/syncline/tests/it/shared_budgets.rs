//! Issue 18, done-when 4 and 5: three processes on one PostgreSQL store sync three pipelines
//! into one Professional portal (190 calls in any rolling 10 s) at the same time, sharing its
//! budget through the store; one is SIGKILLed midway and started again inside the window. The
//! sandbox's ledger shows at most 190 calls in any rolling 10 s, no 429, and at least 90 % of the
//! budget used in every full window.

use std::process::{Child, Command};
use std::time::Duration;

use syncline_sandbox::Tier;

use crate::bin;
use crate::hubspot::{hub, members_to_hubspot};

const PIPELINES: [&str; 3] = ["members_a", "members_b", "members_c"];

/// The members example as three pipelines (one table, three names) on the store at `state`.
fn three_pipelines(dir: &std::path::Path, state: &str) {
    let yaml = std::fs::read_to_string(dir.join("hub.yaml")).unwrap();
    let (head, pipeline) = yaml.split_once("pipelines:\n  members:\n").unwrap();
    let head = head.replace("state: sqlite://members-hubspot-state.db", &format!("state: {state}"));
    // ten contacts a call: the runs are bound by the budget, not by this machine's cores
    let pipeline = pipeline.replace("batch_size: 100", "batch_size: 10").replace("page_size: 2000", "page_size: 500");
    let pipelines: String = PIPELINES.iter().map(|name| format!("  {name}:\n{pipeline}")).collect();
    std::fs::write(dir.join("three.yaml"), format!("{head}pipelines:\n{pipelines}")).unwrap();
}

fn start(dir: &std::path::Path, hub_url: &str, pipeline: &str) -> Child {
    let mut command: Command = bin();
    command
        .current_dir(dir)
        .env("HUBSPOT_BASE_URL", hub_url)
        .env("SYNCLINE_RUN_LEASE_SECS", "1")
        .args(["--config", "three.yaml", "--quiet", "run", pipeline, "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command.spawn().unwrap()
}

#[test]
fn three_processes_share_one_portals_budget_and_a_restart_continues_its_window() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let Some(db) = runtime.block_on(syncline_testkit::postgres()) else { return };
    // the store made once, before three processes would race to make it
    runtime.block_on(async { syncline_store::Store::connect(&db.url).await.unwrap().close().await });
    let hub = hub(Tier::Professional);
    let dir = members_to_hubspot("professional", "2000", "0");
    let d = dir.path();
    three_pipelines(d, &db.url);

    let mut runs: Vec<Child> = PIPELINES.iter().map(|p| start(d, &hub.url, p)).collect();
    // midway through the first window's calls: killed, and started again at once
    std::thread::sleep(Duration::from_secs(6));
    runs[0].kill().unwrap();
    runs[0].wait().unwrap();
    runs[0] = start(d, &hub.url, PIPELINES[0]);
    for (run, name) in runs.iter_mut().zip(PIPELINES) {
        let status = run.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{name} ended with {status}");
    }

    let ledger = hub.sandbox.ledger();
    let upserts = ledger.calls("/batch/upsert").len();
    let most = ledger.max_rolling(10_000);
    let refused = ledger.with_status(429);
    let windows: Vec<usize> = ledger.windows(10_000).iter().map(|w| w.calls).collect();
    eprintln!("shared budget: {upserts} upserts, calls per 10 s {windows:?}, most in any rolling 10 s {most}, {refused} × 429");
    assert!(upserts >= 3 * 200, "every pipeline wrote its 200 batches of ten ({upserts} upserts)");
    assert!(most <= 190, "{most} calls within one rolling 10 s");
    assert_eq!(refused, 0, "no call refused with 429, the restart included");
    // the last window is cut short by the end of the runs
    let full = &windows[..windows.len() - 1];
    assert!(!full.is_empty());
    for calls in full {
        assert!(*calls >= 171, "{calls} calls in a full window: under 90 % of 190 ({windows:?})");
    }
    assert_eq!(succeeded_runs(&runtime, &db.url), 3, "each pipeline has one finished run");
    runtime.block_on(db.drop());
}

/// Runs the store's history shows succeeded (the killed one stays unfinished).
fn succeeded_runs(runtime: &tokio::runtime::Runtime, url: &str) -> usize {
    runtime.block_on(async {
        let store = syncline_store::Store::connect(url).await.unwrap();
        let runs = store.runs(None, 20).await.unwrap();
        store.close().await;
        runs.iter().filter(|r| r.status == "succeeded").count()
    })
}
