//! OAuth tokens at rest: kept in the state store, each sealed with XChaCha20-Poly1305 under a
//! key the store never sees (`SYNCLINE_TOKEN_KEY`, 32 bytes in base64, or the file
//! `SYNCLINE_TOKEN_KEY_FILE` names). A sealed token is bound to its provider and account, so a
//! row copied onto another account does not open.

use std::sync::Arc;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures_util::future::BoxFuture;
use syncline_connectors::quickbooks::{Ledger, LinkVault, TokenVault, Tokens};
use syncline_core::{ConnectorError, ErrorClass};
use syncline_store::{SealedTokens, Store};

/// Where the key comes from, as the error for a missing one says.
pub const KEY_HELP: &str = "set SYNCLINE_TOKEN_KEY to 32 random bytes in base64 (e.g. `openssl rand -base64 32`), or SYNCLINE_TOKEN_KEY_FILE to a file holding them";

/// Seals and opens tokens with one key.
#[derive(Clone)]
pub struct TokenCipher(XChaCha20Poly1305);

/// The key never shows.
impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(***)")
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl TokenCipher {
    /// The key from the environment (`env` looks a variable up).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<TokenCipher, String> {
        let text = match (env("SYNCLINE_TOKEN_KEY"), env("SYNCLINE_TOKEN_KEY_FILE")) {
            (Some(key), _) => key,
            (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| format!("SYNCLINE_TOKEN_KEY_FILE {path}: {e}"))?,
            (None, None) => return Err(format!("OAuth tokens are stored encrypted and no key is set: {KEY_HELP}")),
        };
        let key = B64.decode(text.trim()).map_err(|e| format!("the token key is not base64 ({e}): {KEY_HELP}"))?;
        if key.len() != 32 {
            return Err(format!("the token key is {} bytes, not 32: {KEY_HELP}", key.len()));
        }
        Ok(TokenCipher(XChaCha20Poly1305::new_from_slice(&key).expect("32 bytes is the key size")))
    }

    fn seal(&self, text: &str, bound_to: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.0.encrypt(&nonce, Payload { msg: text.as_bytes(), aad: bound_to.as_bytes() }).expect("sealing cannot fail");
        B64.encode([&nonce[..], &sealed].concat())
    }

    fn open(&self, sealed: &str, bound_to: &str) -> Result<String, String> {
        let bytes = B64.decode(sealed).map_err(|_| "a stored token is not base64".to_owned())?;
        if bytes.len() < 24 {
            return Err("a stored token is too short".into());
        }
        let (nonce, sealed) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("split at 24");
        let opened = self
            .0
            .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: bound_to.as_bytes() })
            .map_err(|_| format!("the stored tokens do not open with this key (was SYNCLINE_TOKEN_KEY changed?); set the key they were stored with, or re-authorize: {}", syncline_connectors::quickbooks::REAUTHORIZE))?;
        String::from_utf8(opened).map_err(|_| "a stored token is not text".into())
    }
}

/// The state store as a [`TokenVault`] for one provider.
pub struct StoreVault {
    store: Store,
    provider: &'static str,
    cipher: TokenCipher,
}

impl StoreVault {
    pub fn new(store: Store, provider: &'static str, cipher: TokenCipher) -> Arc<StoreVault> {
        Arc::new(StoreVault { store, provider, cipher })
    }

    fn bound(&self, account: &str, which: &str) -> String {
        format!("{}/{account}/{which}", self.provider)
    }
}

fn failed(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::new(ErrorClass::Transient { retry_after: None }, format!("the state store: {e}"))
}

impl TokenVault for StoreVault {
    fn load<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, ConnectorError>> {
        Box::pin(async move {
            let Some(sealed) = self.store.oauth_tokens(self.provider, account).await.map_err(failed)? else { return Ok(None) };
            let open = |text: &str, which: &str| {
                self.cipher.open(text, &self.bound(account, which)).map_err(|why| ConnectorError::new(ErrorClass::Config, why))
            };
            let expires_at = chrono::DateTime::parse_from_rfc3339(&sealed.expires_at).map_err(failed)?.with_timezone(&chrono::Utc);
            Ok(Some(Tokens {
                access_token: open(&sealed.access_token, "access")?,
                refresh_token: open(&sealed.refresh_token, "refresh")?,
                expires_at,
            }))
        })
    }

    fn save<'a>(&'a self, account: &'a str, tokens: &'a Tokens) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let sealed = SealedTokens {
                access_token: self.cipher.seal(&tokens.access_token, &self.bound(account, "access")),
                refresh_token: self.cipher.seal(&tokens.refresh_token, &self.bound(account, "refresh")),
                expires_at: tokens.expires_at.to_rfc3339(),
            };
            self.store.save_oauth_tokens(self.provider, account, &sealed).await.map_err(failed)
        })
    }

    fn hold_refresh<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Box<dyn Send>, ConnectorError>> {
        Box::pin(async move {
            // a token endpoint call takes seconds; an instance that holds the lock for minutes is stuck
            let wait = std::time::Duration::from_secs(120);
            match tokio::time::timeout(wait, self.store.lock_refresh(self.provider, account)).await {
                Ok(held) => Ok(Box::new(held.map_err(failed)?) as Box<dyn Send>),
                Err(_) => Err(ConnectorError::new(
                    syncline_core::ErrorClass::Transient { retry_after: None },
                    format!("another instance has been refreshing the {} tokens of {account} for {} s", self.provider, wait.as_secs()),
                )),
            }
        })
    }
}

/// The state store as the [`LinkVault`] of a sink (which item stands for which record key) and
/// its [`Ledger`] (the audit trail of what it decided).
pub struct StoreLinks(Store);

impl StoreLinks {
    pub fn new(store: Store) -> Arc<StoreLinks> {
        Arc::new(StoreLinks(store))
    }
}

impl LinkVault for StoreLinks {
    fn load<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, ConnectorError>> {
        Box::pin(async move { self.0.remote_ids(target).await.map_err(failed) })
    }

    fn save<'a>(&'a self, target: &'a str, links: &'a [(String, String)]) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move { self.0.save_remote_ids(target, links).await.map_err(failed) })
    }
}

impl Ledger for StoreLinks {
    fn record<'a>(&'a self, entries: &'a [(String, String, serde_json::Value)]) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move { self.0.append_events(None, entries).await.map_err(failed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> TokenCipher {
        let key = B64.encode([byte; 32]);
        TokenCipher::from_env(&|name| (name == "SYNCLINE_TOKEN_KEY").then(|| key.clone())).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_account() {
        let sealed = cipher(7).seal("refresh-1", "quickbooks/a/refresh");
        assert!(!sealed.contains("refresh-1"));
        assert_eq!(cipher(7).open(&sealed, "quickbooks/a/refresh").unwrap(), "refresh-1");
        assert!(cipher(8).open(&sealed, "quickbooks/a/refresh").unwrap_err().contains("SYNCLINE_TOKEN_KEY"));
        assert!(cipher(7).open(&sealed, "quickbooks/b/refresh").is_err(), "bound to its account");
        assert!(TokenCipher::from_env(&|_| None).unwrap_err().contains("openssl rand"));
        assert!(TokenCipher::from_env(&|_| Some("c2hvcnQ=".into())).unwrap_err().contains("not 32"));
    }
}
