//! The directory's certificate authority: a root and an issuing CA (step-ca's layout). The
//! root signs only the issuing CA and stays offline in the store; the issuing CA signs client
//! certificates from CSRs, the TLS server certificates, the SSA signer's certificate and the CRL.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::UnixTime;
use crate::certificate::{CertificateInfo, CertificateType};
use crate::csr::VerifiedCsr;
use crate::keys::{KeyError, PrivateKey, SigningKeyKind};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// Client certificates live 13 months, as open-banking directories issue them.
const CLIENT_VALIDITY: i64 = 395 * DAY;
/// Backdating absorbs clock skew between the CA and relying parties.
const BACKDATE: i64 = HOUR;

/// Why the CA could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A key could not be generated or loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// rcgen refused to build or sign.
    #[error("certificate signing failed: {0}")]
    Signing(String),
    /// A stored certificate does not parse.
    #[error("stored certificate does not parse: {0}")]
    Stored(String),
}

impl From<rcgen::Error> for CaError {
    fn from(error: rcgen::Error) -> Self {
        Self::Signing(error.to_string())
    }
}

/// A certificate the CA has just issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The leaf, DER.
    pub der: Vec<u8>,
    /// The leaf then the issuing CA, PEM.
    pub chain_pem: String,
    /// What was issued.
    pub info: CertificateInfo,
}

/// A revoked serial as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Serial, lowercase hex.
    pub serial_hex: String,
    /// When the directory revoked it.
    pub revoked_at: UnixTime,
}

/// A TLS server or signer identity: the chain (leaf first) and its key.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// Leaf then issuing CA, DER.
    pub chain_der: Vec<Vec<u8>>,
    /// The leaf's key.
    pub key: PrivateKey,
}

/// The CA hierarchy as the directory holds it.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    issuing_key: PrivateKey,
}

fn at(unix: UnixTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|error| CaError::Signing(error.to_string()))
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Signing("no randomness".into()))?;
    // A positive INTEGER: clear the sign bit, and keep the first octet non-zero so the
    // encoding keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "certbound");
    name.push(DnType::CommonName, common_name);
    name
}

/// The subject of an issued client certificate, from the directory's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuedSubject<'a> {
    /// `C`: the organisation's country, when it has one.
    pub country: Option<&'a str>,
    /// `O`: the organisation's registered name.
    pub organisation_name: &'a str,
    /// `OU`: the OrganisationId.
    pub organisational_unit: &'a str,
    /// `CN`: the SoftwareStatementId (or the OrganisationId at organisation level).
    pub common_name: &'a str,
}

impl IssuedSubject<'_> {
    fn distinguished_name(&self) -> DistinguishedName {
        let mut name = DistinguishedName::new();
        if let Some(country) = self.country {
            name.push(DnType::CountryName, country);
        }
        name.push(DnType::OrganizationName, self.organisation_name);
        name.push(DnType::OrganizationalUnitName, self.organisational_unit);
        name.push(DnType::CommonName, self.common_name);
        name
    }
}

