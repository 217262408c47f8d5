//! What the sandbox saw and did: every request, and every effect it applied. Tests assert on it
//! ("0 writes", "exactly 190 upsert calls, 0 × 429"); benchmarks read per-window counts from it.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    pub requests: Vec<RequestLine>,
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLine {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub at_ms: i64,
    /// Inputs in a batch body (0 for other requests).
    pub inputs: usize,
}

/// One applied change: `created`, `updated` or `archived`, on which object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Effect {
    pub kind: &'static str,
    pub object_type: String,
    pub id: String,
}

impl Ledger {
    /// Requests whose path ends with `suffix` (e.g. `/batch/upsert`).
    pub fn calls(&self, suffix: &str) -> Vec<&RequestLine> {
        self.requests.iter().filter(|r| r.path.ends_with(suffix)).collect()
    }

    pub fn with_status(&self, status: u16) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }

    /// Write effects (created/updated/archived) applied.
    pub fn writes(&self) -> usize {
        self.effects.len()
    }
}
