//! The state-store conformance suite: every check runs against SQLite and PostgreSQL.

use serde_json::json;
use std::sync::Arc;
use syncline_core::runner::{BatchCommit, Checkpoint, Counts, DeadLetter, Scope};
use syncline_core::{Cursor, ErrorClass};
use syncline_store::{DeadLetterFilter, Store};

/// Runs `check` against a fresh SQLite store and a fresh PostgreSQL store.
async fn on_every_backend<F>(check: F)
where
    F: AsyncFn(Store, String),
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    check(Store::connect(&url).await.unwrap(), url).await;
    if let Some(db) = syncline_testkit::postgres().await {
        check(Store::connect(&db.url).await.unwrap(), db.url.clone()).await;
        db.drop().await;
    }
}

fn dead_letter(key: &str, message: &str) -> DeadLetter {
    DeadLetter {
        record_key: key.into(),
        class: ErrorClass::Data,
        field: "email".into(),
        rule: "email".into(),
        message: message.into(),
        payload: json!({"id": key, "email": "nope"}),
    }
}

/// The members pipeline reading `source` into `target`.
fn scope(source: &str, target: &str) -> Scope {
    Scope { pipeline: "members".into(), source: source.into(), target: target.into() }
}

fn commit(run: &str, cursor: Option<i64>) -> BatchCommit {
    BatchCommit {
        run_id: run.into(),
        scope: Arc::new(scope("sqlite:///m.db#members", "hubspot:portal/1/contacts")),
        cursor: cursor.map(|c| Cursor(json!({ "at": c }))),
        passed_status: "resolved",
        ..BatchCommit::default()
    }
}

#[tokio::test]
async fn conformance() {
    on_every_backend(async |store: Store, url: String| {
        runs_and_cursors(&store).await;
        dead_letters_are_unique_while_open(&store).await;
        fingerprints_round_trip(&store).await;
        state_belongs_to_its_source_and_target(&store).await;
        clear_forgets_cursors_and_fingerprints(&store).await;
        unscoped_state_is_adopted_once(&store).await;
        idempotency_keeps_the_first_result(&store).await;
        events_are_appended_in_order(&store).await;
        inbox_dedupes_claims_and_releases(&store).await;
        flow_versions_keep_the_newest_and_stale_skips_are_audited(&store).await;
        a_pipelines_lease_has_one_holder_until_it_ends(&store).await;
        a_rate_budget_is_updated_by_one_at_a_time(&store).await;
        a_schedules_slot_only_moves_forward(&store).await;
        one_objects_events_never_run_at_once(&store).await;
        oauth_tokens_are_replaced_whole(&store).await;
        reopening_keeps_everything(&url).await;
    })
    .await;
}

async fn oauth_tokens_are_replaced_whole(store: &Store) {
    use syncline_store::SealedTokens;
    assert_eq!(store.oauth_tokens("quickbooks", "quickbooks:1").await.unwrap(), None);
    let first = SealedTokens { access_token: "a1".into(), refresh_token: "r1".into(), expires_at: "2026-11-30T10:00:00Z".into() };
    store.save_oauth_tokens("quickbooks", "quickbooks:1", &first).await.unwrap();
    let second = SealedTokens { access_token: "a2".into(), refresh_token: "r2".into(), expires_at: "2026-11-30T11:00:00Z".into() };
    store.save_oauth_tokens("quickbooks", "quickbooks:1", &second).await.unwrap();
    assert_eq!(store.oauth_tokens("quickbooks", "quickbooks:1").await.unwrap(), Some(second));
    assert_eq!(store.oauth_tokens("quickbooks", "quickbooks:2").await.unwrap(), None, "accounts are apart");
    let ids = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    store.save_remote_ids("quickbooks:1/items", &ids(&[("prod_a", "100"), ("prod_b", "101")])).await.unwrap();
    store.save_remote_ids("quickbooks:1/items", &ids(&[("prod_b", "205")])).await.unwrap();
    let mut stored = store.remote_ids("quickbooks:1/items").await.unwrap();
    stored.sort();
    assert_eq!(stored, ids(&[("prod_a", "100"), ("prod_b", "205")]));
    assert!(store.remote_ids("quickbooks:2/items").await.unwrap().is_empty());
}

