//! Stripe (API-CONTRACTS §3): products with their default prices, listed newest first in full
//! reads and caught up from `/v1/events` in incremental ones, inside the account's request rate.

mod api;
pub mod check;
mod config;
mod source;

pub use api::{Product, StripeApi, product_of};
pub use config::{DEFAULT_BASE_URL, EVENT_RETENTION, StripeProfile};
pub use source::StripeSource;
