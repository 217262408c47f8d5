//! OAuth tokens by provider and account (`quickbooks`, `quickbooks:<realm>`): the store keeps
//! them as the caller seals them — encrypted, so the store's file or database never holds a
//! usable token — and replaces a pair in one statement. And the ids a target service gave the
//! records written to it (`remote_ids`).

use crate::{Store, StoreError, now};

/// A pair of tokens as stored: each sealed by the caller, and when the access token expires
/// (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: String,
}

impl Store {
    pub async fn oauth_tokens(&self, provider: &str, account: &str) -> Result<Option<SealedTokens>, StoreError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT access_token, refresh_token, expires_at FROM oauth_tokens WHERE provider = $1 AND account = $2")
                .bind(provider)
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(access_token, refresh_token, expires_at)| SealedTokens { access_token, refresh_token, expires_at }))
    }

    /// Stores a pair, replacing the account's previous one.
    pub async fn save_oauth_tokens(&self, provider: &str, account: &str, tokens: &SealedTokens) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_tokens (provider, account, access_token, refresh_token, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (provider, account) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token, \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(account)
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(&tokens.expires_at)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Every record key of `target` with the id of its object there.
    pub async fn remote_ids(&self, target: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT record_key, remote_id FROM remote_ids WHERE target = $1").bind(target).fetch_all(&self.pool).await?)
    }

    /// Keeps the ids of objects written for these record keys, in one transaction.
    pub async fn save_remote_ids(&self, target: &str, ids: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        for (key, id) in ids {
            sqlx::query(
                "INSERT INTO remote_ids (target, record_key, remote_id, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (target, record_key) DO UPDATE SET remote_id = excluded.remote_id, updated_at = excluded.updated_at",
            )
            .bind(target)
            .bind(key)
            .bind(id)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
