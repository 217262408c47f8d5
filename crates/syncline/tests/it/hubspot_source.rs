//! HubSpot → SQL: the HubSpot source through the real binary, against the sandbox in the
//! test's process (whose ledger shows every call it answered).

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use sqlx::Connection;
use syncline_sandbox::{DEMO_HUBSPOT_TOKEN, Faults, Service, Tier};

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

/// Creates a contact property of `kind` (`number`, or `string` as text) through HubSpot's API.
async fn create_contact_property(hub: &Hub, name: &str, kind: &str) {
    let field = if kind == "number" { "number" } else { "text" };
    let property = serde_json::json!({"name": name, "label": name, "type": kind, "fieldType": field, "groupName": "contactinformation"});
    let created = reqwest::Client::new()
        .post(format!("{}/crm/v3/properties/contacts", hub.url))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .json(&property)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "creating property {name}");
}

/// Creates the number property `nivel` through HubSpot's API, then a contact with `properties`,
/// and waits out `settle`, so the next run reads it.
async fn add_nivel_then(hub: &Hub, properties: BTreeMap<String, String>) {
    create_contact_property(hub, "nivel", "number").await;
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[properties], Utc::now()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
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

    // 26,001 contacts from long ago (before the cursor, so the changed ones are not most of
    // them and the read searches), then 25,000 spread over one minute that ended 10 s ago, 300
    // of them at one millisecond
    let now = Utc::now();
    let old = hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[contact(0)], now - Duration::minutes(30)).unwrap();
    let long_ago: Vec<_> = (200_000..226_000).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &long_ago, now - Duration::minutes(30)).unwrap();
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
    // SQLite keeps times as text; strftime reads both spellings
    let same_ms = format!("strftime('%Y-%m-%d %H:%M:%f', lastmodifieddate) = strftime('%Y-%m-%d %H:%M:%f', '{crowded_iso}')");
    let at_once = count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE {same_ms}")).await;
    assert!(at_once >= 300, "the 300 of one millisecond arrived ({at_once} rows share it)");
    let found = count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE hs_object_id = '{}'", old[0])).await;
    assert_eq!(found, 0, "the contact modified before the cursor is not read");

    let ledger = hub.sandbox.ledger();
    let searches = ledger.calls("/search");
    assert!(searches.len() >= 125 && searches.len() <= 132, "{} searches for 125 pages of 200", searches.len());
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
    assert_eq!(last_run(d, "hs.yaml")["read_count"], 51_002);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 51_002);
    let lists = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").iter().filter(|r| r.method == "GET").count() - lists_before;
    assert_eq!(lists, 512, "51,002 contacts in pages of 100, and one page of archived ones (none)");
    assert!(hub.sandbox.ledger().requests.iter().all(|r| r.status != 400));
}

