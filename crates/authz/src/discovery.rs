//! Discovery (RFC 8414 / OpenID Connect Discovery) listing only what is implemented, and the
//! token signing JWKS.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use certbound_trust::{AuthMethod, GrantType};

use crate::{Authz, AuthzError};

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn discovery(State(authz): State<Arc<Authz>>) -> Json<Value> {
    let algorithms = authz.config.algorithms.names();
    let methods: Vec<&str> = AuthMethod::ALL
        .iter()
        .map(|method| method.as_str())
        .collect();
    let endpoint = |path: &str| authz.endpoint(path);
    Json(json!({
        "issuer": authz.config.issuer,
        "token_endpoint": endpoint("/oauth2/token"),
        "jwks_uri": endpoint("/.well-known/jwks.json"),
        "registration_endpoint": endpoint("/oauth2/register"),
        "introspection_endpoint": endpoint("/oauth2/introspect"),
        "revocation_endpoint": endpoint("/oauth2/revoke"),
        "mtls_endpoint_aliases": {
            "token_endpoint": endpoint("/oauth2/token"),
            "registration_endpoint": endpoint("/oauth2/register"),
            "introspection_endpoint": endpoint("/oauth2/introspect"),
            "revocation_endpoint": endpoint("/oauth2/revoke"),
        },
        "grant_types_supported": GrantType::ALL.iter().map(|grant| grant.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["token"],
        "scopes_supported": authz.config.scopes_supported,
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": algorithms,
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": algorithms,
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algorithms,
        "request_object_signing_alg_values_supported": algorithms,
        "tls_client_certificate_bound_access_tokens": true,
        "access_token_signing_alg_values_supported": ["ES256"],
    }))
}

/// `GET /.well-known/jwks.json`: every key that signs or has signed unexpired tokens.
pub(crate) async fn jwks(State(authz): State<Arc<Authz>>) -> Result<Response, AuthzError> {
    let set = authz.keys.jwks(certbound_store::clock::now()).await?;
    let mut response = Json(set).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(response)
}
