//! The read-only pages. Each reads one indexed range of the store (lists page by keyset, never
//! by offset), so a page costs the same with a hundred runs or a million dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use syncline_store::{DeadLetterFilter, RunRow};

use crate::auth::Who;
use crate::view::PageError;
use crate::{App, PAGE};

type Page = Result<Response, PageError>;

/// Open dead letters are counted up to this many per pipeline on the overview.
const OPEN_CAP: i64 = 10_000;

impl App {
    /// Who reads; when reads are not open, someone signed in or nobody.
    pub(crate) fn reader(&self, headers: &HeaderMap, here: &str) -> Result<Who, PageError> {
        let who = self.settings.access.who(headers);
        if who == Who::Anonymous && !self.settings.access.open_reads {
            return Err(PageError::SignIn(here.to_owned()));
        }
        Ok(who)
    }

    /// What every page's frame shows.
    pub(crate) fn frame(&self, who: &Who, active: &str, notice: Option<&str>) -> minijinja::Value {
        let access = &self.settings.access;
        context! {
            active,
            store => self.settings.store_label,
            signed_in => *who != Who::Anonymous,
            has_token => access.has_token(),
            csrf => access.csrf(who),
            notice,
        }
    }

    fn page(&self, name: &str, context: minijinja::Value) -> Page {
        Ok(self.views.render(name, context)?.into_response())
    }
}

/// A query parameter as a filter: absent or empty means "any".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Notice {
    notice: Option<String>,
}

