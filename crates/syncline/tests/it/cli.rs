//! The command line as a person (or a script) meets it: the same exit codes for every command,
//! output without terminal escapes when piped, interrupts that stop within 2 s and say what was
//! committed, and the README's walk from its first command through the hints it prints.

use super::*;
use crate::hubspot::hub;
use std::process::Stdio;
use std::time::{Duration, Instant};
use syncline_sandbox::Tier;

/// A pipeline into HubSpot and a flow on HubSpot webhooks, with every address and token from
/// the environment, so one file serves every scenario.
const CONFIG: &str = r#"
state: ${SYNCLINE_STATE:-sqlite://state.db}
pipelines:
  members:
    source:
      sql: {url: sqlite://members.db, table: members, key: numero_asociado, watermark: lastmodifieddate}
    transforms:
      - require: [numero_asociado, firstname]
      - email: [email]
      - select: [numero_asociado, firstname, email]
    sink:
      hubspot: {base_url: "${HUBSPOT_BASE_URL}", token: "${HUBSPOT_TOKEN}", id_property: numero_asociado, tier: api_limit_increase}
webhooks:
  hubspot: {provider: hubspot, secrets: ["${HUBSPOT_APP_SECRET}"]}
connections:
  hubspot: {base_url: "${HUBSPOT_BASE_URL}", token: "${HUBSPOT_TOKEN}"}
  manychat: {base_url: "${MANYCHAT_BASE_URL}", token: "${MANYCHAT_TOKEN}"}
serve: {bind: "127.0.0.1:0"}
flows:
  welcome:
    trigger: {source: hubspot, events: [contact.creation]}
    steps:
      - hubspot.get: {properties: [firstname, email]}
      - manychat.find_or_create_subscriber: {email: email, first_name: firstname}
      - manychat.send_content: {message_tag: ACCOUNT_UPDATE, messages: ["Hola {{ contact.firstname }}"]}
"#;

/// How the environment differs between scenarios.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Success,
    BadArgument,
    BadConfig,
    Unreachable,
    AuthFailure,
}

struct Fixture {
    dir: tempfile::TempDir,
    sandbox: String,
}

impl Fixture {
    fn new() -> Fixture {
        let hub = hub(Tier::LimitIncrease);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("all.yaml"), CONFIG).unwrap();
        std::fs::write(dir.path().join("bad.yaml"), CONFIG.replace("    transforms:", "    batch_sise: 5\n    transforms:")).unwrap();
        let out = bin().current_dir(dir.path()).args(["example", "members", "--db", "members.db", "--rows", "200"]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        // the hub's sandbox lives as long as the test process; its URL is all the fixture needs
        let sandbox = hub.url.clone();
        std::mem::forget(hub);
        Fixture { dir, sandbox }
    }

    fn command(&self, scenario: Scenario, args: &[&str]) -> std::process::Command {
        let mut cmd = bin();
        cmd.current_dir(self.dir.path())
            .env("HUBSPOT_APP_SECRET", "exit-codes-secret")
            .env("HUBSPOT_BASE_URL", &self.sandbox)
            .env("MANYCHAT_BASE_URL", &self.sandbox)
            .env("HUBSPOT_TOKEN", "sandbox-token")
            .env("MANYCHAT_TOKEN", syncline_sandbox::DEMO_MANYCHAT_TOKEN);
        match scenario {
            Scenario::Unreachable => {
                // nothing listens on port 9; a state store that does not answer either
                cmd.env("HUBSPOT_BASE_URL", "http://127.0.0.1:9").env("MANYCHAT_BASE_URL", "http://127.0.0.1:9");
            }
            Scenario::AuthFailure => {
                cmd.env("HUBSPOT_TOKEN", "pat-revoked").env("MANYCHAT_TOKEN", "1000001:revoked");
            }
            _ => {}
        }
        let config = if scenario == Scenario::BadConfig { "bad.yaml" } else { "all.yaml" };
        cmd.args(["--config", config]).args(args);
        cmd
    }

    fn run(&self, scenario: Scenario, args: &[&str]) -> Output {
        self.command(scenario, args).output().unwrap()
    }
}

/// Every command × {success, bad argument, bad config, unreachable, auth failure}: the codes
/// `--help` lists (0 done, 3 done with dead letters, 1 failed, 2 bad usage/config/credentials).
/// A state store is the only thing store-only commands reach, so for them "unreachable" and
/// "auth failure" are a PostgreSQL store that does not answer, and one that refuses the role.
#[test]
fn exit_codes_are_the_same_for_every_command() {
    use Scenario::*;
    let f = Fixture::new();
    let postgres = std::env::var("SYNCLINE_TEST_POSTGRES_URL").ok();
    if postgres.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("SYNCLINE_TEST_POSTGRES_URL is required under CI=true");
    }
    let mut failures = Vec::new();
    let mut check = |scenario: Scenario, args: &[&str], expected: i32, extra_env: &[(&str, String)]| {
        let mut cmd = f.command(scenario, args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        if code(&out) != expected {
            failures.push(format!("{scenario:?} {args:?}: exit {} (want {expected}): {}{}", code(&out), stdout(&out), stderr(&out)));
        }
        out
    };

    // success, in an order that gives each command something to work on
    check(Success, &["run", "members"], 3, &[]);
    check(Success, &["check"], 0, &[]);
    check(Success, &["runs"], 0, &[]);
    let list = check(Success, &["dlq", "list", "--json"], 0, &[]);
    let ids: Vec<String> = stdout(&list).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string()).collect();
    assert!(ids.len() >= 2, "dead letters to work with: {}", stdout(&list));
    check(Success, &["dlq", "summary"], 0, &[]);
    check(Success, &["dlq", "show", &ids[0]], 0, &[]);
    check(Success, &["dlq", "ignore", &ids[0]], 0, &[]);
    check(Success, &["dlq", "replay"], 3, &[]);
    check(Success, &["state", "show"], 0, &[]);
    let cursor = r#"{"watermark": {"kind": "text", "value": "2024-01-01 00:00:50"}, "key": {"kind": "int", "value": 50}}"#;
    check(Success, &["state", "set", "members", cursor, "--yes"], 0, &[]);
    check(Success, &["state", "clear", "members", "--yes"], 0, &[]);
    check(Success, &["inbox"], 0, &[]);
    check(Success, &["inbox", "list"], 0, &[]);
    check(Success, &["backfill", "welcome", "--since", "2026-01-01", "--dry-run"], 0, &[]);
    check(Success, &["schema"], 0, &[]);
    check(Success, &["completions", "bash"], 0, &[]);
    let (mut serve, _) = start_serve(f.command(Success, &["serve"]).stderr(Stdio::null()));
    signal(&serve, "TERM");
    assert_eq!(serve.wait().unwrap().code(), Some(0), "serve stops cleanly on SIGTERM");

    // bad arguments: named, exit 2
    for args in [
        &["run", "membres"][..],
        &["run", "members", "--since", "yesterday"],
        &["check", "--bogus"],
        &["runs", "--limit", "0"],
        &["dlq", "list", "--status", "bogus"],
        &["dlq", "summary", "--bogus"],
        &["dlq", "show", "99999"],
        &["dlq", "ignore", "99999"],
        &["dlq", "replay", "--pipeline", "nosuch"],
        &["state", "show", "nosuch"],
        &["state", "set", "members", "not json", "--yes"],
        &["state", "clear", "nosuch", "--yes"],
        &["inbox", "show", "99999"],
        &["inbox", "list", "--status", "bogus"],
        &["serve", "--bind", "nowhere"],
        &["backfill", "welcome", "--since", "garbage"],
        &["backfill", "nosuch", "--since", "2026-01-01"],
        &["sandbox", "--tier", "gold"],
        &["schema", "extra"],
        &["example", "members", "--invalid", "lots"],
        &["bogus-command"],
    ] {
        check(BadArgument, args, 2, &[]);
    }

    // a bad config: every command that reads it says where, exit 2
    for args in [
        &["run", "members"][..],
        &["check"],
        &["runs"],
        &["dlq", "list"],
        &["dlq", "summary"],
        &["dlq", "replay"],
        &["state", "show"],
        &["state", "clear", "members", "--yes"],
        &["inbox"],
        &["serve"],
        &["backfill", "welcome", "--since", "2026-01-01"],
    ] {
        let out = check(BadConfig, args, 2, &[]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("bad.yaml:") && text.contains("batch_sise"), "{args:?}: {text}");
    }

    // HubSpot and ManyChat that cannot be reached: exit 1, fast
    for (args, expected) in [
        (&["run", "members"][..], 1),
        (&["check"], 1),
        (&["dlq", "replay"], 1),
        (&["state", "set", "members", cursor, "--yes"], 1),
        (&["backfill", "welcome", "--since", "2026-01-01"], 1),
    ] {
        let started = Instant::now();
        check(Unreachable, args, expected, &[]);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} gave up within seconds: {:?}", started.elapsed());
    }
    // tokens the services refuse: exit 2, a config problem
    for args in [
        &["run", "members"][..],
        &["check"],
        &["dlq", "replay"],
        &["state", "set", "members", cursor, "--yes"],
        &["backfill", "welcome", "--since", "2026-01-01"],
    ] {
        check(AuthFailure, args, 2, &[]);
    }

    // the state store itself: not answering is exit 1, refusing the role exit 2
    if let Some(url) = postgres {
        let parsed = url::Url::parse(&url).unwrap();
        let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
        let down = ("SYNCLINE_STATE", "postgres://postgres@127.0.0.1:9/test".to_owned());
        let refused = ("SYNCLINE_STATE", format!("postgres://no_such_role_syncline@{host}{}", parsed.path()));
        for args in [
            &["runs"][..],
            &["dlq", "list"],
            &["dlq", "summary"],
            &["dlq", "show", "1"],
            &["dlq", "ignore", "1"],
            &["state", "show"],
            &["state", "clear", "members", "--yes"],
            &["inbox"],
            &["inbox", "list"],
        ] {
            check(Unreachable, args, 1, std::slice::from_ref(&down));
            check(AuthFailure, args, 2, std::slice::from_ref(&refused));
        }
    }
    assert!(failures.is_empty(), "{} wrong exit code(s):\n{}", failures.len(), failures.join("\n"));
}

