//! The caller of a Cards API request: a verified, unrevoked access token bound to the
//! certificate of this connection.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use certbound_authz::{AccessTokenClaims, TokenError, verify_access_token};
use certbound_http::PeerCertificate;

use crate::{Cards, CardsError};

/// A verified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) claims: AccessTokenClaims,
}

impl Caller {
    /// Refuses unless the token carries `scope`.
    pub(crate) fn require(&self, scope: &'static str) -> Result<(), CardsError> {
        if self.claims.scp.iter().any(|granted| granted == scope) {
            Ok(())
        } else {
            Err(CardsError::InsufficientScope(scope))
        }
    }
}

impl FromRequestParts<Arc<Cards>> for Caller {
    type Rejection = CardsError;

    #[tracing::instrument(skip_all)]
    async fn from_request_parts(
        parts: &mut Parts,
        cards: &Arc<Cards>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                CardsError::InvalidToken(
                    "send the access token as Authorization: Bearer <token>".into(),
                )
            })?;
        let peer = parts
            .extensions
            .get::<PeerCertificate>()
            .cloned()
            .ok_or_else(|| {
                CardsError::InvalidToken(
                    "present the certificate the access token is bound to (mutual TLS)".into(),
                )
            })?;
        let now = certbound_store::clock::now();
        let keys = cards
            .token_keys
            .keys(
                &cards.config.jwks_uri,
                certbound_jose::unverified_kid(token).as_deref(),
                now,
            )
            .await
            .map_err(|error| {
                CardsError::Internal(format!("authorization server keys unavailable: {error}"))
            })?;
        let claims =
            verify_access_token(token, &keys, &cards.config.issuer, now).map_err(|error| {
                match error {
                    TokenError::Expired => CardsError::InvalidToken(
                        "the access token has expired: get a new one".into(),
                    ),
                    other => CardsError::InvalidToken(other.to_string()),
                }
            })?;
        let bound = aws_lc_rs::constant_time::verify_slices_are_equal(
            claims.cnf.x5t_s256.as_bytes(),
            peer.thumbprint.as_bytes(),
        );
        if bound.is_err() {
            return Err(CardsError::InvalidToken(
                "the access token is bound to another certificate: present the one it was issued to".into(),
            ));
        }
        // One statement: the certificate's revocation, the token's, and the client.
        let standing = cards
            .store
            .token_standing(&claims.jti, &claims.client_id, &peer.thumbprint)
            .await?;
        if standing.certificate_revoked {
            return Err(CardsError::InvalidToken(
                "the certificate this token is bound to was revoked by the directory".into(),
            ));
        }
        if standing.token_revoked || !standing.client_exists {
            return Err(CardsError::InvalidToken(
                "the access token was revoked".into(),
            ));
        }
        Ok(Self { claims })
    }
}
