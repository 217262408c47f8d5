//! How long to wait before a retry, and how many retries the whole process may spend.
//!
//! By hand: backon has exponential, constant and fibonacci but not decorrelated jitter nor a
//! retry budget, and its builders own the retry loop; here the `Policy` owns the loop and only
//! needs a delay per attempt.

use std::time::Duration;

use tokio::time::Instant;

/// A backoff strategy. `jitter` (0..=1) takes up to that share off each delay at random, so
/// clients that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// `base · factorⁿ`, capped.
    Exponential { base: Duration, factor: f64, cap: Duration, jitter: f64 },
    /// `base + step · n`, capped.
    Linear { base: Duration, step: Duration, cap: Duration, jitter: f64 },
    /// `base · fib(n)` (1, 1, 2, 3, 5…), capped.
    Fibonacci { base: Duration, cap: Duration, jitter: f64 },
    /// AWS's "decorrelated jitter": random between `base` and three times the previous delay, capped.
    DecorrelatedJitter { base: Duration, cap: Duration },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential { base: Duration::from_millis(500), factor: 2.0, cap: Duration::from_secs(30), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 = the first retry), given the previous delay.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let mut jittered = |d: Duration, cap: Duration, jitter: f64| {
            let d = d.min(cap);
            d.mul_f64(1.0 - jitter.clamp(0.0, 1.0) * rng.f64())
        };
        match *self {
            Backoff::Exponential { base, factor, cap, jitter } => {
                let raw = base.as_secs_f64() * factor.powi(retry.min(64) as i32);
                jittered(Duration::from_secs_f64(raw.min(cap.as_secs_f64())), cap, jitter)
            }
            Backoff::Linear { base, step, cap, jitter } => jittered(base.saturating_add(step.saturating_mul(retry)), cap, jitter),
            Backoff::Fibonacci { base, cap, jitter } => jittered(base.saturating_mul(fibonacci(retry)), cap, jitter),
            Backoff::DecorrelatedJitter { base, cap } => {
                let upper = previous.max(base).saturating_mul(3).min(cap);
                let span = upper.saturating_sub(base);
                (base + span.mul_f64(rng.f64())).min(cap)
            }
        }
    }
}

fn fibonacci(n: u32) -> u32 {
    let (mut a, mut b) = (1u32, 1u32);
    for _ in 0..n {
        (a, b) = (b, a.saturating_add(b));
    }
    a
}

/// A retry budget as a token bucket (Finagle's idea): every call earns `ratio` of a retry, time
/// earns `per_second`, every retry spends one, and savings are capped at `cap`. So however many
/// callers retry, a failing service sees at most `ratio · calls + per_second · seconds` retries.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    per_second: f64,
    cap: f64,
    balance: f64,
    since: Option<Instant>,
}

impl RetryBudget {
    /// `cap`: the most retries saved up in quiet times (e.g. 10 s worth of `per_second`). It
    /// starts with one second's worth, so the first calls of a process may retry too (the floor
    /// of `per_second` retries a second holds from the start, as in Finagle's budget).
    pub fn new(ratio: f64, per_second: f64, cap: f64) -> RetryBudget {
        RetryBudget { ratio, per_second, cap, balance: per_second.min(cap), since: None }
    }

    /// Counts a first attempt.
    pub fn record_call(&mut self, now: Instant) {
        self.accrue(now);
        self.balance = (self.balance + self.ratio).min(self.cap);
    }

    /// Spends one retry if the budget has one.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.accrue(now);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }

    fn accrue(&mut self, now: Instant) {
        if let Some(since) = self.since {
            let earned = self.per_second * now.saturating_duration_since(since).as_secs_f64();
            self.balance = (self.balance + earned).min(self.cap);
        }
        self.since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn strategies_without_jitter() {
        let mut rng = fastrand::Rng::with_seed(1);
        let exp = Backoff::Exponential { base: 100 * MS, factor: 2.0, cap: 1000 * MS, jitter: 0.0 };
        let got: Vec<_> = (0..6).map(|n| exp.delay(n, Duration::ZERO, &mut rng).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        let lin = Backoff::Linear { base: 100 * MS, step: 50 * MS, cap: 220 * MS, jitter: 0.0 };
        let got: Vec<_> = (0..4).map(|n| lin.delay(n, Duration::ZERO, &mut rng).as_millis()).collect();
        assert_eq!(got, [100, 150, 200, 220]);
        let fib = Backoff::Fibonacci { base: 10 * MS, cap: 1000 * MS, jitter: 0.0 };
        let got: Vec<_> = (0..7).map(|n| fib.delay(n, Duration::ZERO, &mut rng).as_millis()).collect();
        assert_eq!(got, [10, 10, 20, 30, 50, 80, 130]);
    }

    proptest! {
        /// RELIABILITY row 4: gaps lie in [base·2ⁿ·(1−j), cap] for every seed.
        #[test]
        fn exponential_gaps_stay_in_bounds(seed in any::<u64>(), retry in 0u32..20, jitter in 0.0f64..1.0) {
            let (base, cap) = (Duration::from_millis(200), Duration::from_secs(20));
            let backoff = Backoff::Exponential { base, factor: 2.0, cap, jitter };
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = backoff.delay(retry, Duration::ZERO, &mut rng);
            let nominal = base.as_secs_f64() * 2f64.powi(retry as i32);
            let low = nominal.min(cap.as_secs_f64()) * (1.0 - jitter);
            prop_assert!(d.as_secs_f64() >= low - 1e-9, "{d:?} below {low}");
            prop_assert!(d <= cap);
        }

        #[test]
        fn decorrelated_jitter_stays_between_base_and_cap(seed in any::<u64>(), steps in 1usize..50) {
            let (base, cap) = (Duration::from_millis(100), Duration::from_secs(10));
            let backoff = Backoff::DecorrelatedJitter { base, cap };
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut previous = Duration::ZERO;
            for n in 0..steps {
                let d = backoff.delay(n as u32, previous, &mut rng);
                prop_assert!(d >= base && d <= cap && d <= previous.max(base) * 3);
                previous = d;
            }
        }
    }

    #[test]
    fn retry_budget_caps_retries_at_ratio_plus_rate() {
        // RELIABILITY row 4: 10,000 calls over 100 s, every one wants to retry; 20 % + 10/s.
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(0.2, 10.0, 100.0);
        let mut retries = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i * 10);
            budget.record_call(now);
            while budget.try_retry(now) {
                retries += 1;
            }
        }
        // the floor's first second is there from the start
        let seconds = 100.0 + 1.0;
        assert!(retries as f64 <= 2_000.0 + 10.0 * seconds, "{retries} retries");
        assert!(retries >= 2_900, "the budget should allow its ratio and rate: {retries}");
    }
}
