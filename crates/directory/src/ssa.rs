//! Software Statement Assertions: the SSA a client presents to the authorization server, signed
//! PS256 by the directory's `signer` key, with every claim of the seed's example SSA.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use certbound_http::PeerCertificate;
use certbound_pki::JwkSet;
use serde_json::{Value, json};

use crate::organisations::{
    Organisation, SoftwareStatement, load_organisation, load_software_statement, scopes_of,
};
use crate::{Directory, DirectoryError};

/// `GET /jwks`: the SSA signing key, kid `signer`.
pub(crate) async fn jwks(State(directory): State<Arc<Directory>>) -> Response {
    let mut response = Json(JwkSet {
        keys: vec![directory.ssa_signer_jwk.clone()],
    })
    .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/jwk-set+json"),
    );
    response
}

/// The SSA's claims, named and shaped as in the seed.
pub(crate) fn claims(
    directory: &Directory,
    organisation: &Organisation,
    statement: &SoftwareStatement,
    now: i64,
) -> Value {
    let keystore = format!("{}/keystore", directory.config.issuer);
    let org = &organisation.organisation_id;
    let software = &statement.software_statement_id;
    let scopes = scopes_of(&statement.roles);
    json!({
        "iss": directory.config.issuer,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "software_id": software,
        "software_version": statement.version,
        "software_statement_roles": statement.roles.iter().map(|role| json!({
            "role": role, "authorisation_domain": "Cards", "status": "Active"
        })).collect::<Vec<_>>(),
        "roles": statement.roles,
        "scope": scopes.join(" "),
        "client_id": statement.client_id,
        "client_name": statement.client_name,
        "client_description": statement.description.clone().unwrap_or_default(),
        "logo_uri": statement.logo_uri,
        "client_uri": statement.homepage_uri,
        "redirect_uris": statement.redirect_uri,
        "api_webhook_uris": statement.api_webhook_uri.iter().collect::<Vec<_>>(),
        "origin_uris": statement.origin_uri.iter().collect::<Vec<_>>(),
        "on_behalf_of": statement.on_behalf_of,
        "mode": statement.mode,
        "environment": statement.environment,
        "status": statement.status,
        "software_flags": {},
        "subject_type": "pairwise",
        "sector_identifier_uri": format!("{keystore}/{org}/{software}/redirect_uris.json"),
        "jwks_uri": format!("{keystore}/{org}/{software}/application.jwks"),
        "jwks_inactive_uri": format!("{keystore}/{org}/{software}/inactive/application.jwks"),
        "jwks_transport_uri": format!("{keystore}/{org}/{software}/transport.jwks"),
        "jwks_transport_inactive_uri": format!("{keystore}/{org}/{software}/inactive/transport.jwks"),
        "org_id": org,
        "org_name": organisation.organisation_name,
        "org_number": organisation.registration_number.clone().unwrap_or_default(),
        "org_status": organisation.status,
        "org_jwks_uri": format!("{keystore}/{org}/application.jwks"),
        "org_jwks_inactive_uri": format!("{keystore}/{org}/inactive/application.jwks"),
        "org_jwks_transport_uri": format!("{keystore}/{org}/transport.jwks"),
        "org_jwks_transport_inactive_uri": format!("{keystore}/{org}/inactive/transport.jwks"),
        "organisation_flags": {},
        "organisation_tags": [],
        "organisation_competent_authority_claims": [{
            "authorisation_domain": "Cards",
            "authorisations": [],
            "registration_id": organisation.registration_number.clone().unwrap_or_default(),
            "authority_name": "certbound Technical Authority",
            "authority_id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, directory.config.issuer.as_bytes()).to_string(),
            "authorisation_role": "card-api-client",
            "authority_code": "CBTA",
            "status": "Active"
        }],
    })
}

/// `GET /organisations/{OrganisationId}/softwarestatements/{SoftwareStatementId}/assertion`
/// (mTLS, directory token): the signed SSA of the token's own software.
pub(crate) async fn assertion(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id)): Path<(String, String)>,
    peer: PeerCertificate,
    headers: HeaderMap,
) -> Result<Response, DirectoryError> {
    let now = certbound_store::clock::now();
    let token = crate::token::bearer(&directory, &headers, &peer, now).await?;
    if token.software_statement_id != software_statement_id
        || token.organisation_id != organisation_id
    {
        return Err(DirectoryError::Forbidden(
            "a token may fetch only the SSA of its own software statement".into(),
        ));
    }
    let organisation = load_organisation(&directory, &organisation_id).await?;
    let statement =
        load_software_statement(&directory, &organisation_id, &software_statement_id).await?;
    let ssa = certbound_jose::sign(
        &claims(&directory, &organisation, &statement, now),
        &directory.ssa_signer,
        "JWT",
    )
    .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    tracing::info!(software_statement_id, "SSA issued");
    directory.audit.record(
        "directory",
        "ssa_issued",
        now,
        serde_json::json!({"software_statement_id": software_statement_id, "organisation_id": organisation_id, "thumbprint": peer.thumbprint.to_string()}),
    )?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwt"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ssa,
    )
        .into_response())
}
