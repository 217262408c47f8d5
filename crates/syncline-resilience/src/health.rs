//! How a dependency is doing, as `/readyz` reports it: healthy, degraded (working, with reasons
//! someone should know — a circuit breaker probing, recent 429s, a token close to expiry) or
//! unhealthy (not working now: a breaker open, a token refused).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Unhealthy => "unhealthy",
        }
    }
}

/// One dependency's level, and why it is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub name: String,
    pub level: Level,
    pub reasons: Vec<String>,
    /// What a rate-limited policy has spent: its attempts so far and its budget (for the
    /// console's chart of use over the last minutes).
    pub usage: Option<Usage>,
}

/// A policy's calls so far against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Attempts since the process started (each spends a permit).
    pub attempts: u64,
    /// The budget: `max` permits per `interval`.
    pub max: u32,
    pub interval: std::time::Duration,
}

impl Health {
    pub fn healthy(name: impl Into<String>) -> Health {
        Health { name: name.into(), level: Level::Healthy, reasons: Vec::new(), usage: None }
    }

    /// Adds a reason; the level is the worst of its reasons.
    pub fn note(&mut self, level: Level, reason: impl Into<String>) {
        self.level = self.level.max(level);
        self.reasons.push(reason.into());
    }
}

/// When a policy was last answered 429, the newest few.
#[derive(Debug, Default)]
pub(crate) struct RecentLimits(VecDeque<Instant>);

/// How far back 429s count, and how many are kept.
pub(crate) const RECENT: Duration = Duration::from_secs(300);
const KEPT: usize = 1_000;

impl RecentLimits {
    pub fn push(&mut self, at: Instant) {
        if self.0.len() == KEPT {
            self.0.pop_front();
        }
        self.0.push_back(at);
    }

    /// 429s within [`RECENT`] of `now`.
    pub fn within(&self, now: Instant) -> usize {
        self.0.iter().filter(|at| now.saturating_duration_since(**at) <= RECENT).count()
    }
}
