//! The operator console over HTTP, against a store filled by real runs of the members example:
//! every page answers with the store's figures, lists page through all rows, actions need the
//! admin token (and a session's CSRF token), and replay and ignore do what the CLI does.

use super::*;
use std::collections::BTreeSet;

const TOKEN: &str = "console-admin-token-for-tests";

/// A members folder with `rows` generated, run once, and a console section on a free port.
pub fn members_with_console(rows: u32) -> tempfile::TempDir {
    let dir = members_dir();
    let d = dir.path();
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", &rows.to_string()]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    let console = "\nconsole:\n  bind: 127.0.0.1:0\n  token: ${SYNCLINE_CONSOLE_TOKEN}\n";
    std::fs::write(d.join("members.yaml"), format!("{config}{console}")).unwrap();
    dir
}

/// A running `syncline console` (or `serve`) and the console's base URL; killed when dropped.
pub struct Console {
    child: Child,
    pub url: String,
    /// `serve`'s webhook address.
    pub webhooks: Option<String>,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_console(dir: &Path) -> Console {
    start_console_process(dir, &["console"], &[])
}

/// Starts `syncline --config members.yaml <args>` and reads its banner up to the console's line.
pub fn start_console_process(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Console {
    let mut command = bin();
    command.current_dir(dir).env("SYNCLINE_CONSOLE_TOKEN", TOKEN).arg("--config").arg(dir.join("members.yaml")).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().expect("the binary runs");
    let mut banner = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (mut url, mut webhooks) = (None, None);
    let mut line = String::new();
    while url.is_none() && banner.read_line(&mut line).unwrap_or(0) > 0 {
        let address = |prefix: &str| line.trim().strip_prefix(prefix).and_then(|r| r.split_whitespace().next()).map(str::to_owned);
        webhooks = webhooks.or_else(|| address("serving on http://"));
        url = address("console on http://").map(|a| format!("http://{a}"));
        line.clear();
    }
    match url {
        Some(url) => Console { child, url, webhooks },
        None => {
            let _ = child.kill();
            panic!("no console address in the banner");
        }
    }
}

/// `syncline --config members.yaml args…` with the console's token set (the config names it).
fn syncline_with_token(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).env("SYNCLINE_CONSOLE_TOKEN", TOKEN).arg("--config").arg(dir.join("members.yaml")).args(args).output().unwrap()
}

/// `syncline --quiet run members` started in the background, with these variables set too.
pub fn spawn_run(dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = bin();
    command.current_dir(dir).env("SYNCLINE_CONSOLE_TOKEN", TOKEN).arg("--config").arg(dir.join("members.yaml"));
    for (name, value) in env {
        command.env(name, value);
    }
    command.args(["--quiet", "run", "members"]).spawn().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn page(url: &str) -> String {
    let answer = client().get(url).send().await.unwrap();
    assert_eq!(answer.status(), 200, "GET {url}");
    assert!(answer.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    answer.text().await.unwrap()
}

/// The values of `attribute="…"` in a page, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let marker = format!("{attribute}=\"");
    html.split(&marker).skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

/// The text of the element with this `id`.
fn text_of(html: &str, id: &str) -> String {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    rest[open..].split('<').next().unwrap().trim().to_owned()
}

async fn open_ids(state: &sqlx::SqlitePool, extra: &str) -> BTreeSet<i64> {
    let sql = format!("SELECT id FROM dead_letters WHERE status = 'open' {extra}");
    sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql)).fetch_all(state).await.unwrap().into_iter().map(|r| r.0).collect()
}

/// Signs in and returns the session cookie and a page's CSRF token.
async fn sign_in(url: &str) -> (String, String) {
    let wrong = client().post(format!("{url}/login")).form(&[("token", "nope"), ("next", "/")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let answer = client().post(format!("{url}/login")).form(&[("token", TOKEN), ("next", "/dead-letters")]).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/dead-letters");
    let set = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let html = client().get(format!("{url}/dead-letters")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = attributes(&html, "value").into_iter().find(|v| v.len() == 64).expect("a CSRF token in the bulk form");
    (cookie, csrf)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_show_the_stores_figures_and_page_through_every_row() {
    let dir = members_with_console(2000);
    let d = dir.path();
    let out = syncline_with_token(d, &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let state = sqlite(&d.join("members-state.db")).await;
    let console = start_console(d);
    let url = &console.url;

    // overview: the pipeline, its last run and open dead letters as the store has them
    let (run_id, read, rejected): (String, i64, i64) =
        sqlx::query_as("SELECT id, read_count, rejected_count FROM runs").fetch_one(&state).await.unwrap();
    let html = page(&format!("{url}/")).await;
    let open = open_ids(&state, "").await;
    assert_eq!(open.len(), 100);
    assert_eq!(text_of(&html, "open-total"), open.len().to_string());
    assert!(html.contains(&format!("href=\"/runs/{run_id}\"")), "the last run is linked");
    assert!(!html.contains(TOKEN), "no secret is rendered");

    // runs and one run: the counts
    let html = page(&format!("{url}/runs")).await;
    assert_eq!(attributes(&html, "data-run"), vec![run_id.clone()]);
    let html = page(&format!("{url}/runs/{run_id}")).await;
    assert!(html.contains(&format!("data-count=\"read\">{read}<")), "read {read}");
    assert!(html.contains(&format!("data-count=\"rejected\">{rejected}<")), "rejected {rejected}");

    // dead letters: two pages of 50 hold exactly the open ones, newest first
    let first = page(&format!("{url}/dead-letters")).await;
    let next = attributes(&first, "class=\"next\" href").pop().expect("a next page").replace("&amp;", "&");
    let second = page(&format!("{url}{next}")).await;
    let mut shown: Vec<i64> =
        attributes(&first, "data-id").iter().chain(attributes(&second, "data-id").iter()).map(|i| i.parse().unwrap()).collect();
    assert_eq!(shown.len(), 100);
    assert!(shown.windows(2).all(|w| w[0] > w[1]), "newest first");
    shown.sort_unstable();
    assert_eq!(shown.into_iter().collect::<BTreeSet<_>>(), open);

    // a filter by rule shows exactly that rule's
    let phone = open_ids(&state, "AND rule = 'phone'").await;
    let html = page(&format!("{url}/dead-letters?rule=phone")).await;
    let ids: BTreeSet<i64> = attributes(&html, "data-id").iter().map(|i| i.parse().unwrap()).collect();
    assert_eq!(ids, phone);

    // one dead letter: its record and error, escaped
    let id = *open.first().unwrap();
    let (key, message): (String, String) =
        sqlx::query_as("SELECT record_key, message FROM dead_letters WHERE id = ?").bind(id).fetch_one(&state).await.unwrap();
    let html = page(&format!("{url}/dead-letters/{id}")).await;
    assert!(html.contains(&format!("<code>{key}</code>")));
    // (the part of the message that HTML escaping leaves as it is)
    let plain = message.split(|c: char| !(c.is_alphanumeric() || c == ' ')).max_by_key(|part| part.len()).unwrap().trim();
    assert!(plain.len() > 3 && html.contains(plain), "{message}");
    let record = text_of(&html, "record");
    assert!(record.contains("numero_asociado") && record.contains(&key), "the record is shown: {record}");

    // the other pages answer; nothing runs now
    page(&format!("{url}/inbox")).await;
    page(&format!("{url}/live")).await;
    let live: serde_json::Value = client().get(format!("{url}/api/live")).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["runs"], serde_json::json!([]));
    let missing = client().get(format!("{url}/dead-letters/999999")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = client().get(format!("{url}/dead-letters?status=everything")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_need_the_token_and_the_csrf_token_and_do_what_the_cli_does() {
    let dir = members_with_console(2000);
    let d = dir.path();
    let out = syncline_with_token(d, &["run", "members"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // a mapping fix, so replaying the marital-status rejects now writes them
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    std::fs::write(d.join("members.yaml"), config.replace(r#""5": Unión Libre }"#, r#""5": Unión Libre, "9": Otro }"#)).unwrap();
    let state = sqlite(&d.join("members-state.db")).await;
    let console = start_console(d);
    let url = &console.url;
    let open = open_ids(&state, "").await;
    let ten: Vec<i64> = open.iter().copied().filter(|id| id % 2 == 0).take(10).collect();
    let form = |ids: &[i64], csrf: Option<&str>| {
        let mut fields: Vec<(String, String)> = ids.iter().map(|id| ("ids".to_owned(), id.to_string())).collect();
        fields.push(("back".into(), "/dead-letters".into()));
        if let Some(csrf) = csrf {
            fields.push(("csrf".into(), csrf.into()));
        }
        fields
    };

    // no token: 401 and nothing changes
    let answer = client().post(format!("{url}/dead-letters/ignore")).form(&form(&ten, None)).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let answer = client().post(format!("{url}/dead-letters/replay")).form(&form(&ten, None)).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(open_ids(&state, "").await, open);

    // signed in, but without (or with a wrong) CSRF token: refused, nothing changes
    let (cookie, csrf) = sign_in(url).await;
    for wrong in [None, Some("0".repeat(64))] {
        let answer = client()
            .post(format!("{url}/dead-letters/ignore"))
            .header("cookie", &cookie)
            .form(&form(&ten, wrong.as_deref()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403);
    }
    assert_eq!(open_ids(&state, "").await, open);

    // ignore ten in bulk, as `dlq ignore` would
    let answer =
        client().post(format!("{url}/dead-letters/ignore")).header("cookie", &cookie).form(&form(&ten, Some(&csrf))).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let to = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with("/dead-letters?notice=10+of+10+dead+letter"), "{to}");
    let ignored: BTreeSet<i64> = sqlx::query_as::<_, (i64,)>("SELECT id FROM dead_letters WHERE status = 'ignored'")
        .fetch_all(&state)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ignored, ten.iter().copied().collect());

    // replay one marital-status reject from its page: written, and shown replayed
    let id: i64 = sqlx::query_as::<_, (i64,)>("SELECT MIN(id) FROM dead_letters WHERE status = 'open' AND rule = 'map_values'")
        .fetch_one(&state)
        .await
        .unwrap()
        .0;
    let html = client().get(format!("{url}/dead-letters/{id}")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"replay\"") && !html.contains("id=\"replay\" disabled"), "a signed-in person may replay");
    let mut fields = form(&[id], Some(&csrf));
    fields.retain(|(k, _)| k != "back");
    fields.push(("back".into(), format!("/dead-letters/{id}")));
    let answer = client().post(format!("{url}/dead-letters/replay")).header("cookie", &cookie).form(&fields).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let to = answer.headers()["location"].to_str().unwrap().to_owned();
    let html = page(&format!("{url}{to}")).await;
    assert_eq!(text_of(&html, "status"), "replayed", "{html}");
    assert!(html.contains("members: 1 replayed"), "the notice says what happened");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM dead_letters WHERE id = ?").bind(id).fetch_one(&state).await.unwrap();
    assert_eq!(status, "replayed");
    let runs: Vec<(String,)> = sqlx::query_as("SELECT mode FROM runs ORDER BY started_at").fetch_all(&state).await.unwrap();
    assert_eq!(runs.last().unwrap().0, "replay", "the replay is in the sync history");

    // a script with the bearer token needs no CSRF token
    let id = *open_ids(&state, "").await.first().unwrap();
    let answer = client().post(format!("{url}/dead-letters/ignore")).bearer_auth(TOKEN).form(&form(&[id], None)).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let (status,): (String,) = sqlx::query_as("SELECT status FROM dead_letters WHERE id = ?").bind(id).fetch_one(&state).await.unwrap();
    assert_eq!(status, "ignored");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_view_shows_a_running_runs_count_rise() {
    let dir = members_with_console(20_000);
    let d = dir.path();
    // small pages, so the run commits (and counts) often
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    std::fs::write(
        d.join("members.yaml"),
        config.replace("page_size: 1000", "page_size: 250").replace("batch_size: 1000", "batch_size: 250"),
    )
    .unwrap();
    // the store exists before the console opens it
    let out = syncline_with_token(d, &["runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let console = start_console(d);
    let mut run = spawn_run(d, &[]);
    let mut seen: Vec<i64> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline && run.try_wait().unwrap().is_none() {
        let live: serde_json::Value = client().get(format!("{}/api/live", console.url)).send().await.unwrap().json().await.unwrap();
        if let Some(read) = live["runs"].get(0).and_then(|r| r["read_count"].as_i64())
            && seen.last() != Some(&read)
        {
            seen.push(read);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(run.wait().unwrap().code(), Some(3));
    assert!(seen.len() >= 3 && seen.windows(2).all(|w| w[0] < w[1]), "the count rose while it ran: {seen:?}");
    let live: serde_json::Value = client().get(format!("{}/api/live", console.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["runs"], serde_json::json!([]), "a finished run leaves the live view");
}
