//! Signing and verification keys, and the algorithm allowlist.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// The same key parsed once per algorithm, shared by the key's clones.
    pub(crate) parsed: Arc<ParsedKeys>,
}

/// A verification key parsed once for each algorithm it verifies on the hot paths (PS256 and
/// ES256 by default, RS256 where a policy adds it), on its first use with that algorithm.
/// jsonwebtoken builds its key from the JWK's components again for every signature it checks:
/// for RSA that includes the modulus' Montgomery constants, about a tenth of a PS256
/// verification (aws-lc computes them on the first verification with a parsed key and keeps
/// them). Any other algorithm, or a key that does not parse for one of these, goes through
/// jsonwebtoken as before.
#[derive(Default)]
pub(crate) struct ParsedKeys {
    ps256: OnceLock<Option<ParsedPublicKey>>,
    rs256: OnceLock<Option<ParsedPublicKey>>,
    es256: OnceLock<Option<ParsedPublicKey>>,
}

impl ParsedKeys {
    /// `key` parsed for `alg`, if `alg` is one of the three and `key` is of its family and
    /// parses (an EC point of another curve than P-256 does not; jsonwebtoken then refuses its
    /// signatures as it always has).
    pub(crate) fn for_alg(&self, key: &DecodingKey, alg: Algorithm) -> Option<&ParsedPublicKey> {
        let rsa = |params| match (key.family(), key.kind()) {
            (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .ok()
            }
            _ => None,
        };
        match alg {
            Algorithm::PS256 => self.ps256.get_or_init(|| rsa(&RSA_PSS_2048_8192_SHA256)),
            Algorithm::RS256 => self.rs256.get_or_init(|| rsa(&RSA_PKCS1_2048_8192_SHA256)),
            // The uncompressed point, as jsonwebtoken keeps an EC JWK.
            Algorithm::ES256 => self.es256.get_or_init(|| match (key.family(), key.kind()) {
                (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
                    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).ok()
                }
                _ => None,
            }),
            _ => return None,
        }
        .as_ref()
    }
}

/// What jsonwebtoken's `decode` does once it has checked the header's `alg`, with a key parsed
/// once: the signature checked over the text before the last dot (RFC 7515 section 5.2), then
/// the payload decoded into `T`, with jsonwebtoken's errors (a signature or payload that is not
/// base64url, a payload that is not `T`'s JSON) so that callers tell them apart as before.
/// Only a compact JWS of three parts is read, and only a JSON object as its claims (RFC 7519
/// section 7.2): serde would read a struct from an array too, which jsonwebtoken's second
/// reading of the claims happened to refuse.
pub(crate) fn decode_parsed<T: DeserializeOwned>(
    token: &str,
    key: &ParsedPublicKey,
) -> jsonwebtoken::errors::Result<T> {
    let malformed = || jsonwebtoken::errors::Error::from(ErrorKind::InvalidToken);
    let (message, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (header, payload) = message.rsplit_once('.').ok_or_else(malformed)?;
    if header.contains('.') {
        return Err(malformed());
    }
    let signature = URL_SAFE_NO_PAD.decode(signature)?;
    key.verify_sig(message.as_bytes(), &signature)
        .map_err(|_| jsonwebtoken::errors::Error::from(ErrorKind::InvalidSignature))?;
    let payload = URL_SAFE_NO_PAD.decode(payload)?;
    let claims = serde_json::from_slice(&payload)?;
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(<serde_json::Error as serde::de::Error>::invalid_type(
            serde::de::Unexpected::Seq,
            &"the claims as a JSON object",
        )
        .into());
    }
    Ok(claims)
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
        Ok(Self {
            kid,
            key,
            is_rsa,
            parsed: Arc::default(),
        })
    }

    /// This key parsed for `alg` (see [`ParsedKeys`]), if it is.
    pub(crate) fn parsed_for(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.parsed.for_alg(&self.key, alg)
    }
}

/// A private key with the algorithm and `kid` it signs under.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: Key,
}

/// The key itself. jsonwebtoken parses its `EncodingKey` again on every signature (for P-256
/// that includes computing the public point: about a fifth of an access token's signing cost),
/// so an ES256 key (the token signer's, on the hot path) is parsed once here and signs through
/// aws-lc-rs directly; RSA keys (client assertions, software statements) go through
/// jsonwebtoken.
#[derive(Clone)]
enum Key {
    Es256(Arc<EcdsaKeyPair>),
    Other(EncodingKey),
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
            key: Key::Other(key),
        })
    }

    /// An EC P-256 key (PKCS#8 DER) for ES256.
    pub fn es256_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Self, JoseError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|error| JoseError::Key(format!("not a P-256 PKCS#8 key: {error}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            key: Key::Es256(Arc::new(key)),
        })
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
    match &key.key {
        Key::Other(encoding) => jsonwebtoken::encode(&header, claims, encoding)
            .map_err(|error| JoseError::Sign(error.to_string())),
        Key::Es256(pair) => {
            // RFC 7515 section 7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature),
            // the ES256 signature being R || S, 32 bytes each (RFC 7518 section 3.4).
            let mut token = encoded_part(&header)?;
            token.push('.');
            token.push_str(&encoded_part(claims)?);
            let signature = pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), token.as_bytes())
                .map_err(|_| JoseError::Sign("ECDSA P-256 signing failed".into()))?;
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
            Ok(token)
        }
    }
}

/// BASE64URL of a JWS part's JSON.
fn encoded_part<T: Serialize + ?Sized>(part: &T) -> Result<String, JoseError> {
    serde_json::to_vec(part)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|error| JoseError::Sign(error.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;

    /// An ES256 token signed with the key parsed once is a compact JWS whose header is
    /// `{typ, alg, kid}` and whose signature is R || S, valid under the public key: checked with
    /// aws-lc-rs's verifier, apart from the code that signed it.
    #[test]
    fn an_es256_token_is_a_compact_jws_with_a_fixed_signature() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let key = SigningKey::es256_pkcs8("k1", pkcs8.as_ref()).unwrap();
        let token = sign(&serde_json::json!({"sub": "s", "n": 1}), &key, "JWT").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": "k1"})
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims, serde_json::json!({"sub": "s", "n": 1}));
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64);
        use aws_lc_rs::signature::KeyPair as _;
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            pair.public_key().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).unwrap();
        assert!(
            public.verify(b"another message", &signature).is_err(),
            "the check can fail"
        );
        assert!(SigningKey::es256_pkcs8("k1", b"not a key").is_err());
    }
}
