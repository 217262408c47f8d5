//! The ManyChat profile: where the page is, its token, and how long a call may take. (ManyChat
//! has no streams yet: flows call it step by step.)

use std::time::Duration;

/// ManyChat's API host; the sandbox (or a proxy) is configured with `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.manychat.com";

/// `setCustomFields` takes at most this many fields per call (API-CONTRACTS §2.3).
pub const MAX_FIELDS_PER_CALL: usize = 20;

#[derive(Clone)]
pub struct ManyChatProfile {
    /// `https://api.manychat.com`, or the sandbox's URL.
    pub base_url: String,
    /// The page's API token, `<page_id>:<key>` (sent as `Authorization: Bearer …`).
    pub token: String,
    /// How long one call, its retries included, may take.
    pub call_timeout: Duration,
    /// Where the page's budgets are shared with other processes (None: this process's own).
    pub budgets: crate::http::Budgets,
}

impl ManyChatProfile {
    pub fn new(base_url: &str, token: &str) -> ManyChatProfile {
        ManyChatProfile {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            call_timeout: Duration::from_secs(60),
            budgets: None,
        }
    }
}

/// The token never shows in logs or panics.
impl std::fmt::Debug for ManyChatProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManyChatProfile").field("base_url", &self.base_url).field("token", &"***").finish_non_exhaustive()
    }
}
