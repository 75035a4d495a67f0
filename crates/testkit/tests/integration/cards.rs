//! The Cards API from outside: DESIGN.md section 4 and issue 4. The life of a card, tenant
//! isolation, the encrypted card data decrypted and verified with OpenSSL and aws-lc-rs, bulk
//! jobs across a restart, and every refusal with its status.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{Software, TestStack, now};
use reqwest::Method;
use serde_json::{Value, json};

use certbound_testkit::CardsClient as Client;

async fn client<'a>(stack: &'a TestStack, roles: &[&str]) -> (Client<'a>, Software) {
    stack.cards_client(roles).await
}

fn new_card(card_type: &str) -> Value {
    json!({
        "cardType": card_type,
        "cardProduct": "10001",
        "customerReference": "cust-0001",
        "cardHolder": {"title": "Ms", "firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10"},
        "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"},
        "activateNow": true
    })
}

fn assert_problem(status: u16, body: &Value, expected: u16, field: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["traceId"].is_string(),
        "{body}"
    );
    assert!(
        body["errors"].get(field).is_some(),
        "no error for `{field}`: {body}"
    );
}

/// Wraps a fresh AES key to the Cards API's encryption key with OpenSSL (RSA-OAEP-256); returns
/// (wrapped key base64, AES key).
fn wrap_key(dir: &std::path::Path, jwks: &Value) -> (String, Vec<u8>) {
    use base64::Engine as _;
    let enc = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["use"] == "enc")
        .unwrap();
    assert_eq!(enc["alg"], "RSA-OAEP-256");
    let cert = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        enc["x5c"][0].as_str().unwrap()
    );
    std::fs::write(dir.join("enc.pem"), cert).unwrap();
    let public = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(dir.join("enc.pem"))
        .output()
        .unwrap();
    std::fs::write(dir.join("enc-pub.pem"), &public.stdout).unwrap();
    let mut aes = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut aes).unwrap();
    std::fs::write(dir.join("aes.key"), &aes).unwrap();
    let wrapped = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-inkey",
        ])
        .arg(dir.join("enc-pub.pem"))
        .arg("-in")
        .arg(dir.join("aes.key"))
        .output()
        .unwrap();
    assert!(
        wrapped.status.success(),
        "{}",
        String::from_utf8_lossy(&wrapped.stderr)
    );
    (
        base64::engine::general_purpose::STANDARD.encode(wrapped.stdout),
        aes,
    )
}

/// Verifies the PS256 signature with OpenSSL and decrypts with aws-lc-rs; returns the card data.
fn open_encrypted(dir: &std::path::Path, jwks: &Value, aes: &[u8], response: &Value) -> Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let iv = b64.decode(response["iv"].as_str().unwrap()).unwrap();
    assert_eq!(iv.len(), 12);
    let sealed = b64
        .decode(response["encryptedPayload"].as_str().unwrap())
        .unwrap();
    let signature = b64
        .decode(response["signatureOfPayloadAndIv"].as_str().unwrap())
        .unwrap();
    let sig = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["use"] == "sig")
        .unwrap();
    assert_eq!(sig["alg"], "PS256");
    let cert = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        sig["x5c"][0].as_str().unwrap()
    );
    std::fs::write(dir.join("sig.pem"), cert).unwrap();
    let public = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(dir.join("sig.pem"))
        .output()
        .unwrap();
    std::fs::write(dir.join("sig-pub.pem"), &public.stdout).unwrap();
    let mut signed = sealed.clone();
    signed.extend_from_slice(&iv);
    std::fs::write(dir.join("signed.bin"), &signed).unwrap();
    std::fs::write(dir.join("signature.bin"), &signature).unwrap();
    let verify = std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-verify",
        ])
        .arg(dir.join("sig-pub.pem"))
        .arg("-signature")
        .arg(dir.join("signature.bin"))
        .arg(dir.join("signed.bin"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "PS256 over ciphertext‖tag‖iv: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, aes).unwrap(),
    );
    let mut buffer = sealed;
    let plain = key
        .open_in_place(
            aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&iv).unwrap(),
            aws_lc_rs::aead::Aad::empty(),
            &mut buffer,
        )
        .unwrap();
    serde_json::from_slice(plain).unwrap()
}

