//! The JWK view of a certificate's public key, as the directory's keystore publishes it
//! (`kid`, `use`, `x5c`, `x5t#S256`) and as RFC 7638 thumbprints it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::certificate::ParseError;

/// The public parameters of an RSA or EC key, base64url encoded as in a JWK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyParameters {
    Ec {
        curve: &'static str,
        x: String,
        y: String,
        bits: usize,
    },
    Rsa {
        n: String,
        e: String,
        bits: usize,
    },
}

impl KeyParameters {
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, ParseError> {
        let oid = &spki.algorithm.algorithm;
        if *oid == OID_PKCS1_RSAENCRYPTION {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(ParseError("the RSA public key does not parse".into()));
            };
            let modulus = strip_leading_zeros(rsa.modulus);
            let exponent = strip_leading_zeros(rsa.exponent);
            return Ok(Self::Rsa {
                n: crate::b64url(modulus),
                e: crate::b64url(exponent),
                bits: rsa.key_size(),
            });
        }
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .ok_or_else(|| ParseError("the EC public key names no curve".into()))?;
            let (curve, size) = if curve_oid == OID_EC_P256 {
                ("P-256", 32)
            } else if curve_oid == OID_NIST_EC_P384 {
                ("P-384", 48)
            } else {
                return Err(ParseError(format!(
                    "EC curve {curve_oid} is not accepted: use P-256 or P-384"
                )));
            };
            let point = spki.subject_public_key.data.as_ref();
            // An uncompressed point is 0x04 || X || Y.
            let (Some(0x04), Some(x), Some(y)) =
                (point.first(), point.get(1..1 + size), point.get(1 + size..))
            else {
                return Err(ParseError(
                    "the EC public key is not an uncompressed point".into(),
                ));
            };
            if y.len() != size {
                return Err(ParseError("the EC public key has the wrong length".into()));
            }
            return Ok(Self::Ec {
                curve,
                x: crate::b64url(x),
                y: crate::b64url(y),
                bits: size * 8,
            });
        }
        Err(ParseError(format!(
            "public key algorithm {oid} is not accepted: use RSA or EC"
        )))
    }

    pub(crate) fn bits(&self) -> usize {
        match self {
            Self::Ec { bits, .. } | Self::Rsa { bits, .. } => *bits,
        }
    }

    pub(crate) fn is_rsa(&self) -> bool {
        matches!(self, Self::Rsa { .. })
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    pub(crate) fn thumbprint(&self) -> String {
        let members: BTreeMap<&str, &str> = match self {
            Self::Ec { curve, x, y, .. } => BTreeMap::from([
                ("crv", *curve),
                ("kty", "EC"),
                ("x", x.as_str()),
                ("y", y.as_str()),
            ]),
            Self::Rsa { n, e, .. } => {
                BTreeMap::from([("e", e.as_str()), ("kty", "RSA"), ("n", n.as_str())])
            }
        };
        // Serialising a map of strings cannot fail; an empty string would only make a wrong kid.
        let canonical = serde_json::to_string(&members).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        crate::b64url(digest.as_ref())
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// A public JWK as the keystore and `/jwks` publish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `RSA` or `EC`.
    pub kty: String,
    /// The RFC 7638 thumbprint of the key (or `signer` for the SSA key).
    pub kid: String,
    /// `sig`, `tls` or `enc`.
    #[serde(rename = "use")]
    pub key_use: String,
    /// The algorithm the key is meant for, where one is fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The certificate chain, standard base64 DER, leaf first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
    /// base64url SHA-256 of the leaf certificate.
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// A JWK Set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The JWK of a certificate's key with its chain, `kid` the RFC 7638 thumbprint.
    pub fn from_certificate_chain(
        chain_der: &[&[u8]],
        key_use: &str,
        alg: Option<&str>,
    ) -> Result<Self, ParseError> {
        let leaf = chain_der
            .first()
            .ok_or_else(|| ParseError("empty certificate chain".into()))?;
        let info = crate::CertificateInfo::parse(leaf)?;
        let mut jwk = Self {
            kty: String::new(),
            kid: info.key_id(),
            key_use: key_use.to_owned(),
            alg: alg.map(str::to_owned),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
            x5c: chain_der.iter().map(|der| crate::b64(der)).collect(),
            x5t_s256: Some(info.thumbprint.clone()),
        };
        match info.key {
            KeyParameters::Rsa { n, e, .. } => {
                jwk.kty = "RSA".into();
                jwk.n = Some(n);
                jwk.e = Some(e);
            }
            KeyParameters::Ec { curve, x, y, .. } => {
                jwk.kty = "EC".into();
                jwk.crv = Some(curve.into());
                jwk.x = Some(x);
                jwk.y = Some(y);
            }
        }
        Ok(jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let key = KeyParameters::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
            bits: 2048,
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
