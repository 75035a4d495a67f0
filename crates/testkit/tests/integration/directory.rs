//! The directory from outside: every rule of DESIGN.md section 2 with the bad input that breaks
//! it and the exact refusal, against the real stack on free ports (SQLite, or PostgreSQL when
//! `CERTBOUND_TEST_DATABASE_URL` is set).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{TestStack, csr_pem, identity_client, software_statement_body};
use reqwest::Method;
use serde_json::{Value, json};

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn admin_api_needs_the_operator_token() {
    let stack = TestStack::start().await;
    let response = stack
        .client()
        .get(stack.public("/organisations"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (_, error, description) = error_of(response).await;
    assert_eq!(error, "unauthorized");
    assert!(description.contains("admin.token"), "{description}");

    let response = stack
        .client()
        .get(stack.public("/organisations"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    let (status, error, description) = error_of(response).await;
    assert_eq!((status, error.as_str()), (401, "unauthorized"));
    assert!(description.contains("wrong"), "{description}");

    // A refused request changed nothing.
    let response = stack
        .client()
        .post(stack.public("/organisations"))
        .bearer_auth("wrong")
        .json(&json!({"OrganisationName": "Sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let list: Vec<Value> = stack
        .admin(Method::GET, "/organisations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn organisations_and_software_statements() {
    let stack = TestStack::start().await;
    let organisation_id = stack.organisation("Test Company 1").await;
    let shown: Value = stack
        .admin(Method::GET, &format!("/organisations/{organisation_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["OrganisationName"], "Test Company 1");
    assert_eq!(shown["Status"], "Active");

    let (software_statement_id, client_id) = stack
        .software_statement(&organisation_id, &["programme-manager"])
        .await;
    assert_eq!(
        client_id,
        stack.public(&format!("/openid_relying_party/{software_statement_id}"))
    );
    let list: Vec<Value> = stack
        .admin(
            Method::GET,
            &format!("/organisations/{organisation_id}/softwarestatements"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["Roles"], json!(["programme-manager"]));

    let roles: Vec<Value> = stack
        .client()
        .get(stack.public("/roles"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let manager = roles
        .iter()
        .find(|role| role["Role"] == "programme-manager")
        .unwrap();
    assert_eq!(
        manager["Scopes"],
        json!([
            "cards.read",
            "cards.write",
            "pin.read",
            "pin.write",
            "cvv.read",
            "cvv.write",
            "bulkcard.read",
            "bulkcard.write",
            "cards.encrypted"
        ])
    );
    for (role, scopes) in [
        ("ws", json!(["ws"])),
        ("bulk-cards", json!(["bulkcard.read", "bulkcard.write"])),
        ("card-reader", json!(["cards.read"])),
    ] {
        assert_eq!(
            roles.iter().find(|r| r["Role"] == role).unwrap()["Scopes"],
            scopes
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn software_statement_mandatory_fields_and_uris() {
    let stack = TestStack::start().await;
    let organisation_id = stack.organisation("Test Company 1").await;
    let path = format!("/organisations/{organisation_id}/softwarestatements");
    for field in [
        "ClientName",
        "Version",
        "HomepageUri",
        "LogoUri",
        "RedirectUri",
        "Roles",
    ] {
        let mut body = software_statement_body(&["programme-manager"]);
        body.as_object_mut().unwrap().remove(field);
        let response = stack
            .admin(Method::POST, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, error, description) = error_of(response).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_request"),
            "{field}"
        );
        assert_eq!(description, format!("{field} is required"));
    }
    let cases = [
        (
            "LogoUri",
            json!("https://example.com/logo"),
            "LogoUri must name an image file",
        ),
        (
            "LogoUri",
            json!("http://example.com/logo.png"),
            "LogoUri must be an absolute https URI",
        ),
        (
            "HomepageUri",
            json!("example.com"),
            "HomepageUri must be an absolute https URI",
        ),
        (
            "RedirectUri",
            json!(["http://example.com/cb"]),
            "RedirectUri must be an absolute https URI",
        ),
        ("RedirectUri", json!([]), "RedirectUri is required"),
        ("Roles", json!(["admin"]), "Roles: unknown role `admin`"),
    ];
    for (field, value, message) in cases {
        let mut body = software_statement_body(&["programme-manager"]);
        body[field] = value;
        let response = stack
            .admin(Method::POST, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, description) = error_of(response).await;
        assert_eq!(status, 400, "{field}");
        assert!(description.starts_with(message), "{field}: {description}");
    }
    let response = stack
        .admin(Method::POST, &path)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, description) = error_of(response).await;
    assert_eq!(status, 400);
    assert!(
        description.starts_with("the body is not valid JSON"),
        "{description}"
    );
    // Nothing was created by any of them.
    let list: Vec<Value> = stack
        .admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn unknown_organisation_and_software_are_404() {
    let stack = TestStack::start().await;
    let missing = uuid::Uuid::new_v4();
    let response = stack
        .admin(Method::GET, &format!("/organisations/{missing}"))
        .send()
        .await
        .unwrap();
    let (status, error, description) = error_of(response).await;
    assert_eq!((status, error.as_str()), (404, "not_found"));
    assert_eq!(
        description,
        format!("organisation {missing} does not exist")
    );

    let response = stack
        .admin(
            Method::POST,
            &format!("/organisations/{missing}/softwarestatements"),
        )
        .json(&software_statement_body(&["ws"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let organisation_id = stack.organisation("Test Company 1").await;
    let response = stack
        .admin(Method::GET, &format!("/organisations/{organisation_id}/softwarestatements/{missing}/certificates/transport/csr-command"))
        .send()
        .await
        .unwrap();
    let (status, _, description) = error_of(response).await;
    assert_eq!(status, 404);
    assert!(description.contains(&missing.to_string()));
    // A software statement of another organisation is not found under this one.
    let other = stack.organisation("Other Ltd").await;
    let (software_statement_id, _) = stack.software_statement(&other, &["ws"]).await;
    let response = stack
        .admin(
            Method::GET,
            &format!("/organisations/{organisation_id}/softwarestatements/{software_statement_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = stack
        .client()
        .get(stack.public(&format!("/keystore/{missing}/application.jwks")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    stack.stop().await;
}

#[tokio::test]
async fn csr_policy_refuses_bad_requests() {
    let stack = TestStack::start().await;
    let organisation_id = stack.organisation("Test Company 1").await;
    let (software_statement_id, _) = stack
        .software_statement(&organisation_id, &["programme-manager"])
        .await;
    let path = format!(
        "/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates/transport"
    );
    let submit = |body: Vec<u8>| {
        stack
            .admin(Method::POST, &path)
            .header("content-type", "application/pkcs10")
            .body(body)
            .send()
    };

    // Not PEM.
    let (status, error, description) = error_of(submit(b"hello".to_vec()).await.unwrap()).await;
    assert_eq!((status, error.as_str()), (400, "invalid_request"));
    assert!(
        description.starts_with("the body is not a PEM certificate signing request"),
        "{description}"
    );

    // OU and CN must be the path's organisation and software.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let wrong_ou = csr_pem(
        &key,
        &uuid::Uuid::new_v4().to_string(),
        &software_statement_id,
    );
    let (status, _, description) = error_of(submit(wrong_ou.into_bytes()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        description.starts_with("the CSR subject OU is"),
        "{description}"
    );
    assert!(description.contains(&organisation_id));
    let wrong_cn = csr_pem(&key, &organisation_id, "someone-else");
    let (status, _, description) = error_of(submit(wrong_cn.into_bytes()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        description,
        format!(
            "the CSR subject CN is `someone-else` but must be `{software_statement_id}`: use the command from csr-command"
        )
    );

    // A broken signature: alter one byte of the signed subject.
    let good = csr_pem(&key, &organisation_id, &software_statement_id);
    let mut der = pem_body(&good);
    let position = der
        .windows(software_statement_id.len())
        .position(|w| w == software_statement_id.as_bytes())
        .unwrap();
    der[position] ^= 0x01;
    let tampered = pem("CERTIFICATE REQUEST", &der);
    let (status, _, description) = error_of(submit(tampered.into_bytes()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        description.starts_with("the CSR's signature does not verify"),
        "{description}"
    );

    // RSA 1024, made by openssl exactly as a user would.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout"])
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(dir.path().join("r.csr"))
        .arg("-subj")
        .arg(format!(
            "/C=GB/O=Test/OU={organisation_id}/CN={software_statement_id}"
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let weak = std::fs::read(dir.path().join("r.csr")).unwrap();
    let (status, _, description) = error_of(submit(weak).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        description.contains("has 1024 bits: RSA keys must have at least 2048"),
        "{description}"
    );

    // An unknown type and a JSON body.
    let response = stack
        .admin(Method::POST, &format!("{path}-ish"))
        .header("content-type", "application/pkcs10")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = stack
        .admin(Method::POST, &path)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    // Nothing was issued.
    let list: Vec<Value> = stack
        .admin(Method::GET, &format!("/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    // The good one is accepted.
    assert_eq!(submit(good.into_bytes()).await.unwrap().status(), 201);
    stack.stop().await;
}

fn pem_body(pem_text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem_text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

#[tokio::test]
async fn certificates_keystore_and_org_level() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let org = &software.organisation_id;
    let ss = &software.software_statement_id;

    // Issued chain: leaf then the issuing CA; kid = RFC 7638 thumbprint.
    assert_eq!(
        software
            .transport
            .chain_pem
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    let transport: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/{ss}/transport.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &transport["keys"][0];
    assert_eq!(key["kid"], software.transport.key_id.as_str());
    assert_eq!(key["use"], "tls");
    assert_eq!(key["x5t#S256"], software.transport.thumbprint.as_str());
    assert_eq!(key["x5c"].as_array().unwrap().len(), 2);
    let application: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/{ss}/application.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        application["keys"][0]["kid"],
        software.signing.key_id.as_str()
    );
    assert_eq!(application["keys"][0]["use"], "sig");
    assert_eq!(application["keys"][0]["alg"], "ES256");

    // Encryption certificates publish `use: enc`.
    let encryption = stack.certificate(org, Some(ss), "encryption").await;
    let application: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/{ss}/application.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        application["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["kid"] == encryption.key_id.as_str() && key["use"] == "enc")
    );

    // Organisation-level (RESOURCE SERVER TRANSPORT) certificates: CN is the organisation.
    let org_transport = stack.certificate(org, None, "transport").await;
    let org_jwks: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/transport.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(org_jwks["keys"][0]["kid"], org_transport.key_id.as_str());
    let command = stack
        .admin(
            Method::GET,
            &format!("/organisations/{org}/certificates/transport/csr-command"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        command.contains(&format!("/OU={org}/CN={org}")),
        "{command}"
    );

    // Download and list.
    let pem = stack
        .admin(
            Method::GET,
            &format!(
                "/organisations/{org}/softwarestatements/{ss}/certificates/{}",
                software.transport.certificate_id
            ),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pem, software.transport.chain_pem);
    let list: Vec<Value> = stack
        .admin(
            Method::GET,
            &format!("/organisations/{org}/softwarestatements/{ss}/certificates"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    let mut kinds: Vec<&str> = list
        .iter()
        .map(|c| c["KeyType"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["rtsencryption", "rtssigning", "rtstransport"]);
    stack.stop().await;
}

#[tokio::test]
async fn directory_token_with_private_key_jwt_and_tls_client_auth() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;

    let response = stack
        .token_request(&software, &stack.assertion(&software, |_| {}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "directory:software");
    assert_eq!(body["expires_in"], 600);

    // `aud` may be the issuer, the token endpoint or the mTLS alias; a string or an array.
    for aud in [
        json!(stack.public("")),
        json!(stack.public("/token")),
        json!(["x", stack.mtls("/token")]),
    ] {
        let assertion = stack.assertion(&software, |claims| claims["aud"] = aud.clone());
        assert_eq!(
            stack.token_request(&software, &assertion).await.status(),
            200,
            "{aud}"
        );
    }
    // The bare UUID as client id.
    let assertion = stack.assertion(&software, |claims| {
        claims["iss"] = json!(software.software_statement_id);
        claims["sub"] = json!(software.software_statement_id);
    });
    assert_eq!(
        stack.token_request(&software, &assertion).await.status(),
        200
    );

    // tls_client_auth with the transport certificate; charset on the form is fine.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.mtls("/token"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(format!(
            "grant_type=client_credentials&client_id={}",
            software.client_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Errors: unsupported grant, wrong scope.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.mtls("/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", software.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "unsupported_grant_type");
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.mtls("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", software.client_id.as_str()),
            ("scope", "cards.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "invalid_scope");
    stack.stop().await;
}

#[tokio::test]
async fn token_requests_that_must_fail() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let other = stack.onboard(&["ws"]).await;

    let refused = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (_, error, description) = error_of(response).await;
        assert_eq!(
            (status, error.as_str()),
            (401, "invalid_client"),
            "{description}"
        );
        assert!(challenge.is_some());
        assert!(!description.contains(['\r', '\n', '\t']));
        description
    };

    // Expired.
    let assertion = stack.assertion(&software, |c| {
        c["exp"] = json!(certbound_testkit::now() - 10)
    });
    assert_eq!(
        refused(stack.token_request(&software, &assertion).await).await,
        "client assertion has expired"
    );
    // Reused jti.
    let assertion = stack.assertion(&software, |_| {});
    assert_eq!(
        stack.token_request(&software, &assertion).await.status(),
        200
    );
    assert_eq!(
        refused(stack.token_request(&software, &assertion).await).await,
        "client assertion jti has already been used"
    );
    // alg none.
    use base64::Engine as _;
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    };
    let now = certbound_testkit::now();
    let claims = json!({"iss": software.client_id, "sub": software.client_id, "aud": stack.mtls("/token"), "exp": now + 60, "jti": "none-1"});
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        encode(&claims)
    );
    assert_eq!(
        refused(stack.token_request(&software, &none).await).await,
        "client assertion alg `none` is not accepted"
    );
    // HS256 keyed with the public key (algorithm confusion).
    let public_key = software.signing.chain_pem.clone();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public_key.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        refused(stack.token_request(&software, &hs).await).await,
        "client assertion alg `HS256` is not accepted"
    );
    // Signed by a key that is not the software's (another software's signing key, its kid).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(software.signing.key_id.clone());
    let stranger = jsonwebtoken::encode(
        &header,
        &json!({"iss": software.client_id, "sub": software.client_id, "aud": stack.mtls("/token"), "exp": now + 60, "jti": "s-1"}),
        &jsonwebtoken::EncodingKey::from_ec_pem(other.signing.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refused(stack.token_request(&software, &stranger).await).await,
        "client assertion signature does not verify with any of the client's keys"
    );
    // Wrong audience; the other software's client_id with this assertion.
    let assertion = stack.assertion(&software, |c| {
        c["aud"] = json!("https://evil.example/token")
    });
    assert_eq!(
        refused(stack.token_request(&software, &assertion).await).await,
        "client assertion aud must be the issuer or the token endpoint"
    );
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.mtls("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", other.client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                stack.assertion(&software, |_| {}).as_str(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused(response).await,
        "client_id does not match the client assertion's iss"
    );
    // tls_client_auth with another client's certificate.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.mtls("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", other.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        refused(response)
            .await
            .starts_with("tls_client_auth: the client certificate is not a transport certificate")
    );

    // The public port never issues: it points at the mTLS alias.
    let response = stack
        .client()
        .post(stack.public("/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(refused(response).await.contains(&stack.mtls("/token")));

    // No certificate at all: refused, with what to do.
    let response = stack
        .client()
        .post(stack.mtls("/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused(response).await,
        "this endpoint requires mutual TLS: present a client certificate issued by the directory"
    );
    let response = stack
        .client()
        .get(stack.mtls("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A certificate from another CA: refused at the handshake too.
    let foreign_ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::OrganizationalUnitName,
        software.organisation_id.as_str(),
    );
    let foreign = params.self_signed(&foreign_ca).unwrap();
    let client = identity_client(
        &stack.stack.ca_pem,
        &foreign_ca.serialize_pem(),
        &foreign.pem(),
    );
    let result = client
        .post(stack.mtls("/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert!(
        result.is_err(),
        "a certificate from another CA must be refused"
    );
    stack.stop().await;
}

#[tokio::test]
async fn ssa_only_for_its_own_software_and_bound_token() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager", "ws"]).await;
    let other = stack
        .onboard_in(&software.organisation_id, &["card-reader"])
        .await;
    let token = stack.directory_token(&software).await;
    let path = |s: &certbound_testkit::Software| {
        format!(
            "/organisations/{}/softwarestatements/{}/assertion",
            s.organisation_id, s.software_statement_id
        )
    };

    let response = stack
        .mtls_client(&software.transport)
        .get(stack.mtls(&path(&software)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jwt");

    // Another software's SSA with this token: 403.
    let response = stack
        .mtls_client(&software.transport)
        .get(stack.mtls(&path(&other)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, error, description) = error_of(response).await;
    assert_eq!((status, error.as_str()), (403, "forbidden"));
    assert_eq!(
        description,
        "a token may fetch only the SSA of its own software statement"
    );

    // The token presented with another certificate (same organisation): 401 invalid_token.
    let response = stack
        .mtls_client(&other.transport)
        .get(stack.mtls(&path(&software)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // No token, unknown token.
    let response = stack
        .mtls_client(&software.transport)
        .get(stack.mtls(&path(&software)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "invalid_token");
    let response = stack
        .mtls_client(&software.transport)
        .get(stack.mtls(&path(&software)))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "invalid_token");
    stack.stop().await;
}

#[tokio::test]
async fn revocation_reaches_the_mtls_port_jwks_and_crl() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let org = &software.organisation_id;
    let ss = &software.software_statement_id;
    let token = stack.directory_token(&software).await;
    // A second transport certificate keeps the client able to reach the port.
    let spare = stack.certificate(org, Some(ss), "transport").await;

    let revoke = format!(
        "/organisations/{org}/softwarestatements/{ss}/certificates/{}",
        software.transport.certificate_id
    );
    assert_eq!(
        stack
            .admin(Method::DELETE, &revoke)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        stack
            .admin(Method::DELETE, &revoke)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );

    // The revoked certificate is refused at the mTLS port.
    let response = stack
        .token_request(&software, &stack.assertion(&software, |_| {}))
        .await;
    let (status, error, description) = error_of(response).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert_eq!(
        description,
        "the client certificate has been revoked by the directory: have a new one issued"
    );
    // The token bound to it stops working, even presented with a valid certificate.
    let response = stack
        .mtls_client(&spare)
        .get(stack.mtls(&format!(
            "/organisations/{org}/softwarestatements/{ss}/assertion"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Active and inactive JWKS.
    let active: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/{ss}/transport.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = active["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [spare.key_id.as_str()]);
    let inactive: Value = stack
        .client()
        .get(stack.public(&format!("/keystore/{org}/{ss}/inactive/transport.jwks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        inactive["keys"][0]["kid"],
        software.transport.key_id.as_str()
    );

    // The CRL lists its serial and is signed by the issuing CA (checked by openssl).
    let crl = stack
        .client()
        .get(stack.public("/crl"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crl.der"), &crl).unwrap();
    let issuing = software
        .transport
        .chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap();
    std::fs::write(dir.path().join("issuing.pem"), issuing).unwrap();
    let output = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(dir.path().join("crl.der"))
        .arg("-CAfile")
        .arg(dir.path().join("issuing.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_uppercase()
        + &String::from_utf8_lossy(&output.stderr).to_uppercase();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("VERIFY OK"), "{text}");
    let listed: Vec<Value> = stack
        .admin(
            Method::GET,
            &format!("/organisations/{org}/softwarestatements/{ss}/certificates"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let serial = listed
        .iter()
        .find(|c| c["CertificateId"] == software.transport.certificate_id.as_str())
        .unwrap()["SerialNumber"]
        .as_str()
        .unwrap()
        .to_uppercase();
    assert!(text.contains(&serial), "serial {serial} not in CRL: {text}");
    stack.stop().await;
}

#[tokio::test]
async fn restart_reuses_the_data_dir_and_database_holds_no_plain_keys() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let ca_before = std::fs::read_to_string(stack.data_dir().join("ca.pem")).unwrap();
    let admin_before = std::fs::read_to_string(stack.data_dir().join("admin.token")).unwrap();
    let signer_before: Value = stack
        .client()
        .get(stack.public("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["admin.token", "master.key"] {
        let mode = std::fs::metadata(stack.data_dir().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let (dir, database_url) = stack.stop().await;
    let stack = TestStack::start_in(
        dir,
        Some(database_url).filter(|url| url.starts_with("postgres")),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(stack.data_dir().join("ca.pem")).unwrap(),
        ca_before
    );
    assert_eq!(
        std::fs::read_to_string(stack.data_dir().join("admin.token")).unwrap(),
        admin_before
    );
    let signer_after: Value = stack
        .client()
        .get(stack.public("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(signer_before, signer_after);
    // Earlier certificates and clients still work.
    let fixed = certbound_testkit::Software { ..software };
    assert_eq!(
        stack
            .token_request(&fixed, &stack.assertion(&fixed, |_| {}))
            .await
            .status(),
        200
    );

    if !stack.database_url.starts_with("sqlite") {
        stack.stop().await;
        return;
    }
    // Every private key the stack holds, opened with the master key, must be absent from the
    // database files in every form: PKCS#8 DER, its base64, and PEM armour.
    let master = certbound_store::MasterKey::parse(
        &std::fs::read_to_string(stack.data_dir().join("master.key")).unwrap(),
    )
    .unwrap();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    use certbound_store::KeyMaterialStore as _;
    for name in ["ca", "ssa.signer", "tls.server.localhost", "admin.token"] {
        let record = stack
            .stack
            .database
            .key_material(name)
            .await
            .unwrap()
            .unwrap();
        let opened = master.open(name, &record.sealed).unwrap();
        secrets.push(opened.to_vec());
    }
    let ca_keys: Value = serde_json::from_slice(&secrets[0]).unwrap();
    use base64::Engine as _;
    for field in ["root", "issuing"] {
        let b64 = ca_keys[field].as_str().unwrap();
        secrets.push(b64.as_bytes().to_vec());
        secrets.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        );
    }
    for der in secrets.clone() {
        if der.len() > 100 && der[0] == 0x30 {
            secrets.push(
                base64::engine::general_purpose::STANDARD
                    .encode(&der)
                    .into_bytes()[..64]
                    .to_vec(),
            );
        }
    }
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(content) = std::fs::read(stack.data_dir().join(format!("certbound.db{suffix}"))) {
            bytes.extend(content);
        }
    }
    assert!(bytes.len() > 10_000);
    assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"));
    for secret in &secrets {
        let needle = &secret[..secret.len().min(48)];
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a private key is in the database in plain text"
        );
    }
    stack.stop().await;
}
