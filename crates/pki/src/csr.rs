//! The policy a certificate signing request must pass before the directory signs it.
//!
//! The directory is the seed's Raidiam Connect: the requester makes the key and the CSR with
//! `openssl req`, and only the CSR travels. The CA checks, in this order: the body is a PEM
//! CSR; the key is RSA ≥ 2048 bits or EC P-256/P-384; its self-signature verifies (proof of
//! possession); the subject's OU and CN are the organisation and software the CSR was
//! submitted for. Everything else in the request (extensions, key usages, CA flags) is ignored:
//! the CA sets those itself when it issues.

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::jwk::KeyParameters;

/// The subject a CSR must carry: OU is the OrganisationId, CN the SoftwareStatementId (or the
/// OrganisationId again for organisation-level certificates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrSubject {
    /// Expected OU.
    pub organisational_unit: String,
    /// Expected CN.
    pub common_name: String,
}

/// Why a CSR was refused. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// The signature over the request does not verify.
    #[error(
        "the CSR's signature does not verify: the request was altered or not signed by its own key"
    )]
    BadSignature,
    /// The key is of a kind the CA does not certify.
    #[error("{0}")]
    KeyNotAccepted(String),
    /// The body is not PEM, or the PEM is not a CSR.
    #[error(
        "the body is not a PEM certificate signing request: send the file `openssl req` wrote, starting with -----BEGIN CERTIFICATE REQUEST-----"
    )]
    NotPem,
    /// The subject does not name the organisation and software of the request path.
    #[error(
        "the CSR subject {field} is `{found}` but must be `{expected}`: use the command from csr-command"
    )]
    SubjectMismatch {
        /// `OU` or `CN`.
        field: &'static str,
        /// What the path requires.
        expected: String,
        /// What the CSR carries.
        found: String,
    },
    /// The DER inside the PEM is not a well-formed CSR.
    #[error("the CSR does not parse: {0}")]
    Unparseable(String),
}

/// A CSR that passed the policy, ready to be signed.
#[derive(Debug)]
pub struct VerifiedCsr {
    pub(crate) params: rcgen::CertificateSigningRequestParams,
    pub(crate) key: KeyParameters,
}

impl VerifiedCsr {
    /// The RFC 7638 thumbprint of the requested key: the certificate's future `kid`.
    pub fn key_id(&self) -> String {
        self.key.thumbprint()
    }
}

/// Checks a PEM CSR against the policy and the expected subject.
pub fn check_csr(pem: &[u8], expected: &CsrSubject) -> Result<VerifiedCsr, CsrError> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem).map_err(|_| CsrError::NotPem)?;
    let (rest, request) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|error| CsrError::Unparseable(error.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Unparseable(
            "trailing bytes after the request".into(),
        ));
    }
    // The key policy comes first: aws-lc-rs cannot even verify a signature by a key under
    // 2048 bits, and "your key is too small" is the message that helps.
    let info = &request.certification_request_info;
    let key = KeyParameters::from_spki(&info.subject_pki)
        .map_err(|error| CsrError::KeyNotAccepted(error.0))?;
    if key.is_rsa() && key.bits() < 2048 {
        return Err(CsrError::KeyNotAccepted(format!(
            "the CSR's RSA key has {} bits: RSA keys must have at least 2048 (openssl req -newkey rsa:2048)",
            key.bits()
        )));
    }
    request
        .verify_signature()
        .map_err(|_| CsrError::BadSignature)?;

    let single = |values: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| -> String {
        match values.as_slice() {
            [one] => one.as_str().map(str::to_owned).unwrap_or_default(),
            [] => String::new(),
            many => many
                .iter()
                .filter_map(|value| value.as_str().ok())
                .collect::<Vec<_>>()
                .join("+"),
        }
    };
    let organisational_unit = single(info.subject.iter_organizational_unit().collect());
    if organisational_unit != expected.organisational_unit {
        return Err(CsrError::SubjectMismatch {
            field: "OU",
            expected: expected.organisational_unit.clone(),
            found: organisational_unit,
        });
    }
    let common_name = single(info.subject.iter_common_name().collect());
    if common_name != expected.common_name {
        return Err(CsrError::SubjectMismatch {
            field: "CN",
            expected: expected.common_name.clone(),
            found: common_name,
        });
    }

    let params =
        rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|error| match error {
            rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
            other => CsrError::Unparseable(other.to_string()),
        })?;
    Ok(VerifiedCsr { params, key })
}
