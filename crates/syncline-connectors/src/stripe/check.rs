//! What `syncline check` probes of Stripe: that the key opens the account.

use super::api::StripeApi;
use super::config::StripeProfile;

/// The account the key opens, or the failure and how to fix it.
pub async fn connection(profile: &StripeProfile) -> crate::Probe {
    let fix = "set the key to the account's secret key (sk_…) or a restricted key that may read products and events";
    let api = StripeApi::new(profile).map_err(|e| (e, ""))?;
    let account = api.account_id().await.map_err(|e| (e, fix))?;
    Ok(format!("{}: account {account}, the key works", profile.base_url))
}