/// The example walk: members into the sandbox's portal, then the portal's contacts back into a
/// warehouse table by the `hubspot-to-warehouse` example, and a check of both.
#[tokio::test(flavor = "multi_thread")]
async fn the_warehouse_example_reads_back_what_the_members_example_wrote() {
    let hub = super::hubspot::warehouse_hub(Tier::LimitIncrease);
    let dir = super::hubspot::members_to_hubspot("api_limit_increase", "300", "0");
    let d = dir.path();
    let written = super::hubspot::run(d, &hub, "hub.yaml", &["run", "members"]);
    assert_eq!(code(&written), 0, "{}", stderr(&written));
    std::fs::copy(examples().join("hubspot-to-warehouse.yaml"), d.join("warehouse.yaml")).unwrap();
    let checked = super::hubspot::run(d, &hub, "warehouse.yaml", &["check"]);
    assert_eq!(code(&checked), 0, "{}{}", stdout(&checked), stderr(&checked));
    assert!(stdout(&checked).contains("11 properties are read"), "{}", stdout(&checked));
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

/// Reading every property (the default): each lands in a column of its property's type, with
/// the object's JSON beside it; a property added in HubSpot becomes a column on the next run,
/// and a listed property the object lacks is named before anything is read.
#[tokio::test(flavor = "multi_thread")]
async fn the_warehouse_follows_the_portals_properties() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG.replace("        properties: [email, firstname]\n", "")).unwrap();
    let member = |n: usize| {
        let mut c = contact(n);
        c.extend([("salario_bruto".to_owned(), format!("{n}50000.25")), ("date_of_birth".to_owned(), "1990-04-01".to_owned())]);
        c
    };
    let members: Vec<_> = (1..=40).map(member).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &members, Utc::now() - Duration::minutes(5)).unwrap();

    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    let columns: BTreeMap<String, String> =
        sqlx::query_as("SELECT name, type FROM pragma_table_info('contacts')").fetch_all(&warehouse).await.unwrap().into_iter().collect();
    for (column, sql_type) in [
        ("hs_object_id", "INTEGER"),
        ("email", "TEXT"),
        ("salario_bruto", "NUMERIC"),
        ("date_of_birth", "DATE"),
        ("createdate", "TIMESTAMP"),
        ("lastmodifieddate", "TIMESTAMP"),
        ("numero_asociado", "TEXT"),
        ("_raw", "TEXT"),
    ] {
        assert_eq!(columns.get(column).map(String::as_str), Some(sql_type), "column {column}: {columns:?}");
    }
    let (salary, raw): (f64, String) =
        sqlx::query_as("SELECT salario_bruto, _raw FROM contacts WHERE email = 'c7@example.com'").fetch_one(&warehouse).await.unwrap();
    assert_eq!(salary, 750000.25);
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["properties"]["firstname"], "C7", "{raw}");
    assert!(raw["id"].as_str().is_some_and(|id| !id.is_empty()), "{raw}");

    // a property added in HubSpot: a column from the next run on, of its type
    let mut late = member(41);
    late.insert("nivel".to_owned(), "3".to_owned());
    add_nivel_then(&hub, late).await;
    let again = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&again), 0, "{}{}", stdout(&again), stderr(&again));
    assert_eq!(last_run(d, "hs.yaml")["read_count"], 1);
    let nivel: (String,) =
        sqlx::query_as("SELECT type FROM pragma_table_info('contacts') WHERE name = 'nivel'").fetch_one(&warehouse).await.unwrap();
    assert_eq!(nivel.0, "NUMERIC");
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts WHERE nivel = 3").await, 1);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 41);

    // a listed property the object does not have: named, with the one meant, and nothing read
    std::fs::write(d.join("typo.yaml"), CONFIG.replace("[email, firstname]", "[email, frstname]")).unwrap();
    let reads_before = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").len();
    let typo = super::hubspot::run(d, &hub, "typo.yaml", &["run", "contacts", "--full"]);
    assert_eq!(code(&typo), 2, "{}{}", stdout(&typo), stderr(&typo));
    assert!(stderr(&typo).contains(r#"contacts has no property "frstname" (did you mean "firstname"?)"#), "{}", stderr(&typo));
    assert_eq!(hub.sandbox.ledger().calls("/crm/v3/objects/contacts").len(), reads_before, "no object was read");
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 41, "nothing stored was touched");

    // an object type the portal lacks is named with the one meant; a singular means the plural
    std::fs::write(d.join("object.yaml"), CONFIG.replace("object: contacts", "object: contactz")).unwrap();
    let unknown = super::hubspot::run(d, &hub, "object.yaml", &["run", "contacts"]);
    assert_eq!(code(&unknown), 2, "{}{}", stdout(&unknown), stderr(&unknown));
    assert!(stderr(&unknown).contains(r#"the portal has no object type "contactz" (did you mean "contacts"?"#), "{}", stderr(&unknown));
    std::fs::write(d.join("singular.yaml"), CONFIG.replace("object: contacts", "object: contact")).unwrap();
    let singular = super::hubspot::run(d, &hub, "singular.yaml", &["check"]);
    assert_eq!(code(&singular), 0, "{}{}", stdout(&singular), stderr(&singular));
    assert!(stdout(&singular).contains("HubSpot contacts at"), "{}", stdout(&singular));
}

/// The same portal into PostgreSQL and MariaDB warehouses: tables made from the property types
/// (numeric, timestamptz, date, bigint key), and a property added in HubSpot added as a column.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_mariadb_warehouses_follow_the_portal() {
    let Some(postgres) = syncline_testkit::postgres().await else { return };
    let Some(mariadb) = syncline_testkit::mysql().await else { return };
    for (db, types_sql, expected) in [
        (
            &postgres,
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'contacts'",
            [
                ("hs_object_id", "bigint"),
                ("salario_bruto", "numeric"),
                ("createdate", "timestamp with time zone"),
                ("date_of_birth", "date"),
                ("nivel", "numeric"),
            ],
        ),
        (
            &mariadb,
            "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'contacts'",
            [
                ("hs_object_id", "bigint"),
                ("salario_bruto", "decimal"),
                ("createdate", "datetime"),
                ("date_of_birth", "date"),
                ("nivel", "decimal"),
            ],
        ),
    ] {
        let hub = hub(Tier::LimitIncrease);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = CONFIG.replace("        properties: [email, firstname]\n", "").replace("sqlite://warehouse.db", &db.url);
        std::fs::write(d.join("hs.yaml"), config).unwrap();
        let mut members: Vec<_> = (1..=30).map(contact).collect();
        for m in &mut members {
            m.insert("salario_bruto".to_owned(), "1234.5".to_owned());
        }
        hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &members, Utc::now() - Duration::minutes(5)).unwrap();
        let out = run(d, &hub, &["run", "contacts"]);
        assert_eq!(code(&out), 0, "{}: {}{}", db.url, stdout(&out), stderr(&out));
        let mut late = contact(31);
        late.insert("nivel".to_owned(), "2.5".to_owned());
        add_nivel_then(&hub, late).await;
        let again = run(d, &hub, &["run", "contacts"]);
        assert_eq!(code(&again), 0, "{}: {}{}", db.url, stdout(&again), stderr(&again));

        let counts = "SELECT CAST(COUNT(*) AS CHAR(20)), CAST(SUM(CASE WHEN nivel = 2.5 THEN 1 ELSE 0 END) AS CHAR(20)) FROM contacts";
        let pg_counts = "SELECT COUNT(*)::text, SUM(CASE WHEN nivel = 2.5 THEN 1 ELSE 0 END)::text FROM contacts";
        let (columns, counts): (BTreeMap<String, String>, (String, String)) = if db.url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let columns = sqlx::query_as(types_sql).fetch_all(&mut conn).await.unwrap().into_iter().collect();
            (columns, sqlx::query_as(pg_counts).fetch_one(&mut conn).await.unwrap())
        } else {
            let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            let columns = sqlx::query_as(types_sql).fetch_all(&mut conn).await.unwrap().into_iter().collect();
            (columns, sqlx::query_as(counts).fetch_one(&mut conn).await.unwrap())
        };
        for (column, sql_type) in expected {
            assert_eq!(columns.get(column).map(String::as_str), Some(sql_type), "{}: column {column}: {columns:?}", db.url);
        }
        assert_eq!(counts, ("31".to_owned(), "1".to_owned()), "{}: rows, and rows with the new property's value", db.url);
    }
    postgres.drop().await;
    mariadb.drop().await;
}

