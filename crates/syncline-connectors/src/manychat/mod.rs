//! ManyChat (API-CONTRACTS §2): subscriber lookups and creation, tags, custom fields, and
//! sending, each method class through its own resilience `Policy` with ManyChat's documented
//! per-method budget.

mod api;
pub mod check;
mod config;

pub use api::{Lookup, MAX_ACTIONS, ManyChatApi, NewSubscriber, Subscriber, Tag, TextMessage};
pub use config::{DEFAULT_BASE_URL, MAX_FIELDS_PER_CALL, ManyChatProfile};
