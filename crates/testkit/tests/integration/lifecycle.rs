//! Certificate life cycle at every mTLS port: an expired directory certificate is refused at the
//! handshake on 8442, 8443 and 8444 (revoked ones are covered in directory.rs and cards.rs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use base64::Engine as _;
use certbound_pki::{
    CertificateAuthority, CertificateType, CsrSubject, PrivateKey, SigningKeyKind, check_csr,
};
use certbound_store::KeyMaterialStore as _;
use certbound_testkit::{TestStack, csr_pem, identity_client, now};

/// The stack's own issuing CA, opened from the store with the master key (as an operator could).
async fn issuing_ca(stack: &TestStack) -> CertificateAuthority {
    let record = stack
        .stack
        .database
        .key_material("ca")
        .await
        .unwrap()
        .unwrap();
    let keys: serde_json::Value =
        serde_json::from_slice(&stack.stack.master_key.open("ca", &record.sealed).unwrap())
            .unwrap();
    let issuing = base64::engine::general_purpose::STANDARD
        .decode(keys["issuing"].as_str().unwrap())
        .unwrap();
    let chain: Vec<Vec<u8>> = record
        .certificate_pem
        .unwrap()
        .split("-----END CERTIFICATE-----")
        .filter(|block| block.contains("BEGIN"))
        .map(|block| {
            let body: String = block
                .lines()
                .filter(|line| !line.starts_with("-----") && !line.is_empty())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        })
        .collect();
    CertificateAuthority::from_parts(
        chain[0].clone(),
        chain[1].clone(),
        PrivateKey::from_pkcs8(SigningKeyKind::EcdsaP256, issuing).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_certificates_are_refused_at_every_mtls_port() {
    let stack = TestStack::start().await;
    let organisation = stack.organisation("Expired Ltd").await;
    let (software, _) = stack
        .software_statement(&organisation, &["programme-manager"])
        .await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = check_csr(
        csr_pem(&key, &organisation, &software).as_bytes(),
        &CsrSubject {
            organisational_unit: organisation.clone(),
            common_name: software.clone(),
        },
    )
    .unwrap();
    // Issued 400 days ago: its 395-day validity ended five days ago.
    let expired = issuing_ca(&stack)
        .await
        .issue(
            csr,
            CertificateType::Transport,
            &certbound_pki::IssuedSubject {
                country: None,
                organisation_name: "Expired Ltd",
                organisational_unit: &organisation,
                common_name: &software,
            },
            now() - 400 * 86_400,
            "https://localhost/crl",
        )
        .unwrap();
    assert!(expired.info.not_after < now());
    let client = identity_client(
        &stack.stack.ca_pem,
        &key.serialize_pem(),
        &expired.chain_pem,
    );
    for url in [
        stack.mtls("/token"),
        stack.authz("/oauth2/token"),
        stack.cards("/keys"),
    ] {
        let result = client
            .post(&url)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        assert!(
            result.is_err(),
            "{url} accepted an expired certificate: {:?}",
            result.map(|r| r.status())
        );
    }
    // The same key with a current certificate is fine: the refusal was the expiry.
    let fresh = stack
        .certificate(&organisation, Some(&software), "transport")
        .await;
    let response = stack
        .mtls_client(&fresh)
        .get(stack.cards("/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "/keys needs only mutual TLS");
    stack.stop().await;
}