async fn runs_and_cursors(store: &Store) {
    let members = commit("r1", None).scope;
    store.start_run("r1", "members", "full").await.unwrap();
    assert_eq!(store.cursor(&members).await.unwrap(), None);
    let mut page = commit("r1", Some(10));
    page.counts = Counts { read: 5, created: 3, updated: 1, rejected: 1, ..Counts::default() };
    store.commit(&Arc::new(page.clone())).await.unwrap();
    store.commit(&Arc::new(commit("r1", Some(20)))).await.unwrap();
    assert_eq!(store.cursor(&members).await.unwrap(), Some(Cursor(json!({"at": 20}))));
    store.finish_run("r1", syncline_core::RunEnd::new(syncline_core::RunStatus::Rejects)).await.unwrap();
    let run = store.run("r1").await.unwrap();
    assert_eq!((run.status.as_str(), run.read_count, run.created_count, run.updated_count, run.rejected_count), ("rejects", 5, 3, 1, 1));
    assert!(run.finished_at.is_some());
    store.start_run("r2", "other", "incremental").await.unwrap();
    assert_eq!(store.mark_interrupted("other").await.unwrap(), 1);
    let all = store.runs(None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    let members = store.runs(Some("members"), 10).await.unwrap();
    assert_eq!(members.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1"]);
    assert_eq!(store.run("r2").await.unwrap().status, "interrupted");
    let cursors = store.cursors(None).await.unwrap();
    assert_eq!(cursors.len(), 1);
    assert_eq!(cursors[0].run_id.as_deref(), Some("r1"));
    assert_eq!((cursors[0].source.as_str(), cursors[0].target.as_str()), ("sqlite:///m.db#members", "hubspot:portal/1/contacts"));
    assert!(store.cursors(Some("other")).await.unwrap().is_empty());
}

async fn dead_letters_are_unique_while_open(store: &Store) {
    store.start_run("d1", "members", "full").await.unwrap();
    let mut page = commit("d1", None);
    page.dead_letters = vec![dead_letter("a", "first"), dead_letter("b", "first")];
    store.commit(&Arc::new(page.clone())).await.unwrap();
    // the same record rejected again (a re-read after a crash): still one open row
    let mut again = commit("d1", None);
    again.dead_letters = vec![dead_letter("a", "second")];
    store.commit(&Arc::new(again.clone())).await.unwrap();
    let open = store
        .dead_letters(&DeadLetterFilter { pipeline: Some("members".into()), status: Some("open".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    let a = open.iter().find(|d| d.record_key == "a").unwrap();
    assert_eq!((a.attempts, a.message.as_str(), a.class.as_str()), (2, "second", "data"));
    assert_eq!(a.record().get("email"), Some(&"nope".into()));
    // a later pass of "a" resolves it; "b" is ignored; both keep their rows
    let mut pass = commit("d1", None);
    pass.passed_keys = vec!["a".into()];
    store.commit(&Arc::new(pass.clone())).await.unwrap();
    let b = open.iter().find(|d| d.record_key == "b").unwrap();
    assert_eq!(store.ignore_dead_letters(&[b.id]).await.unwrap(), 1);
    assert_eq!(store.ignore_dead_letters(&[b.id]).await.unwrap(), 0, "only open ones change");
    let all = store.dead_letters(&DeadLetterFilter { pipeline: Some("members".into()), ..Default::default() }).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|d| (d.record_key.as_str(), d.status.as_str())).collect();
    assert_eq!(statuses, [("a", "resolved"), ("b", "ignored")]);
    // rejected once more after being resolved: a new open row, the history stays
    let mut third = commit("d1", None);
    third.dead_letters = vec![dead_letter("a", "third")];
    store.commit(&Arc::new(third.clone())).await.unwrap();
    let by_id = store.dead_letters(&DeadLetterFilter { ids: vec![a.id], ..Default::default() }).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(store.dead_letter(a.id).await.unwrap().status, "resolved");
    assert_eq!(store.open_dead_letter_counts().await.unwrap(), vec![("members".to_string(), 1)]);
    let open_keys = store.open_dead_letter_keys("members").await.unwrap();
    assert_eq!(open_keys, ["a".to_string()].into_iter().collect());
    assert!(store.dead_letter(999_999).await.is_err());
}

async fn fingerprints_round_trip(store: &Store) {
    store.start_run("f1", "members", "full").await.unwrap();
    let mut page = commit("f1", None);
    page.fingerprints = (0..1200).map(|i| (format!("k{i}"), format!("h{i}"))).collect();
    store.commit(&Arc::new(page.clone())).await.unwrap();
    let keys: Vec<String> = (1100..1300).map(|i| format!("k{i}")).collect();
    let found = store.fingerprints(&page.scope, keys.clone()).await.unwrap();
    assert_eq!(found.len(), 100);
    assert_eq!(found.get("k1150").map(String::as_str), Some("h1150"));
    let other = Scope { pipeline: "other".into(), ..(*page.scope).clone() };
    assert!(store.fingerprints(&Arc::new(other.clone()), keys.clone()).await.unwrap().is_empty());
}

/// A cursor is the pipeline's for one source and one target; fingerprints for one target.
async fn state_belongs_to_its_source_and_target(store: &Store) {
    let (a, b) =
        (scope("sqlite:///m.db#members", "hubspot:portal/1/contacts"), scope("sqlite:///m.db#members", "hubspot:portal/2/contacts"));
    let keys = vec!["k1".to_string()];
    assert_eq!(
        store.fingerprints(&Arc::new(a.clone()), keys.clone()).await.unwrap().len(),
        1,
        "written to portal 1 by fingerprints_round_trip"
    );
    assert!(store.fingerprints(&Arc::new(b.clone()), keys.clone()).await.unwrap().is_empty(), "portal 2 has none of them");
    assert_eq!(store.cursor(&b).await.unwrap(), None, "portal 2 starts from nothing");
    let other_source = scope("postgres://db:5432/prod#members", "hubspot:portal/1/contacts");
    assert_eq!(store.cursor(&other_source).await.unwrap(), None, "another source starts from nothing");
    // set by hand: audited with what it was
    let before = store.set_cursor(&b, &Cursor(json!({"at": 7}))).await.unwrap();
    assert_eq!(before, None);
    assert_eq!(store.cursor(&b).await.unwrap(), Some(Cursor(json!({"at": 7}))));
    assert_eq!(store.cursor(&a).await.unwrap(), Some(Cursor(json!({"at": 20}))), "portal 1's cursor is untouched");
    let events = store.events("members").await.unwrap();
    assert_eq!(events.last().map(|e| (e.1.as_str(), e.2["after"].clone())), Some(("state_set", json!({"at": 7}))));
    let counts = store.fingerprint_counts(Some("members")).await.unwrap();
    assert_eq!(counts.iter().map(|c| (c.target.as_str(), c.records)).collect::<Vec<_>>(), [("hubspot:portal/1/contacts", 1200)]);
}

/// State written before cursors were scoped (empty source and target) goes to the first scope
/// that runs, unless it has its own; then it is gone from the unscoped place.
async fn unscoped_state_is_adopted_once(store: &Store) {
    let legacy = scope("", "");
    store.start_run("u1", "members", "full").await.unwrap();
    let mut page = commit("u1", Some(99));
    page.scope = Arc::new(legacy.clone());
    page.fingerprints = vec![("k1".into(), "h1".into()), ("k2".into(), "h2".into())];
    store.commit(&Arc::new(page.clone())).await.unwrap();
    let first = scope("sqlite:///m.db#members", "hubspot:portal/9/contacts");
    assert_eq!(store.adopt_unscoped_state(&first).await.unwrap(), (1, 2));
    assert_eq!(store.cursor(&first).await.unwrap(), Some(Cursor(json!({"at": 99}))));
    assert_eq!(store.fingerprints(&Arc::new(first.clone()), vec!["k1".to_string()]).await.unwrap().len(), 1);
    assert_eq!(store.cursor(&legacy).await.unwrap(), None);
    let second = scope("sqlite:///m.db#members", "hubspot:portal/10/contacts");
    assert_eq!(store.adopt_unscoped_state(&second).await.unwrap(), (0, 0), "adopted once");
    assert_eq!(store.events("members").await.unwrap().last().map(|e| e.1.clone()), Some("state_adopted".to_owned()));
    // a scope with state of its own keeps it
    store.set_cursor(&legacy, &Cursor(json!({"at": 1}))).await.unwrap();
    assert_eq!(store.adopt_unscoped_state(&first).await.unwrap(), (0, 0));
    assert_eq!(store.cursor(&first).await.unwrap(), Some(Cursor(json!({"at": 99}))));
    store.clear_state("members").await.unwrap();
}

async fn clear_forgets_cursors_and_fingerprints(store: &Store) {
    let (cursors, hashes) = store.clear_state("members").await.unwrap();
    assert_eq!((cursors, hashes), (2, 1200), "both targets' cursors");
    assert_eq!(store.cursor(&scope("sqlite:///m.db#members", "hubspot:portal/1/contacts")).await.unwrap(), None);
    assert!(store.cursors(Some("members")).await.unwrap().is_empty());
    let events = store.events("members").await.unwrap();
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("state_clear"));
}

async fn idempotency_keeps_the_first_result(store: &Store) {
    let ttl = std::time::Duration::from_secs(60);
    let first = store.remember("stripe:evt_1", &json!({"item": 1}), ttl).await.unwrap();
    let second = store.remember("stripe:evt_1", &json!({"item": 2}), ttl).await.unwrap();
    assert_eq!((first, second), (json!({"item": 1}), json!({"item": 1})));
    // an expired record gives way
    store.remember("k", &json!(1), std::time::Duration::ZERO).await.unwrap();
    assert_eq!(store.remember("k", &json!(2), ttl).await.unwrap(), json!(2));
}

async fn events_are_appended_in_order(store: &Store) {
    for i in 0..3 {
        store.append_event("decision", "prod_1", None, &json!({ "step": i })).await.unwrap();
    }
    let steps: Vec<_> = store.events("prod_1").await.unwrap().into_iter().map(|e| e.2["step"].clone()).collect();
    assert_eq!(steps, [json!(0), json!(1), json!(2)]);
    let entries = vec![
        ("quickbooks.item.created".to_owned(), "prod_2".to_owned(), json!({"item": "100"})),
        ("quickbooks.item.updated".to_owned(), "prod_2".to_owned(), json!({"item": "100"})),
        ("quickbooks.item.created".to_owned(), "prod_3".to_owned(), json!({"item": "101"})),
    ];
    store.append_events(Some("run-9"), &entries).await.unwrap();
    let find = |kind: &str, subject: &str| syncline_store::EventFilter {
        kind: kind.into(),
        subject: subject.into(),
        since: String::new(),
        limit: 10,
    };
    let created = store.find_events(&find("created", "")).await.unwrap();
    assert_eq!(
        created.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["prod_3", "prod_2"],
        "newest first, by the kind's last part"
    );
    assert_eq!(created[0].run_id.as_deref(), Some("run-9"));
    assert_eq!(store.find_events(&find("", "prod_2")).await.unwrap().len(), 2);
    assert_eq!(store.find_events(&find("quickbooks.item.updated", "")).await.unwrap().len(), 1);
    let later = syncline_store::EventFilter { since: "2999-01-01".into(), ..find("", "") };
    assert!(store.find_events(&later).await.unwrap().is_empty());
}

async fn reopening_keeps_everything(url: &str) {
    // connecting again runs the migrations again, which must be a no-op that keeps the data
    let again = Store::connect(url).await.unwrap();
    again.ping().await.unwrap();
    assert_eq!(again.run("r1").await.unwrap().read_count, 5);
    assert_eq!(again.open_dead_letter_counts().await.unwrap(), vec![("members".to_string(), 1)]);
}

fn inbox_event(key: &str) -> syncline_store::NewEvent {
    syncline_store::NewEvent {
        source: "hubspot".into(),
        dedupe_key: key.into(),
        event_type: "contact.creation".into(),
        payload: json!({"objectId": key}).to_string(),
        occurred_at: Some(chrono::Utc::now()),
        object_key: None,
        trace_parent: None,
    }
}

/// An event about `object`.
fn object_event(key: &str, object: &str) -> syncline_store::NewEvent {
    syncline_store::NewEvent { object_key: Some(object.into()), ..inbox_event(key) }
}

async fn one_objects_events_never_run_at_once(store: &Store) {
    let lease = std::time::Duration::from_secs(60);
    // whatever earlier checks left due is taken out of the way first
    while !store.inbox_claim("drain", lease, 100).await.unwrap().is_empty() {}
    let keys = |events: &[syncline_store::InboxEvent]| events.iter().map(|e| e.dedupe_key.clone()).collect::<Vec<_>>();
    let delivery = [object_event("o1-a", "62515:1"), object_event("o1-b", "62515:1"), object_event("o2-a", "62515:2")];
    store.inbox_accept(&delivery).await.unwrap();
    let first = store.inbox_claim("s1", lease, 1).await.unwrap();
    assert_eq!(keys(&first), ["o1-a"]);
    let second = store.inbox_claim("s2", lease, 10).await.unwrap();
    assert_eq!(keys(&second), ["o2-a"], "o1-b waits while o1-a runs elsewhere");
    assert!(store.inbox_finish(first[0].id, "s1").await.unwrap());
    let third = store.inbox_claim("s2", lease, 10).await.unwrap();
    assert_eq!(keys(&third), ["o1-b"]);
    // one claim may take several events of one object (the worker runs them in order)
    store.inbox_accept(&[object_event("o3-a", "62515:3"), object_event("o3-b", "62515:3")]).await.unwrap();
    assert_eq!(keys(&store.inbox_claim("s3", lease, 10).await.unwrap()), ["o3-a", "o3-b"]);
    // an expired lease frees its object
    store.inbox_accept(&[object_event("o4-a", "62515:4"), object_event("o4-b", "62515:4")]).await.unwrap();
    let short = store.inbox_claim("s4", std::time::Duration::ZERO, 1).await.unwrap();
    assert_eq!(keys(&short), ["o4-a"]);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(keys(&store.inbox_claim("s5", lease, 10).await.unwrap()), ["o4-a", "o4-b"]);
}

async fn a_pipelines_lease_has_one_holder_until_it_ends(store: &Store) {
    let minute = std::time::Duration::from_secs(60);
    assert_eq!(store.take_run_lease("members", "a", minute).await.unwrap(), None, "free: taken");
    assert_eq!(store.take_run_lease("members", "a", minute).await.unwrap(), None, "its holder takes it again");
    let held = store.take_run_lease("members", "b", minute).await.unwrap().expect("held by a");
    assert_eq!(held.holder, "a");
    assert!(held.since <= held.until);
    assert_eq!(store.take_run_lease("other", "b", minute).await.unwrap(), None, "one lease per pipeline");
    assert!(store.renew_run_lease("members", "a", minute).await.unwrap());
    assert!(!store.renew_run_lease("members", "b", minute).await.unwrap(), "only the holder renews");
    store.release_run_lease("members", "b").await.unwrap();
    assert!(store.take_run_lease("members", "b", minute).await.unwrap().is_some(), "only the holder releases");
    store.release_run_lease("members", "a").await.unwrap();
    assert_eq!(store.take_run_lease("members", "b", std::time::Duration::from_millis(1)).await.unwrap(), None);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(store.take_run_lease("members", "c", minute).await.unwrap(), None, "an expired lease is taken over");
    assert!(!store.renew_run_lease("members", "b", minute).await.unwrap(), "and its old holder knows");
}

async fn a_rate_budget_is_updated_by_one_at_a_time(store: &Store) {
    // 40 updates at once, each reading the count and writing it plus one: none is lost
    let bump = |store: Store| async move {
        let mut seen_clock = 0;
        let mut update = |saved: Option<&str>, clock: i64| {
            seen_clock = clock;
            (saved.map_or(0, |s| s.parse::<u64>().unwrap()) + 1).to_string()
        };
        store.update_rate_budget("hubspot:test", &mut update).await.unwrap();
        seen_clock
    };
    let clocks = futures_util::future::join_all((0..40).map(|_| bump(store.clone()))).await;
    let mut last = None;
    store
        .update_rate_budget("hubspot:test", &mut |saved, _| {
            last = saved.map(str::to_owned);
            saved.unwrap_or_default().to_owned()
        })
        .await
        .unwrap();
    assert_eq!(last.as_deref(), Some("40"), "every update saw the one before it");
    let now_us = chrono::Utc::now().timestamp_micros();
    assert!(clocks.iter().all(|c| (now_us - c).abs() < 60_000_000), "the store's clock is microseconds since the epoch: {clocks:?}");
    store
        .update_rate_budget("manychat:test", &mut |saved, _| {
            assert_eq!(saved, None, "budgets are apart");
            "x".into()
        })
        .await
        .unwrap();
}

async fn a_schedules_slot_only_moves_forward(store: &Store) {
    let at = |minute: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap().and_hms_opt(10, minute, 0).unwrap().and_utc();
    assert_eq!(store.schedule("members").await.unwrap(), None);
    store.mark_schedule("members", at(5), None).await.unwrap();
    store.mark_schedule("members", at(6), Some("run-6")).await.unwrap();
    store.mark_schedule("members", at(4), Some("run-4")).await.unwrap();
    let row = store.schedule("members").await.unwrap().unwrap();
    assert_eq!((row.slot, row.run_id.as_deref()), (at(6), Some("run-6")), "an older slot changes nothing");
    store.mark_schedule("deals", at(1), None).await.unwrap();
    let names: Vec<String> = store.schedules().await.unwrap().into_iter().map(|r| r.pipeline).collect();
    assert_eq!(names, ["deals", "members"]);
}

async fn flow_versions_keep_the_newest_and_stale_skips_are_audited(store: &Store) {
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(1_764_000_000_000 + ms).unwrap();
    let keys: Vec<_> = ["v1", "v2", "v3"].into_iter().map(inbox_event).collect();
    store.inbox_accept(&keys).await.unwrap();
    let lease = std::time::Duration::from_secs(60);
    let claimed = store.inbox_claim("wv", lease, 100).await.unwrap();
    let held = |key: &str| claimed.iter().find(|e| e.dedupe_key == key).unwrap();
    let [newer, older, stale] = [held("v1"), held("v2"), held("v3")];
    assert_eq!(store.flow_version("sync-phone", "62515:7").await.unwrap(), None);
    assert!(store.inbox_finish_with(newer.id, "wv", Some(("sync-phone", "62515:7", at(500))), None).await.unwrap());
    // an older event finishing later does not move the version back
    assert!(store.inbox_finish_with(older.id, "wv", Some(("sync-phone", "62515:7", at(100))), None).await.unwrap());
    assert_eq!(store.flow_version("sync-phone", "62515:7").await.unwrap(), Some(at(500)));
    assert_eq!(store.flow_version("other-flow", "62515:7").await.unwrap(), None, "versions are per flow");
    assert!(!store.inbox_finish_with(newer.id, "wv", Some(("sync-phone", "62515:7", at(900))), None).await.unwrap(), "only a held event");
    assert_eq!(store.flow_version("sync-phone", "62515:7").await.unwrap(), Some(at(500)), "nothing changed");

    assert!(store.inbox_skip_stale(stale, "wv", "sync-phone", "62515:7", at(500)).await.unwrap());
    let audit = store.events("62515:7").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].1.as_str(), &audit[0].2["dedupe_key"], &audit[0].2["flow"]),
        ("flow.skipped_stale", &json!("v3"), &json!("sync-phone"))
    );
    assert!(!store.inbox_skip_stale(stale, "wv", "sync-phone", "62515:7", at(500)).await.unwrap(), "done already");
}

