//! The standing of tokens, kept in memory in each instance (DESIGN.md section 7): a token's
//! standing is read from the store once and remembered ([`Remembered`]) until the store's trust
//! counter moves, which it does in the same transaction as every change to any token's standing
//! (a token or certificate revoked, a client deleted or registered).

use certbound_store::{StoreError, TokenReference, TokenStandingStore};

use crate::access_token::{AccessTokenClaims, Standing, judge};
use crate::remembered::Remembered;

/// Remembered standings. One per instance, shared by its requests.
#[derive(Debug, Default)]
pub struct StandingCache {
    remembered: Remembered<certbound_store::TokenStanding>,
}

impl StandingCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Standings found in memory and read from the store, since the start.
    pub fn lookups(&self) -> (u64, u64) {
        self.remembered.lookups()
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
        let known: certbound_store::TokenStanding = self
            .remembered
            .get(store, &key, || store.token_standing(&reference), |_| true)
            .await?;
        Ok(judge(claims, presented, known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RECHECK;
    use async_trait::async_trait;
    use certbound_store::MemoryStore;
    use certbound_store::TokenStanding;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

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
