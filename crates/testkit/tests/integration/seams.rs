//! The seams of the second outside review: faults made to happen (a full disk, hostile answers,
//! crashes), each asserting the outcome.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::TestStack;
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
    stack.stop().await;
}