fn luhn_valid(pan: &str) -> bool {
    let sum: u32 = pan
        .chars()
        .rev()
        .map(|c| c.to_digit(10).unwrap())
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[tokio::test]
async fn a_card_from_issue_to_destruction_and_tenant_isolation() {
    let stack = TestStack::start().await;
    let (alice, _) = client(&stack, &["programme-manager"]).await;
    let (bob, _) = client(&stack, &["programme-manager"]).await;

    // Issue a physical card with fulfilment.
    let mut body = new_card("Physical");
    body["fulfilment"] = json!({"deliveryMethod": "Courier"});
    let (status, created, _) = alice.call(Method::POST, "/cards", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["publicToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 9);
    assert!(token.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(created["embossName"], "ADA LOVELACE");
    assert_eq!(created["customerReference"], "cust-0001");
    let masked = created["maskedPan"].as_str().unwrap();
    assert!(
        masked.starts_with("459999") && masked.contains("******"),
        "{masked}"
    );

    // Bob's organisation cannot see it, on any endpoint.
    for (method, path) in [
        (Method::GET, format!("/cards/{token}")),
        (Method::GET, format!("/cards/{token}/cvv")),
        (Method::PUT, format!("/cards/{token}/status")),
    ] {
        let (status, body, _) = bob
            .call(method, &path, Some(json!({"cardStatusCode": "41"})))
            .await;
        assert_problem(status, &body, 404, "card");
    }
    let (status, bobs, _) = bob
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    assert_eq!(status, 201);
    let (status, _, _) = alice
        .call(
            Method::GET,
            &format!("/cards/{}", bobs["publicToken"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Read it.
    let (status, card, _) = alice
        .call(Method::GET, &format!("/cards/{token}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(card["cardType"], "Physical");
    assert_eq!(
        (card["status"].as_str(), card["cardStatusCode"].as_str()),
        (Some("Active"), Some("00"))
    );
    assert_eq!(card["balance"]["currencyCode"], "GBP");
    assert_eq!(card["cardDetails"]["maskedPan"], masked);
    assert_eq!(
        card["cardDetails"]["fulfilment"]["deliveryMethod"],
        "Courier"
    );

    // Update it.
    let (status, _, _) = alice
        .call(
            Method::PATCH,
            &format!("/cards/{token}"),
            Some(json!({"customerReference": "cust-0002"})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, card, _) = alice
        .call(Method::GET, &format!("/cards/{token}"), None)
        .await;
    assert_eq!(card["cardDetails"]["customerReference"], "cust-0002");

    // PIN and CVV.
    assert_eq!(
        alice
            .call(
                Method::POST,
                &format!("/cards/{token}/pin"),
                Some(json!({"pin": "4321"}))
            )
            .await
            .0,
        204
    );
    let (_, pin, _) = alice
        .call(Method::GET, &format!("/cards/{token}/pin"), None)
        .await;
    assert_eq!(pin, json!({"pin": "4321"}));
    let (_, cvv, _) = alice
        .call(Method::GET, &format!("/cards/{token}/cvv"), None)
        .await;
    assert_eq!(cvv["resultStatus"], "Success");
    let cvv = cvv["cvv"].as_str().unwrap().to_owned();
    assert!(cvv.len() == 3 && cvv.bytes().all(|b| b.is_ascii_digit()));
    let (_, blocked, _) = alice
        .call(
            Method::POST,
            &format!("/cards/{token}/cvv/status"),
            Some(json!({"status": "Blocked"})),
        )
        .await;
    assert_eq!(blocked, json!({"status": "Blocked"}));
    let (status, body, _) = alice
        .call(Method::GET, &format!("/cards/{token}/cvv"), None)
        .await;
    assert_problem(status, &body, 409, "card");
    assert_eq!(
        alice
            .call(Method::GET, &format!("/cards/{token}/cvv/status"), None)
            .await
            .1,
        json!({"status": "Blocked"})
    );
    alice
        .call(
            Method::POST,
            &format!("/cards/{token}/cvv/status"),
            Some(json!({"status": "Unblocked"})),
        )
        .await;

    // The encrypted card data: wrap a key with OpenSSL, verify with OpenSSL, decrypt with aws-lc-rs.
    let (status, jwks, _) = alice.call(Method::GET, "/keys", None).await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let (wrapped, aes) = wrap_key(dir.path(), &jwks);
    let (status, encrypted, _) = alice
        .call(
            Method::POST,
            &format!("/cards/{token}/encrypted"),
            Some(json!({"key": wrapped})),
        )
        .await;
    assert_eq!(status, 200, "{encrypted}");
    let data = open_encrypted(dir.path(), &jwks, &aes, &encrypted);
    let pan = data["pan"].as_str().unwrap();
    assert_eq!(pan.len(), 16);
    assert!(pan.starts_with("459999") && pan.ends_with(&masked[masked.len() - 4..]));
    assert!(luhn_valid(pan), "{pan}");
    assert_eq!(data["cvv"], cvv.as_str());
    assert_eq!(data["embossName"], "ADA LOVELACE");
    assert_eq!(data["expiryDate"], card["cardDetails"]["expiryDate"]);
    let (status, body, _) = alice
        .call(
            Method::POST,
            &format!("/cards/{token}/encrypted"),
            Some(json!({"key": "bm90IGEga2V5"})),
        )
        .await;
    assert_problem(status, &body, 400, "key");

    // Status: block, unblock, lose; a lost card never comes back.
    for (code, name) in [("05", "Blocked"), ("00", "Active"), ("41", "Lost")] {
        let (status, changed, _) = alice
            .call(
                Method::PUT,
                &format!("/cards/{token}/status"),
                Some(json!({"cardStatusCode": code, "description": "test"})),
            )
            .await;
        assert_eq!(status, 200, "{changed}");
        assert_eq!(
            (
                changed["cardStatusCode"].as_str(),
                changed["status"].as_str()
            ),
            (Some(code), Some(name))
        );
        assert_eq!(changed["description"], "test");
        assert!(changed["updated"].is_string() && changed["updatedBy"].is_string());
    }
    let (status, body, _) = alice
        .call(
            Method::PUT,
            &format!("/cards/{token}/status"),
            Some(json!({"status": "Active"})),
        )
        .await;
    assert_problem(status, &body, 409, "card");
    let (_, shown, _) = alice
        .call(Method::GET, &format!("/cards/{token}/status"), None)
        .await;
    assert_eq!(shown["cardStatusCode"], "41");

    // An inactive card starts 02 and activates.
    let mut inactive = new_card("Virtual");
    inactive["activateNow"] = json!(false);
    let (_, created, _) = alice.call(Method::POST, "/cards", Some(inactive)).await;
    let other = created["publicToken"].as_str().unwrap();
    assert_eq!(
        alice
            .call(Method::GET, &format!("/cards/{other}/status"), None)
            .await
            .1["cardStatusCode"],
        "02"
    );
    assert_eq!(
        alice
            .call(
                Method::PUT,
                &format!("/cards/{other}/status"),
                Some(json!({"status": "Active"}))
            )
            .await
            .0,
        200
    );
    stack.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let stack = TestStack::start().await;
    let (alice, _) = client(&stack, &["programme-manager"]).await;
    let (_, created, _) = alice
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    let token = created["publicToken"].as_str().unwrap().to_owned();

    // Malformed JSON and unknown fields.
    let (status, body, _) = alice
        .raw(Method::POST, "/cards", Some("{\"cardType\": ".into()), &[])
        .await;
    assert_problem(status, &body, 400, "body");
    let mut unknown = new_card("Virtual");
    unknown["favouriteColour"] = json!("blue");
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(unknown)).await;
    assert_eq!(status, 400);
    assert!(
        body["errors"].to_string().contains("favouriteColour"),
        "{body}"
    );
    let mut nested = new_card("Virtual");
    nested["cardHolder"]["middleName"] = json!("B");
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(nested)).await;
    assert_problem(status, &body, 400, "cardHolder.middleName");
    // Field validation names each field.
    let mut invalid = new_card("Virtual");
    invalid["cardProduct"] = json!("99999");
    invalid["address"]["country"] = json!("GB");
    invalid["cardHolder"]["dateOfBirth"] = json!("10/12/1990");
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(invalid)).await;
    assert_problem(status, &body, 400, "cardProduct");
    assert!(
        body["errors"].get("address.country").is_some()
            && body["errors"].get("cardHolder.dateOfBirth").is_some(),
        "{body}"
    );
    // Fulfilment on a virtual card: 422, at creation and on PATCH.
    let mut virtual_fulfilment = new_card("Virtual");
    virtual_fulfilment["fulfilment"] = json!({"deliveryMethod": "Courier"});
    let (status, body, _) = alice
        .call(Method::POST, "/cards", Some(virtual_fulfilment))
        .await;
    assert_problem(status, &body, 422, "fulfilment");
    let (status, body, _) = alice
        .call(
            Method::PATCH,
            &format!("/cards/{token}"),
            Some(json!({"fulfilment": {"deliveryMethod": "Courier"}})),
        )
        .await;
    assert_problem(status, &body, 422, "fulfilment");
    // PINs.
    for pin in ["12a4", "123", "1234567890123"] {
        let (status, body, _) = alice
            .call(
                Method::POST,
                &format!("/cards/{token}/pin"),
                Some(json!({"pin": pin})),
            )
            .await;
        assert_problem(status, &body, 400, "pin");
    }
    let (status, body, _) = alice
        .call(Method::GET, &format!("/cards/{token}/pin"), None)
        .await;
    assert_problem(status, &body, 404, "card");
    // Bulk quantity.
    for quantity in [0, 51] {
        let (status, body, _) = alice
            .call(
                Method::POST,
                "/cards/bulk",
                Some(json!({"cardProduct": "10001", "cardType": "Virtual", "quantity": quantity})),
            )
            .await;
        assert_problem(status, &body, 400, "quantity");
    }
    // Unknown status and unknown card.
    let (status, body, _) = alice
        .call(
            Method::PUT,
            &format!("/cards/{token}/status"),
            Some(json!({"cardStatusCode": "99"})),
        )
        .await;
    assert_problem(status, &body, 400, "cardStatusCode");
    let (status, body, _) = alice.call(Method::GET, "/cards/000000000", None).await;
    assert_problem(status, &body, 404, "card");
    // An oversized body.
    let big = format!("{{\"pin\": \"{}\"}}", "1".repeat(100 * 1024));
    let (status, _, _) = alice
        .raw(Method::POST, &format!("/cards/{token}/pin"), Some(big), &[])
        .await;
    assert_eq!(status, 413);
    // None of it changed the card.
    let (_, card, _) = alice
        .call(Method::GET, &format!("/cards/{token}"), None)
        .await;
    assert_eq!(card["cardStatusCode"], "00");
    assert!(card["cardDetails"]["fulfilment"].is_null());
    stack.stop().await;
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_reuse() {
    let stack = TestStack::start().await;
    let (alice, _) = client(&stack, &["programme-manager"]).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = new_card("Virtual").to_string();
    let (first_status, first, _) = alice
        .raw(
            Method::POST,
            "/cards",
            Some(body.clone()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_eq!(first_status, 201);
    let (status, replayed, headers) = alice
        .raw(
            Method::POST,
            "/cards",
            Some(body.clone()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_eq!(
        (status, &replayed),
        (201, &first),
        "the same key replays the first response"
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    // Another body with the same key.
    let mut other = new_card("Virtual");
    other["customerReference"] = json!("another");
    let (status, body_error, _) = alice
        .raw(
            Method::POST,
            "/cards",
            Some(other.to_string()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_problem(status, &body_error, 400, "IdempotencyKey");
    // Another endpoint with the same key.
    let token = first["publicToken"].as_str().unwrap();
    let (status, body_error, _) = alice
        .raw(
            Method::POST,
            &format!("/cards/{token}/pin"),
            Some(json!({"pin": "1234"}).to_string()),
            &[("IdempotencyKey", &key)],
        )
        .await;
    assert_problem(status, &body_error, 400, "IdempotencyKey");
    // Not a GUID.
    let (status, body_error, _) = alice
        .raw(
            Method::POST,
            "/cards",
            Some(body),
            &[("IdempotencyKey", "abc")],
        )
        .await;
    assert_problem(status, &body_error, 400, "IdempotencyKey");
    stack.stop().await;
}

/// Signs access-token claims with the authorization server's own current key (opened from the
/// store with the master key), to make tokens the AS would never issue: expired ones.
async fn forge(stack: &TestStack, claims: &Value) -> String {
    use certbound_store::AuthzStore as _;
    let records = stack.stack.database.signing_keys().await.unwrap();
    let record = records
        .iter()
        .rev()
        .find(|record| record.activates_at <= now())
        .unwrap();
    let pkcs8 = stack
        .stack
        .master_key
        .open(&format!("token-signing-key:{}", record.kid), &record.sealed)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(record.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
    )
    .unwrap()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_that_must_not_work() {
    let stack = TestStack::start().await;
    let (alice, software) = client(&stack, &["programme-manager"]).await;
    let (_, created, _) = alice
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    let path = format!("/cards/{}", created["publicToken"].as_str().unwrap());
    let refused = |(status, body, headers): (u16, Value, reqwest::header::HeaderMap)| {
        assert_problem(status, &body, 401, "token");
        let challenge = headers["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        body["errors"]["token"][0].as_str().unwrap().to_owned()
    };
    let with_token = |token: &str| Client {
        stack: &stack,
        credential: software.transport.clone(),
        token: token.to_owned(),
    };

    // No token.
    let response = stack
        .mtls_client(&software.transport)
        .get(stack.cards(&path))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert!(refused((status, body, headers)).contains("Authorization: Bearer"));
    // No certificate.
    let response = stack
        .client()
        .get(stack.cards(&path))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Bound to another certificate: a second client of the same organisation presents its own.
    let sibling = stack
        .onboard_in(&software.organisation_id, &["programme-manager"])
        .await;
    let stolen = Client {
        stack: &stack,
        credential: sibling.transport.clone(),
        token: alice.token.clone(),
    };
    assert!(
        refused(stolen.call(Method::GET, &path, None).await)
            .contains("bound to another certificate")
    );
    // Expired (signed by the AS's own key), signed by an unknown key, alg none.
    let mut claims = claims_of(&alice.token);
    claims["exp"] = json!(now() - 5);
    claims["iat"] = json!(now() - 700);
    claims["nbf"] = json!(now() - 700);
    assert!(
        refused(
            with_token(&forge(&stack, &claims).await)
                .call(Method::GET, &path, None)
                .await
        )
        .contains("expired")
    );
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("unknown-kid".into());
    let unknown = jsonwebtoken::encode(
        &header,
        &claims_of(&alice.token),
        &jsonwebtoken::EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    refused(with_token(&unknown).call(Method::GET, &path, None).await);
    use base64::Engine as _;
    let encode =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        encode(&claims_of(&alice.token))
    );
    refused(with_token(&none).call(Method::GET, &path, None).await);
    // The live token still works; revoked at the AS, it stops at once.
    assert_eq!(alice.call(Method::GET, &path, None).await.0, 200);
    let assertion = stack.authz_assertion(&software, |_| {});
    let revoke = stack
        .mtls_client(&software.transport)
        .post(stack.authz("/oauth2/revoke"))
        .form(&[
            ("token", alice.token.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    assert!(refused(alice.call(Method::GET, &path, None).await).contains("revoked"));
    stack.stop().await;
}

#[tokio::test]
async fn every_endpoint_checks_its_scope_and_is_routed() {
    let stack = TestStack::start().await;
    let (owner, _) = client(&stack, &["programme-manager"]).await;
    let (_, created, _) = owner
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    let token = created["publicToken"].as_str().unwrap().to_owned();
    // A client of another role (ws) holds none of the card scopes.
    let (ws, _) = client(&stack, &["ws"]).await;
    for (method, path) in certbound_cards::openapi::ROUTES {
        let path = path
            .replace("{publicToken}", &token)
            .replace("{authorisationId}", "00000000-0000-4000-8000-000000000000");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body, headers) = ws.call(method.clone(), &path, Some(json!({}))).await;
        if path == "/keys" {
            assert_eq!(status, 200, "{method} {path}: /keys needs mTLS only");
            continue;
        }
        assert_problem(status, &body, 403, "token");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope"),
            "{method} {path}"
        );
        // Without any token every documented route answers 401, never 404 or 405: it is routed.
        let response = stack
            .mtls_client(&ws.credential)
            .request(method.clone(), stack.cards(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
    }
    // A card reader can read but not write.
    let (reader, _) = client(&stack, &["card-reader"]).await;
    let (status, _, _) = reader
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    assert_eq!(status, 403);
    // The OpenAPI document is served.
    let (status, spec, _) = owner.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.0.3");
    stack.stop().await;
}

#[tokio::test]
async fn bulk_jobs_complete_and_survive_a_restart() {
    let stack = TestStack::start().await;
    let (alice, software) = client(&stack, &["programme-manager"]).await;
    let (status, accepted, _) = alice
        .call(
            Method::POST,
            "/cards/bulk",
            Some(json!({"cardProduct": "10002", "cardType": "Virtual", "quantity": 50})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    // Restart at once: the job resumes where it stopped.
    let stack = stack.restart().await;
    let token = stack.access_token(&software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = Client {
        stack: &stack,
        credential: software.transport.clone(),
        token,
    };
    let mut job = Value::Null;
    for _ in 0..200 {
        job = alice
            .call(
                Method::GET,
                &format!("/cards/bulk?bulkCardRequestId={id}"),
                None,
            )
            .await
            .1;
        if job["status"] == "Complete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "Complete", "{job}");
    assert_eq!(job["quantity"], 50);
    let tokens: Vec<String> = job["publicTokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!((tokens.len(), unique.len()), (50, 50));
    let (status, card, _) = alice
        .call(Method::GET, &format!("/cards/{}", tokens[49]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(card["balance"]["currencyCode"], "EUR");
    // Another organisation cannot see the job.
    let (bob, _) = client(&stack, &["programme-manager"]).await;
    assert_eq!(
        bob.call(
            Method::GET,
            &format!("/cards/bulk?bulkCardRequestId={id}"),
            None
        )
        .await
        .0,
        404
    );
    stack.stop().await;
}

#[tokio::test]
async fn pan_pin_and_cvv_are_not_in_the_database() {
    let stack = TestStack::start().await;
    if !stack.database_url.starts_with("sqlite") {
        stack.stop().await;
        return;
    }
    let (alice, _) = client(&stack, &["programme-manager"]).await;
    let (_, created, _) = alice
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    let token = created["publicToken"].as_str().unwrap().to_owned();
    let pin = "80417263";
    assert_eq!(
        alice
            .call(
                Method::POST,
                &format!("/cards/{token}/pin"),
                Some(json!({"pin": pin}))
            )
            .await
            .0,
        204
    );
    let cvv = alice
        .call(Method::GET, &format!("/cards/{token}/cvv"), None)
        .await
        .1["cvv"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, jwks, _) = alice.call(Method::GET, "/keys", None).await;
    let dir = tempfile::tempdir().unwrap();
    let (wrapped, aes) = wrap_key(dir.path(), &jwks);
    let (_, encrypted, _) = alice
        .call(
            Method::POST,
            &format!("/cards/{token}/encrypted"),
            Some(json!({"key": wrapped})),
        )
        .await;
    let pan = open_encrypted(dir.path(), &jwks, &aes, &encrypted)["pan"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(content) = std::fs::read(stack.data_dir().join(format!("certbound.db{suffix}"))) {
            bytes.extend(content);
        }
    }
    let contains = |needle: &str| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    assert!(
        contains(&token),
        "the grep works: the public token is stored in clear"
    );
    assert!(!contains(&pan), "PAN in the database");
    assert!(!contains(pin), "PIN in the database");
    assert!(
        !contains(&format!("\"cvv\":\"{cvv}\"")) && !contains(&format!("\"{cvv}\"")),
        "CVV in the database"
    );
    stack.stop().await;
}

#[tokio::test]
async fn revoking_the_transport_certificate_stops_its_tokens_at_once() {
    let stack = TestStack::start().await;
    let (alice, software) = client(&stack, &["programme-manager"]).await;
    let (status, created, _) = alice
        .call(Method::POST, "/cards", Some(new_card("Virtual")))
        .await;
    assert_eq!(status, 201);
    let path = format!("/cards/{}", created["publicToken"].as_str().unwrap());
    let revoke = format!(
        "/organisations/{}/softwarestatements/{}/certificates/{}",
        software.organisation_id, software.software_statement_id, software.transport.certificate_id
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
    let (status, body, _) = alice.call(Method::GET, &path, None).await;
    assert_problem(status, &body, 401, "token");
    assert!(
        body["errors"]["token"][0]
            .as_str()
            .unwrap()
            .contains("revoked by the directory"),
        "{body}"
    );
    // ... and the authorization server issues nothing more for it.
    let assertion = stack.authz_assertion(&software, |_| {});
    let response = stack
        .authz_token_request(&software.transport, &assertion, &[])
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "the client certificate has been revoked by the directory: have a new one issued"
    );
    stack.stop().await;
}

/// Bodies as Thredd's documentation writes them are read as Thredd's service reads them
/// (DESIGN.md section 4): a numeric `cardProduct`, PascalCase or any-case property names, both
/// spellings of Master Virtual; an unknown property is still refused by name.
#[tokio::test]
async fn thredd_documented_bodies_create_cards() {
    let stack = TestStack::start().await;
    let (alice, _) = client(&stack, &["programme-manager"]).await;

    // Thredd's create-card example: cardProduct as a number.
    let mut numeric = new_card("Virtual");
    numeric["cardProduct"] = json!(10001);
    let (status, created, _) = alice.call(Method::POST, "/cards", Some(numeric)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["publicToken"].as_str().unwrap();
    let (_, card, _) = alice
        .call(Method::GET, &format!("/cards/{token}"), None)
        .await;
    assert_eq!(card["cardDetails"]["cardProduct"], "10001", "{card}");

    // PascalCase throughout, `MasterVirtual`, a product of another BIN.
    let pascal = json!({
        "CardType": "MasterVirtual", "CardProduct": 10003, "CustomerReference": "pascal",
        "CardHolder": {"Title": "Mr", "FirstName": "Alan", "LastName": "Turing", "DateOfBirth": "1912-06-23"},
        "Address": {"AddressLine1": "2 Bletchley Park", "City": "Milton Keynes", "PostCode": "MK3 6EB", "Country": "GBR"},
        "ActivateNow": true
    });
    let (status, created, _) = alice.call(Method::POST, "/cards", Some(pascal)).await;
    assert_eq!(status, 201, "{created}");
    assert!(
        created["maskedPan"].as_str().unwrap().starts_with("400000"),
        "{created}"
    );
    let token = created["publicToken"].as_str().unwrap();
    let (_, card, _) = alice
        .call(Method::GET, &format!("/cards/{token}"), None)
        .await;
    assert_eq!(card["cardType"], "Master Virtual", "{card}");

    // The spelling with a space, and a numeric string, still work.
    let mut spaced = new_card("Master Virtual");
    spaced["cardProduct"] = json!("10002");
    let (status, created, _) = alice.call(Method::POST, "/cards", Some(spaced)).await;
    assert_eq!(status, 201, "{created}");

    // Other requests too: status by `CardStatusCode`, bulk with a numeric product.
    let (status, body, _) = alice
        .call(
            Method::PUT,
            &format!("/cards/{token}/status"),
            Some(json!({"CardStatusCode": "05"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cardStatusCode"], "05");
    let (status, body, _) = alice
        .call(
            Method::POST,
            "/cards/bulk",
            Some(json!({"CardProduct": 10001, "cardtype": "Virtual", "Quantity": 1})),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // Still refused, with the field named: an unknown property in any case, a product that is
    // neither a number nor digits, an unknown product number, one property twice.
    let mut unknown = new_card("Virtual");
    unknown["CardColour"] = json!("red");
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(unknown)).await;
    assert_problem(status, &body, 400, "CardColour");
    let mut words = new_card("Virtual");
    words["cardProduct"] = json!("ten thousand");
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(words)).await;
    assert_problem(status, &body, 400, "cardProduct");
    let mut unknown_product = new_card("Virtual");
    unknown_product["cardProduct"] = json!(99999);
    let (status, body, _) = alice
        .call(Method::POST, "/cards", Some(unknown_product))
        .await;
    assert_problem(status, &body, 400, "cardProduct");
    let mut twice = new_card("Virtual");
    twice["CardProduct"] = json!(10002);
    let (status, body, _) = alice.call(Method::POST, "/cards", Some(twice)).await;
    assert_problem(status, &body, 400, "cardProduct");
    stack.stop().await;
}
