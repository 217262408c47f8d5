//! SQL → HubSpot end to end: the real binary against the sandbox, which runs in the test's
//! process so the test can read its ledger and state and script its faults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use syncline_sandbox::{Faults, Sandbox, Seed, Tier};

use super::*;

/// A sandbox served from its own thread and runtime, so the test's blocking calls to the
/// binary cannot starve it.
pub struct Hub {
    pub sandbox: Sandbox,
    pub url: String,
}

pub fn hub(tier: Tier) -> Hub {
    hub_with(Seed::members_demo(), tier)
}

/// The warehouse demo portal (the members one with the custom object "divisions").
pub fn warehouse_hub(tier: Tier) -> Hub {
    hub_with(Seed::warehouse_demo(), tier)
}

pub fn hub_with(mut seed: Seed, tier: Tier) -> Hub {
    seed.hubspot[0].tier = tier;
    let sandbox = Sandbox::from_seed(seed).unwrap();
    let served = sandbox.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            // with its webhook deliveries (HubSpot's app, Stripe's endpoints)
            served.serve(listener).await.unwrap();
        });
    });
    Hub { sandbox, url: format!("http://{}", rx.recv().unwrap()) }
}

impl Hub {
    pub fn upserts(&self) -> usize {
        self.sandbox.ledger().calls("/batch/upsert").len()
    }

    /// Contacts by numero_asociado, without the properties HubSpot sets itself.
    pub fn contacts(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.sandbox
            .objects("sandbox-token", "contacts")
            .into_values()
            .map(|mut p| {
                for own in ["hs_object_id", "createdate", "lastmodifieddate"] {
                    p.remove(own);
                }
                (p.get("numero_asociado").cloned().unwrap_or_default(), p)
            })
            .collect()
    }
}

/// A folder with the members-to-hubspot example for `tier` and `rows` generated members.
pub fn members_to_hubspot(tier: &str, rows: &str, invalid: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(examples().join("members-to-hubspot.yaml")).unwrap();
    std::fs::write(dir.path().join("hub.yaml"), yaml.replace("tier: free", &format!("tier: {tier}"))).unwrap();
    generate(dir.path(), rows, invalid);
    dir
}

