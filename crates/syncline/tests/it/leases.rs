//! Exclusive runs: a pipeline runs in one process at a time, through a lease in the state
//! store. A second `run` exits at once naming the holder; with `--wait` it runs after the first;
//! a run SIGKILLed while it holds the lease blocks the next one no longer than the lease.

use std::time::{Duration, Instant};

use super::*;

/// `syncline --config members.yaml` in `d`, its leases lasting `lease_secs`.
fn members(d: &Path, lease_secs: u64) -> Command {
    let mut command = bin();
    command.current_dir(d).env("SYNCLINE_RUN_LEASE_SECS", lease_secs.to_string()).arg("--config").arg(d.join("members.yaml"));
    command
}

/// The members example with 200,000 rows, and `run members` on it, once it holds the
/// pipeline's lease (for `lease_secs`) and has begun.
async fn holder(lease_secs: u64) -> (tempfile::TempDir, std::process::Child) {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "200000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let child = members(d, lease_secs).args(["-q", "run", "members"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // the store may still be making its tables
        let state = d.join("members-state.db");
        let held = match state.exists() {
            true => sqlx::query_as::<_, (i64,)>(
                "SELECT (SELECT COUNT(*) FROM run_leases) + (SELECT COUNT(*) FROM runs WHERE status = 'running')",
            )
            .fetch_one(&sqlite(&state).await)
            .await
            .ok(),
            false => None,
        };
        // the lease, and the run under way
        if held == Some((2,)) {
            break;
        }
        assert!(Instant::now() < deadline, "the first run never took its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (dir, child)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_exits_at_once_or_waits_its_turn() {
    let (dir, mut first) = holder(30).await;
    let d = dir.path();
    let started = Instant::now();
    let second = members(d, 30).args(["run", "members"]).output().unwrap();
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    let message = stderr(&second);
    assert!(
        message.contains("pipeline members is running already") && message.contains("process") && message.contains("--wait"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "at once, not after the first run");

    let waited = members(d, 30).args(["run", "members", "--wait"]).output().unwrap();
    assert!(matches!(code(&waited), 0 | 3), "{}", stderr(&waited));
    assert!(stderr(&waited).contains("waiting for the run that process"), "{}", stderr(&waited));
    let status = first.wait().unwrap();
    assert!(matches!(status.code(), Some(0 | 3)), "{status:?}");
    // one after the other: the first finished before the second started
    let state = sqlite(&d.join("members-state.db")).await;
    let runs: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT status, started_at, finished_at FROM runs WHERE pipeline = 'members' ORDER BY started_at")
            .fetch_all(&state)
            .await
            .unwrap();
    assert_eq!(runs.len(), 2, "the refused run left no row: {runs:?}");
    assert!(runs[0].2.as_deref().is_some_and(|finished| finished <= runs[1].1.as_str()), "{runs:?}");
    assert!(runs.iter().all(|r| r.0 != "interrupted"), "neither run marked the other interrupted: {runs:?}");
    assert_eq!(count(&state, "SELECT COUNT(*) FROM run_leases").await, 0, "both gave their lease back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_holder_blocks_the_next_run_only_until_its_lease_ends() {
    let (dir, mut first) = holder(3).await;
    let d = dir.path();
    first.kill().unwrap(); // SIGKILL: the lease stays until it expires
    first.wait().unwrap();
    let killed = Instant::now();
    let refused = members(d, 3).args(["run", "members"]).output().unwrap();
    assert_eq!(code(&refused), 1, "the lease still holds: {}", stderr(&refused));
    let waited = members(d, 3).args(["run", "members", "--wait"]).output().unwrap();
    assert!(matches!(code(&waited), 0 | 3), "{}", stderr(&waited));
    let state = sqlite(&d.join("members-state.db")).await;
    let runs: Vec<(String, String)> = sqlx::query_as("SELECT status, started_at FROM runs WHERE pipeline = 'members' ORDER BY started_at")
        .fetch_all(&state)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].0, "interrupted", "the killed run, marked by the next one once it held the lease: {runs:?}");
    assert!(matches!(runs[1].0.as_str(), "succeeded" | "rejects"), "{runs:?}");
    let waited_for = killed.elapsed();
    assert!(waited_for < Duration::from_secs(60), "{waited_for:?}");
    eprintln!("the next run started after the killed one's 3-s lease ended; whole run {waited_for:?}");
}
