//! Each rate budget's use over the last minutes, for the overview's small charts: the host's
//! health is sampled every few seconds and each policy's new attempts are kept per sample.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use crate::Host;

/// How often a sample is taken, and how many are kept (three minutes).
pub(crate) const EVERY: Duration = Duration::from_secs(5);
const KEPT: usize = 36;

/// One budget's samples.
#[derive(Debug, Clone)]
struct Series {
    attempts: u64,
    per_sample: VecDeque<u64>,
    usage: syncline_resilience::Usage,
}

#[derive(Debug, Default)]
pub(crate) struct Usage {
    series: Mutex<BTreeMap<String, Series>>,
}

impl Usage {
    /// Takes one sample of every rate-limited policy the host reports.
    pub fn sample(&self, host: &dyn Host) {
        let mut series = self.series.lock().expect("usage lock");
        for health in host.health() {
            let Some(usage) = health.usage else { continue };
            match series.get_mut(&health.name) {
                Some(s) => {
                    s.per_sample.push_back(usage.attempts.saturating_sub(s.attempts));
                    if s.per_sample.len() > KEPT {
                        s.per_sample.pop_front();
                    }
                    (s.attempts, s.usage) = (usage.attempts, usage);
                }
                None => {
                    series.insert(health.name, Series { attempts: usage.attempts, per_sample: VecDeque::new(), usage });
                }
            }
        }
    }

    /// Each budget with its chart, as the overview shows it.
    pub fn charts(&self) -> Vec<minijinja::Value> {
        let series = self.series.lock().expect("usage lock");
        series.iter().map(|(name, s)| chart(name, s)).collect()
    }
}

/// A budget's bars (calls per sample, newest right) under a line at what the budget allows per
/// sample; heights in a 32-high box.
fn chart(name: &str, s: &Series) -> minijinja::Value {
    const HEIGHT: f64 = 32.0;
    let allowed = f64::from(s.usage.max) * EVERY.as_secs_f64() / s.usage.interval.as_secs_f64().max(0.001);
    let top = s.per_sample.iter().map(|n| *n as f64).fold(allowed, f64::max).max(1.0);
    let offset = KEPT - s.per_sample.len();
    let bars: Vec<minijinja::Value> = s
        .per_sample
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let h = (*n as f64 / top * HEIGHT).round() as i64;
            minijinja::context! { x => (offset + i) * 5, y => HEIGHT as i64 - h, h }
        })
        .collect();
    let last_minute: u64 = s.per_sample.iter().rev().take((60 / EVERY.as_secs()) as usize).sum();
    minijinja::context! {
        name,
        bars,
        limit_y => (HEIGHT - (allowed / top * HEIGHT)).round() as i64,
        last_minute,
        budget => format!("{} per {}", s.usage.max, seconds(s.usage.interval)),
        width => KEPT * 5,
    }
}

fn seconds(interval: Duration) -> String {
    match interval.as_secs() {
        1 => "second".into(),
        n if n % 3600 == 0 => format!("{} h", n / 3600),
        n => format!("{n} s"),
    }
}

/// Samples until the console is gone.
pub(crate) async fn keep_sampling(app: Weak<crate::App>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        app.usage.sample(app.host.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A host whose one policy has spent `spent` attempts of 100 per 10 s.
    struct Spending(AtomicU64);

    impl Host for Spending {
        fn jobs(&self) -> Vec<crate::Job> {
            Vec::new()
        }

        fn health(&self) -> Vec<syncline_resilience::Health> {
            let mut health = syncline_resilience::Health::healthy("hubspot");
            let usage =
                syncline_resilience::Usage { attempts: self.0.load(Ordering::Relaxed), max: 100, interval: Duration::from_secs(10) };
            health.usage = Some(usage);
            let unlimited = syncline_resilience::Health::healthy("quickbooks tokens");
            vec![health, unlimited]
        }

        fn replay(&self, _: Vec<i64>) -> std::pin::Pin<Box<dyn Future<Output = crate::Replayed> + Send + '_>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    #[test]
    fn each_sample_keeps_the_calls_since_the_last_and_the_chart_scales_to_the_budget() {
        let host = Spending(AtomicU64::new(7));
        let usage = Usage::default();
        usage.sample(&host);
        for spent in [50, 25, 0, 100] {
            host.0.fetch_add(spent, Ordering::Relaxed);
            usage.sample(&host);
        }
        let charts = usage.charts();
        assert_eq!(charts.len(), 1, "only budgets are charted");
        let chart = &charts[0];
        assert_eq!(chart.get_attr("name").unwrap().to_string(), "hubspot");
        assert_eq!(chart.get_attr("last_minute").unwrap().to_string(), "175");
        assert_eq!(chart.get_attr("budget").unwrap().to_string(), "100 per 10 s");
        // 50 a sample is what 100 per 10 s allows in 5 s; 100 tops the chart, so the line is half way
        assert_eq!(chart.get_attr("limit_y").unwrap().to_string(), "16");
        let heights: Vec<String> =
            chart.get_attr("bars").unwrap().try_iter().unwrap().map(|b| b.get_attr("h").unwrap().to_string()).collect();
        assert_eq!(heights, ["16", "8", "0", "32"]);
        // newest at the right edge
        let last_x = chart.get_attr("bars").unwrap().try_iter().unwrap().last().unwrap().get_attr("x").unwrap().to_string();
        assert_eq!(last_x, ((KEPT - 1) * 5).to_string());
    }

    #[test]
    fn only_the_last_three_minutes_are_kept() {
        let host = Spending(AtomicU64::new(0));
        let usage = Usage::default();
        for _ in 0..100 {
            host.0.fetch_add(1, Ordering::Relaxed);
            usage.sample(&host);
        }
        let bars = usage.charts()[0].get_attr("bars").unwrap();
        assert_eq!(bars.len(), Some(KEPT));
    }
}
