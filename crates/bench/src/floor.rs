//! The crypto floor: the time this process spends on only the unavoidable cryptography of one
//! request, with the same keys and algorithms the server uses.

use std::time::Instant;

use certbound_jose::{
    AlgorithmPolicy, AssertionRules, SigningKey, VerificationKey, verify_client_assertion,
};
use serde_json::json;

/// Average seconds per call of `work` over `iterations`.
fn time(iterations: u32, mut work: impl FnMut()) -> f64 {
    for _ in 0..iterations.min(50) {
        work();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        work();
    }
    start.elapsed().as_secs_f64() / f64::from(iterations)
}

/// One token request: verify a PS256 client assertion, sign an ES256 access token.
pub(crate) fn token(
    assertion: &str,
    client_key: &VerificationKey,
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<f64, String> {
    let audiences = [audience.to_owned()];
    let policy = AlgorithmPolicy::default();
    let rules = AssertionRules {
        client_id,
        client_id_aliases: &[],
        audiences: &audiences,
        algorithms: &policy,
        now,
        max_lifetime: certbound_jose::DEFAULT_MAX_LIFETIME,
    };
    verify_client_assertion(assertion, std::slice::from_ref(client_key), &rules)
        .map_err(|error| error.to_string())?;
    let verify = time(2000, || {
        let _ = verify_client_assertion(assertion, std::slice::from_ref(client_key), &rules);
    });
    let key = certbound_pki::PrivateKey::generate(certbound_pki::SigningKeyKind::EcdsaP256)
        .map_err(|error| error.to_string())?;
    let signer =
        SigningKey::es256_pkcs8("bench", key.pkcs8_der()).map_err(|error| error.to_string())?;
    let claims = json!({"iss": audience, "sub": client_id, "aud": [client_id], "scp": ["cards.read"], "cnf": {"x5t#S256": "x"}, "exp": now + 600, "iat": now, "nbf": now, "jti": "j", "tid": "t", "client_id": client_id, "org_id": "o", "software_id": "s"});
    let sign = time(2000, || {
        let _ = certbound_jose::sign(&claims, &signer, "JWT");
    });
    Ok(verify + sign)
}

/// One Cards API read: verify the ES256 access token, hash the presented certificate.
pub(crate) fn cards(
    access_token: &str,
    keys: &[VerificationKey],
    issuer: &str,
    certificate_der: &[u8],
    now: i64,
) -> Result<f64, String> {
    certbound_trust::verify_access_token(access_token, keys, issuer, now)
        .map_err(|error| error.to_string())?;
    let verify = time(2000, || {
        let _ = certbound_trust::verify_access_token(access_token, keys, issuer, now);
    });
    let hash = time(20000, || {
        let _ = certbound_pki::thumbprint_sha256(certificate_der);
    });
    Ok(verify + hash)
}
