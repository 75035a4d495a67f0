//! certbound's trust decisions, held once: every party (the directory, the authorization server,
//! the Cards API) calls these functions instead of re-deriving a rule in its handlers.
//!
//! What lives here today: using a client assertion's `jti` once; the standing of a directory certificate for a use (key role, owner,
//! validity, revocation); the access token (its claims, its verification with the authorization
//! server's *published* keys, and its standing: revoked, client deleted or registered anew,
//! bound certificate revoked, bound to another certificate) and the cache of published keys. A
//! resource server depends on this crate, never on the authorization server's.
//!
//! Decisions take `now` and a narrow store trait; they do no I/O of their own beyond the store.

mod access_token;
mod certificate;
pub mod fetch;
mod lookups;
mod remembered;
mod replay;
mod standing_cache;
mod verified;
mod vocabulary;

use lookups::Lookups;

pub use access_token::{
    AccessTokenClaims, Confirmation, Standing, TokenError, judge, standing, verify_access_token,
};
pub use certificate::{CertificateStanding, Use, certificate_standing};
pub use remembered::{RECHECK, Remembered};
pub use replay::{Acceptor, JtiUse, use_jti_once};
pub use standing_cache::StandingCache;
pub use verified::VerifiedTokens;
pub use vocabulary::{
    AuthMethod, ClientId, GrantType, Jti, OrganisationId, RegistrationId, ScopeSet, Secret,
    SoftwareId, Thumbprint,
};

/// Claims of a token bound to the certificate `bound`, of client `client` registered as
/// `registration`, for the unit tests of every module.
#[cfg(test)]
pub(crate) fn sample_claims(exp: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "https://as".into(),
        sub: ClientId::new("client"),
        aud: vec!["client".into()],
        scp: vec!["cards.read".into()],
        cnf: Confirmation {
            x5t_s256: Thumbprint::new("bound"),
        },
        exp,
        iat: 100,
        nbf: 100,
        jti: Jti::new("jti"),
        tid: "certbound".into(),
        client_id: ClientId::new("client"),
        org_id: OrganisationId::new("org"),
        software_id: SoftwareId::new("sw"),
        rid: RegistrationId::new("registration"),
    }
}
