//! What the stack reads from an X.509 certificate: its type in the directory, its validity,
//! serial, subject, and the public key in JWK form.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::UnixTime;
use crate::jwk::KeyParameters;

/// The three certificate types of the directory, as the seed's Raidiam Connect names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertificateType {
    /// `rtsencryption`: a key clients encrypt to; JWK `use: enc`.
    Encryption,
    /// `rtssigning`: signs client assertions and request objects; JWK `use: sig`.
    Signing,
    /// `rtstransport`: the mTLS client (and server) certificate; JWK `use: tls`.
    Transport,
}

impl CertificateType {
    /// The path segment (`transport`, `signing`, `encryption`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encryption => "encryption",
            Self::Signing => "signing",
            Self::Transport => "transport",
        }
    }

    /// The directory's `KeyType` for this certificate type.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::Encryption => "rtsencryption",
            Self::Signing => "rtssigning",
            Self::Transport => "rtstransport",
        }
    }

    /// The JWK `use` of keys of this type.
    pub fn jwk_use(self) -> &'static str {
        match self {
            Self::Encryption => "enc",
            Self::Signing => "sig",
            Self::Transport => "tls",
        }
    }
}

impl fmt::Display for CertificateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertificateType {
    type Err = ParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "encryption" | "rtsencryption" => Ok(Self::Encryption),
            "signing" | "rtssigning" => Ok(Self::Signing),
            "transport" | "rtstransport" => Ok(Self::Transport),
            other => Err(ParseError(format!(
                "unknown certificate type `{other}`: use transport, signing or encryption"
            ))),
        }
    }
}

/// A value from outside that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// The RFC 8705 `x5t#S256` of a DER certificate: base64url(SHA-256(DER)), no padding.
pub fn thumbprint_sha256(certificate_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_der);
    crate::b64url(digest.as_ref())
}

/// Key roles (DESIGN.md section 2): whether a certificate may be an mTLS client certificate. The
/// directory gives `transport` certificates an extended key usage naming `clientAuth`, and
/// `signing` and `encryption` certificates none, which WebPKI would read as "any use": so a
/// client certificate must name `clientAuth` explicitly.
pub fn names_client_auth(certificate_der: &[u8]) -> bool {
    X509Certificate::from_der(certificate_der).is_ok_and(|(_, certificate)| {
        certificate
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|usage| usage.value.client_auth)
    })
}

/// The facts of a parsed certificate that the directory and the TLS edge use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number, lowercase hex without separators.
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: UnixTime,
    /// End of validity.
    pub not_after: UnixTime,
    /// Subject organizational unit (the directory puts the OrganisationId here).
    pub organisational_unit: Option<String>,
    /// Subject common name (the SoftwareStatementId, or the OrganisationId for organisation certificates).
    pub common_name: Option<String>,
    /// Subject distinguished name in RFC 4514 form.
    pub subject: String,
    /// `x5t#S256`.
    pub thumbprint: String,
    pub(crate) key: KeyParameters,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, ParseError> {
        let (rest, certificate) = X509Certificate::from_der(der)
            .map_err(|error| ParseError(format!("not an X.509 certificate: {error}")))?;
        if !rest.is_empty() {
            return Err(ParseError("trailing bytes after the certificate".into()));
        }
        let subject = certificate.subject();
        let first = |mut values: Box<dyn Iterator<Item = _> + '_>| {
            values
                .next()
                .and_then(|value: &x509_parser::x509::AttributeTypeAndValue<'_>| {
                    value.as_str().ok().map(str::to_owned)
                })
        };
        let key = KeyParameters::from_spki(certificate.public_key())?;
        Ok(Self {
            serial_hex: certificate.raw_serial_as_string().replace(':', ""),
            not_before: certificate.validity().not_before.timestamp(),
            not_after: certificate.validity().not_after.timestamp(),
            organisational_unit: first(Box::new(subject.iter_organizational_unit())),
            common_name: first(Box::new(subject.iter_common_name())),
            subject: subject.to_string(),
            thumbprint: thumbprint_sha256(der),
            key,
        })
    }

    /// The RFC 7638 JWK thumbprint of the certificate's public key: the directory's `kid`.
    pub fn key_id(&self) -> String {
        self.key.thumbprint()
    }
}
