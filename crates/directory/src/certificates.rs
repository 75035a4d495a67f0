//! Certificates: the CSR command the user runs, issuing from a CSR, listing, download,
//! revocation, the keystore JWKS files, the root CA and the CRL.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use certbound_pki::{
    CertificateType, CsrSubject, IssuedSubject, Jwk, JwkSet, RevokedSerial, check_csr,
};
use certbound_store::CertificateRecord;

use crate::organisations::{load_organisation, load_software_statement};
use crate::{Directory, DirectoryError};

/// Who a certificate belongs to: an organisation, or one of its software statements.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    pub(crate) organisation_id: String,
    pub(crate) software_statement_id: Option<String>,
}

impl Owner {
    /// The CN the CSR must carry.
    fn common_name(&self) -> &str {
        self.software_statement_id
            .as_deref()
            .unwrap_or(&self.organisation_id)
    }
}

/// A certificate as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CertificateView {
    certificate_id: String,
    organisation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    software_statement_id: Option<String>,
    certificate_type: String,
    key_id: String,
    key_type: String,
    certificate: String,
    not_before: String,
    not_after: String,
    serial_number: String,
    #[serde(rename = "x5t#S256")]
    thumbprint: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

impl From<&CertificateRecord> for CertificateView {
    fn from(record: &CertificateRecord) -> Self {
        let key_type = record
            .certificate_type
            .parse::<CertificateType>()
            .map(CertificateType::key_type)
            .unwrap_or_default()
            .to_owned();
        Self {
            certificate_id: record.id.clone(),
            organisation_id: record.organisation_id.clone(),
            software_statement_id: record.software_statement_id.clone(),
            certificate_type: record.certificate_type.clone(),
            key_id: record.key_id.clone(),
            key_type,
            certificate: record.chain_pem.clone(),
            not_before: crate::rfc3339(record.not_before),
            not_after: crate::rfc3339(record.not_after),
            serial_number: record.serial_hex.clone(),
            thumbprint: record.thumbprint.clone(),
            status: if record.revoked_at.is_some() {
                "Revoked"
            } else {
                "Active"
            },
            revoked_at: record.revoked_at.map(crate::rfc3339),
        }
    }
}

pub(crate) fn certificate_type(kind: &str) -> Result<CertificateType, DirectoryError> {
    kind.parse()
        .map_err(|error: certbound_pki::ParseError| DirectoryError::NotFound(error.0))
}

/// The owner of certificates at this path: the organisation, and the software statement if one
/// is named, both existing.
pub(crate) async fn owner(
    directory: &Directory,
    organisation_id: &str,
    software_statement_id: Option<&str>,
) -> Result<Owner, DirectoryError> {
    load_organisation(directory, organisation_id).await?;
    if let Some(id) = software_statement_id {
        load_software_statement(directory, organisation_id, id).await?;
    }
    Ok(Owner {
        organisation_id: organisation_id.to_owned(),
        software_statement_id: software_statement_id.map(str::to_owned),
    })
}

/// Quotes a value for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Escapes a value for an `openssl -subj` component.
fn subject_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('/', "\\/")
        .replace('+', "\\+")
        .replace('=', "\\=")
}

async fn csr_command(
    directory: &Directory,
    owner: Owner,
    kind: &str,
) -> Result<Response, DirectoryError> {
    let command = csr_command_line(directory, &owner, certificate_type(kind)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        command,
    )
        .into_response())
}

/// The `openssl req` command that makes a key and a CSR the directory will sign for `owner`.
pub(crate) async fn csr_command_line(
    directory: &Directory,
    owner: &Owner,
    certificate_type: CertificateType,
) -> Result<String, DirectoryError> {
    let organisation = load_organisation(directory, &owner.organisation_id).await?;
    let mut subject = String::new();
    if let Some(country) = &organisation.country {
        subject.push_str(&format!("/C={}", subject_value(country)));
    }
    subject.push_str(&format!(
        "/O={}/OU={}/CN={}",
        subject_value(&organisation.organisation_name),
        owner.organisation_id,
        owner.common_name()
    ));
    let stem = format!("{}_{}", owner.common_name(), certificate_type.as_str());
    Ok(format!(
        "openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout {stem}.key -out {stem}.csr -subj {}\n",
        shell_quote(&subject)
    ))
}

