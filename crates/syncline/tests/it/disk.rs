//! F5: `serve` with its inbox on a disk that fills up answers 503 (never acknowledging what it
//! could not store) and says so in `/readyz`; once there is room again it takes deliveries at
//! once, without a restart. The disk is a 2 MB tmpfs, grown by remounting (root only).

use std::process::Stdio;
use std::time::{Duration, Instant};

use syncline_server::signature::sign;

use crate::bin;

const SECRET: &str = "disk-full-secret";

/// A tmpfs mounted for the test and unmounted when it ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status();
        match ok {
            Ok(status) if status.success() => Some(Tmpfs(at.to_owned())),
            _ => None,
        }
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn deliver(address: &str, first: u64) -> (String, Duration) {
    let events: Vec<serde_json::Value> = (first..first + 100)
        .map(|i| {
            serde_json::json!({"eventId": i, "portalId": 62515, "occurredAt": 1_764_000_000_000u64 + i, "subscriptionType": "contact.creation",
                               "objectId": i, "padding": "x".repeat(1500)})
        })
        .collect();
    let body = serde_json::to_vec(&events).unwrap();
    let headers = [("X-HubSpot-Signature", sign::hubspot_v1(SECRET, &body))];
    let started = Instant::now();
    let (status, _) = crate::sandbox::request(address, "POST", "/webhooks/hubspot", &headers, &body);
    (status, started.elapsed())
}

fn ready(address: &str) -> (String, String) {
    crate::sandbox::request(address, "GET", "/readyz", &[], b"")
}

#[test]
fn a_full_disk_is_503_and_serve_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "2m") else {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI runs as root and mounts a tmpfs for this test");
        eprintln!("skipping: cannot mount a tmpfs (not root)");
        return;
    };
    let config = format!(
        "state: sqlite://{}/state.db\nwebhooks:\n  hubspot: {{provider: hubspot, secrets: [\"${{HOOK_SECRET}}\"]}}\n",
        disk.0.display()
    );
    std::fs::write(dir.path().join("hooks.yaml"), config).unwrap();
    let (mut child, address) = crate::start_serve(
        bin()
            .current_dir(dir.path())
            .env("HOOK_SECRET", SECRET)
            .args(["--config", "hooks.yaml", "serve", "--bind", "127.0.0.1:0"])
            .stderr(Stdio::null()),
    );
    // fill it: deliveries are taken until the disk is full, then refused with 503
    let mut acknowledged = 0;
    let mut refused = None;
    for n in 0..200 {
        let (status, _) = deliver(&address, 1 + n * 100);
        if status.contains(" 200") {
            acknowledged += 100;
        } else {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(refused.contains(" 503"), "{refused}");
    // more, at once, while it is full: each refused, none acknowledged
    let at_once: Vec<_> = (0..8u64)
        .map(|n| {
            let address = address.clone();
            std::thread::spawn(move || deliver(&address, 50_000 + n * 100).0)
        })
        .collect();
    for attempt in at_once {
        let status = attempt.join().unwrap();
        assert!(status.contains(" 503"), "{status}");
    }
    let (status, body) = ready(&address);
    assert!(status.contains(" 503") && body.contains("store"), "readyz says the store cannot commit: {status} {body}");

    // room again: every delivery is taken at once, no restart
    disk.resize("64m");
    for n in 0..10 {
        let (status, took) = deliver(&address, 100_000 + n * 100);
        assert!(status.contains(" 200"), "delivery {n} after the disk grew: {status}");
        assert!(took < Duration::from_secs(5), "delivery {n} waited {took:?}");
    }
    let (status, body) = ready(&address);
    assert!(status.contains(" 200"), "ready again: {status} {body}");
    let _ = child.kill();
    let _ = child.wait();
    // every acknowledged event is there
    let store = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = syncline_store::Store::connect(&format!("sqlite://{}/state.db", disk.0.display())).await.unwrap();
        store.inbox_depth().await.unwrap().iter().map(|d| d.events).sum::<i64>()
    });
    assert_eq!(store, acknowledged + 1000, "every acknowledged event is stored, nothing else");
}
