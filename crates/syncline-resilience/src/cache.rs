//! A TTL cache for slow-changing reads (property definitions, owners, pipelines): concurrent
//! misses for one key share a single fetch, and a write that changes what was read drops every
//! entry under its prefix (`properties/contacts` after a property is created).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

/// Cached answers by key, each kept for the cache's time to live.
#[derive(Clone)]
pub struct ResponseCache<V: Send + Sync + 'static> {
    entries: Cache<String, Arc<V>>,
}

impl<V: Send + Sync + 'static> ResponseCache<V> {
    pub fn new(time_to_live: Duration, max_entries: u64) -> ResponseCache<V> {
        let entries = Cache::builder().time_to_live(time_to_live).max_capacity(max_entries).support_invalidation_closures().build();
        ResponseCache { entries }
    }

    /// The cached answer for `key`, or `fetch`'s (stored only when it succeeds). Concurrent
    /// callers of one missing key wait for one fetch.
    pub async fn get_or_fetch<E, F>(&self, key: &str, fetch: F) -> Result<Arc<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        self.entries.try_get_with(key.to_owned(), async { fetch.await.map(Arc::new) }).await
    }

    /// Stores an answer fetched some other way (a batch read that covers many keys).
    pub async fn insert(&self, key: &str, value: V) {
        self.entries.insert(key.to_owned(), Arc::new(value)).await;
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Drops every entry whose key starts with `prefix`.
    pub fn invalidate_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        // only fails when closures are not enabled, and `new` enables them
        let _ = self.entries.invalidate_entries_if(move |key, _| key.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn hits_share_one_fetch_and_prefixes_invalidate() {
        let cache: ResponseCache<String> = ResponseCache::new(Duration::from_secs(60), 100);
        let fetches = AtomicU32::new(0);
        let fetch = |value: &'static str| {
            let fetches = &fetches;
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(value.to_owned())
            }
        };
        let (a, b) =
            tokio::join!(cache.get_or_fetch("properties/contacts", fetch("v1")), cache.get_or_fetch("properties/contacts", fetch("v1")));
        assert_eq!((a.unwrap().as_str(), b.unwrap().as_str()), ("v1", "v1"));
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "concurrent misses share one fetch");
        cache.get_or_fetch("properties/deals", fetch("d1")).await.unwrap();
        cache.get_or_fetch("owners", fetch("o1")).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3);

        cache.invalidate_prefix("properties/");
        assert_eq!(cache.get_or_fetch("properties/contacts", fetch("v2")).await.unwrap().as_str(), "v2");
        assert_eq!(cache.get_or_fetch("owners", fetch("o2")).await.unwrap().as_str(), "o1", "other prefixes stay");
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_entries_expire() {
        let cache: ResponseCache<u32> = ResponseCache::new(Duration::from_millis(50), 100);
        let failed = cache.get_or_fetch("k", async { Err::<u32, _>("down") }).await;
        assert_eq!(*failed.unwrap_err(), "down");
        assert_eq!(*cache.get_or_fetch("k", async { Ok::<_, &str>(1) }).await.unwrap(), 1);
        assert_eq!(*cache.get_or_fetch("k", async { Ok::<_, &str>(2) }).await.unwrap(), 1, "still fresh");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(*cache.get_or_fetch("k", async { Ok::<_, &str>(3) }).await.unwrap(), 3, "expired");
    }
}