async fn inbox_dedupes_claims_and_releases(store: &Store) {
    let delivery: Vec<_> = ["a", "b", "c", "b"].into_iter().map(inbox_event).collect();
    let accepted = store.inbox_accept(&delivery).await.unwrap();
    assert_eq!((accepted.stored, accepted.duplicates), (3, 1), "a key twice in one delivery is stored once");
    // group commit: two deliveries in one transaction, each with its own count
    let (c_and_d, d_again) = ([inbox_event("c"), inbox_event("d")], [inbox_event("d")]);
    let again = store.inbox_accept_many(&[&c_and_d, &d_again]).await.unwrap();
    assert_eq!(again.iter().map(|a| (a.stored, a.duplicates)).collect::<Vec<_>>(), [(1, 1), (0, 1)]);

    let lease = std::time::Duration::from_secs(60);
    let first = store.inbox_claim("w1", lease, 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.dedupe_key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(first[0].attempts, 1);
    assert_eq!(first[0].payload, json!({"objectId": "a"}).to_string());
    let second = store.inbox_claim("w2", lease, 10).await.unwrap();
    assert_eq!(second.iter().map(|e| e.dedupe_key.as_str()).collect::<Vec<_>>(), ["c", "d"], "claimed events are not claimed twice");
    assert!(store.inbox_claim("w3", lease, 10).await.unwrap().is_empty());

    assert!(store.inbox_finish(first[0].id, "w1").await.unwrap());
    assert!(!store.inbox_finish(first[1].id, "w2").await.unwrap(), "only the lease holder finishes");
    let soon = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert!(store.inbox_retry(first[1].id, "w1", "ManyChat 503", soon).await.unwrap());
    let why = syncline_core::RecordError::data("phone|email", "require_any", "the contact has none of phone, email");
    assert!(store.inbox_give_up(&second[0], "w2", "lead-welcome", &why).await.unwrap());
    assert!(!store.inbox_give_up(&second[0], "w2", "lead-welcome", &why).await.unwrap(), "given up once");
    let retried = store.inbox_claim("w3", lease, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].dedupe_key.as_str(), retried[0].attempts), ("b", 2));

    // a worker that died: its expired lease makes the event claimable again
    let expired = store.inbox_claim("w4", std::time::Duration::ZERO, 10).await;
    assert!(expired.unwrap().is_empty(), "b and d are held under live leases");
    store.inbox_accept(&[inbox_event("e")]).await.unwrap();
    let short = store.inbox_claim("dying", std::time::Duration::from_millis(1), 10).await.unwrap();
    assert_eq!(short.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let taken_over = store.inbox_claim("w5", lease, 10).await.unwrap();
    assert_eq!(taken_over.iter().map(|e| (e.dedupe_key.as_str(), e.attempts)).collect::<Vec<_>>(), [("e", 2)]);
    assert!(!store.inbox_finish(short[0].id, "dying").await.unwrap(), "the late worker cannot finish what it lost");

    let depth = store.inbox_depth().await.unwrap();
    let by_status: Vec<(&str, i64)> = depth.iter().map(|d| (d.status.as_str(), d.events)).collect();
    assert_eq!(by_status, [("dead", 1), ("done", 1), ("running", 3)]);

    // the dead event is a dead letter of its flow, with why; replay puts it back with fresh attempts
    let filter = syncline_store::DeadLetterFilter { pipeline: Some("lead-welcome".into()), ..Default::default() };
    let letters = store.dead_letters(&filter).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.record_key.as_str(), letter.class.as_str(), letter.rule.as_str()), ("c", "data", "require_any"));
    assert_eq!((letter.field.as_str(), letter.status.as_str(), letter.attempts), ("phone|email", "open", 1));
    assert_eq!(letter.payload, json!({"objectId": "c"}));
    assert_eq!(store.inbox_requeue("lead-welcome", &["c".to_owned(), "a".to_owned()]).await.unwrap(), 1, "only dead events");
    let again = store.inbox_claim("w6", lease, 10).await.unwrap();
    assert_eq!(again.iter().map(|e| (e.dedupe_key.as_str(), e.attempts)).collect::<Vec<_>>(), [("c", 1)]);
    assert_eq!(store.dead_letters(&filter).await.unwrap()[0].status, "replayed");

    // a worker stopping hands its events back at once, the attempt not counted
    assert_eq!(store.inbox_hand_back("w6").await.unwrap(), 1);
    let back = store.inbox_claim("w7", lease, 10).await.unwrap();
    assert_eq!(back.iter().map(|e| (e.dedupe_key.as_str(), e.attempts)).collect::<Vec<_>>(), [("c", 1)]);

    // `inbox list` and `inbox show`
    let listed = store.inbox_events(None, Some("running"), None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.dedupe_key.as_str()).collect::<Vec<_>>(), ["e", "d", "c", "b"], "newest first");
    assert!(listed.iter().all(|e| e.payload.is_none()), "lists leave payloads out");
    let shown = store.inbox_event(listed[3].id).await.unwrap();
    assert_eq!((shown.attempts, shown.last_error.as_deref()), (2, Some("ManyChat 503")));
    assert_eq!(shown.payload, Some(json!({"objectId": "b"})));
    assert!(matches!(store.inbox_event(999_999).await, Err(syncline_store::StoreError::NotFound(_))));
}

