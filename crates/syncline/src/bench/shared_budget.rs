//! `bench --shared-budget`: what sharing a rate budget through PostgreSQL costs, against the
//! process's own budget. Three "instances" (each its own store connection pool, as three
//! processes would have) with four callers each:
//! 1. the cost of one permit, with a budget too large to bind: permits/s and the time a permit
//!    takes (the locked read and write of the budget's row);
//! 2. ManyChat's sendContent page budget, 25 a second, for `--seconds` (default 10): calls/s,
//!    the most in any rolling second, and the wait each call adds to what the budget imposes
//!    (the transaction, plus how late the call starts after its permit's time).

use std::sync::Arc;
use std::time::Duration;

use syncline_resilience::{Budget, BudgetStore, RateLimiter, SharedBudget};
use tokio::time::Instant;

use crate::cli::BenchArgs;
use crate::exit::{CliError, CliResult};

const INSTANCES: usize = 3;
const CALLERS: usize = 4;

pub async fn run(args: &BenchArgs) -> CliResult {
    let base = args.store_url.clone().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("syncline_bench_{}", uuid::Uuid::now_v7().simple());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        stores.push(syncline_store::Store::connect(&url).await.map_err(|e| CliError::failed(format!("{base}: {e}")))?);
    }
    let budgets: Vec<Arc<dyn BudgetStore>> = stores
        .iter()
        .map(|store| crate::budgets::shared_by(store).ok_or_else(|| CliError::usage("--store must be a postgres:// URL")))
        .collect::<Result<_, _>>()?;
    println!("shared budget on {base} ({INSTANCES} instances × {CALLERS} callers)");

    let unbound = Budget::per(1_000_000, Duration::from_secs(1));
    let local = local_permits_per_second(unbound);
    let spent = spend(&shared(&budgets, "bench:cost"), unbound, Duration::from_secs(5)).await?;
    println!("one permit, budget not binding");
    println!("  local              {local:.0} permits/s (a lock and a few comparisons)");
    print_spent("shared", &spent);

    let page = Budget::per(25, Duration::from_secs(1)).with_margin(Duration::from_millis(20));
    let seconds = Duration::from_secs(args.seconds.unwrap_or(10));
    println!("ManyChat sendContent, 25/s with a 20 ms margin, for {seconds:?}");
    let own = Gate::Local(Arc::new(std::sync::Mutex::new(RateLimiter::new(page))));
    print_spent("local (1 process)", &spend(&vec![own; INSTANCES], page, seconds).await?);
    let spent = spend(&shared(&budgets, "bench:sendContent"), page, seconds).await?;
    print_spent("shared", &spent);
    let mut starts: Vec<Instant> = spent.iter().map(|p| p.started).collect();
    starts.sort();
    let most = (0..starts.len()).map(|i| starts[i..].iter().take_while(|t| **t - starts[i] < Duration::from_secs(1)).count()).max();
    println!("  shared: most in any rolling second {} (budget 25)", most.unwrap_or(0));

    for store in &stores {
        store.close().await;
    }
    drop_schema(&base, &schema).await
}

/// One permit: asked for at `asked`, granted for `due` after `reserved` (the transaction),
/// and the call started at `started`.
struct Permit {
    reserved: Duration,
    due: Instant,
    started: Instant,
}

impl Permit {
    /// The wait the shared budget added to the one the budget itself imposes.
    fn added(&self) -> Duration {
        self.reserved + self.started.saturating_duration_since(self.due)
    }
}

/// Where a caller gets its permits: a budget of the process's own, or one shared through a store
/// (each instance's callers taking turns, as a Policy's do).
#[derive(Clone)]
enum Gate {
    Local(Arc<std::sync::Mutex<RateLimiter>>),
    Shared(Arc<tokio::sync::Mutex<SharedBudget>>),
}

impl Gate {
    async fn next_permit(&self, budget: Budget) -> Result<Instant, String> {
        match self {
            Gate::Local(limiter) => Ok(limiter.lock().expect("not poisoned").reserve(Instant::now())),
            Gate::Shared(shared) => shared.lock().await.next_permit(budget).await,
        }
    }
}

/// One gate per instance, all spending the budget under `key`.
fn shared(budgets: &[Arc<dyn BudgetStore>], key: &str) -> Vec<Gate> {
    budgets.iter().map(|store| Gate::Shared(Arc::new(tokio::sync::Mutex::new(SharedBudget::new(store.clone(), key))))).collect()
}

/// Every caller of every instance takes permits of `budget` (and waits for each) for `length`.
async fn spend(gates: &[Gate], budget: Budget, length: Duration) -> Result<Vec<Permit>, CliError> {
    let end = Instant::now() + length;
    let mut callers = tokio::task::JoinSet::new();
    for gate in gates {
        for _ in 0..CALLERS {
            let gate = gate.clone();
            callers.spawn(async move {
                let mut permits = Vec::new();
                while Instant::now() < end {
                    let asked = Instant::now();
                    let due = gate.next_permit(budget).await?;
                    let reserved = asked.elapsed();
                    tokio::time::sleep_until(due).await;
                    permits.push(Permit { reserved, due, started: Instant::now() });
                }
                Ok::<_, String>(permits)
            });
        }
    }
    let mut all = Vec::new();
    while let Some(done) = callers.join_next().await {
        all.extend(done.map_err(CliError::failed)?.map_err(CliError::failed)?);
    }
    Ok(all)
}

fn print_spent(label: &str, permits: &[Permit]) {
    let (Some(first), Some(last)) = (permits.iter().map(|p| p.started).min(), permits.iter().map(|p| p.started).max()) else { return };
    let per_second = permits.len() as f64 / (last - first).as_secs_f64().max(1e-9);
    let mut added: Vec<Duration> = permits.iter().map(Permit::added).collect();
    added.sort();
    let mean = added.iter().sum::<Duration>() / added.len() as u32;
    println!(
        "  {label:<18} {per_second:.1} calls/s · added wait mean {mean:.2?}, p50 {:.2?}, p99 {:.2?}, max {:.2?} ({} permits)",
        super::percentile(&added, 0.5),
        super::percentile(&added, 0.99),
        super::percentile(&added, 1.0),
        permits.len()
    );
}

/// Permits a second one process's own limiter gives, for comparison.
fn local_permits_per_second(budget: Budget) -> f64 {
    let limiter = std::sync::Mutex::new(RateLimiter::new(budget));
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..1_000 {
            let _ = limiter.lock().expect("not poisoned").try_acquire(Instant::now());
        }
        n += 1_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub(super) async fn drop_schema(base: &str, schema: &str) -> CliResult {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(base).await.map_err(CliError::failed)?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut connection)
        .await
        .map_err(CliError::failed)?;
    Ok(crate::exit::Exit::Ok)
}