/// `GET .../softwarestatements/{id}/certificates/{type}/csr-command`.
pub(crate) async fn software_csr_command(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id, kind)): Path<(String, String, String)>,
) -> Result<Response, DirectoryError> {
    let owner = owner(&directory, &organisation_id, Some(&software_statement_id)).await?;
    csr_command(&directory, owner, &kind).await
}

/// `GET /organisations/{id}/certificates/{type}/csr-command`.
pub(crate) async fn organisation_csr_command(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, kind)): Path<(String, String)>,
) -> Result<Response, DirectoryError> {
    let owner = owner(&directory, &organisation_id, None).await?;
    csr_command(&directory, owner, &kind).await
}

/// The CSR as PEM: PEM bodies pass through; a DER body sent as `application/pkcs10` (RFC 5967)
/// is wrapped.
fn csr_pem(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, DirectoryError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match content_type.as_deref() {
        None
        | Some("application/pkcs10")
        | Some("text/plain")
        | Some("application/x-pem-file")
        | Some("application/octet-stream") => {}
        Some(other) => {
            return Err(DirectoryError::UnsupportedMediaType(format!(
                "send the CSR as application/pkcs10 or text/plain, not {other}"
            )));
        }
    }
    if content_type.as_deref() == Some("application/pkcs10") && body.first() == Some(&0x30) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        return Ok(format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{encoded}\n-----END CERTIFICATE REQUEST-----\n"
        )
        .into_bytes());
    }
    Ok(body.to_vec())
}

async fn issue(
    directory: &Directory,
    owner: Owner,
    kind: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Json<CertificateView>), DirectoryError> {
    let certificate_type = certificate_type(kind)?;
    let pem = csr_pem(headers, body)?;
    let record = issue_from_csr(directory, owner, certificate_type, &pem).await?;
    Ok((StatusCode::CREATED, Json(CertificateView::from(&record))))
}

/// Checks a PEM CSR against the owner and signs it: the one rule for the admin API and the
/// console. A refused CSR is [`DirectoryError::InvalidField`] `Csr`.
pub(crate) async fn issue_from_csr(
    directory: &Directory,
    owner: Owner,
    certificate_type: CertificateType,
    pem: &[u8],
) -> Result<CertificateRecord, DirectoryError> {
    let expected = CsrSubject {
        organisational_unit: owner.organisation_id.clone(),
        common_name: owner.common_name().to_owned(),
    };
    let csr = check_csr(pem, &expected)
        .map_err(|error| DirectoryError::field("Csr", error.to_string()))?;
    let organisation = load_organisation(directory, &owner.organisation_id).await?;
    let subject = IssuedSubject {
        country: organisation.country.as_deref(),
        organisation_name: &organisation.organisation_name,
        organisational_unit: &owner.organisation_id,
        common_name: owner.common_name(),
    };
    let now = certbound_store::clock::now();
    let crl_url = format!("{}/crl", directory.config.issuer);
    let issued = directory
        .ca
        .issue(csr, certificate_type, &subject, now, &crl_url)
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    let record = CertificateRecord {
        id: uuid::Uuid::new_v4().to_string(),
        organisation_id: owner.organisation_id,
        software_statement_id: owner.software_statement_id,
        certificate_type: certificate_type.as_str().to_owned(),
        key_id: issued.info.key_id(),
        thumbprint: issued.info.thumbprint.clone(),
        serial_hex: issued.info.serial_hex.clone(),
        chain_pem: issued.chain_pem,
        not_before: issued.info.not_before,
        not_after: issued.info.not_after,
        created_at: now,
        revoked_at: None,
    };
    directory.audit.record(
        "directory",
        "certificate_issued",
        now,
        serde_json::json!({"certificate_id": record.id, "organisation_id": record.organisation_id,
            "software_statement_id": record.software_statement_id, "certificate_type": record.certificate_type,
            "thumbprint": record.thumbprint, "serial": record.serial_hex}),
    )?;
    directory.store.insert_certificate(&record).await?;
    tracing::info!(
        certificate_id = %record.id,
        organisation_id = %record.organisation_id,
        software_statement_id = ?record.software_statement_id,
        certificate_type = %record.certificate_type,
        thumbprint = %record.thumbprint,
        "certificate issued"
    );
    Ok(record)
}

