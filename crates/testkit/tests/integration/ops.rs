//! The operations listener: `/metrics` counts what the seed flow did, `/livez` and `/readyz`
//! answer probes, and `/readyz` follows the database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{TestStack, card_body};
use serde_json::json;

pub(crate) async fn scrape(stack: &TestStack) -> String {
    let ops = stack
        .stack
        .ops_url
        .as_deref()
        .expect("the ops listener runs");
    let response = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the sample named exactly `name` (with its labels), if any.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

async fn probe(stack: &TestStack, path: &str) -> (u16, String) {
    let ops = stack
        .stack
        .ops_url
        .as_deref()
        .expect("the ops listener runs");
    let response = reqwest::get(format!("{ops}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_the_seed_flow_exactly() {
    let stack = TestStack::start().await;
    assert_eq!(probe(&stack, "/livez").await, (200, "live\n".into()));
    assert_eq!(probe(&stack, "/readyz").await, (200, "ready\n".into()));

    // The seed flow: organisation, software statement, transport and signing certificates,
    // a directory token for the SSA, registration, an access token; then a card, its status,
    // and a refused call.
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let client = stack.mtls_client(&software.transport);
    let created = client
        .post(stack.cards("/cards"))
        .bearer_auth(&token)
        .json(&card_body("metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let public_token = created.json::<serde_json::Value>().await.unwrap()["publicToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = client
        .put(stack.cards(&format!("/cards/{public_token}/status")))
        .bearer_auth(&token)
        .json(&json!({"cardStatusCode": "41"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    for _ in 0..2 {
        let read = client
            .get(stack.cards(&format!("/cards/{public_token}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
    }
    let refused = client
        .get(stack.cards(&format!("/cards/{public_token}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let metrics = scrape(&stack).await;
    for (name, expected) in [
        (
            r#"certbound_tokens_issued_total{auth_method="private_key_jwt",part="directory"}"#,
            1.0,
        ),
        (
            r#"certbound_tokens_issued_total{auth_method="private_key_jwt",part="authz"}"#,
            1.0,
        ),
        (
            r#"certbound_certificates_total{action="issued",certificate_type="transport"}"#,
            1.0,
        ),
        (
            r#"certbound_certificates_total{action="issued",certificate_type="signing"}"#,
            1.0,
        ),
        (r#"certbound_registrations_total{action="registered"}"#, 1.0),
        ("certbound_cards_created_total", 1.0),
        (r#"certbound_card_status_changes_total{status="41"}"#, 1.0),
        (
            r#"certbound_refusals_total{part="cards",reason="invalid_token"}"#,
            1.0,
        ),
        (
            r#"certbound_http_requests_total{part="cards",route="/api/v1/cards",status="201"}"#,
            1.0,
        ),
        (
            r#"certbound_http_requests_total{part="cards",route="/api/v1/cards/{public_token}",status="200"}"#,
            2.0,
        ),
        (
            r#"certbound_http_request_duration_seconds_count{part="cards",route="/api/v1/cards/{public_token}"}"#,
            3.0,
        ),
        (
            r#"certbound_audit_events_total{event="organisation_created",part="directory"}"#,
            1.0,
        ),
        (r#"certbound_bulk_jobs{state="Pending"}"#, 0.0),
        // The token's signature was verified once, on the first call (a miss), and found
        // remembered by the status change and both reads; the garbage token was a miss too.
        (
            r#"certbound_cache_lookups_total{cache="cards_verified_tokens",result="miss"}"#,
            2.0,
        ),
        (
            r#"certbound_cache_lookups_total{cache="cards_verified_tokens",result="hit"}"#,
            3.0,
        ),
    ] {
        assert_eq!(
            sample(&metrics, name),
            Some(expected),
            "{name} in\n{metrics}"
        );
    }
    assert!(
        sample(&metrics, r#"certbound_database_connections{state="max"}"#).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    // No label carries request text: the refused path is counted by its route template.
    assert!(!metrics.contains("not-a-token"));
    assert!(!metrics.contains(&public_token));
}

#[tokio::test]
async fn an_unmatched_path_is_counted_by_no_path_of_its_own() {
    let stack = TestStack::start().await;
    for n in 0..3 {
        let response = stack
            .client()
            .get(stack.public(&format!("/no/such/path/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let metrics = scrape(&stack).await;
    assert_eq!(
        sample(
            &metrics,
            r#"certbound_http_requests_total{part="directory",route="unmatched",status="404"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert!(!metrics.contains("/no/such/path"));
}

/// A TCP forwarder to PostgreSQL that the test can cut and restore: "the database is
/// unreachable" without stopping the machine's PostgreSQL.
struct Forwarder {
    address: std::net::SocketAddr,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl Forwarder {
    async fn start(upstream: &str) -> Self {
        let forwarder = Self {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: upstream.to_owned(),
            tasks: Default::default(),
        };
        forwarder.listen().await
    }

    async fn listen(mut self) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.address).unwrap();
        let listener = socket.listen(64).unwrap();
        self.address = listener.local_addr().unwrap();
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self
    }

    /// Closes the port and every forwarded connection.
    fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

async fn ready_within(stack: &TestStack, status: u16, seconds: u64) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let answer = probe(stack, "/readyz").await;
        if answer.0 == status || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_postgresql_is_unreachable_and_200_when_it_is_back() {
    let stack = TestStack::start().await;
    let Some(url) = Some(stack.database_url.clone()).filter(|url| url.starts_with("postgres"))
    else {
        eprintln!("SQLite: the database cannot become unreachable; this test runs on PostgreSQL");
        return;
    };
    let (before, rest) = url.split_once('@').unwrap();
    let (server, database) = rest.split_once('/').unwrap();
    let forwarder = Forwarder::start(server).await;
    let through = format!("{before}@{}/{database}", forwarder.address);
    let stack = stack
        .restart_with(|config| config.database_url = Some(through))
        .await;
    assert_eq!(ready_within(&stack, 200, 5).await, (200, "ready\n".into()));

    forwarder.cut();
    let (status, reason) = ready_within(&stack, 503, 10).await;
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.starts_with("not ready: the database does not answer"),
        "{reason}"
    );
    assert_eq!(probe(&stack, "/livez").await.0, 200);

    let _forwarder = forwarder.listen().await;
    assert_eq!(ready_within(&stack, 200, 15).await, (200, "ready\n".into()));
}
