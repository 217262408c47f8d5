//! How every connector talks to an API without overrunning it: a rolling-window rate limiter
//! corrected by the server's own headers, backoff with a retry budget, a circuit breaker, a
//! bulkhead and timeouts, composed by one async [`Policy::call`]; and a TTL [`ResponseCache`]
//! for slow-changing reads.
//!
//! The limiter, backoff, budget and breaker are plain state machines that take `now` as an
//! argument, so they are tested without a clock; `Policy` drives them on tokio time, so its tests
//! run in virtual time under `tokio::time::pause()`.

mod backoff;
mod breaker;
mod cache;
mod health;
mod limiter;
mod policy;
mod shared;

pub use backoff::{Backoff, RetryBudget};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use cache::ResponseCache;
pub use health::{Health, Level, Usage};
pub use limiter::{Budget, LimiterState, RateLimiter};
pub use policy::{CallError, Failure, Feedback, Policy, PolicyConfig, PolicyStats, Reply, parse_retry_after};
pub use shared::{BudgetStore, SharedBudget, StoreFuture, Update};