/// `POST .../softwarestatements/{id}/certificates/{type}`: sign a CSR.
pub(crate) async fn issue_software_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id, kind)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CertificateView>), DirectoryError> {
    let owner = owner(&directory, &organisation_id, Some(&software_statement_id)).await?;
    issue(&directory, owner, &kind, &headers, &body).await
}

/// `POST /organisations/{id}/certificates/{type}`: sign an organisation-level CSR.
pub(crate) async fn issue_organisation_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CertificateView>), DirectoryError> {
    let owner = owner(&directory, &organisation_id, None).await?;
    issue(&directory, owner, &kind, &headers, &body).await
}

async fn list(
    directory: &Directory,
    owner: Owner,
) -> Result<Json<Vec<CertificateView>>, DirectoryError> {
    let records = certificates_of(directory, &owner).await?;
    Ok(Json(records.iter().map(CertificateView::from).collect()))
}

/// The certificates of `owner` (an organisation's own, or a software statement's).
pub(crate) async fn certificates_of(
    directory: &Directory,
    owner: &Owner,
) -> Result<Vec<CertificateRecord>, DirectoryError> {
    Ok(directory
        .store
        .certificates(
            &owner.organisation_id,
            owner.software_statement_id.as_deref(),
        )
        .await?)
}

/// `GET .../softwarestatements/{id}/certificates`.
pub(crate) async fn list_software_certificates(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id)): Path<(String, String)>,
) -> Result<Json<Vec<CertificateView>>, DirectoryError> {
    let owner = owner(&directory, &organisation_id, Some(&software_statement_id)).await?;
    list(&directory, owner).await
}

/// `GET /organisations/{id}/certificates`.
pub(crate) async fn list_organisation_certificates(
    State(directory): State<Arc<Directory>>,
    Path(organisation_id): Path<String>,
) -> Result<Json<Vec<CertificateView>>, DirectoryError> {
    let owner = owner(&directory, &organisation_id, None).await?;
    list(&directory, owner).await
}

/// The certificate `id` if `owner` owns it.
pub(crate) async fn owned_certificate(
    directory: &Directory,
    owner: &Owner,
    id: &str,
) -> Result<CertificateRecord, DirectoryError> {
    directory
        .store
        .certificate(id)
        .await?
        .filter(|record| {
            record.organisation_id == owner.organisation_id
                && record.software_statement_id == owner.software_statement_id
        })
        .ok_or_else(|| DirectoryError::NotFound(format!("certificate {id} does not exist here")))
}

fn pem_response(record: &CertificateRecord) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        record.chain_pem.clone(),
    )
        .into_response()
}

/// `GET .../softwarestatements/{id}/certificates/{CertificateId}`: the PEM chain.
pub(crate) async fn show_software_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id, certificate_id)): Path<(String, String, String)>,
) -> Result<Response, DirectoryError> {
    let owner = owner(&directory, &organisation_id, Some(&software_statement_id)).await?;
    Ok(pem_response(
        &owned_certificate(&directory, &owner, &certificate_id).await?,
    ))
}

/// `GET /organisations/{id}/certificates/{CertificateId}`: the PEM chain.
pub(crate) async fn show_organisation_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, certificate_id)): Path<(String, String)>,
) -> Result<Response, DirectoryError> {
    let owner = owner(&directory, &organisation_id, None).await?;
    Ok(pem_response(
        &owned_certificate(&directory, &owner, &certificate_id).await?,
    ))
}

