//! A rate budget that several processes spend together: the limiter's state lives in a store
//! they share (PostgreSQL), and each permit is one short transaction on it that loads the state,
//! reserves the next free permit ([`RateLimiter::reserve`]) and saves it back. The caller then
//! waits for its permit's time on its own. Because the state is one limiter, the rolling window,
//! the pacing and what the server's headers say others spend are the same for every process,
//! and a process that restarts continues the window its predecessor left.
//!
//! One transaction per permit was chosen by measuring it (`syncline bench --shared-budget`): the
//! row's lock is held about 0.75 ms a permit (one budget gives at most ~1,300 permits/s across
//! all instances), and at ManyChat's 25 sends/s the wait a call adds to the budget's own is
//! 2.2 ms on average (p99 5.4 ms) against 1.1 ms (p99 2.0 ms) with a process's own budget —
//! beside the 40 ms between two sends, or the 53 ms between two HubSpot calls. Leasing slices of several permits would cut the round trips but would let an
//! instance that dies take its unspent slice with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use crate::limiter::{Budget, LimiterState, RateLimiter};

/// What a [`BudgetStore`] returns.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A budget's saved state, its key, and the store's clock in microseconds since the Unix epoch.
pub type Update<'a> = dyn FnMut(Option<&str>, i64) -> String + Send + 'a;

/// Where shared budgets live. `update` gets the budget's saved state (None the first time) and
/// the store's clock, and returns the state to save; the store runs it with the budget locked
/// against every other process (and may run it again if it must retry the transaction).
pub trait BudgetStore: Send + Sync + std::fmt::Debug {
    fn update<'a>(&'a self, key: &'a str, update: &'a mut Update<'_>) -> StoreFuture<'a>;
}

/// A budget spent by every process that names the same key in the same store.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    store: Arc<dyn BudgetStore>,
    key: String,
}

/// What a reply said about the budget, to apply to the shared state with the next permit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Heard {
    Max(u32),
    Remaining(u32),
    Rejected(Option<std::time::Duration>),
}

impl Heard {
    pub(crate) fn apply(self, limiter: &mut RateLimiter, at: Instant) {
        match self {
            Heard::Max(max) => limiter.observe_max(max),
            Heard::Remaining(remaining) => limiter.observe_remaining(at, remaining),
            Heard::Rejected(retry_after) => limiter.on_rejected(at, retry_after),
        }
    }
}

impl SharedBudget {
    pub fn new(store: Arc<dyn BudgetStore>, key: impl Into<String>) -> SharedBudget {
        SharedBudget { store, key: key.into() }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reserves the next permit of `budget`: when it is due, on this process's clock.
    pub async fn next_permit(&self, budget: Budget) -> Result<Instant, String> {
        self.reserve(budget, &[]).await
    }

    /// Applies what replies said since the last permit, then reserves the next permit of
    /// `budget`: when it is due, on this process's clock.
    pub(crate) async fn reserve(&self, budget: Budget, heard: &[(Instant, Heard)]) -> Result<Instant, String> {
        let mut due = None;
        let mut update = |saved: Option<&str>, wall_us: i64| {
            let now = Instant::now();
            // a state this version cannot read starts the window afresh rather than failing calls
            let state: LimiterState = saved.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
            let mut limiter = RateLimiter::load(budget, &state, now, wall_us);
            for (at, what) in heard {
                what.apply(&mut limiter, *at);
            }
            due = Some(limiter.reserve(now));
            serde_json::to_string(&limiter.save(now, wall_us)).expect("a limiter's state is plain numbers")
        };
        self.store.update(&self.key, &mut update).await?;
        due.ok_or_else(|| format!("budget {}: the store saved no permit", self.key))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::{Policy, PolicyConfig, Reply};

    /// A store in memory on tokio's clock (paused in these tests); the real one is PostgreSQL,
    /// proven by the binary's three-process tests.
    #[derive(Debug, Default)]
    struct Memory(Mutex<HashMap<String, String>>, Mutex<Option<Instant>>);

    impl BudgetStore for Memory {
        fn update<'a>(&'a self, key: &'a str, update: &'a mut Update<'_>) -> StoreFuture<'a> {
            Box::pin(async move {
                let start = *self.1.lock().unwrap().get_or_insert_with(Instant::now);
                let wall_us = 1_764_000_000_000_000 + (Instant::now() - start).as_micros() as i64;
                let mut budgets = self.0.lock().unwrap();
                let state = update(budgets.get(key).map(String::as_str), wall_us);
                budgets.insert(key.to_owned(), state);
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_policies_sharing_a_budget_spend_it_once() {
        let store: Arc<dyn BudgetStore> = Arc::new(Memory::default());
        let config = PolicyConfig { budget: Some(Budget::per(10, Duration::from_secs(1))), ..PolicyConfig::default() };
        let policies: Vec<Policy> =
            (0..2).map(|_| Policy::new(config.clone()).sharing(SharedBudget::new(store.clone(), "manychat sendContent:page"))).collect();
        let start = Instant::now();
        let calls = policies.iter().flat_map(|policy| (0..15).map(move |_| policy.call(|| async { Reply::ok(Instant::now()) })));
        let mut times: Vec<Instant> = futures_util::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        times.sort();
        // 30 calls at 10 a second between them: the last one 2.9 s in, not 1.4 s as two
        // budgets of their own would allow
        let in_first_second = times.iter().filter(|t| **t < start + Duration::from_secs(1)).count();
        assert_eq!(in_first_second, 10);
        assert!(times[29] - start >= Duration::from_millis(2_800), "{:?}", times[29] - start);
    }
}