/// On PostgreSQL the tables live in their own schema (`syncline`, or `?schema=`), and tables an
/// older syncline left in `public` are not silently replaced by an empty store.
#[tokio::test]
async fn postgres_stores_live_in_their_schema() {
    let Some(db) = syncline_testkit::postgres().await else { return };
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    store.start_run("r", "members", "full").await.unwrap();
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_schema FROM information_schema.tables WHERE table_name = 'runs'").fetch_all(&pool).await.unwrap();
    assert_eq!(tables, [("syncline".to_string(),)]);
    let named = Store::connect(&format!("{}?schema=other_place", db.url)).await.unwrap();
    assert!(named.runs(None, 10).await.unwrap().is_empty(), "another schema, another store");
    assert_eq!(store.runs(None, 10).await.unwrap().len(), 1);
    store.close().await;
    named.close().await;

    // tables where syncline before 0.2 put them: refused with the fix, kept with ?schema=public
    let old = syncline_testkit::postgres().await.unwrap();
    let public = Store::connect(&format!("{}?schema=public", old.url)).await.unwrap();
    public.start_run("old", "members", "full").await.unwrap();
    public.close().await;
    let error = Store::connect(&old.url).await.unwrap_err().to_string();
    assert!(error.contains("schema public") && error.contains("state_schema: public"), "{error}");
    let kept = Store::connect(&format!("{}?schema=public", old.url)).await.unwrap();
    assert_eq!(kept.runs(None, 10).await.unwrap()[0].id, "old");
    kept.close().await;

    // a role that may not create schemas opens the one a DBA made for it
    let role = format!("syncline_limited_{}", uuid::Uuid::now_v7().simple());
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("REVOKE CREATE ON DATABASE {database} FROM PUBLIC"),
        "CREATE SCHEMA made_by_dba".to_owned(),
        format!("GRANT USAGE, CREATE ON SCHEMA made_by_dba TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let limited = Store::connect(&format!("{url}?schema=made_by_dba")).await;
    let limited = limited.unwrap_or_else(|e| panic!("a role without CREATE on the database: {e}"));
    limited.start_run("limited", "members", "full").await.unwrap();
    limited.close().await;
    sqlx::query(sqlx::AssertSqlSafe("DROP SCHEMA made_by_dba CASCADE")).execute(&pool).await.unwrap();
    pool.close().await;
    old.drop().await;
    db.drop().await;
    let admin = sqlx::PgPool::connect(&std::env::var("SYNCLINE_TEST_POSTGRES_URL").unwrap()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}"))).execute(&admin).await.unwrap();
    admin.close().await;
}
