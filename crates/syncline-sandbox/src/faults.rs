//! Scripted faults, deterministic by seed: a share of 429s (with or without `Retry-After`),
//! 5xx answers, writes whose answer is lost, connections cut before or after the write is
//! applied, answers cut off halfway, stalls, added latency, and "down for N seconds". Set at
//! start (`syncline sandbox --faults`) or at run time (`PUT /__sandbox/faults`).

use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Seeds the draws, so a run with the same requests meets the same faults.
    pub seed: u64,
    /// Share of requests answered 429 before anything is applied.
    pub rate_limited: f64,
    /// Those 429s carry `Retry-After: <n>` (seconds); without it they carry none, like HubSpot.
    pub retry_after_secs: Option<u64>,
    /// Share of requests answered 500, 502, 503 or 504 before anything is applied.
    pub server_errors: f64,
    /// Share of requests applied, then answered 502: the write happened, the client cannot know.
    pub lost_after_write: f64,
    /// Latency added to every request, plus up to `jitter_ms` more at random.
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Answer 503 to everything for this long, from when these faults were set.
    pub down_for_secs: u64,
    /// Share of requests whose connection is cut before anything is applied (no usable answer).
    pub resets_before: f64,
    /// Share of requests applied, then their connection cut (no usable answer).
    pub resets_after: f64,
    /// Share of requests applied and answered with a body cut off halfway.
    pub truncated: f64,
    /// Share of requests held for `stall_ms` before they are handled (beyond a client's timeout).
    pub stalls: f64,
    pub stall_ms: u64,
    /// Writes become visible to search this long after they are applied (HubSpot: a few seconds).
    pub search_delay_ms: u64,
    /// Objects (by id) search counts in its `total` but leaves out of its results, as an index
    /// out of step does; list and get still return them.
    pub search_skips: Vec<u64>,
    /// Every token is refused (401), as after an app's token was rotated or its app deleted.
    pub tokens_revoked: bool,
}

/// How an answer's connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Nothing of the body arrives.
    Reset,
    /// Half of the body arrives.
    Truncated,
}

impl Cut {
    pub fn name(self) -> &'static str {
        match self {
            Cut::Reset => "reset",
            Cut::Truncated => "truncated",
        }
    }
}

/// What happens to one request.
#[derive(Debug, Default)]
pub(crate) struct Draw {
    pub delay: Duration,
    /// Answer this status instead of handling the request.
    pub before: Option<u16>,
    /// Handle the request, then answer this status instead.
    pub after: Option<u16>,
    /// `Retry-After` seconds for an injected 429.
    pub retry_after: Option<u64>,
    /// Cut the connection: before handling (`applied` false) or after.
    pub cut: Option<(Cut, bool)>,
    /// Refuse the token, whatever it is.
    pub revoked: bool,
}

/// The emulated services, each with its own faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    HubSpot,
    ManyChat,
    Stripe,
    QuickBooks,
}

impl Service {
    pub const ALL: [Service; 4] = [Service::HubSpot, Service::ManyChat, Service::Stripe, Service::QuickBooks];

    /// The name `PUT /__sandbox/faults/{service}` takes.
    pub fn name(self) -> &'static str {
        match self {
            Service::HubSpot => "hubspot",
            Service::ManyChat => "manychat",
            Service::Stripe => "stripe",
            Service::QuickBooks => "quickbooks",
        }
    }
}

/// Each service's faults and draws.
#[derive(Debug, Default)]
pub(crate) struct ServiceFaults {
    hubspot: FaultState,
    manychat: FaultState,
    stripe: FaultState,
    quickbooks: FaultState,
}

impl ServiceFaults {
    pub fn of(&mut self, service: Service) -> &mut FaultState {
        match service {
            Service::HubSpot => &mut self.hubspot,
            Service::ManyChat => &mut self.manychat,
            Service::Stripe => &mut self.stripe,
            Service::QuickBooks => &mut self.quickbooks,
        }
    }

    pub fn faults(&self, service: Service) -> &Faults {
        match service {
            Service::HubSpot => &self.hubspot.faults,
            Service::ManyChat => &self.manychat.faults,
            Service::Stripe => &self.stripe.faults,
            Service::QuickBooks => &self.quickbooks.faults,
        }
    }
}