/// The completeness check: an incremental run that read everything says so in the sync
/// history; when search counts an object it leaves out of its results (an index out of step),
/// the run fails loudly naming the range, and a `--full` run lists and lands it.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_search_leaves_out_fails_the_completeness_check() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();
    let cursor = format!(r#"{{"at_ms": {}, "id": 0}}"#, (Utc::now() - Duration::minutes(10)).timestamp_millis());
    let set = run(d, &hub, &["state", "set", "contacts", &cursor, "--yes"]);
    assert_eq!(code(&set), 0, "{}", stderr(&set));

    // 450 modified a minute ago, read by search: complete, and the history says so
    let first: Vec<_> = (1..=450).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &first, Utc::now() - Duration::minutes(1)).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let last = last_run(d, "hs.yaml");
    assert_eq!(last["read_count"], 450);
    let audit = last["audit"].as_str().unwrap_or_default();
    assert!(audit.starts_with("complete: 450 contacts read, search counts 450 with lastmodifieddate from"), "{last}");
    assert!(stderr(&out).contains(audit), "the run prints its audit: {}", stderr(&out));

    // 300 more, one of which search counts but does not return
    let second: Vec<_> = (451..=750).map(contact).collect();
    let ids = hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &second, Utc::now() - Duration::seconds(20)).unwrap();
    let hidden = ids[137];
    hub.sandbox.set_service_faults(Service::HubSpot, Faults { search_skips: vec![hidden], ..Faults::default() });
    let failed = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&failed), 1, "{}{}", stdout(&failed), stderr(&failed));
    for words in
        ["completeness check failed", "search counts 300 contacts with lastmodifieddate from", "returned 299", "1 missing", "--full"]
    {
        assert!(stderr(&failed).contains(words), "{words:?} in {}", stderr(&failed));
    }
    let last = last_run(d, "hs.yaml");
    assert_eq!(last["status"], "failed", "{last}");
    assert!(last["error"].as_str().unwrap().contains("completeness check failed"), "{last}");
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE hs_object_id = {hidden}")).await, 0);

    // a full run lists every object, the one search leaves out too
    let full = run(d, &hub, &["run", "contacts", "--full"]);
    assert_eq!(code(&full), 0, "{}{}", stdout(&full), stderr(&full));
    assert_eq!(count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE hs_object_id = {hidden}")).await, 1);
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 750);
}

