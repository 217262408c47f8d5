//! QuickBooks Online (API-CONTRACTS §4): a company (realm) reached with OAuth 2.0 tokens that
//! expire within the hour and refresh tokens that rotate (`oauth.rs`), the accounting API's
//! queries and batches inside the realm's limits (`api.rs`), and items written from records
//! (`sink.rs`).

mod api;
pub mod check;
mod config;
mod oauth;
mod sink;

pub use api::{QueryPage, QuickBooksApi};
pub use config::{DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, MINOR_VERSION, QuickBooksProfile};
pub use oauth::{OAuthApp, REAUTHORIZE, TokenManager, TokenVault, Tokens};
pub use sink::{BATCH_OPERATIONS, ItemSettings, ItemSink, Ledger, LinkVault, NameTaken};