async fn revoke(
    directory: &Directory,
    owner: Owner,
    certificate_id: &str,
) -> Result<StatusCode, DirectoryError> {
    revoke_certificate(directory, &owner, certificate_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes `owner`'s certificate: the one rule for the admin API and the console (409 when it
/// is revoked already).
pub(crate) async fn revoke_certificate(
    directory: &Directory,
    owner: &Owner,
    certificate_id: &str,
) -> Result<(), DirectoryError> {
    let record = owned_certificate(directory, owner, certificate_id).await?;
    let already =
        || DirectoryError::Conflict(format!("certificate {certificate_id} is already revoked"));
    if record.revoked_at.is_some() {
        return Err(already());
    }
    directory.audit.record(
        "directory",
        "certificate_revoked",
        certbound_store::clock::now(),
        serde_json::json!({"certificate_id": certificate_id, "organisation_id": record.organisation_id, "thumbprint": record.thumbprint}),
    )?;
    if !directory
        .store
        .revoke_certificate(&record.id, certbound_store::clock::now())
        .await?
    {
        return Err(already());
    }
    tracing::info!(certificate_id, thumbprint = %record.thumbprint, "certificate revoked");
    Ok(())
}

/// `DELETE .../softwarestatements/{id}/certificates/{CertificateId}`: revoke.
pub(crate) async fn revoke_software_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id, certificate_id)): Path<(String, String, String)>,
) -> Result<StatusCode, DirectoryError> {
    let owner = owner(&directory, &organisation_id, Some(&software_statement_id)).await?;
    revoke(&directory, owner, &certificate_id).await
}

/// `DELETE /organisations/{id}/certificates/{CertificateId}`: revoke.
pub(crate) async fn revoke_organisation_certificate(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, certificate_id)): Path<(String, String)>,
) -> Result<StatusCode, DirectoryError> {
    let owner = owner(&directory, &organisation_id, None).await?;
    revoke(&directory, owner, &certificate_id).await
}

/// The JWK of a stored certificate. Signing keys name their algorithm; encryption keys are
/// RSA-OAEP-256 (RSA) or ECDH-ES (EC); transport keys name none.
pub(crate) fn certificate_jwk(record: &CertificateRecord) -> Result<Jwk, DirectoryError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(record.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    let certificate_type: CertificateType = record
        .certificate_type
        .parse()
        .map_err(|error: certbound_pki::ParseError| DirectoryError::Internal(error.0))?;
    let slices: Vec<&[u8]> = chain.iter().map(|der| der.as_ref()).collect();
    let mut jwk = Jwk::from_certificate_chain(&slices, certificate_type.jwk_use(), None)
        .map_err(|error| DirectoryError::Internal(error.0))?;
    jwk.alg = match (certificate_type, jwk.kty.as_str()) {
        (CertificateType::Signing, "RSA") => Some("PS256".into()),
        (CertificateType::Signing, _) => Some("ES256".into()),
        (CertificateType::Encryption, "RSA") => Some("RSA-OAEP-256".into()),
        (CertificateType::Encryption, _) => Some("ECDH-ES".into()),
        (CertificateType::Transport, _) => None,
    };
    Ok(jwk)
}

/// The keystore file names and which certificate types each lists.
fn types_of_file(file: &str) -> Option<&'static [CertificateType]> {
    match file {
        "application.jwks" => Some(&[CertificateType::Signing, CertificateType::Encryption]),
        "transport.jwks" => Some(&[CertificateType::Transport]),
        _ => None,
    }
}

