//! The token endpoint (`client_credentials`), introspection (RFC 7662) and revocation
//! (RFC 7009). Access tokens are ES256 JWTs with the seed's claims and an RFC 8705 `cnf`
//! binding them to the certificate the client presented.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use certbound_http::{PeerCertificate, parse_form};
use certbound_trust::{
    AccessTokenClaims, ClientId, Confirmation, GrantType, Jti, OrganisationId, RegistrationId,
    ScopeSet, SoftwareId, Standing, Thumbprint, TokenError, verify_access_token,
};
use serde_json::json;

use crate::client_auth::{Client, authenticate};
use crate::{Authz, AuthzError};

fn form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<std::collections::BTreeMap<String, String>, AuthzError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    parse_form(content_type, body).map_err(|error| AuthzError::InvalidRequest(error.description()))
}

fn no_store(body: impl serde::Serialize) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

/// `POST /oauth2/token`: extract, then rate limits, client authentication, the grant, the
/// scopes, and the token, each a named step; the handler only maps.
pub(crate) async fn token(
    State(authz): State<Arc<Authz>>,
    peer: Option<PeerCertificate>,
    address: Option<certbound_http::ClientAddress>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthzError> {
    let form = form(&headers, &body)?;
    let now = certbound_store::clock::now();
    limit_address(&authz, address, now).await?;
    let client = authenticate(&authz, peer.as_ref(), &form, now).await?;
    limit_client(&authz, &client, now).await?;
    require_grant(&client, form.get("grant_type").map(String::as_str))?;
    let scopes = grant_scopes(
        &client.metadata.scope,
        form.get("scope").map(String::as_str),
    )?;
    // `authenticate` refused a request without a certificate: the binding always exists.
    let thumbprint = peer.map(|peer| Thumbprint::new(&*peer.thumbprint));
    let access_token = issue(
        &authz,
        &client,
        thumbprint.unwrap_or_default(),
        &scopes,
        now,
    )
    .await?;
    Ok(no_store(TokenAnswer {
        access_token: &access_token,
        expires_in: authz.config.token_lifetime,
        scope: scopes.to_string(),
        token_type: "bearer",
    }))
}

/// The token endpoint's answer (RFC 6749 §5.1), written straight from its fields (no JSON tree
/// built first), in the order it always had: alphabetical, as `json!` wrote it.
#[derive(serde::Serialize)]
struct TokenAnswer<'a> {
    access_token: &'a str,
    expires_in: i64,
    scope: String,
    token_type: &'static str,
}

/// The token endpoint's budget per source address (behind a trusted proxy, the address the
/// proxy forwarded), spent by every request before anything else is done for it.
async fn limit_address(
    authz: &Authz,
    address: Option<certbound_http::ClientAddress>,
    now: i64,
) -> Result<(), AuthzError> {
    if let Some(address) = address {
        let key = format!("token|address|{}", address.0.ip());
        authz
            .limit(&key, authz.config.rate_limits.token_per_address, now)
            .await?;
    }
    Ok(())
}

/// A client's own budget, spent only by requests that authenticated as it: nobody can spend
/// another client's budget by naming it (a lock-out), and the key is a registered `client_id`,
/// never unbounded request text.
async fn limit_client(authz: &Authz, client: &Client, now: i64) -> Result<(), AuthzError> {
    let key = format!("token|client|{}", client.record.client_id);
    authz
        .limit(&key, authz.config.rate_limits.token_per_client, now)
        .await
}

/// The grant asked for is one this server issues and the client registered for.
fn require_grant(client: &Client, asked: Option<&str>) -> Result<GrantType, AuthzError> {
    let grant = asked
        .ok_or_else(|| AuthzError::InvalidRequest("grant_type is required".into()))?
        .parse::<GrantType>()
        .map_err(AuthzError::UnsupportedGrantType)?;
    if !client.metadata.grant_types.contains(&grant) {
        return Err(AuthzError::UnauthorizedClient(format!(
            "this client is not registered for {grant}"
        )));
    }
    Ok(grant)
}

/// Signs an access token for `client`, bound to `thumbprint`, and records its issuance.
async fn issue(
    authz: &Authz,
    client: &Client,
    thumbprint: Thumbprint,
    scopes: &ScopeSet,
    now: i64,
) -> Result<String, AuthzError> {
    let record = &client.record;
    let claims = AccessTokenClaims {
        iss: authz.config.issuer.clone(),
        sub: ClientId::new(record.client_id.clone()),
        aud: vec![record.client_id.clone()],
        scp: scopes.to_vec(),
        cnf: Confirmation {
            x5t_s256: thumbprint,
        },
        exp: now + authz.config.token_lifetime,
        iat: now,
        nbf: now,
        jti: Jti::new(
            certbound_http::random_uuid()
                .ok_or_else(|| AuthzError::Internal("no random bytes for the token's jti".into()))?
                .to_string(),
        ),
        tid: "certbound".into(),
        client_id: ClientId::new(record.client_id.clone()),
        org_id: OrganisationId::new(record.organisation_id.clone()),
        software_id: SoftwareId::new(record.software_id.clone()),
        rid: RegistrationId::new(record.registration_id.clone()),
    };
    let signer = authz.keys.signer(now).await?;
    let access_token = certbound_jose::sign(&claims, &signer, "JWT")
        .map_err(|error| AuthzError::Internal(error.to_string()))?;
    tracing::info!(client_id = %claims.client_id, thumbprint = %claims.cnf.x5t_s256, kid = signer.kid(), "access token issued");
    authz.audit.record(
        "authz",
        "token_issued",
        now,
        serde_json::json!({"client_id": claims.client_id, "organisation_id": claims.org_id, "jti": claims.jti,
            "auth_method": client.metadata.token_endpoint_auth_method, "scope": scopes.to_string(), "thumbprint": claims.cnf.x5t_s256, "kid": signer.kid()}),
    )?;
    Ok(access_token)
}