/// What left HubSpot is marked and nothing is removed: an archived contact gets `_deleted_at`,
/// one merged into another `_merged_into` (the other's id); the rest keep both empty.
#[tokio::test(flavor = "multi_thread")]
async fn archived_and_merged_contacts_are_marked() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();
    let contacts: Vec<_> = (1..=20).map(contact).collect();
    let ids = hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &contacts, Utc::now() - Duration::minutes(5)).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts WHERE _deleted_at IS NULL AND _merged_into IS NULL").await, 20);

    let client = reqwest::Client::new();
    let archived =
        client.delete(format!("{}/crm/v3/objects/contacts/{}", hub.url, ids[3])).bearer_auth(DEMO_HUBSPOT_TOKEN).send().await.unwrap();
    assert_eq!(archived.status(), 204);
    let merged = client
        .post(format!("{}/crm/v3/objects/contacts/merge", hub.url))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .json(&serde_json::json!({"primaryObjectId": ids[4].to_string(), "objectIdToMerge": ids[5].to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(merged.status(), 200);
    std::thread::sleep(std::time::Duration::from_millis(1500)); // past `settle`
    let again = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&again), 0, "{}{}", stdout(&again), stderr(&again));

    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 20, "nothing is removed");
    let one = |filter: String| {
        let warehouse = warehouse.clone();
        async move { count(&warehouse, &format!("SELECT COUNT(*) FROM contacts WHERE {filter}")).await }
    };
    assert_eq!(one(format!("hs_object_id = {} AND _deleted_at IS NOT NULL", ids[3])).await, 1, "the archived contact is marked");
    let into = one(format!("hs_object_id = {} AND _merged_into = {}", ids[5], ids[4])).await;
    assert_eq!(into, 1, "the merged contact names the one it became part of");
    assert_eq!(one(format!("hs_object_id = {} AND email = 'c6@example.com'", ids[5])).await, 1, "the merged contact's values stay");
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts WHERE _deleted_at IS NULL AND _merged_into IS NULL").await, 18);
}

/// A full read SIGKILLed three times and restarted ends with every contact once, and each
/// restart goes on from the last committed page instead of listing from the start.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_read_killed_three_times_resumes_from_its_last_committed_page() {
    const CONTACTS: usize = 20_000;
    let hub = hub(Tier::LimitIncrease); // 25 calls/s: a list of 200 calls takes 8 s
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();
    let contacts: Vec<_> = (1..=CONTACTS).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &contacts, Utc::now() - Duration::minutes(5)).unwrap();
    let lists = || hub.sandbox.ledger().requests.iter().filter(|r| r.method == "GET" && r.path == "/crm/v3/objects/contacts").count();

    let mut committed = Vec::new();
    for kill in 0..3 {
        let mut command = bin();
        // a killed run holds the pipeline's lease until it expires: one second here
        command.current_dir(d).env("HUBSPOT_BASE_URL", &hub.url).env("SYNCLINE_RUN_LEASE_SECS", "1").arg("--config").arg(d.join("hs.yaml"));
        let mut child = command.args(["-q", "run", "contacts"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500 + 300 * kill));
        assert!(child.try_wait().unwrap().is_none(), "the run ended before kill {kill}");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1_100)); // its lease runs out
        let warehouse = sqlite(&d.join("warehouse.db")).await;
        committed.push(count(&warehouse, "SELECT COUNT(*) FROM contacts").await);
    }
    let before_last = lists();
    let out = run(d, &hub, &["--debug", "run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("DEBUG"), "--debug shows debug logs");

    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, CONTACTS as i64, "no gap");
    assert_eq!(count(&warehouse, "SELECT COUNT(DISTINCT email) FROM contacts").await, CONTACTS as i64, "no duplicate");
    // every list call past the 200 a single run makes (plus one of archived objects per run
    // that finishes) is a page read again after a kill
    let calls = lists();
    let reread = calls - 200 - 1;
    eprintln!("rows committed at each kill {committed:?}; {calls} list calls, {reread} read again over 3 kills");
    assert!(committed.windows(2).all(|w| w[0] <= w[1]) && committed[2] > 0, "progress was kept: {committed:?}");
    assert!(reread <= 3 * 50, "each restart went on from its last committed page ({reread} calls read again)");
    assert!(calls - before_last < 200, "the last run did not list from the start");
}

