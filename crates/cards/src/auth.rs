//! The caller of a Cards API request: a verified, unrevoked access token bound to the
//! certificate of this connection.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use certbound_http::PeerCertificate;
use certbound_trust::{AccessTokenClaims, Standing, TokenError, verify_access_token};

use crate::{Cards, CardsError};

/// A verified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) claims: Arc<AccessTokenClaims>,
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

    /// Who a card this caller creates belongs to.
    pub(crate) fn tenant(&self) -> crate::handlers::Tenant<'_> {
        crate::handlers::Tenant {
            organisation_id: &self.claims.org_id,
            client_id: &self.claims.client_id,
        }
    }
}

/// The token's signature, issuer and times, with the authorization server's published keys.
async fn verify(cards: &Cards, token: &str, now: i64) -> Result<AccessTokenClaims, CardsError> {
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
    verify_access_token(token, &keys, &cards.config.issuer, now).map_err(|error| match error {
        TokenError::Expired => {
            CardsError::InvalidToken("the access token has expired: get a new one".into())
        }
        other => CardsError::InvalidToken(other.to_string()),
    })
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
        let claims = match cards.verified.get(token, now) {
            Some(claims) => claims,
            None => cards
                .verified
                .insert(token, verify(cards, token, now).await?, now),
        };
        // The decision introspection makes too: binding, token, client registration, certificate.
        match cards
            .standing
            .standing(&*cards.store, &claims, Some(&peer.thumbprint))
            .await?
        {
            Standing::Good => {}
            refused => return Err(CardsError::InvalidToken(refused.description().into())),
        }
        Ok(Self { claims })
    }
}
