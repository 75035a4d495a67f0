//! The authorization server from outside: DESIGN.md section 3 and issue 3, each rule with the
//! bad input that breaks it and the exact RFC error, against the real stack (SQLite, or
//! PostgreSQL when `CERTBOUND_TEST_DATABASE_URL` is set).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{Software, TestStack, now};
use serde_json::{Value, json};

const PROGRAMME_MANAGER: &str = "cards.read cards.write pin.read pin.write cvv.read cvv.write bulkcard.read bulkcard.write cards.encrypted";

async fn refusal(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let description = body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!description.contains(['\r', '\n', '\t']), "{description}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        description,
    )
}

fn b64url_json(part: &str) -> Value {
    use base64::Engine as _;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn certificate_der(chain_pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let leaf = chain_pem.split("-----END CERTIFICATE-----").next().unwrap();
    let body: String = leaf
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Verifies an ES256 JWT with a JWK of the AS JWKS using aws-lc-rs directly (not the JOSE crate
/// that signed it). Returns the claims.
async fn verify_with_jwks(stack: &TestStack, token: &str) -> Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks: Value = stack
        .client()
        .get(stack.authz("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64url_json(parts[0]);
    assert_eq!(header["alg"], "ES256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("kid in the JWKS");
    let mut point = vec![0x04];
    point.extend(b64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(key["y"].as_str().unwrap()).unwrap());
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    );
    public
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .expect("the access token verifies with the AS JWKS");
    b64url_json(parts[1])
}

#[tokio::test]
async fn discovery_is_truthful() {
    let stack = TestStack::start().await;
    let discovery: Value = stack
        .client()
        .get(stack.authz("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], stack.authz(""));
    assert_eq!(discovery["token_endpoint"], stack.authz("/oauth2/token"));
    assert_eq!(
        discovery["registration_endpoint"],
        stack.authz("/oauth2/register")
    );
    assert_eq!(
        discovery["mtls_endpoint_aliases"]["token_endpoint"],
        stack.authz("/oauth2/token")
    );
    assert_eq!(
        discovery["tls_client_certificate_bound_access_tokens"],
        true
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!([
            "private_key_jwt",
            "tls_client_auth",
            "self_signed_tls_client_auth"
        ])
    );
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["client_credentials"])
    );
    let scopes = discovery["scopes_supported"].as_array().unwrap();
    for scope in PROGRAMME_MANAGER.split(' ') {
        assert!(scopes.contains(&json!(scope)), "{scope}");
    }
    assert!(
        discovery.get("authorization_endpoint").is_none(),
        "not implemented, so not listed"
    );
    let jwks: Value = stack
        .client()
        .get(stack.authz("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(
        stack
            .client()
            .get(stack.authz("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test]
async fn the_seed_sequence_rc_token_ssa_dcr_access_token() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let ssa = stack.ssa(&software).await;

    // 2.3 Dynamic Client Registration.
    let response = stack
        .register_request(
            &software,
            &json!({"software_statement": ssa, "unknown_field": 42}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let registration: Value = response.json().await.unwrap();
    assert_eq!(registration["client_id"], software.client_id.as_str());
    assert_eq!(
        registration["software_id"],
        software.software_statement_id.as_str()
    );
    assert_eq!(registration["scope"], PROGRAMME_MANAGER);
    assert_eq!(
        registration["token_endpoint_auth_method"],
        "private_key_jwt"
    );
    assert_eq!(registration["grant_types"], json!(["client_credentials"]));
    assert_eq!(
        registration["redirect_uris"],
        json!(["https://example.com/callback"])
    );
    assert_eq!(
        registration["tls_client_certificate_bound_access_tokens"],
        true
    );
    assert_eq!(registration["software_statement"], ssa.as_str());
    assert_eq!(
        registration["jwks_uri"],
        stack.public(&format!(
            "/keystore/{}/{}/application.jwks",
            software.organisation_id, software.software_statement_id
        ))
    );
    assert!(
        registration["registration_access_token"]
            .as_str()
            .unwrap()
            .len()
            >= 43
    );
    assert!(
        registration["registration_client_uri"]
            .as_str()
            .unwrap()
            .starts_with(&stack.authz("/oauth2/register/https%3A%2F%2F"))
    );
    assert!(
        registration.get("client_secret").is_none(),
        "no method uses a secret"
    );
    assert!(registration.get("unknown_field").is_none());

    // Get Access Token: private_key_jwt over mTLS; the token is bound to the certificate.
    let token = stack.access_token(&software).await;
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["expires_in"], 600);
    let mut granted: Vec<&str> = PROGRAMME_MANAGER.split(' ').collect();
    granted.sort_unstable();
    assert_eq!(token["scope"], granted.join(" "));
    let claims = verify_with_jwks(&stack, token["access_token"].as_str().unwrap()).await;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &certificate_der(&software.transport.chain_pem),
    );
    use base64::Engine as _;
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    assert_eq!(claims["cnf"]["x5t#S256"], thumbprint.as_str());
    assert_eq!(claims["iss"], stack.authz(""));
    assert_eq!(claims["sub"], software.client_id.as_str());
    assert_eq!(claims["scp"], json!(granted));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(
        claims["jti"].as_str().is_some()
            && claims["nbf"].as_i64().is_some()
            && claims["tid"].as_str().is_some()
    );
    assert_eq!(claims["org_id"], software.organisation_id.as_str());

    // Requested scopes are intersected; the bare UUID works as client_id; charset is fine.
    let assertion = stack.authz_assertion(&software, |c| {
        c["iss"] = json!(software.software_statement_id);
        c["sub"] = json!(software.software_statement_id);
    });
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
        .body(format!(
            "grant_type=client_credentials&scope=cards.read%20pin.read&client_id={}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}",
            software.software_statement_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let narrowed: Value = response.json().await.unwrap();
    assert_eq!(narrowed["scope"], "cards.read pin.read");
    stack.stop().await;
}

#[tokio::test]
async fn registration_refusals() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["card-reader"]).await;
    let other_org = stack.onboard(&["card-reader"]).await;
    let ssa = stack.ssa(&software).await;
    let with = |extra: Value| {
        let mut body = json!({"software_statement": ssa});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // No client certificate.
    let response = stack
        .client()
        .post(stack.authz("/oauth2/register"))
        .json(&with(json!({})))
        .send()
        .await
        .unwrap();
    let (status, error, description) = refusal(response).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(description.contains("mutual TLS"), "{description}");
    // A certificate of another organisation.
    let response = stack.register_request(&other_org, &with(json!({}))).await;
    let (status, error, description) = refusal(response).await;
    assert_eq!(
        (status, error.as_str()),
        (400, "unapproved_software_statement")
    );
    assert!(
        description.contains(&other_org.organisation_id),
        "{description}"
    );
    // No software statement.
    let response = stack
        .register_request(
            &software,
            &json!({"redirect_uris": ["https://example.com/callback"]}),
        )
        .await;
    assert_eq!(
        refusal(response).await,
        (
            400,
            "invalid_software_statement".into(),
            "software_statement is required".into()
        )
    );
    // A broken signature.
    let position = ssa.len() - 30;
    let flipped = if &ssa[position..=position] == "A" {
        "B"
    } else {
        "A"
    };
    let broken = format!("{}{flipped}{}", &ssa[..position], &ssa[position + 1..]);
    let response = stack
        .register_request(&software, &json!({"software_statement": broken}))
        .await;
    let (status, error, description) = refusal(response).await;
    assert_eq!(
        (status, error.as_str()),
        (400, "invalid_software_statement")
    );
    assert!(
        description.contains("signature does not verify"),
        "{description}"
    );
    // Signed by another key, claiming kid `signer`.
    let stranger =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.kid = Some("signer".into());
    let forged = jsonwebtoken::encode(
        &header,
        &b64url_json(ssa.split('.').nth(1).unwrap()),
        &jsonwebtoken::EncodingKey::from_rsa_pem(stranger.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let response = stack
        .register_request(&software, &json!({"software_statement": forged}))
        .await;
    let (status, error, _) = refusal(response).await;
    assert_eq!(
        (status, error.as_str()),
        (400, "invalid_software_statement")
    );

    // Metadata rules.
    let cases = [
        (
            json!({"jwks": {"keys": []}}),
            "invalid_client_metadata",
            "jwks by value is not accepted",
        ),
        (
            json!({"jwks_uri": "https://evil.example/jwks"}),
            "invalid_client_metadata",
            "jwks_uri must be the software statement's",
        ),
        (
            json!({"redirect_uris": ["https://evil.example/cb"]}),
            "invalid_redirect_uri",
            "redirect_uri `https://evil.example/cb` is not in the software statement",
        ),
        (
            json!({"scope": "cards.read cards.write"}),
            "invalid_client_metadata",
            "scope `cards.write` is not allowed by the software's roles",
        ),
        (
            json!({"token_endpoint_auth_method": "client_secret_post"}),
            "invalid_client_metadata",
            "token_endpoint_auth_method `client_secret_post` is not supported",
        ),
        (
            json!({"grant_types": ["authorization_code"]}),
            "invalid_client_metadata",
            "grant_type `authorization_code` is not supported",
        ),
    ];
    for (extra, code, message) in cases {
        let response = stack
            .register_request(&software, &with(extra.clone()))
            .await;
        let (status, error, description) = refusal(response).await;
        assert_eq!((status, error.as_str()), (400, code), "{extra}");
        assert!(description.starts_with(message), "{extra}: {description}");
    }
    // None of those registered anything: the first good one succeeds, the second is refused.
    assert_eq!(
        stack
            .register_request(&software, &with(json!({})))
            .await
            .status(),
        201
    );
    let (status, error, description) =
        refusal(stack.register_request(&software, &with(json!({}))).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_client_metadata"));
    assert!(description.contains("already registered"), "{description}");
    stack.stop().await;
}

#[tokio::test]
async fn signed_registration_request() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let ssa = stack.ssa(&software).await;
    let sign = |key_pem: &str, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let claims = json!({"software_statement": ssa, "scope": "cards.read", "iss": software.software_statement_id, "iat": now()});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    // Signed by the transport key, which is not in jwks_uri (application.jwks): refused.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/register"))
        .header("content-type", "application/jwt")
        .body(sign(
            &software.transport.key_pem,
            &software.transport.key_id,
        ))
        .send()
        .await
        .unwrap();
    let (status, error, _) = refusal(response).await;
    assert_eq!((status, error.as_str()), (400, "invalid_client_metadata"));
    // Signed by the software's signing key: registered, with the request's scope.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/register"))
        .header("content-type", "application/jwt")
        .body(sign(&software.signing.key_pem, &software.signing.key_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registration: Value = response.json().await.unwrap();
    assert_eq!(registration["scope"], "cards.read");
    stack.stop().await;
}

#[tokio::test]
async fn client_management_rfc7592() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let registration = stack.register(&software, json!({})).await;
    let uri = registration["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = registration["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = stack.mtls_client(&software.transport);

    let response = client.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["client_id"], software.client_id.as_str());
    assert!(read.get("registration_access_token").is_none());

    // A bad registration access token on each method.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client
            .request(method.clone(), &uri)
            .bearer_auth("not-the-token")
            .json(&json!({"client_id": software.client_id}))
            .send()
            .await
            .unwrap();
        let (status, error, _) = refusal(response).await;
        assert_eq!((status, error.as_str()), (401, "invalid_token"), "{method}");
    }
    // No token at all.
    let (status, error, _) = refusal(client.get(&uri).send().await.unwrap()).await;
    assert_eq!((status, error.as_str()), (401, "invalid_token"));

    // A token first, so that the token endpoint remembers the client as registered; the PUT
    // below must reach it at once (the update moves the trust counter).
    let before = stack.access_token(&software).await;
    assert!(
        before["scope"].as_str().unwrap().contains("pin.read"),
        "{before}"
    );
    // PUT narrows the scope; a scope outside the roles is refused.
    let response = client
        .put(&uri)
        .bearer_auth(&token)
        .json(&json!({"client_id": software.client_id, "scope": "cards.read cards.write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["scope"],
        "cards.read cards.write"
    );
    let response = client
        .put(&uri)
        .bearer_auth(&token)
        .json(&json!({"client_id": software.client_id, "scope": "ws"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response).await.1, "invalid_client_metadata");
    assert_eq!(
        stack.access_token(&software).await["scope"],
        "cards.read cards.write"
    );

    // DELETE: the client is gone and gets no token.
    assert_eq!(
        client
            .delete(&uri)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let assertion = stack.authz_assertion(&software, |_| {});
    let (status, error, description) = refusal(
        stack
            .authz_token_request(&software.transport, &assertion, &[])
            .await,
    )
    .await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(description.starts_with("unknown client"), "{description}");
    let (status, _, _) = refusal(client.get(&uri).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 401);
    stack.stop().await;
}

#[tokio::test]
async fn token_refusals() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let other = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    stack.register(&other, json!({})).await;
    let invalid_client =
        |description: &'static str| (401u16, "invalid_client".to_owned(), description.to_owned());
    let request = |assertion: String| {
        let stack = &stack;
        let software = &software;
        async move {
            refusal(
                stack
                    .authz_token_request(&software.transport, &assertion, &[])
                    .await,
            )
            .await
        }
    };

    // No certificate.
    let response = stack
        .client()
        .post(stack.authz("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", software.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, error, description) = refusal(response).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(
        description.starts_with("no client certificate"),
        "{description}"
    );
    // Another client's client_id with this client's assertion.
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(
            &software.transport,
            &assertion,
            &[("client_id", other.client_id.as_str())],
        )
        .await;
    assert_eq!(refusal(response).await.1, "invalid_client");
    // No assertion.
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", software.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response).await,
        invalid_client("this client authenticates with private_key_jwt: send a client_assertion")
    );
    // Times.
    let t = now();
    assert_eq!(
        request(stack.authz_assertion(&software, |c| c["exp"] = json!(t - 1))).await,
        invalid_client("client assertion has expired")
    );
    assert_eq!(
        request(stack.authz_assertion(&software, |c| c["iat"] = json!(t + 70))).await,
        invalid_client("client assertion iat is in the future")
    );
    assert_eq!(
        request(stack.authz_assertion(&software, |c| c["nbf"] = json!(t + 70))).await,
        invalid_client("client assertion nbf is in the future")
    );
    let ahead = stack.authz_assertion(&software, |c| {
        c["iat"] = json!(t + 8);
        c["nbf"] = json!(t + 8);
    });
    assert_eq!(
        stack
            .authz_token_request(&software.transport, &ahead, &[])
            .await
            .status(),
        200,
        "8 s of skew is fine"
    );
    // Claims.
    assert_eq!(
        request(stack.authz_assertion(&software, |c| {
            c.as_object_mut().unwrap().remove("sub");
        }))
        .await,
        invalid_client("client assertion has no `sub` claim")
    );
    assert_eq!(
        request(stack.authz_assertion(&software, |c| c["sub"] = json!(other.client_id))).await,
        invalid_client("client assertion sub must be the client_id")
    );
    let wrong_iss = stack.authz_assertion(&software, |c| c["iss"] = json!("https://evil.example"));
    let response = stack
        .authz_token_request(
            &software.transport,
            &wrong_iss,
            &[("client_id", software.client_id.as_str())],
        )
        .await;
    assert_eq!(
        refusal(response).await,
        invalid_client("client assertion iss must be the client_id")
    );
    assert_eq!(
        request(stack.authz_assertion(&software, |c| c["aud"] = json!(stack.public("/token"))))
            .await,
        invalid_client("client assertion aud must be the issuer or the token endpoint")
    );
    // Algorithms.
    use base64::Engine as _;
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    };
    let claims = json!({"iss": software.client_id, "sub": software.client_id, "aud": stack.authz(""), "exp": t + 60, "jti": uuid::Uuid::new_v4().to_string()});
    let none = format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims));
    assert_eq!(
        request(none).await,
        invalid_client("client assertion alg `none` is not accepted")
    );
    let jwks: Value = stack
        .client()
        .get(stack.public(&format!(
            "/keystore/{}/{}/application.jwks",
            software.organisation_id, software.software_statement_id
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        request(hs).await,
        invalid_client("client assertion alg `HS256` is not accepted")
    );
    let rsa = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        request(rs).await,
        invalid_client("client assertion alg `RS256` is not accepted")
    );
    // Reused jti.
    let assertion = stack.authz_assertion(&software, |_| {});
    assert_eq!(
        stack
            .authz_token_request(&software.transport, &assertion, &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        request(assertion).await,
        invalid_client("client assertion jti has already been used")
    );
    // A key not in the client's JWKS (the other software's signing key, this client's kid).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(software.signing.key_id.clone());
    let foreign = jsonwebtoken::encode(
        &header,
        &json!({"iss": software.client_id, "sub": software.client_id, "aud": stack.authz(""), "exp": t + 60, "jti": "foreign"}),
        &jsonwebtoken::EncodingKey::from_ec_pem(other.signing.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        request(foreign).await,
        invalid_client("client assertion signature does not verify with any of the client's keys")
    );
    // Grant type and scope.
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response).await.1, "unsupported_grant_type");
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(
            &software.transport,
            &assertion,
            &[("scope", "cards.read ws")],
        )
        .await;
    let (status, error, description) = refusal(response).await;
    assert_eq!((status, error.as_str()), (400, "invalid_scope"));
    assert!(
        description.starts_with("scope `ws` is not registered"),
        "{description}"
    );
    stack.stop().await;
}

async fn software_with_method(stack: &TestStack, method: &str) -> Software {
    let software = stack.onboard(&["card-reader"]).await;
    let registration = stack
        .register(&software, json!({"token_endpoint_auth_method": method}))
        .await;
    assert_eq!(registration["token_endpoint_auth_method"], method);
    software
}

#[tokio::test]
async fn tls_client_auth_and_self_signed() {
    let stack = TestStack::start().await;
    let tls = software_with_method(&stack, "tls_client_auth").await;
    let form = |client_id: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), client_id.to_owned()),
        ]
    };
    let response = stack
        .mtls_client(&tls.transport)
        .post(stack.authz("/oauth2/token"))
        .form(&form(&tls.client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Another certificate of the same organisation (another software's) is not this client's.
    let sibling = stack
        .onboard_in(&tls.organisation_id, &["card-reader"])
        .await;
    let response = stack
        .mtls_client(&sibling.transport)
        .post(stack.authz("/oauth2/token"))
        .form(&form(&tls.client_id))
        .send()
        .await
        .unwrap();
    let (status, error, description) = refusal(response).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(description.starts_with("tls_client_auth"), "{description}");
    // An assertion sent by a tls_client_auth client is refused.
    let assertion = stack.authz_assertion(&tls, |_| {});
    let (_, error, description) = refusal(
        stack
            .authz_token_request(&tls.transport, &assertion, &[])
            .await,
    )
    .await;
    assert_eq!(error, "invalid_client");
    assert!(
        description.contains("do not send a client_assertion"),
        "{description}"
    );

    let self_signed = software_with_method(&stack, "self_signed_tls_client_auth").await;
    // The certificate published in the client's keystore authenticates it.
    let response = stack
        .mtls_client(&self_signed.transport)
        .post(stack.authz("/oauth2/token"))
        .form(&form(&self_signed.client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A self-signed certificate completes the handshake on 8443 but is not among its keys.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["client.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let client = certbound_testkit::identity_client(
        &stack.stack.ca_pem,
        &key.serialize_pem(),
        &certificate.pem(),
    );
    let response = client
        .post(stack.authz("/oauth2/token"))
        .form(&form(&self_signed.client_id))
        .send()
        .await
        .unwrap();
    let (status, _, description) = refusal(response).await;
    assert_eq!(status, 401);
    assert!(
        description.contains("not among the client's published keys"),
        "{description}"
    );
    // ... and cannot register.
    let response = client
        .post(stack.authz("/oauth2/register"))
        .json(&json!({"software_statement": stack.ssa(&tls).await}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response).await.1, "unapproved_software_statement");
    stack.stop().await;
}

#[tokio::test]
async fn introspection_and_revocation() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let other = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    stack.register(&other, json!({})).await;
    let token = stack.access_token(&software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = |path: &'static str, who: &Software, token: &str| {
        let assertion = stack.authz_assertion(who, |_| {});
        let client = stack.mtls_client(&who.transport);
        let url = stack.authz(path);
        let token = token.to_owned();
        async move {
            client
                .post(url)
                .form(&[
                    ("token", token.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let introspection: Value = call("/oauth2/introspect", &software, &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(introspection["active"], true);
    assert_eq!(introspection["client_id"], software.client_id.as_str());
    assert_eq!(
        introspection["cnf"]["x5t#S256"],
        software.transport.thumbprint.as_str()
    );
    assert!(
        introspection["scope"]
            .as_str()
            .unwrap()
            .contains("cards.read")
    );
    assert!(introspection["exp"].as_i64().unwrap() > now());
    // Another client learns nothing; garbage is inactive.
    let foreign: Value = call("/oauth2/introspect", &other, &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(foreign, json!({"active": false}));
    let garbage: Value = call("/oauth2/introspect", &software, "garbage")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(garbage, json!({"active": false}));
    // Another client cannot revoke it; the owner can, at once.
    assert_eq!(call("/oauth2/revoke", &other, &token).await.status(), 200);
    let still: Value = call("/oauth2/introspect", &software, &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["active"], true);
    assert_eq!(
        call("/oauth2/revoke", &software, &token).await.status(),
        200
    );
    let revoked: Value = call("/oauth2/introspect", &software, &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revoked, json!({"active": false}));
    stack.stop().await;
}

async fn token_of(stack: &TestStack, software: &Software) -> String {
    stack.access_token(software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn key_rotation_publishes_before_signing_and_keeps_old_keys() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    let kid_of = |token: &str| {
        b64url_json(token.split('.').next().unwrap())["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = token_of(&stack, &software).await;
    let first_kid = kid_of(&first);

    // A key activating now (a newer key activates at least a second after the older ones).
    let rotated = certbound_authz::keys::rotate(
        stack.stack.database.as_ref(),
        &stack.stack.master_key,
        now(),
        now(),
        600,
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stack = stack.restart().await;
    let second = token_of(&stack, &software).await;
    assert_eq!(kid_of(&second), rotated, "the newest active key signs");
    let published = kids(
        stack
            .client()
            .get(stack.authz("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert!(
        published.contains(&first_kid),
        "the old key stays published while its tokens live: {published:?}"
    );
    verify_with_jwks(&stack, &first).await;
    verify_with_jwks(&stack, &second).await;

    // A key activating in an hour: published at once, not signing yet.
    let t = now();
    let later = certbound_authz::keys::rotate(
        stack.stack.database.as_ref(),
        &stack.stack.master_key,
        t,
        t + 3600,
        600,
    )
    .await
    .unwrap();
    let stack = stack.restart().await;
    let published = kids(
        stack
            .client()
            .get(stack.authz("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert!(published.contains(&later), "{published:?}");
    assert_eq!(
        kid_of(&token_of(&stack, &software).await),
        rotated,
        "a key signs only from its activation"
    );
    stack.stop().await;
}

#[tokio::test]
async fn issuer_path() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack = TestStack::start_with(dir, url, |config| {
        config.issuer_path = "/uat-thredd/confidential-clients".into()
    })
    .await;
    assert!(
        stack
            .authz("")
            .ends_with("/uat-thredd/confidential-clients")
    );
    let discovery: Value = stack
        .client()
        .get(stack.authz("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], stack.authz(""));
    assert_eq!(discovery["token_endpoint"], stack.authz("/oauth2/token"));
    let software = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    let token = stack.access_token(&software).await;
    let claims = verify_with_jwks(&stack, token["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], stack.authz(""));
    stack.stop().await;
}

#[tokio::test]
async fn strict_fapi2_audience() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack = TestStack::start_with(dir, url, |config| config.strict_audience = true).await;
    let software = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    let issuer = stack.authz("");
    for aud in [json!(stack.authz("/oauth2/token")), json!([issuer])] {
        let assertion = stack.authz_assertion(&software, |c| c["aud"] = aud.clone());
        let (status, error, _) = refusal(
            stack
                .authz_token_request(&software.transport, &assertion, &[])
                .await,
        )
        .await;
        assert_eq!((status, error.as_str()), (401, "invalid_client"), "{aud}");
    }
    let assertion = stack.authz_assertion(&software, |c| c["aud"] = json!(issuer));
    assert_eq!(
        stack
            .authz_token_request(&software.transport, &assertion, &[])
            .await
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack = TestStack::start_with(dir, url, |config| {
        config.rate_limits.token_per_client = 3;
        config.rate_limits.register_per_address = 2;
    })
    .await;
    let software = stack.onboard(&["card-reader"]).await;
    let other = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    stack.register(&other, json!({})).await;
    for _ in 0..3 {
        let assertion = stack.authz_assertion(&software, |_| {});
        assert_eq!(
            stack
                .authz_token_request(&software.transport, &assertion, &[])
                .await
                .status(),
            200
        );
    }
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(&software.transport, &assertion, &[])
        .await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (_, error, description) = refusal(response).await;
    assert_eq!(error, "too_many_requests");
    assert!(
        description.contains("more than 3 requests a minute"),
        "{description}"
    );
    // Another client is not affected.
    let assertion = stack.authz_assertion(&other, |_| {});
    assert_eq!(
        stack
            .authz_token_request(&other.transport, &assertion, &[])
            .await
            .status(),
        200
    );
    // Registrations per address: two were allowed, the third is not.
    let third = stack.onboard(&["card-reader"]).await;
    let response = stack
        .register_request(
            &third,
            &json!({"software_statement": stack.ssa(&third).await}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    stack.stop().await;
}
