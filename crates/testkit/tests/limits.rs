//! Connection limits: a client that dribbles its headers is cut off (slowloris), and connections
//! over the limit are closed at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::process::{Command, Stdio};
use std::time::Duration;

use certbound_testkit::TestStack;
use tokio::io::AsyncReadExt as _;

fn port(url: &str) -> u16 {
    url.trim_start_matches("https://localhost:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.header_read_timeout_seconds = 1;
        },
    )
    .await;
    let port = port(stack.stack.directory_url.as_deref().unwrap());
    let ca = stack.data_dir().join("ca.pem");
    // Half a request, then silence for 6 s: the server must hang up long before. The pipeline
    // lasts as long as its `sleep`, so s_client's own lifetime is measured inside it.
    let command = format!(
        "(printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\n'; sleep 6) | \
         (s=$(date +%s%N); timeout 8 openssl s_client -quiet -connect 127.0.0.1:{port} -CAfile '{}' >/dev/null 2>&1; \
          e=$(date +%s%N); echo ELAPSED_MS $(((e - s) / 1000000)))",
        ca.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &command])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let elapsed: u64 = stdout
        .trim()
        .strip_prefix("ELAPSED_MS ")
        .and_then(|ms| ms.parse().ok())
        .expect(&stdout);
    assert!(elapsed < 4000, "the connection stayed open {elapsed} ms");
    // A complete request is still served.
    assert_eq!(
        stack
            .client()
            .get(stack.public("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.max_connections = 2;
            config.limits.handshake_timeout_seconds = 30;
        },
    )
    .await;
    let address = format!(
        "127.0.0.1:{}",
        port(stack.stack.directory_url.as_deref().unwrap())
    );
    // Two idle connections hold the two slots (no TLS handshake: they just wait).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
        assert!(read.is_err(), "a connection within the limit stays open");
    }
    // The third is closed at once.
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte))
        .await
        .expect("closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Freed slots are usable again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stack
            .client()
            .get(stack.public("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_on_every_part() {
    let stack = TestStack::start().await;
    let big = "x".repeat(100 * 1024);
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let responses = [
        stack
            .admin(reqwest::Method::POST, "/organisations")
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .admin(
                reqwest::Method::POST,
                &format!(
                    "/organisations/{}/softwarestatements/{}/certificates/transport",
                    software.organisation_id, software.software_statement_id
                ),
            )
            .header("content-type", "application/pkcs10")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.mtls("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.authz("/oauth2/register"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.authz("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.cards("/cards"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    ];
    for response in responses {
        assert_eq!(response.status(), 413, "{}", response.url());
    }
    // Refusals carry a trace id that the audit trail records.
    let response = stack
        .client()
        .post(stack.authz("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let trace_id = response.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let audit = std::fs::read_to_string(stack.data_dir().join("audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|line| line.contains(&format!("\"trace_id\":\"{trace_id}\""))),
        "{audit}"
    );
    stack.stop().await;
}
