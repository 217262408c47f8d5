//! The operator console in a real browser: headless Chromium driven through ChromeDriver, against
//! `syncline serve` holding real runs and dead letters (the members pipeline) and real inbox
//! events (signed HubSpot deliveries). Every page is loaded, its figures checked against the
//! store and saved as a screenshot; a dead letter is replayed from its page, ten are ignored in
//! bulk, and a running pipeline's count is seen rising on the live page.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Outside CI the
//! test is skipped with a notice when ChromeDriver is missing; under `CI=true` that fails.

use super::console::{members_with_console, spawn_run, start_console_process};
use super::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::time::{Duration, Instant};
use syncline_server::signature::sign;

const TOKEN: &str = "console-admin-token-for-tests";
const HOOK_SECRET: &str = "hook-secret-for-browser-tests";

/// ChromeDriver and Chromium, or `None` (with a notice) where they are missing outside CI.
fn browser_paths() -> Option<(String, String)> {
    let driver = std::env::var("SYNCLINE_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("SYNCLINE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Path::new(&driver).exists() && Path::new(&chromium).exists() {
        return Some((driver, chromium));
    }
    let why = format!("no ChromeDriver at {driver} or Chromium at {chromium} (apt-get install chromium chromium-driver)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("skipping the browser test: {why}");
    None
}

/// A running ChromeDriver, stopped when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver(path: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(path).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ChromeDriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver(child, port)
}

async fn open_browser(driver: &Driver, chromium: &str) -> Client {
    let mut capabilities = serde_json::Map::new();
    let options = serde_json::json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
    });
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("ChromeDriver opens a session")
}

/// Saves the page as `<folder>/<name>.png` and says where.
async fn screenshot(browser: &Client, folder: &Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = folder.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot of {name}: {}", path.display());
}

