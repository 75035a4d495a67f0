//! The directory's own authorization server: discovery, the mTLS `client_credentials` token
//! endpoint (scope `directory:software`, `private_key_jwt` or `tls_client_auth`), and the
//! checks every mTLS request passes (certificate not revoked; bearer token bound to it).
//!
//! Directory access tokens are opaque: 256 random bits, stored only as their SHA-256, bound to
//! the presented certificate's `x5t#S256` (RFC 8705) and checked against the store on use, so a
//! revocation applies at once at every instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use certbound_http::{PeerCertificate, parse_form};
use certbound_jose::{AssertionRules, VerificationKey, verify_client_assertion};
use certbound_pki::CertificateType;
use certbound_store::{AccessTokenRecord, CertificateRecord};
use certbound_trust::{
    Acceptor, CertificateStanding, GrantType, Jti, JtiUse, ScopeSet, Use, certificate_standing,
};

use crate::organisations::SoftwareStatement;
use crate::{Directory, DirectoryError};

/// The only scope the directory grants.
pub(crate) const DIRECTORY_SCOPE: &str = "directory:software";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `GET /.well-known/openid-configuration`: only what is implemented.
pub(crate) async fn discovery(State(directory): State<Arc<Directory>>) -> Json<Value> {
    let issuer = &directory.config.issuer;
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": directory.token_endpoint(),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": [DIRECTORY_SCOPE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "token_endpoint_auth_signing_alg_values_supported": directory.config.algorithms.names(),
        "tls_client_certificate_bound_access_tokens": true,
        "mtls_endpoint_aliases": { "token_endpoint": directory.mtls_token_endpoint() },
        "software_statement_signing_alg_values_supported": ["PS256"],
        "ca_uri": format!("{issuer}/ca.pem"),
        "crl_uri": format!("{issuer}/crl"),
    }))
}

/// `POST /token` on the public port: certificate-bound tokens need the mTLS alias.
pub(crate) async fn token_without_certificate(
    State(directory): State<Arc<Directory>>,
) -> DirectoryError {
    DirectoryError::InvalidClient(format!(
        "this endpoint issues only certificate-bound tokens: call {} with your transport certificate",
        directory.mtls_token_endpoint()
    ))
}

/// Refuses every mTLS request whose certificate the directory has revoked.
pub(crate) async fn refuse_revoked_certificate(
    State(directory): State<Arc<Directory>>,
    peer: Result<PeerCertificate, certbound_http::MissingCertificate>,
    mut request: Request,
    next: Next,
) -> Response {
    let Ok(peer) = peer else {
        return certbound_http::MissingCertificate.into_response();
    };
    let presented = match directory
        .store
        .certificate_by_thumbprint(&peer.thumbprint)
        .await
    {
        Ok(presented) => presented,
        Err(error) => return DirectoryError::from(error).into_response(),
    };
    // Any organisation's transport certificate may reach the endpoints; each checks the owner.
    let wanted = Use {
        role: CertificateType::Transport.as_str(),
        organisation_id: None,
        software_id: None,
    };
    match (
        standing(presented.as_ref(), wanted, certbound_store::clock::now()),
        presented,
    ) {
        (CertificateStanding::Good, Some(record)) => {
            // The endpoints judge this same record for their own use: no second read.
            request.extensions_mut().insert(Presented(record));
            next.run(request).await
        }
        (refused, _) => DirectoryError::InvalidClient(format!(
            "the client certificate {}",
            refused.description()
        ))
        .into_response(),
    }
}

