//! QuickBooks Online (API-CONTRACTS §4): a company (realm) reached with OAuth 2.0 tokens that
//! expire within the hour and refresh tokens that rotate (`oauth.rs`), and the accounting API's
//! queries inside the realm's limits (`api.rs`).

mod api;
pub mod check;
mod config;
mod oauth;

pub use api::{QueryPage, QuickBooksApi};
pub use config::{DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, MINOR_VERSION, QuickBooksProfile};
pub use oauth::{OAuthApp, REAUTHORIZE, TokenManager, TokenVault, Tokens};
