//! Rendering: the templates (minijinja, HTML-escaped), the assets, the answers for errors, and
//! the headers every answer carries.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::Environment;
use syncline_store::StoreError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    ("runs.html", include_str!("../templates/runs.html")),
    ("run.html", include_str!("../templates/run.html")),
    ("dead_letters.html", include_str!("../templates/dead_letters.html")),
    ("dead_letter.html", include_str!("../templates/dead_letter.html")),
    ("inbox.html", include_str!("../templates/inbox.html")),
    ("inbox_event.html", include_str!("../templates/inbox_event.html")),
    ("live.html", include_str!("../templates/live.html")),
    ("login.html", include_str!("../templates/login.html")),
];

const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", "text/css; charset=utf-8", include_str!("../assets/console.css")),
    ("live.js", "text/javascript; charset=utf-8", include_str!("../assets/live.js")),
    ("select.js", "text/javascript; charset=utf-8", include_str!("../assets/select.js")),
];

pub(crate) struct Views {
    env: Environment<'static>,
}

impl Views {
    pub fn new() -> Views {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("the console's templates parse");
        }
        env.add_filter("when", when);
        Views { env }
    }

    /// The page `name` filled with `context`.
    pub fn render(&self, name: &str, context: minijinja::Value) -> Result<Html<String>, PageError> {
        let template = self.env.get_template(name).map_err(|e| PageError::Internal(e.to_string()))?;
        template.render(context).map(Html).map_err(|e| PageError::Internal(format!("{name}: {e:#}")))
    }
}

/// A stored time (RFC 3339) as a person reads it: `2026-12-01 03:09:29`.
fn when(value: Option<String>) -> String {
    match value {
        Some(v) => v.get(..19).unwrap_or(&v).replace('T', " "),
        None => "—".into(),
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum PageError {
    NotFound(String),
    BadRequest(String),
    /// No admin token was offered (or none is configured).
    Unauthorized(String),
    /// A signed-in form without its CSRF token.
    Forbidden(String),
    /// Reads need a sign-in here; the page to come back to.
    SignIn(String),
    Internal(String),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(why) => PageError::NotFound(why),
            other => PageError::Internal(format!("state store: {other}")),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            PageError::SignIn(here) => {
                let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
                return Redirect::to(&format!("/login?next={next}")).into_response();
            }
            PageError::Internal(m) => {
                tracing::error!(error = %m, "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        };
        // the error page stands alone (no navigation that could fail the same way)
        let body = format!(
            "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
             <link rel=stylesheet href=/assets/console.css><title>{code} · syncline</title>\
             <main><h1>{code}</h1><p class=error>{message}</p><p><a href=/>Overview</a></p></main></html>",
            code = status.as_u16(),
            message = escape(&message)
        );
        (status, Html(body)).into_response()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "max-age=300")], *body).into_response(),
        None => PageError::NotFound(format!("no asset {name}")).into_response(),
    }
}

/// Every answer: no framing, no sniffing, only the console's own scripts and styles, and pages
/// not kept in shared caches.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overview_draws_each_budget_and_escapes_what_it_shows() {
        let bars = vec![minijinja::context! { x => 170, y => 16, h => 16 }];
        let budget = minijinja::context! { name => "hubspot <search>", bars, limit_y => 16, last_minute => 42, budget => "5 per second", width => 180 };
        let context = minijinja::context! { active => "overview", store => "sqlite://x", jobs => Vec::<String>::new(), open_total => "0",
        inbox => Vec::<String>::new(), running => Vec::<String>::new(), health => Vec::<String>::new(), budgets => vec![budget] };
        let html = Views::new().render("overview.html", context).unwrap().0;
        assert!(html.contains(r#"<rect x="170" y="16" width="4" height="16"></rect>"#), "{html}");
        assert!(html.contains(r#"<line x1="0" x2="180" y1="16" y2="16"></line>"#));
        assert!(html.contains("hubspot &lt;search&gt;") && !html.contains("<search>"));
        assert!(html.contains(r#"<td class="n">42</td>"#));
    }
}
