//! Trusted-proxy mode: the client certificate from nginx's `X-SSL-Client-Cert` or envoy's
//! `X-Forwarded-Client-Cert`, honoured only from configured networks and verified by certbound
//! itself; the token's certificate binding works the same through the proxy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{Software, TestStack};
use serde_json::{Value, json};

fn leaf_pem(chain: &str) -> String {
    format!(
        "{}-----END CERTIFICATE-----\n",
        chain.split("-----END CERTIFICATE-----").next().unwrap()
    )
}

fn escaped(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).collect()
}

async fn stack_trusting(networks: &[&str]) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let networks: Vec<String> = networks
        .iter()
        .map(|network| (*network).to_owned())
        .collect();
    TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        move |config| config.trusted_proxies = networks,
    )
    .await
}

/// A token request with no TLS client certificate, the certificate in a header instead.
async fn token_via_header(
    stack: &TestStack,
    software: &Software,
    header: (&str, String),
) -> reqwest::Response {
    let assertion = stack.authz_assertion(software, |_| {});
    stack
        .client()
        .post(stack.authz("/oauth2/token"))
        .header(header.0, header.1)
        .form(&[
            ("grant_type", "client_credentials"),
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

/// The software's SSA, fetched with its certificate in the proxy header.
async fn ssa_via_header(stack: &TestStack, software: &Software, header: &(&str, String)) -> String {
    let response = stack
        .client()
        .post(stack.mtls("/token"))
        .header(header.0, header.1.clone())
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "directory:software"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &stack.assertion(software, |_| {})),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let response = stack
        .client()
        .get(stack.mtls(&format!(
            "/organisations/{}/softwarestatements/{}/assertion",
            software.organisation_id, software.software_statement_id
        )))
        .header(header.0, header.1.clone())
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// A software registered through the "proxy" (every local address is the proxy here, so the SSA
/// comes through it too), and its certificate as nginx forwards it.
async fn registered_through_the_proxy(stack: &TestStack) -> (Software, (&'static str, String)) {
    let software = stack.onboard(&["programme-manager"]).await;
    let nginx = (
        "X-SSL-Client-Cert",
        escaped(&leaf_pem(&software.transport.chain_pem)),
    );
    let ssa = ssa_via_header(stack, &software, &nginx).await;
    let response = stack
        .client()
        .post(stack.authz("/oauth2/register"))
        .header(nginx.0, nginx.1.clone())
        .json(&json!({"software_statement": ssa}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    (software, nginx)
}

/// From a trusted proxy, an empty, garbled, foreign or missing forwarded certificate means no
/// client certificate at all: never the proxy's own, however valid (abuse review item 9).
#[tokio::test]
async fn a_trusted_proxy_without_a_valid_forwarded_certificate_carries_none() {
    let stack = stack_trusting(&["127.0.0.1/32"]).await;
    let (software, nginx) = registered_through_the_proxy(&stack).await;
    let token = token_via_header(&stack, &software, nginx.clone()).await;
    assert_eq!(token.status(), 200);
    let token: Value = token.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();

    // The proxy's own TLS certificate is the worst case: this very software's valid one.
    let proxy = stack.mtls_client(&software.transport);
    let foreign = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
        escaped(&params.self_signed(&key).unwrap().pem())
    };
    for header in [
        None,
        Some(String::new()),
        Some("%%%garbage".into()),
        Some(foreign),
    ] {
        let with_header = |request: reqwest::RequestBuilder| match &header {
            Some(value) => request.header("X-SSL-Client-Cert", value.clone()),
            None => request,
        };
        let assertion = stack.authz_assertion(&software, |_| {});
        let response = with_header(proxy.post(stack.authz("/oauth2/token")))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "token with header {header:?}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("no client certificate"),
            "{body}"
        );
        let response = with_header(proxy.get(stack.cards(&format!("/cards/{}", "123456789"))))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "cards with header {header:?}");
        let response = with_header(proxy.get(stack.cards("/keys")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "keys with header {header:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn certificates_from_a_trusted_proxy_are_verified_and_bind_tokens() {
    let stack = stack_trusting(&["127.0.0.1/32"]).await;
    let (software, nginx) = registered_through_the_proxy(&stack).await;

    // A token bound to the forwarded certificate (nginx header).
    let response = token_via_header(&stack, &software, nginx.clone()).await;
    assert_eq!(response.status(), 200);
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        software.transport.thumbprint.as_str()
    );

    // The same through envoy's header, and the Cards API honours the binding.
    let envoy = (
        "X-Forwarded-Client-Cert",
        format!(
            "By=spiffe://proxy;Hash=abc;Cert=\"{}\"",
            escaped(&software.transport.chain_pem)
        ),
    );
    assert_eq!(
        token_via_header(&stack, &software, envoy.clone())
            .await
            .status(),
        200
    );
    let response = stack
        .client()
        .get(stack.cards("/keys"))
        .header(envoy.0, envoy.1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let card = json!({"cardType": "Virtual", "cardProduct": "10001", "customerReference": "proxy",
        "cardHolder": {"firstName": "Pro", "lastName": "Xy", "dateOfBirth": "1990-01-01"},
        "address": {"addressLine1": "1 Proxy Road", "city": "London", "postCode": "E1 1AA", "country": "GBR"}});
    let response = stack
        .client()
        .post(stack.cards("/cards"))
        .header(nginx.0, nginx.1.clone())
        .bearer_auth(&token)
        .json(&card)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // A forwarded certificate from another CA is refused, however trusted the proxy.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::OrganizationalUnitName,
        software.organisation_id.as_str(),
    );
    let foreign = params.self_signed(&key).unwrap().pem();
    let response = stack
        .client()
        .get(stack.cards("/keys"))
        .header("X-SSL-Client-Cert", escaped(&foreign))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response =
        token_via_header(&stack, &software, ("X-SSL-Client-Cert", escaped(&foreign))).await;
    assert_eq!(response.status(), 401);
    // Garbage in the header is no certificate.
    let response = stack
        .client()
        .get(stack.cards("/keys"))
        .header("X-SSL-Client-Cert", "%%%garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    stack.stop().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_address_is_ignored() {
    let stack = stack_trusting(&["10.0.0.0/8"]).await;
    let software = stack.onboard(&["programme-manager"]).await;
    stack.register(&software, json!({})).await;
    let spoofed = (
        "X-SSL-Client-Cert",
        escaped(&leaf_pem(&software.transport.chain_pem)),
    );
    let response = token_via_header(&stack, &software, spoofed.clone()).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("no client certificate"),
        "{body}"
    );
    let response = stack
        .client()
        .get(stack.cards("/keys"))
        .header(spoofed.0, spoofed.1)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Off by default: the same with no trusted proxies at all.
    let plain = TestStack::start().await;
    let other = plain.onboard(&["programme-manager"]).await;
    plain.register(&other, json!({})).await;
    let header = (
        "X-SSL-Client-Cert",
        escaped(&leaf_pem(&other.transport.chain_pem)),
    );
    assert_eq!(token_via_header(&plain, &other, header).await.status(), 401);
    plain.stop().await;
    stack.stop().await;
}