/// Resolves a client id (the `ClientId` URL or the bare SoftwareStatementId) to its software.
async fn client(
    directory: &Directory,
    client_id: &str,
) -> Result<SoftwareStatement, DirectoryError> {
    let id = client_id.rsplit('/').next().unwrap_or(client_id);
    let unknown = || DirectoryError::InvalidClient(format!("unknown client `{client_id}`"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(unknown());
    }
    let record = directory
        .store
        .software_statement(id)
        .await?
        .ok_or_else(unknown)?;
    let statement: SoftwareStatement = serde_json::from_str(&record.body)
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    if client_id != statement.client_id && client_id != statement.software_statement_id {
        return Err(unknown());
    }
    Ok(statement)
}

/// The directory's record of the certificate on this connection, read once by
/// [`refuse_revoked_certificate`] for the endpoints behind it.
#[derive(Clone, Debug)]
pub(crate) struct Presented(CertificateRecord);

/// The standing of `record` (the presented certificate, or a key's) for `wanted`: the one
/// definition every party uses.
fn standing(record: Option<&CertificateRecord>, wanted: Use<'_>, now: i64) -> CertificateStanding {
    certificate_standing(
        record.map(std::slice::from_ref).unwrap_or_default(),
        wanted,
        now,
    )
}

/// `POST /token` on the mTLS port.
pub(crate) async fn token(
    State(directory): State<Arc<Directory>>,
    peer: PeerCertificate,
    Extension(Presented(presented)): Extension<Presented>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DirectoryError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let form = parse_form(content_type, &body)
        .map_err(|error| DirectoryError::InvalidRequest(error.description()))?;
    let now = certbound_store::clock::now();
    let statement = authenticate(&directory, &presented, &form, now).await?;
    // `authenticate` accepted an assertion when one came, the certificate alone otherwise.
    let auth_method = if form.contains_key("client_assertion") {
        "private_key_jwt"
    } else {
        "tls_client_auth"
    };

    let _client_credentials: GrantType = form
        .get("grant_type")
        .ok_or_else(|| DirectoryError::InvalidRequest("grant_type is required".into()))?
        .parse()
        .map_err(DirectoryError::UnsupportedGrantType)?;
    if let Some(scope) = form.get("scope")
        && ScopeSet::parse(scope)
            .first_outside(&ScopeSet::parse(DIRECTORY_SCOPE))
            .is_some()
    {
        return Err(DirectoryError::InvalidScope(format!(
            "the directory grants only `{DIRECTORY_SCOPE}`"
        )));
    }

    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| DirectoryError::Internal("no randomness".into()))?;
    let access_token = crate::b64url(&secret);
    let lifetime = directory.config.token_lifetime;
    directory
        .store
        .insert_access_token(&AccessTokenRecord {
            token_hash: crate::b64url(&crate::sha256(access_token.as_bytes())),
            issuer: directory.config.issuer.clone(),
            client_id: statement.client_id.clone(),
            organisation_id: statement.organisation_id.clone(),
            software_statement_id: statement.software_statement_id.clone(),
            thumbprint: peer.thumbprint.to_string(),
            scope: DIRECTORY_SCOPE.to_owned(),
            issued_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
        })
        .await?;
    tracing::info!(client_id = %statement.client_id, thumbprint = %peer.thumbprint, "directory token issued");
    directory.audit.record(
        "directory",
        "directory_token_issued",
        now,
        serde_json::json!({"client_id": statement.client_id, "organisation_id": statement.organisation_id,
            "auth_method": auth_method, "thumbprint": peer.thumbprint.to_string()}),
    )?;
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": DIRECTORY_SCOPE,
    });
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}

/// Client authentication: `private_key_jwt` when an assertion is present, else `tls_client_auth`.
async fn authenticate(
    directory: &Directory,
    presented: &CertificateRecord,
    form: &BTreeMap<String, String>,
    now: i64,
) -> Result<SoftwareStatement, DirectoryError> {
    match form.get("client_assertion") {
        Some(assertion) => private_key_jwt(directory, presented, form, assertion, now).await,
        None => tls_client_auth(directory, presented, form, now).await,
    }
}

/// RFC 7523: an assertion signed by one of the software's signing keys, over a transport
/// certificate of its organisation, its `jti` used once.
async fn private_key_jwt(
    directory: &Directory,
    presented: &CertificateRecord,
    form: &BTreeMap<String, String>,
    assertion: &str,
    now: i64,
) -> Result<SoftwareStatement, DirectoryError> {
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(DirectoryError::InvalidClient(format!(
            "client_assertion_type must be {JWT_BEARER}"
        )));
    }
    let issuer = certbound_jose::unverified_claims(assertion)
        .and_then(|claims| claims.get("iss")?.as_str().map(str::to_owned))
        .ok_or_else(|| {
            DirectoryError::InvalidClient("client_assertion is not a JWT with an iss claim".into())
        })?;
    if let Some(client_id) = form.get("client_id")
        && client_id != &issuer
    {
        return Err(DirectoryError::InvalidClient(
            "client_id does not match the client assertion's iss".into(),
        ));
    }
    let statement = client(directory, &issuer).await?;
    // The presented certificate: a transport certificate of the software's organisation.
    let presented_standing = standing(
        Some(presented),
        Use {
            role: CertificateType::Transport.as_str(),
            organisation_id: Some(&statement.organisation_id),
            software_id: None,
        },
        now,
    );
    if presented_standing != CertificateStanding::Good {
        return Err(DirectoryError::InvalidClient(format!(
            "the client certificate {}",
            presented_standing.description()
        )));
    }
    let keys = signing_keys(directory, &statement, now).await?;
    let audiences = [
        directory.config.issuer.clone(),
        directory.token_endpoint(),
        directory.mtls_token_endpoint(),
    ];
    let aliases = [statement.software_statement_id.clone()];
    let rules = AssertionRules {
        client_id: &statement.client_id,
        client_id_aliases: &aliases,
        audiences: &audiences,
        algorithms: &directory.config.algorithms,
        now,
        max_lifetime: directory.config.assertion_max_lifetime,
    };
    let verified = verify_client_assertion(assertion, &keys, &rules)
        .map_err(|error| DirectoryError::InvalidClient(error.to_string()))?;
    let used = certbound_trust::use_jti_once(
        directory.store.as_ref(),
        Acceptor::Directory,
        &statement.software_statement_id,
        &Jti::new(verified.jti.clone()),
        verified.exp,
        now,
    )
    .await?;
    if used == JtiUse::Replayed {
        return Err(DirectoryError::InvalidClient(used.description().into()));
    }
    Ok(statement)
}