#[derive(Debug)]
pub(crate) struct FaultState {
    pub faults: Faults,
    rng: fastrand::Rng,
    down_until: Option<Instant>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState::new(Faults::default())
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> FaultState {
        let down_until = (faults.down_for_secs > 0).then(|| Instant::now() + Duration::from_secs(faults.down_for_secs));
        FaultState { rng: fastrand::Rng::with_seed(faults.seed), down_until, faults }
    }

    pub fn draw(&mut self, now: Instant) -> Draw {
        let f = &self.faults;
        let jitter = if f.jitter_ms > 0 { self.rng.u64(0..=f.jitter_ms) } else { 0 };
        let mut draw = Draw { delay: Duration::from_millis(f.latency_ms + jitter), revoked: f.tokens_revoked, ..Draw::default() };
        if self.rng.f64() < f.stalls {
            draw.delay += Duration::from_millis(f.stall_ms);
        }
        if self.down_until.is_some_and(|until| now < until) {
            draw.before = Some(503);
        } else if self.rng.f64() < f.rate_limited {
            draw.before = Some(429);
            draw.retry_after = f.retry_after_secs;
        } else if self.rng.f64() < f.server_errors {
            draw.before = Some([500, 502, 503, 504][self.rng.usize(0..4)]);
        } else if self.rng.f64() < f.lost_after_write {
            draw.after = Some(502);
        } else if self.rng.f64() < f.resets_before {
            draw.cut = Some((Cut::Reset, false));
        } else if self.rng.f64() < f.resets_after {
            draw.cut = Some((Cut::Reset, true));
        } else if self.rng.f64() < f.truncated {
            draw.cut = Some((Cut::Truncated, true));
        }
        draw
    }
}

/// An answer whose connection breaks: after the status line, with none or half of the body.
pub(crate) fn cut_off(status: StatusCode, body: &Value, cut: Cut) -> Response {
    let bytes = serde_json::to_vec(body).expect("json serializes");
    let sent = match cut {
        Cut::Reset => Vec::new(),
        Cut::Truncated => bytes[..bytes.len() / 2].to_vec(),
    };
    let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection cut by the sandbox");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(sent), Err(broken)];
    let mut response = Response::new(axum::body::Body::from_stream(futures_util::stream::iter(chunks)));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_shares_and_the_seed() {
        let faults = Faults { seed: 9, rate_limited: 0.3, server_errors: 0.1, ..Faults::default() };
        let draws = |faults: Faults| {
            let mut state = FaultState::new(faults);
            (0..10_000).map(|_| state.draw(Instant::now()).before).collect::<Vec<_>>()
        };
        let first = draws(faults.clone());
        assert_eq!(first, draws(faults), "same seed, same faults");
        let throttled = first.iter().filter(|d| **d == Some(429)).count();
        let errors = first.iter().filter(|d| matches!(d, Some(500..=504))).count();
        assert!((2_700..3_300).contains(&throttled), "{throttled}");
        // 10 % of the 70 % not throttled
        assert!((550..850).contains(&errors), "{errors}");
    }

    #[test]
    fn cuts_and_stalls_are_drawn() {
        let faults =
            Faults { seed: 3, resets_before: 0.1, resets_after: 0.1, truncated: 0.1, stalls: 0.5, stall_ms: 1000, ..Faults::default() };
        let mut state = FaultState::new(faults);
        let draws: Vec<Draw> = (0..1_000).map(|_| state.draw(Instant::now())).collect();
        let cut = |c: (Cut, bool)| draws.iter().filter(|d| d.cut == Some(c)).count();
        for share in [cut((Cut::Reset, false)), cut((Cut::Reset, true)), cut((Cut::Truncated, true))] {
            assert!((40..=130).contains(&share), "{share}");
        }
        let stalled = draws.iter().filter(|d| d.delay >= Duration::from_millis(1000)).count();
        assert!((400..600).contains(&stalled), "{stalled}");
    }

    #[test]
    fn down_means_every_request_is_503() {
        let mut state = FaultState::new(Faults { down_for_secs: 60, ..Faults::default() });
        assert!((0..100).all(|_| state.draw(Instant::now()).before == Some(503)));
        assert_eq!(state.draw(Instant::now() + Duration::from_secs(61)).before, None);
    }
}
