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
