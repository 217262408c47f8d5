//! A portal's rate budgets (API-CONTRACTS §1.8, §1.3): the tier's rolling ten seconds and day,
//! and search's own second; and the `X-HubSpot-RateLimit-*` headers that report them.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::window::RollingWindow;

/// HubSpot account tiers and their limits for privately distributed apps (API-CONTRACTS §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free / Starter: 100 per 10 s, 250,000 a day.
    Free,
    /// Professional: 190 per 10 s, 625,000 a day.
    Professional,
    /// Enterprise: 190 per 10 s, 1,000,000 a day.
    Enterprise,
    /// API limit increase pack: 250 per 10 s, +1,000,000 a day.
    LimitIncrease,
    /// No limits at all and no rate-limit headers: not a HubSpot tier, a portal for benchmarks
    /// that measure syncline rather than the budget.
    Unlimited,
}

impl Tier {
    pub fn burst(self) -> u32 {
        match self {
            Tier::Free => 100,
            Tier::Professional | Tier::Enterprise => 190,
            Tier::LimitIncrease => 250,
            Tier::Unlimited => u32::MAX,
        }
    }

    pub fn daily(self) -> u64 {
        match self {
            Tier::Free => 250_000,
            Tier::Professional => 625_000,
            Tier::Enterprise => 1_000_000,
            Tier::LimitIncrease => 2_000_000,
            Tier::Unlimited => u64::MAX,
        }
    }
}

/// What a portal's app has spent.
#[derive(Debug)]
pub(crate) struct Budget {
    tier: Tier,
    ten_seconds: RollingWindow,
    /// The search API's own rolling second.
    search: RollingWindow,
    pub daily_used: u64,
}

impl Budget {
    pub fn new(tier: Tier) -> Budget {
        Budget {
            tier,
            ten_seconds: RollingWindow::new(tier.burst().min(250) as usize, Duration::from_secs(10)),
            search: RollingWindow::new(5, Duration::from_secs(1)),
            daily_used: 0,
        }
    }

    /// Spends one call of the rolling ten-second budget, or says which limit is spent.
    pub fn spend(&mut self, now: Instant) -> Result<(), &'static str> {
        if self.tier == Tier::Unlimited {
            self.daily_used += 1;
            return Ok(());
        }
        if self.daily_used >= self.tier.daily() {
            return Err("DAILY");
        }
        if !self.ten_seconds.try_spend(now) {
            return Err("TEN_SECONDLY_ROLLING");
        }
        self.daily_used += 1;
        Ok(())
    }

    /// Spends one of the search API's 5 requests per second (exempt from the ten-second bucket).
    pub fn spend_search(&mut self, now: Instant) -> Result<(), &'static str> {
        if self.tier == Tier::Unlimited || self.search.try_spend(now) { Ok(()) } else { Err("SECONDLY") }
    }

    /// `X-HubSpot-RateLimit-*` header values after this call.
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        if self.tier == Tier::Unlimited {
            return Vec::new();
        }
        vec![
            ("x-hubspot-ratelimit-daily", self.tier.daily().to_string()),
            ("x-hubspot-ratelimit-daily-remaining", self.tier.daily().saturating_sub(self.daily_used).to_string()),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".into()),
            ("x-hubspot-ratelimit-max", self.tier.burst().to_string()),
            ("x-hubspot-ratelimit-remaining", self.ten_seconds.remaining().to_string()),
        ]
    }
}
