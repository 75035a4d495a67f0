//! The standing of tokens, kept in memory in each instance (DESIGN.md section 7): a token's
//! standing is read from the store once and remembered, and everything remembered is dropped
//! when the store's trust counter moves. The counter moves in the same transaction as every
//! change to any token's standing (a token or certificate revoked, a client deleted or
//! registered); this process's own changes are seen at once, another instance's within
//! [`RECHECK`] (the counter is read at most that often), so no remembered standing outlives a
//! change by more than a second.
//!
//! A standing read while a change was being made is not remembered if this process made the
//! change; if another instance made it, the next look at the counter drops it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use certbound_store::{StoreError, TokenReference, TokenStanding, TokenStandingStore};

use crate::access_token::{AccessTokenClaims, Standing, judge};

/// How often the trust counter is read: another instance's change is seen within this.
pub const RECHECK: Duration = Duration::from_millis(500);

/// The most standings remembered at once (all are dropped beyond).
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, TokenStanding>,
    /// The store's count of this process's changes, as last seen.
    local: u64,
    /// The trust counter, as last read.
    version: i64,
    /// When the counter was last read.
    checked: Option<Instant>,
}

impl State {
    fn forget(&mut self) {
        self.entries.clear();
    }
}

/// Remembered standings. One per instance, shared by its requests.
#[derive(Debug, Default)]
pub struct StandingCache {
    state: Mutex<State>,
    lookups: crate::Lookups,
}

impl StandingCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Standings found in memory and read from the store, since the start.
    pub fn lookups(&self) -> (u64, u64) {
        self.lookups.totals()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`crate::standing`], from memory when the store has not changed since.
    pub async fn standing(
        &self,
        store: &dyn TokenStandingStore,
        claims: &AccessTokenClaims,
        presented: Option<&str>,
    ) -> Result<Standing, StoreError> {
        let reference = TokenReference {
            jti: &claims.jti,
            client_id: &claims.client_id,
            registration_id: &claims.rid,
            thumbprint: &claims.cnf.x5t_s256,
        };
        let key = format!(
            "{}|{}|{}|{}",
            reference.jti, reference.client_id, reference.registration_id, reference.thumbprint
        );
        let (local, version) = self.current(store).await?;
        if let Some(known) = self.state().entries.get(&key).copied() {
            self.lookups.hit();
            return Ok(judge(claims, presented, known));
        }
        self.lookups.miss();
        let known = store.token_standing(&reference).await?;
        let mut state = self.state();
        // Remembered only if nothing changed while it was read.
        if store.local_changes() == local && state.local == local && state.version == version {
            if state.entries.len() >= CAPACITY {
                state.forget();
            }
            state.entries.insert(key, known);
        }
        Ok(judge(claims, presented, known))
    }

    /// Drops what a change made stale: at once for this process's changes, and after reading
    /// the trust counter when it was last read [`RECHECK`] ago or more.
    async fn current(&self, store: &dyn TokenStandingStore) -> Result<(u64, i64), StoreError> {
        let local = store.local_changes();
        let due = {
            let mut state = self.state();
            if state.local != local {
                state.forget();
                state.local = local;
            }
            let due = state
                .checked
                .is_none_or(|checked| checked.elapsed() >= RECHECK);
            if due {
                // One request reads the counter; the others go on with what is known.
                state.checked = Some(Instant::now());
            }
            due
        };
        if due {
            let version = match store.trust_version().await {
                Ok(version) => version,
                Err(error) => {
                    self.state().checked = None;
                    return Err(error);
                }
            };
            let mut state = self.state();
            if state.version != version {
                state.forget();
                state.version = version;
            }
        }
        let state = self.state();
        Ok((state.local, state.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use certbound_store::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn claims() -> AccessTokenClaims {
        crate::sample_claims(200)
    }

    /// A store of another instance's: its changes do not move this process's local count.
    struct Remote {
        memory: MemoryStore,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl TokenStandingStore for Remote {
        async fn trust_version(&self) -> Result<i64, StoreError> {
            self.memory.trust_version().await
        }
        fn local_changes(&self) -> u64 {
            0
        }
        async fn token_standing(
            &self,
            token: &TokenReference<'_>,
        ) -> Result<TokenStanding, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.memory.token_standing(token).await
        }
    }

    #[tokio::test]
    async fn remembered_until_a_change_here_at_once_or_elsewhere_within_the_recheck() {
        let store = Remote {
            memory: MemoryStore::new(),
            reads: AtomicUsize::new(0),
        };
        store.memory.register("client", "registration");
        let cache = StandingCache::new();
        let token = claims();
        for _ in 0..5 {
            let standing = cache.standing(&store, &token, Some("bound")).await;
            assert_eq!(standing.ok(), Some(Standing::Good));
        }
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            1,
            "read once, then remembered"
        );
        // Another instance revokes the token: seen once the counter is read again.
        store.memory.revoke_token("jti");
        tokio::time::sleep(RECHECK + Duration::from_millis(50)).await;
        let standing = cache.standing(&store, &token, Some("bound")).await;
        assert_eq!(standing.ok(), Some(Standing::Revoked));
        // The binding is decided on every call, remembered or not.
        let standing = cache.standing(&store, &token, Some("other")).await;
        assert_eq!(standing.ok(), Some(Standing::BoundElsewhere));
    }

    #[tokio::test]
    async fn this_processs_own_change_is_seen_at_once() {
        let store = MemoryStore::new();
        store.register("client", "registration");
        let cache = StandingCache::new();
        let token = claims();
        let standing = cache.standing(&store, &token, None).await;
        assert_eq!(standing.ok(), Some(Standing::Good));
        store.delete_client("client");
        let standing = cache.standing(&store, &token, None).await;
        assert_eq!(
            standing.ok(),
            Some(Standing::ClientGone),
            "no wait for the recheck"
        );
    }
}
