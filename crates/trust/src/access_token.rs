//! The access token: an ES256 JWT with the seed's claims and an RFC 8705 `cnf` binding it to the
//! certificate the client presented. Verified with the issuer's published keys; honoured only
//! while [`standing`] says so. Introspection and the Cards API both ask [`standing`], so they
//! cannot disagree.

use certbound_jose::{AlgorithmPolicy, VerificationKey, verify_jws};
use certbound_store::{StoreError, TokenReference, TokenStanding, TokenStandingStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocabulary::{ClientId, Jti, OrganisationId, RegistrationId, SoftwareId, Thumbprint};

/// RFC 8705 §3.1 confirmation: the SHA-256 thumbprint of the bound certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// base64url SHA-256 of the DER certificate.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Thumbprint,
}

/// The claims of a certbound access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The issuer.
    pub iss: String,
    /// The client (`client_id`).
    pub sub: ClientId,
    /// Audiences: the client itself.
    pub aud: Vec<String>,
    /// Granted scopes.
    pub scp: Vec<String>,
    /// The certificate binding.
    pub cnf: Confirmation,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id (revocation key).
    pub jti: Jti,
    /// Tenant.
    pub tid: String,
    /// The client id (same as `sub`).
    pub client_id: ClientId,
    /// The client's organisation: resource servers isolate tenants by it.
    pub org_id: OrganisationId,
    /// The client's software id.
    pub software_id: SoftwareId,
    /// The registration the token was issued under: a client deleted and registered anew has
    /// another, so the old registration's tokens never work again. (Tokens issued before this
    /// claim existed carry none, and match only a registration made before it existed.)
    #[serde(default)]
    pub rid: RegistrationId,
}

/// Why an access token is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Signature, algorithm or shape.
    #[error("the access token is not a valid token of this issuer: {0}")]
    Invalid(String),
    /// `exp` passed or `nbf` ahead.
    #[error("the access token has expired or is not yet valid")]
    Expired,
    /// Another issuer.
    #[error("the access token was issued by another issuer")]
    Issuer,
}

/// Verifies an access token's signature (ES256 only, keys of the issuer), issuer and times.
/// Whether it may still be honoured is the second step, [`standing`].
pub fn verify_access_token(
    token: &str,
    keys: &[VerificationKey],
    issuer: &str,
    now: i64,
) -> Result<AccessTokenClaims, TokenError> {
    let verified = verify_jws(
        token,
        keys,
        &AlgorithmPolicy::new([certbound_jose::Algorithm::ES256]),
    )
    .map_err(|error| TokenError::Invalid(error.to_string()))?;
    let claims: AccessTokenClaims = serde_json::from_value(Value::Object(verified.claims))
        .map_err(|error| TokenError::Invalid(error.to_string()))?;
    if claims.iss != issuer {
        return Err(TokenError::Issuer);
    }
    if claims.exp <= now || claims.nbf > now + 60 {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// A verified token's standing: honoured, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The certificate the token is bound to is not the one presented (RFC 8705 §3).
    BoundElsewhere,
    /// The directory revoked the certificate the token is bound to.
    CertificateRevoked,
    /// The client was deleted, or deleted and registered anew, since the token was issued.
    ClientGone,
    /// Honoured.
    Good,
    /// The token was revoked (RFC 7009).
    Revoked,
}

impl Standing {
    /// What the refusal tells the caller.
    pub fn description(self) -> &'static str {
        match self {
            Self::BoundElsewhere => {
                "the access token is bound to another certificate: present the one it was issued to"
            }
            Self::CertificateRevoked => {
                "the certificate this token is bound to was revoked by the directory"
            }
            Self::ClientGone => {
                "the client this token was issued to is no longer registered: register and get a new token"
            }
            Self::Good => "the access token is good",
            Self::Revoked => "the access token was revoked",
        }
    }
}

