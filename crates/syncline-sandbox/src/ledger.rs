//! What the sandbox saw and did: every request, and every effect it applied. Tests assert on it
//! ("0 writes", "exactly 190 upsert calls, 0 × 429"); benchmarks read per-window counts from it.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    pub requests: Vec<RequestLine>,
    pub effects: Vec<Effect>,
    /// Messages ManyChat pages delivered.
    pub messages: Vec<crate::manychat::Delivered>,
    /// Every try of every HubSpot webhook delivery.
    pub webhook_attempts: Vec<crate::hubspot::WebhookAttempt>,
    pub webhook_counts: crate::hubspot::WebhookCounts,
    /// The same for Stripe's webhook endpoints.
    pub stripe_webhook_counts: crate::hubspot::WebhookCounts,
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
    /// `reset` or `truncated` when a fault cut the answer's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<&'static str>,
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

    /// Budget use in consecutive windows of `width_ms`, from the first request on: the calls a
    /// portal answered (401s spend no budget) and how many of them were 429s.
    pub fn windows(&self, width_ms: i64) -> Vec<Window> {
        let charged: Vec<&RequestLine> = self.requests.iter().filter(|r| r.status != 401).collect();
        let Some(first) = charged.iter().map(|r| r.at_ms).min() else { return Vec::new() };
        let mut windows: Vec<Window> = Vec::new();
        for request in charged {
            let at = ((request.at_ms - first) / width_ms) as usize;
            if windows.len() <= at {
                windows.extend((windows.len()..=at).map(|i| Window { start_ms: first + i as i64 * width_ms, calls: 0, rate_limited: 0 }));
            }
            windows[at].calls += 1;
            windows[at].rate_limited += usize::from(request.status == 429);
        }
        windows
    }

    /// The most calls that arrived within any rolling `width_ms` (what HubSpot's limit bounds).
    pub fn max_rolling(&self, width_ms: i64) -> usize {
        let mut times: Vec<i64> = self.requests.iter().filter(|r| r.status != 401).map(|r| r.at_ms).collect();
        times.sort_unstable();
        let mut start = 0;
        let mut most = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= width_ms {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }
}

/// One window of [`Ledger::windows`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub start_ms: i64,
    pub calls: usize,
    pub rate_limited: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: &[i64]) -> Ledger {
        let line = |at_ms| RequestLine { method: "POST".into(), path: "/x".into(), status: 200, at_ms, inputs: 0, cut: None };
        Ledger { requests: ms.iter().map(|&m| line(m)).collect(), ..Ledger::default() }
    }

    #[test]
    fn windows_and_rolling_counts() {
        let ledger = at(&[1_000, 1_500, 10_999, 11_000, 30_000]);
        let calls: Vec<usize> = ledger.windows(10_000).iter().map(|w| w.calls).collect();
        assert_eq!(calls, [3, 1, 1]);
        assert_eq!(at(&[0, 25_000]).windows(10_000).iter().map(|w| w.calls).collect::<Vec<_>>(), [1, 0, 1]);
        assert_eq!(ledger.max_rolling(10_000), 3);
        assert_eq!(at(&[0, 9_999, 10_000]).max_rolling(10_000), 2);
        assert!(Ledger::default().windows(10_000).is_empty());
    }
}
