//! Crash safety: a run SIGKILLed at random points and restarted loses nothing, duplicates no
//! dead letter, and never moves its cursor backwards.

use super::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_and_restart() {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "100000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cursors: Vec<(String, i64)> = Vec::new();
    let mut kills = 0;
    while kills < 5 {
        // a killed run holds the pipeline's lease until it expires: one second here
        let mut command = bin();
        command.current_dir(d).env("SYNCLINE_RUN_LEASE_SECS", "1").arg("--config").arg(d.join("members.yaml"));
        let mut child = command.args(["-q", "run", "members"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(300..1500)));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill: nothing left to interrupt
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(1_100)); // its lease runs out
        kills += 1;
        if let Some(cursor) = cursor(d).await {
            cursors.push(cursor);
        }
    }
    assert!(kills >= 3, "the run was too fast to interrupt ({kills} kills)");
    let out = syncline(d, "members.yaml", &["-q", "run", "members"]);
    assert!(matches!(code(&out), 0 | 3), "{}", stderr(&out));
    cursors.extend(cursor(d).await);
    for pair in cursors.windows(2) {
        assert!(pair[0] <= pair[1], "the cursor moved backwards: {:?} → {:?}", pair[0], pair[1]);
    }
    let warehouse = sqlite(&d.join("members-warehouse.db")).await;
    let state = sqlite(&d.join("members-state.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM members").await, 95_000);
    assert_eq!(count(&warehouse, "SELECT COUNT(DISTINCT numero_asociado) FROM members").await, 95_000);
    assert_eq!(
        count(&state, "SELECT COUNT(*) FROM dead_letters").await,
        5_000,
        "one dead letter per bad record, however often it was re-read"
    );
    assert_eq!(count(&state, "SELECT COUNT(DISTINCT record_key) FROM dead_letters").await, 5_000);
    assert_eq!(cursors.last().map(|c| c.1), Some(100_000));
    let interrupted = count(&state, "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'").await;
    assert_eq!(interrupted, kills as i64, "killed runs show as interrupted in the history");
}

/// The committed cursor as (watermark, key).
async fn cursor(dir: &Path) -> Option<(String, i64)> {
    if !dir.join("members-state.db").exists() {
        return None;
    }
    let state = sqlite(&dir.join("members-state.db")).await;
    let row: Option<(String,)> =
        sqlx::query_as("SELECT cursor FROM cursors WHERE pipeline = 'members'").fetch_optional(&state).await.ok()?;
    let json: serde_json::Value = serde_json::from_str(&row?.0).unwrap();
    Some((json["watermark"]["value"].as_str()?.to_owned(), json["key"]["value"].as_i64()?))
}
