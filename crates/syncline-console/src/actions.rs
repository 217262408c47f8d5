//! What the console changes: signing in and out, and replaying or ignoring dead letters. Every
//! change needs the admin token — a bearer header, or a session and the form's CSRF token — and
//! does exactly what the matching CLI command does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use crate::App;
use crate::auth::{COOKIE, Who};
use crate::view::PageError;

/// The most dead letters one action may name.
const MOST_AT_ONCE: usize = 1000;

/// A path on this console to go back to: only `/…` (not `//host`), else the overview.
pub(crate) fn safe_path(path: Option<&str>) -> String {
    match path {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

/// A posted form's fields, in order (`ids` repeats).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The dead letters named (`ids`, repeated), each a number.
    fn ids(&self) -> Result<Vec<i64>, PageError> {
        let ids: Vec<i64> = self
            .0
            .iter()
            .filter(|(k, _)| k == "ids")
            .map(|(_, v)| v.trim().parse().map_err(|_| PageError::BadRequest(format!("ids={v:?} is not a dead letter id"))))
            .collect::<Result<_, _>>()?;
        match ids.len() {
            0 => Err(PageError::BadRequest("choose at least one dead letter".into())),
            n if n > MOST_AT_ONCE => Err(PageError::BadRequest(format!("{n} dead letters chosen; at most {MOST_AT_ONCE} at once"))),
            _ => Ok(ids),
        }
    }
}

impl App {
    /// The actor of a change, or why they may not make it.
    fn actor(&self, headers: &HeaderMap, form: &Form) -> Result<Who, PageError> {
        let access = &self.settings.access;
        if !access.has_token() {
            return Err(PageError::Unauthorized("this console has no admin token: set console.token to act from it".into()));
        }
        match access.who(headers) {
            Who::Anonymous => Err(PageError::Unauthorized("sign in with the admin token first".into())),
            Who::Bearer => Ok(Who::Bearer),
            session if access.csrf_matches(&session, form.one("csrf")) => Ok(session),
            _ => Err(PageError::Forbidden("the form's CSRF token is missing or stale: reload the page and try again".into())),
        }
    }
}

/// Back to where the form was, with a notice of what happened.
fn back(form: &Form, notice: &str) -> Response {
    let path = safe_path(form.one("back"));
    let joiner = if path.contains('?') { '&' } else { '?' };
    let notice: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    Redirect::to(&format!("{path}{joiner}notice={notice}")).into_response()
}

pub(crate) async fn ignore(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, PageError> {
    let form = Form::parse(&body);
    let who = app.actor(&headers, &form)?;
    let ids = form.ids()?;
    let changed = app.store.ignore_dead_letters(&ids).await?;
    tracing::info!(ids = ?ids, changed, by = ?matches!(who, Who::Bearer).then_some("bearer"), "console: dead letters ignored");
    Ok(back(&form, &format!("{changed} of {} dead letter(s) marked ignored", ids.len())))
}

pub(crate) async fn replay(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, PageError> {
    let form = Form::parse(&body);
    app.actor(&headers, &form)?;
    let ids = form.ids()?;
    tracing::info!(ids = ?ids, "console: replaying dead letters");
    match app.host.replay(ids).await {
        Ok(lines) if lines.is_empty() => Ok(back(&form, "nothing to replay: none of them is open")),
        Ok(lines) => Ok(back(&form, &lines.join("; "))),
        Err(why) => Ok(back(&form, &format!("replay failed: {why}"))),
    }
}

pub(crate) async fn login(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, PageError> {
    let form = Form::parse(&body);
    let access = &app.settings.access;
    if !access.has_token() {
        return Err(PageError::Unauthorized("this console has no admin token: set console.token to sign in".into()));
    }
    let next = safe_path(form.one("next"));
    if !access.is_token(form.one("token").unwrap_or_default()) {
        let who = access.who(&headers);
        let page = app.views.render("login.html", context! { next, failed => true, ..app.frame(&who, "login", None) })?;
        return Ok((axum::http::StatusCode::UNAUTHORIZED, page).into_response());
    }
    let session = access.new_session().expect("a token is set");
    let mut response = Redirect::to(&next).into_response();
    let cookie = format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex and ascii"));
    Ok(response)
}

pub(crate) async fn logout() -> Response {
    let mut response = Redirect::to("/").into_response();
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"));
    response
}