/// The standing of a verified token. `presented` is the `x5t#S256` of the certificate on this
/// connection, where the token is used as a credential (the Cards API); `None` where it is only
/// looked at (introspection), and then the binding is not compared but the bound certificate's
/// revocation still counts. One store read, then [`judge`].
pub async fn standing(
    store: &dyn TokenStandingStore,
    claims: &AccessTokenClaims,
    presented: Option<&str>,
) -> Result<Standing, StoreError> {
    if let Some(presented) = presented
        && !bound_to(claims, presented)
    {
        return Ok(Standing::BoundElsewhere);
    }
    let known = store
        .token_standing(&TokenReference {
            jti: &claims.jti,
            client_id: &claims.client_id,
            registration_id: &claims.rid,
            thumbprint: &claims.cnf.x5t_s256,
        })
        .await?;
    Ok(judge(claims, presented, known))
}

/// RFC 8705 §3: the token's `cnf.x5t#S256` is the presented certificate's, compared in
/// constant time.
fn bound_to(claims: &AccessTokenClaims, presented: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(
        claims.cnf.x5t_s256.as_bytes(),
        presented.as_bytes(),
    )
    .is_ok()
}

/// The decision itself, over what the store knows of the token: no I/O.
pub fn judge(
    claims: &AccessTokenClaims,
    presented: Option<&str>,
    known: TokenStanding,
) -> Standing {
    if presented.is_some_and(|presented| !bound_to(claims, presented)) {
        Standing::BoundElsewhere
    } else if known.certificate_revoked {
        Standing::CertificateRevoked
    } else if known.token_revoked {
        Standing::Revoked
    } else if !known.client_exists {
        Standing::ClientGone
    } else {
        Standing::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessTokenClaims {
        crate::sample_claims(200)
    }

    const CLEAN: TokenStanding = TokenStanding {
        certificate_revoked: false,
        token_revoked: false,
        client_exists: true,
    };

    #[test]
    fn each_reason_against_a_token() {
        let cases = [
            ("good", Some("bound"), CLEAN, Standing::Good),
            ("looked at, not presented", None, CLEAN, Standing::Good),
            (
                "bound to another certificate",
                Some("other"),
                CLEAN,
                Standing::BoundElsewhere,
            ),
            (
                "bound certificate revoked",
                Some("bound"),
                TokenStanding {
                    certificate_revoked: true,
                    ..CLEAN
                },
                Standing::CertificateRevoked,
            ),
            (
                "bound certificate revoked, only looked at (introspection)",
                None,
                TokenStanding {
                    certificate_revoked: true,
                    ..CLEAN
                },
                Standing::CertificateRevoked,
            ),
            (
                "token revoked",
                Some("bound"),
                TokenStanding {
                    token_revoked: true,
                    ..CLEAN
                },
                Standing::Revoked,
            ),
            (
                "client deleted or registered anew",
                Some("bound"),
                TokenStanding {
                    client_exists: false,
                    ..CLEAN
                },
                Standing::ClientGone,
            ),
        ];
        for (name, presented, known, expected) in cases {
            assert_eq!(judge(&claims(), presented, known), expected, "{name}");
        }
    }

    /// The life of one token over the in-memory store (the same trait as SQLite and
    /// PostgreSQL): each event that must end it does, and a new registration does not revive it.
    #[tokio::test]
    async fn a_token_through_the_events_that_end_it() {
        let store = certbound_store::MemoryStore::new();
        let token = claims();
        let at = |presented| standing(&store, &token, presented);
        assert_eq!(at(Some("bound")).await.ok(), Some(Standing::ClientGone));
        store.register("client", "registration");
        assert_eq!(at(Some("bound")).await.ok(), Some(Standing::Good));
        assert_eq!(at(Some("other")).await.ok(), Some(Standing::BoundElsewhere));
        store.delete_client("client");
        store.register("client", "registered anew");
        assert_eq!(at(Some("bound")).await.ok(), Some(Standing::ClientGone));
        store.register("client", "registration");
        store.revoke_token("jti");
        assert_eq!(at(None).await.ok(), Some(Standing::Revoked));
        store.revoke_certificate("bound");
        assert_eq!(at(None).await.ok(), Some(Standing::CertificateRevoked));
    }

    #[test]
    fn a_token_without_rid_reads_as_the_empty_registration() {
        let mut value = serde_json::to_value(claims()).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.remove("rid");
        }
        let parsed: AccessTokenClaims = serde_json::from_value(value).unwrap_or_else(|_| claims());
        assert_eq!(parsed.rid.as_str(), "");
    }
}
