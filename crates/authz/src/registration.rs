//! Dynamic Client Registration with a software statement (RFC 7591) and its management
//! (RFC 7592). The rules of DESIGN.md section 3, each with its RFC 7591 §3.2.2 error:
//! the SSA is signed by the directory's `signer` key and names the directory as issuer, is at
//! most five minutes old, and the client certificate was issued by the directory to the SSA's
//! organisation; no `jwks` by value; `jwks_uri` and `redirect_uris` within the SSA's; scopes
//! within the software's roles; SSA values win; one registration per software; unknown metadata
//! is ignored; no `client_secret` is issued.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certbound_http::PeerCertificate;
use certbound_jose::{AlgorithmPolicy, verify_jws};
use certbound_store::ClientRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::{Authz, AuthzError, SSA_MAX_AGE};
use certbound_trust::{AuthMethod, GrantType, ScopeSet};

/// What a registered client is: the stored metadata.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ClientMetadata {
    pub(crate) client_id: String,
    pub(crate) software_id: String,
    pub(crate) organisation_id: String,
    pub(crate) client_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) application_type: String,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) grant_types: Vec<GrantType>,
    pub(crate) response_types: Vec<String>,
    pub(crate) scope: ScopeSet,
    pub(crate) token_endpoint_auth_method: AuthMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_endpoint_auth_signing_alg: Option<String>,
    pub(crate) jwks_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_transport_uri: Option<String>,
    pub(crate) tls_client_auth_subject_dn: String,
    pub(crate) tls_client_certificate_bound_access_tokens: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) software_version: Option<String>,
    pub(crate) software_statement: String,
    pub(crate) client_id_issued_at: i64,
}

/// The SSA claims registration relies on.
#[derive(Debug, Clone)]
pub(crate) struct SoftwareStatement {
    pub(crate) software_id: String,
    pub(crate) client_id: String,
    pub(crate) org_id: String,
    pub(crate) jwks_uri: String,
    pub(crate) jwks_transport_uri: Option<String>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) scopes: ScopeSet,
    pub(crate) client_name: String,
    pub(crate) client_uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) software_version: Option<String>,
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Value::String(one) => Some(vec![one.clone()]),
        _ => None,
    }
}

/// Checks an SSA's signature (the directory's keys), issuer and age, and reads its claims.
pub(crate) async fn verify_software_statement(
    authz: &Authz,
    ssa: &str,
    now: i64,
) -> Result<SoftwareStatement, AuthzError> {
    let invalid = |message: &str| AuthzError::InvalidSoftwareStatement(message.to_owned());
    if certbound_jose::unverified_claims(ssa).is_none() {
        return Err(invalid("software_statement is not a signed JWT"));
    }
    let keys = authz
        .key_cache
        .keys(&authz.config.directory_jwks_uri, Some("signer"), now)
        .await
        .map_err(|error| AuthzError::Internal(format!("directory JWKS unavailable: {error}")))?;
    let verified = verify_jws(
        ssa,
        &keys,
        &AlgorithmPolicy::new([certbound_jose::Algorithm::PS256]),
    )
    .map_err(|error| {
        AuthzError::InvalidSoftwareStatement(format!("software_statement: {error}"))
    })?;
    let claims = verified.claims;
    match string_claim(&claims, "iss") {
        Some(iss) if iss == authz.config.directory_issuer => {}
        Some(iss) => {
            return Err(AuthzError::InvalidSoftwareStatement(format!(
                "software_statement issued by `{iss}`, not by the trusted directory"
            )));
        }
        None => return Err(invalid("software_statement has no iss")),
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("software_statement has no iat"))?;
    if now - iat > SSA_MAX_AGE {
        return Err(AuthzError::InvalidSoftwareStatement(format!(
            "software_statement is {} s old; fetch a fresh one (at most {SSA_MAX_AGE} s)",
            now - iat
        )));
    }
    if iat > now + 60 {
        return Err(invalid("software_statement iat is in the future"));
    }
    let required = |name: &str| {
        string_claim(&claims, name).ok_or_else(|| {
            AuthzError::InvalidSoftwareStatement(format!("software_statement has no {name}"))
        })
    };
    let scopes = string_claim(&claims, "scope")
        .map(|scope| ScopeSet::parse(&scope))
        .ok_or_else(|| {
            invalid(
                "software_statement has no scope: the directory must state what its roles allow",
            )
        })?;
    Ok(SoftwareStatement {
        software_id: required("software_id")?,
        client_id: required("client_id")?,
        org_id: required("org_id")?,
        jwks_uri: required("jwks_uri")?,
        jwks_transport_uri: string_claim(&claims, "jwks_transport_uri"),
        redirect_uris: string_list(claims.get("redirect_uris")).unwrap_or_default(),
        scopes,
        client_name: required("client_name")?,
        client_uri: string_claim(&claims, "client_uri"),
        logo_uri: string_claim(&claims, "logo_uri"),
        description: string_claim(&claims, "client_description"),
        software_version: string_claim(&claims, "software_version"),
    })
}