/// `verify` compares the warehouse with HubSpot: equal after a run (all properties, typed
/// columns), and after the table is tampered with it names the missing row's count and the
/// changed field (exit 3); archived contacts count on neither side.
#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_the_warehouse_with_hubspot() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG.replace("        properties: [email, firstname]\n", "")).unwrap();
    let contacts: Vec<_> = (1..=300)
        .map(|n| {
            let mut c = contact(n);
            c.extend([("salario_bruto".to_owned(), format!("{n}000.5")), ("date_of_birth".to_owned(), "1985-02-03".to_owned())]);
            c
        })
        .collect();
    let ids = hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &contacts, Utc::now() - Duration::minutes(5)).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    let verified = run(d, &hub, &["verify", "contacts", "--sample", "50"]);
    assert_eq!(code(&verified), 0, "{}{}", stdout(&verified), stderr(&verified));
    assert!(stdout(&verified).contains("✓ contacts: 300 live in HubSpot, 300 live rows"), "{}", stdout(&verified));
    assert!(stdout(&verified).contains("✓ sample: 50 live rows"), "{}", stdout(&verified));

    let warehouse = sqlite(&d.join("warehouse.db")).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE contacts SET firstname = 'Tampered' WHERE hs_object_id = {}", ids[4])))
        .execute(&warehouse)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM contacts WHERE hs_object_id = {}", ids[9]))).execute(&warehouse).await.unwrap();
    let differs = run(d, &hub, &["verify", "contacts", "--sample", "1000"]);
    assert_eq!(code(&differs), 3, "{}{}", stdout(&differs), stderr(&differs));
    for words in ["✗ contacts: 300 live in HubSpot, 299 live rows", "(1 missing)", "✗ sample: 299 live rows", "1 difference(s)"] {
        assert!(stdout(&differs).contains(words), "{words:?} in {}", stdout(&differs));
    }
    let changed = format!(r#"contacts {} firstname: HubSpot "C5" · warehouse "Tampered""#, ids[4]);
    assert!(stdout(&differs).contains(&changed), "{}", stdout(&differs));
}

/// A property whose type changed in HubSpot (number → string) stops the next run before it
/// writes, naming the property and its column's type; the table is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_property_whose_type_changed_stops_the_run_naming_it() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG.replace("[email, firstname]", "[email, firstname, salario_bruto]")).unwrap();
    let mut first = contact(1);
    first.insert("salario_bruto".to_owned(), "1500.75".to_owned());
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[first], Utc::now() - Duration::minutes(5)).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    let patched = reqwest::Client::new()
        .patch(format!("{}/crm/v3/properties/contacts/salario_bruto", hub.url))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .json(&serde_json::json!({"type": "string", "fieldType": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let mut second = contact(2);
    second.insert("salario_bruto".to_owned(), "alto".to_owned());
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &[second], Utc::now()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500)); // past `settle`
    let changed = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&changed), 2, "{}{}", stdout(&changed), stderr(&changed));
    assert!(stderr(&changed).contains(r#""salario_bruto" is now Text but its column is Decimal"#), "{}", stderr(&changed));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 1, "nothing was written");
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts WHERE salario_bruto = 1500.75").await, 1);
}

/// When most objects changed since the cursor, the incremental read lists them all rather than
/// searching 5 pages a second, and says so in the run's audit.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_where_most_changed_lists_instead_of_searching() {
    let hub = hub(Tier::LimitIncrease);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();
    let old: Vec<_> = (1..=2_000).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &old, Utc::now() - Duration::minutes(30)).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let changed: Vec<_> = (2_001..=5_000).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &changed, Utc::now()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500)); // past `settle`

    let searches_before = hub.sandbox.ledger().calls("/search").len();
    let again = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&again), 0, "{}{}", stdout(&again), stderr(&again));
    let last = last_run(d, "hs.yaml");
    assert_eq!(last["read_count"], 5_000, "{last}");
    assert_eq!(last["audit"], "listed every one of the 5000 contacts: 3000 had changed since the cursor", "{last}");
    let searches = hub.sandbox.ledger().calls("/search").len() - searches_before;
    assert!(searches <= 3, "{searches} searches: only the counts that decided it");
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, 5_000);
}

