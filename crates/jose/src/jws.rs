//! Verification of a compact JWS whose claims the caller checks itself (SSAs, signed
//! registration requests, access tokens).

use jsonwebtoken::{decode, decode_header};
use serde_json::Value;

use crate::keys::{AlgorithmPolicy, VerificationKey};

/// Why a JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// `alg` not in the allowlist.
    #[error("alg `{0}` is not accepted")]
    Algorithm(String),
    /// Not a compact JWS with a JSON object payload.
    #[error("not a signed JWT: {0}")]
    Malformed(String),
    /// No key verifies the signature.
    #[error("the signature does not verify with the expected keys")]
    Signature,
}

/// A verified JWS: its `kid` and its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJws {
    /// The `kid` of the key that verified it.
    pub kid: String,
    /// The `typ` header, if any.
    pub typ: Option<String>,
    /// The payload.
    pub claims: serde_json::Map<String, Value>,
}

/// Verifies `token` with one of `keys` (matched by `kid` when the header has one), `alg` from
/// `algorithms`. Claims are returned unchecked.
pub fn verify_jws(
    token: &str,
    keys: &[VerificationKey],
    algorithms: &AlgorithmPolicy,
) -> Result<VerifiedJws, JwsError> {
    let header =
        decode_header(token).map_err(|error| match crate::assertion::header_alg(token) {
            Some(alg) => JwsError::Algorithm(alg),
            None => JwsError::Malformed(error.to_string()),
        })?;
    if !algorithms.allows(header.alg) {
        return Err(JwsError::Algorithm(format!("{:?}", header.alg)));
    }
    let wants_rsa = crate::assertion::is_rsa_alg(header.alg);
    let validation = crate::assertion::signature_only(header.alg);
    for key in keys.iter().filter(|key| {
        key.is_rsa == wants_rsa && header.kid.as_deref().is_none_or(|kid| kid == key.kid)
    }) {
        match decode::<serde_json::Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => {
                return Ok(VerifiedJws {
                    kid: key.kid.clone(),
                    typ: header.typ.clone(),
                    claims: data.claims,
                });
            }
            Err(error) => match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => continue,
                _ => return Err(JwsError::Malformed(error.to_string())),
            },
        }
    }
    Err(JwsError::Signature)
}

/// A part of a compact JWS (0: header, 1: payload) as a JSON object, unverified.
fn part(token: &str, index: usize) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine as _;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims of a JWS without verifying it: only to find out whose keys verify it.
pub fn unverified_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    part(token, 1)
}

/// The header of a JWS without verifying it: to pick the key (`kid`) or check the `alg`.
pub fn unverified_header(token: &str) -> Option<serde_json::Map<String, Value>> {
    part(token, 0)
}

/// The `kid` of a JWS header, unverified.
pub fn unverified_kid(token: &str) -> Option<String> {
    unverified_header(token)?
        .get("kid")?
        .as_str()
        .map(str::to_owned)
}
