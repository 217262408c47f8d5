//! End-to-end tests of the `syncline` binary: each runs the real executable against real
//! SQLite files (and PostgreSQL / MariaDB where configured) in a temporary folder.

mod architecture;
mod bad_input;
mod browser;
mod check;
mod cli;
mod console;
mod crash;
mod disk;
mod hubspot;
mod hubspot_source;
mod instances;
mod lead_flow;
mod leases;
mod members;
mod quickbooks;
mod sandbox;
mod schedules;
mod serve;
mod shared_budgets;
mod source_rows;
mod sql_copy;
mod state;
mod stripe_quickbooks;
mod stripe_source;
mod traces;
mod warehouse;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The built binary.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline"));
    for var in [
        "SYNCLINE_CONFIG",
        "SYNCLINE_STATE",
        "MEMBERS_SOURCE_URL",
        "MEMBERS_TARGET_URL",
        "HUBSPOT_BASE_URL",
        "HUBSPOT_TOKEN",
        "MANYCHAT_BASE_URL",
        "MANYCHAT_TOKEN",
        "COLUMNS",
        "CLICOLOR_FORCE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `syncline --config <dir>/<config> args…` and returns its output.
pub fn syncline(dir: &Path, config: &str, args: &[&str]) -> Output {
    bin().current_dir(dir).arg("--config").arg(dir.join(config)).args(args).output().expect("the binary runs")
}

/// Starts `command` (a `syncline … serve`) and waits for its banner; returns the process and
/// the address it listens on. The caller decides where its stderr goes.
pub fn start_serve(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("the binary runs");
    let mut banner = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut banner).expect("the banner is read");
    match banner.strip_prefix("serving on http://").and_then(|r| r.split_whitespace().next()) {
        Some(address) => (child, address.to_owned()),
        None => {
            let _ = child.kill();
            panic!("unexpected banner {banner:?}")
        }
    }
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The repository's examples folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A temporary folder holding a copy of the members example.
pub fn members_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["members.yaml", "member.schema.json"] {
        std::fs::copy(examples().join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// Opens a SQLite file for assertions.
pub async fn sqlite(path: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}

pub async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.unwrap().0
}

/// The newest run of a pipeline, from `syncline runs --json`.
pub fn last_run(dir: &Path, config: &str) -> serde_json::Value {
    let out = syncline(dir, config, &["runs", "--json", "--limit", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(stdout(&out).lines().next().expect("a run")).unwrap()
}
