//! Use a client assertion's `jti` once (RFC 7523 §3 item 7): the one rule the directory's token
//! endpoint and the authorization server both apply, over the shared store's atomic use-once
//! (step-ca's `UseToken`), so a `jti` used at one instance is refused at every other.
//!
//! The remembered id names the party that accepted the assertion and the client that made it: the
//! same `jti` from two clients, or at two parties (each with its own audience), is two uses.

use certbound_store::{ReplayStore, StoreError};

use crate::vocabulary::Jti;

/// The party that accepts a client assertion: each keeps its own record of used `jti`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptor {
    /// The authorization server's token endpoint (client = its `client_id`).
    AuthorizationServer,
    /// The directory's token endpoint on 8442 (client = the software statement id).
    Directory,
}

impl Acceptor {
    fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationServer => "authz",
            Self::Directory => "directory",
        }
    }
}

/// What came of using a `jti`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JtiUse {
    /// The first use: the assertion may be honoured.
    First,
    /// Used before, here or at another instance: refuse the assertion.
    Replayed,
}

impl JtiUse {
    /// What a refusal says (`invalid_client`), for [`JtiUse::Replayed`].
    pub fn description(self) -> &'static str {
        match self {
            Self::First => "the client assertion's jti is unused",
            Self::Replayed => "client assertion jti has already been used",
        }
    }
}

/// How long past the assertion's `exp` a used `jti` is remembered: a request that checked the
/// assertion's `exp` by its own clock and then waited (for a key's standing, behind a slow
/// commit) must still find its `jti` used if another request's clock has passed that `exp` and
/// made the store forget what had expired.
pub(crate) const REMEMBERED_PAST_EXP: i64 = 60;

/// Uses `jti` of `client`'s assertion at `acceptor`, remembered until [`REMEMBERED_PAST_EXP`]
/// after the assertion's `exp`.
pub async fn use_jti_once(
    store: &dyn ReplayStore,
    acceptor: Acceptor,
    client: &str,
    jti: &Jti,
    expires_at: i64,
    now: i64,
) -> Result<JtiUse, StoreError> {
    let id = format!("{}|{client}|{jti}", acceptor.as_str());
    let remembered_until = expires_at.saturating_add(REMEMBERED_PAST_EXP);
    Ok(if store.use_once(&id, remembered_until, now).await? {
        JtiUse::First
    } else {
        JtiUse::Replayed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbound_store::MemoryStore;

    #[tokio::test]
    async fn a_jti_is_used_once_per_client_and_acceptor() {
        let store = MemoryStore::new();
        let jti = Jti::new("abc");
        let other = Jti::new("abd");
        let expires = 1_060;
        let cases = [
            (
                "first use",
                Acceptor::AuthorizationServer,
                "client",
                &jti,
                1_000,
                JtiUse::First,
            ),
            (
                "the same assertion again",
                Acceptor::AuthorizationServer,
                "client",
                &jti,
                1_001,
                JtiUse::Replayed,
            ),
            (
                "the same again, just before it expires",
                Acceptor::AuthorizationServer,
                "client",
                &jti,
                1_060,
                JtiUse::Replayed,
            ),
            (
                "the same, by a request whose clock passed exp a moment after another's check",
                Acceptor::AuthorizationServer,
                "client",
                &jti,
                1_100,
                JtiUse::Replayed,
            ),
            (
                "another client's assertion with that jti",
                Acceptor::AuthorizationServer,
                "other client",
                &jti,
                1_002,
                JtiUse::First,
            ),
            (
                "that jti at the directory",
                Acceptor::Directory,
                "client",
                &jti,
                1_003,
                JtiUse::First,
            ),
            (
                "another jti",
                Acceptor::AuthorizationServer,
                "client",
                &other,
                1_004,
                JtiUse::First,
            ),
        ];
        for (name, acceptor, client, jti, now, expected) in cases {
            let used = use_jti_once(&store, acceptor, client, jti, expires, now).await;
            assert_eq!(used.ok(), Some(expected), "{name}");
        }
    }

    #[test]
    fn a_replay_is_named_as_before() {
        // The wording clients and the outside tests already match on.
        assert_eq!(
            JtiUse::Replayed.description(),
            "client assertion jti has already been used"
        );
    }
}