impl CertificateAuthority {
    /// Creates a new root and issuing CA. Returns the hierarchy and the root's key, which the
    /// caller seals away: nothing but a future re-issue of the issuing CA needs it.
    pub fn generate(now: UnixTime, label: &str) -> Result<(Self, PrivateKey), CaError> {
        let root_key = PrivateKey::generate(SigningKeyKind::EcdsaP256)?;
        let root_pair = root_key.key_pair()?;
        let mut root = CertificateParams::default();
        root.distinguished_name = name(&format!("{label} Root CA"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = at(now - BACKDATE)?;
        root.not_after = at(now + 20 * 365 * DAY)?;
        root.serial_number = Some(random_serial()?);
        let root_cert = root.self_signed(&root_pair)?;
        let root_issuer = Issuer::new(root, &root_pair);

        let issuing_key = PrivateKey::generate(SigningKeyKind::EcdsaP256)?;
        let issuing_pair = issuing_key.key_pair()?;
        let mut issuing = CertificateParams::default();
        issuing.distinguished_name = name(&format!("{label} Issuing CA"));
        issuing.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        issuing.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        issuing.not_before = at(now - BACKDATE)?;
        issuing.not_after = at(now + 10 * 365 * DAY)?;
        issuing.serial_number = Some(random_serial()?);
        issuing.use_authority_key_identifier_extension = true;
        let issuing_cert = issuing.signed_by(&issuing_pair, &root_issuer)?;

        Ok((
            Self {
                root_der: root_cert.der().to_vec(),
                issuing_der: issuing_cert.der().to_vec(),
                issuing_key,
            },
            root_key,
        ))
    }

    /// Rebuilds the hierarchy from stored parts.
    pub fn from_parts(
        root_der: Vec<u8>,
        issuing_der: Vec<u8>,
        issuing_key: PrivateKey,
    ) -> Result<Self, CaError> {
        CertificateInfo::parse(&root_der).map_err(|error| CaError::Stored(error.0))?;
        CertificateInfo::parse(&issuing_der).map_err(|error| CaError::Stored(error.0))?;
        issuing_key.key_pair()?;
        Ok(Self {
            root_der,
            issuing_der,
            issuing_key,
        })
    }

    /// The root certificate, DER: the trust anchor of every port and client certificate.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The issuing CA certificate, DER.
    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// The issuing CA's key, for sealing.
    pub fn issuing_key(&self) -> &PrivateKey {
        &self.issuing_key
    }

    /// The root certificate, PEM (`ca.pem`).
    pub fn root_pem(&self) -> String {
        pem("CERTIFICATE", &self.root_der)
    }

    fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<Vec<u8>, CaError> {
        let pair = self.issuing_key.key_pair()?;
        let issuer = Issuer::from_ca_cert_der(&self.issuing_der.as_slice().into(), &pair)?;
        Ok(params.signed_by(public_key, &issuer)?.der().to_vec())
    }

    fn chain_pem(&self, leaf: &[u8]) -> String {
        format!(
            "{}{}",
            pem("CERTIFICATE", leaf),
            pem("CERTIFICATE", &self.issuing_der)
        )
    }

    /// Issues a client certificate of the given type from a CSR that passed [`crate::check_csr`].
    /// Only the CSR's key is kept: the subject is the directory's truth (`subject`), and usages,
    /// validity and serial are the CA's. Whatever else the requester asked for is dropped.
    pub fn issue(
        &self,
        csr: VerifiedCsr,
        certificate_type: CertificateType,
        subject: &IssuedSubject<'_>,
        now: UnixTime,
        crl_url: &str,
    ) -> Result<IssuedCertificate, CaError> {
        let mut params = csr.params.params;
        params.distinguished_name = subject.distinguished_name();
        params.subject_alt_names = Vec::new();
        params.custom_extensions = Vec::new();
        params.name_constraints = None;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = at(now - BACKDATE)?;
        params.not_after = at(now + CLIENT_VALIDITY)?;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl_url.to_owned()],
        }];
        let rsa = csr.key.is_rsa();
        (params.key_usages, params.extended_key_usages) = match certificate_type {
            CertificateType::Transport => (
                if rsa {
                    vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyEncipherment,
                    ]
                } else {
                    vec![KeyUsagePurpose::DigitalSignature]
                },
                vec![
                    ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsagePurpose::ServerAuth,
                ],
            ),
            CertificateType::Signing => (
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::ContentCommitment,
                ],
                Vec::new(),
            ),
            CertificateType::Encryption => (
                if rsa {
                    vec![
                        KeyUsagePurpose::KeyEncipherment,
                        KeyUsagePurpose::DataEncipherment,
                    ]
                } else {
                    vec![KeyUsagePurpose::KeyAgreement]
                },
                Vec::new(),
            ),
        };
        let der = self.sign(&params, &csr.params.public_key)?;
        let info = CertificateInfo::parse(&der).map_err(|error| CaError::Signing(error.0))?;
        Ok(IssuedCertificate {
            chain_pem: self.chain_pem(&der),
            der,
            info,
        })
    }

    /// Issues a TLS server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[&str], now: UnixTime) -> Result<ServerIdentity, CaError> {
        let key = PrivateKey::generate(SigningKeyKind::EcdsaP256)?;
        let pair = key.key_pair()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(names.first().copied().unwrap_or("localhost"));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*name).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = at(now - BACKDATE)?;
        params.not_after = at(now + 2 * 365 * DAY)?;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let der = self.sign(&params, &pair)?;
        Ok(ServerIdentity {
            chain_der: vec![der, self.issuing_der.clone()],
            key,
        })
    }

    /// Certifies a signing key of the stack itself (the SSA signer), so that its JWK carries `x5c`.
    pub fn issue_signer(
        &self,
        key: &PrivateKey,
        common_name: &str,
        now: UnixTime,
    ) -> Result<Vec<Vec<u8>>, CaError> {
        let pair = key.key_pair()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now - BACKDATE)?;
        params.not_after = at(now + 5 * 365 * DAY)?;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let der = self.sign(&params, &pair)?;
        Ok(vec![der, self.issuing_der.clone()])
    }

    /// Signs a CRL listing the given serials, valid for a day.
    pub fn crl(
        &self,
        revoked: &[RevokedSerial],
        number: u64,
        now: UnixTime,
    ) -> Result<Vec<u8>, CaError> {
        let revoked_certs = revoked
            .iter()
            .map(|entry| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex_decode(&entry.serial_hex)?),
                    revocation_time: at(entry.revoked_at)?,
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: at(now - 60)?,
            next_update: at(now + DAY)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pair = self.issuing_key.key_pair()?;
        let issuer = Issuer::from_ca_cert_der(&self.issuing_der.as_slice().into(), &pair)?;
        Ok(params.signed_by(&issuer)?.der().to_vec())
    }
}