pub(crate) fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Piped output carries no terminal escapes and no box drawing, for every command a script
/// reads; with `CLICOLOR_FORCE=1` the logs are coloured (so the check can fail).
#[test]
fn piped_output_is_plain() {
    let f = Fixture::new();
    let commands: [&[&str]; 9] = [
        &["-v", "run", "members"],
        &["runs"],
        &["dlq", "list"],
        &["dlq", "summary"],
        &["state", "show"],
        &["check"],
        &["inbox"],
        &["inbox", "list"],
        &["-v", "run", "members", "--dry-run"],
    ];
    for args in commands {
        let out = f.run(Scenario::Success, args);
        assert!(matches!(code(&out), 0 | 3), "{args:?}: {}", stderr(&out));
        let (text, logs) = (stdout(&out), stderr(&out));
        assert!(!text.is_empty(), "{args:?} printed something");
        assert!(!text.contains('\u{1b}') && !logs.contains('\u{1b}'), "{args:?} printed escapes: {text}{logs}");
        assert!(!text.contains(['─', '│', '┌', '╞']), "{args:?} printed box drawing into a pipe: {text}");
    }
    let out = f.command(Scenario::Success, &["-v", "run", "members"]).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(stderr(&out).contains('\u{1b}'), "CLICOLOR_FORCE colours the logs: {}", stderr(&out));
    // a reader that goes away before the first line (`| head -0`) is not an error: exit 0, quietly
    for args in [&["dlq", "list", "--json", "--limit", "1000"][..], &["runs"], &["dlq", "summary"]] {
        let mut child = f.command(Scenario::Success, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(!stderr(&out).contains("panicked") && !stderr(&out).contains("Broken pipe"), "{args:?}: {}", stderr(&out));
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    }
}

/// Ctrl-C while the run waits for a HubSpot that cannot be reached: back within 2 s, exit
/// 130, and the history says `interrupted`. Ctrl-C mid-run: the history has the counts of what
/// HubSpot acknowledged, and the next run finishes the job with nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_within_two_seconds_and_keeps_what_was_acknowledged() {
    let f = Fixture::new();
    let child = f.command(Scenario::Unreachable, &["run", "members"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, "INT");
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(2), "stopped in {:?}", signalled.elapsed());
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let last = last_run(f.dir.path(), "all.yaml");
    assert_eq!((last["status"].as_str(), last["read_count"].as_i64()), (Some("interrupted"), Some(0)), "{last}");

    // mid-run, on a portal whose budget makes the run take a while
    let slow = hub(Tier::Free);
    let dir = crate::hubspot::members_to_hubspot("free", "30000", "0.05");
    let d = dir.path();
    let child = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", &slow.url)
        .args(["--config", "hub.yaml", "run", "members"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // a sink call takes 20 batch upserts (2,000 records) here: past 50, two pages are acknowledged
    while slow.upserts() < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "INT");
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(2), "stopped in {:?}", signalled.elapsed());
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(stdout(&out).contains("interrupted"), "the summary says so: {}", stdout(&out));
    let last = last_run(d, "hub.yaml");
    assert_eq!(last["status"], "interrupted");
    let created = last["created_count"].as_i64().unwrap();
    let state = sqlite(&d.join("members-hubspot-state.db")).await;
    assert!(
        created > 0 && created == count(&state, "SELECT COUNT(*) FROM record_hashes").await,
        "the counts are what was committed: {last}"
    );
    assert!(slow.contacts().len() as i64 >= created, "HubSpot has at least what was acknowledged");
    assert!(stdout(&out).contains(&created.to_string()), "the summary shows the true counts: {}", stdout(&out));

    // the next run finishes: every valid member once
    let out = crate::hubspot::run(d, &slow, "hub.yaml", &["-q", "run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(slow.contacts().len(), 28_500);

    // dead letters replayed against a HubSpot that is gone: fails within 10 s, naming it
    let started = Instant::now();
    let out = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
        .args(["--config", "hub.yaml", "dlq", "replay"])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "replay gave up in {:?}", started.elapsed());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach HubSpot at http://127.0.0.1:9"), "{}", stderr(&out));
}

/// The README's two commands, then each command its hints (or the README) give: they run as
/// written, from a copy of the repository's examples.
#[test]
fn the_readme_walk_works_as_written() {
    let readme = std::fs::read_to_string(examples().join("../README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "json") {
            std::fs::copy(&path, dir.path().join("examples").join(path.file_name().unwrap())).unwrap();
        }
    }
    let run = |line: &str| -> Output {
        let words: Vec<&str> = line.split_whitespace().collect();
        let args = match words.as_slice() {
            ["cargo", "run", "--release", "--", rest @ ..] | ["syncline", rest @ ..] => rest.to_vec(),
            _ => panic!("not a syncline command line: {line}"),
        };
        let out = bin().current_dir(dir.path()).args(&args).output().unwrap();
        assert!(matches!(code(&out), 0 | 3), "`{line}` exit {}: {}{}", code(&out), stdout(&out), stderr(&out));
        out
    };
    // the first command block of "The two commands"
    let section = readme.split("## The two commands").nth(1).expect("the README has the section");
    let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a command block");
    let mut output = String::new();
    for line in block.trim().split(" && ") {
        output = stdout(&run(line.trim()));
    }
    assert!(output.contains("members"), "the summary: {output}");
    // the hints it printed, copied as they are
    let hint = |text: &str, command: &str| -> String {
        text.split('`')
            .find(|part| part.starts_with("syncline ") && part.ends_with(command))
            .unwrap_or_else(|| panic!("no `… {command}` hint in {text}"))
            .to_owned()
    };
    let runs = hint(&output, "runs");
    let list = stdout(&run(&hint(&output, "dlq list")));
    assert!(list.contains("cedula") || list.contains("phone"), "{list}");
    let summary = stdout(&run(&hint(&list, "dlq summary")));
    assert!(summary.contains("open"), "{summary}");
    let history = stdout(&run(&runs));
    assert!(history.contains("rejects"), "{history}");
    // the replay hint works as printed: the run's sandbox stopped with it, so the hint starts
    // one of its own; nothing was fixed, so the 500 are rejected again and stay open
    let replay = hint(&output, "dlq replay --sandbox");
    let replayed = run(&replay);
    assert_eq!(code(&replayed), 3, "{}{}", stdout(&replayed), stderr(&replayed));
    let replayed = stdout(&replayed);
    assert!(replayed.contains("replay") && replayed.contains("500"), "{replayed}");
    assert!(replayed.contains("sandbox at http://127.0.0.1:"), "{replayed}");
    let open = stdout(&run(&hint(&output, "dlq list")));
    assert!(open.contains("500 open in all"), "the 500 are still open: {open}");
    // the dry run, as the README writes it
    let dry = readme
        .split('`')
        .find(|part| part.starts_with("syncline --config examples/members-to-hubspot.yaml run members --dry-run"))
        .expect("the README's dry run of the example");
    let plan = stdout(&run(dry));
    assert!(plan.contains("plan (dry run, nothing written)"), "{plan}");
}
