//! What `syncline check` probes of ManyChat: that the token opens the page.

use super::api::ManyChatApi;
use super::config::ManyChatProfile;

/// The page the token opens, or the failure and how to fix it.
pub async fn connection(profile: &ManyChatProfile) -> crate::Probe {
    let fix = "set the token to the page's API key, <page_id>:<key> (ManyChat → Settings → API)";
    let page = ManyChatApi::new(profile).map_err(|e| (e, ""))?.page_name().await.map_err(|e| (e, fix))?;
    Ok(format!("{}: page {page:?}, the token works", profile.base_url))
}
