//! The seed's directory steps end to end, as a person does them by hand: the key and CSR made
//! by `openssl` exactly as `csr-command` says, the RC token with `private_key_jwt` (PS256 by the
//! openssl-made signing key), the SSA, and the SSA's signature verified by OpenSSL — a JOSE
//! implementation independent of the one that signed it — against `/jwks` and `ca.pem`. Then
//! the authorization server's part: discovery, DCR with that SSA, the access token with
//! `private_key_jwt`, verified against the AS JWKS, its `cnf` checked against OpenSSL's SHA-256
//! of the presented certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;
use std::process::Command;

use certbound_testkit::{TestStack, software_statement_body};
use reqwest::Method;
use serde_json::{Value, json};

/// Every claim of the seed's example SSA.
const SEED_SSA_CLAIMS: &[&str] = &[
    "software_statement_roles",
    "org_jwks_transport_uri",
    "api_webhook_uris",
    "org_status",
    "logo_uri",
    "roles",
    "iss",
    "org_jwks_transport_inactive_uri",
    "client_id",
    "client_description",
    "mode",
    "software_id",
    "software_version",
    "org_name",
    "software_flags",
    "origin_uris",
    "client_name",
    "iat",
    "jwks_transport_uri",
    "organisation_tags",
    "subject_type",
    "redirect_uris",
    "sector_identifier_uri",
    "org_jwks_inactive_uri",
    "organisation_flags",
    "jwks_transport_inactive_uri",
    "environment",
    "org_id",
    "org_jwks_uri",
    "jwks_inactive_uri",
    "org_number",
    "jwks_uri",
    "status",
    "organisation_competent_authority_claims",
];

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn b64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn the_seed_directory_flow_with_openssl() {
    let stack = TestStack::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // The CA's web wizard: organisation and application.
    let organisation: Value = stack
        .admin(Method::POST, "/organisations")
        .json(&json!({"OrganisationName": "Test Company 1", "Country": "GB", "RegistrationNumber": "00000001"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = organisation["OrganisationId"].as_str().unwrap().to_owned();
    let statement: Value = stack
        .admin(
            Method::POST,
            &format!("/organisations/{org}/softwarestatements"),
        )
        .json(&software_statement_body(&["programme-manager", "ws"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ss = statement["SoftwareStatementId"]
        .as_str()
        .unwrap()
        .to_owned();
    let client_id = statement["ClientId"].as_str().unwrap().to_owned();

    // "Copy the generated CSR command and paste this into a terminal window", then upload.
    let mut issued = std::collections::HashMap::new();
    for kind in ["transport", "signing"] {
        let command = stack
            .admin(
                Method::GET,
                &format!(
                    "/organisations/{org}/softwarestatements/{ss}/certificates/{kind}/csr-command"
                ),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            command.starts_with("openssl req -new -newkey rsa:2048 -nodes"),
            "{command}"
        );
        assert!(
            command.contains(&format!("/C=GB/O=Test Company 1/OU={org}/CN={ss}")),
            "{command}"
        );
        run(dir, "sh", &["-c", &command]);
        let csr = std::fs::read(dir.join(format!("{ss}_{kind}.csr"))).unwrap();
        let response = stack
            .admin(
                Method::POST,
                &format!("/organisations/{org}/softwarestatements/{ss}/certificates/{kind}"),
            )
            .header("content-type", "text/plain")
            .body(csr)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let certificate: Value = response.json().await.unwrap();
        assert_eq!(
            certificate["KeyType"],
            if kind == "transport" {
                "rtstransport"
            } else {
                "rtssigning"
            }
        );
        std::fs::write(
            dir.join(format!("{kind}.pem")),
            certificate["Certificate"].as_str().unwrap(),
        )
        .unwrap();
        issued.insert(kind, certificate);
    }
    // The issued chain verifies against ca.pem with OpenSSL, and the transport EKU is right.
    std::fs::write(dir.join("ca.pem"), &stack.stack.ca_pem).unwrap();
    let chain = std::fs::read_to_string(dir.join("transport.pem")).unwrap();
    let (leaf, issuing) = chain.split_at(chain.find("-----END CERTIFICATE-----\n").unwrap() + 26);
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    std::fs::write(dir.join("issuing.pem"), issuing).unwrap();
    run(
        dir,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "issuing.pem",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ],
    );
    let text = String::from_utf8(
        run(
            dir,
            "openssl",
            &["x509", "-in", "leaf.pem", "-noout", "-text"],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("TLS Web Client Authentication, TLS Web Server Authentication"),
        "{text}"
    );

    // The Postman variables: org_id, ssa_id, kid, client_id.
    let kid = issued["signing"]["KeyId"].as_str().unwrap().to_owned();
    let transport_key = std::fs::read_to_string(dir.join(format!("{ss}_transport.key"))).unwrap();
    let signing_key = std::fs::read_to_string(dir.join(format!("{ss}_signing.key"))).unwrap();
    let client = certbound_testkit::identity_client(&stack.stack.ca_pem, &transport_key, &chain);

    // Discovery tells where the mTLS token endpoint is.
    let discovery: Value = stack
        .client()
        .get(stack.public("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], stack.public(""));
    let token_endpoint = discovery["mtls_endpoint_aliases"]["token_endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token_endpoint, stack.mtls("/token"));

    // 2.1 RC Access Token: private_key_jwt, PS256, signed by the openssl-made signing key.
    let now = certbound_testkit::now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.kid = Some(kid.clone());
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": token_endpoint, "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(signing_key.as_bytes()).unwrap(),
    )
    .unwrap();
    let response = client
        .post(&token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "directory:software"),
            ("client_id", client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let access_token = token["access_token"].as_str().unwrap();

    // 2.2 Get RC SSA.
    let response = client
        .get(stack.mtls(&format!(
            "/organisations/{org}/softwarestatements/{ss}/assertion"
        )))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ssa = response.text().await.unwrap();
    let parts: Vec<&str> = ssa.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    assert_eq!(
        header,
        json!({"alg": "PS256", "kid": "signer", "typ": "JWT"})
    );

    // Verify the signature with OpenSSL against the `signer` key of /jwks, whose x5c chains to ca.pem.
    let jwks: Value = stack
        .client()
        .get(stack.public("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signer = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == "signer")
        .unwrap();
    assert_eq!(signer["alg"], "PS256");
    let x5c: Vec<&str> = signer["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let to_pem = |der_b64: &str| {
        let lines: Vec<String> = der_b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    std::fs::write(dir.join("signer.pem"), to_pem(x5c[0])).unwrap();
    std::fs::write(dir.join("signer-ca.pem"), to_pem(x5c[1])).unwrap();
    run(
        dir,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "signer-ca.pem",
            "signer.pem",
        ],
    );
    let public_key = run(
        dir,
        "openssl",
        &["x509", "-in", "signer.pem", "-noout", "-pubkey"],
    )
    .stdout;
    std::fs::write(dir.join("signer-pub.pem"), public_key).unwrap();
    std::fs::write(dir.join("ssa-input"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(dir.join("ssa-signature"), b64url_decode(parts[2])).unwrap();
    let verify = |input: &str| {
        Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-verify",
                "signer-pub.pem",
                "-signature",
                "ssa-signature",
                input,
            ])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let output = verify("ssa-input");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Verified OK"
    );
    // The same check refuses a tampered payload: the test can fail.
    std::fs::write(dir.join("tampered"), format!("{}.{}x", parts[0], parts[1])).unwrap();
    assert!(!verify("tampered").status.success());

    // Every claim of the seed's SSA, with this software's values.
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    for claim in SEED_SSA_CLAIMS {
        assert!(claims.get(claim).is_some(), "SSA lacks `{claim}`");
    }
    assert_eq!(claims["iss"], stack.public(""));
    assert_eq!(claims["software_id"], ss.as_str());
    assert_eq!(claims["client_id"], client_id.as_str());
    assert_eq!(claims["org_id"], org.as_str());
    assert_eq!(claims["org_name"], "Test Company 1");
    assert_eq!(claims["org_number"], "00000001");
    assert_eq!(claims["org_status"], "Active");
    assert_eq!(claims["client_name"], "Test Company App 1");
    assert_eq!(claims["software_version"], "1.0");
    assert_eq!(claims["logo_uri"], "https://example.com/logo.png");
    assert_eq!(
        claims["redirect_uris"],
        json!(["https://example.com/callback"])
    );
    assert_eq!(claims["roles"], json!(["programme-manager", "ws"]));
    let iat = claims["iat"].as_i64().unwrap();
    assert!((now - 5..=now + 5).contains(&iat));
    assert_eq!(
        claims["jwks_uri"],
        stack.public(&format!("/keystore/{org}/{ss}/application.jwks"))
    );
    assert_eq!(
        claims["jwks_transport_uri"],
        stack.public(&format!("/keystore/{org}/{ss}/transport.jwks"))
    );
    assert_eq!(
        claims["org_jwks_uri"],
        stack.public(&format!("/keystore/{org}/application.jwks"))
    );
    // Its URIs resolve: the signing key is in jwks_uri, the transport key in jwks_transport_uri.
    for (uri, kind) in [("jwks_uri", "signing"), ("jwks_transport_uri", "transport")] {
        let set: Value = stack
            .client()
            .get(claims[uri].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            set["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|key| key["kid"] == issued[kind]["KeyId"]),
            "{uri}"
        );
    }
    for uri in [
        "jwks_inactive_uri",
        "jwks_transport_inactive_uri",
        "org_jwks_inactive_uri",
        "org_jwks_transport_inactive_uri",
        "sector_identifier_uri",
    ] {
        let response = stack
            .client()
            .get(claims[uri].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
    }

    // Cloudentity Well-Known: the authorization server's endpoints come from discovery only.
    let authz_discovery: Value = stack
        .client()
        .get(stack.authz("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registration_endpoint = authz_discovery["mtls_endpoint_aliases"]["registration_endpoint"]
        .as_str()
        .unwrap();
    let authz_token_endpoint = authz_discovery["mtls_endpoint_aliases"]["token_endpoint"]
        .as_str()
        .unwrap();
    let authz_issuer = authz_discovery["issuer"].as_str().unwrap();
    let authz_jwks_uri = authz_discovery["jwks_uri"].as_str().unwrap();

    // 2.3 Dynamic Client Registration with the SSA, over the same transport certificate.
    let response = client
        .post(registration_endpoint)
        .json(
            &json!({"software_statement": ssa, "redirect_uris": ["https://example.com/callback"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registration: Value = response.json().await.unwrap();
    assert_eq!(registration["client_id"], client_id.as_str());

    // Get Access Token: private_key_jwt (PS256, the openssl signing key), aud the issuer.
    let now = certbound_testkit::now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.kid = Some(kid.clone());
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": authz_issuer, "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(signing_key.as_bytes()).unwrap(),
    )
    .unwrap();
    let response = client
        .post(authz_token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "bearer");
    let access_token = token["access_token"].as_str().unwrap();

    // The access token verifies with the AS JWKS (aws-lc-rs directly, not the JOSE crate), and
    // its cnf is the SHA-256 of the certificate this client presented (computed by OpenSSL).
    let parts: Vec<&str> = access_token.split('.').collect();
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    let jwks: Value = stack
        .client()
        .get(authz_jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .unwrap();
    let mut point = vec![0x04];
    point.extend(b64url_decode(key["x"].as_str().unwrap()));
    point.extend(b64url_decode(key["y"].as_str().unwrap()));
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    )
    .verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &b64url_decode(parts[2]),
    )
    .expect("access token signature");
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    let der = run(
        dir,
        "openssl",
        &["x509", "-in", "leaf.pem", "-outform", "DER"],
    )
    .stdout;
    std::fs::write(dir.join("leaf.der"), der).unwrap();
    let digest = run(dir, "openssl", &["dgst", "-sha256", "-binary", "leaf.der"]).stdout;
    use base64::Engine as _;
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    assert_eq!(claims["cnf"]["x5t#S256"], thumbprint.as_str());
    assert_eq!(claims["sub"], client_id.as_str());
    assert_eq!(claims["iss"], authz_issuer);
    assert!(
        claims["scp"]
            .as_array()
            .unwrap()
            .contains(&json!("cards.write"))
    );
    stack.stop().await;
}
