//! RELIABILITY rows 1–5, 7 and 23 against `Policy`, in virtual time (`start_paused`).
//!
//! `Server` below is a tiny simulated API with the behaviour each row needs (a rolling-window
//! budget, scripted 429s, 5xx, stalls); it records when every request arrived, so each test
//! counts what the server saw instead of trusting the client.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use syncline_core::ErrorClass;
use syncline_resilience::{Backoff, BreakerConfig, Budget, CallError, Feedback, Policy, PolicyConfig, Reply, parse_retry_after};
use tokio::time::{Instant, sleep};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn quiet_backoff() -> Backoff {
    Backoff::Exponential { base: 200 * MS, factor: 2.0, cap: 10 * SEC, jitter: 0.2 }
}

/// Runs `tasks` futures at once on the current (paused) runtime.
async fn join_all<F: std::future::Future<Output = ()> + 'static>(tasks: Vec<F>) {
    let set = tokio::task::LocalSet::new();
    for task in tasks {
        set.spawn_local(task);
    }
    set.await;
}

/// RELIABILITY row 1: 429 on 30 % of 5,000 calls, Retry-After 1–30 s, half of them as an
/// HTTP-date: no request arrives before the server said it may, and every call succeeds.
#[tokio::test(start_paused = true)]
async fn row1_429_storm_is_obeyed_and_nothing_is_lost() {
    struct Server {
        rng: fastrand::Rng,
        /// (when the client learned of a 429, when it allowed calls again)
        holds: Vec<(Instant, Instant)>,
        early: usize,
        served: usize,
        throttled: usize,
    }
    let t0 = Instant::now();
    let wall0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
    let wall = move |at: Instant| wall0 + chrono::Duration::from_std(at - t0).unwrap();
    let server = Rc::new(RefCell::new(Server { rng: fastrand::Rng::with_seed(1), holds: Vec::new(), early: 0, served: 0, throttled: 0 }));
    let policy = Rc::new(Policy::new(PolicyConfig {
        name: "storm".into(),
        backoff: quiet_backoff(),
        overall_timeout: Duration::from_secs(24 * 3600),
        breaker: None,
        retry_budget: None,
        max_rate_limited: 1_000,
        ..PolicyConfig::default()
    }));
    let succeeded = Rc::new(AtomicUsize::new(0));
    let tasks = (0..25)
        .map(|_| {
            let (server, policy, succeeded) = (server.clone(), policy.clone(), succeeded.clone());
            async move {
                for _ in 0..200 {
                    let result = policy
                        .call(|| {
                            let server = server.clone();
                            async move {
                                let sent = Instant::now();
                                sleep(5 * MS).await;
                                let now = Instant::now();
                                let mut s = server.borrow_mut();
                                // a call already on the wire when the 429 went out is not early;
                                // one sent after the client heard of it, before Retry-After, is
                                if s.holds.iter().any(|(heard, until)| sent > *heard && sent < *until) {
                                    s.early += 1;
                                }
                                if s.rng.f64() < 0.3 {
                                    s.throttled += 1;
                                    let wait = Duration::from_secs(s.rng.u64(1..=30));
                                    let (header, until) = if s.rng.bool() {
                                        (wait.as_secs().to_string(), now + wait)
                                    } else {
                                        // an HTTP-date has whole seconds: round up so the date is never early
                                        let at = wall(now + wait);
                                        let at = at + chrono::Duration::nanoseconds(1_000_000_000 - at.timestamp_subsec_nanos() as i64);
                                        (at.to_rfc2822().replace("+0000", "GMT"), t0 + (at - wall0).to_std().unwrap())
                                    };
                                    s.holds.push((now, until));
                                    let retry_after = parse_retry_after(&header, wall(Instant::now()));
                                    assert!(retry_after.is_some(), "unparsed Retry-After {header}");
                                    Reply::failed(ErrorClass::RateLimited, "429")
                                        .with_feedback(Feedback { retry_after, ..Feedback::default() })
                                } else {
                                    s.served += 1;
                                    Reply::ok(())
                                }
                            }
                        })
                        .await;
                    assert_eq!(result, Ok(()));
                    succeeded.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .collect();
    join_all(tasks).await;
    let s = server.borrow();
    assert_eq!(succeeded.load(Ordering::Relaxed), 5_000);
    assert_eq!(s.served, 5_000);
    assert!(s.throttled > 1_500, "the storm should be real: {} 429s", s.throttled);
    assert_eq!(s.early, 0, "requests sent before Retry-After");
}

/// A server with HubSpot's rolling ten-second budget; `foreign` calls per window come from
/// another app on the same portal.
struct Portal {
    max: usize,
    interval: Duration,
    arrivals: Vec<Instant>,
    ours: Vec<Instant>,
    throttled: usize,
    rng: fastrand::Rng,
}

impl Portal {
    fn new(max: usize) -> Portal {
        Portal { max, interval: 10 * SEC, arrivals: Vec::new(), ours: Vec::new(), throttled: 0, rng: fastrand::Rng::with_seed(7) }
    }

    /// Counts the request; returns the remaining calls, or None for a 429.
    fn arrive(&mut self, now: Instant, ours: bool) -> Option<usize> {
        let start = now.checked_sub(self.interval).unwrap_or(now);
        let in_window = self.arrivals.iter().rev().take_while(|t| **t > start).count();
        if in_window >= self.max {
            self.throttled += 1;
            return None;
        }
        self.arrivals.push(now);
        if ours {
            self.ours.push(now);
        }
        Some(self.max - in_window - 1)
    }

    /// Calls per full window [k·10 s, (k+1)·10 s) from `t0`, ours only.
    fn per_window(&self, t0: Instant, windows: usize) -> Vec<usize> {
        let mut counts = vec![0; windows];
        for at in &self.ours {
            let k = ((*at - t0).as_secs_f64() / self.interval.as_secs_f64()) as usize;
            if k < windows {
                counts[k] += 1;
            }
        }
        counts
    }
}

async fn portal_call(portal: &Rc<RefCell<Portal>>, policy: &Policy) -> Result<(), CallError> {
    policy
        .call(|| {
            let portal = portal.clone();
            async move {
                let (to_server, from_server) = {
                    let mut p = portal.borrow_mut();
                    (MS * p.rng.u32(2..40), MS * p.rng.u32(2..40))
                };
                sleep(to_server).await;
                let remaining = portal.borrow_mut().arrive(Instant::now(), true);
                sleep(from_server).await;
                match remaining {
                    Some(remaining) => Reply::ok(()).with_feedback(Feedback {
                        max: Some(portal.borrow().max as u32),
                        remaining: Some(remaining as u32),
                        ..Feedback::default()
                    }),
                    None => Reply::failed(ErrorClass::RateLimited, "You have reached your ten_secondly_rolling limit."),
                }
            }
        })
        .await
}

/// RELIABILITY row 2 (HubSpot half): a 60-minute backlog against 100 calls / 10 s with network
/// jitter: ≥ 97 % of the budget used in every full window and not one 429.
#[tokio::test(start_paused = true)]
async fn row2_budget_is_used_fully_without_a_429() {
    let t0 = Instant::now();
    let portal = Rc::new(RefCell::new(Portal::new(100)));
    let policy = Rc::new(Policy::new(PolicyConfig {
        name: "hubspot".into(),
        budget: Some(Budget::per(100, 10 * SEC).with_margin(100 * MS)),
        overall_timeout: Duration::from_secs(3600),
        ..PolicyConfig::default()
    }));
    let end = t0 + Duration::from_secs(3600);
    let tasks = (0..8)
        .map(|_| {
            let (portal, policy) = (portal.clone(), policy.clone());
            async move {
                while Instant::now() < end {
                    portal_call(&portal, &policy).await.unwrap();
                }
            }
        })
        .collect();
    join_all(tasks).await;
    let p = portal.borrow();
    assert_eq!(p.throttled, 0, "429s");
    let windows = p.per_window(t0, 359);
    let low = windows.iter().min().unwrap();
    assert!(*low >= 97, "a window used only {low} of 100 calls: {windows:?}");
    assert!(windows.iter().all(|n| *n <= 100));
}

/// Another app spends part of the same portal's budget: the headers teach the limiter, and after
/// the first window it shares the budget without 429s.
#[tokio::test(start_paused = true)]
async fn foreign_usage_is_learned_from_the_headers() {
    let t0 = Instant::now();
    let portal = Rc::new(RefCell::new(Portal::new(100)));
    let policy = Rc::new(Policy::new(PolicyConfig {
        budget: Some(Budget::per(100, 10 * SEC).with_margin(100 * MS)),
        overall_timeout: Duration::from_secs(3600),
        ..PolicyConfig::default()
    }));
    let end = t0 + Duration::from_secs(600);
    let foreign = {
        let portal = portal.clone();
        async move {
            // 3 calls a second: 30 of every window
            while Instant::now() < end {
                for _ in 0..3 {
                    portal.borrow_mut().arrive(Instant::now(), false);
                }
                sleep(SEC).await;
            }
        }
    };
    let set = tokio::task::LocalSet::new();
    set.spawn_local(foreign);
    for _ in 0..4 {
        let (portal, policy) = (portal.clone(), policy.clone());
        set.spawn_local(async move {
            while Instant::now() < end {
                portal_call(&portal, &policy).await.unwrap();
            }
        });
    }
    set.await;
    let p = portal.borrow();
    // a greedy client sharing a window with calls it cannot foresee meets an occasional 429; the
    // headers keep that under 1 % (HubSpot asks for error responses under 5 %)
    let ours = p.per_window(t0, 59);
    let total: usize = ours.iter().sum();
    assert!(p.throttled * 100 < total, "{} 429s for {total} calls: the limiter did not learn", p.throttled);
    assert!(ours[1..].iter().all(|n| *n >= 60), "our share should stay near 70 per window: {ours:?}");
}

/// RELIABILITY row 3: 100 % 503 for 60 s. The breaker opens once `min_calls` failed, the server
/// sees no call while it is open, each half-open phase lets exactly K probes through, and it
/// closes after recovery, with the transitions in order.
#[tokio::test(start_paused = true)]
async fn row3_breaker_opens_probes_and_recovers() {
    let t0 = Instant::now();
    let outage_ends = t0 + Duration::from_secs(60);
    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let k = 3;
    let policy = Policy::new(PolicyConfig {
        backoff: Backoff::Linear { base: 100 * MS, step: Duration::ZERO, cap: SEC, jitter: 0.0 },
        max_attempts: 2,
        retry_budget: None,
        overall_timeout: 5 * SEC,
        breaker: Some(BreakerConfig { window: 20, min_calls: 10, failure_rate: 0.5, open_for: 10 * SEC, half_open_permits: k }),
        ..PolicyConfig::default()
    });
    let mut results = Vec::new();
    while Instant::now() < t0 + Duration::from_secs(120) {
        let result = policy
            .call(|| {
                let arrivals = arrivals.clone();
                async move {
                    sleep(10 * MS).await;
                    let now = Instant::now();
                    arrivals.borrow_mut().push(now);
                    if now < outage_ends { Reply::failed(ErrorClass::Transient { retry_after: None }, "503") } else { Reply::ok(()) }
                }
            })
            .await;
        results.push(result.is_ok());
        sleep(100 * MS).await;
    }
    let transitions = policy.breaker_transitions();
    let names: Vec<_> = transitions.iter().map(|(_, n)| *n).collect();
    assert_eq!(names[0], "open");
    assert_eq!(names.last(), Some(&"closed"));
    for pair in names.windows(2) {
        assert!(matches!(pair, ["open", "half_open"] | ["half_open", "open"] | ["half_open", "closed"]), "{names:?}");
    }
    let arrivals = arrivals.borrow();
    // the first opening came after exactly min_calls failures
    assert_eq!(arrivals.iter().filter(|a| **a <= transitions[0].0).count(), 10);
    for (i, (at, name)) in transitions.iter().enumerate() {
        let next = transitions.get(i + 1).map_or(Instant::now(), |(t, _)| *t);
        let seen = arrivals.iter().filter(|a| **a > *at && **a <= next).count();
        match *name {
            "open" => assert_eq!(seen, 0, "calls reached the server while open"),
            // a probe arrives inside the phase; the phase ends at the last probe's outcome
            "half_open" => assert_eq!(seen, k, "probes in one half-open phase"),
            _ => {}
        }
    }
    let (closed_at, _) = transitions.last().unwrap();
    assert!(*closed_at >= outage_ends && *closed_at < outage_ends + 11 * SEC, "closed one cycle after recovery");
    assert!(results.last().copied().unwrap_or(false));
}

/// RELIABILITY row 4: 10,000 calls, half of the attempts failing, retry budget 20 % + 10/s:
/// attempts ≤ 12,000 + 10·T.
#[tokio::test(start_paused = true)]
async fn row4_retry_storm_stays_inside_the_budget() {
    let t0 = Instant::now();
    let rng = Rc::new(RefCell::new(fastrand::Rng::with_seed(4)));
    let policy = Rc::new(Policy::new(PolicyConfig {
        breaker: None,
        max_attempts: 10,
        retry_budget: Some((0.2, 10.0)),
        backoff: Backoff::DecorrelatedJitter { base: 50 * MS, cap: 2 * SEC },
        ..PolicyConfig::default()
    }));
    let tasks = (0..50)
        .map(|_| {
            let (rng, policy) = (rng.clone(), policy.clone());
            async move {
                for _ in 0..200 {
                    let _ = policy
                        .call(|| {
                            let fail = rng.borrow_mut().bool();
                            async move {
                                sleep(20 * MS).await;
                                if fail { Reply::failed(ErrorClass::Transient { retry_after: None }, "500") } else { Reply::ok(()) }
                            }
                        })
                        .await;
                }
            }
        })
        .collect();
    join_all(tasks).await;
    let seconds = (Instant::now() - t0).as_secs_f64().ceil() as u64;
    let attempts = policy.stats().attempts.load(Ordering::Relaxed);
    assert_eq!(policy.stats().calls.load(Ordering::Relaxed), 10_000);
    assert!(attempts <= 12_000 + 10 * seconds, "{attempts} attempts in {seconds} s");
    assert!(attempts > 10_000, "some retries should happen");
}

/// RELIABILITY row 5: 10 % of attempts stall for 120 s against a 10 s attempt timeout: no
/// attempt outlives its timeout, every call succeeds, nothing is left in flight.
#[tokio::test(start_paused = true)]
async fn row5_stalls_are_cut_at_the_attempt_timeout() {
    struct InFlight(Arc<AtomicUsize>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let longest = Rc::new(RefCell::new(Duration::ZERO));
    let rng = Rc::new(RefCell::new(fastrand::Rng::with_seed(5)));
    let policy =
        Rc::new(Policy::new(PolicyConfig { attempt_timeout: 10 * SEC, breaker: None, max_attempts: 10, ..PolicyConfig::default() }));
    let tasks = (0..10)
        .map(|_| {
            let (policy, rng, in_flight, longest) = (policy.clone(), rng.clone(), in_flight.clone(), longest.clone());
            async move {
                for _ in 0..100 {
                    let result = policy
                        .call(|| {
                            let stall = rng.borrow_mut().f64() < 0.1;
                            let (in_flight, longest) = (in_flight.clone(), longest.clone());
                            async move {
                                in_flight.fetch_add(1, Ordering::Relaxed);
                                let _guard = InFlight(in_flight);
                                let started = Instant::now();
                                sleep(if stall { 120 * SEC } else { 20 * MS }).await;
                                let took = started.elapsed();
                                let mut l = longest.borrow_mut();
                                *l = (*l).max(took);
                                Reply::ok(())
                            }
                        })
                        .await;
                    assert_eq!(result, Ok(()));
                }
            }
        })
        .collect();
    join_all(tasks).await;
    assert_eq!(in_flight.load(Ordering::Relaxed), 0, "attempts left running");
    assert!(*longest.borrow() <= 10 * SEC, "an attempt that finished took {:?}", longest.borrow());
    assert!(policy.stats().retries.load(Ordering::Relaxed) >= 50, "stalls should have been retried");
}

/// RELIABILITY row 7: a non-retryable failure is tried once and returned with its class.
#[tokio::test(start_paused = true)]
async fn row7_data_errors_are_not_retried() {
    let policy = Policy::new(PolicyConfig::default());
    for class in [ErrorClass::Data, ErrorClass::Conflict, ErrorClass::Config] {
        let result: Result<(), _> = policy.call(|| async { Reply::failed(class.clone(), "400 VALIDATION_ERROR") }).await;
        assert_eq!(result.unwrap_err().class(), class);
    }
    assert_eq!(policy.stats().attempts.load(Ordering::Relaxed), 3);
    assert_eq!(policy.stats().retries.load(Ordering::Relaxed), 0);
}

/// RELIABILITY row 23: a stalled provider fills its own bulkhead and is rejected at the cap; a
/// second provider behind its own policy keeps its pace.
#[tokio::test(start_paused = true)]
async fn row23_bulkhead_isolates_a_stalled_provider() {
    let hubspot = Rc::new(Policy::new(PolicyConfig {
        name: "hubspot".into(),
        max_in_flight: Some(4),
        bulkhead_wait: Duration::ZERO,
        attempt_timeout: 60 * SEC,
        ..PolicyConfig::default()
    }));
    let stripe = Policy::new(PolicyConfig { name: "stripe".into(), max_in_flight: Some(4), ..PolicyConfig::default() });
    let set = tokio::task::LocalSet::new();
    let rejected = Rc::new(AtomicUsize::new(0));
    set.run_until(async {
        for _ in 0..10 {
            let (hubspot, rejected) = (hubspot.clone(), rejected.clone());
            tokio::task::spawn_local(async move {
                let result = hubspot
                    .call(|| async {
                        sleep(30 * SEC).await;
                        Reply::ok(())
                    })
                    .await;
                if matches!(result, Err(CallError::BulkheadFull { .. })) {
                    rejected.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        tokio::task::yield_now().await;
        let started = Instant::now();
        for _ in 0..100 {
            stripe
                .call(|| async {
                    sleep(10 * MS).await;
                    Reply::ok(())
                })
                .await
                .unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_secs(1), "stripe slowed by hubspot's stall");
    })
    .await;
    set.await;
    assert_eq!(rejected.load(Ordering::Relaxed), 6, "hubspot beyond its 4 slots");
}

/// What `/readyz` says of a policy: degraded for five minutes after a 429, unhealthy while its
/// breaker is open, degraded while it probes, healthy again once it closed and the 429s aged.
#[tokio::test(start_paused = true)]
async fn health_follows_429s_and_the_breaker() {
    use syncline_resilience::Level;
    let policy = Policy::new(PolicyConfig {
        name: "quickbooks".into(),
        backoff: Backoff::Linear { base: 100 * MS, step: Duration::ZERO, cap: SEC, jitter: 0.0 },
        max_attempts: 2,
        retry_budget: None,
        overall_timeout: 5 * SEC,
        breaker: Some(BreakerConfig { window: 4, min_calls: 4, failure_rate: 0.5, open_for: 10 * SEC, half_open_permits: 1 }),
        ..PolicyConfig::default()
    });
    assert_eq!(policy.health().level, Level::Healthy);
    let limited = std::cell::Cell::new(true);
    let first = policy
        .call(|| {
            let throttled = limited.replace(false);
            async move { if throttled { Reply::failed(ErrorClass::RateLimited, "429") } else { Reply::ok(()) } }
        })
        .await;
    assert!(first.is_ok(), "the 429 was waited out and the call repeated");
    let health = policy.health();
    assert_eq!((health.name.as_str(), health.level), ("quickbooks", Level::Degraded));
    assert!(health.reasons[0].contains("1 × 429"), "{:?}", health.reasons);

    for _ in 0..4 {
        let _ = policy.call(|| async { Reply::<()>::failed(ErrorClass::Transient { retry_after: None }, "503") }).await;
    }
    let health = policy.health();
    assert_eq!(health.level, Level::Unhealthy, "{:?}", health.reasons);
    assert!(health.reasons.iter().any(|r| r.contains("breaker open")));

    sleep(6 * 60 * SEC).await;
    let probe = policy.call(|| async { Reply::ok(()) }).await;
    assert!(probe.is_ok());
    assert_eq!(policy.health().level, Level::Healthy, "{:?}", policy.health().reasons);
}

/// Two policies, each with its own budget, that also spend one shared budget (QuickBooks' single
/// and batch calls within its 10 a second): together they never pass the shared one.
#[tokio::test(start_paused = true)]
async fn policies_that_also_spend_a_shared_budget_stay_within_it_together() {
    use std::sync::Mutex;
    use syncline_resilience::RateLimiter;
    let shared = Arc::new(Mutex::new(RateLimiter::new(Budget::per(5, SEC))));
    let policy = |max: u32| {
        let config = PolicyConfig { budget: Some(Budget::per(max, 60 * SEC)), overall_timeout: 600 * SEC, ..PolicyConfig::default() };
        Rc::new(Policy::new(config).also_spending(shared.clone()))
    };
    // 10 and 2 a second on their own: 12 a second together, were the shared 5 not spent too
    let (singles, batches) = (policy(600), policy(120));
    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let calls = |policy: Rc<Policy>, n: usize| {
        let arrivals = arrivals.clone();
        async move {
            for _ in 0..n {
                let arrivals = arrivals.clone();
                policy
                    .call(|| {
                        arrivals.borrow_mut().push(Instant::now());
                        async { Reply::ok(()) }
                    })
                    .await
                    .unwrap();
            }
        }
    };
    let tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> =
        (0..4).map(|_| Box::pin(calls(singles.clone(), 25)) as _).chain([Box::pin(calls(batches.clone(), 20)) as _]).collect();
    join_all(tasks).await;
    let arrivals = arrivals.borrow();
    assert_eq!(arrivals.len(), 120);
    let most = arrivals.iter().map(|start| arrivals.iter().filter(|a| **a >= *start && **a < *start + SEC).count()).max().unwrap();
    assert!(most <= 5, "{most} calls in one second of a shared 5 a second");
}
