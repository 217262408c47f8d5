//! A rolling-window rate limiter: at most `max` permits in any `interval`.
//!
//! Written by hand rather than with governor: HubSpot's burst limit is a *rolling* window
//! (`TEN_SECONDLY_ROLLING`), and a GCRA bucket of the same size lets through up to twice the
//! budget across a window boundary (a full burst, then the refill), which the server answers with
//! 429s. Remembering the last `max` grant times is exact, small (≤ a few hundred instants) and
//! uses the whole budget. On top of it, calls are paced GCRA-style at one per `interval / max`
//! with a burst tolerance of one call: spread-out calls keep every window evenly full, where a
//! burst would be remembered by the rolling window and come back every interval (a window that
//! straddles the burst then sees only part of it).
//!
//! The server's headers correct it live: when `Remaining` shows more calls spent than ours,
//! someone else (another app, another process) shares the budget, and their share is held back
//! for them, so our calls slow down *before* the server answers 429.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A budget: `max` calls per rolling `interval`, kept `margin` clear of the edge so that
/// network jitter between our clock and the server's never puts `max + 1` calls in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max: u32,
    pub interval: Duration,
    pub margin: Duration,
}

impl Budget {
    pub fn per(max: u32, interval: Duration) -> Budget {
        Budget { max, interval, margin: Duration::ZERO }
    }

    pub fn with_margin(self, margin: Duration) -> Budget {
        Budget { margin, ..self }
    }
}

/// A [`RateLimiter`] on a wall clock, in microseconds since the Unix epoch: what a store keeps
/// of a budget that several processes spend.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimiterState {
    pub granted: Vec<i64>,
    pub others: u32,
    pub others_decayed_at: Option<i64>,
    pub blocked_until: Option<i64>,
    pub tat: Option<i64>,
}

#[derive(Debug)]
pub struct RateLimiter {
    /// None: no known budget; only the server's 429s and `Retry-After` hold calls back.
    budget: Option<Budget>,
    /// Times of our most recent permits, oldest first: up to `2 × max`, so that permits reserved
    /// ahead (a shared budget's) never push out ones still in the window, which
    /// `observe_remaining` must count as ours.
    granted: VecDeque<Instant>,
    /// Calls others spend in one window, as last learned from the server (held back for them).
    others: u32,
    /// When `others` last went down by one (it decays a call per second when they go quiet).
    others_decayed_at: Option<Instant>,
    /// No permit before this instant (a 429 or `Retry-After`).
    blocked_until: Option<Instant>,
    /// GCRA's theoretical arrival time of the next call.
    tat: Option<Instant>,
}

impl RateLimiter {
    pub fn new(budget: Budget) -> RateLimiter {
        assert!(budget.max > 0, "a budget allows at least one call");
        RateLimiter {
            budget: Some(budget),
            granted: VecDeque::with_capacity(kept(budget.max)),
            others: 0,
            others_decayed_at: None,
            blocked_until: None,
            tat: None,
        }
    }

    /// A limiter for an API without a known budget: it only obeys 429s and `Retry-After`.
    pub fn unlimited() -> RateLimiter {
        RateLimiter { budget: None, granted: VecDeque::new(), others: 0, others_decayed_at: None, blocked_until: None, tat: None }
    }

    pub fn budget(&self) -> Option<Budget> {
        self.budget
    }

    /// Calls per window left for us: the budget less what others were seen to spend.
    pub fn capacity(&self) -> Option<u32> {
        self.budget.map(|b| b.max.saturating_sub(self.others).max(1))
    }

    /// The earliest instant at or after `now` when a permit is free.
    pub fn ready_at(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(blocked) = self.blocked_until {
            at = at.max(blocked);
        }
        if let (Some(budget), Some(capacity)) = (self.budget, self.capacity()) {
            let capacity = capacity as usize;
            if self.granted.len() >= capacity {
                let oldest_in_window = self.granted[self.granted.len() - capacity];
                at = at.max(oldest_in_window + budget.interval + budget.margin);
            }
            if let Some(tat) = self.tat {
                at = at.max(tat.checked_sub(self.emission_interval(budget)).unwrap_or(tat));
            }
        }
        at
    }

