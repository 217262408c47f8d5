//! What `syncline check` probes of QuickBooks: that the stored tokens open the company (a
//! refresh included, when the access token expired).

use super::api::QuickBooksApi;

/// The company the tokens open, or the failure and how to fix it.
pub async fn connection(api: &QuickBooksApi, base_url: &str) -> crate::Probe {
    let fix = "run `syncline auth quickbooks` to connect the app to the company (and check realm_id, client_id and client_secret)";
    let name = api.company_name().await.map_err(|e| (e, fix))?;
    Ok(format!("{base_url}: company {name:?}, the tokens work"))
}
