//! OpenTelemetry traces: `syncline run` with the standard `OTEL_EXPORTER_OTLP_*` variables sends
//! its spans to an OTLP/HTTP receiver (this test's, speaking JSON): one trace per run, its page
//! and batch spans under the run, the HubSpot API calls under their batch, and no secret in any
//! attribute. Without the variables nothing is sent.

use super::hubspot::{hub, members_to_hubspot};
use super::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use syncline_sandbox::Tier;

/// An OTLP/HTTP receiver for traces (`POST /v1/traces`, JSON), served from its own thread.
pub struct Receiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

pub fn receiver() -> Receiver {
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let kept = bodies.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        kept.lock().unwrap().push(serde_json::from_slice(&body).expect("OTLP JSON"));
                        axum::Json(serde_json::json!({}))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    Receiver { url: format!("http://{}", rx.recv().unwrap()), bodies }
}

/// One exported span: its name, ids and attributes (as strings).
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub attributes: BTreeMap<String, String>,
}

impl Receiver {
    pub fn spans(&self) -> Vec<Span> {
        let bodies = self.bodies.lock().unwrap();
        let spans = bodies
            .iter()
            .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default());
        spans
            .map(|s| Span {
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                trace: s["traceId"].as_str().unwrap_or_default().to_owned(),
                id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                attributes: s["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let value = &a["value"];
                        let text = value.get("stringValue").and_then(|v| v.as_str()).map(str::to_owned).unwrap_or_else(|| {
                            value
                                .as_object()
                                .and_then(|o| o.values().next())
                                .map(|v| v.to_string().trim_matches('"').to_owned())
                                .unwrap_or_default()
                        });
                        (a["key"].as_str().unwrap_or_default().to_owned(), text)
                    })
                    .collect(),
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_one_trace_with_its_batches_and_api_calls_nested() {
    let hub = hub(Tier::Professional);
    let dir = members_to_hubspot("professional", "500", "0.05");
    let d = dir.path();
    let otlp = receiver();
    let run = |args: &[&str], otel: bool| {
        let mut command = bin();
        command.current_dir(d).env("HUBSPOT_BASE_URL", &hub.url).arg("--config").arg(d.join("hub.yaml")).args(args);
        if otel {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url).env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
        }
        command.output().unwrap()
    };
    let out = run(&["--log-format", "json", "-v", "run", "members"], true);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let spans = otlp.spans();
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(runs.len(), 1, "one run span: {spans:#?}");
    let root = runs[0];
    assert_eq!(root.attributes.get("pipeline").map(String::as_str), Some("members"));
    assert!(root.parent.is_empty(), "the run is the trace's root");
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let under = |span: &Span, ancestor: &Span| {
        let mut at = span;
        while let Some(parent) = by_id.get(at.parent.as_str()) {
            if parent.id == ancestor.id {
                return true;
            }
            at = parent;
        }
        false
    };
    // 475 valid members written in the runner's batches, each directly under the run
    let batches: Vec<&Span> = spans.iter().filter(|s| s.name == "batch").collect();
    assert!(!batches.is_empty(), "{spans:#?}");
    assert!(batches.iter().all(|b| b.parent == root.id && b.trace == root.trace));
    let written: u64 = batches.iter().map(|b| b.attributes["records"].parse::<u64>().unwrap()).sum();
    assert_eq!(written, 475);
    // pages read under the run
    let pages: Vec<&Span> = spans.iter().filter(|s| s.name == "page").collect();
    assert!(!pages.is_empty() && pages.iter().all(|p| under(p, root)));
    // every upsert call (HubSpot takes 100 a call: five) under its batch, with what a person
    // filters on
    let upserts: Vec<&Span> =
        spans.iter().filter(|s| s.name == "api_call" && s.attributes.get("operation").is_some_and(|o| o.contains("upsert"))).collect();
    assert_eq!(upserts.len(), 5, "{upserts:#?}");
    for call in &upserts {
        assert!(batches.iter().any(|b| b.id == call.parent), "an upsert under its batch: {call:?}");
        assert_eq!(call.attributes.get("service").map(String::as_str), Some("HubSpot"));
        assert!(call.attributes.contains_key("attempt"));
    }
    // each call's wait for the rate budget is a span of its own, beside the call under its batch
    let waits: Vec<&Span> = spans.iter().filter(|s| s.name == "rate_limit_wait" && batches.iter().any(|b| b.id == s.parent)).collect();
    assert!(waits.len() >= upserts.len(), "{waits:#?}");
    assert!(waits.iter().all(|w| w.attributes.get("policy").is_some_and(|p| p.starts_with("hubspot"))), "{waits:#?}");
    // a JSON log line logged in the run names its trace
    let finished = stderr(&out).lines().find(|l| l.contains("run finished")).map(str::to_owned).expect("the run's last line");
    let line: serde_json::Value = serde_json::from_str(&finished).unwrap();
    assert_eq!(line["trace_id"].as_str(), Some(root.trace.as_str()), "{finished}");
    // no secret in any attribute
    let everything = otlp.bodies.lock().unwrap().iter().map(ToString::to_string).collect::<String>();
    assert!(!everything.contains("sandbox-token"), "the HubSpot token is never exported");

    // without the variables, nothing is sent
    let before = otlp.bodies.lock().unwrap().len();
    let out = run(&["run", "members"], false);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(otlp.bodies.lock().unwrap().len(), before);
}