/// The presented certificate must come from the directory and belong to the SSA's very software:
/// OU = the SSA's `org_id` and CN = its `software_id` (DESIGN.md section 3). A sibling software's
/// certificate, or an organisation-level one, registers nothing.
fn check_certificate(
    peer: &PeerCertificate,
    ssa: &SoftwareStatement,
) -> Result<String, AuthzError> {
    if !peer.issued_by_directory {
        return Err(AuthzError::UnapprovedSoftwareStatement(
            "registration needs a transport certificate issued by the directory".into(),
        ));
    }
    let info = certbound_pki::CertificateInfo::parse(&peer.der)
        .map_err(|error| AuthzError::InvalidClient(error.0))?;
    let ou = info.organisational_unit.unwrap_or_default();
    if ou != ssa.org_id {
        return Err(AuthzError::UnapprovedSoftwareStatement(format!(
            "the client certificate belongs to organisation `{ou}`, the software statement to `{}`",
            ssa.org_id
        )));
    }
    let cn = info.common_name.unwrap_or_default();
    if cn != ssa.software_id {
        return Err(AuthzError::UnapprovedSoftwareStatement(format!(
            "the client certificate belongs to software `{cn}`, the software statement is for `{}`: \
             register with that software's own transport certificate",
            ssa.software_id
        )));
    }
    Ok(info.subject)
}

/// Builds the metadata to store from a request and its verified SSA, one named rule per field
/// (RFC 7591 §2; SSA values win). Pure: no I/O, no clock.
pub(crate) fn build_metadata(
    request: &Map<String, Value>,
    ssa: &SoftwareStatement,
    software_statement: &str,
    subject_dn: &str,
    algorithms: &AlgorithmPolicy,
    issued_at: i64,
) -> Result<ClientMetadata, AuthzError> {
    keys_only_from_the_statement(request, ssa)?;
    let redirect_uris = redirect_uris_within(request, ssa)?;
    let scope = scopes_within(request, ssa)?;
    let token_endpoint_auth_method = auth_method(request)?;
    let grant_types = grant_types(request)?;
    let token_endpoint_auth_signing_alg = signing_alg(request, algorithms)?;
    subject_dn_is_the_certificates(request, subject_dn)?;
    Ok(ClientMetadata {
        client_id: ssa.client_id.clone(),
        software_id: ssa.software_id.clone(),
        organisation_id: ssa.org_id.clone(),
        client_name: ssa.client_name.clone(),
        client_uri: ssa.client_uri.clone(),
        logo_uri: ssa.logo_uri.clone(),
        description: ssa.description.clone(),
        application_type: "service".into(),
        redirect_uris,
        grant_types,
        response_types: vec!["token".into()],
        scope,
        token_endpoint_auth_method,
        token_endpoint_auth_signing_alg,
        jwks_uri: ssa.jwks_uri.clone(),
        jwks_transport_uri: ssa.jwks_transport_uri.clone(),
        tls_client_auth_subject_dn: subject_dn.to_owned(),
        tls_client_certificate_bound_access_tokens: true,
        software_version: ssa.software_version.clone(),
        software_statement: software_statement.to_owned(),
        client_id_issued_at: issued_at,
    })
}

