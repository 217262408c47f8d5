//! One async entry point for every outbound call: circuit breaker → bulkhead → rate-limit
//! permit → the attempt (with its own timeout) → learn from the reply → retry or give up.
//! Retry decisions look only at the failure's `ErrorClass`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncline_core::ErrorClass;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::shared::Heard;
use crate::{Backoff, BreakerConfig, BreakerState, Budget, CircuitBreaker, RateLimiter, RetryBudget, SharedBudget};

/// How a [`Policy`] behaves. `Default` suits an HTTP API without a known budget.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Names the policy in logs and errors (`hubspot`, `hubspot search`…).
    pub name: String,
    /// The rate budget, when the API has one.
    pub budget: Option<Budget>,
    pub backoff: Backoff,
    /// Attempts for a call that keeps failing transiently (5xx, resets, timeouts), the first included.
    pub max_attempts: u32,
    /// 429s tolerated within one call before it gives up; the limiter paces these retries.
    pub max_rate_limited: u32,
    pub attempt_timeout: Duration,
    /// The whole call, retries and waits included.
    pub overall_timeout: Duration,
    /// How long a service that cannot be reached at all (`ErrorClass::Unavailable`) is retried
    /// before the call fails with that class.
    pub unavailable_for: Duration,
    pub breaker: Option<BreakerConfig>,
    /// Bulkhead: calls in flight at once.
    pub max_in_flight: Option<usize>,
    /// How long a call waits for a bulkhead slot; zero rejects at the cap at once.
    pub bulkhead_wait: Duration,
    /// Retry budget: this share of calls plus this many per second (up to 10 s of it saved).
    pub retry_budget: Option<(f64, f64)>,
    /// Seeds the jitter, so a run can be replayed exactly.
    pub seed: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            name: "api".into(),
            budget: None,
            backoff: Backoff::default(),
            max_attempts: 6,
            max_rate_limited: 30,
            attempt_timeout: Duration::from_secs(30),
            overall_timeout: Duration::from_secs(300),
            unavailable_for: Duration::from_secs(5),
            breaker: Some(BreakerConfig::default()),
            max_in_flight: None,
            bulkhead_wait: Duration::from_secs(60),
            retry_budget: Some((0.2, 10.0)),
            seed: 0x5eed,
        }
    }
}

/// What one attempt returned, and what the server said about the budget while returning it.
#[derive(Debug)]
pub struct Reply<T> {
    pub outcome: Result<T, Failure>,
    pub feedback: Feedback,
}

impl<T> Reply<T> {
    pub fn ok(value: T) -> Reply<T> {
        Reply { outcome: Ok(value), feedback: Feedback::default() }
    }

    pub fn failed(class: ErrorClass, message: impl Into<String>) -> Reply<T> {
        Reply { outcome: Err(Failure { class, message: message.into() }), feedback: Feedback::default() }
    }

    pub fn with_feedback(self, feedback: Feedback) -> Reply<T> {
        Reply { feedback, ..self }
    }
}

/// A failed attempt: its class decides what happens next.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

/// Budget facts from a response's headers or body (all optional: not every API says them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Feedback {
    /// Bucket size (`X-HubSpot-RateLimit-Max`).
    pub max: Option<u32>,
    /// Calls left in the current window (`X-HubSpot-RateLimit-Remaining`).
    pub remaining: Option<u32>,
    /// Calls left today (`X-HubSpot-RateLimit-Daily-Remaining`).
    pub daily_remaining: Option<u64>,
    /// `Retry-After`, already turned into a duration (see [`parse_retry_after`]).
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The last attempt's failure, when it is not worth retrying or retries ran out.
    #[error("{}", .0.message)]
    Failed(Failure),
    #[error("{name}: circuit breaker open (the service kept failing); calls resume after {wait:.1?}")]
    CircuitOpen { name: String, wait: Duration },
    #[error("{name}: {max} calls already in flight")]
    BulkheadFull { name: String, max: usize },
    #[error("{name}: gave up after {elapsed:?}{}", .last.as_ref().map(|f| format!(" (last failure: {})", f.message)).unwrap_or_default())]
    Deadline { name: String, elapsed: Duration, last: Option<Failure> },
    #[error("{name}: the daily request limit is spent")]
    DailyLimit { name: String },
}

