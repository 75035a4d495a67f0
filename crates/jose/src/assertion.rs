//! RFC 7523 client assertions (`private_key_jwt`), checked as DESIGN.md section 3 says:
//! `iss` = `sub` = the client id; `aud` one of the accepted audiences (a string, or an array
//! holding one); `exp` required, in the future and at most [`DEFAULT_MAX_LIFETIME`] (configurable)
//! after `iat`; `iat`/`nbf` at most 60 s ahead; `jti`
//! required; `alg` from the allowlist; the key from the client's own keys.

use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use crate::keys::{AlgorithmPolicy, VerificationKey};

/// How far ahead of `now` an `iat` or `nbf` may be: clocks drift.
pub(crate) const MAX_FUTURE_SKEW: i64 = 60;

/// The longest life (`exp` − `iat`, or `exp` − now without `iat`) an assertion may have by
/// default, seconds: its `jti` is remembered until `exp`, so this bounds what a client can make
/// the replay table keep, and how long a stolen assertion stays usable.
pub const DEFAULT_MAX_LIFETIME: i64 = 300;

/// What a client assertion is checked against.
#[derive(Clone, Debug)]
pub struct AssertionRules<'a> {
    /// The client id the assertion must be issued by (`iss` and `sub`).
    pub client_id: &'a str,
    /// Other spellings of the same client accepted in `iss`/`sub` (the bare software id).
    pub client_id_aliases: &'a [String],
    /// Accepted `aud` values: the issuer, the token endpoint, its mTLS alias.
    pub audiences: &'a [String],
    /// Accepted algorithms.
    pub algorithms: &'a AlgorithmPolicy,
    /// The current time, seconds since the epoch.
    pub now: i64,
    /// The longest accepted life, seconds ([`DEFAULT_MAX_LIFETIME`] by default).
    pub max_lifetime: i64,
}

/// A verified assertion: what the caller needs for the replay check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The `jti`, to be used once.
    pub jti: String,
    /// `exp`: how long the `jti` must be remembered.
    pub exp: i64,
    /// The `kid` of the key that verified it.
    pub kid: String,
}