fn metadata_error(message: String) -> AuthzError {
    AuthzError::InvalidClientMetadata(message)
}

/// No `jwks` by value; a `jwks_uri`, if given, is the SSA's.
fn keys_only_from_the_statement(
    request: &Map<String, Value>,
    ssa: &SoftwareStatement,
) -> Result<(), AuthzError> {
    if request.get("jwks").is_some_and(|jwks| !jwks.is_null()) {
        return Err(metadata_error(
            "jwks by value is not accepted: keys come from the software statement's jwks_uri"
                .into(),
        ));
    }
    if let Some(jwks_uri) = request.get("jwks_uri").and_then(Value::as_str)
        && jwks_uri != ssa.jwks_uri
    {
        return Err(metadata_error(format!(
            "jwks_uri must be the software statement's: {}",
            ssa.jwks_uri
        )));
    }
    Ok(())
}

/// `redirect_uris` within the SSA's (all of them when none are asked for).
fn redirect_uris_within(
    request: &Map<String, Value>,
    ssa: &SoftwareStatement,
) -> Result<Vec<String>, AuthzError> {
    match request.get("redirect_uris") {
        None | Some(Value::Null) => Ok(ssa.redirect_uris.clone()),
        Some(value) => {
            let asked = string_list(Some(value)).ok_or_else(|| {
                AuthzError::InvalidRedirectUri("redirect_uris must be an array of strings".into())
            })?;
            if let Some(outside) = asked.iter().find(|uri| !ssa.redirect_uris.contains(uri)) {
                return Err(AuthzError::InvalidRedirectUri(format!(
                    "redirect_uri `{outside}` is not in the software statement"
                )));
            }
            Ok(asked)
        }
    }
}

/// Scopes within the software's roles (all the roles allow when none are asked for).
fn scopes_within(
    request: &Map<String, Value>,
    ssa: &SoftwareStatement,
) -> Result<ScopeSet, AuthzError> {
    let Some(scope) = request.get("scope").and_then(Value::as_str) else {
        return Ok(ssa.scopes.clone());
    };
    let asked = ScopeSet::parse(scope);
    if let Some(outside) = asked.first_outside(&ssa.scopes) {
        return Err(metadata_error(format!(
            "scope `{outside}` is not allowed by the software's roles: {}",
            ssa.scopes
        )));
    }
    Ok(if asked.is_empty() {
        ssa.scopes.clone()
    } else {
        asked
    })
}

/// `token_endpoint_auth_method`, `private_key_jwt` by default.
fn auth_method(request: &Map<String, Value>) -> Result<AuthMethod, AuthzError> {
    match request
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        None => Ok(AuthMethod::PrivateKeyJwt),
        Some(method) => method.parse().map_err(metadata_error),
    }
}

