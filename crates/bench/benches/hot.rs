//! Criterion micro-benchmarks of the hot functions: client assertion verification, access token
//! signing and verification, certificate thumbprint, SSA signing, sealing a PAN.
//! `cargo bench -p certbound-bench`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // benchmark code

use std::hint::black_box;

use certbound_jose::{
    AlgorithmPolicy, AssertionRules, SigningKey, VerificationKey, sign, verify_client_assertion,
};
use certbound_pki::{CertificateAuthority, Jwk, PrivateKey, SigningKeyKind};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const NOW: i64 = 1_790_000_000;

fn rsa_signer() -> (SigningKey, VerificationKey, Vec<u8>) {
    let key = PrivateKey::generate(SigningKeyKind::Rsa2048).unwrap();
    let (ca, _) = CertificateAuthority::generate(NOW, "bench").unwrap();
    let chain = ca.issue_signer(&key, "bench", NOW).unwrap();
    let slices: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let jwk = Jwk::from_certificate_chain(&slices, "sig", Some("PS256")).unwrap();
    let verification =
        VerificationKey::from_jwk_json(&serde_json::to_value(&jwk).unwrap()).unwrap();
    let signer = SigningKey::rsa_pem(
        &jwk.kid,
        certbound_jose::Algorithm::PS256,
        key.pkcs8_pem().as_bytes(),
    )
    .unwrap();
    (signer, verification, chain[0].clone())
}

fn benches(c: &mut Criterion) {
    let (client_key, client_public, certificate) = rsa_signer();
    let client = "https://localhost:8441/openid_relying_party/bench";
    let audience = ["https://localhost:8443".to_owned()];
    let assertion = sign(&json!({"iss": client, "sub": client, "aud": audience[0], "exp": NOW + 60, "iat": NOW, "jti": "j"}), &client_key, "JWT").unwrap();
    let policy = AlgorithmPolicy::default();
    let rules = AssertionRules {
        client_id: client,
        client_id_aliases: &[],
        audiences: &audience,
        algorithms: &policy,
        now: NOW,
        max_lifetime: certbound_jose::DEFAULT_MAX_LIFETIME,
    };
    c.bench_function("verify PS256 client assertion", |b| {
        b.iter(|| {
            verify_client_assertion(
                black_box(&assertion),
                std::slice::from_ref(&client_public),
                &rules,
            )
            .unwrap()
        })
    });

    let token_key = PrivateKey::generate(SigningKeyKind::EcdsaP256).unwrap();
    let token_signer = SigningKey::es256_pkcs8("kid", token_key.pkcs8_der()).unwrap();
    let jwk = token_key.public_jwk("kid", "sig", "ES256").unwrap();
    let token_public =
        VerificationKey::from_jwk_json(&serde_json::to_value(&jwk).unwrap()).unwrap();
    let claims = json!({"iss": audience[0], "sub": client, "aud": [client], "scp": ["cards.read"], "cnf": {"x5t#S256": "t"},
        "exp": NOW + 600, "iat": NOW, "nbf": NOW, "jti": "j", "tid": "t", "client_id": client, "org_id": "o", "software_id": "s"});
    c.bench_function("sign ES256 access token", |b| {
        b.iter(|| sign(black_box(&claims), &token_signer, "JWT").unwrap())
    });
    let token = sign(&claims, &token_signer, "JWT").unwrap();
    c.bench_function("verify ES256 access token", |b| {
        b.iter(|| {
            certbound_trust::verify_access_token(
                black_box(&token),
                std::slice::from_ref(&token_public),
                &audience[0],
                NOW,
            )
            .unwrap()
        })
    });

    c.bench_function("x5t#S256 of a certificate", |b| {
        b.iter(|| certbound_pki::thumbprint_sha256(black_box(&certificate)))
    });

    let ssa_claims = json!({"iss": "https://localhost:8441", "iat": NOW, "software_id": "s", "org_id": "o", "scope": "cards.read"});
    c.bench_function("sign PS256 SSA", |b| {
        b.iter(|| sign(black_box(&ssa_claims), &client_key, "JWT").unwrap())
    });

    let (master, _) = certbound_store::MasterKey::generate().unwrap();
    c.bench_function("seal a PAN (AES-256-GCM)", |b| {
        b.iter(|| {
            master
                .seal("card:123456789:pan", black_box(b"4599991234567890"))
                .unwrap()
        })
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
