//! OAuth tokens by provider and account (`quickbooks`, `quickbooks:<realm>`): the store keeps
//! them as the caller seals them — encrypted, so the store's file or database never holds a
//! usable token — and replaces a pair in one statement. And the ids a target service gave the
//! records written to it (`remote_ids`). And the lock one instance holds while it refreshes an
//! account's tokens, so instances sharing a PostgreSQL store refresh once between them.

use crate::{Backend, Store, StoreError, now};

/// A pair of tokens as stored: each sealed by the caller, and when the access token expires
/// (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: String,
}

/// Held while one process refreshes an account's tokens. On PostgreSQL it is a session advisory
/// lock every instance sharing the store waits on, released when this is dropped (or by
/// PostgreSQL when the holder's connection dies with its process); elsewhere it holds nothing
/// (a SQLite store has one process writing to it).
pub struct RefreshLock(Option<(sqlx::pool::PoolConnection<sqlx::Any>, i64)>);

impl Drop for RefreshLock {
    fn drop(&mut self) {
        let Some((mut connection, key)) = self.0.take() else { return };
        // unlocking is a query; without a runtime the pool, and the connection with its lock,
        // are going away anyway
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *connection).await.is_err() {
                    // a connection whose unlock failed must not go back to the pool holding it
                    let _ = connection.close().await;
                }
            });
        }
    }
}

/// The advisory lock key of an account's refresh: FNV-1a of provider and account.
fn refresh_key(provider: &str, account: &str) -> i64 {
    let hash = format!("oauth-refresh/{provider}/{account}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash as i64
}

impl Store {
    /// Waits until no other instance refreshes `account`'s tokens, and holds that until the
    /// lock is dropped (see [`RefreshLock`]).
    pub async fn lock_refresh(&self, provider: &str, account: &str) -> Result<RefreshLock, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(RefreshLock(None));
        }
        let key = refresh_key(provider, account);
        let mut connection = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut *connection).await?;
        Ok(RefreshLock(Some((connection, key))))
    }

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