/// `grant_types`, `client_credentials` by default.
fn grant_types(request: &Map<String, Value>) -> Result<Vec<GrantType>, AuthzError> {
    let grant_types = string_list(request.get("grant_types"))
        .unwrap_or_default()
        .iter()
        .map(|grant| grant.parse::<GrantType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(metadata_error)?;
    Ok(if grant_types.is_empty() {
        vec![GrantType::ClientCredentials]
    } else {
        grant_types
    })
}

/// `token_endpoint_auth_signing_alg`, if given, is one this server accepts.
fn signing_alg(
    request: &Map<String, Value>,
    algorithms: &AlgorithmPolicy,
) -> Result<Option<String>, AuthzError> {
    let signing_alg = request
        .get("token_endpoint_auth_signing_alg")
        .and_then(Value::as_str)
        .filter(|alg| !alg.is_empty());
    if let Some(alg) = signing_alg
        && !algorithms.names().iter().any(|name| name == alg)
    {
        return Err(metadata_error(format!(
            "token_endpoint_auth_signing_alg `{alg}` is not accepted: use {}",
            algorithms.names().join(", ")
        )));
    }
    Ok(signing_alg.map(str::to_owned))
}

/// `tls_client_auth_subject_dn`, if given, is the subject of the certificate presented.
fn subject_dn_is_the_certificates(
    request: &Map<String, Value>,
    subject_dn: &str,
) -> Result<(), AuthzError> {
    if let Some(dn) = request
        .get("tls_client_auth_subject_dn")
        .and_then(Value::as_str)
        .filter(|dn| !dn.is_empty())
        && normalise_dn(dn) != normalise_dn(subject_dn)
    {
        return Err(metadata_error(format!(
            "tls_client_auth_subject_dn must be the subject of the certificate presented: {subject_dn}"
        )));
    }
    Ok(())
}

/// Compares distinguished names insensitive to spacing after separators and attribute case.
pub(crate) fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|part| {
            let part = part.trim();
            match part.split_once('=') {
                Some((name, value)) => {
                    format!("{}={}", name.trim().to_ascii_uppercase(), value.trim())
                }
                None => part.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The request's metadata: a JSON object, or the claims of a JWT signed by the software's key.
async fn request_metadata(
    authz: &Authz,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(Map<String, Value>, String, SoftwareStatement), AuthzError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => {
            let request: Map<String, Value> = match serde_json::from_slice(body) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(AuthzError::InvalidRequest(
                        "the body must be a JSON object".into(),
                    ));
                }
            };
            let ssa = software_statement_of(&request)?;
            let statement = verify_software_statement(authz, &ssa, now).await?;
            Ok((request, ssa, statement))
        }
        "application/jwt" => {
            let jwt = std::str::from_utf8(body)
                .map_err(|_| AuthzError::InvalidRequest("the body must be a compact JWT".into()))?
                .trim();
            let unverified = certbound_jose::unverified_claims(jwt)
                .ok_or_else(|| AuthzError::InvalidRequest("the body is not a signed JWT".into()))?;
            let ssa = software_statement_of(&unverified)?;
            let statement = verify_software_statement(authz, &ssa, now).await?;
            let kid = certbound_jose::unverified_kid(jwt);
            let keys = authz
                .key_cache
                .keys(&statement.jwks_uri, kid.as_deref(), now)
                .await
                .map_err(|error| {
                    AuthzError::Internal(format!("software JWKS unavailable: {error}"))
                })?;
            let verified = verify_jws(jwt, &keys, &authz.config.algorithms).map_err(|error| {
                AuthzError::InvalidClientMetadata(format!(
                    "the signed registration request: {error}"
                ))
            })?;
            let standing = crate::client_auth::signing_key_standing(
                authz,
                &verified.kid,
                &statement.org_id,
                &statement.software_id,
                now,
            )
            .await?;
            if standing != certbound_trust::CertificateStanding::Good {
                return Err(AuthzError::InvalidClientMetadata(format!(
                    "the key that signed the registration request (kid {}) {}",
                    verified.kid,
                    standing.description()
                )));
            }
            Ok((verified.claims, ssa, statement))
        }
        _ => Err(AuthzError::InvalidRequest(
            "send the registration as application/json or as a signed application/jwt".into(),
        )),
    }
}

fn software_statement_of(request: &Map<String, Value>) -> Result<String, AuthzError> {
    request
        .get("software_statement")
        .and_then(Value::as_str)
        .filter(|ssa| !ssa.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            AuthzError::InvalidSoftwareStatement("software_statement is required".into())
        })
}

fn registration_client_uri(authz: &Authz, client_id: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    authz.endpoint(&format!("/oauth2/register/{}", encoded.replace('+', "%20")))
}

