//! Rate budgets shared by processes: a budget's state is a row, locked for the read and the
//! write of one permit (syncline-resilience's `SharedBudget` decides what the state says).

use crate::{Backend, Store, StoreError};

/// Runs on a budget's saved state (None the first time) and the store's clock (microseconds
/// since the Unix epoch); returns the state to save.
pub type BudgetUpdate<'a> = dyn FnMut(Option<&str>, i64) -> String + Send + 'a;

impl Store {
    /// Runs `update` on the budget `name` with its row locked against every other process, and
    /// saves what it returns. On PostgreSQL the clock is the server's, one for all instances.
    pub async fn update_rate_budget(&self, name: &str, update: &mut BudgetUpdate<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let read = match self.backend {
            Backend::Postgres => {
                "SELECT state, (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT FROM rate_budgets WHERE name = $1 FOR UPDATE"
            }
            // one process, and SQLite serializes writers anyway
            Backend::Sqlite => {
                "SELECT state, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) FROM rate_budgets WHERE name = $1"
            }
        };
        const CREATE: &str = "INSERT INTO rate_budgets (name, state) VALUES ($1, '') ON CONFLICT (name) DO NOTHING";
        if self.backend == Backend::Sqlite {
            // a write first takes SQLite's write lock at once; a read first would deadlock with
            // another writer when it upgrades
            sqlx::query(CREATE).bind(name).execute(&mut *tx).await?;
        }
        let row: Option<(String, i64)> = sqlx::query_as(read).bind(name).fetch_optional(&mut *tx).await?;
        let (saved, now) = match row {
            Some(row) => row,
            None => {
                // the first permit of this budget: create its row, or lock the one another made
                sqlx::query(CREATE).bind(name).execute(&mut *tx).await?;
                sqlx::query_as(read).bind(name).fetch_one(&mut *tx).await?
            }
        };
        let state = update(Some(saved.as_str()).filter(|s| !s.is_empty()), now);
        sqlx::query("UPDATE rate_budgets SET state = $1 WHERE name = $2").bind(state).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
