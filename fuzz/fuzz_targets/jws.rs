//! Compact JWS: client assertions and SSAs, verified against a fixed EC key.
#![no_main]
use std::sync::OnceLock;

use certbound_jose::{AlgorithmPolicy, AssertionRules, VerificationKey, unverified_claims, verify_client_assertion, verify_jws};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static VerificationKey {
    static KEY: OnceLock<VerificationKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        VerificationKey::from_jwk_json(&jwk).expect("a valid JWK")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let policy = AlgorithmPolicy::default();
    let audiences = ["https://localhost:8443".to_owned()];
    let rules = AssertionRules { client_id: "c", client_id_aliases: &[], audiences: &audiences, algorithms: &policy, now: 1_790_000_000, max_lifetime: certbound_jose::DEFAULT_MAX_LIFETIME };
    let _ = verify_client_assertion(token, std::slice::from_ref(key()), &rules);
    let _ = verify_jws(token, std::slice::from_ref(key()), &policy);
    let _ = unverified_claims(token);
    let _ = certbound_trust::verify_access_token(token, std::slice::from_ref(key()), "https://localhost:8443", 1_790_000_000);
});