fn response_body(
    authz: &Authz,
    metadata: &ClientMetadata,
    registration_access_token: Option<&str>,
) -> Result<Value, AuthzError> {
    let mut body =
        serde_json::to_value(metadata).map_err(|error| AuthzError::Internal(error.to_string()))?;
    if let Value::Object(map) = &mut body {
        map.insert(
            "scopes".into(),
            Value::from(metadata.scope.iter().collect::<Vec<_>>()),
        );
        map.insert(
            "registration_client_uri".into(),
            Value::from(registration_client_uri(authz, &metadata.client_id)),
        );
        if let Some(token) = registration_access_token {
            map.insert("registration_access_token".into(), Value::from(token));
        }
    }
    Ok(body)
}

/// `POST /oauth2/register`.
pub(crate) async fn register(
    State(authz): State<Arc<Authz>>,
    peer: Option<PeerCertificate>,
    address: Option<certbound_http::ClientAddress>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthzError> {
    if let Some(address) = address {
        let now = certbound_store::clock::now();
        authz
            .limit(
                &format!("register|address|{}", address.0.ip()),
                authz.config.rate_limits.register_per_address,
                now,
            )
            .await?;
    }
    let peer = peer.ok_or_else(|| {
        AuthzError::InvalidClient(
            "registration requires mutual TLS: present your transport certificate".into(),
        )
    })?;
    let now = certbound_store::clock::now();
    let (request, ssa, statement) = request_metadata(&authz, &headers, &body, now).await?;
    let subject = check_certificate(&peer, &statement)?;
    crate::client_auth::require_transport_certificate(
        &authz,
        &peer,
        &statement.org_id,
        &statement.software_id,
        now,
    )
    .await?;
    let metadata = build_metadata(
        &request,
        &statement,
        &ssa,
        &subject,
        &authz.config.algorithms,
        now,
    )?;
    let registration_access_token = crate::random_token()?;
    let record = ClientRecord {
        client_id: metadata.client_id.clone(),
        software_id: metadata.software_id.clone(),
        organisation_id: metadata.organisation_id.clone(),
        metadata: serde_json::to_string(&metadata)
            .map_err(|error| AuthzError::Internal(error.to_string()))?,
        registration_token_hash: crate::sha256_b64url(registration_access_token.as_bytes()),
        registration_id: uuid::Uuid::new_v4().to_string(),
        created_at: now,
        updated_at: now,
    };
    authz.audit.record(
        "authz",
        "client_registered",
        now,
        serde_json::json!({"client_id": metadata.client_id, "organisation_id": metadata.organisation_id,
            "auth_method": metadata.token_endpoint_auth_method, "scope": metadata.scope, "thumbprint": peer.thumbprint.to_string()}),
    )?;
    if !authz.store.insert_client(&record).await? {
        return Err(AuthzError::InvalidClientMetadata(format!(
            "software {} is already registered: manage it at its registration_client_uri",
            metadata.software_id
        )));
    }
    tracing::info!(client_id = %metadata.client_id, method = %metadata.token_endpoint_auth_method, "client registered");
    let body = response_body(&authz, &metadata, Some(&registration_access_token))?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// RFC 7592 §2: the registration access token and the client certificate.
async fn managed_client(
    authz: &Authz,
    client_id: &str,
    peer: Option<&PeerCertificate>,
    headers: &HeaderMap,
) -> Result<(ClientRecord, ClientMetadata), AuthzError> {
    let invalid = || {
        AuthzError::InvalidToken(
            "the registration access token is not valid for this client".into(),
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            AuthzError::InvalidToken(
                "send the registration access token as Authorization: Bearer".into(),
            )
        })?;
    let record = authz.store.client(client_id).await?.ok_or_else(invalid)?;
    let presented = crate::sha256_b64url(token.trim().as_bytes());
    if !bool::from(
        presented
            .as_bytes()
            .ct_eq(record.registration_token_hash.as_bytes()),
    ) {
        return Err(invalid());
    }
    let metadata: ClientMetadata = serde_json::from_str(&record.metadata)
        .map_err(|error| AuthzError::Internal(error.to_string()))?;
    let peer = peer.ok_or_else(|| {
        AuthzError::InvalidClient(
            "client management requires mutual TLS: present your transport certificate".into(),
        )
    })?;
    let info = certbound_pki::CertificateInfo::parse(&peer.der)
        .map_err(|error| AuthzError::InvalidClient(error.0))?;
    if !peer.issued_by_directory
        || info.organisational_unit.as_deref() != Some(metadata.organisation_id.as_str())
    {
        return Err(AuthzError::InvalidClient(
            "client management needs a directory certificate of the client's organisation".into(),
        ));
    }
    Ok((record, metadata))
}

/// `GET /oauth2/register/{client_id}`.
pub(crate) async fn read(
    State(authz): State<Arc<Authz>>,
    Path(client_id): Path<String>,
    peer: Option<PeerCertificate>,
    headers: HeaderMap,
) -> Result<Response, AuthzError> {
    let (_, metadata) = managed_client(&authz, &client_id, peer.as_ref(), &headers).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(response_body(&authz, &metadata, None)?),
    )
        .into_response())
}