/// The text of the first element `css` selects, waiting for it to appear (a click that submits a
/// form returns before the next page is there).
async fn text(browser: &Client, css: &str) -> String {
    let found = browser.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await;
    found.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn scalar(state: &sqlx::SqlitePool, sql: &str) -> i64 {
    count(state, sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let Some((driver_path, chromium)) = browser_paths() else { return };
    let dir = members_with_console(2000);
    let d = dir.path();
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    let config = config.replace("page_size: 1000", "page_size: 250").replace("batch_size: 1000", "batch_size: 250");
    let hooks = "\nwebhooks:\n  hubspot:\n    provider: hubspot\n    secrets: [\"${HOOK_SECRET}\"]\n";
    std::fs::write(d.join("members.yaml"), format!("{config}{hooks}")).unwrap();
    let out = bin()
        .current_dir(d)
        .env("SYNCLINE_CONSOLE_TOKEN", TOKEN)
        .env("HOOK_SECRET", HOOK_SECRET)
        .arg("--config")
        .arg(d.join("members.yaml"))
        .args(["run", "members"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // a mapping fix, so a marital-status reject replays into the warehouse
    let config = std::fs::read_to_string(d.join("members.yaml")).unwrap();
    std::fs::write(d.join("members.yaml"), config.replace(r#""5": Unión Libre }"#, r#""5": Unión Libre, "9": Otro }"#)).unwrap();

    // serve: the webhooks, and the console on its own address
    let server = start_console_process(d, &["serve", "--bind", "127.0.0.1:0"], &[("HOOK_SECRET", HOOK_SECRET)]);
    let events = r#"[{"eventId":11,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":501,"appId":1},
                    {"eventId":12,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000001,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":502,"appId":1},
                    {"eventId":13,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000002,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":501,"propertyName":"email","propertyValue":"a@example.com","appId":1}]"#;
    let signed = [("X-HubSpot-Signature", sign::hubspot_v1(HOOK_SECRET, events.as_bytes())), ("Content-Type", "application/json".into())];
    let webhooks = server.webhooks.clone().expect("serve's webhook address");
    let (status, body) = crate::sandbox::request(&webhooks, "POST", "/webhooks/hubspot", &signed, events.as_bytes());
    assert!(status.contains("200"), "{status} {body}");

    let state = sqlite(&d.join("members-state.db")).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let driver = start_driver(&driver_path);
    let browser = open_browser(&driver, &chromium).await;
    let url = server.url.clone();
    drive(&browser, &url, d, &state, &shots).await;
    browser.close().await.unwrap();
}

/// Every step in the browser.
async fn drive(browser: &Client, url: &str, d: &Path, state: &sqlx::SqlitePool, shots: &Path) {
    // overview: the open dead letters and the inbox as the store has them
    browser.goto(&format!("{url}/")).await.unwrap();
    let open = scalar(state, "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'").await;
    assert_eq!(text(browser, "#open-total").await, open.to_string());
    let inbox_rows = browser.find_all(Locator::Css("#inbox-depth tbody tr")).await.unwrap();
    assert_eq!(inbox_rows.len(), 1, "one source, one status");
    assert!(text(browser, "#inbox-depth tbody tr").await.contains("pending 3"));
    screenshot(browser, shots, "overview").await;
    // on a phone: the page fits its width (wide tables scroll inside their own box)
    browser.set_window_size(390, 844).await.unwrap();
    let fits = browser.execute("return document.documentElement.scrollWidth <= window.innerWidth", Vec::new()).await.unwrap();
    assert_eq!(fits, serde_json::Value::Bool(true), "the overview fits a phone's width");
    screenshot(browser, shots, "overview-phone").await;
    browser.set_window_size(1280, 1000).await.unwrap();

    // runs and the run
    browser.goto(&format!("{url}/runs")).await.unwrap();
    let (run_id, read): (String, i64) = sqlx::query_as("SELECT id, read_count FROM runs").fetch_one(state).await.unwrap();
    browser.find(Locator::Css(&format!("tr[data-run='{run_id}'] a"))).await.unwrap().click().await.unwrap();
    assert_eq!(text(browser, "dd[data-count='read']").await, read.to_string());
    screenshot(browser, shots, "runs").await;

    // the inbox and one event with its payload
    browser.goto(&format!("{url}/inbox")).await.unwrap();
    assert_eq!(browser.find_all(Locator::Css("#inbox tbody tr[data-id]")).await.unwrap().len(), 3);
    screenshot(browser, shots, "inbox").await;
    browser.find(Locator::Css("#inbox tbody tr[data-id] a")).await.unwrap().click().await.unwrap();
    assert!(text(browser, "#payload").await.contains("\"objectId\""));
    screenshot(browser, shots, "inbox-event").await;

    // sign in through the form
    browser.goto(&format!("{url}/login?next=/dead-letters")).await.unwrap();
    screenshot(browser, shots, "login").await;
    browser.find(Locator::Id("token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    browser.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    text(browser, "#dead-letters").await;
    assert!(browser.current_url().await.unwrap().path().ends_with("/dead-letters"));
    screenshot(browser, shots, "dead-letters").await;

    // replay a marital-status reject from its page: it is written and shown replayed
    let id = scalar(state, "SELECT MIN(id) FROM dead_letters WHERE status = 'open' AND rule = 'map_values'").await;
    browser.goto(&format!("{url}/dead-letters/{id}")).await.unwrap();
    screenshot(browser, shots, "dead-letter").await;
    browser.find(Locator::Id("replay")).await.unwrap().click().await.unwrap();
    assert!(text(browser, ".notice").await.contains("members: 1 replayed"));
    assert_eq!(text(browser, "#status").await, "replayed");
    assert_eq!(scalar(state, &format!("SELECT COUNT(*) FROM dead_letters WHERE id = {id} AND status = 'replayed'")).await, 1);

    // ignore ten in bulk from the list
    browser.goto(&format!("{url}/dead-letters?status=open")).await.unwrap();
    let boxes = browser.find_all(Locator::Css("#dead-letters input[name='ids']")).await.unwrap();
    let mut chosen = Vec::new();
    for b in boxes.iter().take(10) {
        chosen.push(b.attr("value").await.unwrap().unwrap().parse::<i64>().unwrap());
        b.click().await.unwrap();
    }
    browser.find(Locator::Id("ignore-selected")).await.unwrap().click().await.unwrap();
    assert!(text(browser, ".notice").await.contains("10 of 10"));
    let ids = chosen.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(scalar(state, &format!("SELECT COUNT(*) FROM dead_letters WHERE status = 'ignored' AND id IN ({ids})")).await, 10);
    screenshot(browser, shots, "after-ignore").await;

    // the live page (it polls every second) while a run works through 160,000 new rows: a run
    // of 40,000 was once over within two polls on CI ([18250] seen, then done)
    let out = bin().current_dir(d).args(["example", "members", "--db", "members.db", "--rows", "160000"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    browser.goto(&format!("{url}/live")).await.unwrap();
    let mut running = spawn_run(d, &[("HOOK_SECRET", HOOK_SECRET)]);
    let mut seen: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && running.try_wait().unwrap().is_none() {
        if let Ok(cell) = browser.find(Locator::Css("#live tbody tr[data-run] td.read")).await
            && let Ok(read) = cell.text().await.unwrap_or_default().parse::<i64>()
            && seen.last() != Some(&read)
        {
            seen.push(read);
            if seen.len() == 2 {
                screenshot(browser, shots, "live").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.wait().unwrap();
    // two readings that differ show the page following the run
    assert!(seen.len() >= 2 && seen.windows(2).all(|w| w[0] < w[1]), "the live count rose: {seen:?}");
}
