//! The state store as the place where rate budgets are shared: on PostgreSQL, where several
//! instances may run, every HubSpot and ManyChat budget is one row all of them spend
//! (`syncline-resilience`'s `SharedBudget`); on SQLite, one process, each keeps its own.

use std::sync::Arc;

use syncline_connectors::Budgets;
use syncline_resilience::{BudgetStore, StoreFuture, Update};
use syncline_store::{Backend, Store};

#[derive(Debug)]
struct StoreBudgets(Store);

impl BudgetStore for StoreBudgets {
    fn update<'a>(&'a self, key: &'a str, update: &'a mut Update<'_>) -> StoreFuture<'a> {
        Box::pin(async move { self.0.update_rate_budget(key, update).await.map_err(|e| e.to_string()) })
    }
}

/// Where the connectors of a command on `store` share their budgets.
pub fn shared_by(store: &Store) -> Budgets {
    (store.backend() == Backend::Postgres).then(|| Arc::new(StoreBudgets(store.clone())) as Arc<dyn BudgetStore>)
}