/// An RFC 7592 §2.2 update body: a JSON object naming the client, without the fields only the
/// server may set.
fn update_request(body: &[u8], client_id: &str) -> Result<Map<String, Value>, AuthzError> {
    let Ok(Value::Object(request)) = serde_json::from_slice(body) else {
        return Err(AuthzError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    };
    for forbidden in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
    ] {
        if request.contains_key(forbidden) {
            return Err(AuthzError::InvalidRequest(format!(
                "`{forbidden}` must not be sent in an update (RFC 7592 §2.2)"
            )));
        }
    }
    if request.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(AuthzError::InvalidRequest(
            "the body's client_id must be the client's".into(),
        ));
    }
    Ok(request)
}

/// `PUT /oauth2/register/{client_id}`: replaces the metadata, under the same rules.
pub(crate) async fn update(
    State(authz): State<Arc<Authz>>,
    Path(client_id): Path<String>,
    peer: Option<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthzError> {
    let (record, current) = managed_client(&authz, &client_id, peer.as_ref(), &headers).await?;
    let now = certbound_store::clock::now();
    let request = update_request(&body, &record.client_id)?;
    // A fresh SSA may come with the update; otherwise the registered one still defines the bounds.
    let (ssa, statement) = match request.get("software_statement").and_then(Value::as_str) {
        Some(ssa) if ssa != current.software_statement => (
            ssa.to_owned(),
            verify_software_statement(&authz, ssa, now).await?,
        ),
        _ => {
            let statement =
                verify_registered_statement(&authz, &current.software_statement).await?;
            (current.software_statement.clone(), statement)
        }
    };
    if statement.software_id != record.software_id {
        return Err(AuthzError::InvalidSoftwareStatement(
            "the software statement is for another software".into(),
        ));
    }
    let subject = current.tls_client_auth_subject_dn.clone();
    let peer_subject = peer
        .as_ref()
        .and_then(|peer| certbound_pki::CertificateInfo::parse(&peer.der).ok())
        .map(|info| info.subject)
        .unwrap_or(subject);
    let metadata = build_metadata(
        &request,
        &statement,
        &ssa,
        &peer_subject,
        &authz.config.algorithms,
        current.client_id_issued_at,
    )?;
    let stored = serde_json::to_string(&metadata)
        .map_err(|error| AuthzError::Internal(error.to_string()))?;
    authz.audit.record(
        "authz",
        "client_updated",
        now,
        serde_json::json!({"client_id": record.client_id, "scope": metadata.scope}),
    )?;
    authz
        .store
        .update_client(&record.client_id, &stored, now)
        .await?;
    tracing::info!(client_id = %record.client_id, "client updated");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(response_body(&authz, &metadata, None)?),
    )
        .into_response())
}

/// The registered SSA's claims, signature re-checked but not its age (it was fresh at registration).
async fn verify_registered_statement(
    authz: &Authz,
    ssa: &str,
) -> Result<SoftwareStatement, AuthzError> {
    let claims = certbound_jose::unverified_claims(ssa)
        .ok_or_else(|| AuthzError::Internal("stored software statement does not parse".into()))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    verify_software_statement(authz, ssa, iat).await
}

