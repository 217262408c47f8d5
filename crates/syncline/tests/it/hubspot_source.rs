//! HubSpot → SQL: the HubSpot source through the real binary, against the sandbox in the
//! test's process (whose ledger shows every call it answered).

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use syncline_sandbox::{DEMO_HUBSPOT_TOKEN, Tier};

use super::hubspot::{Hub, hub};
use super::*;

const CONFIG: &str = r#"
pipelines:
  contacts:
    source:
      hubspot:
        base_url: ${HUBSPOT_BASE_URL}
        token: ${HUBSPOT_TOKEN:-sandbox-token}
        tier: api_limit_increase
        object: contacts
        properties: [email, firstname]
        settle: 1s
    sink:
      sql:
        url: sqlite://warehouse.db
        table: contacts
        key: hs_object_id
        create_table: true
"#;

fn run(dir: &std::path::Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    super::hubspot::run(dir, hub, "hs.yaml", args)
}

fn contact(n: usize) -> BTreeMap<String, String> {
    BTreeMap::from([("email".to_owned(), format!("c{n}@example.com")), ("firstname".to_owned(), format!("C{n}"))])
}

/// Done-when of the connector layout: 25,000 contacts modified within one minute, 300 of them
/// in the same millisecond, read incrementally through search. Every one arrives once, no
/// query pages toward 10,000 results (the sandbox answers 400 past them), and a full run lists.
#[tokio::test(flavor = "multi_thread")]
async fn contacts_modified_in_one_minute_arrive_once_through_search() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();

    // one contact from long ago (before the cursor), then 25,000 spread over one minute that
    // ended 10 s ago, 300 of them at one millisecond
    let now = Utc::now();
    let old = hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[contact(0)], now - Duration::minutes(30)).unwrap();
    let start = now - Duration::seconds(70);
    let crowded = start + Duration::milliseconds(30_000);
    let (mut n, mut imported) = (1, Vec::new());
    for k in 0..24_700i64 {
        let at = start + Duration::microseconds(k * 60_000_000 / 24_700);
        imported.extend(hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[contact(n)], at).unwrap());
        n += 1;
    }
    let same_ms: Vec<_> = (0..300).map(|i| contact(n + i)).collect();
    imported.extend(hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &same_ms, crowded).unwrap());
    assert_eq!(imported.len(), 25_000);

    // the cursor just before the minute: the next run is incremental, by search
    let cursor = format!(r#"{{"at_ms": {}, "id": 0}}"#, (start - Duration::seconds(1)).timestamp_millis());
    let set = run(d, &hub, &["state", "set", "contacts", &cursor, "--yes"]);
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let last = last_run(d, "hs.yaml");
    assert_eq!((last["mode"].as_str(), last["read_count"].as_u64()), (Some("incremental"), Some(25_000)), "{last}");

    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 25_000);
    assert_eq!(count(&warehouse, "SELECT COUNT(DISTINCT hs_object_id) FROM contacts").await, 25_000);
    let crowded_iso = crowded.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let at_once = count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE lastmodifieddate = '{crowded_iso}'")).await;
    assert!(at_once >= 300, "the 300 of one millisecond arrived ({at_once} rows share it)");
    let found = count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE hs_object_id = '{}'", old[0])).await;
    assert_eq!(found, 0, "the contact modified before the cursor is not read");

    let ledger = hub.sandbox.ledger();
    let searches = ledger.calls("/search");
    assert!(searches.len() >= 125 && searches.len() <= 130, "{} searches for 125 pages of 200", searches.len());
    let refused: Vec<_> = ledger.requests.iter().filter(|r| r.status == 400).collect();
    assert!(refused.is_empty(), "no request was refused (none paged past 10,000 results): {refused:?}");

    // nothing changed: nothing read; one change: read once
    let again = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(last_run(d, "hs.yaml")["read_count"], 0);
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[contact(99_999)], Utc::now() - Duration::seconds(2)).unwrap();
    let changed = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&changed), 0, "{}", stderr(&changed));
    assert_eq!(last_run(d, "hs.yaml")["read_count"], 1);

    // a full run lists every object, 100 a page, the old one included
    let lists_before = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").iter().filter(|r| r.method == "GET").count();
    let full = run(d, &hub, &["run", "contacts", "--full"]);
    assert_eq!(code(&full), 0, "{}", stderr(&full));
    assert_eq!(last_run(d, "hs.yaml")["read_count"], 25_002);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 25_002);
    let lists = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").iter().filter(|r| r.method == "GET").count() - lists_before;
    assert_eq!(lists, 251, "25,002 contacts in pages of 100");
    assert!(hub.sandbox.ledger().requests.iter().all(|r| r.status != 400));
}

/// The example walk: members into the sandbox's portal, then the portal's contacts back into a
/// warehouse table by the `hubspot-to-warehouse` example, and a check of both.
#[tokio::test(flavor = "multi_thread")]
async fn the_warehouse_example_reads_back_what_the_members_example_wrote() {
    let hub = hub(Tier::LimitIncrease);
    let dir = super::hubspot::members_to_hubspot("api_limit_increase", "300", "0");
    let d = dir.path();
    let written = super::hubspot::run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&written), 0, "{}", stderr(&written));
    std::fs::copy(examples().join("hubspot-to-warehouse.yaml"), d.join("warehouse.yaml")).unwrap();
    let checked = super::hubspot::run(d, &hub, "warehouse.yaml", &["check"]);
    assert_eq!(code(&checked), 0, "{}{}", stdout(&checked), stderr(&checked));
    assert!(stdout(&checked).contains("7 properties exist"), "{}", stdout(&checked));
    let read = super::hubspot::run(d, &hub, "warehouse.yaml", &["run", "contacts"]);
    assert_eq!(code(&read), 0, "{}{}", stdout(&read), stderr(&read));
    let warehouse = sqlite(&d.join("hubspot-warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM hubspot_contacts").await, 300);
    let matched = count(&warehouse, "SELECT COUNT(DISTINCT numero_asociado) FROM hubspot_contacts WHERE firstname IS NOT NULL").await;
    assert_eq!(matched, 300, "every member came back with its properties");
    // a misspelt property is named by check, with the one meant
    let typo = std::fs::read_to_string(d.join("warehouse.yaml")).unwrap().replace("provincia,", "provinca,");
    std::fs::write(d.join("typo.yaml"), typo).unwrap();
    let checked = super::hubspot::run(d, &hub, "typo.yaml", &["check"]);
    assert_eq!(code(&checked), 2, "{}", stdout(&checked));
    assert!(stdout(&checked).contains(r#""provinca" (did you mean "provincia"?)"#), "{}", stdout(&checked));
}
