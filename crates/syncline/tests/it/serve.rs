//! `syncline serve` as a user runs it: a real process receiving signed webhooks over HTTP into
//! the SQLite inbox, stopped with SIGTERM; `syncline inbox` shows what it stored.

use std::process::Stdio;

use syncline_server::signature::sign;

use crate::{bin, code, stderr, stdout, syncline};

const SECRET: &str = "app-secret-for-tests";
const CONFIG: &str = "webhooks:\n  hubspot:\n    provider: hubspot\n    secrets: [\"${HOOK_SECRET}\"]\n";

fn post(address: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (String, String) {
    crate::sandbox::request(address, "POST", path, headers, body)
}

#[test]
fn serve_stores_signed_deliveries_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hooks.yaml"), CONFIG).unwrap();
    let (mut child, address) = crate::start_serve(
        bin()
            .current_dir(dir.path())
            .env("HOOK_SECRET", SECRET)
            .args(["--config", "hooks.yaml", "serve", "--bind", "127.0.0.1:0"])
            .stderr(Stdio::piped()),
    );
    let address = address.as_str();

    let events = r#"[{"eventId":1,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":501,"appId":1},
                    {"eventId":2,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000001,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":502,"appId":1}]"#;
    let signed = [("X-HubSpot-Signature", sign::hubspot_v1(SECRET, events.as_bytes())), ("Content-Type", "application/json".into())];
    let (status, body) = post(address, "/webhooks/hubspot", &signed, events.as_bytes());
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(body, r#"{"duplicates":0,"stored":2}"#);
    let (status, _) = post(address, "/webhooks/hubspot", &signed, events.as_bytes());
    assert!(status.contains("200"), "a redelivery is acknowledged");
    let forged = [("X-HubSpot-Signature", sign::hubspot_v1("not-the-secret", events.as_bytes()))];
    let (status, _) = post(address, "/webhooks/hubspot", &forged, events.as_bytes());
    assert!(status.contains("401"), "{status}");

    let terminated = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM stops serve cleanly");

    let output = bin().current_dir(dir.path()).env("HOOK_SECRET", SECRET).args(["--config", "hooks.yaml", "inbox"]).output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let table = stdout(&output);
    let row = table.lines().find(|l| l.contains("pending")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("hubspot") && row.contains(" 2 "), "two events, each stored once: {table}");
}

#[test]
fn webhook_secrets_must_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("literal.yaml"), "webhooks:\n  hubspot:\n    provider: hubspot\n    secrets: [\"abc123\"]\n").unwrap();
    let output = syncline(dir.path(), "literal.yaml", &["serve"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("webhooks.hubspot.secrets[0]") && stderr(&output).contains("${VAR}"), "{}", stderr(&output));
    std::fs::write(dir.path().join("nothing.yaml"), "state: sqlite://s.db\n").unwrap();
    let output = syncline(dir.path(), "nothing.yaml", &["serve"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("nothing to do"), "{}", stderr(&output));
}

#[test]
fn flow_mistakes_are_reported_at_load_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = |steps: &str| {
        format!(
            "webhooks:\n  hubspot:\n    provider: hubspot\n    secrets: [\"${{HOOK_SECRET}}\"]\n\
             connections:\n  hubspot:\n    token: ${{HS_TOKEN}}\n    base_url: ${{SANDBOX_URL}}\n  manychat:\n    token: ${{MC_TOKEN}}\n    base_url: ${{SANDBOX_URL}}\n\
             flows:\n  welcome:\n    trigger:\n      source: hubspot\n      events: [contact.creation]\n    steps:\n\
             \x20     - hubspot.get:\n          properties: [firstname, email]\n\
             \x20     - manychat.find_or_create_subscriber:\n          email: email\n{steps}"
        )
    };
    // the tokens are tried against a sandbox with the demo accounts
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sandbox = syncline_sandbox::Sandbox::from_seed(syncline_sandbox::Seed::members_demo()).unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(sandbox.serve(listener));
    let check = |name: &str, steps: &str, mc_token: &str| {
        std::fs::write(dir.path().join(name), config(steps)).unwrap();
        let output = bin()
            .current_dir(dir.path())
            .env("HOOK_SECRET", SECRET)
            .env("HS_TOKEN", "sandbox-token")
            .env("SANDBOX_URL", &url)
            .env("MC_TOKEN", mc_token)
            .args(["--config", name, "check"])
            .output()
            .unwrap();
        (code(&output), format!("{}{}", stdout(&output), stderr(&output)))
    };
    // line 22 is the third step
    let (status, message) =
        check("typo.yaml", "      - manychat.send_content:\n          messages: [\"Hola {{ contact.firstnme }}\"]\n", "1:k");
    assert_eq!(status, 2, "{message}");
    assert!(
        message.contains("typo.yaml:22") && message.contains("flows.welcome.steps[2]") && message.contains("contact.firstnme"),
        "{message}"
    );
    let (status, message) =
        check("syntax.yaml", "      - manychat.send_content:\n          messages: [\"Hola {{ contact.firstname }\"]\n", "1:k");
    assert_eq!(status, 2);
    assert!(message.contains("syntax.yaml:22") && message.contains("syntax error"), "{message}");
    let (status, message) = check("token.yaml", "      - manychat.add_tag: lead\n", "not-a-page-token");
    assert_eq!(status, 2);
    assert!(message.contains("connections.manychat.token") && message.contains("<page_id>:<key>"), "{message}");
    let (status, message) = check("ok.yaml", "      - manychat.add_tag: lead\n", syncline_sandbox::DEMO_MANYCHAT_TOKEN);
    assert_eq!(status, 0, "{message}");
    assert!(message.contains("✓ connections.hubspot") && message.contains("✓ connections.manychat"), "{message}");
    // a page key ManyChat refuses: ✗ with the fix, exit 2
    let (status, message) = check("refused.yaml", "      - manychat.add_tag: lead\n", "1000001:wrong-key");
    assert_eq!(status, 2, "{message}");
    assert!(message.contains("✗ connections.manychat") && message.contains("401") && message.contains("fix: set the token"), "{message}");
}

/// F6: a client that opens a connection and sends nothing, or only a request line, or a body a
/// byte at a time, is cut off within the configured limits (408 for a body) while signed
/// deliveries keep getting 200; connections past the cap per client are answered 503 at once.
#[test]
fn slow_and_greedy_clients_cannot_hold_the_server() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("{CONFIG}serve:\n  header_timeout: 2s\n  body_chunk_timeout: 2s\n  body_timeout: 3s\n  max_connections_per_client: 12\n");
    std::fs::write(dir.path().join("hooks.yaml"), config).unwrap();
    let (mut child, address) = crate::start_serve(
        bin()
            .current_dir(dir.path())
            .env("HOOK_SECRET", SECRET)
            .args(["--config", "hooks.yaml", "serve", "--bind", "127.0.0.1:0"])
            .stderr(Stdio::null()),
    );
    // how long until the server closes the connection, and what it said
    let until_closed = |mut stream: TcpStream| {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
    };
    let slow: Vec<std::thread::JoinHandle<(Duration, String)>> = [
        // idle: connects and says nothing
        Vec::new(),
        // only a request line
        b"POST /webhooks/hubspot HTTP/1.1\r\n".to_vec(),
        // headers and 1 byte of a 100-byte body
        b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[".to_vec(),
    ]
    .into_iter()
    .map(|sent| {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(&sent).unwrap();
            until_closed(stream)
        })
    })
    .collect();
    // a chunked body at one byte a second
    let trickle = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            let started = Instant::now();
            for _ in 0..30 {
                if stream.write_all(b"1\r\n[\r\n").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
                if started.elapsed() > Duration::from_secs(6) {
                    break;
                }
            }
            until_closed(stream)
        })
    };
    // meanwhile, real deliveries go through
    let events = r#"[{"eventId":1,"portalId":62515,"occurredAt":1764000000000,"subscriptionType":"contact.creation","objectId":501}]"#;
    let signed = [("X-HubSpot-Signature", sign::hubspot_v1(SECRET, events.as_bytes())), ("Content-Type", "application/json".into())];
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = post(&address, "/webhooks/hubspot", &signed, events.as_bytes());
        assert!(status.contains("200"), "{status} {body}");
        assert!(started.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(300));
    }
    let results: Vec<(Duration, String)> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    for (what, (took, _)) in ["an idle connection", "a request line alone"].iter().zip(&results) {
        assert!(*took < Duration::from_secs(5), "{what} was closed after {took:?}");
    }
    let (took, answer) = &results[2];
    assert!(*took < Duration::from_secs(5) && answer.starts_with("HTTP/1.1 408"), "1 byte of 100: {took:?} {answer}");
    let (took, answer) = trickle.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408") && took < Duration::from_secs(6), "a byte a second: {took:?} {answer}");

    // 12 connections held open by one client: the 13th is told 503 at once
    let held: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(&address).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (_, answer) = until_closed(TcpStream::connect(&address).unwrap());
    assert!(answer.starts_with("HTTP/1.1 503") && started.elapsed() < Duration::from_secs(1), "{answer}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = post(&address, "/webhooks/hubspot", &signed, events.as_bytes());
    assert!(status.contains("200"), "room again once they close: {status}");
    let _ = child.kill();
    let _ = child.wait();
}
