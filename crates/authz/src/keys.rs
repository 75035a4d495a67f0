//! The authorization server's token signing keys (ES256), with rotation.
//!
//! Keys live sealed in the store, shared by every instance. A rotation inserts a key that is
//! published in the JWKS at once but signs only from `activates_at` (after every instance has
//! reloaded), and gives the older keys a `retires_at` after the last token they signed has
//! expired; until then they stay in the JWKS. Instances reload the ring every
//! [`RELOAD_INTERVAL`] seconds, or at once when asked to verify an unknown `kid`.

use std::sync::Arc;

use certbound_jose::{SigningKey, VerificationKey};
use certbound_pki::{Jwk, JwkSet, PrivateKey, SigningKeyKind};
use certbound_store::{AuthzStore, MasterKey, SigningKeyRecord};
use tokio::sync::RwLock;

use crate::AuthzError;

/// How stale an instance's view of the key ring may be, seconds.
pub const RELOAD_INTERVAL: i64 = 10;
/// How long a rotated-in key is published before it signs, by default.
pub const DEFAULT_PUBLISH_DELAY: i64 = 60;
/// The shortest publish delay: every instance's ring sees the new key within
/// [`RELOAD_INTERVAL`], and a resource server that cached the JWKS without it refetches an
/// unknown `kid` within [`certbound_trust::fetch::REFETCH_INTERVAL`] more; 5 s of slack on top.
pub const MIN_PUBLISH_DELAY: i64 = RELOAD_INTERVAL + certbound_trust::fetch::REFETCH_INTERVAL + 5;

/// The name a token signing key is sealed under (the master key's associated data).
pub fn sealed_name(kid: &str) -> String {
    format!("token-signing-key:{kid}")
}

/// Creates a token signing key that signs from `activates_at`, and retires the older keys once
/// their tokens (lifetime `token_lifetime`) have expired. Returns the new `kid`.
pub async fn rotate(
    store: &dyn AuthzStore,
    master: &MasterKey,
    now: i64,
    activates_at: i64,
    token_lifetime: i64,
) -> Result<String, AuthzError> {
    // A newer key always activates after every older one, so "the last active key signs" is
    // never a tie.
    let latest = store
        .signing_keys()
        .await?
        .iter()
        .map(|record| record.activates_at)
        .max();
    let activates_at = latest.map_or(activates_at, |latest| activates_at.max(latest + 1));
    let key = PrivateKey::generate(SigningKeyKind::EcdsaP256)
        .map_err(|error| AuthzError::Internal(error.to_string()))?;
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let jwk = key
        .public_jwk(&kid, "sig", "ES256")
        .map_err(|error| AuthzError::Internal(error.to_string()))?;
    let record = SigningKeyRecord {
        kid: kid.clone(),
        sealed: master
            .seal(&sealed_name(&kid), key.pkcs8_der())
            .map_err(|error| AuthzError::Internal(error.to_string()))?,
        public_jwk: serde_json::to_string(&jwk)
            .map_err(|error| AuthzError::Internal(error.to_string()))?,
        created_at: now,
        activates_at,
        retires_at: None,
    };
    store.insert_signing_key(&record).await?;
    store
        .retire_signing_keys(activates_at, activates_at + token_lifetime + 60)
        .await?;
    tracing::info!(kid, activates_at, "token signing key created");
    Ok(kid)
}

/// What an instance signs with and publishes.
#[derive(Debug)]
pub(crate) struct Ring {
    signing: Option<SigningKey>,
    published: Vec<Jwk>,
    verification: Vec<VerificationKey>,
    loaded_at: i64,
}

impl Ring {
    pub(crate) fn verification(&self) -> &[VerificationKey] {
        &self.verification
    }
}

/// The key ring over the store.
pub(crate) struct TokenKeys {
    store: Arc<dyn crate::Store>,
    master: Arc<MasterKey>,
    ring: RwLock<Arc<Ring>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Loads the ring, creating the first key if the store has none.
    pub(crate) async fn load(
        store: Arc<dyn crate::Store>,
        master: Arc<MasterKey>,
        now: i64,
        token_lifetime: i64,
    ) -> Result<Self, AuthzError> {
        if store.signing_keys().await?.is_empty() {
            rotate(store.as_ref(), &master, now, now, token_lifetime).await?;
        }
        let ring = build(store.as_ref(), &master, now).await?;
        Ok(Self {
            store,
            master,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    /// The current ring, reloaded if stale (or if `force`, at most once a second).
    pub(crate) async fn ring(&self, now: i64, force: bool) -> Result<Arc<Ring>, AuthzError> {
        let current = self.ring.read().await.clone();
        let stale =
            now - current.loaded_at >= RELOAD_INTERVAL || (force && now > current.loaded_at);
        if !stale {
            return Ok(current);
        }
        let fresh = Arc::new(build(self.store.as_ref(), &self.master, now).await?);
        *self.ring.write().await = fresh.clone();
        Ok(fresh)
    }

    /// The key to sign with now.
    pub(crate) async fn signer(&self, now: i64) -> Result<SigningKey, AuthzError> {
        let ring = self.ring(now, false).await?;
        match &ring.signing {
            Some(key) => Ok(key.clone()),
            None => {
                let ring = self.ring(now, true).await?;
                ring.signing
                    .clone()
                    .ok_or_else(|| AuthzError::Internal("no active token signing key".into()))
            }
        }
    }

    /// The published JWKS.
    pub(crate) async fn jwks(&self, now: i64) -> Result<JwkSet, AuthzError> {
        Ok(JwkSet {
            keys: self.ring(now, false).await?.published.clone(),
        })
    }
}

async fn build(store: &dyn AuthzStore, master: &MasterKey, now: i64) -> Result<Ring, AuthzError> {
    let records = store.signing_keys().await?;
    let mut published = Vec::new();
    let mut verification = Vec::new();
    let mut signing = None;
    for record in records
        .iter()
        .filter(|record| record.retires_at.is_none_or(|retires| retires > now))
    {
        let jwk: Jwk = serde_json::from_str(&record.public_jwk)
            .map_err(|error| AuthzError::Internal(error.to_string()))?;
        let value =
            serde_json::to_value(&jwk).map_err(|error| AuthzError::Internal(error.to_string()))?;
        verification.push(
            VerificationKey::from_jwk_json(&value)
                .map_err(|error| AuthzError::Internal(error.to_string()))?,
        );
        published.push(jwk);
        if record.activates_at <= now {
            // Records come oldest activation first: the last active one signs.
            let pkcs8 = master
                .open(&sealed_name(&record.kid), &record.sealed)
                .map_err(|error| AuthzError::Internal(error.to_string()))?;
            signing = Some(
                SigningKey::es256_pkcs8(&record.kid, &pkcs8)
                    .map_err(|error| AuthzError::Internal(error.to_string()))?,
            );
        }
    }
    Ok(Ring {
        signing,
        published,
        verification,
        loaded_at: now,
    })
}
