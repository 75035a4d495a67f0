//! The seams of the second outside review: faults made to happen (a full disk, hostile answers,
//! crashes), each asserting the outcome.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::TestStack;

use crate::ops::{sample, scrape};
use reqwest::Method;
use serde_json::{Value, json};

/// Points the data dir's audit trail at `/dev/full`, which fails every write with ENOSPC.
fn fill_the_disk(config: &mut certbound_server::StackConfig) {
    let audit = config.data_dir.join("audit.jsonl");
    std::fs::remove_file(&audit).unwrap();
    std::os::unix::fs::symlink("/dev/full", &audit).unwrap();
}

/// Item 3: while the audit trail cannot be written, issuance and revocation are refused with 503
/// by default and nothing happens unrecorded; with `on_failure = "continue"` they go on.
#[tokio::test]
async fn a_full_disk_refuses_issuance_and_revocation_unless_told_to_carry_on() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    let stack = stack.restart_with(fill_the_disk).await;

    let response = stack
        .authz_token_request(
            &software.transport,
            &stack.authz_assertion(&software, |_| {}),
            &[],
        )
        .await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("audit trail"),
        "{body}"
    );
    assert!(body.get("access_token").is_none());

    let response = stack
        .token_request(&software, &stack.assertion(&software, |_| {}))
        .await;
    assert_eq!(response.status(), 503, "the directory's token endpoint");

    let certificate = format!(
        "/organisations/{}/softwarestatements/{}/certificates/{}",
        software.organisation_id, software.software_statement_id, software.signing.certificate_id
    );
    let response = stack
        .admin(Method::DELETE, &certificate)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        503,
        "a revocation that would go unrecorded"
    );
    // Counted and visible to the operator: every record lost, no token counted as issued.
    let metrics = scrape(&stack).await;
    assert!(
        sample(&metrics, "certbound_audit_records_lost_total").unwrap_or(0.0) >= 3.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"certbound_refusals_total{part="authz",reason="temporarily_unavailable"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("certbound_tokens_issued_total{"),
        "{metrics}"
    );

    // Told to carry on, the same requests succeed (the lost records are counted and logged).
    let stack = stack
        .restart_with(|config| config.audit.on_failure = certbound_server::AuditFailure::Continue)
        .await;
    let response = stack
        .authz_token_request(
            &software.transport,
            &stack.authz_assertion(&software, |_| {}),
            &[],
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "and the signing key was never revoked"
    );
    let metrics = scrape(&stack).await;
    assert_eq!(
        sample(
            &metrics,
            r#"certbound_tokens_issued_total{auth_method="private_key_jwt",part="authz"}"#
        ),
        Some(1.0),
        "carried on, and counted: {metrics}"
    );
    assert!(
        sample(&metrics, "certbound_audit_records_lost_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    stack.stop().await;
}

fn card() -> Value {
    certbound_testkit::card_body("seams-0001")
}

async fn post_card(
    stack: &TestStack,
    software: &certbound_testkit::Software,
    token: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let response = stack
        .mtls_client(&software.transport)
        .post(stack.cards(path))
        .bearer_auth(token)
        .header("IdempotencyKey", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Item 2: a request that made its card and died before its answer was recorded leaves a claim
/// with no answer; the retry that takes the claim over finds the card by the key and answers with
/// it: one key, one card. The same for a bulk request.
#[tokio::test]
async fn a_retry_after_a_crash_finds_the_effect_instead_of_repeating_it() {
    let stack = TestStack::start().await;
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let database = certbound_store::Database::connect(&stack.database_url)
        .await
        .unwrap();
    // The crash: the answer never recorded, the claim older than any live request's.
    let crash = |key: String| {
        let id = format!("{}|{key}", software.organisation_id);
        let pool = database.pool().clone();
        async move {
            sqlx::query("UPDATE idempotency_keys SET status = 0, response = '', created_at = created_at - 600 WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = post_card(&stack, &software, &token, &key, "/cards", &card()).await;
    assert_eq!(status, 201, "{first}");
    crash(key.clone()).await;
    let (status, retried) = post_card(&stack, &software, &token, &key, "/cards", &card()).await;
    assert_eq!(status, 201, "{retried}");
    assert_eq!(
        retried, first,
        "the retry answers with the card the first request made"
    );
    assert_eq!(stack.cards_of(&software.organisation_id).await, 1);

    let bulk = json!({"cardProduct": "10001", "cardType": "Virtual", "quantity": 2});
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = post_card(&stack, &software, &token, &key, "/cards/bulk", &bulk).await;
    assert_eq!(status, 202, "{first}");
    crash(key.clone()).await;
    let (status, retried) = post_card(&stack, &software, &token, &key, "/cards/bulk", &bulk).await;
    assert_eq!((status, &retried), (202, &first), "one job for one key");
    stack.stop().await;
}

/// Item 2: copies of one request sent to two instances at once make one card (the claim is in the
/// shared database), and every copy answers with it. PostgreSQL only (two processes on one
/// SQLite file are not a deployment).
#[tokio::test]
async fn one_idempotency_key_at_two_instances_makes_one_card() {
    let first = TestStack::start().await;
    if !first.database_url.starts_with("postgres") {
        first.stop().await;
        return;
    }
    let second_dir = first.data_dir_for_another_instance();
    let issuer = first.authz("");
    let second = TestStack::start_with(second_dir, Some(first.database_url.clone()), |config| {
        config.authz_issuer = Some(issuer.clone());
    })
    .await;
    let (software, token) = first.client_with_token(&["programme-manager"]).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = card();
    let mut copies = tokio::task::JoinSet::new();
    for n in 0..12 {
        let stack = if n % 2 == 0 { &first } else { &second };
        let request = stack
            .mtls_client(&software.transport)
            .post(stack.cards("/cards"))
            .bearer_auth(&token)
            .header("IdempotencyKey", &key)
            .json(&body);
        copies.spawn(async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    let mut tokens = std::collections::BTreeSet::new();
    while let Some(answer) = copies.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 201, "{body}");
        tokens.insert(body["publicToken"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(first.cards_of(&software.organisation_id).await, 1);
    second.stop().await;
    first.stop().await;
}