/// The scopes a token gets (RFC 6749 §3.3): those asked for, each registered for the client
/// (`invalid_scope` otherwise), or every registered scope when none is asked; sorted.
pub(crate) fn grant_scopes(
    registered: &ScopeSet,
    asked: Option<&str>,
) -> Result<ScopeSet, AuthzError> {
    let Some(asked) = asked else {
        return Ok(registered.sorted());
    };
    let asked = ScopeSet::parse(asked);
    if let Some(outside) = asked.first_outside(registered) {
        return Err(AuthzError::InvalidScope(format!(
            "scope `{outside}` is not registered for this client: {registered}"
        )));
    }
    Ok(asked.sorted())
}

/// Verifies a token presented to introspection or revocation; `None` if it is not ours.
async fn our_token(
    authz: &Authz,
    token: &str,
    now: i64,
) -> Result<Option<AccessTokenClaims>, AuthzError> {
    let keys = authz.keys.ring(now, false).await?.verification().to_vec();
    match verify_access_token(token, &keys, &authz.config.issuer, now) {
        Ok(claims) => Ok(Some(claims)),
        Err(TokenError::Invalid(_)) => {
            // Perhaps signed by a key rotated in at another instance: reload once.
            let keys = authz.keys.ring(now, true).await?.verification().to_vec();
            Ok(verify_access_token(token, &keys, &authz.config.issuer, now).ok())
        }
        Err(_) => Ok(None),
    }
}

/// `POST /oauth2/introspect` (RFC 7662): a client may introspect its own tokens.
pub(crate) async fn introspect(
    State(authz): State<Arc<Authz>>,
    peer: Option<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthzError> {
    let form = form(&headers, &body)?;
    let now = certbound_store::clock::now();
    let client = authenticate(&authz, peer.as_ref(), &form, now).await?;
    let token = form
        .get("token")
        .ok_or_else(|| AuthzError::InvalidRequest("token is required".into()))?;
    let inactive = || no_store(json!({"active": false}));
    let Some(claims) = our_token(&authz, token, now).await? else {
        return Ok(inactive());
    };
    // The same decision the Cards API makes, so the two never disagree; the binding itself is
    // not compared (the caller need not present the bound certificate to ask about a token).
    if claims.client_id != client.record.client_id
        || authz
            .standing
            .standing(&*authz.store, &claims, None)
            .await?
            != Standing::Good
    {
        return Ok(inactive());
    }
    Ok(no_store(json!({
        "active": true,
        "scope": claims.scp.join(" "),
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "exp": claims.exp,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "jti": claims.jti,
        "token_type": "Bearer",
        "cnf": claims.cnf,
    })))
}

/// `POST /oauth2/revoke` (RFC 7009): revokes one of the client's own access tokens at once, at
/// every instance. An unknown or foreign token is answered 200 and changes nothing (§2.2).
pub(crate) async fn revoke(
    State(authz): State<Arc<Authz>>,
    peer: Option<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthzError> {
    let form = form(&headers, &body)?;
    let now = certbound_store::clock::now();
    let client = authenticate(&authz, peer.as_ref(), &form, now).await?;
    let token = form
        .get("token")
        .ok_or_else(|| AuthzError::InvalidRequest("token is required".into()))?;
    if let Some(hint) = form.get("token_type_hint")
        && hint != "access_token"
    {
        return Err(AuthzError::UnsupportedTokenType(format!(
            "token_type_hint `{hint}`: this server issues access tokens only"
        )));
    }
    if let Some(claims) = our_token(&authz, token, now).await?
        && claims.client_id == client.record.client_id
    {
        authz.audit.record(
            "authz",
            "token_revoked",
            now,
            serde_json::json!({"client_id": claims.client_id, "jti": claims.jti}),
        )?;
        authz
            .store
            .revoke_token(&claims.jti, &claims.client_id, claims.exp, now)
            .await?;
        tracing::info!(client_id = %claims.client_id, jti = %claims.jti, "access token revoked");
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], "").into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    /// The typed answer is the text the `json!` tree wrote, byte for byte.
    #[test]
    fn the_token_answer_is_the_text_it_always_was() {
        let typed = serde_json::to_string(&TokenAnswer {
            access_token: "eyJ.a\"b.c",
            expires_in: 300,
            scope: "cards.read pin.read".into(),
            token_type: "bearer",
        })
        .unwrap();
        let tree = serde_json::to_string(&json!({
            "access_token": "eyJ.a\"b.c",
            "expires_in": 300,
            "scope": "cards.read pin.read",
            "token_type": "bearer",
        }))
        .unwrap();
        assert_eq!(typed, tree);
    }

    #[test]
    fn scopes_granted_are_asked_and_registered() {
        let registered = ScopeSet::parse("pin.read cards.read cards.write");
        assert_eq!(
            grant_scopes(&registered, None).unwrap().to_string(),
            "cards.read cards.write pin.read"
        );
        assert_eq!(
            grant_scopes(&registered, Some("cards.write cards.read cards.write"))
                .unwrap()
                .to_string(),
            "cards.read cards.write"
        );
        let refused = grant_scopes(&registered, Some("cards.read cvv.read")).unwrap_err();
        assert_eq!(refused.as_str(), "invalid_scope");
        assert_eq!(
            refused.to_string(),
            "scope `cvv.read` is not registered for this client: pin.read cards.read cards.write"
        );
    }
}