/// The software's signing keys that are good now, as verification keys: the directory's own
/// records, so a revoked or expired key verifies nothing.
async fn signing_keys(
    directory: &Directory,
    statement: &SoftwareStatement,
    now: i64,
) -> Result<Vec<VerificationKey>, DirectoryError> {
    directory
        .store
        .certificates(
            &statement.organisation_id,
            Some(&statement.software_statement_id),
        )
        .await?
        .iter()
        .filter(|record| {
            standing(
                Some(record),
                Use {
                    role: CertificateType::Signing.as_str(),
                    organisation_id: Some(&statement.organisation_id),
                    software_id: Some(&statement.software_statement_id),
                },
                now,
            ) == CertificateStanding::Good
        })
        .map(|record| {
            let jwk = crate::certificates::certificate_jwk(record)?;
            let value = serde_json::to_value(&jwk)
                .map_err(|error| DirectoryError::Internal(error.to_string()))?;
            VerificationKey::from_jwk_json(&value)
                .map_err(|error| DirectoryError::Internal(error.to_string()))
        })
        .collect()
}

/// RFC 8705 §2.1: a transport certificate of this very software.
async fn tls_client_auth(
    directory: &Directory,
    presented: &CertificateRecord,
    form: &BTreeMap<String, String>,
    now: i64,
) -> Result<SoftwareStatement, DirectoryError> {
    let client_id = form.get("client_id").ok_or_else(|| {
        DirectoryError::InvalidClient(
            "authenticate with client_assertion (private_key_jwt) or client_id (tls_client_auth)"
                .into(),
        )
    })?;
    let statement = client(directory, client_id).await?;
    let presented_standing = standing(
        Some(presented),
        Use {
            role: CertificateType::Transport.as_str(),
            organisation_id: Some(&statement.organisation_id),
            software_id: Some(&statement.software_statement_id),
        },
        now,
    );
    if presented_standing != CertificateStanding::Good {
        return Err(DirectoryError::InvalidClient(format!(
            "tls_client_auth: the client certificate is not a transport certificate of this client (it {})",
            presented_standing.description()
        )));
    }
    Ok(statement)
}

/// The directory token of a request, checked: known, unexpired, unrevoked, bound to the
/// presented certificate (RFC 8705 §3).
pub(crate) async fn bearer(
    directory: &Directory,
    headers: &HeaderMap,
    peer: &PeerCertificate,
    now: i64,
) -> Result<AccessTokenRecord, DirectoryError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            DirectoryError::InvalidToken(
                "send the directory access token as Authorization: Bearer".into(),
            )
        })?;
    let hash = crate::b64url(&crate::sha256(token.trim().as_bytes()));
    let record = directory
        .store
        .access_token(&hash)
        .await?
        .ok_or_else(|| DirectoryError::InvalidToken("the access token is not known".into()))?;
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(DirectoryError::InvalidToken(
            "the access token has expired or was revoked".into(),
        ));
    }
    if record.thumbprint.as_bytes() != peer.thumbprint.as_bytes() {
        return Err(DirectoryError::InvalidToken(
            "the access token is bound to another certificate: present the one it was issued to"
                .into(),
        ));
    }
    // The middleware in front of every mTLS endpoint judged the presented certificate, which is
    // the bound one: nothing more to ask of the store.
    Ok(record)
}
