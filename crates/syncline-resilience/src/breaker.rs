//! A circuit breaker with Resilience4j's semantics: a count-based sliding window of the last
//! `window` outcomes opens the circuit once at least `min_calls` were recorded and the failure
//! share reaches `failure_rate`; after `open_for` it half-opens and lets exactly
//! `half_open_permits` probes through, whose outcomes close or reopen it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub window: usize,
    pub min_calls: usize,
    pub failure_rate: f64,
    pub open_for: Duration,
    pub half_open_permits: usize,
}

impl Default for BreakerConfig {
    /// Resilience4j's defaults, scaled for API clients: half of the last 20 calls failing (at
    /// least 10 recorded) opens for 30 s, then 3 probes.
    fn default() -> Self {
        BreakerConfig { window: 20, min_calls: 10, failure_rate: 0.5, open_for: Duration::from_secs(30), half_open_permits: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { issued: usize, succeeded: usize, failed: usize },
}

impl BreakerState {
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }

    /// The state as the `syncline_breaker_state` gauge shows it: 0 closed, 1 half-open, 2 open.
    pub fn gauge(&self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen { .. } => 1.0,
            BreakerState::Open { .. } => 2.0,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, BreakerState::Open { .. })
    }
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// The last `window` outcomes while closed: `true` = failure.
    outcomes: VecDeque<bool>,
    /// Every state change, in order, for tests and the admin API.
    transitions: Vec<(Instant, &'static str)>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        assert!(config.half_open_permits > 0 && config.window > 0);
        CircuitBreaker { config, state: BreakerState::Closed, outcomes: VecDeque::new(), transitions: Vec::new() }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn transitions(&self) -> &[(Instant, &'static str)] {
        &self.transitions
    }

    /// Asks to make a call. `Err(Some(t))`: open until `t`; `Err(None)`: half-open and every
    /// probe is out, wait for their outcomes.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Option<Instant>> {
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return Err(Some(until));
            }
            self.enter(now, BreakerState::HalfOpen { issued: 0, succeeded: 0, failed: 0 });
        }
        match &mut self.state {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen { issued, .. } if *issued < self.config.half_open_permits => {
                *issued += 1;
                Ok(())
            }
            BreakerState::HalfOpen { .. } => Err(None),
            BreakerState::Open { .. } => unreachable!("handled above"),
        }
    }

    /// Records the outcome of a permitted call.
    pub fn on_result(&mut self, now: Instant, failed: bool) {
        match &mut self.state {
            BreakerState::Closed => {
                self.outcomes.push_back(failed);
                if self.outcomes.len() > self.config.window {
                    self.outcomes.pop_front();
                }
                let failures = self.outcomes.iter().filter(|f| **f).count();
                if self.outcomes.len() >= self.config.min_calls && failures as f64 >= self.config.failure_rate * self.outcomes.len() as f64
                {
                    self.open(now);
                }
            }
            BreakerState::HalfOpen { succeeded, failed: failures, .. } => {
                if failed {
                    *failures += 1;
                } else {
                    *succeeded += 1;
                }
                let (done, bad) = (*succeeded + *failures, *failures);
                if done >= self.config.half_open_permits {
                    if bad as f64 >= self.config.failure_rate * done as f64 {
                        self.open(now);
                    } else {
                        self.outcomes.clear();
                        self.enter(now, BreakerState::Closed);
                    }
                }
            }
            // a call permitted before the circuit opened came back late: it changes nothing
            BreakerState::Open { .. } => {}
        }
    }

    /// A permitted call ended without an outcome that says anything about the service (e.g. a
    /// 429 or a bad request): give its half-open probe slot back.
    pub fn on_ignored(&mut self) {
        if let BreakerState::HalfOpen { issued, .. } = &mut self.state {
            *issued = issued.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Instant) {
        self.outcomes.clear();
        self.enter(now, BreakerState::Open { until: now + self.config.open_for });
    }

    fn enter(&mut self, now: Instant, state: BreakerState) {
        tracing::warn!(from = self.state.name(), to = state.name(), "circuit breaker");
        self.state = state;
        self.transitions.push((now, state.name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> BreakerConfig {
        BreakerConfig { window: 10, min_calls: 5, failure_rate: 0.5, open_for: Duration::from_secs(10), half_open_permits: 2 }
    }

    #[test]
    fn opens_waits_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..4 {
            b.try_acquire(t0).unwrap();
            b.on_result(t0, true);
        }
        assert_eq!(b.state(), BreakerState::Closed, "fewer than min_calls recorded");
        b.try_acquire(t0).unwrap();
        b.on_result(t0, true);
        assert_eq!(b.try_acquire(t0), Err(Some(t0 + Duration::from_secs(10))));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.try_acquire(later), Ok(()));
        assert_eq!(b.try_acquire(later), Ok(()));
        assert_eq!(b.try_acquire(later), Err(None), "only two probes");
        b.on_result(later, false);
        b.on_result(later, false);
        assert_eq!(b.state(), BreakerState::Closed);
        let names: Vec<_> = b.transitions().iter().map(|(_, n)| *n).collect();
        assert_eq!(names, ["open", "half_open", "closed"]);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig { half_open_permits: 1, ..config() });
        for _ in 0..5 {
            b.try_acquire(t0).unwrap();
            b.on_result(t0, true);
        }
        let later = t0 + Duration::from_secs(10);
        b.try_acquire(later).unwrap();
        b.on_result(later, true);
        assert_eq!(b.state(), BreakerState::Open { until: later + Duration::from_secs(10) });
    }

    proptest! {
        /// Whatever the outcomes, a half-open breaker never has more than K probes out, and an
        /// open one never permits a call before its time.
        #[test]
        fn probes_bounded_and_open_means_no_calls(steps in proptest::collection::vec((0u64..3000, any::<bool>(), any::<bool>()), 1..400)) {
            let t0 = Instant::now();
            let mut b = CircuitBreaker::new(config());
            let mut now = t0;
            let mut outstanding = 0usize;
            for (gap_ms, fail, finish) in steps {
                now += Duration::from_millis(gap_ms);
                let before = b.state();
                match b.try_acquire(now) {
                    Ok(()) => {
                        if let BreakerState::Open { until } = before { prop_assert!(now >= until); }
                        if let BreakerState::HalfOpen { issued, .. } = b.state() { prop_assert!(issued <= 2); }
                        outstanding += 1;
                    }
                    Err(_) => prop_assert!(!matches!(b.state(), BreakerState::Closed)),
                }
                if finish && outstanding > 0 {
                    outstanding -= 1;
                    b.on_result(now, fail);
                }
            }
        }
    }
}
