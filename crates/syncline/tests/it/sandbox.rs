//! `syncline sandbox` as a user starts it: a real process on a real port, spoken to over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use crate::{bin, code, stderr};

/// Kills the sandbox when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request with a bearer token; returns the status line and the body.
pub fn http(address: &str, method: &str, path: &str, token: &str, body: &str) -> (String, String) {
    request(
        address,
        method,
        path,
        &[("Authorization", format!("Bearer {token}")), ("Content-Type", "application/json".into())],
        body.as_bytes(),
    )
}

/// One HTTP/1.1 request with `headers`; returns the status line and the body.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_sandbox_serves_hubspot_with_the_demo_portal() {
    let mut child = bin().args(["sandbox", "--port", "0"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let address =
        first.trim().strip_prefix("sandbox listening on http://").unwrap_or_else(|| panic!("unexpected banner {first:?}")).to_owned();

    let (status, body) = http(&address, "GET", "/crm/v3/properties/contacts", "sandbox-token", "");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"numero_asociado\""), "{body}");

    let (status, _) = http(&address, "GET", "/crm/v3/properties/contacts", "not-a-token", "");
    assert!(status.contains("401"), "{status}");

    let upsert = r#"{"inputs":[
        {"id":"100","idProperty":"numero_asociado","properties":{"firstname":"Ana","marital_status":"Casado"}},
        {"id":"101","idProperty":"numero_asociado","properties":{"firstname":"Luis","marital_status":"Casada"}}]}"#;
    let (status, body) = http(&address, "POST", "/crm/v3/objects/contacts/batch/upsert", "sandbox-token", upsert);
    assert!(status.contains("207"), "{status}");
    assert!(body.contains("Casada was not one of the allowed options"), "{body}");

    let (_, ledger) = http(&address, "GET", "/__sandbox/ledger", "", "");
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(ledger["requests"].as_array().unwrap().len(), 3);
    assert_eq!(ledger["effects"].as_array().unwrap().len(), 1, "{ledger}");
}

#[test]
fn a_bad_seed_file_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, "hubspot:\n  - token: t\n    tier: gold\n").unwrap();
    let output = bin().args(["sandbox", "--port", "0", "--seed"]).arg(&seed).output().unwrap();
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(err.contains("seed.yaml") && err.contains("gold"), "{err}");
    let output = bin().args(["sandbox", "--port", "0", "--faults", "{rate_limitd: 0.3}"]).output().unwrap();
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("rate_limitd"), "{}", stderr(&output));
}