/// A token refused mid-run (rotated or revoked) stops the run as a credential problem (exit 2)
/// naming the 401; what was committed stays, and once the token works the run goes on from
/// there and lands every contact once.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_refused_mid_run_stops_it_and_keeps_what_was_committed() {
    const CONTACTS: usize = 15_000;
    let hub = hub(Tier::LimitIncrease); // 25 calls/s: the listing takes 6 s
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG).unwrap();
    let contacts: Vec<_> = (1..=CONTACTS).map(contact).collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &contacts, Utc::now() - Duration::minutes(5)).unwrap();

    let mut command = bin();
    command.current_dir(d).env("HUBSPOT_BASE_URL", &hub.url).arg("--config").arg(d.join("hs.yaml"));
    let child =
        command.args(["run", "contacts"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    hub.sandbox.set_service_faults(Service::HubSpot, Faults { tokens_revoked: true, ..Faults::default() });
    let refused = child.wait_with_output().unwrap();
    assert_eq!(code(&refused), 2, "{}{}", stdout(&refused), stderr(&refused));
    assert!(stderr(&refused).contains("401"), "the refusal is named: {}", stderr(&refused));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    let kept = count(&warehouse, "SELECT COUNT(*) FROM contacts").await;
    assert!(kept > 0 && kept < CONTACTS as i64, "what was committed before the 401 stays ({kept} rows)");

    hub.sandbox.set_service_faults(Service::HubSpot, Faults::default());
    let lists_before = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").len();
    let resumed = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&resumed), 0, "{}{}", stdout(&resumed), stderr(&resumed));
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM contacts").await, CONTACTS as i64);
    assert_eq!(count(&warehouse, "SELECT COUNT(DISTINCT email) FROM contacts").await, CONTACTS as i64);
    let lists = hub.sandbox.ledger().calls("/crm/v3/objects/contacts").len() - lists_before;
    assert!(lists < CONTACTS / 100, "the run went on from its cursor ({lists} list calls)");
}

/// A portal with 600 properties: a list call naming them all is longer than HubSpot takes (414,
/// as the taps that read every property meet), so the listing asks for ids and reads each page
/// by id with the names in the body; every contact lands with the last property's value.
#[tokio::test(flavor = "multi_thread")]
async fn a_portal_with_hundreds_of_properties_is_read_without_a_414() {
    let hub = hub(Tier::Unlimited);
    let names: Vec<String> = (0..600).map(|n| format!("encuesta_satisfaccion_pregunta_{n:03}")).collect();
    for name in &names {
        create_contact_property(&hub, name, "string").await;
    }
    let contacts: Vec<_> = (0..250)
        .map(|n| {
            let mut c = contact(n);
            c.insert(names[599].clone(), format!("respuesta {n}"));
            c
        })
        .collect();
    hub.sandbox.import(DEMO_HUBSPOT_TOKEN, "contacts", &contacts, Utc::now() - Duration::minutes(5)).unwrap();
    let every = names.join(",");
    let naive = reqwest::Client::new()
        .get(format!("{}/crm/v3/objects/contacts?limit=100&properties={every}", hub.url))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(naive.status(), 414, "a list naming every property is refused");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hs.yaml"), CONFIG.replace("        properties: [email, firstname]\n", "")).unwrap();
    let out = run(d, &hub, &["run", "contacts"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let warehouse = sqlite(&d.join("warehouse.db")).await;
    let answered = format!("SELECT COUNT(*) FROM contacts WHERE {} LIKE 'respuesta %'", names[599]);
    assert_eq!(count(&warehouse, &answered).await, 250, "every contact, with its 600th property");
    let ledger = hub.sandbox.ledger();
    assert!(ledger.calls("/crm/v3/objects/contacts/batch/read").len() >= 3, "pages read by id");
    assert_eq!(ledger.with_status(414), 0, "no call was too long");
}