    /// Takes a permit at `now`, or says when one will be free.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        let at = self.ready_at(now);
        if at > now {
            return Err(at);
        }
        self.grant(now);
        Ok(())
    }

    /// Takes the first free permit at or after `now`, however far ahead, and says when it is:
    /// the caller waits until then. Used by a budget shared through a store, where asking again
    /// and again would cost a round trip each.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = self.ready_at(now);
        self.grant(at);
        at
    }

    /// Records a permit at `at`, never before the last one (`ready_at` keeps them in order).
    fn grant(&mut self, at: Instant) {
        self.push(at);
        if let Some(budget) = self.budget {
            self.tat = Some(self.tat.map_or(at, |tat| tat.max(at)) + self.emission_interval(budget));
        }
    }

    /// The steady spacing between our calls; a call may run one spacing ahead of it.
    fn emission_interval(&self, budget: Budget) -> Duration {
        (budget.interval + budget.margin) / self.capacity().unwrap_or(budget.max)
    }

    /// The server said `remaining` calls are left in its current window. Calls it counted beyond
    /// ours are someone else's: hold that many back in every window from now on. The estimate
    /// rises at once and falls by one call a second, so a steady neighbour keeps its share and a
    /// finished one gives it back.
    ///
    /// Our own calls are counted over the interval plus the margin: a call we sent just over an
    /// interval ago may have reached the server inside its window, and must not be mistaken for
    /// someone else's.
    pub fn observe_remaining(&mut self, now: Instant, remaining: u32) {
        let Some(budget) = self.budget else { return };
        let window_start = now.checked_sub(budget.interval + budget.margin).unwrap_or(now);
        // permits reserved for later have not reached the server yet
        let ours = self.granted.iter().filter(|t| **t > window_start && **t <= now).count() as u32;
        let others = budget.max.saturating_sub(remaining).saturating_sub(ours);
        if others >= self.others {
            self.others = others;
            self.others_decayed_at = Some(now);
        } else if self.others_decayed_at.is_none_or(|at| now >= at + Duration::from_secs(1)) {
            self.others -= 1;
            self.others_decayed_at = Some(now);
        }
    }

    /// The server's bucket size (`X-HubSpot-RateLimit-Max`) differs from the configured one:
    /// believe the server, it is the one answering 429.
    pub fn observe_max(&mut self, max: u32) {
        let Some(budget) = &mut self.budget else { return };
        if max > 0 && max != budget.max {
            tracing::info!(configured = budget.max, server = max, "rate budget corrected from the server's headers");
            budget.max = max;
            while self.granted.len() > kept(max) {
                self.granted.pop_front();
            }
        }
    }

    /// The server refused a call (429). Wait `retry_after` when it said so; otherwise someone
    /// spends more than we knew: hold one more call back per window (and, with no known budget,
    /// wait a second).
    pub fn on_rejected(&mut self, now: Instant, retry_after: Option<Duration>) {
        let until = match (retry_after, self.budget) {
            (Some(wait), _) => now + wait,
            (None, Some(budget)) => {
                self.others = (self.others + 1).min(budget.max - 1);
                self.others_decayed_at = Some(now);
                return;
            }
            (None, None) => now + Duration::from_secs(1),
        };
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// The limiter as times on a wall clock (`wall_us`: that clock's reading at `now`, in
    /// microseconds since the Unix epoch), for a store that several processes share. Permits
    /// older than the window are left out: they no longer hold anything back.
    pub fn save(&self, now: Instant, wall_us: i64) -> LimiterState {
        let on_wall = |at: Instant| {
            let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            if at >= now { wall_us.saturating_add(micros(at - now)) } else { wall_us.saturating_sub(micros(now - at)) }
        };
        let window = self.budget.map_or(Duration::ZERO, |b| b.interval + b.margin);
        let recent = |at: &&Instant| now.checked_sub(window).is_none_or(|start| **at > start);
        LimiterState {
            granted: self.granted.iter().filter(recent).map(|at| on_wall(*at)).collect(),
            others: self.others,
            others_decayed_at: self.others_decayed_at.map(on_wall),
            blocked_until: self.blocked_until.filter(|at| *at > now).map(on_wall),
            tat: self.tat.filter(|at| *at > now).map(on_wall),
        }
    }

    /// A limiter for `budget` in the state [`RateLimiter::save`] kept (`wall_us`: the same
    /// clock's reading at `now`).
    pub fn load(budget: Budget, state: &LimiterState, now: Instant, wall_us: i64) -> RateLimiter {
        let at = |micros: i64| {
            let offset = Duration::from_micros(micros.abs_diff(wall_us));
            if micros >= wall_us { Some(now + offset) } else { now.checked_sub(offset) }
        };
        let mut limiter = RateLimiter::new(budget);
        limiter.granted = state.granted.iter().filter_map(|micros| at(*micros)).collect();
        while limiter.granted.len() > kept(budget.max) {
            limiter.granted.pop_front();
        }
        limiter.others = state.others.min(budget.max - 1);
        limiter.others_decayed_at = state.others_decayed_at.and_then(at);
        limiter.blocked_until = state.blocked_until.and_then(at);
        limiter.tat = state.tat.and_then(at);
        limiter
    }

    fn push(&mut self, at: Instant) {
        let Some(budget) = self.budget else { return };
        if self.granted.len() >= kept(budget.max) {
            self.granted.pop_front();
        }
        self.granted.push_back(at);
    }
}