async fn keystore(
    directory: &Directory,
    organisation_id: &str,
    software_statement_id: Option<&str>,
    file: &str,
    inactive: bool,
) -> Result<Response, DirectoryError> {
    let types = types_of_file(file).ok_or_else(|| {
        DirectoryError::NotFound(format!(
            "no keystore file {file}: use application.jwks or transport.jwks"
        ))
    })?;
    let owner = owner(directory, organisation_id, software_statement_id).await?;
    let now = certbound_store::clock::now();
    let records = directory
        .store
        .certificates(
            &owner.organisation_id,
            owner.software_statement_id.as_deref(),
        )
        .await?;
    let mut keys = Vec::new();
    for record in &records {
        let Ok(certificate_type) = record.certificate_type.parse::<CertificateType>() else {
            continue;
        };
        let is_inactive = record.revoked_at.is_some() || record.not_after <= now;
        if types.contains(&certificate_type) && is_inactive == inactive {
            keys.push(certificate_jwk(record)?);
        }
    }
    let mut response = Json(JwkSet { keys }).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(response)
}

/// `GET /keystore/{OrganisationId}/{file}`.
pub(crate) async fn organisation_keystore(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, file)): Path<(String, String)>,
) -> Result<Response, DirectoryError> {
    keystore(&directory, &organisation_id, None, &file, false).await
}

/// `GET /keystore/{OrganisationId}/inactive/{file}`, `/keystore/{OrganisationId}/{SoftwareStatementId}/{file}`
/// and the software's `redirect_uris.json` (the SSA's `sector_identifier_uri`).
pub(crate) async fn keystore_two(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, second, file)): Path<(String, String, String)>,
) -> Result<Response, DirectoryError> {
    if second == "inactive" {
        return keystore(&directory, &organisation_id, None, &file, true).await;
    }
    if file == "redirect_uris.json" {
        let statement = load_software_statement(&directory, &organisation_id, &second).await?;
        return Ok(Json(statement.redirect_uri).into_response());
    }
    keystore(&directory, &organisation_id, Some(&second), &file, false).await
}

/// `GET /keystore/{OrganisationId}/{SoftwareStatementId}/inactive/{file}`.
pub(crate) async fn software_inactive_keystore(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id, file)): Path<(String, String, String)>,
) -> Result<Response, DirectoryError> {
    keystore(
        &directory,
        &organisation_id,
        Some(&software_statement_id),
        &file,
        true,
    )
    .await
}

/// `GET /ca.pem`: the root CA, the trust anchor of every port and client certificate.
pub(crate) async fn ca_pem(State(directory): State<Arc<Directory>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        directory.ca.root_pem(),
    )
        .into_response()
}

/// A CRL this instance signed, and what it was signed over.
#[derive(Debug)]
pub(crate) struct SignedCrl {
    revoked: Vec<RevokedSerial>,
    signed_at: i64,
    der: Vec<u8>,
}

/// A CRL is re-signed this long after it was signed (its `nextUpdate` is a day after signing),
/// even if no revocation changed.
const CRL_REFRESH: i64 = 12 * 3600;

/// `GET /crl`: the CRL of every revoked certificate (DER, `application/pkix-crl`). Anyone may ask,
/// so asking costs one read: a new CRL (a new number, a signature) is made only when the
/// revocations changed or the one served nears its `nextUpdate`, and is served from memory
/// otherwise.
pub(crate) async fn crl(
    State(directory): State<Arc<Directory>>,
) -> Result<Response, DirectoryError> {
    let revoked: Vec<RevokedSerial> = directory
        .store
        .revoked_certificates()
        .await?
        .into_iter()
        .map(|record| RevokedSerial {
            serial_hex: record.serial_hex,
            revoked_at: record.revoked_at.unwrap_or_default(),
        })
        .collect();
    let now = certbound_store::clock::now();
    let mut cached = directory.crl.lock().await;
    if let Some(signed) = cached.as_ref()
        && signed.revoked == revoked
        && now - signed.signed_at < CRL_REFRESH
    {
        return Ok(crl_response(signed.der.clone()));
    }
    let number = directory.store.next_counter("crl_number").await?;
    let der = directory
        .ca
        .crl(&revoked, u64::try_from(number).unwrap_or_default(), now)
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    *cached = Some(SignedCrl {
        revoked,
        signed_at: now,
        der: der.clone(),
    });
    Ok(crl_response(der))
}

fn crl_response(der: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_and_subject_quoting() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(subject_value("A/B+C"), "A\\/B\\+C");
    }
}
