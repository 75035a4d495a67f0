//! Fetching JWK Sets over HTTPS (the directory's `/jwks` and each client's `jwks_uri`), with a
//! cache: a set is reused until it expires, and refetched early on an unknown `kid` at most once
//! per [`REFETCH_INTERVAL`] per URI, so a client cannot make the server hammer the keystore.

use std::collections::HashMap;
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
    keys: Vec<VerificationKey>,
    fetched_at: i64,
}

/// The cache over a [`KeySource`].
pub struct KeyCache {
    source: Box<dyn KeySource>,
    entries: Mutex<HashMap<String, Entry>>,
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
        let cached = self.entries.lock().await.get(uri).cloned();
        if let Some(entry) = &cached {
            let fresh = now - entry.fetched_at < CACHE_TTL;
            let knows = kid.is_none_or(|kid| entry.keys.iter().any(|key| key.kid == kid));
            let may_refetch = now - entry.fetched_at >= REFETCH_INTERVAL;
            if fresh && (knows || !may_refetch) {
                return Ok(entry.keys.clone());
            }
        }
        let set = match self.source.fetch(uri).await {
            Ok(set) => set,
            // A keystore outage does not lock out clients whose keys we hold.
            Err(error) => return cached.map(|entry| entry.keys).ok_or(error),
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
        self.entries.lock().await.insert(
            uri.to_owned(),
            Entry {
                keys: keys.clone(),
                fetched_at: now,
            },
        );
        Ok(keys)
    }

    /// The raw JWK Set at `uri` (for `x5t#S256` lookups), uncached.
    pub async fn raw(&self, uri: &str) -> Result<serde_json::Value, String> {
        self.source.fetch(uri).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
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
}
