//! Two directory instances on one database (DESIGN.md section 7): they share the CA and keys,
//! honour each other's tokens, refuse each other's used `jti`, and see each other's revocations.
//! Runs on PostgreSQL (CI's second run of the suite); on SQLite a second server of the same file
//! is refused instead (each remembers cards, which only the file's one server may do).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::TestStack;
use reqwest::Method;

/// On SQLite, a second server of the same file is refused with what to do instead, and the
/// file can be served again once the first has shut down; a master key rotation beside it is
/// refused as well.
#[tokio::test]
async fn a_second_server_of_one_sqlite_file_is_refused() {
    let first = TestStack::start().await;
    if first.shared_database() {
        return;
    }
    let dir = first.data_dir_for_another_instance();
    let config = certbound_testkit::config(dir.path(), Some(first.database_url.clone()));
    let refused = match certbound_server::start(config.clone()).await {
        Ok(_) => panic!("a second server of one SQLite file started"),
        Err(error) => error.to_string(),
    };
    assert!(
        refused.contains("is in use by another certbound process")
            && refused.contains("--database-url postgres://"),
        "{refused}"
    );
    // A master key rotation, which rewrites every card's sealed secrets, is refused too while the
    // server runs (its remembered cards would write the old secrets back), and changes nothing.
    let own = certbound_testkit::config(&first.data_dir(), Some(first.database_url.clone()));
    let refused = certbound_server::rotate_master_key(&own, certbound_testkit::now())
        .await
        .map(|_| ())
        .expect_err("a master key rotation ran beside the server")
        .to_string();
    assert!(
        refused.contains("is in use by another certbound process"),
        "{refused}"
    );
    assert!(!first.data_dir().join("master.key.new").exists());
    let (_kept, _) = first.stop().await;
    let again = certbound_server::start(config)
        .await
        .expect("the file is free once its server has shut down");
    again.shutdown().await;
}

#[tokio::test]
async fn two_instances_share_tokens_replay_and_revocation() {
    let first = TestStack::start().await;
    if !first.shared_database() {
        return; // one server per SQLite file: see the test above
    }
    let second = first.another_instance().await;

    assert_eq!(
        first.stack.ca_pem, second.stack.ca_pem,
        "one CA for every instance"
    );
    assert_eq!(first.stack.admin_token, second.stack.admin_token);

    let software = first.onboard(&["programme-manager"]).await;
    let path = format!(
        "/organisations/{}/softwarestatements/{}/assertion",
        software.organisation_id, software.software_statement_id
    );

    // A token from the first is honoured by the second.
    let token = first.directory_token(&software).await;
    let response = second
        .mtls_client(&software.transport)
        .get(second.mtls(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A jti used at one instance is refused at the other (each accepts its own audiences, so the
    // replay carries the same jti in an assertion addressed to the other instance).
    let assertion = second.assertion(&software, |claims| {
        claims["aud"] = serde_json::json!(second.mtls("/token"))
    });
    assert_eq!(
        second.token_request(&software, &assertion).await.status(),
        200
    );
    let jti_reuse = first.assertion(&software, |claims| {
        claims["aud"] = serde_json::json!(first.mtls("/token"));
        claims["jti"] = serde_json::json!(jti_of(&assertion));
    });
    let response = first.token_request(&software, &jti_reuse).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "client assertion jti has already been used"
    );

    // A revocation at the first applies at the second at once.
    let revoke = format!(
        "/organisations/{}/softwarestatements/{}/certificates/{}",
        software.organisation_id, software.software_statement_id, software.transport.certificate_id
    );
    assert_eq!(
        first
            .admin(Method::DELETE, &revoke)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let response = second
        .mtls_client(&software.transport)
        .get(second.mtls(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    second.stop().await;
    first.stop().await;
}

fn jti_of(assertion: &str) -> String {
    use base64::Engine as _;
    let payload = assertion.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Two stacks on one database, the second's authorization server announcing the first's
/// issuer (as behind a load balancer), both configured by `change`; a registered software.
/// Two authorization servers on one database, or none on SQLite (one server per file).
async fn two_authz_instances(
    change: impl Fn(&mut certbound_server::StackConfig),
) -> Option<(TestStack, TestStack, certbound_testkit::Software)> {
    let first = TestStack::start().await.restart_with(&change).await;
    if !first.shared_database() {
        return None;
    }
    let software = first.onboard(&["programme-manager"]).await;
    first.register(&software, serde_json::json!({})).await;
    let issuer = first.authz("");
    let second_dir = first.data_dir_for_another_instance();
    let second = TestStack::start_with(second_dir, Some(first.database_url.clone()), |config| {
        config.authz_issuer = Some(issuer.clone());
        change(config);
    })
    .await;
    Some((first, second, software))
}

/// Two authorization servers announcing one issuer (as behind a load balancer), on one database.
#[tokio::test]
async fn two_authz_instances_share_tokens_replay_and_revocation() {
    let Some((first, second, software)) = two_authz_instances(|_| {}).await else {
        return;
    };
    let form = |token: &str, assertion: &str| {
        vec![
            ("token".to_owned(), token.to_owned()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), assertion.to_owned()),
        ]
    };
    let introspect = |stack: &TestStack, token: &str| {
        let request = stack
            .mtls_client(&software.transport)
            .post(stack.authz("/oauth2/introspect"))
            .form(&form(token, &first.authz_assertion(&software, |_| {})));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };

    // A token from the first is active at the second.
    let token = first.access_token(&software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(&second, &token).await["active"], true);

    // A jti used at the first is refused at the second.
    let assertion = first.authz_assertion(&software, |_| {});
    assert_eq!(
        first
            .authz_token_request(&software.transport, &assertion, &[])
            .await
            .status(),
        200
    );
    let response = second
        .authz_token_request(&software.transport, &assertion, &[])
        .await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "client assertion jti has already been used"
    );

    // A revocation at the first applies at the second within a second (DESIGN.md section 7:
    // the second remembers the token's standing, and drops it when the trust counter moves).
    assert_eq!(introspect(&second, &token).await["active"], true);
    let revoke = first
        .mtls_client(&software.transport)
        .post(first.authz("/oauth2/revoke"))
        .form(&form(&token, &first.authz_assertion(&software, |_| {})))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let revoked = std::time::Instant::now();
    while introspect(&second, &token).await != serde_json::json!({"active": false}) {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(1),
            "the second instance honoured a revoked token for over a second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    second.stop().await;
    first.stop().await;
}

/// DESIGN.md section 7: a used `jti` is group-committed, and still usable once across instances:
/// 50 concurrent copies of one assertion, half at each of two authorization servers on one
/// database, get exactly one token.
#[tokio::test]
async fn fifty_copies_of_one_assertion_at_two_instances_get_one_token() {
    let Some((first, second, software)) = two_authz_instances(|config| {
        config.rate_limits.token_per_address = 0;
        config.rate_limits.token_per_client = 0;
    })
    .await
    else {
        return;
    };
    let assertion = first.authz_assertion(&software, |_| {});
    let copies = (0..50).map(|n| {
        let stack = if n % 2 == 0 { &first } else { &second };
        stack.authz_token_request(&software.transport, &assertion, &[])
    });
    let statuses: Vec<u16> = crate::abuse::futures_join_all(copies)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 401).count(),
        49,
        "{statuses:?}"
    );
    second.stop().await;
    first.stop().await;
}
