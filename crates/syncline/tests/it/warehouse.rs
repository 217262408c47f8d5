//! The whole warehouse example — contacts, deals, appointments, divisions and the links
//! between them — through the real binary against the sandbox's warehouse demo portal: every
//! object and link lands once, the values match HubSpot's, and later runs follow the links
//! added, removed, archived and merged away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::json;
use sqlx::Connection;
use syncline_sandbox::{DEMO_HUBSPOT_TOKEN, Tier};

use super::hubspot::{Hub, warehouse_hub};
use super::*;

/// The three pairs of the example, with their tables.
const PAIRS: [(&str, &str, &str); 3] = [
    ("contacts", "deals", "hubspot_contacts_deals"),
    ("contacts", "appointments", "hubspot_contacts_appointments"),
    ("contacts", "p_divisions", "hubspot_contacts_divisions"),
];

fn run(dir: &Path, hub: &Hub, args: &[&str]) -> std::process::Output {
    super::hubspot::run(dir, hub, "warehouse.yaml", args)
}

/// The links a table holds, as (from, to, type).
async fn links_in(pool: &sqlx::SqlitePool, table: &str) -> BTreeSet<(u64, u64, u32)> {
    let sql = format!("SELECT from_id, to_id, type_id FROM {table}");
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(a, b, t)| (a as u64, b as u64, t as u32)).collect()
}

/// One text property of every live row of a table, by id.
async fn column(pool: &sqlx::SqlitePool, table: &str, property: &str) -> BTreeMap<u64, String> {
    let sql = format!("SELECT hs_object_id, {property} FROM {table} WHERE _deleted_at IS NULL AND _merged_into IS NULL");
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(id, v)| (id as u64, v.unwrap_or_default())).collect()
}

/// The same property of every live object in the portal, by id.
fn in_hubspot(hub: &Hub, object: &str, property: &str) -> BTreeMap<u64, String> {
    let objects = hub.sandbox.objects(DEMO_HUBSPOT_TOKEN, object);
    objects.into_iter().map(|(id, p)| (id, p.get(property).cloned().unwrap_or_default())).collect()
}

async fn assert_links_match(hub: &Hub, warehouse: &sqlx::SqlitePool, when: &str) {
    for (from, to, table) in PAIRS {
        let expected = hub.sandbox.links(DEMO_HUBSPOT_TOKEN, from, to).unwrap();
        let landed = links_in(warehouse, table).await;
        assert_eq!(landed.len(), expected.len(), "{when}: {table} holds {} links, HubSpot {}", landed.len(), expected.len());
        assert!(
            landed == expected,
            "{when}: {table} differs: {:?} missing, {:?} extra",
            expected.difference(&landed).take(5).collect::<Vec<_>>(),
            landed.difference(&expected).take(5).collect::<Vec<_>>()
        );
    }
}