impl CallError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::Failed(failure) => failure.class.clone(),
            // the service kept failing: as good as unreachable until the breaker lets calls through
            CallError::CircuitOpen { .. } => ErrorClass::Unavailable,
            // out of time while the service could not be reached: still unreachable, not a
            // transient answer (its callers fail the run instead of the records)
            CallError::Deadline { last: Some(Failure { class: ErrorClass::Unavailable, .. }), .. } => ErrorClass::Unavailable,
            CallError::BulkheadFull { .. } | CallError::Deadline { .. } => ErrorClass::Transient { retry_after: None },
            CallError::DailyLimit { .. } => ErrorClass::RateLimited,
        }
    }
}

/// Counters for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct PolicyStats {
    pub calls: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub not_permitted: AtomicU64,
}

#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    /// Always present: without a budget it still holds every call back after a 429.
    limiter: Arc<Mutex<RateLimiter>>,
    /// A second budget every call also spends, shared with other policies whose calls the
    /// server counts together (QuickBooks' 10 requests a second, over its single and batch
    /// calls, each with its own per-minute budget).
    also: Option<Arc<Mutex<RateLimiter>>>,
    /// The budget kept in a store with other processes, when it is shared (`limiter` then
    /// stands in only while the store cannot be reached).
    shared: Option<Shared>,
    breaker: Option<Mutex<CircuitBreaker>>,
    bulkhead: Option<Semaphore>,
    retry_budget: Option<Mutex<RetryBudget>>,
    rng: Mutex<fastrand::Rng>,
    daily_spent: AtomicBool,
    stats: PolicyStats,
    recent_limits: Mutex<crate::health::RecentLimits>,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        let limiter = config.budget.map_or_else(RateLimiter::unlimited, RateLimiter::new);
        Policy::with_limiter(config, Arc::new(Mutex::new(limiter)))
    }

    /// A policy spending a budget shared with other policies (two pipelines on one portal).
    pub fn with_limiter(config: PolicyConfig, limiter: Arc<Mutex<RateLimiter>>) -> Policy {
        Policy {
            breaker: config.breaker.map(|c| Mutex::new(CircuitBreaker::new(c))),
            bulkhead: config.max_in_flight.map(Semaphore::new),
            retry_budget: config
                .retry_budget
                .map(|(ratio, per_second)| Mutex::new(RetryBudget::new(ratio, per_second, (per_second * 10.0).max(1.0)))),
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            daily_spent: AtomicBool::new(false),
            stats: PolicyStats::default(),
            recent_limits: Mutex::default(),
            limiter,
            also: None,
            shared: None,
            config,
        }
    }

    /// The same policy, each call also spending `shared` (see `also`).
    pub fn also_spending(self, shared: Arc<Mutex<RateLimiter>>) -> Policy {
        Policy { also: Some(shared), ..self }
    }

    /// The same policy, its budget spent together with every process sharing `budget` (a policy
    /// without a budget has nothing to share).
    pub fn sharing(self, budget: SharedBudget) -> Policy {
        let shared = self.config.budget.map(|_| Shared {
            budget,
            turn: tokio::sync::Mutex::new(()),
            heard: Mutex::default(),
            failing: AtomicBool::new(false),
        });
        Policy { shared, ..self }
    }

    pub fn limiter(&self) -> Arc<Mutex<RateLimiter>> {
        self.limiter.clone()
    }

    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(|b| lock(b).state())
    }

    /// How the policy's service is doing: unhealthy while its breaker is open, degraded while
    /// the breaker probes or after 429s in the last five minutes.
    pub fn health(&self) -> crate::Health {
        use crate::health::{Level, RECENT};
        let mut health = crate::Health::healthy(&self.config.name);
        match self.breaker_state() {
            Some(BreakerState::Open { .. }) => {
                health.note(Level::Unhealthy, "circuit breaker open: calls are refused until it probes again")
            }
            Some(BreakerState::HalfOpen { .. }) => health.note(Level::Degraded, "circuit breaker half-open: probing the service"),
            _ => {}
        }
        let limited = lock(&self.recent_limits).within(Instant::now());
        if limited > 0 {
            health.note(Level::Degraded, format!("{limited} × 429 in the last {} minutes", RECENT.as_secs() / 60));
        }
        health.usage = self.config.budget.map(|b| crate::health::Usage {
            attempts: self.stats.attempts.load(Ordering::Relaxed),
            max: b.max,
            interval: b.interval,
        });
        health
    }

    /// The breaker's state changes so far, oldest first.
    pub fn breaker_transitions(&self) -> Vec<(Instant, &'static str)> {
        self.breaker.as_ref().map(|b| lock(b).transitions().to_vec()).unwrap_or_default()
    }

    /// Runs `attempt` until it succeeds, fails in a way retrying cannot fix, or the policy's
    /// limits run out. `attempt` is called once per try and must be safe to repeat (idempotent).
    pub async fn call<T, F, Fut>(&self, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Reply<T>>,
    {
        let name = &self.config.name;
        let start = Instant::now();
        let deadline = start + self.config.overall_timeout;
        let _slot = self.enter_bulkhead().await?;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(budget) = &self.retry_budget {
            lock(budget).record_call(start);
        }
        let mut tries = Tries::default();
        let mut last_failure = None;
        loop {
            if self.daily_spent.load(Ordering::Relaxed) {
                return Err(CallError::DailyLimit { name: name.clone() });
            }
            let gave_up = |last: Option<Failure>| CallError::Deadline { name: name.clone(), elapsed: start.elapsed(), last };
            self.wait_for_breaker(deadline).await?;
            // the wait for the budget is a span of its own (in traces: beside the call it holds)
            let waiting = tracing::debug_span!("rate_limit_wait", policy = %name);
            if !tracing::Instrument::instrument(self.wait_for_permit(deadline), waiting).await {
                self.breaker_ignored();
                return Err(gave_up(last_failure));
            }
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let per_attempt = self.config.attempt_timeout.min(deadline.saturating_duration_since(Instant::now()));
            let reply = match timeout(per_attempt, attempt()).await {
                Ok(reply) => reply,
                Err(_) => Reply::failed(ErrorClass::Transient { retry_after: None }, format!("{name}: no answer within {per_attempt:?}")),
            };
            let now = Instant::now();
            self.learn(now, &reply);
            let failure = match reply.outcome {
                Ok(value) => {
                    self.breaker_result(now, false);
                    return Ok(value);
                }
                Err(failure) => failure,
            };
            let delay = match self.retry_delay(&failure, now, &mut tries) {
                Some(delay) => delay,
                None => return Err(CallError::Failed(tries.last(failure, now))),
            };
            if now + delay >= deadline {
                return Err(gave_up(Some(failure)));
            }
            tracing::debug!(policy = %name, class = failure.class.name(), ?delay, reason = %failure.message, "retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            last_failure = Some(failure);
            sleep(delay).await;
        }
    }

    /// How long to wait before trying again after `failure`, or `None` when it is final: not
    /// worth retrying, or its class's limit is spent (a final `Unavailable` says how long the
    /// service was unreachable). Feeds the breaker.
    fn retry_delay(&self, failure: &Failure, now: Instant, tries: &mut Tries) -> Option<Duration> {
        match &failure.class {
            ErrorClass::RateLimited => {
                self.breaker_ignored();
                tries.rate_limited += 1;
                // the limiter now holds every call until the server's window reopens
                (tries.rate_limited < self.config.max_rate_limited).then_some(Duration::ZERO)
            }
            ErrorClass::Transient { retry_after } => {
                self.breaker_result(now, true);
                tries.transient += 1;
                if tries.transient >= self.config.max_attempts || !self.retry_allowed(now) {
                    return None;
                }
                Some(self.backoff(tries).max(retry_after.unwrap_or_default()))
            }
            ErrorClass::Unavailable => {
                self.breaker_result(now, true);
                let since = *tries.unreachable_since.get_or_insert(now);
                tries.transient += 1;
                if now - since >= self.config.unavailable_for {
                    return None;
                }
                // the last try comes at the ceiling, not past it
                Some(self.backoff(tries).min((since + self.config.unavailable_for).saturating_duration_since(now)))
            }
            // the service answered; the request itself is wrong: retrying cannot help
            _ => {
                self.breaker_result(now, false);
                None
            }
        }
    }

    /// The next backoff delay (jitter from the previous one, for the decorrelated kind).
    fn backoff(&self, tries: &mut Tries) -> Duration {
        let delay = self.config.backoff.delay(tries.transient - 1, tries.previous_delay, &mut lock(&self.rng));
        tries.previous_delay = delay;
        delay
    }

    async fn enter_bulkhead(&self) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, CallError> {
        let Some(bulkhead) = &self.bulkhead else { return Ok(None) };
        let full = || CallError::BulkheadFull { name: self.config.name.clone(), max: self.config.max_in_flight.unwrap_or(0) };
        if self.config.bulkhead_wait.is_zero() {
            return bulkhead.try_acquire().map(Some).map_err(|_| full());
        }
        match timeout(self.config.bulkhead_wait, bulkhead.acquire()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(full()),
        }
    }

    /// Waits while the breaker is open if it reopens before the deadline; fails fast otherwise.
    async fn wait_for_breaker(&self, deadline: Instant) -> Result<(), CallError> {
        loop {
            let now = Instant::now();
            let Some(verdict) = self.on_breaker(|b| b.try_acquire(now)) else { return Ok(()) };
            match verdict {
                Ok(()) => return Ok(()),
                Err(until) => {
                    self.stats.not_permitted.fetch_add(1, Ordering::Relaxed);
                    // half-open with every probe out: look again shortly
                    let until = until.unwrap_or(now + Duration::from_millis(50));
                    if until >= deadline {
                        return Err(CallError::CircuitOpen { name: self.config.name.clone(), wait: until - now });
                    }
                    sleep_until(until).await;
                }
            }
        }
    }

    /// Waits for a rate-limit permit; false when none comes before the deadline.
    async fn wait_for_permit(&self, deadline: Instant) -> bool {
        let start = Instant::now();
        let mut held_since: Option<Instant> = None;
        let reserved = match &self.shared {
            Some(shared) => self.reserve_shared(shared).await,
            None => None,
        };
        if let Some(at) = reserved {
            if at >= deadline {
                return false;
            }
            if at > start {
                held_since = Some(start);
                sleep_until(at).await;
            }
        }
        loop {
            let now = Instant::now();
            let verdict = match (reserved, &self.also) {
                (Some(_), None) => Ok(()),
                (Some(_), Some(also)) => lock(also).try_acquire(now),
                (None, None) => lock(&self.limiter).try_acquire(now),
                // both permits or neither (every policy locks its own budget first)
                (None, Some(also)) => {
                    let mut own = lock(&self.limiter);
                    let mut also = lock(also);
                    let at = own.ready_at(now).max(also.ready_at(now));
                    if at > now { Err(at) } else { own.try_acquire(now).and_then(|()| also.try_acquire(now)) }
                }
            };
            match verdict {
                Ok(()) => {
                    if let Some(since) = held_since {
                        syncline_core::metric::rate_limit_wait(&self.config.name, (now - since).as_secs_f64());
                    }
                    return true;
                }
                Err(at) if at >= deadline => return false,
                Err(at) => {
                    held_since.get_or_insert(now);
                    sleep_until(at).await;
                }
            }
        }
    }

    /// The next permit of the shared budget, or None (the local budget stands in) while the
    /// store fails. Callers in this process take turns, so a process holds one of the store's
    /// connections for its budget at a time.
    async fn reserve_shared(&self, shared: &Shared) -> Option<Instant> {
        let budget = self.config.budget?;
        let _turn = shared.turn.lock().await;
        let heard = std::mem::take(&mut *lock(&shared.heard));
        match shared.budget.reserve(budget, &heard).await {
            Ok(at) => {
                if shared.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(policy = %self.config.name, "the shared rate budget answers again");
                }
                Some(at)
            }
            Err(why) => {
                if !shared.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(policy = %self.config.name, budget = shared.budget.key(), %why,
                        "the shared rate budget cannot be reached: this process keeps its own until it can");
                }
                None
            }
        }
    }

    fn learn<T>(&self, now: Instant, reply: &Reply<T>) {
        let feedback = &reply.feedback;
        let throttled = matches!(&reply.outcome, Err(f) if f.class == ErrorClass::RateLimited);
        if throttled {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            lock(&self.recent_limits).push(now);
            syncline_core::metric::rate_limited(&self.config.name);
        }
        if feedback.daily_remaining == Some(0) {
            self.daily_spent.store(true, Ordering::Relaxed);
        }
        let heard = [
            feedback.max.map(Heard::Max),
            feedback.remaining.map(Heard::Remaining),
            throttled.then_some(Heard::Rejected(feedback.retry_after)),
        ];
        let mut limiter = lock(&self.limiter);
        for what in heard.into_iter().flatten() {
            what.apply(&mut limiter, now);
            if let Some(shared) = &self.shared {
                lock(&shared.heard).push((now, what));
            }
        }
    }

    fn retry_allowed(&self, now: Instant) -> bool {
        self.retry_budget.as_ref().is_none_or(|b| lock(b).try_retry(now))
    }

    fn breaker_result(&self, now: Instant, failed: bool) {
        self.on_breaker(|b| b.on_result(now, failed));
    }

    fn breaker_ignored(&self) {
        self.on_breaker(CircuitBreaker::on_ignored);
    }

    /// Runs `f` on the breaker (if there is one) and exports its state when `f` changed it.
    fn on_breaker<R>(&self, f: impl FnOnce(&mut CircuitBreaker) -> R) -> Option<R> {
        let mut breaker = lock(self.breaker.as_ref()?);
        let before = breaker.state().name();
        let result = f(&mut breaker);
        let after = breaker.state();
        if before != after.name() {
            syncline_core::metric::breaker_state(&self.config.name, after.gauge());
        }
        Some(result)
    }
}

/// A policy's part in a budget shared through a store.
#[derive(Debug)]
struct Shared {
    budget: SharedBudget,
    turn: tokio::sync::Mutex<()>,
    /// What replies said since the last permit, applied to the shared state with the next.
    heard: Mutex<Vec<(Instant, Heard)>>,
    /// The store failed the last permit (so that is said once, not per call).
    failing: AtomicBool,
}

/// What one call has tried so far.
#[derive(Default)]
struct Tries {
    transient: u32,
    rate_limited: u32,
    unreachable_since: Option<Instant>,
    previous_delay: Duration,
}

impl Tries {
    /// The final failure, saying how long the service was unreachable when it was.
    fn last(&self, failure: Failure, now: Instant) -> Failure {
        match (&failure.class, self.unreachable_since) {
            (ErrorClass::Unavailable, Some(since)) => {
                Failure { message: format!("{} (unreachable for {:.1?})", failure.message, now - since), ..failure }
            }
            _ => failure,
        }
    }
}

/// A poisoned lock only means another task panicked mid-update of plain counters; the state is
/// still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`; a date
/// in the past means "now". Anything else is ignored (None) rather than trusted.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_forms() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 10:00:12 GMT", now), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 09:59:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
