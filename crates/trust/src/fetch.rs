//! Fetching JWK Sets over HTTPS (the directory's `/jwks` and each client's `jwks_uri`), with a
//! cache: a set is reused until it expires, and refetched early on an unknown `kid` at most once
//! per [`REFETCH_INTERVAL`] per URI, so a client cannot make the server hammer the keystore.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certbound_jose::VerificationKey;
use tokio::sync::Mutex;

/// How long a fetched set is trusted.
pub const CACHE_TTL: i64 = 300;
/// The least time between two fetches of one URI.
pub const REFETCH_INTERVAL: i64 = 5;

/// Where keys come from: HTTPS in production, anything in tests.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The JWK Set at `uri`, as JSON.
    async fn fetch(&self, uri: &str) -> Result<serde_json::Value, String>;
}

/// A reqwest client that trusts only the directory CA.
#[derive(Debug, Clone)]
pub struct HttpsKeySource {
    client: reqwest::Client,
}

impl HttpsKeySource {
    /// Trusts `ca_pem` only; no client certificate (the keystore is public).
    pub fn new(ca_pem: &str) -> Result<Self, String> {
        let ca =
            reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|error| error.to_string())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl KeySource for HttpsKeySource {
    async fn fetch(&self, uri: &str) -> Result<serde_json::Value, String> {
        let response = self
            .client
            .get(uri)
            .send()
            .await
            .map_err(|error| format!("{uri}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("{uri} answered {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|error| format!("{uri}: {error}"))
    }
}

#[derive(Clone)]
struct Entry {
    set: Arc<serde_json::Value>,
    keys: Vec<VerificationKey>,
    fetched_at: i64,
    /// Bumped by every fetch: a request that waited for another's fetch sees it came.
    generation: u64,
}

/// The cache over a [`KeySource`]. One fetch per URI at a time (single flight): concurrent
/// requests that miss wait for that fetch and share its answer instead of each refetching.
pub struct KeyCache {
    source: Box<dyn KeySource>,
    entries: Mutex<HashMap<String, Entry>>,
    flights: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache over `source`.
    pub fn new(source: Box<dyn KeySource>) -> Self {
        Self {
            source,
            entries: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The keys at `uri` that may verify a token with header `kid`: from the cache while it is
    /// fresh and knows the `kid`, refetched otherwise (rate-limited).
    pub async fn keys(
        &self,
        uri: &str,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Vec<VerificationKey>, String> {
        let knows =
            |entry: &Entry| kid.is_none_or(|kid| entry.keys.iter().any(|key| key.kid == kid));
        Ok(self.entry(uri, now, knows).await?.keys)
    }

    /// Whether the JWK Set at `uri` publishes a key with this `x5t#S256`: from the cache while it
    /// is fresh and does, refetched otherwise (rate-limited, like an unknown `kid`).
    pub async fn publishes_thumbprint(
        &self,
        uri: &str,
        thumbprint: &str,
        now: i64,
    ) -> Result<bool, String> {
        let publishes = |entry: &Entry| {
            entry
                .set
                .get("keys")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|keys| {
                    keys.iter().any(|key| {
                        key.get("x5t#S256").and_then(serde_json::Value::as_str) == Some(thumbprint)
                    })
                })
        };
        let entry = self.entry(uri, now, publishes).await?;
        Ok(publishes(&entry))
    }

    /// The cached set at `uri` if it is fresh and has what is `wanted` (or may not be refetched
    /// yet), else a fetch, one at a time per URI.
    async fn entry(
        &self,
        uri: &str,
        now: i64,
        wanted: impl Fn(&Entry) -> bool,
    ) -> Result<Entry, String> {
        let usable = |entry: &Entry| {
            let fresh = now - entry.fetched_at < CACHE_TTL;
            let may_refetch = now - entry.fetched_at >= REFETCH_INTERVAL;
            fresh && (wanted(entry) || !may_refetch)
        };
        let cached = self.entries.lock().await.get(uri).cloned();
        if let Some(entry) = cached.as_ref().filter(|entry| usable(entry)) {
            return Ok(entry.clone());
        }
        let flight = self
            .flights
            .lock()
            .await
            .entry(uri.to_owned())
            .or_default()
            .clone();
        let _turn = flight.lock().await;
        // Another request fetched while this one waited: share its answer.
        let seen = cached.as_ref().map(|entry| entry.generation);
        if let Some(entry) = self.entries.lock().await.get(uri)
            && Some(entry.generation) != seen
        {
            return Ok(entry.clone());
        }
        let set = match self.source.fetch(uri).await {
            Ok(set) => set,
            // A keystore outage does not lock out clients whose keys we hold (a revoked key is
            // refused by the directory's records, not by this cache).
            Err(error) => return cached.ok_or(error),
        };
        let keys: Vec<VerificationKey> = set
            .get("keys")
            .and_then(|keys| keys.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| VerificationKey::from_jwk_json(key).ok())
                    .collect()
            })
            .unwrap_or_default();
        let entry = Entry {
            set: Arc::new(set),
            keys,
            fetched_at: now,
            generation: self
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        };
        self.entries
            .lock()
            .await
            .insert(uri.to_owned(), entry.clone());
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(Arc<AtomicUsize>);

    #[async_trait]
    impl KeySource for Counting {
        async fn fetch(&self, _uri: &str) -> Result<serde_json::Value, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(
                serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}),
            )
        }
    }

    #[tokio::test]
    async fn unknown_kid_refetches_at_most_every_few_seconds() {
        let count = Arc::new(AtomicUsize::new(0));
        let cache = KeyCache::new(Box::new(Counting(count.clone())));
        assert_eq!(cache.keys("u", Some("a"), 1000).await.unwrap().len(), 1);
        cache.keys("u", Some("a"), 1001).await.unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "a known kid is served from the cache"
        );
        cache.keys("u", Some("zzz"), 1002).await.unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "an unknown kid within the interval does not refetch"
        );
        cache
            .keys("u", Some("zzz"), 1000 + REFETCH_INTERVAL)
            .await
            .unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "after the interval it refetches"
        );
        cache.keys("u", Some("a"), 1005 + CACHE_TTL).await.unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            3,
            "an expired entry is refetched"
        );
    }

    /// A source that answers slowly, so concurrent misses overlap.
    struct Slow(Arc<AtomicUsize>);

    #[async_trait]
    impl KeySource for Slow {
        async fn fetch(&self, uri: &str) -> Result<serde_json::Value, String> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Counting(self.0.clone()).fetch(uri).await
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let count = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(KeyCache::new(Box::new(Slow(count.clone()))));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let cache = cache.clone();
            tasks.spawn(async move {
                cache
                    .keys("u", Some("a"), 1000)
                    .await
                    .map(|keys| keys.len())
            });
        }
        while let Some(outcome) = tasks.join_next().await {
            assert_eq!(outcome.ok().and_then(Result::ok), Some(1));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "twenty misses, one fetch");
    }

    #[tokio::test]
    async fn a_published_thumbprint_is_looked_up_in_the_cache() {
        struct Published(Arc<AtomicUsize>);
        #[async_trait]
        impl KeySource for Published {
            async fn fetch(&self, _uri: &str) -> Result<serde_json::Value, String> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(serde_json::json!({"keys": [{"kty": "RSA", "x5t#S256": "mine"}]}))
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        let cache = KeyCache::new(Box::new(Published(count.clone())));
        for now in [1000, 1001, 1002] {
            assert_eq!(cache.publishes_thumbprint("u", "mine", now).await, Ok(true));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "found in the cache");
        assert_eq!(
            cache.publishes_thumbprint("u", "other", 1003).await,
            Ok(false)
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "no refetch within the interval"
        );
        assert_eq!(
            cache
                .publishes_thumbprint("u", "other", 1000 + REFETCH_INTERVAL)
                .await,
            Ok(false)
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "an unknown thumbprint refetches, rate-limited"
        );
    }
}