/// `DELETE /oauth2/register/{client_id}`: the client is gone; its tokens stop working.
pub(crate) async fn delete(
    State(authz): State<Arc<Authz>>,
    Path(client_id): Path<String>,
    peer: Option<PeerCertificate>,
    headers: HeaderMap,
) -> Result<StatusCode, AuthzError> {
    let (record, _) = managed_client(&authz, &client_id, peer.as_ref(), &headers).await?;
    authz.audit.record(
        "authz",
        "client_deleted",
        certbound_store::clock::now(),
        serde_json::json!({"client_id": record.client_id}),
    )?;
    authz.store.delete_client(&record.client_id).await?;
    tracing::info!(client_id = %record.client_id, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ssa() -> SoftwareStatement {
        SoftwareStatement {
            software_id: "s1".into(),
            client_id: "https://d/openid_relying_party/s1".into(),
            org_id: "o1".into(),
            jwks_uri: "https://d/keystore/o1/s1/application.jwks".into(),
            jwks_transport_uri: None,
            redirect_uris: vec!["https://example.com/cb".into()],
            scopes: ScopeSet::parse("cards.read cards.write"),
            client_name: "App".into(),
            client_uri: None,
            logo_uri: None,
            description: None,
            software_version: None,
        }
    }

    fn build(request: Value) -> Result<ClientMetadata, AuthzError> {
        build_metadata(
            request.as_object().unwrap(),
            &ssa(),
            "ssa",
            "CN=s1,OU=o1",
            &AlgorithmPolicy::default(),
            1,
        )
    }

    #[test]
    fn defaults_come_from_the_ssa_and_unknown_fields_are_ignored() {
        let metadata =
            build(json!({"software_statement": "ssa", "frobnicate": true, "client_name": "Mine"}))
                .unwrap();
        assert_eq!(metadata.scope.to_string(), "cards.read cards.write");
        assert_eq!(metadata.client_name, "App", "SSA values win");
        assert_eq!(
            metadata.token_endpoint_auth_method,
            AuthMethod::PrivateKeyJwt
        );
        assert_eq!(metadata.redirect_uris, vec!["https://example.com/cb"]);
    }

    #[test]
    fn each_rule_has_its_error() {
        let code = |request: Value| build(request).unwrap_err().as_str();
        assert_eq!(
            code(json!({"jwks": {"keys": []}})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"jwks_uri": "https://evil/jwks"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"redirect_uris": ["https://evil/cb"]})),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code(json!({"scope": "cards.read pin.read"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"token_endpoint_auth_method": "client_secret_basic"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"grant_types": ["authorization_code"]})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"token_endpoint_auth_signing_alg": "HS256"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(json!({"tls_client_auth_subject_dn": "CN=other"})),
            "invalid_client_metadata"
        );
        assert!(build(json!({"tls_client_auth_subject_dn": "cn=s1, ou=o1"})).is_ok());
        assert_eq!(
            build(json!({"scope": "cards.read"}))
                .unwrap()
                .scope
                .to_string(),
            "cards.read"
        );
    }
}

/// The SSA checks against a directory key served by a fake key source, with time pinned.
#[cfg(test)]
mod ssa_tests {
    use super::*;
    use certbound_jose::{Algorithm, SigningKey, sign};
    use certbound_pki::{CertificateAuthority, Jwk, PrivateKey, SigningKeyKind};
    use certbound_trust::fetch::KeySource;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000;
    const DIRECTORY: &str = "https://directory.test";

    struct FixedKeys(serde_json::Value);

    #[async_trait::async_trait]
    impl KeySource for FixedKeys {
        async fn fetch(&self, _uri: &str) -> Result<serde_json::Value, String> {
            Ok(self.0.clone())
        }
    }