/// Why an assertion was refused: every variant is an RFC 6749 `invalid_client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// `alg` not in the allowlist (`none`, HS256, RS256 by default...).
    #[error("client assertion alg `{0}` is not accepted")]
    Algorithm(String),
    /// `aud` names none of the accepted audiences.
    #[error("client assertion aud must be the issuer or the token endpoint")]
    Audience,
    /// `exp` is in the past.
    #[error("client assertion has expired")]
    Expired,
    /// `exp` is further from `iat` (or now) than the accepted life.
    #[error("client assertion lives longer than {0} s: sign it with exp at most {0} s after iat")]
    Lifetime(i64),
    /// `iat` or `nbf` is more than 60 s ahead.
    #[error("client assertion {0} is in the future")]
    Future(&'static str),
    /// `iss` is not the client.
    #[error("client assertion iss must be the client_id")]
    Issuer,
    /// A required claim is missing.
    #[error("client assertion has no `{0}` claim")]
    Missing(&'static str),
    /// Not a JWS, or a claim of the wrong type.
    #[error("client assertion is malformed: {0}")]
    Malformed(String),
    /// No key of the client verifies the signature.
    #[error("client assertion signature does not verify with any of the client's keys")]
    Signature,
    /// `sub` is not the client.
    #[error("client assertion sub must be the client_id")]
    Subject,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Verifies a client assertion against the client's keys and the rules.
pub fn verify_client_assertion(
    assertion: &str,
    keys: &[VerificationKey],
    rules: &AssertionRules<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    let header = decode_header(assertion).map_err(|error| {
        // `none` and unknown algorithms fail to parse into the Algorithm enum.
        if assertion
            .split('.')
            .next()
            .is_some_and(|part| part.is_empty())
        {
            AssertionError::Malformed(error.to_string())
        } else {
            match header_alg(assertion) {
                Some(alg) => AssertionError::Algorithm(alg),
                None => AssertionError::Malformed(error.to_string()),
            }
        }
    })?;
    if !rules.algorithms.allows(header.alg) {
        return Err(AssertionError::Algorithm(format!("{:?}", header.alg)));
    }
    let wants_rsa = is_rsa_alg(header.alg);
    let candidates = keys.iter().filter(|key| {
        key.is_rsa == wants_rsa && header.kid.as_deref().is_none_or(|kid| kid == key.kid)
    });
    let mut verified = None;
    for key in candidates {
        let decoded = match key.parsed_for(header.alg) {
            Some(parsed) => crate::keys::decode_parsed::<Claims>(assertion, parsed),
            None => decode::<Claims>(assertion, &key.key, &signature_only(header.alg))
                .map(|data| data.claims),
        };
        match decoded {
            Ok(claims) => {
                verified = Some((claims, key.kid.clone()));
                break;
            }
            Err(error) => match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => continue,
                _ => return Err(AssertionError::Malformed(error.to_string())),
            },
        }
    }
    let (claims, kid) = verified.ok_or(AssertionError::Signature)?;
    check_claims(&claims, rules)?;
    Ok(VerifiedAssertion {
        jti: claims.jti.unwrap_or_default(),
        exp: claims.exp.unwrap_or_default(),
        kid,
    })
}

fn check_claims(claims: &Claims, rules: &AssertionRules<'_>) -> Result<(), AssertionError> {
    let is_client = |value: &str| {
        value == rules.client_id || rules.client_id_aliases.iter().any(|alias| alias == value)
    };
    let iss = claims
        .iss
        .as_deref()
        .ok_or(AssertionError::Missing("iss"))?;
    if !is_client(iss) {
        return Err(AssertionError::Issuer);
    }
    let sub = claims
        .sub
        .as_deref()
        .ok_or(AssertionError::Missing("sub"))?;
    if !is_client(sub) {
        return Err(AssertionError::Subject);
    }
    let audience_ok = match claims.aud.as_ref().ok_or(AssertionError::Missing("aud"))? {
        Audience::One(aud) => rules.audiences.contains(aud),
        Audience::Many(auds) => auds.iter().any(|aud| rules.audiences.contains(aud)),
    };
    if !audience_ok {
        return Err(AssertionError::Audience);
    }
    let exp = claims.exp.ok_or(AssertionError::Missing("exp"))?;
    if exp <= rules.now {
        return Err(AssertionError::Expired);
    }
    if claims
        .iat
        .is_some_and(|iat| iat > rules.now + MAX_FUTURE_SKEW)
    {
        return Err(AssertionError::Future("iat"));
    }
    if exp.saturating_sub(claims.iat.unwrap_or(rules.now)) > rules.max_lifetime {
        return Err(AssertionError::Lifetime(rules.max_lifetime));
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > rules.now + MAX_FUTURE_SKEW)
    {
        return Err(AssertionError::Future("nbf"));
    }
    match claims.jti.as_deref() {
        None | Some("") => Err(AssertionError::Missing("jti")),
        Some(_) => Ok(()),
    }
}

/// jsonwebtoken's checks reduced to the signature's, for `alg`: the claims are checked here.
pub(crate) fn signature_only(alg: jsonwebtoken::Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    // jsonwebtoken requires every listed algorithm to match the key family: list only the
    // header's, which the allowlist has just accepted.
    validation.algorithms = vec![alg];
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// Whether `alg` is an RSA algorithm (which key family verifies it).
pub(crate) fn is_rsa_alg(alg: jsonwebtoken::Algorithm) -> bool {
    matches!(
        alg,
        jsonwebtoken::Algorithm::PS256
            | jsonwebtoken::Algorithm::PS384
            | jsonwebtoken::Algorithm::PS512
            | jsonwebtoken::Algorithm::RS256
            | jsonwebtoken::Algorithm::RS384
            | jsonwebtoken::Algorithm::RS512
    )
}

/// The raw `alg` of a header that did not parse, for the error message.
pub(crate) fn header_alg(token: &str) -> Option<String> {
    let value = crate::jws::unverified_header(token)?;
    let alg: String = value
        .get("alg")?
        .as_str()?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    Some(alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningKey, sign};
    use certbound_pki::{PrivateKey, SigningKeyKind};
    use serde_json::json;

    const NOW: i64 = 1_790_000_000;
    const CLIENT: &str = "https://localhost:8441/openid_relying_party/abc";

    /// BASE64URL without padding, as JWS and JWK use it.
    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `message` signed with an RSA key and `padding`: any signing input, including ones no
    /// JWS signer would make.
    fn rsa_sign(
        private: &PrivateKey,
        padding: &'static dyn aws_lc_rs::signature::RsaEncoding,
        message: &str,
    ) -> Vec<u8> {
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(private.pkcs8_der()).unwrap();
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            padding,
            &aws_lc_rs::rand::SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .unwrap();
        signature
    }

    struct Fixture {
        signer: SigningKey,
        keys: Vec<VerificationKey>,
        audiences: Vec<String>,
        policy: AlgorithmPolicy,
    }

    fn fixture() -> Fixture {
        let private = PrivateKey::generate(SigningKeyKind::EcdsaP256).unwrap();
        let signer = SigningKey::es256_pkcs8("k1", private.pkcs8_der()).unwrap();
        // The public half, through a JWK as a keystore would publish it.
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            private.pkcs8_der(),
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..])});
        Fixture {
            signer,
            keys: vec![VerificationKey::from_jwk_json(&jwk).unwrap()],
            audiences: vec!["https://localhost:8442/token".into()],
            policy: AlgorithmPolicy::default(),
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": CLIENT, "sub": CLIENT, "aud": "https://localhost:8442/token", "exp": NOW + 60, "iat": NOW, "jti": "j1"})
    }

    fn check(fixture: &Fixture, token: &str) -> Result<VerifiedAssertion, AssertionError> {
        let rules = AssertionRules {
            client_id: CLIENT,
            client_id_aliases: &[],
            audiences: &fixture.audiences,
            algorithms: &fixture.policy,
            now: NOW,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        };
        verify_client_assertion(token, &fixture.keys, &rules)
    }

    fn with(
        fixture: &Fixture,
        change: impl FnOnce(&mut serde_json::Value),
    ) -> Result<VerifiedAssertion, AssertionError> {
        let mut value = claims();
        change(&mut value);
        check(fixture, &sign(&value, &fixture.signer, "JWT").unwrap())
    }

    #[test]
    fn accepts_a_good_assertion() {
        let fixture = fixture();
        let verified = with(&fixture, |_| {}).unwrap();
        assert_eq!(
            verified,
            VerifiedAssertion {
                jti: "j1".into(),
                exp: NOW + 60,
                kid: "k1".into()
            }
        );
        assert!(
            with(&fixture, |c| c["aud"] =
                json!(["x", "https://localhost:8442/token"]))
            .is_ok()
        );
        assert!(with(&fixture, |c| c["iat"] = json!(NOW + 8)).is_ok());
        // A life of exactly the bound passes; a second more does not, with or without `iat`.
        assert!(with(&fixture, |c| c["exp"] = json!(NOW + DEFAULT_MAX_LIFETIME)).is_ok());
        assert_eq!(
            with(&fixture, |c| c["exp"] =
                json!(NOW + DEFAULT_MAX_LIFETIME + 1)),
            Err(AssertionError::Lifetime(DEFAULT_MAX_LIFETIME))
        );
        assert_eq!(
            with(&fixture, |c| {
                c.as_object_mut().unwrap().remove("iat");
                c["exp"] = json!(NOW + 3600);
            }),
            Err(AssertionError::Lifetime(DEFAULT_MAX_LIFETIME))
        );
        assert_eq!(
            with(&fixture, |c| {
                c["iat"] = json!(NOW - 86_400);
                c["exp"] = json!(NOW + 10);
            }),
            Err(AssertionError::Lifetime(DEFAULT_MAX_LIFETIME))
        );
    }

    #[test]
    fn refuses_each_broken_claim() {
        let fixture = fixture();
        assert_eq!(
            with(&fixture, |c| c["exp"] = json!(NOW - 1)),
            Err(AssertionError::Expired)
        );
        assert_eq!(
            with(&fixture, |c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Err(AssertionError::Missing("exp"))
        );
        assert_eq!(
            with(&fixture, |c| c["iat"] = json!(NOW + 61)),
            Err(AssertionError::Future("iat"))
        );
        assert_eq!(
            with(&fixture, |c| c["nbf"] = json!(NOW + 61)),
            Err(AssertionError::Future("nbf"))
        );
        assert_eq!(
            with(&fixture, |c| c["iss"] = json!("other")),
            Err(AssertionError::Issuer)
        );
        assert_eq!(
            with(&fixture, |c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Err(AssertionError::Missing("sub"))
        );
        assert_eq!(
            with(&fixture, |c| c["aud"] = json!("https://evil")),
            Err(AssertionError::Audience)
        );
        assert_eq!(
            with(&fixture, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            Err(AssertionError::Missing("jti"))
        );
    }

    #[test]
    fn refuses_none_and_hmac_keyed_with_the_public_key() {
        use base64::Engine as _;
        let fixture = fixture();
        let encode = |value: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(value).unwrap())
        };
        let none = format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims()));
        assert_eq!(
            check(&fixture, &none),
            Err(AssertionError::Algorithm("none".into()))
        );
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(b"public key bytes"),
        )
        .unwrap();
        assert_eq!(
            check(&fixture, &hs),
            Err(AssertionError::Algorithm("HS256".into()))
        );
    }

    #[test]
    fn refuses_a_key_the_client_does_not_have() {
        let fixture = fixture();
        let stranger = PrivateKey::generate(SigningKeyKind::EcdsaP256).unwrap();
        let token = sign(
            &claims(),
            &SigningKey::es256_pkcs8("k1", stranger.pkcs8_der()).unwrap(),
            "JWT",
        )
        .unwrap();
        assert_eq!(check(&fixture, &token), Err(AssertionError::Signature));
    }

    /// A client's RSA key, signing as `alg`, and its public JWK as the client's JWKS publishes it.
    fn rsa_key(alg: jsonwebtoken::Algorithm) -> (SigningKey, VerificationKey, PrivateKey) {
        let private = PrivateKey::generate(SigningKeyKind::Rsa2048).unwrap();
        let signer = SigningKey::rsa_pem("r1", alg, private.pkcs8_pem().as_bytes()).unwrap();
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(private.pkcs8_der()).unwrap();
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
        let jwk = json!({
            "kty": "RSA",
            "kid": "r1",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        });
        (
            signer,
            VerificationKey::from_jwk_json(&jwk).unwrap(),
            private,
        )
    }

    #[test]
    fn keys_are_parsed_once_for_the_algorithms_of_the_hot_paths() {
        use jsonwebtoken::Algorithm;
        let (_, rsa, _) = rsa_key(Algorithm::PS256);
        assert!(rsa.parsed_for(Algorithm::PS256).is_some());
        assert!(rsa.parsed_for(Algorithm::RS256).is_some());
        assert!(rsa.parsed_for(Algorithm::ES256).is_none());
        assert!(rsa.parsed_for(Algorithm::PS384).is_none());
        let ec = &fixture().keys[0];
        assert!(ec.parsed_for(Algorithm::ES256).is_some());
        assert!(ec.parsed_for(Algorithm::PS256).is_none());
        // A P-384 point is not a P-256 key: it goes through jsonwebtoken, which refuses an
        // ES256 signature with it as before.
        let p384 = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        )
        .unwrap();
        let point = aws_lc_rs::signature::KeyPair::public_key(&p384)
            .as_ref()
            .to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-384", "kid": "k1", "x": b64(&point[1..49]), "y": b64(&point[49..])});
        let mut fixture = fixture();
        fixture.keys = vec![VerificationKey::from_jwk_json(&jwk).unwrap()];
        assert!(fixture.keys[0].parsed_for(Algorithm::ES256).is_none());
        assert_eq!(
            check(&fixture, &sign(&claims(), &fixture.signer, "JWT").unwrap()),
            Err(AssertionError::Signature)
        );
    }

    /// A PS256 assertion verifies with the client's RSA key parsed once, and one signed by
    /// another key, or changed after signing, does not.
    #[test]
    fn a_ps256_assertion_verifies_with_the_parsed_key() {
        let (signer, key, _) = rsa_key(jsonwebtoken::Algorithm::PS256);
        let (stranger, _, _) = rsa_key(jsonwebtoken::Algorithm::PS256);
        let mut fixture = fixture();
        fixture.keys = vec![key];
        let token = sign(&claims(), &signer, "JWT").unwrap();
        assert_eq!(check(&fixture, &token).unwrap().kid, "r1");
        let forged = sign(&claims(), &stranger, "JWT").unwrap();
        assert_eq!(check(&fixture, &forged), Err(AssertionError::Signature));
        let (signed, _) = token.rsplit_once('.').unwrap();
        let (_, other_signature) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            check(&fixture, &format!("{signed}.{other_signature}")),
            Err(AssertionError::Signature)
        );
        // RS256 is refused by the default policy before any key is tried.
        let (rs_signer, _, _) = rsa_key(jsonwebtoken::Algorithm::RS256);
        assert_eq!(
            check(&fixture, &sign(&claims(), &rs_signer, "JWT").unwrap()),
            Err(AssertionError::Algorithm("RS256".into()))
        );
    }

    /// The parsed key's path decides every token as jsonwebtoken's `decode` does: the same
    /// claims, or the same error (a signature that does not verify, a signature or payload that
    /// is not base64url, a payload that is not the claims' JSON), for PS256, RS256 and ES256.
    #[test]
    fn a_parsed_key_decides_as_jsonwebtoken_does() {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
        };
        use base64::Engine as _;
        use jsonwebtoken::Algorithm;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let ec_private = PrivateKey::generate(SigningKeyKind::EcdsaP256).unwrap();
        let ec_signer = SigningKey::es256_pkcs8("k1", ec_private.pkcs8_der()).unwrap();
        let ec_pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            ec_private.pkcs8_der(),
        )
        .unwrap();
        let point = aws_lc_rs::signature::KeyPair::public_key(&ec_pair)
            .as_ref()
            .to_vec();
        let ec_key = VerificationKey::from_jwk_json(&json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..])})).unwrap();
        let other_ec_key = fixture().keys.remove(0);
        let (ps_signer, ps_key, ps_private) = rsa_key(Algorithm::PS256);
        let (rs_signer, rs_key, rs_private) = rsa_key(Algorithm::RS256);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Signs any signing input with the key, so that payloads no signer would make are covered.
        let raw_sign = |alg: Algorithm, message: &str| -> Vec<u8> {
            match alg {
                Algorithm::ES256 => ec_pair
                    .sign(&rng, message.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                _ => {
                    let (private, padding): (
                        &PrivateKey,
                        &'static dyn aws_lc_rs::signature::RsaEncoding,
                    ) = if alg == Algorithm::PS256 {
                        (&ps_private, &RSA_PSS_SHA256)
                    } else {
                        (&rs_private, &RSA_PKCS1_SHA256)
                    };
                    rsa_sign(private, padding, message)
                }
            }
        };
        let outcome = |result: jsonwebtoken::errors::Result<Claims>| match result {
            Ok(claims) => format!("{claims:?}"),
            Err(error) => format!("{:?}", error.kind()),
        };
        let mut compared = 0;
        for (alg, signer, key, other) in [
            (Algorithm::ES256, &ec_signer, &ec_key, &other_ec_key),
            (Algorithm::PS256, &ps_signer, &ps_key, &rs_key),
            (Algorithm::RS256, &rs_signer, &rs_key, &ps_key),
        ] {
            let good = sign(&claims(), signer, "JWT").unwrap();
            let (signed, signature) = good.rsplit_once('.').unwrap();
            let (header, _) = signed.split_once('.').unwrap();
            let mut tokens = vec![
                good.clone(),
                format!("{header}.{}.{signature}", b64(br#"{"iss":"someone else"}"#)),
                // The last character changed (keeping the same length).
                format!(
                    "{signed}.{}{}",
                    &signature[..signature.len() - 1],
                    if signature.ends_with('A') { 'B' } else { 'A' }
                ),
                format!("{signed}.*{}", &signature[1..]),
                format!("{signed}."),
                format!("{signed}.{signature}="),
            ];
            for payload in [
                "*not base64*".to_owned(),
                b64(b"not json"),
                b64(b"[1, 2]"),
                b64(br#"{"exp": "tomorrow"}"#),
                b64(br#"{"jti": "a", "jti": "b"}"#),
                b64(br#"{"aud": 7}"#),
                b64(br#"{}"#),
                b64(br#"{"iss":"\u00e9","jti":"j","exp":1,"other":[1,{"a":null}]}"#),
            ] {
                let message = format!("{header}.{payload}");
                tokens.push(format!("{message}.{}", b64(&raw_sign(alg, &message))));
            }
            for token in &tokens {
                for verifier in [key, other] {
                    let Some(parsed) = verifier.parsed_for(alg) else {
                        continue;
                    };
                    let by_jsonwebtoken =
                        decode::<Claims>(token, &verifier.key, &signature_only(alg))
                            .map(|data| data.claims);
                    assert_eq!(
                        outcome(crate::keys::decode_parsed::<Claims>(token, parsed)),
                        outcome(by_jsonwebtoken),
                        "{alg:?} {token}"
                    );
                    compared += 1;
                }
            }
        }
        // Every token against its own key and against another key of its family.
        assert_eq!(compared, 3 * 2 * 14);
    }

    /// Only a compact JWS of three parts whose claims are a JSON object is read: serde reads a
    /// struct from an array of its fields too (jsonwebtoken's second reading of the claims
    /// refused that one as malformed, and still does).
    #[test]
    fn claims_that_are_not_a_json_object_are_malformed() {
        let (signer, key, private) = rsa_key(jsonwebtoken::Algorithm::PS256);
        let mut fixture = fixture();
        fixture.keys = vec![key];
        let good = sign(&claims(), &signer, "JWT").unwrap();
        let header = good.split('.').next().unwrap();
        let fields = json!([
            CLIENT,
            CLIENT,
            "https://localhost:8442/token",
            NOW + 60,
            NOW,
            null,
            "j1"
        ]);
        let message = format!("{header}.{}", b64(&serde_json::to_vec(&fields).unwrap()));
        let signature = rsa_sign(&private, &aws_lc_rs::signature::RSA_PSS_SHA256, &message);
        let as_array = format!("{message}.{}", b64(&signature));
        // Both readings refuse it, as a payload that is not the claims' JSON.
        let parsed = fixture.keys[0]
            .parsed_for(jsonwebtoken::Algorithm::PS256)
            .unwrap();
        let by_jsonwebtoken = decode::<Claims>(
            &as_array,
            &fixture.keys[0].key,
            &signature_only(jsonwebtoken::Algorithm::PS256),
        );
        for kind in [
            crate::keys::decode_parsed::<Claims>(&as_array, parsed).map(|_| ()),
            by_jsonwebtoken.map(|_| ()),
        ]
        .map(|result| result.unwrap_err().into_kind())
        {
            assert!(
                matches!(kind, jsonwebtoken::errors::ErrorKind::Json(_)),
                "{kind:?}"
            );
        }
        assert!(matches!(
            check(&fixture, &as_array),
            Err(AssertionError::Malformed(message)) if message.contains("JSON object")
        ));
        // Four parts are not a compact JWS, even where the last three would verify.
        assert!(matches!(
            crate::keys::decode_parsed::<Claims>(&format!("{header}.{good}"), parsed)
                .unwrap_err()
                .into_kind(),
            jsonwebtoken::errors::ErrorKind::InvalidToken
        ));
    }
}