fn hex_decode(hex: &str) -> Result<Vec<u8>, CaError> {
    if !hex.len().is_multiple_of(2) {
        return Err(CaError::Stored(format!("serial `{hex}` is not hex")));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| CaError::Stored(format!("serial `{hex}` is not hex")))
        })
        .collect()
}

/// PEM-encodes DER under the given label (`CERTIFICATE`, `PRIVATE KEY`...).
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = crate::b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::{CsrError, CsrSubject, check_csr};
    use rustls_pki_types::pem::PemObject;

    const NOW: UnixTime = 1_790_000_000;

    fn csr_pem(key: &rcgen::KeyPair, ou: &str, cn: &str) -> String {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "GB");
        dn.push(DnType::OrganizationName, "Test Company 1");
        dn.push(DnType::OrganizationalUnitName, ou);
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    fn subject() -> CsrSubject {
        CsrSubject {
            organisational_unit: "org-1".into(),
            common_name: "ss-1".into(),
        }
    }

    #[test]
    fn issues_transport_certificate_that_chains_and_carries_the_key_id() {
        let (ca, _root_key) = CertificateAuthority::generate(NOW, "test").unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = check_csr(csr_pem(&key, "org-1", "ss-1").as_bytes(), &subject()).unwrap();
        let kid = csr.key_id();
        let issued = ca
            .issue(
                csr,
                CertificateType::Transport,
                &IssuedSubject {
                    country: Some("GB"),
                    organisation_name: "Registered Name Ltd",
                    organisational_unit: "org-1",
                    common_name: "ss-1",
                },
                NOW,
                "https://localhost/crl",
            )
            .unwrap();
        assert_eq!(issued.info.key_id(), kid);
        // The CSR said O=Test Company 1 and C=GB with its own values; the directory's win.
        assert!(
            issued.info.subject.contains("O=Registered Name Ltd"),
            "{}",
            issued.info.subject
        );
        assert!(
            !issued.info.subject.contains("Test Company"),
            "{}",
            issued.info.subject
        );
        assert_eq!(issued.info.organisational_unit.as_deref(), Some("org-1"));
        assert_eq!(issued.info.common_name.as_deref(), Some("ss-1"));
        assert_eq!(issued.info.not_before, NOW - BACKDATE);
        assert!(issued.chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        let (_, parsed) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        assert!(!parsed.is_ca());
    }

    #[test]
    fn refuses_subject_that_does_not_match_the_path() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let error = check_csr(csr_pem(&key, "org-2", "ss-1").as_bytes(), &subject()).unwrap_err();
        assert!(
            matches!(error, CsrError::SubjectMismatch { field: "OU", .. }),
            "{error}"
        );
        let error = check_csr(csr_pem(&key, "org-1", "ss-2").as_bytes(), &subject()).unwrap_err();
        assert!(
            matches!(error, CsrError::SubjectMismatch { field: "CN", .. }),
            "{error}"
        );
    }

    #[test]
    fn refuses_non_pem_and_tampered_requests() {
        assert_eq!(
            check_csr(b"hello", &subject()).unwrap_err(),
            CsrError::NotPem
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem_text = csr_pem(&key, "org-1", "ss-1");
        let mut der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem_text.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec();
        // Flip a byte inside the subject: the self-signature no longer covers what is there.
        let position = der.windows(4).position(|window| window == b"ss-1").unwrap();
        der[position + 3] = b'9';
        let tampered = pem("CERTIFICATE REQUEST", &der);
        let expected = CsrSubject {
            organisational_unit: "org-1".into(),
            common_name: "ss-9".into(),
        };
        assert_eq!(
            check_csr(tampered.as_bytes(), &expected).unwrap_err(),
            CsrError::BadSignature
        );
    }

    #[test]
    fn crl_lists_revoked_serials() {
        let (ca, _) = CertificateAuthority::generate(NOW, "test").unwrap();
        let crl = ca
            .crl(
                &[RevokedSerial {
                    serial_hex: "4a0b".into(),
                    revoked_at: NOW,
                }],
                7,
                NOW,
            )
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
        let serials: Vec<_> = parsed
            .iter_revoked_certificates()
            .map(|entry| entry.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![vec![0x4a, 0x0b]]);
    }
}