    fn signer() -> (SigningKey, Jwk) {
        let key = PrivateKey::generate(SigningKeyKind::Rsa2048).unwrap();
        let (ca, _) = CertificateAuthority::generate(NOW, "test").unwrap();
        let chain = ca.issue_signer(&key, "signer", NOW).unwrap();
        let slices: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let mut jwk = Jwk::from_certificate_chain(&slices, "sig", Some("PS256")).unwrap();
        jwk.kid = "signer".into();
        (
            SigningKey::rsa_pem("signer", Algorithm::PS256, key.pkcs8_pem().as_bytes()).unwrap(),
            jwk,
        )
    }

    async fn authz(jwk: &Jwk) -> (Arc<Authz>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let database = Arc::new(certbound_store::Database::connect(&url).await.unwrap());
        let (master, _) = certbound_store::MasterKey::generate().unwrap();
        let config = crate::AuthzConfig {
            issuer: "https://authz.test".into(),
            directory_issuer: DIRECTORY.into(),
            directory_jwks_uri: format!("{DIRECTORY}/jwks"),
            token_lifetime: 600,
            algorithms: AlgorithmPolicy::default(),
            assertion_max_lifetime: certbound_jose::DEFAULT_MAX_LIFETIME,
            strict_audience: false,
            scopes_supported: vec![],
            rate_limits: crate::RateLimits::default(),
        };
        let source = FixedKeys(json!({"keys": [jwk]}));
        (
            Authz::new(
                config,
                database,
                Arc::new(master),
                Box::new(source),
                certbound_http::AuditLog::disabled(),
            )
            .await
            .unwrap(),
            dir,
        )
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": DIRECTORY, "iat": NOW, "software_id": "s1", "org_id": "o1",
            "client_id": format!("{DIRECTORY}/openid_relying_party/s1"), "client_name": "App",
            "jwks_uri": format!("{DIRECTORY}/keystore/o1/s1/application.jwks"),
            "redirect_uris": ["https://example.com/cb"], "scope": "cards.read",
        })
    }

    #[tokio::test]
    async fn ssa_rules() {
        let (key, jwk) = signer();
        let (authz, _dir) = authz(&jwk).await;
        let verify = |value: serde_json::Value, key: &SigningKey| sign(&value, key, "JWT").unwrap();
        let code = |result: Result<SoftwareStatement, AuthzError>| {
            result.map(|_| "ok").unwrap_or_else(|error| error.as_str())
        };

        let good = verify(claims(), &key);
        let statement = verify_software_statement(&authz, &good, NOW + 10)
            .await
            .unwrap();
        assert_eq!(statement.scopes.to_string(), "cards.read");

        // Older than five minutes.
        let error = verify_software_statement(&authz, &good, NOW + SSA_MAX_AGE + 1)
            .await
            .unwrap_err();
        assert_eq!(error.as_str(), "invalid_software_statement");
        assert!(error.to_string().contains("fetch a fresh one"), "{error}");
        assert_eq!(
            code(verify_software_statement(&authz, &good, NOW + SSA_MAX_AGE).await),
            "ok"
        );

        // Another issuer, signed by the right key.
        let mut other = claims();
        other["iss"] = json!("https://evil.test");
        let error = verify_software_statement(&authz, &verify(other, &key), NOW)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "software_statement issued by `https://evil.test`, not by the trusted directory"
        );

        // Signed by another key under the kid `signer`.
        let (stranger, _) = signer();
        let error = verify_software_statement(&authz, &verify(claims(), &stranger), NOW)
            .await
            .unwrap_err();
        assert_eq!(error.as_str(), "invalid_software_statement");
        assert!(
            error.to_string().contains("signature does not verify"),
            "{error}"
        );

        // A broken signature.
        let position = good.len() - 20;
        let flipped = if &good[position..=position] == "A" {
            "B"
        } else {
            "A"
        };
        let broken = format!("{}{flipped}{}", &good[..position], &good[position + 1..]);
        let error = verify_software_statement(&authz, &broken, NOW)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("signature does not verify"),
            "{error}"
        );

        // A missing claim.
        let mut missing = claims();
        missing.as_object_mut().unwrap().remove("org_id");
        let error = verify_software_statement(&authz, &verify(missing, &key), NOW)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "software_statement has no org_id");
    }
}