/// Done-when 1 of the warehouse issue, at test scale (the benchmark runs it at 50,000
/// contacts): a full run of the example lands every object and every link exactly once, the
/// property values match the portal's, and `verify` agrees. Then done-when 3 for links: a link
/// removed, one added, a deal archived and a contact merged away are all followed by the next
/// (incremental) run, and `--from-object/--to-object` and `--skip-associations` pick the runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_warehouse_example_lands_every_object_and_link_once_and_follows_changes() {
    let hub = warehouse_hub(Tier::Unlimited);
    let made = hub.sandbox.generate_warehouse(DEMO_HUBSPOT_TOKEN, 2_500).unwrap();
    assert_eq!((made.contacts, made.deals, made.appointments, made.divisions), (2_500, 1_000, 250, 100));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let example = std::fs::read_to_string(examples().join("hubspot-to-warehouse.yaml")).unwrap();
    std::fs::write(d.join("warehouse.yaml"), example.replace("settle: 30s", "settle: 1s")).unwrap();

    let out = run(d, &hub, &["run", "all"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let warehouse = sqlite(&d.join("hubspot-warehouse.db")).await;
    for (table, object, property) in [
        ("hubspot_contacts", "contacts", "email"),
        ("hubspot_deals", "deals", "dealname"),
        ("hubspot_appointments", "appointments", "hs_appointment_name"),
        ("hubspot_divisions", "p_divisions", "codigo"),
    ] {
        let expected = in_hubspot(&hub, object, property);
        assert_eq!(count(&warehouse, &format!("SELECT COUNT(*) FROM {table}")).await as usize, expected.len(), "{table}");
        assert_eq!(column(&warehouse, table, property).await, expected, "{table}.{property} matches HubSpot, object by object");
    }
    let stages: BTreeSet<String> = in_hubspot(&hub, "deals", "dealstage").into_values().collect();
    assert_eq!(stages.len(), 3, "every property is read by default (dealstage too)");
    assert_links_match(&hub, &warehouse, "after the full run").await;
    let deals_links = hub.sandbox.links(DEMO_HUBSPOT_TOKEN, "contacts", "deals").unwrap();
    assert_eq!(deals_links.len(), 1_334, "1,000 deals, every third with a second contact");
    assert!(deals_links.iter().all(|(_, _, t)| *t == 4), "contact → deal is HubSpot's type 4");
    for pipeline in ["contacts", "deals", "appointments", "divisions", "contacts_deals", "contacts_appointments", "contacts_divisions"] {
        let verified = run(d, &hub, &["verify", pipeline, "--sample", "50"]);
        assert_eq!(code(&verified), 0, "verify {pipeline}: {}{}", stdout(&verified), stderr(&verified));
    }
    let verified = stdout(&run(d, &hub, &["verify", "contacts_deals"]));
    assert!(verified.contains("✓ contacts → deals links: 1334 in HubSpot, 1334 rows"), "{verified}");

    let history = count(&warehouse, "SELECT COUNT(*) FROM hubspot_deal_history").await;
    assert_eq!(history, 2_000, "each deal's stage and amount, set once each");

    // the reference tables: owners, and the deal pipelines' stages, which follow HubSpot's
    let owners: Vec<(String, bool)> =
        sqlx::query_as("SELECT email, archived FROM hubspot_owners ORDER BY id").fetch_all(&warehouse).await.unwrap();
    assert_eq!(owners.len(), 5, "{owners:?}");
    assert_eq!(owners[0], ("ana.mora@example.cr".to_owned(), false));
    let stages = "SELECT COUNT(*) FROM hubspot_deal_pipelines";
    assert_eq!(count(&warehouse, stages).await, 7, "HubSpot's default deal pipeline has 7 stages");
    let won =
        count(&warehouse, "SELECT COUNT(*) FROM hubspot_deal_pipelines WHERE stage_id = 'closedwon' AND probability = 1 AND is_closed")
            .await;
    assert_eq!(won, 1, "a stage's probability and whether it closes are columns of their types");
    let credits = json!({"label": "Créditos", "displayOrder": 1, "stages": [
        {"label": "Solicitud", "displayOrder": 0, "metadata": {"probability": "0.3", "isClosed": "false"}},
        {"label": "Aprobado", "displayOrder": 1, "metadata": {"probability": "1.0", "isClosed": "true"}}]});
    let client = reqwest::Client::new();
    let url = |path: String| format!("{}{path}", hub.url);
    let created = client.post(url("/crm/v3/pipelines/deals".into())).bearer_auth(DEMO_HUBSPOT_TOKEN).json(&credits).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let pipeline_id = created.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(code(&run(d, &hub, &["run", "deal_pipelines"])), 0);
    assert_eq!(count(&warehouse, stages).await, 9, "a pipeline added in HubSpot lands with its stages");
    let archived =
        client.delete(url(format!("/crm/v3/pipelines/deals/{pipeline_id}"))).bearer_auth(DEMO_HUBSPOT_TOKEN).send().await.unwrap();
    assert_eq!(archived.status(), 204);
    assert_eq!(code(&run(d, &hub, &["run", "deal_pipelines"])), 0);
    assert_eq!(count(&warehouse, stages).await, 7, "a pipeline removed in HubSpot leaves the table");

    // links change in HubSpot: removed, added, a deal archived, a contact merged away
    let (c_from, d_from, _) = *deals_links.iter().next().unwrap();
    let removed = client
        .delete(url(format!("/crm/v4/objects/contacts/{c_from}/associations/deals/{d_from}")))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let lonely = *in_hubspot(&hub, "contacts", "email").keys().find(|id| deals_links.iter().all(|(c, ..)| c != *id)).unwrap();
    let added = client
        .put(url(format!("/crm/v4/objects/contacts/{lonely}/associations/default/deals/{d_from}")))
        .bearer_auth(DEMO_HUBSPOT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let (_, archived_deal, _) = *deals_links.iter().nth(10).unwrap();
    let archived =
        client.delete(url(format!("/crm/v3/objects/deals/{archived_deal}"))).bearer_auth(DEMO_HUBSPOT_TOKEN).send().await.unwrap();
    assert_eq!(archived.status(), 204);
    let (primary, secondary) = {
        let mut with_deals = deals_links.iter().map(|(c, ..)| *c).filter(|c| *c != c_from);
        (with_deals.next().unwrap(), with_deals.nth(20).unwrap())
    };
    let merge = json!({"primaryObjectId": primary.to_string(), "objectIdToMerge": secondary.to_string()});
    let merged =
        client.post(url("/crm/v3/objects/contacts/merge".into())).bearer_auth(DEMO_HUBSPOT_TOKEN).json(&merge).send().await.unwrap();
    assert_eq!(merged.status(), 200);
    let won = json!({"properties": {"dealstage": "closedwon"}});
    let (_, staged_deal, _) = *deals_links.iter().nth(30).unwrap();
    let patched =
        client.patch(url(format!("/crm/v3/objects/deals/{staged_deal}"))).bearer_auth(DEMO_HUBSPOT_TOKEN).json(&won).send().await.unwrap();
    assert_eq!(patched.status(), 200);
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let stale = run(d, &hub, &["verify", "contacts_deals"]);
    assert_eq!(code(&stale), 3, "the table is behind HubSpot now: {}", stdout(&stale));
    assert!(stdout(&stale).contains(&format!("contacts {c_from} → deals {d_from} (type 4): not in HubSpot")), "{}", stdout(&stale));

    // only the pair asked for runs
    let one = run(d, &hub, &["run", "all", "--from-object", "contacts", "--to-object", "deals"]);
    assert_eq!(code(&one), 0, "{}{}", stdout(&one), stderr(&one));
    assert!(stdout(&one).contains("contacts_deals") && !stdout(&one).contains("contacts_divisions"), "{}", stdout(&one));
    let last = last_run(d, "warehouse.yaml");
    assert_eq!(last["mode"], "incremental", "{last}");
    assert!(last["read_count"].as_u64().unwrap() < 100, "only the changed contacts' links are read again: {last}");
    let expected = hub.sandbox.links(DEMO_HUBSPOT_TOKEN, "contacts", "deals").unwrap();
    assert!(!expected.contains(&(c_from, d_from, 4)) && expected.contains(&(lonely, d_from, 4)));
    assert_eq!(links_in(&warehouse, "hubspot_contacts_deals").await, expected, "removed, added, archived and merged links followed");
    let none = run(d, &hub, &["run", "all", "--from-object", "companies"]);
    assert_eq!(code(&none), 2, "{}", stderr(&none));
    assert!(stderr(&none).contains("contacts → deals"), "the pairs there are are named: {}", stderr(&none));

    // the objects alone, then everything: the warehouse matches HubSpot again
    let objects = run(d, &hub, &["run", "all", "--skip-associations"]);
    assert_eq!(code(&objects), 0, "{}", stderr(&objects));
    assert!(!stdout(&objects).contains("contacts_deals"), "{}", stdout(&objects));
    let gone =
        count(&warehouse, &format!("SELECT COUNT(*) FROM hubspot_deals WHERE hs_object_id = {archived_deal} AND _deleted_at IS NOT NULL"))
            .await;
    assert_eq!(gone, 1, "the archived deal is marked");
    let all = run(d, &hub, &["run", "all"]);
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    assert_links_match(&hub, &warehouse, "after the changes").await;
    let verified = run(d, &hub, &["verify", "contacts_divisions"]);
    assert_eq!(code(&verified), 0, "{}", stdout(&verified));
    let sql =
        format!("SELECT value FROM hubspot_deal_history WHERE object_id = {staged_deal} AND property = 'dealstage' ORDER BY changed_at");
    let stages: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&warehouse).await.unwrap();
    assert_eq!(stages.len(), 2, "the stage it had, then the new one: {stages:?}");
    assert_eq!(stages[1], "closedwon");
    let kept = count(&warehouse, &format!("SELECT COUNT(*) FROM hubspot_deal_history WHERE object_id = {archived_deal}")).await;
    assert_eq!(kept, 2, "an archived deal's history stays");
}

/// Links into PostgreSQL and MariaDB: the table made from the link fields, every link once, and
/// a link removed in HubSpot deleted by the next run (the older rows' delete runs in each
/// database's own dialect).
#[tokio::test(flavor = "multi_thread")]
async fn links_land_in_postgres_and_mariadb_and_a_removed_one_leaves() {
    let Some(postgres) = syncline_testkit::postgres().await else { return };
    let Some(mariadb) = syncline_testkit::mysql().await else { return };
    for db in [&postgres, &mariadb] {
        let hub = warehouse_hub(Tier::Unlimited);
        hub.sandbox.generate_warehouse(DEMO_HUBSPOT_TOKEN, 250).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let example = std::fs::read_to_string(examples().join("hubspot-to-warehouse.yaml")).unwrap();
        let config = example.replace("settle: 30s", "settle: 1s").replace("${WAREHOUSE_URL:-sqlite://hubspot-warehouse.db}", &db.url);
        std::fs::write(d.join("warehouse.yaml"), config).unwrap();
        let out = run(d, &hub, &["run", "contacts_deals"]);
        assert_eq!(code(&out), 0, "{}: {}{}", db.url, stdout(&out), stderr(&out));
        let verified = run(d, &hub, &["verify", "contacts_deals"]);
        assert_eq!(code(&verified), 0, "{}: {}", db.url, stdout(&verified));
        assert!(stdout(&verified).contains("134 in HubSpot, 134 rows"), "{}: {}", db.url, stdout(&verified));

        let links = hub.sandbox.links(DEMO_HUBSPOT_TOKEN, "contacts", "deals").unwrap();
        let (contact, deal, _) = *links.iter().next().unwrap();
        assert!(hub.sandbox.dissociate(DEMO_HUBSPOT_TOKEN, ("contacts", contact), ("deals", deal)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        let again = run(d, &hub, &["run", "contacts_deals"]);
        assert_eq!(code(&again), 0, "{}: {}{}", db.url, stdout(&again), stderr(&again));
        let verified = run(d, &hub, &["verify", "contacts_deals"]);
        assert_eq!(code(&verified), 0, "{}: {}", db.url, stdout(&verified));
        assert!(stdout(&verified).contains("133 in HubSpot, 133 rows"), "{}: {}", db.url, stdout(&verified));

        // the pipelines' stages, read whole twice: replaced, not doubled (a text group), and
        // the second time counted as updated, not created (the older rows are deleted after the
        // batch is written, so a row written again is the row that was there)
        for _ in 0..2 {
            let out = run(d, &hub, &["run", "deal_pipelines"]);
            assert_eq!(code(&out), 0, "{}: {}{}", db.url, stdout(&out), stderr(&out));
        }
        let second = last_run(d, "warehouse.yaml");
        assert_eq!((second["created_count"].as_u64(), second["updated_count"].as_u64()), (Some(0), Some(7)), "{}: {second}", db.url);
        let sql = "SELECT COUNT(*) FROM hubspot_deal_pipelines";
        let stages: i64 = if db.url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        };
        assert_eq!(stages, 7, "{}", db.url);
    }
    postgres.drop().await;
    mariadb.drop().await;
}

/// `run all` runs the object types at once (`--jobs`), inside the one budget of their portal:
/// ten pipelines against a free-tier portal (100 calls per 10 s, enforced with 429s by the
/// sandbox) spend more than a window's worth of calls, none refused.
#[tokio::test(flavor = "multi_thread")]
async fn pipelines_run_at_once_share_their_portals_budget() {
    let hub = warehouse_hub(Tier::Free);
    hub.sandbox.generate_warehouse(DEMO_HUBSPOT_TOKEN, 3_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(examples().join("hubspot-to-warehouse.yaml"), d.join("warehouse.yaml")).unwrap();
    let out = run(d, &hub, &["run", "all", "--jobs", "4"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let ledger = hub.sandbox.ledger();
    assert_eq!(ledger.with_status(429), 0, "no call was refused");
    let counted = ledger.requests.iter().filter(|r| !r.path.contains("/search") && !r.path.starts_with("/crm/v4/")).count();
    assert!(counted > 150, "more calls than one window holds ({counted}), so the pipelines had to share the budget");
    let warehouse = sqlite(&d.join("hubspot-warehouse.db")).await;
    assert_eq!(count(&warehouse, "SELECT COUNT(*) FROM hubspot_contacts_divisions").await, 3_000);
}

/// Ctrl-C while `run all` has pipelines running at once: back within 2 s with exit 130; each
/// pipeline that was running ends `interrupted` (none is left `running`), and the links phase
/// never starts.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_run_all_ends_every_running_pipeline() {
    let hub = warehouse_hub(Tier::Free);
    hub.sandbox.generate_warehouse(DEMO_HUBSPOT_TOKEN, 5_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(examples().join("hubspot-to-warehouse.yaml"), d.join("warehouse.yaml")).unwrap();
    let child = bin()
        .current_dir(d)
        .env("HUBSPOT_BASE_URL", &hub.url)
        .args(["--config", "warehouse.yaml", "run", "all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the free tier's 100 calls per 10 s: past the first window, four pipelines are mid-read
    while hub.sandbox.ledger().calls("/crm/v3/objects/contacts").len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    super::cli::signal(&child, "INT");
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(signalled.elapsed() < std::time::Duration::from_secs(2), "stopped in {:?}", signalled.elapsed());
    assert_eq!(code(&out), 130, "{}{}", stdout(&out), stderr(&out));
    let runs = syncline(d, "warehouse.yaml", &["runs", "--json", "--limit", "50"]);
    let runs: Vec<serde_json::Value> = stdout(&runs).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for run in &runs {
        assert!(run["status"] == "interrupted" || run["status"] == "succeeded", "none is left running: {run}");
    }
    let interrupted = runs.iter().filter(|r| r["status"] == "interrupted").count();
    assert!((1..=4).contains(&interrupted), "the pipelines running then (at most --jobs 4) were interrupted: {runs:?}");
    let started: Vec<&str> = runs.iter().map(|r| r["pipeline"].as_str().unwrap()).collect();
    assert!(!started.iter().any(|p| p.starts_with("contacts_")), "no links pipeline started after: {started:?}");
}
