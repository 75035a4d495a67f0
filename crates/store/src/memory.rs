//! An in-memory store behind the same narrow traits as SQLite and PostgreSQL, for the unit tests
//! of the trust decisions: no file, no database, no clock of its own (every call takes `now`, so
//! a test moves time by passing a later value, never by sleeping).
//!
//! It holds only what those decisions ask about: used `jti`s, revoked tokens, registrations and
//! revoked certificates. `sql_and_memory_agree` in this module's tests runs one script against
//! both implementations, so a unit test over this store says what the database would say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::StoreError;
use crate::records::{
    RateLimitStore, ReplayStore, TokenReference, TokenStanding, TokenStandingStore,
};

#[derive(Debug, Default)]
struct State {
    /// Use-once ids and when each may be forgotten.
    used: BTreeMap<String, i64>,
    /// Revoked token ids.
    revoked_tokens: BTreeSet<String>,
    /// `client_id` → its current registration id.
    registrations: BTreeMap<String, String>,
    /// Thumbprints of revoked certificates.
    revoked_certificates: BTreeSet<String>,
    /// Shared rate-limit counts by key and window start.
    hits: BTreeMap<(String, i64), i64>,
}

/// The in-memory store. Cheap to make; one per test.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    changes: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left nothing half-written: every
        // mutation below is a single map operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `client_id` under `registration_id` (replacing an earlier registration).
    pub fn register(&self, client_id: &str, registration_id: &str) {
        self.state()
            .registrations
            .insert(client_id.to_owned(), registration_id.to_owned());
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Deletes the client's registration (RFC 7592 DELETE).
    pub fn delete_client(&self, client_id: &str) {
        self.state().registrations.remove(client_id);
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Revokes the token with this `jti` (RFC 7009).
    pub fn revoke_token(&self, jti: &str) {
        self.state().revoked_tokens.insert(jti.to_owned());
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Revokes the certificate with this `x5t#S256`.
    pub fn revoke_certificate(&self, thumbprint: &str) {
        self.state()
            .revoked_certificates
            .insert(thumbprint.to_owned());
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl MemoryStore {
    /// The shared rate-limit count of `key` in the window starting at `window_start`.
    pub fn hits(&self, key: &str, window_start: i64) -> i64 {
        self.state()
            .hits
            .get(&(key.to_owned(), window_start))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn add_hits(
        &self,
        counts: &[(String, i64, i64)],
        _now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut state = self.state();
        Ok(counts
            .iter()
            .map(|(key, window_start, count)| {
                let total = state.hits.entry((key.clone(), *window_start)).or_insert(0);
                *total += count;
                *total
            })
            .collect())
    }
}

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn use_once(&self, id: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.used.retain(|_, kept_until| *kept_until >= now);
        if state.used.contains_key(id) {
            return Ok(false);
        }
        state.used.insert(id.to_owned(), expires_at);
        Ok(true)
    }
}

#[async_trait]
impl TokenStandingStore for MemoryStore {
    async fn trust_version(&self) -> Result<i64, StoreError> {
        Ok(i64::try_from(self.local_changes()).unwrap_or(i64::MAX))
    }

    fn local_changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn token_standing(
        &self,
        token: &TokenReference<'_>,
    ) -> Result<TokenStanding, StoreError> {
        let state = self.state();
        Ok(TokenStanding {
            certificate_revoked: state.revoked_certificates.contains(token.thumbprint),
            token_revoked: state.revoked_tokens.contains(token.jti),
            client_exists: state
                .registrations
                .get(token.client_id)
                .is_some_and(|registration| registration == token.registration_id),
        })
    }
}
