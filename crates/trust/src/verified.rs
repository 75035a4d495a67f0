//! Verified access tokens remembered until they expire, so a resource server checks each token's
//! signature once, not on every call (an ES256 verification costs more than the rest of a Cards
//! API read). Only the signature check is remembered: the token's standing (revoked, client gone,
//! certificate revoked, bound elsewhere) is decided on every call by [`crate::standing`].
//!
//! Keyed by the SHA-256 of the token; bounded in size, so that a flood of distinct valid tokens
//! costs at most [`CAPACITY`] entries (expired ones are dropped first, then everything).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::access_token::AccessTokenClaims;

/// The most tokens remembered at once.
pub(crate) const CAPACITY: usize = 100_000;

/// The memory of verified tokens.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Arc<AccessTokenClaims>>>,
    lookups: crate::Lookups,
}

fn key(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

impl VerifiedTokens {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The claims of `token` if it was verified before and has not expired at `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<AccessTokenClaims>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let found = entries
            .get(&key(token))
            .filter(|claims| claims.exp > now)
            .cloned();
        self.lookups.count(found.is_some());
        found
    }

    /// Tokens found verified and not, since the start.
    pub fn lookups(&self) -> (u64, u64) {
        self.lookups.totals()
    }

    /// Remembers a token [`crate::verify_access_token`] accepted; returns its claims, shared.
    pub fn insert(
        &self,
        token: &str,
        claims: AccessTokenClaims,
        now: i64,
    ) -> Arc<AccessTokenClaims> {
        let claims = Arc::new(claims);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, remembered| remembered.exp > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key(token), claims.clone());
        claims
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessTokenClaims {
        crate::sample_claims(exp)
    }

    #[test]
    fn a_token_is_remembered_until_it_expires() {
        let memory = VerifiedTokens::new();
        assert!(memory.get("a.b.c", 150).is_none());
        memory.insert("a.b.c", claims(200), 150);
        assert_eq!(memory.get("a.b.c", 199).map(|c| c.exp), Some(200));
        assert!(memory.get("a.b.c", 200).is_none(), "expired");
        assert!(memory.get("a.b.d", 150).is_none(), "another token");
    }

    #[test]
    fn the_memory_is_bounded() {
        let memory = VerifiedTokens::new();
        for n in 0..CAPACITY {
            memory.insert(
                &format!("token-{n}"),
                claims(if n % 2 == 0 { 120 } else { 500 }),
                110,
            );
        }
        assert_eq!(memory.len(), CAPACITY);
        // Full: the expired half goes first.
        memory.insert("one more", claims(500), 130);
        assert_eq!(memory.len(), CAPACITY / 2 + 1);
    }
}
