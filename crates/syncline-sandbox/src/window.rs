//! A rolling-window limit: at most `limit` calls in any `width` (HubSpot's 10-second burst and
//! search's second, ManyChat's per-method seconds and sendFlow's hour per subscriber).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct RollingWindow {
    width: Duration,
    limit: usize,
    calls: VecDeque<Instant>,
}

impl RollingWindow {
    pub fn new(limit: usize, width: Duration) -> RollingWindow {
        RollingWindow { width, limit, calls: VecDeque::new() }
    }

    /// Counts one call at `now`, unless the window is full.
    pub fn try_spend(&mut self, now: Instant) -> bool {
        self.forget(now);
        if self.calls.len() >= self.limit {
            return false;
        }
        self.calls.push_back(now);
        true
    }

    /// Calls left in the window as of the last call counted.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.calls.len())
    }

    fn forget(&mut self, now: Instant) {
        while self.calls.front().is_some_and(|t| now.duration_since(*t) >= self.width) {
            self.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_reopens_as_calls_age_out() {
        let start = Instant::now();
        let mut window = RollingWindow::new(2, Duration::from_secs(10));
        assert!(window.try_spend(start) && window.try_spend(start + Duration::from_secs(3)));
        assert!(!window.try_spend(start + Duration::from_secs(9)), "two calls in 10 s already");
        assert_eq!(window.remaining(), 0);
        assert!(window.try_spend(start + Duration::from_secs(10)), "the first call aged out");
        assert!(!window.try_spend(start + Duration::from_secs(12)));
    }
}
