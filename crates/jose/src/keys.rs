//! Signing and verification keys, and the algorithm allowlist.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

/// A signing or key-loading failure.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    /// The key does not parse for the algorithm.
    #[error("key not usable: {0}")]
    Key(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Which `alg` values a verifier accepts. `none` and HMAC can never be allowed: the enum
/// this wraps has no `none`, and [`AlgorithmPolicy::new`] drops the HS family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlgorithmPolicy {
    allowed: Vec<Algorithm>,
}

impl Default for AlgorithmPolicy {
    /// PS256 and ES256, as DESIGN.md section 3 sets the default.
    fn default() -> Self {
        Self {
            allowed: vec![Algorithm::PS256, Algorithm::ES256],
        }
    }
}

impl AlgorithmPolicy {
    /// An allowlist of asymmetric algorithms; HMAC algorithms are discarded.
    pub fn new(allowed: impl IntoIterator<Item = Algorithm>) -> Self {
        Self {
            allowed: allowed
                .into_iter()
                .filter(|alg| {
                    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
                })
                .collect(),
        }
    }

    /// The default list plus RS256.
    pub fn with_rs256() -> Self {
        Self::new([Algorithm::PS256, Algorithm::ES256, Algorithm::RS256])
    }

    /// Whether `alg` is allowed.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.allowed.contains(&alg)
    }

    /// The allowed algorithms, for discovery documents.
    pub fn names(&self) -> Vec<String> {
        self.allowed.iter().map(|alg| format!("{alg:?}")).collect()
    }
}

/// A public key that may verify tokens, with the `kid` it is published under.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key id.
    pub kid: String,
    pub(crate) key: DecodingKey,
    pub(crate) is_rsa: bool,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// From a JWK's JSON (RSA `n`/`e` or EC `crv`/`x`/`y`).
    pub fn from_jwk_json(jwk: &serde_json::Value) -> Result<Self, JoseError> {
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone())
            .map_err(|error| JoseError::Key(error.to_string()))?;
        let kid = parsed.common.key_id.clone().unwrap_or_default();
        let is_rsa = matches!(
            parsed.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
        );
        let key =
            DecodingKey::from_jwk(&parsed).map_err(|error| JoseError::Key(error.to_string()))?;
        Ok(Self { kid, key, is_rsa })
    }
}

/// A private key with the algorithm and `kid` it signs under. The parsed key is kept so hot
/// paths do not re-parse it.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An RSA key (PKCS#8 or PKCS#1 PEM) for PS256 or RS256.
    pub fn rsa_pem(kid: &str, alg: Algorithm, pem: &[u8]) -> Result<Self, JoseError> {
        let key =
            EncodingKey::from_rsa_pem(pem).map_err(|error| JoseError::Key(error.to_string()))?;
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            key,
        })
    }

    /// An EC P-256 key (PKCS#8 DER) for ES256.
    pub fn es256_pkcs8(kid: &str, pkcs8: &[u8]) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// Signs `claims` as a compact JWS with header `{alg, kid, typ}`.
pub fn sign<T: Serialize>(claims: &T, key: &SigningKey, typ: &str) -> Result<String, JoseError> {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key.key)
        .map_err(|error| JoseError::Sign(error.to_string()))
}