pub(crate) async fn overview(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<Notice>) -> Page {
    let who = app.reader(&headers, "/")?;
    let slots: BTreeMap<String, syncline_store::ScheduleRow> =
        app.store.schedules().await?.into_iter().map(|s| (s.pipeline.clone(), s)).collect();
    let (mut jobs, mut open_total, mut at_least) = (Vec::new(), 0, false);
    for job in &app.host.jobs() {
        let last = app.store.run_page(Some(&job.name), None, 1).await?.into_iter().next().as_ref().map(run_view);
        // counted up to a cap, so the page costs the same with a million
        let open = app.store.open_dead_letters_up_to(&job.name, OPEN_CAP).await?;
        (open_total, at_least) = (open_total + open, at_least || open == OPEN_CAP);
        let open = if open == OPEN_CAP { format!("{OPEN_CAP}+") } else { open.to_string() };
        let last_slot = slots.get(&job.name).map(|s| s.slot.to_rfc3339());
        jobs.push(context! { last, open, last_slot, ..minijinja::Value::from_serialize(job) });
    }
    let budgets = app.usage.charts();
    let open_total = if at_least { format!("{open_total}+") } else { open_total.to_string() };
    let inbox = app.store.inbox_depth().await?;
    let running = app.store.running_runs().await?;
    let health: Vec<_> = app
        .host
        .health()
        .into_iter()
        .map(|h| context! { name => h.name, level => format!("{:?}", h.level).to_lowercase(), reasons => h.reasons })
        .collect();
    app.page(
        "overview.html",
        context! { jobs, open_total, inbox, running, health, budgets, ..app.frame(&who, "overview", q.notice.as_deref()) },
    )
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RunQuery {
    pipeline: Option<String>,
    /// The previous page's last run: `started_at|id`.
    before: Option<String>,
}

pub(crate) async fn runs(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<RunQuery>) -> Page {
    let who = app.reader(&headers, "/runs")?;
    let before = given(&q.before)
        .map(|b| b.split_once('|').ok_or_else(|| PageError::BadRequest(format!("before={b:?} is not started_at|id"))))
        .transpose()?;
    let runs = app.store.run_page(given(&q.pipeline), before, PAGE).await?;
    let next = (runs.len() as i64 == PAGE).then(|| runs.last().map(|r| format!("{}|{}", r.started_at, r.id))).flatten();
    let jobs: Vec<String> = app.host.jobs().into_iter().map(|j| j.name).collect();
    app.page("runs.html", context! { runs => runs.iter().map(run_view).collect::<Vec<_>>(), next, pipeline => given(&q.pipeline), jobs, ..app.frame(&who, "runs", None) })
}

/// A run with how long it took and its pace.
fn run_view(run: &RunRow) -> minijinja::Value {
    let started = chrono::DateTime::parse_from_rfc3339(&run.started_at).ok();
    let ended = run.finished_at.as_deref().and_then(|f| chrono::DateTime::parse_from_rfc3339(f).ok());
    let seconds = match (started, ended) {
        (Some(s), Some(e)) => Some((e - s).num_milliseconds() as f64 / 1000.0),
        (Some(s), None) if run.status == "running" => Some((chrono::Utc::now() - s.to_utc()).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let per_second = seconds.filter(|s| *s > 0.0).map(|s| (run.read_count as f64 / s).round() as i64);
    context! { seconds => seconds.map(|s| format!("{s:.1}")), per_second, ..minijinja::Value::from_serialize(run) }
}

pub(crate) async fn run(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, Query(q): Query<Notice>) -> Page {
    let who = app.reader(&headers, &format!("/runs/{id}"))?;
    let run = app.store.run(&id).await?;
    let filter = DeadLetterFilter { run_id: Some(id.clone()), newest_first: true, limit: Some(PAGE), ..Default::default() };
    let dead_letters = app.store.dead_letters(&filter).await?;
    app.page("run.html", context! { run => run_view(&run), dead_letters, ..app.frame(&who, "runs", q.notice.as_deref()) })
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct DeadLetterQuery {
    pipeline: Option<String>,
    rule: Option<String>,
    field: Option<String>,
    class: Option<String>,
    /// `open` (the default), `resolved`, `replayed`, `ignored` or `all`.
    status: Option<String>,
    run: Option<String>,
    before: Option<i64>,
    notice: Option<String>,
}

pub(crate) async fn dead_letters(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<DeadLetterQuery>,
) -> Page {
    let here = uri.path_and_query().map_or("/dead-letters".to_owned(), ToString::to_string);
    let who = app.reader(&headers, &here)?;
    let status = given(&q.status).unwrap_or("open");
    if !["open", "resolved", "replayed", "ignored", "all"].contains(&status) {
        return Err(PageError::BadRequest(format!("status={status:?}: choose open, resolved, replayed, ignored or all")));
    }
    let owned = |v: &Option<String>| given(v).map(str::to_owned);
    let filter = DeadLetterFilter {
        pipeline: owned(&q.pipeline),
        status: (status != "all").then(|| status.to_owned()),
        rule: owned(&q.rule),
        field: owned(&q.field),
        class: owned(&q.class),
        run_id: owned(&q.run),
        before: q.before,
        newest_first: true,
        limit: Some(PAGE),
        ..Default::default()
    };
    let rows = app.store.dead_letters(&filter).await?;
    let next = (rows.len() as i64 == PAGE).then(|| rows.last().map(|r| r.id)).flatten();
    let query = context! {
        pipeline => filter.pipeline, rule => filter.rule, field => filter.field, class => filter.class, run => filter.run_id, status,
    };
    let jobs: Vec<String> = app.host.jobs().into_iter().map(|j| j.name).collect();
    app.page("dead_letters.html", context! { rows, next, query, here, jobs, ..app.frame(&who, "dead-letters", q.notice.as_deref()) })
}

pub(crate) async fn dead_letter(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<i64>, Query(q): Query<Notice>) -> Page {
    let here = format!("/dead-letters/{id}");
    let who = app.reader(&headers, &here)?;
    let row = app.store.dead_letter(id).await?;
    let record = serde_json::to_string_pretty(&row.payload).unwrap_or_default();
    app.page("dead_letter.html", context! { row, record, here, ..app.frame(&who, "dead-letters", q.notice.as_deref()) })
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct InboxQuery {
    source: Option<String>,
    status: Option<String>,
    before: Option<i64>,
}

pub(crate) async fn inbox(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<InboxQuery>) -> Page {
    let who = app.reader(&headers, "/inbox")?;
    let status = given(&q.status);
    if let Some(s) = status
        && !["pending", "running", "done", "dead"].contains(&s)
    {
        return Err(PageError::BadRequest(format!("status={s:?}: choose pending, running, done or dead")));
    }
    let events = app.store.inbox_events(given(&q.source), status, q.before, PAGE).await?;
    let next = (events.len() as i64 == PAGE).then(|| events.last().map(|e| e.id)).flatten();
    let depth = app.store.inbox_depth().await?;
    let query = context! { source => given(&q.source), status };
    app.page("inbox.html", context! { events, next, depth, query, ..app.frame(&who, "inbox", None) })
}

pub(crate) async fn inbox_event(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<i64>) -> Page {
    let who = app.reader(&headers, &format!("/inbox/{id}"))?;
    let event = app.store.inbox_event(id).await?;
    let payload = serde_json::to_string_pretty(&event.payload).unwrap_or_default();
    // what the flows decided about it: the audit trail of its object, this event's entries
    let subject = event.object_key.clone().unwrap_or_else(|| event.dedupe_key.clone());
    let decisions: Vec<_> = app
        .store
        .events(&subject)
        .await?
        .into_iter()
        .filter(|(_, _, detail)| detail.get("dedupe_key").is_none_or(|k| k == event.dedupe_key.as_str()))
        .map(|(at, kind, detail)| context! { at, kind, detail => detail.to_string() })
        .collect();
    app.page("inbox_event.html", context! { event, payload, decisions, subject, ..app.frame(&who, "inbox", None) })
}

pub(crate) async fn live(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let who = app.reader(&headers, "/live")?;
    let running = app.store.running_runs().await?;
    app.page("live.html", context! { runs => running.iter().map(run_view).collect::<Vec<_>>(), ..app.frame(&who, "live", None) })
}

/// The runs in progress, for the live page's script to poll.
pub(crate) async fn live_json(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    app.reader(&headers, "/live")?;
    let running = app.store.running_runs().await?;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(Json(serde_json::json!({ "at": at, "runs": running })).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

pub(crate) async fn login(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Page {
    let who = app.settings.access.who(&headers);
    let next = crate::actions::safe_path(q.next.as_deref());
    app.page("login.html", context! { next, failed => false, ..app.frame(&who, "login", None) })
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> PageError {
    PageError::NotFound(format!("no page at {}", uri.path()))
}