fn generate(dir: &Path, rows: &str, invalid: &str) {
    let out =
        bin().current_dir(dir).args(["example", "members", "--db", "members.db", "--rows", rows, "--invalid", invalid]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

pub fn run(dir: &Path, hub: &Hub, config: &str, args: &[&str]) -> Output {
    bin().current_dir(dir).env("HUBSPOT_BASE_URL", &hub.url).arg("--config").arg(dir.join(config)).args(args).output().unwrap()
}

async fn exec(pool: &sqlx::SqlitePool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn members_reach_hubspot_in_batches_and_only_changes_are_sent() {
    let hub = hub(Tier::Professional);
    let dir = members_to_hubspot("professional", "20000", "0.05");
    let d = dir.path();

    // 1. 20,000 rows, 5 % invalid: 19,000 contacts in 190 calls, 1,000 dead letters, no 429
    let out = run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let contacts = hub.contacts();
    assert_eq!(contacts.len(), 19_000);
    assert_eq!(hub.upserts(), 190);
    assert_eq!(hub.sandbox.ledger().with_status(429), 0);
    let state = sqlite(&d.join("members-hubspot-state.db")).await;
    let rules: Vec<(String, String, String)> =
        sqlx::query_as("SELECT field, rule, class FROM dead_letters WHERE status = 'open'").fetch_all(&state).await.unwrap();
    assert_eq!(rules.len(), 1000);
    for (field, rule, class) in &rules {
        assert!(!field.is_empty() && class == "data", "{field} {rule} {class}");
        assert!(["cedula", "phone", "email", "beneficiaries", "map_values", "require", "enum"].contains(&rule.as_str()), "{rule}");
    }
    let one = &contacts["1"];
    assert!(one["phone"].starts_with("+506") && one["no__de_cedula"].len() == 9, "{one:?}");

    // 2. nothing changed: an incremental run and a full re-read both make 0 write calls
    let out = run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(d, &hub, "hub.yaml", &["run", "members", "--full"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(last_run(d, "hub.yaml")["read_count"], 20_000);
    assert_eq!(hub.upserts(), 190, "unchanged records are not sent");

    // 3. 300 rows change: exactly 3 calls, and only those contacts change
    let rejected: BTreeSet<String> = sqlx::query_as::<_, (String,)>("SELECT record_key FROM dead_letters")
        .fetch_all(&state)
        .await
        .unwrap()
        .into_iter()
        .map(|(k,)| k)
        .collect();
    let changed: Vec<String> = (1..=20_000).map(|n: u32| n.to_string()).filter(|k| !rejected.contains(k)).step_by(7).take(300).collect();
    let source = sqlite(&d.join("members.db")).await;
    exec(
        &source,
        &format!(
            "UPDATE members SET canton = 'Cambiado', lastmodifieddate = '2030-01-01 00:00:00' WHERE numero_asociado IN ({})",
            changed.join(",")
        ),
    )
    .await;
    let out = run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(hub.upserts(), 193);
    let after = hub.contacts();
    let differing: BTreeSet<&String> = after.iter().filter(|(k, v)| contacts.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    assert_eq!(differing, changed.iter().collect::<BTreeSet<_>>());
    assert!(changed.iter().all(|k| after[k]["canton"] == "Cambiado"));
}

/// A small source whose values only HubSpot can judge.
const PEOPLE: &str = "\
state: sqlite://state.db
pipelines:
  people:
    source:
      sql:
        url: sqlite://people.db
        table: people
        key: numero_asociado
        watermark: updated
    transforms:
      - select: [numero_asociado, email, marital_status]
    sink:
      hubspot:
        base_url: ${HUBSPOT_BASE_URL}
        token: ${HUBSPOT_TOKEN:-sandbox-token}
        id_property: numero_asociado
";

async fn people(dir: &Path, rows: u32, value: impl Fn(u32) -> (String, String)) {
    std::fs::write(dir.join("people.yaml"), PEOPLE).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.join("people.db").display())).await.unwrap();
    exec(&pool, "CREATE TABLE people (numero_asociado INTEGER PRIMARY KEY, email TEXT, marital_status TEXT, updated TEXT)").await;
    for n in 1..=rows {
        let (email, status) = value(n);
        exec(&pool, &format!("INSERT INTO people VALUES ({n}, '{email}', '{status}', '2024-01-01 00:00:00')")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_rejections_become_typed_dead_letters_and_replay_after_a_fix() {
    let hub = hub(Tier::Free);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // someone else's contact already holds the email row 101 will try to use
    let address = hub.url.strip_prefix("http://").unwrap();
    let taken = r#"{"inputs":[{"id":"9999","idProperty":"numero_asociado","properties":{"email":"taken@example.cr"}}]}"#;
    let (status, _) = crate::sandbox::http(address, "POST", "/crm/v3/objects/contacts/batch/upsert", "sandbox-token", taken);
    assert!(status.contains("200"), "{status}");
    people(d, 101, |n| {
        let email = if n == 101 { "taken@example.cr".into() } else { format!("p{n}@example.cr") };
        (email, if [10, 20, 30].contains(&n) { "Soltera".into() } else { "Casado".into() })
    })
    .await;

    let out = run(d, &hub, "people.yaml", &["run", "people"]);
    assert_eq!(code(&out), 3, "the run continues past rejections: {}", stderr(&out));
    assert_eq!(hub.contacts().len(), 1 + 97, "97 of the first batch written, beside the existing contact");
    assert_eq!(hub.upserts(), 1 + 2);
    let state = sqlite(&d.join("state.db")).await;
    let letters: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT record_key, class, field, message FROM dead_letters ORDER BY id").fetch_all(&state).await.unwrap();
    let keys: Vec<&str> = letters.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(keys, ["10", "20", "30", "101"]);
    for (_, class, field, message) in &letters[..3] {
        assert_eq!((class.as_str(), field.as_str()), ("data", "marital_status"));
        assert!(message.contains("Soltera was not one of the allowed options"), "HubSpot's own message: {message}");
    }
    let (_, class, _, message) = &letters[3];
    assert_eq!(class, "conflict");
    assert!(message.contains("needs review") && message.contains("Existing ID"), "{message}");

    // the mapping is fixed; the replay writes the three, and the conflict stays for review
    let fixed = PEOPLE.replace(
        "      - select:",
        "      - map_values: { field: marital_status, values: { Soltera: Soltero }, otherwise: keep }\n      - select:",
    );
    std::fs::write(d.join("people.yaml"), fixed).unwrap();
    let out = run(d, &hub, "people.yaml", &["dlq", "replay"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let contacts = hub.contacts();
    assert!(["10", "20", "30"].iter().all(|k| contacts[*k]["marital_status"] == "Soltero"), "{:?}", contacts.get("10"));
    let open: Vec<(String,)> = sqlx::query_as("SELECT record_key FROM dead_letters WHERE status = 'open'").fetch_all(&state).await.unwrap();
    assert_eq!(open, [("101".to_owned(),)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_hubspot_cannot_take_fails_before_any_write() {
    let hub = hub(Tier::Free);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    people(d, 5, |n| (format!("p{n}@example.cr"), "Casado".into())).await;

    let cases = [
        ("[numero_asociado, email, apodo]", None, &["\"apodo\" is not a contacts property"][..]),
        (
            "[numero_asociado, marital_status]",
            Some("      - map_values: { field: marital_status, values: { Casado: Union Libre } }\n"),
            &["marital_status", "Union Libre", "its options"][..],
        ),
        ("[numero_asociado, lastmodifieddate]", None, &["\"lastmodifieddate\" is read-only"][..]),
    ];
    for (select, step, expect) in cases {
        let config = PEOPLE.replace("[numero_asociado, email, marital_status]", select);
        let config = match step {
            Some(step) => config.replace("      - select:", &format!("{step}      - select:")),
            None => config,
        };
        std::fs::write(d.join("bad.yaml"), config).unwrap();
        let out = run(d, &hub, "bad.yaml", &["run", "people"]);
        assert_eq!(code(&out), 2, "a mapping the portal cannot take is the config's problem: {}", stderr(&out));
        let check = run(d, &hub, "bad.yaml", &["check"]);
        assert_eq!(code(&check), 2);
        for text in expect {
            assert!(stderr(&out).contains(text), "run: {text:?} in {}", stderr(&out));
            assert!(stdout(&check).contains(text), "check: {text:?} in {}", stdout(&check));
        }
        assert_eq!(hub.upserts(), 0, "nothing written for {select}");
    }

    // a wrong token: one 401, no retries, exit 2 (a credential is config) at once
    let before = hub.sandbox.ledger().requests.len();
    let out = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", &hub.url)
        .env("HUBSPOT_TOKEN", "not-the-token")
        .arg("--config")
        .arg(d.join("people.yaml"))
        .args(["run", "people"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("401") && stderr(&out).contains("INVALID_AUTHENTICATION"), "{}", stderr(&out));
    assert_eq!(hub.sandbox.ledger().requests.len(), before + 1, "no retry storm");

    // HubSpot unreachable: `check` says so
    let out = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
        .arg("--config")
        .arg(d.join("people.yaml"))
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "unreachable is a failure, not a config error");
    assert!(
        stdout(&out).contains("✗ people: sink") && stdout(&out).contains("cannot reach HubSpot at http://127.0.0.1:9"),
        "{}",
        stdout(&out)
    );
    // and a good config checks clean
    let out = run(d, &hub, "people.yaml", &["check"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(hub.upserts(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_plans_against_hubspot_without_writing() {
    let hub = hub(Tier::Professional);
    let dir = members_to_hubspot("professional", "1000", "0");
    let d = dir.path();
    let out = run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = hub.contacts();
    let writes = hub.sandbox.ledger().writes();

    let source = sqlite(&d.join("members.db")).await;
    exec(&source, "UPDATE members SET canton = 'Nuevo' WHERE numero_asociado % 2 = 0").await;
    let out = run(d, &hub, "hub.yaml", &["run", "members", "--full", "--dry-run", "--plan-out", "plan.jsonl"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("plan.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(plan.len(), 1000);
    for line in &plan {
        let key: u32 = line["key"].as_str().unwrap().parse().unwrap();
        if key.is_multiple_of(2) {
            assert_eq!(line["action"], "update", "{line}");
            let old = &before[&key.to_string()]["canton"];
            assert_eq!(line["changes"], serde_json::json!([["canton", old, "Nuevo"]]), "{line}");
        } else {
            assert_eq!(line["action"], "unchanged", "{line}");
        }
    }
    let ledger = hub.sandbox.ledger();
    assert_eq!(ledger.writes(), writes, "a dry run writes nothing");
    assert_eq!(ledger.calls("/batch/read").len(), 5, "500 changed keys read in 5 calls");
    assert_eq!(hub.contacts(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_change_nothing_in_the_result() {
    let clean = hub(Tier::LimitIncrease);
    let faulty = hub(Tier::LimitIncrease);
    let dir = members_to_hubspot("api_limit_increase", "3000", "0");
    let d = dir.path();
    let out = run(d, &clean, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let faults = |seed, retry_after_secs| Faults {
        seed,
        rate_limited: 0.3,
        retry_after_secs,
        server_errors: 0.1,
        lost_after_write: 0.05,
        resets_after: 0.05,
        resets_before: 0.05,
        truncated: 0.05,
        latency_ms: 2,
        jitter_ms: 30,
        ..Faults::default()
    };
    // the same rows into a faulty portal: the first half meets 429s with Retry-After, the rest without
    let other = tempfile::tempdir().unwrap();
    let o = other.path();
    for file in ["hub.yaml", "members.db"] {
        std::fs::copy(d.join(file), o.join(file)).unwrap();
    }
    faulty.sandbox.set_faults(faults(41, Some(1)));
    let out = run(o, &faulty, "hub.yaml", &["run", "members", "--limit", "1500"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    faulty.sandbox.set_faults(faults(42, None));
    let out = run(o, &faulty, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let ledger = faulty.sandbox.ledger();
    let statuses: Vec<u16> = ledger.requests.iter().map(|r| r.status).collect();
    assert!(ledger.with_status(429) > 0 && ledger.with_status(502) > 0, "the faults happened: {statuses:?}");
    for cut in ["reset", "truncated"] {
        assert!(ledger.requests.iter().any(|r| r.cut == Some(cut)), "some answers were {cut}");
    }
    assert_eq!(last_run(o, "hub.yaml")["read_count"], 1500);
    assert_eq!(faulty.contacts(), clean.contacts(), "the same contacts, nothing lost or duplicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_opens_the_breaker_and_the_run_recovers() {
    let hub = hub(Tier::Free);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    people(d, 3000, |n| (format!("p{n}@example.cr"), "Casado".into())).await;
    let child = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", &hub.url)
        .arg("--config")
        .arg(d.join("people.yaml"))
        .args(["run", "people"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // once writes are going, HubSpot answers 503 to everything for 20 s: shorter than the
    // breaker stays open (30 s)
    while hub.upserts() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hub.sandbox.set_faults(Faults { down_for_secs: 20, ..Faults::default() });
    let out = child.wait_with_output().unwrap();

    assert_eq!(code(&out), 0, "the run waits the outage out: {}", stderr(&out));
    assert_eq!(hub.contacts().len(), 3000, "nothing lost");
    let ledger = hub.sandbox.ledger();
    let failed = ledger.with_status(503);
    // half of the last 20 calls failing (10 at least recorded) opens it — here after the 5
    // successful calls, 5 failures; calls already past the breaker may land, then ≤ 3 probes
    assert!((5..=12).contains(&failed), "a bounded number of calls fail: {failed}");
    let times: Vec<i64> = ledger.requests.iter().map(|r| r.at_ms).collect();
    let longest_pause = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest_pause >= 29_000, "no calls while the breaker is open: longest pause {longest_pause} ms");
    assert_eq!(ledger.calls("/batch/upsert").iter().filter(|r| r.status == 200).count(), 30);
}
