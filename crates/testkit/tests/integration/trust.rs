//! One home for every trust decision (issue 11): each disagreement found from outside, sent as
//! the bad input through the real stack, with the exact refusal asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{Credential, Software, TestStack};
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `POST /oauth2/introspect` of `token`, authenticated as `who` over `credential`.
async fn introspect(
    stack: &TestStack,
    who: &Software,
    credential: &Credential,
    token: &str,
) -> Value {
    let assertion = stack.authz_assertion(who, |_| {});
    let response = stack
        .mtls_client(credential)
        .post(stack.authz("/oauth2/introspect"))
        .form(&[
            ("token", token),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `GET /cards/keys`-free probe of a token at the Cards API: creating nothing, a bulk lookup that
/// needs a valid token (404 for an unknown id once the token is accepted).
async fn cards_status(stack: &TestStack, credential: &Credential, token: &str) -> (u16, Value) {
    let response = stack
        .mtls_client(credential)
        .get(stack.cards("/cards/bulk?bulkCardRequestId=none"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A software's token bound to `credential`.
async fn token_over(stack: &TestStack, software: &Software, credential: &Credential) -> String {
    let assertion = stack.authz_assertion(software, |_| {});
    let response = stack.authz_token_request(credential, &assertion, &[]).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn revoke_certificate(stack: &TestStack, software: &Software, credential: &Credential) {
    let response = stack
        .admin(
            reqwest::Method::DELETE,
            &format!(
                "/organisations/{}/softwarestatements/{}/certificates/{}",
                software.organisation_id, software.software_statement_id, credential.certificate_id
            ),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// A token bound to a revoked certificate: the Cards API and introspection agree it is dead.
#[tokio::test]
async fn introspection_and_the_cards_api_agree_on_a_revoked_certificate() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    stack.register(&software, json!({})).await;
    let second = stack
        .certificate(
            &software.organisation_id,
            Some(&software.software_statement_id),
            "transport",
        )
        .await;
    let token = token_over(&stack, &software, &second).await;
    assert_eq!(
        introspect(&stack, &software, &software.transport, &token).await["active"],
        true
    );
    assert_eq!(cards_status(&stack, &second, &token).await.0, 404);

    revoke_certificate(&stack, &software, &second).await;
    // Asked over the other, unrevoked transport certificate: inactive.
    assert_eq!(
        introspect(&stack, &software, &software.transport, &token).await,
        json!({"active": false})
    );
    // The revoked certificate no longer completes a request at the Cards API.
    let (status, body) = cards_status(&stack, &second, &token).await;
    assert_eq!(status, 401, "{body}");
    stack.stop().await;
}

/// After `DELETE /oauth2/register/{id}` a token never works again, even once the same software
/// registers anew (with fewer scopes).
#[tokio::test]
async fn a_deleted_registration_does_not_come_back_to_life() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let registration = stack.register(&software, json!({})).await;
    let old = token_over(&stack, &software, &software.transport).await;
    assert_eq!(cards_status(&stack, &software.transport, &old).await.0, 404);

    let response = stack
        .mtls_client(&software.transport)
        .delete(registration["registration_client_uri"].as_str().unwrap())
        .bearer_auth(registration["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = cards_status(&stack, &software.transport, &old).await;
    assert_eq!(status, 401, "{body}");

    // Registered again, with fewer scopes: the old token stays dead everywhere.
    stack
        .register(&software, json!({"scope": "cards.read bulkcard.read"}))
        .await;
    let (status, body) = cards_status(&stack, &software.transport, &old).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["errors"]["token"][0]
            .as_str()
            .unwrap()
            .contains("no longer registered"),
        "{body}"
    );
    assert_eq!(
        introspect(&stack, &software, &software.transport, &old).await,
        json!({"active": false})
    );
    // A new token works, with the new scopes only.
    let new = token_over(&stack, &software, &software.transport).await;
    assert_eq!(cards_status(&stack, &software.transport, &new).await.0, 404);
    let introspection = introspect(&stack, &software, &software.transport, &new).await;
    assert_eq!(introspection["scope"], "bulkcard.read cards.read");
    stack.stop().await;
}

/// A revoked signing certificate's key is refused at once, at the directory and the AS alike,
/// although the AS has just fetched (and cached) the keystore that listed it.
#[tokio::test]
async fn a_revoked_signing_key_is_refused_at_once_everywhere() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    stack.register(&software, json!({})).await;
    // The AS fetches and caches the software's keystore.
    token_over(&stack, &software, &software.transport).await;

    revoke_certificate(&stack, &software, &software.signing).await;
    let response = stack
        .token_request(&software, &stack.assertion(&software, |_| {}))
        .await;
    assert_eq!(response.status(), 401);
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(&software.transport, &assertion, &[])
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked by the directory"),
        "{body}"
    );
    stack.stop().await;
}

/// Key roles: an assertion or a registration request signed by the software's encryption key
/// gets nothing.
#[tokio::test]
async fn an_encryption_key_signs_nothing() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    stack.register(&software, json!({})).await;
    let encryption = stack
        .certificate(
            &software.organisation_id,
            Some(&software.software_statement_id),
            "encryption",
        )
        .await;
    let mut signed_by_encryption_key = software.clone();
    signed_by_encryption_key.signing = encryption.clone();
    let assertion = stack.authz_assertion(&signed_by_encryption_key, |_| {});
    let response = stack
        .authz_token_request(&software.transport, &assertion, &[])
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("key role"),
        "{body}"
    );
    // Nor does a registration request it signed (the software registers anew after a DELETE).
    let other = stack.onboard(&["programme-manager"]).await;
    let encryption = stack
        .certificate(
            &other.organisation_id,
            Some(&other.software_statement_id),
            "encryption",
        )
        .await;
    let ssa = stack.ssa(&other).await;
    let sign = |credential: &Credential| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(credential.key_id.clone());
        jsonwebtoken::encode(
            &header,
            &json!({"software_statement": ssa, "iss": other.software_statement_id}),
            &jsonwebtoken::EncodingKey::from_ec_pem(credential.key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let register = |jwt: String| {
        stack
            .mtls_client(&other.transport)
            .post(stack.authz("/oauth2/register"))
            .header("content-type", "application/jwt")
            .body(jwt)
            .send()
    };
    let response = register(sign(&encryption)).await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("key role"),
        "{body}"
    );
    assert_eq!(register(sign(&other.signing)).await.unwrap().status(), 201);
    stack.stop().await;
}

/// Key roles: a signing certificate is not an mTLS client certificate (no token, no card).
#[tokio::test]
async fn a_signing_certificate_is_no_transport_certificate() {
    let stack = TestStack::start().await;
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    // The Cards API and the directory's mTLS port refuse it in the handshake.
    let cards = stack
        .mtls_client(&software.signing)
        .get(stack.cards("/cards/bulk?bulkCardRequestId=none"))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        cards.is_err(),
        "the Cards API took a signing certificate: {cards:?}"
    );
    let directory = stack
        .mtls_client(&software.signing)
        .post(stack.mtls("/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert!(
        directory.is_err(),
        "8442 took a signing certificate: {directory:?}"
    );
    // The AS lets any certificate through the handshake (RFC 8705 §2.2), and refuses it here.
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(&software.signing, &assertion, &[])
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    stack.stop().await;
}

/// Registration ties the certificate to the SSA's very software: a sibling software's transport
/// certificate, or the organisation's own, registers nothing.
#[tokio::test]
async fn only_the_software_s_own_certificate_registers_it() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let sibling = stack
        .onboard_in(&software.organisation_id, &["card-reader"])
        .await;
    let organisation = stack
        .certificate(&software.organisation_id, None, "transport")
        .await;
    let body = json!({"software_statement": stack.ssa(&software).await});
    for credential in [&sibling.transport, &organisation] {
        let response = stack
            .mtls_client(credential)
            .post(stack.authz("/oauth2/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "unapproved_software_statement", "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("register with that software's own transport certificate"),
            "{answer}"
        );
    }
    // Its own certificate does.
    let response = stack.register_request(&software, &body).await;
    assert_eq!(response.status(), 201);
    stack.stop().await;
}