/// How many permit times a limiter of `max` keeps.
fn kept(max: u32) -> usize {
    2 * max as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn full_window_then_waits_for_the_oldest_to_leave() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Budget::per(3, 9 * SEC));
        // pace 3 s, one call ahead allowed
        for i in [0, 1, 4] {
            assert_eq!(limiter.try_acquire(t0 + i * SEC), Ok(()), "at {i} s");
        }
        assert_eq!(limiter.try_acquire(t0 + 5 * SEC), Err(t0 + 9 * SEC), "the rolling window is full");
        assert_eq!(limiter.try_acquire(t0 + 9 * SEC), Ok(()));
        assert_eq!(limiter.try_acquire(t0 + 9 * SEC), Err(t0 + 10 * SEC));
    }

    #[test]
    fn a_429_blocks_for_retry_after_or_a_whole_window() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Budget::per(100, 10 * SEC));
        limiter.on_rejected(t0, Some(3 * SEC));
        assert_eq!(limiter.try_acquire(t0 + 2 * SEC), Err(t0 + 3 * SEC));
        assert_eq!(limiter.try_acquire(t0 + 3 * SEC), Ok(()));
        limiter.on_rejected(t0 + 4 * SEC, None);
        assert_eq!(limiter.capacity(), Some(99), "one call a window held back for whoever else spends it");
        assert_eq!(limiter.ready_at(t0 + 4 * SEC), t0 + 4 * SEC, "no blackout");
        let mut unknown = RateLimiter::unlimited();
        unknown.on_rejected(t0, None);
        assert_eq!(unknown.ready_at(t0), t0 + SEC);
    }

    /// Permits a patient caller gets in [from, from + 10 s).
    fn permits_within_ten_seconds(limiter: &mut RateLimiter, from: Instant) -> usize {
        let mut now = from;
        let mut n = 0;
        loop {
            now = limiter.ready_at(now);
            if now >= from + 10 * SEC {
                return n;
            }
            limiter.try_acquire(now).unwrap();
            n += 1;
        }
    }

    #[test]
    fn server_headers_only_tighten() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Budget::per(10, 10 * SEC));
        limiter.try_acquire(t0).unwrap();
        // we count 9 left; the server says 4: five calls were someone else's
        limiter.observe_remaining(t0, 4);
        assert_eq!(limiter.capacity(), Some(5));
        assert_eq!(permits_within_ten_seconds(&mut limiter, t0), 4);
        // they stop: their share comes back a call a second
        limiter.observe_remaining(t0 + 3 * SEC, 9);
        assert_eq!(limiter.capacity(), Some(6));
        // a server count above ours changes nothing
        let mut limiter = RateLimiter::new(Budget::per(10, 10 * SEC));
        limiter.observe_remaining(t0, 10);
        assert_eq!(permits_within_ten_seconds(&mut limiter, t0), 10);
        limiter.observe_max(5);
        assert_eq!(limiter.budget().map(|b| b.max), Some(5));
    }

    #[test]
    fn reserved_permits_keep_the_window_and_a_saved_limiter_continues_it() {
        let t0 = Instant::now();
        let budget = Budget::per(3, 9 * SEC);
        let mut limiter = RateLimiter::new(budget);
        let reserved: Vec<Instant> = (0..4).map(|_| limiter.reserve(t0)).collect();
        // paced 3 s apart, one call ahead allowed, and the fourth waits for the first to leave
        assert_eq!(reserved, [t0, t0, t0 + 3 * SEC, t0 + 9 * SEC]);
        // the server counts only what it has seen: reservations ahead are not someone else's
        limiter.observe_remaining(t0 + SEC, 1);
        assert_eq!(limiter.capacity(), Some(3));

        // saved on a wall clock and loaded by a process whose own clock reads otherwise
        let wall = 1_764_000_000_000_000;
        let state = limiter.save(t0 + SEC, wall);
        assert_eq!(state.granted, [wall - 1_000_000, wall - 1_000_000, wall + 2_000_000, wall + 8_000_000]);
        let elsewhere = t0 + 100 * SEC;
        let mut loaded = RateLimiter::load(budget, &state, elsewhere, wall);
        assert_eq!(loaded.reserve(elsewhere), elsewhere + 8 * SEC, "the window goes on where it was");
        // a permit older than the window is not saved
        assert_eq!(loaded.save(elsewhere + 20 * SEC, wall).granted, Vec::<i64>::new());
    }

    proptest! {
        /// However calls arrive, no rolling window ever holds more than `max` permits.
        #[test]
        fn never_more_than_max_in_any_window(
            max in 1u32..50,
            interval_ms in 100u64..20_000,
            gaps in proptest::collection::vec(0u64..2_000, 1..600),
        ) {
            let interval = Duration::from_millis(interval_ms);
            let t0 = Instant::now();
            let mut limiter = RateLimiter::new(Budget::per(max, interval));
            let mut now = t0;
            let mut granted = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                if limiter.try_acquire(now).is_ok() {
                    granted.push(now);
                }
            }
            for (i, start) in granted.iter().enumerate() {
                let in_window = granted[i..].iter().take_while(|t| **t < *start + interval).count();
                prop_assert!(in_window <= max as usize, "{in_window} permits within one window of {interval:?}");
            }
        }

        /// A caller that always waits for `ready_at` gets exactly `max` per interval.
        #[test]
        fn a_patient_caller_uses_the_whole_budget(max in 1u32..250, interval_s in 1u64..20) {
            let interval = Duration::from_secs(interval_s);
            let t0 = Instant::now();
            let mut limiter = RateLimiter::new(Budget::per(max, interval));
            let mut now = t0;
            let mut count = 0u64;
            while now < t0 + 10 * interval {
                now = limiter.ready_at(now);
                if now >= t0 + 10 * interval { break; }
                limiter.try_acquire(now).unwrap();
                count += 1;
            }
            prop_assert_eq!(count, 10 * max as u64);
        }
    }
}
